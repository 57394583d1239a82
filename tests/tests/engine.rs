//! The in-memory engine end to end: QTasks behaviours T1–T6, priorities,
//! concurrency, shutdown, bad input, sync tasks, typed handles.

mod support;

use qtasks::{Cancelled, EventKind, QueueTasks, TaskContext, TaskStatus, WaitError, json, task};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Gate, HANG};

const WAIT: Duration = Duration::from_secs(10);

#[task]
async fn test(id: i64) -> String {
    format!("Пользователь {id} записан")
}

#[task]
fn error_task() -> Result<i64, std::io::Error> {
    Err(std::io::Error::other("division by zero"))
}

#[task]
async fn slow(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[tokio::test]
async fn t1_add_task_stores_the_new_record_at_once() {
    let app = QueueTasks::builder("t1").task::<Test>().build().unwrap();
    let handle = app.add_task("test", [5]).await.unwrap();
    let task = app.get(handle.uuid()).await.unwrap().expect("stored");
    assert_eq!(task.status, TaskStatus::New);
    assert_eq!(task.task_name, "test");
    assert_eq!(task.uuid, handle.uuid());
}

#[tokio::test]
async fn t2_t4_waiting_returns_success_and_non_ascii_survives() {
    let app = QueueTasks::builder("t2").task::<Test>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("test", [5]).await.unwrap().record(WAIT).await.expect("finished");
    assert_eq!(task.status, TaskStatus::Success);
    assert_eq!(task.result, Some(json!("Пользователь 5 записан")));
    worker.shutdown().await;
}

#[tokio::test]
async fn t3_a_failing_task_ends_error_with_its_message() {
    let app = QueueTasks::builder("t3").task::<ErrorTask>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("error_task", ()).await.unwrap().record(WAIT).await.expect("finished");
    assert_eq!(task.status, TaskStatus::Error);
    assert_eq!(task.error.as_deref(), Some("division by zero"));
    worker.shutdown().await;
}

#[tokio::test]
async fn t5_get_of_an_unknown_uuid_is_none() {
    let app = QueueTasks::builder("t5").task::<Test>().build().unwrap();
    assert!(app.get(qtasks::Uuid::new_v4()).await.unwrap().is_none());
}

// On tokio's paused clock: the 50 ms wait ends before the 300 ms task
// however slowly the machine runs.
#[tokio::test(start_paused = true)]
async fn t6_a_wait_that_times_out_gives_timeout_and_the_task_still_finishes() {
    let app = QueueTasks::builder("t6").task::<Slow>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let timed_out = app.add_task("slow", [300]).await.unwrap().record(Duration::from_millis(50)).await;
    assert!(matches!(timed_out, Err(WaitError::Timeout)));
    let all = app.get_all().await.unwrap();
    let finished = app.wait(all[0].uuid, WAIT).await.expect("finished later");
    assert_eq!(finished.result, Some(json!(300)));
    worker.shutdown().await;
}

static ORDER: Mutex<Vec<i64>> = Mutex::new(Vec::new());

#[task]
async fn record(n: i64) {
    ORDER.lock().unwrap().push(n);
}

#[tokio::test]
async fn lower_priority_runs_first_then_fifo() {
    let app = QueueTasks::builder("prio").task::<Record>().build().unwrap();
    let mut ids = Vec::new();
    for (n, priority) in [(50, 5), (10, 1), (30, 3), (11, 1), (0, 0)] {
        ids.push(app.add_task("record", [n]).priority(priority).await.unwrap().uuid());
    }
    let worker = app.worker().max_tasks_process(1).start().await.unwrap();
    for id in ids {
        app.wait(id, WAIT).await.expect("finished");
    }
    worker.shutdown().await;
    assert_eq!(*ORDER.lock().unwrap(), [0, 10, 11, 30, 50]);
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn occupy() {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(30)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tasks_process_bounds_concurrency() {
    let app = QueueTasks::builder("bound").task::<Occupy>().build().unwrap();
    let worker = app.worker().max_tasks_process(3).start().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(app.add_task("occupy", ()).await.unwrap().uuid());
    }
    for id in ids {
        assert_eq!(app.wait(id, WAIT).await.unwrap().status, TaskStatus::Success);
    }
    worker.shutdown().await;
    let peak = PEAK.load(Ordering::SeqCst);
    assert!((1..=3).contains(&peak), "peak concurrency {peak} exceeds max_tasks_process 3");
}

#[tokio::test]
async fn shutdown_waits_for_running_tasks() {
    let running = Arc::new(tokio::sync::Notify::new());
    let app = QueueTasks::builder("graceful")
        .task::<Slow>()
        .on(EventKind::TaskRunning, {
            let running = Arc::clone(&running);
            move |_| running.notify_one()
        })
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("slow", [150]).await.unwrap();
    // Once the worker has started it, shut down while it runs.
    tokio::time::timeout(HANG, running.notified()).await.expect("the task never started");
    worker.shutdown().await;
    let done = app.get(task.uuid()).await.unwrap().unwrap();
    assert_eq!(done.status, TaskStatus::Success, "shutdown returned before the running task finished");
}

#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
async fn panics() -> i64 {
    panic!("boom")
}

#[tokio::test]
async fn bad_input_ends_error_with_a_clear_message_and_the_worker_keeps_going() {
    let app = QueueTasks::builder("bad").task::<Add>().task::<Panics>().build().unwrap();
    let worker = app.worker().start().await.unwrap();

    let unknown = app.add_task("nope", ()).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(unknown.status, TaskStatus::Error);
    assert!(unknown.error.unwrap().contains("unknown task `nope`"));

    let wrong_types = app.add_task("add", ("one", 2)).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(wrong_types.status, TaskStatus::Error);
    let error = wrong_types.error.unwrap();
    assert!(error.contains("invalid arguments") && error.contains("add"), "{error}");

    let wrong_count = app.add_task("add", [1]).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(wrong_count.status, TaskStatus::Error);

    let unknown_arg = app.add_task("add", json!({"a": 1, "c": 2})).await.unwrap().record(WAIT).await.unwrap();
    assert!(unknown_arg.error.unwrap().contains("unknown argument `c`"));

    let panicked = app.add_task("panics", ()).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(panicked.status, TaskStatus::Error);
    assert!(panicked.error.unwrap().contains("task panicked: boom"));

    // Still working, and arguments by parameter name work too.
    let ok = app.add_task("add", json!({"a": 2, "b": 40})).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(ok.result, Some(json!(42)));
    worker.shutdown().await;
}

static SYNC_STARTED: AtomicBool = AtomicBool::new(false);
static SYNC_GATE: Gate = Gate::new();

/// Holds its thread until the test opens the gate: 7, or 0 if it gave up.
#[task]
fn gated_sync() -> u32 {
    SYNC_STARTED.store(true, Ordering::SeqCst);
    if SYNC_GATE.wait() { 7 } else { 0 }
}

#[tokio::test(flavor = "current_thread")]
async fn sync_tasks_run_on_the_blocking_pool_not_on_the_async_thread() {
    let app = QueueTasks::builder("sync").task::<GatedSync>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("gated_sync", ()).await.unwrap();
    // The task holds its thread until this test, on the runtime's only
    // thread, opens the gate. Run inline on that thread, it would leave the
    // test no thread to open it with, and give up (0) after `HANG`.
    assert!(support::eventually(HANG, || SYNC_STARTED.load(Ordering::SeqCst)).await, "the task never started");
    SYNC_GATE.open();
    let finished = app.wait(task.uuid(), HANG).await.unwrap();
    assert_eq!(finished.result, Some(json!(7)), "the sync task blocked the async thread");
    worker.shutdown().await;
}

#[tokio::test]
async fn typed_handles_return_typed_results_and_errors() {
    let app = QueueTasks::builder("typed").task::<Add>().task::<ErrorTask>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let sum: i64 = app.enqueue(Add::call(20, 22)).await.unwrap().result(WAIT).await.unwrap();
    assert_eq!(sum, 42);
    let failed = app.enqueue(ErrorTask::call()).await.unwrap().result(WAIT).await;
    assert!(matches!(failed, Err(WaitError::Failed(m)) if m == "division by zero"));
    // The function is still callable directly.
    assert_eq!(add(1, 2).await, 3);
    worker.shutdown().await;
}

#[task(name = "introspect", priority = 4, max_time = 5, tags = ["a", "b"], description = "reads its context")]
async fn introspect(ctx: TaskContext) -> (String, String, u32) {
    (ctx.uuid().to_string(), ctx.name().to_owned(), ctx.attempt())
}

#[tokio::test]
async fn the_context_parameter_receives_id_name_and_attempt() {
    let app = QueueTasks::builder("ctx").task::<Introspect>().build().unwrap();
    let info = app.tasks()[0];
    assert_eq!((info.priority, info.tags, info.description), (Some(4), &["a", "b"][..], Some("reads its context")));
    assert_eq!(info.max_time, Some(Duration::from_secs(5)));
    let worker = app.worker().start().await.unwrap();
    let handle = app.enqueue(Introspect::call()).await.unwrap();
    let (uuid, name, attempt) = handle.result(WAIT).await.unwrap();
    assert_eq!((uuid, name.as_str(), attempt), (handle.uuid().to_string(), "introspect", 1));
    // The task's priority is the default for enqueues.
    assert_eq!(app.get(handle.uuid()).await.unwrap().unwrap().priority, 4);
    worker.shutdown().await;
}

#[task]
async fn gives_up(ctx: TaskContext) -> Result<(), Cancelled> {
    Err(ctx.cancel("not needed any more"))
}

#[task(max_time = 0.05)]
async fn too_slow() {
    tokio::time::sleep(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn cancel_from_inside_and_time_limits_end_with_their_statuses() {
    let app = QueueTasks::builder("ends").task::<GivesUp>().task::<TooSlow>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let cancelled = app.add_task("gives_up", ()).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancel);
    assert_eq!(cancelled.error.as_deref(), Some("not needed any more"));
    let limited = app.add_task("too_slow", ()).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(limited.status, TaskStatus::Error);
    assert!(limited.error.unwrap().starts_with("time limit exceeded"));
    worker.shutdown().await;
}

/// Sleeps `ms`, with a declared limit far below what the test asks of it.
#[task(max_time = 0.05)]
async fn naps(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

#[tokio::test]
async fn a_time_limit_set_at_enqueue_replaces_the_declared_one() {
    let app = QueueTasks::builder("enqueue-limits").task::<Naps>().task::<TooSlow>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    // Longer than the declared 50 ms: the nap ends.
    let longer = app.enqueue(Naps::call(200)).max_time(Duration::from_secs(600)).await.unwrap();
    assert_eq!(longer.record(WAIT).await.unwrap().result, Some(json!(200)));
    // Shorter: a 30 s sleep is stopped.
    let shorter = app.enqueue(TooSlow::call()).max_time(Duration::from_millis(20)).await.unwrap();
    let shorter = shorter.record(WAIT).await.unwrap();
    assert_eq!(shorter.status, TaskStatus::Error);
    assert_eq!(shorter.error.as_deref(), Some("time limit exceeded (0.020 s)"));
    assert_eq!(shorter.extra.get(qtasks::task::MAX_TIME), Some(&json!(0.02)));
    // A field no limit can be read from ends the run, naming it.
    for bad in [json!("soon"), json!(0), json!(-1.5)] {
        let task = app.enqueue(Naps::call(1)).extra(qtasks::task::MAX_TIME, bad.clone()).await.unwrap();
        let task = task.record(WAIT).await.unwrap();
        assert_eq!(task.status, TaskStatus::Error, "{bad}");
        let error = task.error.unwrap();
        assert!(error.starts_with("invalid extra field `max_time`"), "{bad}: {error}");
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn extra_fields_survive_the_worker() {
    let app = QueueTasks::builder("extra").task::<Add>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("add", (1, 2)).extra("tenant", "acme").await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Success);
    assert_eq!(task.extra.get("tenant"), Some(&json!("acme")));
    worker.shutdown().await;
}
