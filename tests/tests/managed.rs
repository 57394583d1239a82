//! `Managed` plugins: switches, time budgets, auto switch-off, task filters,
//! error policies and metrics; and per-invocation isolation of contexts.

use qtasks::plugin::{Managed, OnError, UnknownTrigger};
use qtasks::triggers::*;
use qtasks::{QueueTasks, TaskContext, TaskStatus, Value, json, plugin, task};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[task]
async fn echo(x: Value) -> Value {
    x
}

#[task]
async fn other(x: Value) -> Value {
    x
}

/// Counts its calls.
struct Counter {
    calls: Arc<AtomicUsize>,
}

#[plugin]
impl Counter {
    fn task_executor_before_execute(&self, _ctx: &TaskExecutorBeforeExecute<'_>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Counter, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    (Counter { calls: calls.clone() }, calls)
}

#[tokio::test]
async fn a_managed_plugin_is_switched_off_and_on_by_name_at_run_time() {
    let (plugin, calls) = counter();
    let (plain, _) = counter();
    let app = QueueTasks::builder("switch").task::<Echo>().plugin(Managed::new(plugin)).plugin(plain).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    app.add_task("echo", [1]).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Both plugins are named "Counter"; only the managed one can be switched.
    assert_eq!(app.set_plugin_enabled("Counter", false), 1);
    assert_eq!(app.set_plugin_enabled("no-such-plugin", false), 0);
    app.add_task("echo", [2]).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a switched-off plugin was called");
    assert_eq!(app.plugins()[0].enabled, Some(false));
    assert_eq!(app.plugins()[1].enabled, None);

    app.set_plugin_enabled("Counter", true);
    app.add_task("echo", [3]).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    worker.shutdown().await;
}

/// Sleeps past any reasonable budget; records whether it ever finished.
struct Slow {
    finished: Arc<AtomicBool>,
}

#[plugin]
impl Slow {
    async fn task_executor_run_task(&self, _ctx: &TaskExecutorRunTask<'_>) -> Option<Value> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        self.finished.store(true, Ordering::SeqCst);
        Some(json!("replaced by a slow plugin"))
    }
}

// On tokio's paused clock: the 50 ms budget ends before the 5 s handler
// however slowly the machine runs.
#[tokio::test(start_paused = true)]
async fn an_async_handler_past_its_budget_is_dropped_and_repeated_timeouts_switch_it_off() {
    let finished = Arc::new(AtomicBool::new(false));
    let slow = Managed::new(Slow { finished: finished.clone() })
        .budget(Duration::from_millis(50))
        .switch_off_after_timeouts(2)
        .metrics();
    let app = QueueTasks::builder("budget").task::<Echo>().plugin(slow).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    for n in 0..3 {
        let task = app.add_task("echo", [n]).await.unwrap().record(WAIT).await.unwrap();
        // The timed-out handler's value is not used; the task is unaffected.
        assert_eq!((task.status, task.result), (TaskStatus::Success, Some(json!(n))));
    }
    assert!(!finished.load(Ordering::SeqCst), "the handler was not dropped at its budget");
    let info = &app.plugins()[0];
    assert_eq!(info.enabled, Some(false), "two timeouts must switch the plugin off");
    let stats = &info.stats[0];
    assert_eq!((stats.trigger, stats.calls, stats.timeouts), ("task_executor_run_task", 2, 2));
    assert_eq!(info.errors, 2, "timeouts are reported as handler failures");
    worker.shutdown().await;
}

#[tokio::test]
async fn a_task_filter_skips_other_tasks_without_an_error() {
    let (plugin, calls) = counter();
    let app = QueueTasks::builder("filter")
        .task::<Echo>()
        .task::<Other>()
        .plugin(Managed::new(plugin).only_tasks(["echo"]).metrics())
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    app.add_task("echo", [1]).await.unwrap().record(WAIT).await.unwrap();
    app.add_task("other", [1]).await.unwrap().record(WAIT).await.unwrap();
    app.add_task("other", [2]).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let info = &app.plugins()[0];
    let stats = &info.stats[0];
    assert_eq!((stats.calls, stats.skipped, stats.errors, info.errors), (1, 2, 0, 0));
    worker.shutdown().await;
}

/// Fails every time.
#[plugin(on = "task_executor_args_replace")]
fn always_fails(_ctx: &TaskExecutorArgsReplace<'_>) -> Result<Option<Value>, std::io::Error> {
    Err(std::io::Error::other("broken"))
}

/// Adds one to the first argument.
#[plugin(on = "task_executor_args_replace")]
fn add_one(ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
    Some(json!([ctx.args[0].as_i64()? + 1]))
}

#[tokio::test]
async fn the_error_policy_decides_whether_the_next_plugins_run() {
    let go_on = QueueTasks::builder("continue")
        .task::<Echo>()
        .plugin(Managed::new(AlwaysFails).on_error(OnError::Continue))
        .plugin(AddOne)
        .build()
        .unwrap();
    let stop = QueueTasks::builder("stop")
        .task::<Echo>()
        .plugin(Managed::new(AlwaysFails).on_error_for::<TaskExecutorArgsReplace>(OnError::Stop))
        .plugin(AddOne)
        .build()
        .unwrap();
    let (w1, w2) = (go_on.worker().start().await.unwrap(), stop.worker().start().await.unwrap());
    let a = go_on.add_task("echo", [1]).await.unwrap().record(WAIT).await.unwrap();
    let b = stop.add_task("echo", [1]).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(a.result, Some(json!(2)), "with Continue, the next plugin runs");
    assert_eq!(b.result, Some(json!(1)), "with Stop, the next plugin is skipped for this firing");
    assert_eq!((b.status, stop.plugins()[0].errors), (TaskStatus::Success, 1));
    w1.shutdown().await;
    w2.shutdown().await;
}

/// A trigger name read at run time that is not a trigger is an error naming
/// it, not a panic; a real name is accepted.
#[test]
fn try_on_error_for_refuses_an_unknown_trigger_name() {
    let error = match Managed::new(AlwaysFails).try_on_error_for("no_such_trigger", OnError::Stop) {
        Err(error) => error,
        Ok(_) => panic!("an unknown trigger name was accepted"),
    };
    assert_eq!(error, UnknownTrigger("no_such_trigger".to_owned()));
    assert!(error.to_string().contains("`no_such_trigger`"), "{error}");
    assert!(Managed::new(AlwaysFails).try_on_error_for("task_executor_args_replace", OnError::Stop).is_ok());
}

/// Sleeps on its thread: a blocking handler.
#[plugin(on = "task_executor_after_execute", blocking)]
fn blocking_audit(_ctx: &TaskExecutorAfterExecute<'_>) {
    std::thread::sleep(Duration::from_millis(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_and_latency_per_trigger() {
    let app = QueueTasks::builder("metrics")
        .task::<Echo>()
        .plugin(Managed::new(BlockingAudit).metrics())
        .plugin(Managed::new(AlwaysFails).metrics())
        .build()
        .unwrap();
    let worker = app.worker().max_tasks_process(4).start().await.unwrap();
    for n in 0..10 {
        app.add_task("echo", [n]).await.unwrap().record(WAIT).await.unwrap();
    }
    let plugins = app.plugins();
    let audit = &plugins[0].stats[0];
    assert_eq!((audit.trigger, audit.calls, audit.errors), ("task_executor_after_execute", 10, 0));
    assert!(audit.p50.unwrap() >= Duration::from_millis(4), "p50 {:?} is below the 5 ms sleep", audit.p50);
    assert!(audit.queue_wait_p50.is_some(), "blocking handlers record their wait for a slot apart");
    let fails = &plugins[1].stats[0];
    assert_eq!((fails.calls, fails.errors), (10, 10));
    let json = serde_json::to_value(&plugins).unwrap();
    assert_eq!(json[0]["stats"][0]["calls"], json!(10));
    worker.shutdown().await;
}

#[task]
async fn whoami(ctx: TaskContext) -> String {
    tokio::task::yield_now().await;
    ctx.uuid().to_string()
}

/// Awaits between reading its context and answering, so concurrent tasks
/// interleave inside it.
#[plugin(on = "task_executor_run_task")]
async fn tag_with_own_id(ctx: &TaskExecutorRunTask<'_>) -> Option<Value> {
    let before = ctx.message.uuid;
    tokio::time::sleep(Duration::from_millis(u64::from(before.as_bytes()[0] % 7))).await;
    Some(json!({ "result": ctx.result, "seen": before.to_string(), "after": ctx.message.uuid.to_string() }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_never_see_each_others_context_through_a_plugin() {
    let app = QueueTasks::builder("isolation").task::<Whoami>().plugin(TagWithOwnId).build().unwrap();
    let worker = app.worker().max_tasks_process(100).start().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(app.add_task("whoami", ()).await.unwrap().uuid());
    }
    for id in ids {
        let task = app.wait(id, WAIT).await.unwrap();
        let r = task.result.unwrap();
        let own = id.to_string();
        assert_eq!(
            (r["result"].as_str(), r["seen"].as_str(), r["after"].as_str()),
            (Some(&*own), Some(&*own), Some(&*own))
        );
    }
    worker.shutdown().await;
}

/// Fails to start.
struct NeedsDatabase {
    calls: Arc<AtomicUsize>,
}

#[plugin]
impl NeedsDatabase {
    fn start(&self) -> Result<(), std::io::Error> {
        Err(std::io::Error::other("no database"))
    }

    fn task_executor_before_execute(&self, _ctx: &TaskExecutorBeforeExecute<'_>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn an_opt_in_policy_skips_a_plugin_whose_start_fails_and_says_why() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (healthy, healthy_calls) = counter();
    let app = QueueTasks::builder("skip-broken")
        .task::<Echo>()
        .plugin(Managed::new(NeedsDatabase { calls: calls.clone() }).skip_if_start_fails())
        .plugin(healthy)
        .build()
        .unwrap();
    let worker = app.worker().start().await.expect("a skipped plugin does not stop start-up");
    app.add_task("echo", [1]).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!((calls.load(Ordering::SeqCst), healthy_calls.load(Ordering::SeqCst)), (0, 1));
    let info = &app.plugins()[0];
    assert_eq!(info.enabled, Some(false));
    assert_eq!(info.start_error.as_deref(), Some("no database"));
    worker.shutdown().await;

    // Without the policy, the same failure stops start-up.
    let strict = QueueTasks::builder("strict").plugin(NeedsDatabase { calls }).build().unwrap();
    assert!(strict.worker().start().await.is_err());
}

/// Reports the span it runs in.
#[plugin(on = "task_executor_before_execute", blocking)]
fn in_span(ctx: &TaskExecutorBeforeExecute<'_>) {
    tracing::info!(seen = %ctx.message.uuid, "inside the blocking handler");
}

#[test]
fn handlers_run_inside_the_tasks_tracing_span() {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let sink = buffer.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || sink.clone()).finish();
    // Global: the blocking handler runs on a blocking-pool thread. The only
    // subscriber this test binary sets.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let uuid = runtime.block_on(async {
        let app = QueueTasks::builder("span").task::<Echo>().plugin(InSpan).build().unwrap();
        let worker = app.worker().start().await.unwrap();
        let task = app.add_task("echo", [1]).await.unwrap().record(WAIT).await.unwrap();
        worker.shutdown().await;
        task.uuid
    });
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = text.lines().find(|l| l.contains("inside the blocking handler")).expect("the handler logged");
    assert!(line.contains(&format!("task{{task=\"echo\" uuid={uuid} attempt=1}}")), "{line}");
}
