//! Retries, cancellation, events and inspect, on the in-memory backend
//! (QTasks behaviours E2 and E8, plus the cancellation QTasks lacks).
//!
//! - `flaky` fails twice with a `Transient` error and is retried (3 runs);
//!   waiting on its first id gives the third attempt's result.
//! - `crawl` is an async task cancelled while it runs: it stops at its
//!   current `.await` and ends `cancel`.
//! - `report` is queued, cancelled before a worker takes it, and never runs.
//! - `slow` runs past its `max_time` and ends `error` ("time limit exceeded").
//! - Event handlers print each task that ends; `inspect` prints the counters.
//!
//! Run with `cargo run --example retry_cancel`.

use qtasks::backend::CancelOutcome;
use qtasks::{Event, EventKind};
use qtasks::{QueueTasks, TaskContext, TaskError, TaskStatus, json, task};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[derive(Debug)]
struct Transient;

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream service is busy")
    }
}

impl std::error::Error for Transient {}

static FLAKY_RUNS: AtomicU32 = AtomicU32::new(0);

/// Fails twice, then answers; retried up to 3 times on `Transient`, after 50 ms, then 100 ms.
#[task(retry = 3, retry_on = [Transient], backoff = 0.05)]
async fn flaky(ctx: TaskContext) -> Result<String, TaskError> {
    let run = FLAKY_RUNS.fetch_add(1, Ordering::SeqCst) + 1;
    println!("  flaky: attempt {} (run {run})", ctx.attempt());
    if run < 3 { Err(Transient.into()) } else { Ok(format!("answered on attempt {}", ctx.attempt())) }
}

/// Pages through a slow API forever; stopped by cancellation.
#[task]
async fn crawl(ctx: TaskContext) -> u32 {
    let mut pages = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        pages += 1;
        if pages == 1 {
            println!("  crawl: started ({})", ctx.uuid());
        }
    }
}

/// Takes a second; allowed a tenth of one (QTasks behaviour E10).
#[task(max_time = 0.1)]
async fn slow() -> u32 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    1
}

static REPORT_RUNS: AtomicU32 = AtomicU32::new(0);

#[task]
fn report() -> u32 {
    REPORT_RUNS.fetch_add(1, Ordering::SeqCst)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let wait = Duration::from_secs(10);
    let app = QueueTasks::builder("features")
        .tasks::<(Flaky, Crawl, Report, Slow)>()
        .on(EventKind::TaskRetry, |e: &Event| println!("  [event] {} retried", e.task_name().unwrap_or("?")))
        .on_async(EventKind::TaskCancel, |e: Event| async move {
            let reason = e.record().and_then(|r| r.error.clone()).unwrap_or_default();
            println!("  [event] {} cancelled: {reason}", e.task_name().unwrap_or("?"));
        })
        .build()?;

    // Cancelled while queued: no worker runs yet, and none ever runs it.
    let queued = app.add_task("report", ()).await?;
    assert_eq!(app.cancel(queued.uuid(), "no longer needed").await?, CancelOutcome::Cancelled);

    let worker = app.worker().start().await?;

    println!("retry:");
    let first = app.add_task("flaky", ()).await?;
    let last = app.wait(first.uuid(), wait).await?;
    println!("  status {}, result {}, attempt {}", last.status, last.result.clone().unwrap_or_default(), last.attempt);
    assert_eq!((last.status, last.attempt), (TaskStatus::Success, 3));
    let parent = app.get(first.uuid()).await?.expect("stored");
    println!("  first attempt: status {}, retry_child_uuid {}", parent.status, parent.extra["retry_child_uuid"]);

    println!("cancel a running task:");
    let running = app.add_task("crawl", ()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.cancel(running.uuid(), "user pressed stop").await?, CancelOutcome::Requested);
    let stopped = app.wait(running.uuid(), wait).await?;
    println!("  status {}, reason {:?}", stopped.status, stopped.error);
    assert_eq!(stopped.status, TaskStatus::Cancel);
    assert_eq!(app.cancel(running.uuid(), "again").await?, CancelOutcome::Finished(TaskStatus::Cancel));

    println!("time limit:");
    let limited = app.add_task("slow", ()).await?.record(wait).await?;
    println!("  status {}, error {:?}", limited.status, limited.error);
    assert_eq!(limited.status, TaskStatus::Error);

    let done = app.get(queued.uuid()).await?.expect("stored");
    println!("cancelled while queued: status {}, runs {}", done.status, REPORT_RUNS.load(Ordering::SeqCst));
    assert_eq!(REPORT_RUNS.load(Ordering::SeqCst), 0);
    assert_eq!(json!(done.status), json!("cancel"));

    println!("inspect:\n{}", app.inspect().await?);
    worker.shutdown().await;
    Ok(())
}
