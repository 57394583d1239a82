//! A sync task past its time limit ends `error` at once, but its thread
//! cannot be stopped: the worker keeps the task's slot until the thread
//! returns, so `max_tasks_process` bounds the threads really busy, and a
//! retry never runs next to the attempt it replaces.

use qtasks::task::TimeLimitExceeded;
use qtasks::{QueueTasks, TaskStatus, task};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Always overruns its 20 ms limit: its thread goes on for 200 ms more.
#[task(max_time = 0.02)]
fn overrun() {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_always_time_out_never_run_more_threads_than_slots() {
    let app = QueueTasks::builder("sync-slots").task::<Overrun>().build().unwrap();
    let worker = app.worker().max_tasks_process(2).start().await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..8 {
        handles.push(app.add_task("overrun", ()).await.unwrap());
    }
    for handle in handles {
        let record = handle.record(WAIT).await.unwrap();
        assert_eq!(record.status, TaskStatus::Error);
        assert!(record.error.as_deref().unwrap_or_default().contains("time limit"), "{record:?}");
    }
    worker.shutdown().await;
    // Shutdown waits for every slot, so every thread has returned by now.
    assert_eq!(RUNNING.load(Ordering::SeqCst), 0);
    let peak = PEAK.load(Ordering::SeqCst);
    assert!((1..=2).contains(&peak), "{peak} task threads ran at once with 2 slots");
}

static IN_BODY: AtomicBool = AtomicBool::new(false);
static OVERLAPS: AtomicUsize = AtomicUsize::new(0);
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// Times out on every run and is retried on time limits.
#[task(max_time = 0.02, retry = 2, retry_on = [TimeLimitExceeded])]
fn overrun_and_retry() {
    if IN_BODY.swap(true, Ordering::SeqCst) {
        OVERLAPS.fetch_add(1, Ordering::SeqCst);
    }
    RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(150));
    IN_BODY.store(false, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_never_runs_next_to_the_attempt_it_replaces() {
    let app = QueueTasks::builder("sync-retry").task::<OverrunAndRetry>().build().unwrap();
    // Slots to spare: only the retry rule keeps the attempts apart.
    let worker = app.worker().max_tasks_process(4).start().await.unwrap();
    let record = app.add_task("overrun_and_retry", ()).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(record.status, TaskStatus::Error, "{record:?}");
    assert_eq!(record.attempt, 3, "1 run + 2 retries");
    worker.shutdown().await;
    assert_eq!(RUNS.load(Ordering::SeqCst), 3);
    assert_eq!(OVERLAPS.load(Ordering::SeqCst), 0, "an attempt ran while the one before it still ran");
}
