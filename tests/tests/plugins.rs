//! Plugins: replace semantics, order, failures, lifecycle, the plugin-error
//! rescue, blocking handlers and where each trigger fires.

mod support;

use qtasks::triggers::*;
use qtasks::{Error, PluginError, QueueTasks, TaskContext, TaskStatus, Value, json, plugin, task};
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Gate, HANG};

const WAIT: Duration = Duration::from_secs(10);

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::default()
}

#[task]
async fn echo(x: Value) -> Value {
    x
}

/// Adds `add` to the first argument and records what it saw.
struct Adder {
    tag: &'static str,
    add: Option<i64>,
    log: Log,
}

#[plugin]
impl Adder {
    fn task_executor_args_replace(&self, ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
        self.log.lock().unwrap().push(format!("{} saw {}", self.tag, ctx.args));
        let add = self.add?;
        Some(json!([ctx.args[0].as_i64().unwrap() + add]))
    }
}

#[tokio::test]
async fn replace_handlers_run_in_order_see_the_previous_value_and_the_last_some_wins() {
    let log = log();
    let app = QueueTasks::builder("replace")
        .task::<Echo>()
        .plugin(Adder { tag: "first", add: Some(1), log: log.clone() })
        .plugin(Adder { tag: "second", add: None, log: log.clone() })
        .plugin(Adder { tag: "third", add: Some(10), log: log.clone() })
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("echo", [1]).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(task.result, Some(json!(12)));
    assert_eq!(*log.lock().unwrap(), ["first saw [1]", "second saw [2]", "third saw [2]"]);
    let names: Vec<_> = app.plugins().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["Adder", "Adder", "Adder"]);
    worker.shutdown().await;
}

/// A replace handler that fails.
#[plugin(on = "task_executor_run_task")]
fn broken_result(_ctx: &TaskExecutorRunTask<'_>) -> Result<Option<Value>, std::io::Error> {
    Err(std::io::Error::other("handler broke"))
}

/// An observer that fails.
#[plugin(on = "worker_execute_after")]
async fn broken_observer(_ctx: &WorkerExecuteAfter<'_>) -> Result<(), std::io::Error> {
    Err(std::io::Error::other("observer broke"))
}

#[tokio::test]
async fn a_failing_handler_counts_as_no_value_and_never_changes_the_outcome() {
    let app =
        QueueTasks::builder("failing").task::<Echo>().plugin(BrokenResult).plugin(BrokenObserver).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("echo", ["kept"]).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Success);
    assert_eq!(task.result, Some(json!("kept")));
    worker.shutdown().await;
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

    fn worker_start(&self, _ctx: &WorkerStart<'_>) {
        self.log.lock().unwrap().push(format!("worker_start {}", self.name));
    }
}

#[tokio::test]
async fn plugins_start_in_order_before_work_and_stop_in_reverse_once() {
    let log = log();
    let app = QueueTasks::builder("life")
        .task::<Echo>()
        .plugin(Life { name: "a", fail: false, log: log.clone() })
        .plugin(Life { name: "b", fail: false, log: log.clone() })
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    app.add_task("echo", [1]).await.unwrap().record(WAIT).await.unwrap();
    worker.shutdown().await;
    assert_eq!(*log.lock().unwrap(), ["start a", "start b", "worker_start a", "worker_start b", "stop b", "stop a"]);
}

#[tokio::test]
async fn a_failing_start_stops_start_up_and_stops_the_started_plugins_in_reverse() {
    let log = log();
    let app = QueueTasks::builder("broken-start")
        .plugin(Life { name: "a", fail: false, log: log.clone() })
        .plugin(Life { name: "b", fail: false, log: log.clone() })
        .plugin(Life { name: "c", fail: true, log: log.clone() })
        .plugin(Life { name: "d", fail: false, log: log.clone() })
        .build()
        .unwrap();
    let error = app.worker().start().await.err().expect("start-up must fail");
    assert!(matches!(&error, Error::PluginStart { plugin, .. } if plugin == "Life"));
    assert!(error.to_string().contains("no database"));
    assert_eq!(*log.lock().unwrap(), ["start a", "start b", "start c", "stop b", "stop a"]);
}

#[task]
async fn raises(ctx: TaskContext) -> Result<i64, PluginError> {
    Err(ctx.plugin_error("Non-standard situation").field("code", 7))
}

