//! The wildcard plugin (`Globals`), the dyn escape hatch (`DynChain`) and
//! the plugin test harness (`qtasks::testing`).

use qtasks::plugin::{DynChain, DynPlugin, Globals, Managed, Member, OnError, TriggerEvent, Wildcard};
use qtasks::triggers::*;
use qtasks::{PluginChain, QueueTasks, TaskStatus, Uuid, Value, json, plugin, task, testing};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::default()
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[task]
async fn echo(x: Value) -> Value {
    x
}

// ---- the wildcard ----

/// What the wildcard saw of one firing.
#[derive(Clone, Debug)]
struct Seen {
    trigger: &'static str,
    app: String,
    task_id: Option<Uuid>,
    task_name: Option<String>,
    context: String,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Wildcard for Recorder {
    fn on_trigger(&self, event: &TriggerEvent<'_>) {
        self.0.lock().unwrap().push(Seen {
            trigger: event.trigger.name,
            app: event.app.to_owned(),
            task_id: event.task_id,
            task_name: event.task_name.map(str::to_owned),
            context: format!("{:?}", event.context),
        });
    }

    fn name(&self) -> &str {
        "recorder"
    }
}

#[tokio::test]
async fn the_wildcard_sees_every_trigger_of_one_task_run_in_order() {
    let recorder = Recorder::default();
    let app = QueueTasks::builder("wild").task::<Echo>().plugin(Globals(recorder.clone())).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("echo", [1]).await.unwrap();
    let done = app.wait(task.uuid(), WAIT).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    worker.shutdown().await;

    let seen = recorder.0.lock().unwrap().clone();
    let names: Vec<&str> = seen.iter().map(|s| s.trigger).collect();
    let expected = [
        // start-up
        "starter_start",
        "worker_start",
        "broker_start",
        "storage_start",
        "global_config_start",
        "global_config_set",
        "global_config_set_status",
        "broker_listen_start",
        // client add_task
        "qtasks_add_task_before_broker",
        "broker_add_before",
        "storage_add",
        "broker_add_after",
        "qtasks_add_task_after_broker",
        // worker receives
        "broker_add_worker",
        "storage_add_process",
        "worker_add",
        // dispatcher
        "worker_execute_before",
        "broker_update",
        "storage_update",
        "worker_run_task_before",
        // executor
        "task_executor_middlewares_execute",
        "task_executor_args_replace",
        "task_executor_before_execute",
        "task_executor_run_task",
        "task_executor_after_execute",
        "task_executor_after_execute_result_replace",
        "task_executor_middlewares_execute",
        "task_executor_decode",
        "task_executor_task_close",
        // finish
        "worker_remove_finished_task",
        "broker_remove_finished_task",
        "storage_remove_finished_task",
        "worker_execute_after",
        // shutdown (starter_stop and broker_stop may overtake the task's
        // last finish triggers, as in plugins.rs)
        "worker_stop",
        "storage_stop",
        "global_config_stop",
    ];
    let early: Vec<_> = names.iter().filter(|n| **n == "starter_stop" || **n == "broker_stop").collect();
    assert_eq!(early, [&"starter_stop", &"broker_stop"]);
    let rest: Vec<_> = names.iter().copied().filter(|n| *n != "starter_stop" && *n != "broker_stop").collect();
    assert_eq!(rest, expected, "saw {names:?}");

    for s in &seen {
        assert_eq!(s.app, "wild", "{}", s.trigger);
        assert!(!s.context.is_empty());
        if let Some(id) = s.task_id {
            assert_eq!(id, task.uuid(), "{} is about another task", s.trigger);
        }
        if let Some(name) = &s.task_name {
            assert_eq!(name, "echo", "{}", s.trigger);
        }
    }
    let about_the_task = |t: &str| seen.iter().find(|s| s.trigger == t).unwrap();
    assert_eq!(about_the_task("task_executor_run_task").task_id, Some(task.uuid()));
    assert_eq!(about_the_task("worker_start").task_id, None);
    assert!(about_the_task("task_executor_args_replace").context.contains("args: Array [Number(1)]"));
    assert_eq!(app.plugins()[0].name, "recorder");
    assert_eq!(app.plugins()[0].triggers.len(), 56);
}

/// Replaces every value it can; a wildcard next to it must not undo it.
#[plugin(on = "task_executor_run_task")]
fn times_ten(ctx: &TaskExecutorRunTask<'_>) -> Option<Value> {
    Some(json!(ctx.result.as_i64()? * 10))
}

#[tokio::test]
async fn a_wildcard_only_observes_and_a_closure_is_a_wildcard() {
    let seen = log();
    let in_closure = seen.clone();
    let app = QueueTasks::builder("observe")
        .task::<Echo>()
        .plugin(TimesTen)
        .plugin(Globals(move |e: &TriggerEvent<'_>| {
            if e.trigger.name == "task_executor_run_task" {
                in_closure.lock().unwrap().push(format!("{:?}", e.context));
            }
        }))
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("echo", [4]).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(task.result, Some(json!(40)));
    let seen = take(&seen);
    assert_eq!(seen.len(), 1);
    assert!(seen[0].contains("result: Number(40)"), "the wildcard sees the replaced value: {seen:?}");
    assert_eq!(app.plugins()[1].name, "globals");
    worker.shutdown().await;
}

