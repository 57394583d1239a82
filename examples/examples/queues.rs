//! Queues, limits, unique tasks and bulk enqueue, on the in-memory backend
//! (the same code runs on Redis with `AnyBackend::connect("redis://…")`).
//!
//! - `send_email` goes to the `emails` queue, at most 20 per second;
//! - `sync_account` runs at most once at a time per account (its
//!   `concurrency_key`), and at most 4 at once overall;
//! - `nightly_report` is unique per day: enqueueing it again while it is
//!   queued, running, or within 60 s of its end gives the same task;
//! - a worker takes from `emails` and `default` with weights 1 and 3, and
//!   `add_tasks` enqueues a batch in one go.
//!
//! `cargo run --example queues`

use qtasks::{Queue, QueueTasks, task};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[task(queue = "emails", rate = "20/s")]
async fn send_email(to: String) -> String {
    format!("sent to {to}")
}

static SYNCING: AtomicUsize = AtomicUsize::new(0);
static MOST_SYNCING: AtomicUsize = AtomicUsize::new(0);

#[task(concurrency = 4, concurrency_key = account)]
async fn sync_account(account: u32, page: u32) -> u32 {
    let now = SYNCING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_SYNCING.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    SYNCING.fetch_sub(1, Ordering::SeqCst);
    account * 100 + page
}

#[task(unique_key = [day], unique_for = 60)]
async fn nightly_report(day: String) -> String {
    format!("report for {day}")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = QueueTasks::builder("queues-example")
        .tasks::<(SendEmail, SyncAccount, NightlyReport)>()
        .queue(Queue::new("emails"))
        .build()?;
    let worker = app.worker().max_tasks_process(32).weighted_queues([("emails", 1), ("default", 3)]).start().await?;

    // A batch of 40 emails in one call: the first 20 start at once (a full
    // bucket), the next 20 over the following second.
    let started = Instant::now();
    let emails = app.add_tasks((0..40).map(|i| SendEmail::call(format!("user{i}@example.com")))).await?;
    for email in &emails {
        email.result(Duration::from_secs(10)).await?;
    }
    println!("40 emails at 20/s took {:.1} s", started.elapsed().as_secs_f64());

    // 8 accounts × 4 pages: one page per account at a time, 4 at once.
    let syncs = app.add_tasks((0..8).flat_map(|a| (0..4).map(move |p| SyncAccount::call(a, p)))).await?;
    for sync in &syncs {
        sync.result(Duration::from_secs(10)).await?;
    }
    println!("32 syncs, at most {} at once (limit 4)", MOST_SYNCING.load(Ordering::SeqCst));

    // Unique: the second enqueue is the first task.
    let first = app.enqueue(NightlyReport::call("2026-12-06".into())).await?;
    let again = app.enqueue(NightlyReport::call("2026-12-06".into())).await?;
    println!("{} (same task: {})", first.result(Duration::from_secs(5)).await?, first.uuid() == again.uuid());

    // Pause a queue: its tasks wait, others run; resumed, they run.
    app.pause_queue("emails").await?;
    let held = app.enqueue(SendEmail::call("late@example.com".into())).await?;
    let emails_queue = app.queues().await?.into_iter().find(|q| q.name == "emails").expect("declared");
    println!("emails paused: {} waiting", emails_queue.depth);
    app.resume_queue("emails").await?;
    println!("{}", held.result(Duration::from_secs(5)).await?);

    print!("{}", app.inspect().await?);
    worker.shutdown().await;
    Ok(())
}
