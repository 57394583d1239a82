//! End-to-end throughput on the in-memory backend: enqueue N no-op tasks,
//! run them with a worker, and report tasks per second.
//!
//! `cargo run --release --example throughput -- [tasks] [concurrency] [plugins: none|noop56]`

use qtasks::{QueueTasks, TaskStatus, task};
use std::time::{Duration, Instant};

#[task]
async fn noop() {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let concurrency: usize = args.next().map_or(Ok(64), |s| s.parse())?;

    let app = QueueTasks::builder("throughput").task::<Noop>().build()?;
    let start = Instant::now();
    let mut last = None;
    for _ in 0..n {
        last = Some(app.add_task("noop", ()).await?.uuid());
    }
    let enqueued = start.elapsed();
    let start = Instant::now();
    let worker = app.worker().max_tasks_process(concurrency).start().await?;
    let done = app.wait(last.expect("at least one task"), Duration::from_secs(600)).await?;
    assert_eq!(done.status, TaskStatus::Success);
    worker.shutdown().await;
    let ran = start.elapsed();
    println!(
        "{n} tasks, concurrency {concurrency}: enqueue {:.0}/s, run {:.0}/s",
        n as f64 / enqueued.as_secs_f64(),
        n as f64 / ran.as_secs_f64()
    );
    Ok(())
}
