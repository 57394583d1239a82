//! Retry and cancellation, on the in-memory backend and on Redis
//! (QTasks behaviours E2, E3 and E8; the cancellation cases of
//! reference §C.6). Every check is a generic function over the backend,
//! run as `memory_<check>` and `redis_<check>`.

mod support;

use qtasks::backend::CancelOutcome;
use qtasks::triggers::{
    BrokerAddWorker, BrokerRemoveFinishedTask, StorageAddProcess, StorageRemoveFinishedTask, WorkerAdd,
    WorkerExecuteAfter, WorkerRemoveFinishedTask,
};
use qtasks::{
    Backend, Client, MemoryBackend, QueueTasks, TaskContext, TaskError, TaskRecord, TaskStatus, WaitError, json,
    plugin, task,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Runs per test key: tasks count their runs under a key their arguments name,
/// so checks running at once never share a counter.
static RUNS: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

fn bump(key: &str) -> u32 {
    let mut runs = RUNS.lock().unwrap();
    let n = runs.get_or_insert_with(HashMap::new).entry(key.to_owned()).or_insert(0);
    *n += 1;
    *n
}

fn runs(key: &str) -> u32 {
    RUNS.lock().unwrap().as_ref().and_then(|r| r.get(key).copied()).unwrap_or(0)
}

#[derive(Debug)]
struct Transient;
impl fmt::Display for Transient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("transient failure")
    }
}
impl std::error::Error for Transient {}

#[derive(Debug)]
struct Fatal;
impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fatal failure")
    }
}
impl std::error::Error for Fatal {}

/// E2: retried on `Transient` only, five times.
#[task(retry = 5, retry_on = [Transient])]
async fn divide(key: String, fail_first: u32) -> Result<u32, TaskError> {
    let run = bump(&key);
    if run <= fail_first { Err(Transient.into()) } else { Ok(run) }
}

/// Retried on `Transient` only, but fails with `Fatal`.
#[task(retry = 5, retry_on = [Transient])]
async fn fails_fatally(key: String) -> Result<u32, TaskError> {
    bump(&key);
    Err(Fatal.into())
}

/// E3: retried on any error.
#[task(retry = 2)]
fn any_error(key: String) -> Result<u32, TaskError> {
    bump(&key);
    Err(TaskError::msg("key not found"))
}

/// Retried after a backoff of 0.2 s, then 0.4 s.
#[task(retry = 2, backoff = 0.2)]
async fn slow_retry(key: String) -> Result<u32, TaskError> {
    bump(&key);
    Err(TaskError::msg("again"))
}

/// Counts its runs; sleeps an hour: it ends within a test only if stopped.
#[task]
async fn sleeper(key: String) -> u32 {
    bump(&key);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    0
}