// ---- the dyn chain ----

/// Adds `add` to the first argument (sync), records what it saw.
struct Adder {
    tag: &'static str,
    add: Option<i64>,
    log: Log,
}

#[plugin]
impl Adder {
    fn task_executor_args_replace(&self, ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
        self.log.lock().unwrap().push(format!("{} saw {}", self.tag, ctx.args));
        Some(json!([ctx.args[0].as_i64()? + self.add?]))
    }
}

/// The same, async, with a real suspension point.
struct AsyncAdder {
    tag: &'static str,
    add: Option<i64>,
    log: Log,
}

#[plugin]
impl AsyncAdder {
    async fn task_executor_args_replace(&self, ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
        tokio::task::yield_now().await;
        self.log.lock().unwrap().push(format!("{} saw {}", self.tag, ctx.args));
        Some(json!([ctx.args[0].as_i64()? + self.add?]))
    }
}

/// Listens to another trigger only: never called for args.
#[plugin(on = "worker_start")]
fn elsewhere(_ctx: &WorkerStart<'_>) {
    panic!("called for a trigger it does not listen to");
}

#[plugin(on = "task_executor_args_replace")]
fn failing(_ctx: &TaskExecutorArgsReplace<'_>) -> Result<Option<Value>, std::io::Error> {
    Err(std::io::Error::other("handler broke"))
}

#[plugin(on = "task_executor_args_replace")]
fn panics_sync(_ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
    panic!("sync handler bug");
}

#[plugin(on = "task_executor_args_replace")]
async fn panics_async(_ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
    tokio::task::yield_now().await;
    panic!("async handler bug");
}

/// Runs `task_executor_args_replace` with args `[1]` through `chain`;
/// returns the final args and whether the chain went on to the end.
async fn run_args<C: PluginChain>(chain: &C) -> (Value, bool) {
    let message = testing::message("echo", json!([1]));
    let task = testing::task_info("echo");
    let mut ctx = TaskExecutorArgsReplace { app: "dyn", task, message: &message, args: json!([1]) };
    let went_on = chain.fire::<TaskExecutorArgsReplace<'static>>(&mut ctx).await;
    (ctx.args, went_on)
}

fn counts(chain: &impl PluginChain) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    chain.describe(&mut out);
    out.into_iter().map(|p| (p.name, p.errors, p.panics)).collect()
}

#[tokio::test]
async fn dyn_replace_runs_in_order_each_sees_the_previous_value_none_keeps_and_the_last_some_wins() {
    let log = log();
    let mut chain = DynChain::new();
    chain.push(Box::new(Adder { tag: "first", add: Some(1), log: log.clone() }));
    chain.push(Box::new(Elsewhere));
    chain.push(Box::new(AsyncAdder { tag: "second", add: None, log: log.clone() }));
    chain.push(Box::new(AsyncAdder { tag: "third", add: Some(10), log: log.clone() }));
    chain.push(Box::new(Adder { tag: "fourth", add: None, log: log.clone() }));
    assert_eq!(chain.len(), 5);

    assert_eq!(run_args(&chain).await, (json!([12]), true));
    assert_eq!(take(&log), ["first saw [1]", "second saw [2]", "third saw [2]", "fourth saw [12]"]);

    // Through the macro the runtime uses, too.
    let message = testing::message("echo", json!([5]));
    let mut ctx =
        TaskExecutorArgsReplace { app: "dyn", task: testing::task_info("echo"), message: &message, args: json!([5]) };
    qtasks::fire!(&chain, &mut ctx);
    assert_eq!(ctx.args, json!([16]));
}