#[task]
async fn raises_directly() -> Result<i64, PluginError> {
    Err(PluginError::new("Direct error"))
}

/// The seed's rescuer: returns 123 and records what it saw.
#[plugin(on = "task_executor_run_task_trigger_error")]
fn rescue_123(ctx: &TaskExecutorRunTaskTriggerError<'_>) -> Option<Value> {
    assert_eq!(ctx.error.reason(), ctx.error.to_string());
    assert_eq!(ctx.message.task_name, ctx.task.name);
    Some(json!(123))
}

/// A later rescuer: the last `Some` wins, and it sees the earlier value.
#[plugin(on = "task_executor_run_task_trigger_error")]
async fn rescue_later(ctx: &TaskExecutorRunTaskTriggerError<'_>) -> Option<Value> {
    Some(json!({ "earlier": ctx.result.clone(), "code": ctx.error.fields().get("code").cloned() }))
}

/// A rescuer that fails: counts as no result.
#[plugin(on = "task_executor_run_task_trigger_error")]
fn rescue_broken(_ctx: &TaskExecutorRunTaskTriggerError<'_>) -> Result<Option<Value>, std::io::Error> {
    Err(std::io::Error::other("rescuer broke"))
}

#[tokio::test]
async fn a_plugin_error_is_rescued_by_a_handler_value_and_ends_success() {
    let app =
        QueueTasks::builder("rescue").task::<Raises>().task::<RaisesDirectly>().plugin(Rescue123).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    for name in ["raises", "raises_directly"] {
        let task = app.add_task(name, ()).await.unwrap().record(WAIT).await.unwrap();
        assert_eq!((task.status, task.result), (TaskStatus::Success, Some(json!(123))), "{name}");
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn without_a_rescue_the_task_ends_error_with_the_reason() {
    let app = QueueTasks::builder("no-rescue").task::<Raises>().plugin(RescueBroken).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("raises", ()).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Error);
    assert_eq!(task.error.as_deref(), Some("Non-standard situation"));
    worker.shutdown().await;
}

#[tokio::test]
async fn the_last_rescue_wins_and_sees_the_earlier_one() {
    let app = QueueTasks::builder("two-rescues")
        .task::<Raises>()
        .plugin(Rescue123)
        .plugin(RescueBroken)
        .plugin(RescueLater)
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("raises", ()).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Success);
    assert_eq!(task.result, Some(json!({"earlier": 123, "code": 7})));
    worker.shutdown().await;
}

static AUDITS_IN: AtomicUsize = AtomicUsize::new(0);
static AUDIT_GATE: Gate = Gate::new();
static AUDIT_GAVE_UP: AtomicBool = AtomicBool::new(false);

