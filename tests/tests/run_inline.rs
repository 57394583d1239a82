//! A worker that runs its tasks inline (`WorkerBuilder::run_inline`) polls
//! them inside its own tokio task instead of spawning one per task. It keeps
//! every guarantee of a spawned run: results and records, async tasks that
//! overlap, sync tasks on the blocking pool, cancellation, time limits,
//! panics recorded, and a graceful or forced shutdown that loses nothing.

mod support;

use qtasks::{Backend, EventKind, QueueTasks, TaskContext, TaskStatus, Uuid, task};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;
use support::HANG;
use tokio::sync::{Barrier, Notify, Semaphore};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[task]
async fn double(n: u64) -> u64 {
    n * 2
}

/// Groups of four runs meet here, one barrier per group: they finish only
/// if the worker polls them at once.
static MEET: LazyLock<Mutex<HashMap<String, Arc<Barrier>>>> = LazyLock::new(Mutex::default);

#[task]
async fn meet(group: String, n: u64) -> u64 {
    let barrier = Arc::clone(MEET.lock().unwrap().entry(group).or_insert_with(|| Arc::new(Barrier::new(4))));
    barrier.wait().await;
    n
}

/// A sync task: it runs on tokio's blocking pool, also for an inline worker.
#[task]
fn on_a_thread(n: u64) -> bool {
    n > 0 && tokio::runtime::Handle::try_current().is_ok()
}

/// The tokio task the run is polled in.
#[task]
async fn polled_in() -> String {
    format!("{:?}", tokio::task::try_id())
}

#[task]
async fn boom() -> u8 {
    panic!("boom in an inline run")
}

#[task(max_time = 0.2)]
async fn too_slow() {
    std::future::pending::<()>().await
}

/// The uuids of the runs of `waits` and `forever` that started.
static STARTED: Mutex<Vec<Uuid>> = Mutex::new(Vec::new());
/// Lets the `waits` runs finish, one per permit.
static RELEASE: Semaphore = Semaphore::const_new(0);

fn started() {
    if let Some(ctx) = TaskContext::current() {
        STARTED.lock().unwrap().push(ctx.uuid());
    }
}

async fn has_started(uuid: Uuid) -> bool {
    support::eventually(HANG, || STARTED.lock().unwrap().contains(&uuid)).await
}

/// Runs until `RELEASE` is notified, then answers.
#[task]
async fn waits() -> u8 {
    started();
    RELEASE.acquire().await.expect("never closed").forget();
    9
}

#[task]
async fn forever() {
    started();
    std::future::pending::<()>().await
}

type Tasks = (Double, Meet, OnAThread, PolledIn, Boom, TooSlow, Waits, Forever);

/// An app of these tasks on `backend`, named `name` on the in-memory
/// backend (the backend's own name on a server).
fn app<B: Backend + Clone>(name: &str, backend: B) -> Result<QueueTasks<(Tasks,), (), B>, qtasks::Error> {
    QueueTasks::builder(support::app_name(name, &backend)).tasks::<Tasks>().backend(backend).build()
}

/// Many tasks, run a few at a time by one inline worker, all end `success`
/// with their own result; four that wait for each other all finish, so the
/// worker polls its runs together, not one after the other.
async fn every_task_ends_with_its_result<B: Backend + Clone>(backend: B) -> TestResult {
    let app = app("inline-results", backend)?;
    let worker = app.worker().max_tasks_process(8).run_inline(true).start().await?;
    let mut handles = Vec::new();
    for n in 0..500 {
        handles.push((n, app.enqueue(Double::call(n)).await?));
    }
    let mut meeting = Vec::new();
    for n in 0..4 {
        meeting.push((n, app.enqueue(Meet::call(app.name().to_owned(), n)).await?));
    }
    let sync = app.enqueue(OnAThread::call(3)).await?;
    for (n, handle) in handles {
        assert_eq!(handle.result(HANG).await?, n * 2);
    }
    for (n, handle) in meeting {
        assert_eq!(handle.result(HANG).await?, n);
    }
    assert!(sync.result(HANG).await?, "the sync task ran inside the runtime");
    let stats = app.queue_stats().await?;
    assert_eq!(stats.queued, 0);
    worker.shutdown().await;
    app.flush_all().await?;
    Ok(())
}

