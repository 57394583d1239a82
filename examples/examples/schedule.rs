//! Schedules: a worker and a scheduler in one process, on the in-memory backend.
//!
//! An interval entry enqueues `heartbeat` every 700 ms and a cron entry
//! enqueues `report` at every whole second (UTC); a third, at 02:30 in
//! Paris, prints when it fires next (daylight saving included) but does not
//! fire in the run. After about three seconds they stop and the tasks they
//! enqueued are listed.
//!
//! Run with `cargo run --example schedule`.
//!
//! In a process that only schedules (QTasks's Timer), with workers elsewhere
//! on a shared backend such as Redis, the scheduler runs until a signal:
//!
//! ```ignore
//! let stop = async { tokio::signal::ctrl_c().await.unwrap() };
//! let entry = ScheduleEntry::cron_in("0 3 * * *", "Europe/Paris", call("cleanup", ()))?;
//! let stats = Scheduler::new(&app).entry(entry).run_until(stop).await;
//! ```

use qtasks::{QueueTasks, ScheduleEntry, Scheduler, TaskStatus, call, task};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

static BEATS: AtomicU64 = AtomicU64::new(0);

/// Counts heartbeats.
#[task]
async fn heartbeat() -> u64 {
    BEATS.fetch_add(1, Ordering::SeqCst) + 1
}

/// Builds a one-line report.
#[task]
async fn report(title: String) -> String {
    format!("{title}: {} heartbeats so far", BEATS.load(Ordering::SeqCst))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = QueueTasks::builder("schedule-demo").task::<Heartbeat>().task::<Report>().build()?;
    let worker = app.worker().start().await?;

    // 02:30 on the wall clock of Paris, summer and winter; UTC unless a zone is given.
    let nightly = ScheduleEntry::cron_in("30 2 * * *", "Europe/Paris", call("report", ["nightly"]))?;
    if let Some(next) = nightly.next_after(SystemTime::now()) {
        let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
        println!("{} fires next in {} min", nightly.description(), wait.as_secs() / 60);
    }

    let schedule = Scheduler::new(app.clone())
        .entry(ScheduleEntry::every(Duration::from_millis(700), call("heartbeat", ()))?)
        .entry(ScheduleEntry::cron("*/1 * * * * *", call("report", ["status"]).priority(-1))?.name("status report"))
        .entry(nightly)
        .start();
    println!("scheduler started with 3 entries; running for 3.2 s");
    tokio::time::sleep(Duration::from_millis(3200)).await;

    let stats = schedule.shutdown().await;
    for entry in &stats {
        println!(
            "entry {:?} (task {}): fired {}, failed {}, skipped {}",
            entry.description, entry.task_name, entry.fired, entry.failed, entry.skipped
        );
    }

    let mut records = app.get_all().await?;
    records.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
    for record in records {
        let record = app.wait(record.uuid, Duration::from_secs(5)).await?;
        assert_eq!(record.status, TaskStatus::Success);
        println!(
            "  {} from {} -> {}",
            record.task_name,
            record.extra.get("schedule").and_then(|s| s.as_str()).unwrap_or("?"),
            record.result.unwrap_or_default()
        );
    }

    worker.shutdown().await;
    Ok(())
}