/// A blocking handler: holds its thread until the test opens the gate.
#[plugin(on = "task_executor_before_execute", blocking)]
fn slow_audit(ctx: &TaskExecutorBeforeExecute<'_>) {
    assert_eq!(ctx.task.name, "echo");
    AUDITS_IN.fetch_add(1, Ordering::SeqCst);
    if !AUDIT_GATE.wait() {
        AUDIT_GAVE_UP.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_does_not_stall_the_runtime() {
    let app = QueueTasks::builder("blocking").task::<Echo>().plugin(SlowAudit).build().unwrap();
    let worker = app.worker().max_tasks_process(4).start().await.unwrap();
    let ids: Vec<_> = futures::future::join_all((0..2).map(|i| app.add_task("echo", [i]).into_future()))
        .await
        .into_iter()
        .map(|t| t.unwrap().uuid())
        .collect();
    // Both handlers hold a thread until a task on the runtime opens the
    // gate. Run on the runtime's two worker threads, they would leave that
    // task no thread: the gate would stay shut until they gave up (`HANG`).
    let opener = tokio::spawn(async {
        let both_in = support::eventually(HANG, || AUDITS_IN.load(Ordering::SeqCst) == 2).await;
        AUDIT_GATE.open();
        both_in
    });
    assert!(opener.await.unwrap(), "the two handlers never ran at once");
    for id in ids {
        assert_eq!(app.wait(id, WAIT).await.unwrap().status, TaskStatus::Success);
    }
    assert!(!AUDIT_GAVE_UP.load(Ordering::SeqCst), "the runtime stalled while blocking handlers ran");
    worker.shutdown().await;
}

/// Records every trigger it sees, in order.
struct Tracer {
    log: Log,
}

impl Tracer {
    fn note(&self, name: &str) {
        self.log.lock().unwrap().push(name.to_owned());
    }
}

#[plugin]
impl Tracer {
    fn qtasks_add_task_before_broker(&self, _: &QtasksAddTaskBeforeBroker<'_>) -> Option<qtasks::NewTask> {
        self.note("qtasks_add_task_before_broker");
        None
    }
    fn broker_add_before(&self, _: &BrokerAddBefore<'_>) -> Option<qtasks::TaskRecord> {
        self.note("broker_add_before");
        None
    }
    fn storage_add(&self, _: &StorageAdd<'_>) -> Option<qtasks::TaskRecord> {
        self.note("storage_add");
        None
    }
    fn broker_add_after(&self, _: &BrokerAddAfter<'_>) {
        self.note("broker_add_after");
    }
    fn qtasks_add_task_after_broker(&self, _: &QtasksAddTaskAfterBroker<'_>) {
        self.note("qtasks_add_task_after_broker");
    }
    fn starter_start(&self, _: &StarterStart<'_>) {
        self.note("starter_start");
    }
    fn worker_start(&self, _: &WorkerStart<'_>) {
        self.note("worker_start");
    }
    fn broker_start(&self, _: &BrokerStart<'_>) {
        self.note("broker_start");
    }
    fn storage_start(&self, _: &StorageStart<'_>) {
        self.note("storage_start");
    }
    fn global_config_start(&self, _: &GlobalConfigStart<'_>) {
        self.note("global_config_start");
    }
    fn global_config_set(&self, ctx: &GlobalConfigSet<'_>) -> Option<Value> {
        self.note(&format!("global_config_set({})", ctx.name));
        None
    }
    fn global_config_set_status(&self, _: &GlobalConfigSetStatus<'_>) {
        self.note("global_config_set_status");
    }
    fn global_config_stop(&self, _: &GlobalConfigStop<'_>) {
        self.note("global_config_stop");
    }
    fn broker_listen_start(&self, _: &BrokerListenStart<'_>) {
        self.note("broker_listen_start");
    }
    fn broker_add_worker(&self, _: &BrokerAddWorker<'_>) -> Option<qtasks::TaskMessage> {
        self.note("broker_add_worker");
        None
    }
    fn storage_add_process(&self, _: &StorageAddProcess<'_>) -> Option<qtasks::TaskMessage> {
        self.note("storage_add_process");
        None
    }
    fn worker_add(&self, _: &WorkerAdd<'_>) -> Option<qtasks::TaskMessage> {
        self.note("worker_add");
        None
    }
    fn worker_execute_before(&self, _: &WorkerExecuteBefore<'_>) -> Option<qtasks::TaskRecord> {
        self.note("worker_execute_before");
        None
    }
    fn broker_update(&self, _: &BrokerUpdate<'_>) -> Option<qtasks::TaskRecord> {
        self.note("broker_update");
        None
    }
    fn storage_update(&self, _: &StorageUpdate<'_>) -> Option<qtasks::TaskRecord> {
        self.note("storage_update");
        None
    }
    fn worker_run_task_before(&self, _: &WorkerRunTaskBefore<'_>) {
        self.note("worker_run_task_before");
    }
    fn task_executor_middlewares_execute(&self, ctx: &TaskExecutorMiddlewaresExecute<'_>) {
        self.note(&format!("task_executor_middlewares_execute({:?})", ctx.phase));
    }
    fn task_executor_args_replace(&self, _: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
        self.note("task_executor_args_replace");
        None
    }
    fn task_executor_before_execute(&self, _: &TaskExecutorBeforeExecute<'_>) {
        self.note("task_executor_before_execute");
    }
    fn task_executor_run_task(&self, _: &TaskExecutorRunTask<'_>) -> Option<Value> {
        self.note("task_executor_run_task");
        None
    }
    fn task_executor_after_execute(&self, _: &TaskExecutorAfterExecute<'_>) {
        self.note("task_executor_after_execute");
    }
    fn task_executor_after_execute_result_replace(
        &self,
        _: &TaskExecutorAfterExecuteResultReplace<'_>,
    ) -> Option<Value> {
        self.note("task_executor_after_execute_result_replace");
        None
    }
    fn task_executor_decode(&self, _: &TaskExecutorDecode<'_>) -> Option<Value> {
        self.note("task_executor_decode");
        None
    }
    fn task_executor_task_close(&self, _: &TaskExecutorTaskClose<'_>) {
        self.note("task_executor_task_close");
    }
    fn worker_remove_finished_task(&self, _: &WorkerRemoveFinishedTask<'_>) -> Option<qtasks::TaskRecord> {
        self.note("worker_remove_finished_task");
        None
    }
    fn broker_remove_finished_task(&self, _: &BrokerRemoveFinishedTask<'_>) -> Option<qtasks::TaskRecord> {
        self.note("broker_remove_finished_task");
        None
    }
    fn storage_remove_finished_task(&self, _: &StorageRemoveFinishedTask<'_>) {
        self.note("storage_remove_finished_task");
    }
    async fn worker_execute_after(&self, _: &WorkerExecuteAfter<'_>) {
        self.note("worker_execute_after");
    }
    fn starter_stop(&self, _: &StarterStop<'_>) {
        self.note("starter_stop");
    }
    fn broker_stop(&self, _: &BrokerStop<'_>) {
        self.note("broker_stop");
    }
    fn worker_stop(&self, _: &WorkerStop<'_>) {
        self.note("worker_stop");
    }
    fn storage_stop(&self, _: &StorageStop<'_>) {
        self.note("storage_stop");
    }
}

#[tokio::test]
async fn triggers_fire_in_qtasks_order() {
    let log = log();
    let app = QueueTasks::builder("order").task::<Echo>().plugin(Tracer { log: log.clone() }).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("echo", [1]).await.unwrap();
    let done = app.wait(task.uuid(), WAIT).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success);
    worker.shutdown().await;
    let expected = [
        // start-up
        "starter_start",
        "worker_start",
        "broker_start",
        "storage_start",
        "global_config_start",
        "global_config_set(workers)",
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
        "task_executor_middlewares_execute(Before)",
        "task_executor_args_replace",
        "task_executor_before_execute",
        "task_executor_run_task",
        "task_executor_after_execute",
        "task_executor_after_execute_result_replace",
        "task_executor_middlewares_execute(After)",
        "task_executor_decode",
        "task_executor_task_close",
        // finish
        "worker_remove_finished_task",
        "broker_remove_finished_task",
        "storage_remove_finished_task",
        "worker_execute_after",
        // shutdown (starter_stop and broker_stop may overtake the task's last
        // finish triggers; worker_stop waits for in-flight tasks)
        "worker_stop",
        "storage_stop",
        "global_config_stop",
    ];
    let log = log.lock().unwrap().clone();
    let early_stops: Vec<_> = log.iter().filter(|n| *n == "starter_stop" || *n == "broker_stop").collect();
    assert_eq!(early_stops, ["starter_stop", "broker_stop"]);
    let rest: Vec<_> = log.iter().filter(|n| *n != "starter_stop" && *n != "broker_stop").cloned().collect();
    assert_eq!(rest, expected);
}

/// Panics in a sync handler.
#[plugin(on = "task_executor_before_execute")]
fn panics_sync(_ctx: &TaskExecutorBeforeExecute<'_>) {
    panic!("sync handler bug");
}

/// Panics in an async handler, after an await.
#[plugin(on = "task_executor_run_task")]
async fn panics_async(_ctx: &TaskExecutorRunTask<'_>) -> Option<Value> {
    tokio::task::yield_now().await;
    panic!("async handler bug");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handlers_are_isolated_counted_and_the_chain_goes_on() {
    let log = log();
    let app = QueueTasks::builder("panics")
        .task::<Echo>()
        .plugin(PanicsSync)
        .plugin(PanicsAsync)
        .plugin(Adder { tag: "after", add: Some(1), log: log.clone() })
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    for n in 0..3 {
        let task = app.add_task("echo", [n]).await.unwrap().record(WAIT).await.unwrap();
        // The task is unaffected, and the plugin after the panicking ones still ran.
        assert_eq!((task.status, task.result), (TaskStatus::Success, Some(json!(n + 1))));
    }
    let counts: Vec<_> = app.plugins().into_iter().map(|p| (p.name, p.errors, p.panics)).collect();
    assert_eq!(
        counts,
        [("panics_sync".to_owned(), 0, 3), ("panics_async".to_owned(), 0, 3), ("Adder".to_owned(), 0, 0)]
    );
    worker.shutdown().await;
}
