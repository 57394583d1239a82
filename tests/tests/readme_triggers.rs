//! The README's trigger lists ("Triggers", between `<!-- fires: … -->`
//! markers) are true: each `a → b → c` list is found, in that order and
//! contiguous, in the firings of a real run; every trigger the README names
//! under a path fires on it; and the triggers it lists as never fired do not
//! fire anywhere while every other one does.

use qtasks::plugin::{Globals, TriggerEvent};
use qtasks::triggers::ALL;
use qtasks::{PluginError, QueueTasks, Stream, TaskContext, TaskError, Value, json, plugin, stream, task};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

#[task]
async fn echo(x: i64) -> i64 {
    x
}

#[task(retry = 1)]
async fn flaky() -> Result<(), TaskError> {
    Err(TaskError::msg("always"))
}

#[task]
async fn numbers() -> impl Stream<Item = u32> {
    stream::iter(1..=2)
}

#[task]
async fn risky(ctx: TaskContext) -> Result<i64, PluginError> {
    Err(ctx.plugin_error("rescue me"))
}

#[plugin(on = "task_executor_run_task_trigger_error")]
fn rescue(_ctx: &qtasks::triggers::TaskExecutorRunTaskTriggerError<'_>) -> Option<Value> {
    Some(json!(0))
}

/// Every firing, with the task it fired for (`None` outside a task).
type Log = Arc<Mutex<Vec<(Option<qtasks::Uuid>, &'static str)>>>;

/// The README's lists: per marker, the `→` chains and every trigger name.
fn readme_lists() -> BTreeMap<String, (Vec<Vec<String>>, BTreeSet<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let names: BTreeSet<&str> = ALL.iter().map(|t| t.name).collect();
    let mut out = BTreeMap::new();
    for part in readme.split("<!-- fires: ").skip(1) {
        let (marker, body) = part.split_once(" -->").unwrap();
        let body = body.split("<!--").next().unwrap();
        // Code spans only, joined across line breaks.
        let code: Vec<String> =
            body.split('`').skip(1).step_by(2).map(|c| c.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        let chains = code
            .iter()
            .filter(|c| c.contains('→'))
            .map(|c| c.split('→').map(|n| n.trim().to_owned()).collect::<Vec<_>>())
            .collect();
        let mentioned = code
            .iter()
            .flat_map(|c| c.split('→'))
            .map(str::trim)
            .filter(|n| names.contains(n))
            .map(str::to_owned)
            .collect();
        out.insert(marker.to_owned(), (chains, mentioned));
    }
    assert!(out.contains_key("never"), "the README has lost its `<!-- fires: never -->` list");
    out
}

/// `chain` appears in order and contiguous among the firings for one task
/// (or among those outside any task). A client's next enqueue may fire while
/// the worker still finishes the previous task, so the whole log interleaves.
fn contains_run(log: &[(Option<qtasks::Uuid>, &'static str)], chain: &[String]) -> bool {
    let keys: BTreeSet<Option<qtasks::Uuid>> = log.iter().map(|(k, _)| *k).collect();
    keys.into_iter().any(|key| {
        let one: Vec<&str> = log.iter().filter(|(k, _)| *k == key).map(|(_, n)| *n).collect();
        one.windows(chain.len()).any(|w| w.iter().zip(chain).all(|(a, b)| a == b))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_trigger_lists_are_what_fires() {
    let log: Log = Arc::default();
    let recorder = Arc::clone(&log);
    let app = QueueTasks::builder("readme")
        .tasks::<(Echo, Flaky, Numbers, Risky)>()
        .plugin(Rescue)
        .plugin(Globals(move |e: &TriggerEvent<'_>| {
            let task = TaskContext::current().map(|c| c.uuid());
            recorder.lock().unwrap().push((task, e.trigger.name))
        }))
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    let handle = app.enqueue(Echo::call(1)).await.unwrap();
    assert_eq!(handle.result(WAIT).await.unwrap(), 1);
    app.add_task("flaky", ()).await.unwrap().record(WAIT).await.unwrap();
    app.enqueue(Numbers::call()).await.unwrap().result(WAIT).await.unwrap();
    app.enqueue(Risky::call()).await.unwrap().result(WAIT).await.unwrap();
    app.get(handle.uuid()).await.unwrap();
    app.get_all().await.unwrap();
    assert!(app.ping().await);
    app.global_get("workers", "none").await.unwrap();
    app.inspect().await.unwrap();
    app.flush_all().await.unwrap();
    worker.shutdown().await;
    let log = log.lock().unwrap().clone();

    let lists = readme_lists();
    let fired: BTreeSet<&str> = log.iter().map(|(_, n)| *n).collect();
    for (marker, (chains, mentioned)) in &lists {
        if marker == "never" {
            for name in mentioned {
                assert!(!fired.contains(name.as_str()), "the README says `{name}` never fires, but it fired");
            }
            continue;
        }
        for chain in chains {
            assert!(
                contains_run(&log, chain),
                "README list `{marker}`: `{}` is not what fires:\n{log:?}",
                chain.join(" → ")
            );
        }
        for name in mentioned {
            assert!(fired.contains(name.as_str()), "README list `{marker}` names `{name}`, which never fired");
        }
    }
    let listed: BTreeSet<&str> = lists.values().flat_map(|(_, m)| m.iter().map(String::as_str)).collect();
    for t in ALL.iter() {
        assert!(listed.contains(t.name), "the README's trigger lists do not mention `{}`", t.name);
    }
}