#[tokio::test]
async fn boxed_and_static_chains_give_the_same_results() {
    let (static_log, dyn_log) = (log(), log());
    let static_chain = (
        Member::new(Adder { tag: "a", add: Some(2), log: static_log.clone() }),
        Member::new(Failing),
        Member::new(AsyncAdder { tag: "b", add: Some(3), log: static_log.clone() }),
        Member::new(PanicsSync),
        Member::new(Adder { tag: "c", add: None, log: static_log.clone() }),
    );
    let dyn_chain: DynChain = [
        Box::new(Adder { tag: "a", add: Some(2), log: dyn_log.clone() }) as Box<dyn DynPlugin>,
        Box::new(Failing),
        Box::new(AsyncAdder { tag: "b", add: Some(3), log: dyn_log.clone() }),
        Box::new(PanicsSync),
        Box::new(Adder { tag: "c", add: None, log: dyn_log.clone() }),
    ]
    .into_iter()
    .collect();

    for _ in 0..2 {
        assert_eq!(run_args(&static_chain).await, run_args(&dyn_chain).await);
    }
    assert_eq!(take(&static_log), take(&dyn_log));
    assert_eq!(counts(&static_chain), counts(&dyn_chain));
    let mut static_info = Vec::new();
    let mut dyn_info = Vec::new();
    static_chain.describe(&mut static_info);
    dyn_chain.describe(&mut dyn_info);
    assert_eq!(static_info, dyn_info);
    assert_eq!(dyn_info[0].triggers, ["task_executor_args_replace"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dyn_failures_and_panics_are_caught_counted_and_the_chain_goes_on() {
    let log = log();
    let mut chain = DynChain::new();
    chain.push(Box::new(Failing));
    chain.push(Box::new(PanicsSync));
    chain.push(Box::new(PanicsAsync));
    chain.push(Box::new(Adder { tag: "after", add: Some(1), log: log.clone() }));
    for _ in 0..3 {
        assert_eq!(run_args(&chain).await, (json!([2]), true));
    }
    assert_eq!(
        counts(&chain),
        [
            ("failing".to_owned(), 3, 0),
            ("panics_sync".to_owned(), 0, 3),
            ("panics_async".to_owned(), 0, 3),
            ("Adder".to_owned(), 0, 0)
        ]
    );
    assert_eq!(take(&log).len(), 3);
}

#[tokio::test]
async fn a_halting_dyn_plugin_stops_the_chain_and_the_app_chain_around_it() {
    let log = log();
    let mut chain = DynChain::new();
    chain.push(Box::new(Adder { tag: "before", add: Some(1), log: log.clone() }));
    chain.push(Box::new(Managed::new(Failing).on_error(OnError::Stop)));
    chain.push(Box::new(Adder { tag: "skipped", add: Some(100), log: log.clone() }));
    assert_eq!(run_args(&chain).await, (json!([2]), false));
    assert_eq!(take(&log), ["before saw [1]"]);

    // Nested in a static chain, the halt skips the static members after it.
    let outer = (chain, Member::new(Adder { tag: "outer", add: Some(1000), log: log.clone() }));
    assert_eq!(run_args(&outer).await, (json!([2]), false));
    assert_eq!(take(&log), ["before saw [1]"]);
    assert_eq!(counts(&outer.0)[1], ("failing".to_owned(), 2, 0));

    // Switched off by name (a managed plugin stays switchable behind dyn).
    assert_eq!(outer.set_enabled("failing", false), 1);
    assert_eq!(run_args(&outer).await, (json!([1102]), true));
    let mut info = Vec::new();
    outer.describe(&mut info);
    assert_eq!(info[1].enabled, Some(false));
}

/// Records its lifecycle; fails to start if told so.
struct Life {
    name: &'static str,
    fail: bool,
    log: Log,
}

#[plugin]
impl Life {
    async fn start(&self) -> Result<(), std::io::Error> {
        self.log.lock().unwrap().push(format!("start {}", self.name));
        if self.fail { Err(std::io::Error::other("no database")) } else { Ok(()) }
    }

    fn stop(&self) {
        self.log.lock().unwrap().push(format!("stop {}", self.name));
    }
}

fn lives(log: &Log, fail: &str) -> DynChain {
    ["a", "b", "c", "d"]
        .into_iter()
        .map(|name| Box::new(Life { name, fail: name == fail, log: log.clone() }) as Box<dyn DynPlugin>)
        .collect()
}

#[tokio::test]
async fn dyn_plugins_start_in_order_stop_in_reverse_and_roll_back_a_failed_start() {
    let log = log();
    let chain = lives(&log, "");
    chain.start().await.unwrap();
    chain.stop().await;
    assert_eq!(take(&log), ["start a", "start b", "start c", "start d", "stop d", "stop c", "stop b", "stop a"]);

    let chain = lives(&log, "c");
    let error = chain.start().await.expect_err("start-up must fail");
    assert_eq!(error.plugin, "Life");
    assert!(error.to_string().contains("no database"));
    assert_eq!(take(&log), ["start a", "start b", "start c", "stop b", "stop a"]);
}

// ---- the test harness ----

/// A sync replace handler.
#[plugin(on = "worker_execute_before")]
fn tag(ctx: &WorkerExecuteBefore<'_>) -> Option<qtasks::TaskRecord> {
    let mut model = ctx.model.clone();
    model.extra.insert("tagged".into(), json!(ctx.task.name));
    Some(model)
}

#[test]
fn the_harness_runs_a_sync_plugin_in_a_plain_test() {
    let message = testing::message("add", json!([1, 2]));
    let model = qtasks::TaskRecord::from_message(&message, TaskStatus::Process);
    let mut ctx = WorkerExecuteBefore { app: "test", task: testing::task_info("add"), message: &message, model };
    let fired = testing::fire_blocking(&Tag, &mut ctx);
    assert_eq!(fired, testing::Fired { called: true, replaced: true, ..Default::default() });
    assert_eq!(ctx.model.extra["tagged"], json!("add"));
    assert_eq!(ctx.model.uuid, message.uuid);
    assert!(std::ptr::eq(testing::task_info("add"), ctx.task), "one TaskInfo per name");

    // Not listening: not called, nothing changed.
    let mut other = WorkerStart { app: "test", max_tasks_process: 1 };
    assert_eq!(testing::fire_blocking(&Tag, &mut other), testing::Fired::default());

    // A panic is caught and reported.
    let mut ctx =
        TaskExecutorArgsReplace { app: "test", task: testing::task_info("add"), message: &message, args: json!([1]) };
    let fired = testing::fire_blocking(&PanicsSync, &mut ctx);
    assert!(fired.called && fired.panicked && !fired.replaced);
    assert!(fired.error.unwrap().contains("sync handler bug"));

    let record = testing::record("add", json!([3]), TaskStatus::Success);
    assert_eq!((record.task_name.as_str(), record.status, record.args), ("add", TaskStatus::Success, json!([3])));
}

/// An async observer that fails after a timer.
#[plugin(on = "task_executor_run_task")]
async fn slow_check(ctx: &TaskExecutorRunTask<'_>) -> Result<Option<Value>, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if ctx.result.is_object() {
        Ok(Some(json!({"checked": ctx.result.clone()})))
    } else {
        Err(std::io::Error::other("not an object"))
    }
}

#[tokio::test]
async fn the_harness_runs_an_async_plugin_in_a_tokio_test() {
    let message = testing::message("add", json!([1, 2]));
    let task = testing::task_info("add");
    let mut ctx = TaskExecutorRunTask { app: "test", task, message: &message, result: json!(3) };
    let fired = testing::fire(&SlowCheck, &mut ctx).await;
    assert_eq!(fired.error.as_deref(), Some("not an object"));
    assert!(fired.called && !fired.replaced && !fired.panicked && !fired.halted);
    assert_eq!(ctx.result, json!(3));

    ctx.result = json!({"sum": 3});
    let fired = testing::fire(&SlowCheck, &mut ctx).await;
    assert!(fired.replaced);
    assert_eq!(ctx.result, json!({"checked": {"sum": 3}}));

    // An async panic and a managed plugin's halt.
    let mut args = TaskExecutorArgsReplace { app: "test", task, message: &message, args: json!([1]) };
    assert!(testing::fire(&PanicsAsync, &mut args).await.panicked);
    let halting = Managed::new(Failing).on_error(OnError::Stop);
    let fired = testing::fire(&halting, &mut args).await;
    assert!(fired.halted && fired.error.as_deref() == Some("handler broke"));

    // The wildcard through the harness: called, never replaces.
    let recorder = Recorder::default();
    let fired = testing::fire(&Globals(recorder.clone()), &mut args).await;
    assert_eq!(fired, testing::Fired { called: true, ..Default::default() });
    assert_eq!(recorder.0.lock().unwrap()[0].task_id, Some(message.uuid));
}

#[tokio::test]
async fn an_app_runs_plugins_chosen_at_run_time_after_its_static_ones() {
    let log = log();
    // E.g. read from a config file: which plugins, in which order.
    let configured = ["ten", "hundred"];
    let dynamic: DynChain = configured
        .iter()
        .map(|name| -> Box<dyn DynPlugin> {
            let add = if *name == "ten" { 10 } else { 100 };
            Box::new(Adder { tag: name, add: Some(add), log: log.clone() })
        })
        .collect();
    let app = QueueTasks::builder("dyn-app")
        .task::<Echo>()
        .plugin(Adder { tag: "static", add: Some(1), log: log.clone() })
        .dyn_plugins(dynamic)
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("echo", [0]).await.unwrap().record(Duration::from_secs(10)).await.unwrap();
    assert_eq!((task.status, task.result), (TaskStatus::Success, Some(json!(111))));
    assert_eq!(take(&log), ["static saw [0]", "ten saw [1]", "hundred saw [11]"]);
    let names: Vec<_> = app.plugins().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["Adder", "Adder", "Adder"]);
    worker.shutdown().await;
}