/// A blocking task that polls its token and returns normally when cancelled.
#[task]
fn poller(ctx: &TaskContext, key: String) -> u32 {
    bump(&key);
    for _ in 0..3000 {
        if ctx.is_cancelled() {
            return 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    0
}

/// An async task that notices cancellation and returns a value anyway.
#[task]
async fn noticing(ctx: TaskContext, key: String) -> u32 {
    bump(&key);
    let noticed = ctx.cancellation().run_until_cancelled(tokio::time::sleep(Duration::from_secs(30))).await;
    u32::from(noticed.is_err())
}

#[task]
async fn quick(key: String) -> u32 {
    bump(&key)
}

type Tasks = (Divide, FailsFatally, AnyError, SlowRetry, Sleeper, Poller, Noticing, Quick);

fn app<B: Backend>(name: &str, backend: B) -> QueueTasks<(Tasks,), (), B> {
    QueueTasks::builder(support::app_name(name, &backend)).tasks::<Tasks>().backend(backend).build().unwrap()
}

fn key(check: &str) -> String {
    format!("{check}-{}", Uuid::new_v4())
}

async fn record<B: Backend>(
    app: &QueueTasks<(Tasks,), (), B>,
    uuid: Uuid,
) -> Result<TaskRecord, Box<dyn std::error::Error + Send + Sync>> {
    Ok(app.get(uuid).await?.ok_or("record missing")?)
}

fn link(task: &TaskRecord, field: &str) -> Option<Uuid> {
    task.extra.get(field)?.as_str()?.parse().ok()
}

/// Waits until `cond` holds, for at most `WAIT`.
async fn eventually(cond: impl FnMut() -> bool) -> bool {
    support::eventually(WAIT, cond).await
}

// ---------------------------------------------------------------------------
// Retry
// ---------------------------------------------------------------------------

/// E2: five retries on a matching error: six runs, each attempt linked to
/// the previous one, and waiting on the first id gives the last attempt's
/// `error` with `retry = 0`.
async fn retries_run_one_plus_n_times<B: Backend>(backend: B) -> TestResult {
    let app = app("retry-e2", backend);
    let worker = app.worker().start().await?;
    let k = key("e2");
    let first = app.add_task("divide", json!([k, 100])).await?;
    let last = app.wait(first.uuid(), WAIT).await?;
    assert_eq!(runs(&k), 6, "1 run + 5 retries");
    assert_eq!(last.status, TaskStatus::Error);
    assert_eq!(last.error.as_deref(), Some("transient failure"));
    assert_eq!(last.attempt, 6);
    assert_eq!(last.extra.get("retry"), Some(&json!(0)));

    // The chain of records: retry → retry → … → error, linked both ways.
    let mut uuid = first.uuid();
    for attempt in 1..=5 {
        let r = record(&app, uuid).await?;
        assert_eq!((r.status, r.attempt), (TaskStatus::Retry, attempt));
        assert_eq!(r.extra.get("retry"), Some(&json!(6 - attempt)));
        let child = link(&r, "retry_child_uuid").ok_or("no child link")?;
        assert_eq!(link(&record(&app, child).await?, "retry_parent_uuid"), Some(uuid));
        uuid = child;
    }
    assert_eq!(uuid, last.uuid);
    worker.shutdown().await;
    Ok(())
}

/// A run that fails twice then succeeds: waiting on the first id, and the
/// typed handle, give the third attempt's result.
async fn waiting_follows_retries_to_success<B: Backend>(backend: B) -> TestResult {
    let app = app("retry-success", backend);
    let worker = app.worker().start().await?;
    let k = key("success");
    let handle = app.enqueue(Divide::call(k.clone(), 2)).await?;
    assert_eq!(handle.result(WAIT).await?, 3);
    let done = app.wait(handle.uuid(), WAIT).await?;
    assert_eq!((done.status, done.attempt), (TaskStatus::Success, 3));
    assert_eq!(runs(&k), 3);
    worker.shutdown().await;
    Ok(())
}

/// `retry_on` matches by error type: another error is not retried.
async fn other_errors_are_not_retried<B: Backend>(backend: B) -> TestResult {
    let app = app("retry-other", backend);
    let worker = app.worker().start().await?;
    let k = key("fails_fatally");
    let done = app.add_task("fails_fatally", json!([k])).await?.record(WAIT).await?;
    assert_eq!((done.status, done.error.as_deref()), (TaskStatus::Error, Some("fatal failure")));
    assert_eq!(runs(&k), 1);
    assert!(link(&done, "retry_child_uuid").is_none());
    worker.shutdown().await;
    Ok(())
}

/// E3: without `retry_on`, any error is retried (a sync task here).
async fn any_error_is_retried_without_retry_on<B: Backend>(backend: B) -> TestResult {
    let app = app("retry-any", backend);
    let worker = app.worker().start().await?;
    let k = key("any");
    let done = app.add_task("any_error", json!([k])).await?.record(WAIT).await?;
    assert_eq!((done.status, done.attempt), (TaskStatus::Error, 3));
    assert_eq!(runs(&k), 3);
    worker.shutdown().await;
    Ok(())
}

/// Arguments that do not decode are never retried: a retry cannot fix them.
async fn invalid_arguments_are_not_retried<B: Backend>(backend: B) -> TestResult {
    let app = app("retry-args", backend);
    let worker = app.worker().start().await?;
    let done = app.add_task("any_error", json!(["k", "extra", "args"])).await?.record(WAIT).await?;
    assert_eq!((done.status, done.attempt), (TaskStatus::Error, 1));
    assert!(done.error.as_deref().unwrap_or("").contains("invalid arguments"), "{:?}", done.error);
    worker.shutdown().await;
    Ok(())
}

/// A backoff delays each retry: the second attempt starts at least 0.2 s
/// after the first ended, the third at least 0.4 s after the second.
async fn backoff_delays_retries<B: Backend>(backend: B) -> TestResult {
    let app = app("retry-backoff", backend);
    let worker = app.worker().start().await?;
    let k = key("backoff");
    let first = app.add_task("slow_retry", json!([k])).await?;
    let last = app.wait(first.uuid(), WAIT).await?;
    assert_eq!((last.status, runs(&k)), (TaskStatus::Error, 3));
    let a1 = record(&app, first.uuid()).await?;
    let a2 = record(&app, link(&a1, "retry_child_uuid").ok_or("no child")?).await?;
    // `updated_at` of an ended attempt is when it ended; of the last one, when it ended too,
    // so the gaps below are lower bounds on the delay before each retry ran.
    assert!(
        a2.updated_at - a1.updated_at >= 0.2,
        "second attempt ran {} s after the first",
        a2.updated_at - a1.updated_at
    );
    assert!(
        last.updated_at - a2.updated_at >= 0.4,
        "third attempt ran {} s after the second",
        last.updated_at - a2.updated_at
    );
    worker.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------

/// A queued task that is cancelled never runs, also by a worker started
/// afterwards; the record says `cancel` with the reason; cancel again and
/// the answer is that it has finished.
async fn a_cancelled_queued_task_never_runs<B: Backend>(backend: B) -> TestResult {
    let app = app("cancel-queued", backend);
    let k = key("queued");
    let task = app.add_task("quick", json!([k])).await?;
    assert_eq!(app.cancel(task.uuid(), "not needed").await?, CancelOutcome::Cancelled);
    let done = app.wait(task.uuid(), WAIT).await?;
    assert_eq!((done.status, done.error.as_deref()), (TaskStatus::Cancel, Some("not needed")));

    // A worker started afterwards takes the queue entry and drops it.
    let worker = app.worker().start().await?;
    let later = app.add_task("quick", json!([k])).await?.record(WAIT).await?;
    assert_eq!(later.status, TaskStatus::Success);
    assert_eq!(runs(&k), 1, "only the task enqueued after the cancel ran");
    assert_eq!(app.cancel(task.uuid(), "again").await?, CancelOutcome::Finished(TaskStatus::Cancel));
    assert_eq!(record(&app, task.uuid()).await?.error.as_deref(), Some("not needed"));
    worker.shutdown().await;
    Ok(())
}

/// Cancelling a finished task changes nothing; an unknown id is reported.
async fn cancel_is_a_no_op_on_finished_tasks<B: Backend>(backend: B) -> TestResult {
    let app = app("cancel-finished", backend);
    let worker = app.worker().start().await?;
    let done = app.add_task("quick", json!([key("finished")])).await?.record(WAIT).await?;
    assert_eq!(app.cancel(done.uuid, "too late").await?, CancelOutcome::Finished(TaskStatus::Success));
    assert_eq!(record(&app, done.uuid).await?, done);
    assert_eq!(app.cancel(Uuid::new_v4(), "who?").await?, CancelOutcome::NotFound);
    worker.shutdown().await;
    Ok(())
}

/// An async task awaiting an hour-long sleep is stopped at that await and
/// ends `cancel` with the reason (waited for `WAIT` at most: the sleep
/// cannot end meanwhile).
async fn a_running_async_task_stops_at_its_await<B: Backend>(backend: B) -> TestResult {
    let app = app("cancel-async", backend);
    let worker = app.worker().start().await?;
    let k = key("async");
    let handle = app.enqueue(Sleeper::call(k.clone())).await?;
    assert!(eventually(|| runs(&k) == 1).await, "the task never started");
    assert_eq!(app.cancel(handle.uuid(), "user asked").await?, CancelOutcome::Requested);
    match handle.result(WAIT).await {
        Err(WaitError::Cancelled(reason)) => assert_eq!(reason, "user asked"),
        other => panic!("expected a cancelled task, got {other:?}"),
    }
    worker.shutdown().await;
    Ok(())
}

/// A blocking task sees `is_cancelled()`; what it returns afterwards does
/// not make it a success.
async fn a_blocking_task_sees_its_token<B: Backend>(backend: B) -> TestResult {
    let app = app("cancel-blocking", backend);
    let worker = app.worker().start().await?;
    let k = key("blocking");
    let task = app.add_task("poller", json!([k])).await?;
    assert!(eventually(|| runs(&k) == 1).await, "the task never started");
    assert_eq!(app.cancel(task.uuid(), "stop polling").await?, CancelOutcome::Requested);
    let done = app.wait(task.uuid(), WAIT).await?;
    assert_eq!((done.status, done.error.as_deref()), (TaskStatus::Cancel, Some("stop polling")));
    assert_eq!(done.result, None);
    worker.shutdown().await;
    Ok(())
}

/// An async task that notices the cancellation and returns normally ends
/// `cancel`, not `success`.
async fn returning_after_noticing_ends_cancel<B: Backend>(backend: B) -> TestResult {
    let app = app("cancel-noticing", backend);
    let worker = app.worker().start().await?;
    let k = key("noticing");
    let task = app.add_task("noticing", json!([k])).await?;
    assert!(eventually(|| runs(&k) == 1).await, "the task never started");
    app.cancel(task.uuid(), "enough").await?;
    let done = app.wait(task.uuid(), WAIT).await?;
    assert_eq!((done.status, done.error.as_deref()), (TaskStatus::Cancel, Some("enough")));
    worker.shutdown().await;
    Ok(())
}

/// Cancelling the first id of a task being retried cancels its current attempt.
async fn cancel_follows_retries<B: Backend>(backend: B) -> TestResult {
    let app = app("cancel-retry", backend);
    let k = key("cancel-retry");
    let worker = app.worker().start().await?;
    let first = app.add_task("slow_retry", json!([k])).await?;
    // The first attempt fails at once; the second waits 0.2 s in the queue.
    let a1 = loop {
        let r = record(&app, first.uuid()).await?;
        if r.status == TaskStatus::Retry {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let outcome = app.cancel(first.uuid(), "no more").await?;
    assert!(matches!(outcome, CancelOutcome::Cancelled | CancelOutcome::Requested | CancelOutcome::Finished(_)));
    let last = app.wait(first.uuid(), WAIT).await?;
    if outcome == CancelOutcome::Cancelled {
        assert_eq!(last.status, TaskStatus::Cancel);
        assert_eq!(Some(last.uuid), link(&a1, "retry_child_uuid"));
        assert_eq!(runs(&k), 1, "the cancelled retry never ran");
    }
    worker.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Inspect
// ---------------------------------------------------------------------------

/// The live counters: queue depth before a worker runs, then per task how
/// many runs ended success, error, retry and cancel, in text and JSON.
async fn inspect_counts_runs_per_task<B: Backend>(backend: B) -> TestResult {
    let app = app("inspect", backend);
    let queued = app.add_task("quick", json!([key("inspect-cancel")])).await?;
    app.add_task("quick", json!([key("inspect-q")])).await?;
    let before = app.inspect().await?;
    assert_eq!((before.app.queued, before.app.in_flight), (2, 0));
    app.cancel(queued.uuid(), "skip").await?;

    let worker = app.worker().start().await?;
    let k = key("inspect-retry");
    app.add_task("any_error", json!([k])).await?.record(WAIT).await?;
    app.add_task("fails_fatally", json!([key("inspect-fatal")])).await?.record(WAIT).await?;
    app.add_task("quick", json!([key("inspect-ok")])).await?.record(WAIT).await?;
    // The queued `quick` ran too; wait for it through the counters.
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        let now = app.inspect().await?;
        let quick = now.tasks.iter().find(|t| t.info.name == "quick").ok_or("quick missing")?;
        if quick.counts.success == 2 || tokio::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let counts = |name: &str| after.tasks.iter().find(|t| t.info.name == name).map(|t| t.counts).unwrap_or_default();
    assert_eq!((counts("quick").success, counts("quick").cancel), (2, 1));
    assert_eq!((counts("any_error").retry, counts("any_error").error), (2, 1));
    assert_eq!((counts("fails_fatally").error, counts("fails_fatally").retry), (1, 0));
    assert_eq!((after.app.queued, after.app.in_flight), (0, 0));
    assert_eq!(after.workers.len(), 1);

    let text = after.to_string();
    assert!(text.contains("task any_error") && text.contains("0 success, 1 error, 2 retry, 0 cancel"), "{text}");
    let json = serde_json::to_value(&after)?;
    assert_eq!(json["app"]["queued"], json!(0));
    let any = json["tasks"].as_array().ok_or("tasks")?.iter().find(|t| t["name"] == "any_error").ok_or("any_error")?;
    assert_eq!((any["retry"].clone(), any["counts"]["retry"].clone()), (json!(2), json!(2)));
    worker.shutdown().await;
    Ok(())
}

support::on_both_backends! {
    "qtasks-features":
    retries_run_one_plus_n_times
    waiting_follows_retries_to_success
    other_errors_are_not_retried
    any_error_is_retried_without_retry_on
    invalid_arguments_are_not_retried
    backoff_delays_retries
    a_cancelled_queued_task_never_runs
    cancel_is_a_no_op_on_finished_tasks
    a_running_async_task_stops_at_its_await
    a_blocking_task_sees_its_token
    returning_after_noticing_ends_cancel
    cancel_follows_retries
    inspect_counts_runs_per_task
    events_fire_in_order_for_success_error_and_cancel
    the_task_context_is_current_in_the_worker_triggers_of_a_task
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// Event kind and task name, in the order handlers saw them.
type EventLog = std::sync::Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Success, error and cancel each fire `task_running`, their own event, then
/// `task_stopping`; worker events bracket them; a panicking handler does not
/// stop the next one; async handlers are awaited in order.
async fn events_fire_in_order_for_success_error_and_cancel<B: Backend>(backend: B) -> TestResult {
    use qtasks::{Event, EventKind};
    use std::sync::Arc;
    let log: EventLog = Arc::default();
    let record = |log: &EventLog| {
        let log = Arc::clone(log);
        move |e: &Event| log.lock().unwrap().push((e.kind().name().to_owned(), e.task_name().map(str::to_owned)))
    };
    let mut builder = QueueTasks::builder(backend.app_name().to_owned()).tasks::<Tasks>().backend(backend);
    for kind in EventKind::ALL {
        if kind == EventKind::TaskError {
            builder = builder.on(kind, |_: &Event| panic!("a broken handler"));
            let log = Arc::clone(&log);
            builder = builder.on_async(kind, move |e: Event| {
                let log = Arc::clone(&log);
                async move {
                    tokio::task::yield_now().await;
                    log.lock().unwrap().push((e.kind().name().to_owned(), e.task_name().map(str::to_owned)));
                }
            });
        } else {
            builder = builder.on(kind, record(&log));
        }
    }
    let app = builder.build()?;
    let worker = app.worker().start().await?;
    app.add_task("quick", json!([key("ev")])).await?.record(WAIT).await?;
    app.add_task("fails_fatally", json!([key("ev")])).await?.record(WAIT).await?;
    let k = key("ev-cancel");
    let t = app.add_task("sleeper", json!([k])).await?;
    assert!(eventually(|| runs(&k) == 1).await);
    app.cancel(t.uuid(), "stop").await?;
    app.wait(t.uuid(), WAIT).await?;
    // Task events fire after the record is stored: let the last ones land.
    assert!(eventually(|| log.lock().unwrap().iter().filter(|(k, _)| k == "task_stopping").count() == 3).await);
    worker.shutdown().await;

    let log = log.lock().unwrap().clone();
    let of = |task: Option<&str>| -> Vec<&str> {
        log.iter().filter(|(_, t)| t.as_deref() == task).map(|(k, _)| k.as_str()).collect()
    };
    // Worker events bracket everything; each task's events come in order
    // (tasks run concurrently, so events of different tasks may interleave).
    assert_eq!(of(None), ["starting", "worker_running", "stopping", "worker_stopping"]);
    assert_eq!((log[0].0.as_str(), log[1].0.as_str()), ("starting", "worker_running"));
    assert_eq!(log[log.len() - 1].0, "worker_stopping");
    assert_eq!(of(Some("quick")), ["task_running", "task_success", "task_stopping"]);
    assert_eq!(of(Some("fails_fatally")), ["task_running", "task_error", "task_stopping"]);
    assert_eq!(of(Some("sleeper")), ["task_running", "task_cancel", "task_stopping"]);
    Ok(())
}

/// Cancelling a queued task fires `task_cancel` in the client that cancelled it.
#[tokio::test]
async fn cancelling_a_queued_task_fires_task_cancel() -> TestResult {
    use qtasks::{Event, EventKind};
    let seen: std::sync::Arc<Mutex<Vec<Option<String>>>> = Default::default();
    let s = std::sync::Arc::clone(&seen);
    let app = QueueTasks::builder("events-queued")
        .tasks::<Tasks>()
        .on(EventKind::TaskCancel, move |e: &Event| s.lock().unwrap().push(e.record().and_then(|r| r.error.clone())))
        .build()?;
    let t = app.add_task("quick", json!([key("evq")])).await?;
    app.cancel(t.uuid(), "not today").await?;
    assert_eq!(*seen.lock().unwrap(), [Some("not today".to_owned())]);
    Ok(())
}

// ---------------------------------------------------------------------------
// Plugins and the task context
// ---------------------------------------------------------------------------

/// Vetoes every retry: the failed record keeps status `error`.
#[plugin(on = "worker_task_error_retry")]
fn no_retries(ctx: &qtasks::triggers::WorkerTaskErrorRetry<'_>) -> Option<TaskRecord> {
    let mut model = ctx.model.clone();
    model.status = TaskStatus::Error;
    model.extra.remove("retry_child_uuid");
    Some(model)
}

/// A `worker_task_error_retry` handler that changes the status stops the retry.
#[tokio::test]
async fn a_plugin_can_veto_a_retry() -> TestResult {
    let app = QueueTasks::builder("veto").tasks::<Tasks>().plugin(NoRetries).build()?;
    let worker = app.worker().start().await?;
    let k = key("veto");
    let done = app.add_task("any_error", json!([k])).await?.record(WAIT).await?;
    assert_eq!((done.status, done.attempt), (TaskStatus::Error, 1));
    assert_eq!(runs(&k), 1);
    worker.shutdown().await;
    Ok(())
}

/// What the blocking handler saw of the task it ran for.
static SEEN_IN_BLOCKING: Mutex<Vec<(Uuid, bool)>> = Mutex::new(Vec::new());

#[derive(Clone)]
struct Observer;

#[plugin(name = "observer")]
impl Observer {
    /// Runs on the blocking pool.
    #[blocking]
    fn task_executor_after_execute(&self, ctx: &qtasks::triggers::TaskExecutorAfterExecute<'_>) {
        let current = TaskContext::current().expect("a task context inside a blocking handler");
        assert_eq!(current.uuid(), ctx.message.uuid);
        SEEN_IN_BLOCKING.lock().unwrap().push((current.uuid(), current.is_cancelled()));
    }
}

/// The task's context (id, cancellation token, span) is visible inside a
/// blocking plugin handler, and the token there is the task's own: after a
/// cancel it reads cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_sees_the_task_context() -> TestResult {
    let app = QueueTasks::builder("ctx-blocking").tasks::<Tasks>().plugin(Observer).build()?;
    let worker = app.worker().start().await?;
    let done = app.add_task("quick", json!([key("ctx")])).await?.record(WAIT).await?;
    let k = key("ctx-cancel");
    let noticing = app.add_task("noticing", json!([k])).await?;
    assert!(eventually(|| runs(&k) == 1).await);
    app.cancel(noticing.uuid(), "bye").await?;
    let cancelled = app.wait(noticing.uuid(), WAIT).await?;
    assert_eq!(cancelled.status, TaskStatus::Cancel);
    worker.shutdown().await;
    let seen = SEEN_IN_BLOCKING.lock().unwrap().clone();
    assert!(seen.contains(&(done.uuid, false)), "{seen:?}");
    assert!(seen.contains(&(noticing.uuid(), true)), "{seen:?}");
    Ok(())
}

/// Outside a task there is no current context.
#[test]
fn no_current_context_outside_tasks() {
    assert!(TaskContext::current().is_none());
}

/// Released by the test once it has cancelled the task the handler holds.
static RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();
static HELD: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Holds each task between being taken and running, until released.
#[plugin(on = "worker_run_task_before")]
async fn hold(_ctx: &qtasks::triggers::WorkerRunTaskBefore<'_>) {
    HELD.notify_one();
    RELEASE.notified().await;
}

/// A task cancelled after a worker took it but before it started never
/// starts, and ends `cancel`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_before_it_starts_never_starts() -> TestResult {
    let app = QueueTasks::builder("cancel-before-start").tasks::<Tasks>().plugin(Hold).build()?;
    let worker = app.worker().start().await?;
    let k = key("before-start");
    let task = app.add_task("quick", json!([k])).await?;
    HELD.notified().await;
    assert_eq!(app.cancel(task.uuid(), "changed my mind").await?, CancelOutcome::Requested);
    RELEASE.notify_one();
    let done = app.wait(task.uuid(), WAIT).await?;
    assert_eq!((done.status, done.error.as_deref()), (TaskStatus::Cancel, Some("changed my mind")));
    assert_eq!(runs(&k), 0, "the task body never ran");
    worker.shutdown().await;
    Ok(())
}

/// Timeouts and delays too large to add to the clock mean "no limit", not a panic.
#[tokio::test]
async fn huge_timeouts_and_delays_do_not_panic() -> TestResult {
    let app = app("huge", MemoryBackend::new());
    let worker = app.worker().start().await?;
    let done = app.add_task("quick", json!([key("huge")])).await?.record(Duration::MAX).await?;
    assert_eq!(app.wait(done.uuid, Duration::MAX).await?.status, TaskStatus::Success);
    let never = TaskRecord::new(Uuid::new_v4(), qtasks::NewTask::new("quick", json!([key("never")])));
    app.backend().enqueue_delayed(&never, Duration::MAX).await?;
    assert_eq!(app.queue_stats().await?.queued, 1);
    worker.shutdown().await;
    Ok(())
}

/// E8: a task with options reads the extra fields the client attached,
/// then cancels itself; a self-cancelled task is not retried.
#[task(priority = 1, tags = ["example"], retry = 3, retry_on = [Transient])]
async fn e8_context(ctx: TaskContext) -> Result<String, TaskError> {
    let test = ctx.extra().get("test").and_then(|v| v.as_str()).unwrap_or("missing").to_owned();
    bump(&format!("e8-{test}-{}", ctx.attempt()));
    Err(ctx.cancel(format!("Test task cancelled ({test})")).into())
}

#[tokio::test]
async fn e8_extra_fields_are_visible_and_ctx_cancel_ends_cancel() -> TestResult {
    let app = QueueTasks::builder("e8").task::<E8Context>().build()?;
    let info = app.tasks()[0];
    assert_eq!(
        (info.priority, info.tags, info.retry, info.retry_on),
        (Some(1), &["example"][..], 3, &["Transient"][..])
    );
    let worker = app.worker().start().await?;
    let marker = key("e8");
    let done = app.add_task("e8_context", ()).extra("test", marker.clone()).await?.record(WAIT).await?;
    assert_eq!(done.status, TaskStatus::Cancel);
    assert_eq!(done.error, Some(format!("Test task cancelled ({marker})")));
    assert_eq!(done.priority, 1);
    assert_eq!(runs(&format!("e8-{marker}-1")), 1);
    assert_eq!(runs(&format!("e8-{marker}-2")), 0, "cancel is never retried");
    worker.shutdown().await;
    Ok(())
}

/// Too slow twice, then fast enough: retried on its time limit only.
#[task(retry = 2, retry_on = [qtasks::task::TimeLimitExceeded], max_time = 0.2)]
async fn slow_then_fast(key: String) -> u32 {
    let run = bump(&key);
    if run < 3 {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    run
}

/// Panics once, then answers: retried on panics only.
#[task(retry = 1, retry_on = [qtasks::task::Panicked])]
fn panics_once(key: String) -> u32 {
    let run = bump(&key);
    assert!(run > 1, "first run panics");
    run
}

/// `retry_on` can name a time limit or a panic, which are not error types
/// a task returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_limits_and_panics_can_be_retried_by_name() -> TestResult {
    let app = QueueTasks::builder("retry-kinds").tasks::<(SlowThenFast, PanicsOnce)>().build()?;
    let worker = app.worker().start().await?;
    let k = key("time-limit");
    assert_eq!(app.enqueue(SlowThenFast::call(k.clone())).await?.result(WAIT).await?, 3);
    let k2 = key("panic");
    assert_eq!(app.enqueue(PanicsOnce::call(k2.clone())).await?.result(WAIT).await?, 2);
    assert_eq!((runs(&k), runs(&k2)), (3, 2));
    worker.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Handles, clients and the current task context
// ---------------------------------------------------------------------------

/// A handle owns what it needs: it moves into a spawned task, and its
/// result is awaited there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_handle_moves_into_a_spawned_task_and_its_result_is_awaited_there() -> TestResult {
    let app = app("handle-spawn", MemoryBackend::new());
    let worker = app.worker().start().await?;
    let k = key("spawn");
    let handle = app.enqueue(Quick::call(k.clone())).await?;
    let uuid = handle.uuid();
    let result: u32 = tokio::spawn(async move { handle.result(WAIT).await }).await??;
    assert_eq!(result, 1);
    assert_eq!(runs(&k), 1);
    assert_eq!(app.get(uuid).await?.ok_or("record missing")?.status, TaskStatus::Success);
    worker.shutdown().await;
    Ok(())
}

/// Enqueues `quick` by name and typed, and waits for both, through a
/// [`Client`]: this function names no app type.
async fn quick_twice(
    client: Client,
    key: String,
) -> Result<(TaskRecord, u32), Box<dyn std::error::Error + Send + Sync>> {
    let by_name = client.add_task("quick", json!([key])).await?;
    let record = client.wait(by_name.uuid(), WAIT).await?;
    let typed = client.enqueue(Quick::call(key)).await?.result(WAIT).await?;
    Ok((record, typed))
}

/// A `Client` from `app.client()` enqueues and waits like the app does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_enqueues_and_waits_without_naming_the_app_type() -> TestResult {
    let app = app("client", MemoryBackend::new());
    let worker = app.worker().start().await?;
    let k = key("client");
    let (record, typed) = quick_twice(app.client(), k.clone()).await?;
    assert_eq!((record.status, record.result), (TaskStatus::Success, Some(json!(1))));
    assert_eq!(typed, 2);
    assert_eq!(runs(&k), 2);
    worker.shutdown().await;
    Ok(())
}

/// One handler sighting: the trigger, the task its context is about, and
/// what `TaskContext::current()` gave inside the handler (uuid and name).
type Sighting = (&'static str, Uuid, Option<(Uuid, String)>);

/// Sync handlers on the worker-side triggers of a task, recording what
/// they saw.
#[derive(Clone, Default)]
struct Witness {
    seen: std::sync::Arc<Mutex<Vec<Sighting>>>,
}

impl Witness {
    fn saw(&self, trigger: &'static str, about: Uuid) {
        let current = TaskContext::current().map(|c| (c.uuid(), c.name().to_owned()));
        self.seen.lock().unwrap().push((trigger, about, current));
    }
}

#[plugin(name = "witness")]
impl Witness {
    fn broker_add_worker(&self, ctx: &BrokerAddWorker<'_>) -> Option<qtasks::TaskMessage> {
        self.saw("broker_add_worker", ctx.message.uuid);
        None
    }

    fn storage_add_process(&self, ctx: &StorageAddProcess<'_>) -> Option<qtasks::TaskMessage> {
        self.saw("storage_add_process", ctx.message.uuid);
        None
    }

    fn worker_add(&self, ctx: &WorkerAdd<'_>) -> Option<qtasks::TaskMessage> {
        self.saw("worker_add", ctx.message.uuid);
        None
    }

    fn worker_remove_finished_task(&self, ctx: &WorkerRemoveFinishedTask<'_>) -> Option<TaskRecord> {
        self.saw("worker_remove_finished_task", ctx.model.uuid);
        None
    }

    fn broker_remove_finished_task(&self, ctx: &BrokerRemoveFinishedTask<'_>) -> Option<TaskRecord> {
        self.saw("broker_remove_finished_task", ctx.model.uuid);
        None
    }

    fn storage_remove_finished_task(&self, ctx: &StorageRemoveFinishedTask<'_>) {
        self.saw("storage_remove_finished_task", ctx.model.uuid);
    }

    fn worker_execute_after(&self, ctx: &WorkerExecuteAfter<'_>) {
        self.saw("worker_execute_after", ctx.model.uuid);
    }
}

/// The seven triggers [`Witness`] listens on, sorted.
const WITNESSED: [&str; 7] = [
    "broker_add_worker",
    "broker_remove_finished_task",
    "storage_add_process",
    "storage_remove_finished_task",
    "worker_add",
    "worker_execute_after",
    "worker_remove_finished_task",
];

/// Inside sync handlers of the worker-side triggers of a task,
/// `TaskContext::current()` is that task's context (its uuid and name),
/// also for a task name the app does not define (which ends `error`).
async fn the_task_context_is_current_in_the_worker_triggers_of_a_task<B: Backend>(backend: B) -> TestResult {
    let witness = Witness::default();
    let app = QueueTasks::builder(backend.app_name().to_owned())
        .tasks::<Tasks>()
        .plugin(witness.clone())
        .backend(backend)
        .build()?;
    let worker = app.worker().start().await?;
    let known = app.add_task("quick", json!([key("current")])).await?;
    let unknown = app.add_task("no_such_task", json!([])).await?;
    assert_eq!(known.record(WAIT).await?.status, TaskStatus::Success);
    let failed = unknown.record(WAIT).await?;
    assert_eq!(failed.status, TaskStatus::Error);
    assert!(failed.error.as_deref().unwrap_or("").contains("unknown task `no_such_task`"), "{:?}", failed.error);

    // `worker_execute_after` fires after the final record is stored: let it land.
    let fired = |uuid: Uuid| {
        let seen = witness.seen.lock().unwrap();
        let mut triggers: Vec<&str> = seen.iter().filter(|(_, about, _)| *about == uuid).map(|(t, _, _)| *t).collect();
        triggers.sort_unstable();
        triggers.dedup();
        triggers == WITNESSED
    };
    assert!(eventually(|| fired(known.uuid()) && fired(unknown.uuid())).await, "{:?}", witness.seen.lock().unwrap());
    worker.shutdown().await;

    let seen = witness.seen.lock().unwrap().clone();
    for (uuid, name) in [(known.uuid(), "quick"), (unknown.uuid(), "no_such_task")] {
        for (trigger, _, current) in seen.iter().filter(|(_, about, _)| *about == uuid) {
            let current = current.as_ref().map(|(u, n)| (*u, n.as_str()));
            assert_eq!(current, Some((uuid, name)), "TaskContext::current() in {trigger} for `{name}`");
        }
    }
    Ok(())
}