/// A panic, a time limit and a cancel each end their own task with the
/// reason; the worker keeps running and the next task succeeds.
async fn failures_end_their_task_only<B: Backend + Clone>(backend: B) -> TestResult {
    let app = app("inline-failures", backend)?;
    let worker = app.worker().max_tasks_process(4).run_inline(true).start().await?;

    let panicked = app.enqueue(Boom::call()).await?.record(HANG).await?;
    assert_eq!(panicked.status, TaskStatus::Error);
    assert!(panicked.error.as_deref().unwrap_or("").contains("boom in an inline run"), "{:?}", panicked.error);

    let slow = app.enqueue(TooSlow::call()).await?.record(HANG).await?;
    assert_eq!(slow.status, TaskStatus::Error);
    assert!(slow.error.as_deref().unwrap_or("").contains("time limit"), "{:?}", slow.error);

    let running = app.enqueue(Forever::call()).await?;
    assert!(has_started(running.uuid()).await, "the task never started");
    running.cancel("not needed").await?;
    let cancelled = running.record(HANG).await?;
    assert_eq!((cancelled.status, cancelled.error.as_deref()), (TaskStatus::Cancel, Some("not needed")));

    assert_eq!(app.enqueue(Double::call(21)).await?.result(HANG).await?, 42);
    worker.shutdown().await;
    app.flush_all().await?;
    Ok(())
}

/// A graceful shutdown stops taking tasks but drives the running ones to
/// their end: the task that was running ends `success`, and one still
/// queued stays queued for the next worker.
async fn a_graceful_shutdown_finishes_the_running_tasks<B: Backend + Clone>(backend: B) -> TestResult {
    let name = support::app_name("inline-graceful", &backend);
    let stopping = Arc::new(Notify::new());
    let app = QueueTasks::builder(name)
        .tasks::<Tasks>()
        .backend(backend)
        .on(EventKind::Stopping, {
            let stopping = Arc::clone(&stopping);
            move |_| stopping.notify_one()
        })
        .build()?;
    let worker = app.worker().max_tasks_process(1).run_inline(true).start().await?;
    let running = app.enqueue(Waits::call()).await?;
    assert!(has_started(running.uuid()).await, "the task never started");
    let queued = app.enqueue(Double::call(1)).await?;
    let shutdown = tokio::spawn(worker.shutdown());
    // The worker has stopped taking tasks; its running task still waits.
    stopping.notified().await;
    let record = app.get(running.uuid()).await?.ok_or("no record")?;
    assert_eq!(record.status, TaskStatus::Process);
    RELEASE.add_permits(1);
    shutdown.await?;
    assert_eq!(running.result(HANG).await?, 9);
    let record = app.get(queued.uuid()).await?.ok_or("no record")?;
    assert_eq!(record.status, TaskStatus::New, "a task the stopped worker had not taken waits for the next one");
    let next = app.worker().run_inline(true).start().await?;
    assert_eq!(queued.result(HANG).await?, 2);
    next.shutdown().await;
    app.flush_all().await?;
    Ok(())
}

/// Past its timeout, a shutdown stops the inline runs and puts their tasks
/// back in the queue, same attempt; a finished task is not touched.
async fn a_forced_shutdown_puts_the_inline_runs_back<B: Backend + Clone>(backend: B) -> TestResult {
    let app = app("inline-forced", backend)?;
    let worker = app.worker().run_inline(true).start().await?;
    let done = app.enqueue(Double::call(4)).await?;
    assert_eq!(done.result(HANG).await?, 8);
    let stuck = app.enqueue(Forever::call()).await?;
    assert!(has_started(stuck.uuid()).await, "the task never started");
    let report = worker.shutdown_timeout(Duration::from_millis(100)).await;
    assert_eq!(report.released, [stuck.uuid()], "only the running task is released");
    let record = app.get(stuck.uuid()).await?.ok_or("no record")?;
    assert_eq!((record.status, record.attempt), (TaskStatus::New, 1), "back in the queue, same attempt");
    assert_eq!(app.get(done.uuid()).await?.ok_or("no record")?.status, TaskStatus::Success);
    app.flush_all().await?;
    Ok(())
}

/// An inline worker polls every run in its own tokio task; a default
/// worker spawns one per run.
async fn inline_runs_share_the_worker_task<B: Backend + Clone>(backend: B) -> TestResult {
    let app = app("inline-task", backend)?;
    for inline in [true, false] {
        let worker = app.worker().max_tasks_process(4).run_inline(inline).start().await?;
        let mut handles = Vec::new();
        for _ in 0..20 {
            handles.push(app.enqueue(PolledIn::call()).await?);
        }
        let mut tasks = HashSet::new();
        for handle in handles {
            tasks.insert(handle.result(HANG).await?);
        }
        worker.shutdown().await;
        assert!(!tasks.contains("None"), "every run is polled in a tokio task");
        match inline {
            true => assert_eq!(tasks.len(), 1, "inline: one task, the worker's: {tasks:?}"),
            false => assert_eq!(tasks.len(), 20, "spawned: one task per run: {tasks:?}"),
        }
    }
    app.flush_all().await?;
    Ok(())
}

support::on_both_backends!("qtasks-test-inline":
    inline_runs_share_the_worker_task
    every_task_ends_with_its_result
    failures_end_their_task_only
    a_graceful_shutdown_finishes_the_running_tasks
    a_forced_shutdown_puts_the_inline_runs_back
);
