//! The in-memory end-to-end benchmark of `qtasks-benches` (`e2e_memory`),
//! run on apalis 1.0 and its `MemoryStorage`.
//!
//! ```sh
//! apalis_memory throughput <tasks> <concurrency> <inline|spawn>
//! apalis_memory memory <tasks>
//! ```
//!
//! Each mode prints one `RESULT key=value …` line (read by `benches/run-all.sh`).
//!
//! - `throughput`: pushes `tasks` no-op tasks one at a time (timed: the
//!   enqueue rate), then runs a worker limited to `concurrency` tasks at once
//!   (`.concurrency(n)`, tower's `ConcurrencyLimit`) until every task ran:
//!   the run rate. `inline` polls the task futures inside the worker's own
//!   future (apalis's default), `spawn` runs each on the tokio runtime
//!   (`.parallelize(tokio::spawn)`, as qtasks does).
//!   The handler counts the tasks it ran and stops the worker after the last
//!   one: one relaxed atomic add per task that the qtasks run does not have.
//!   apalis keeps no status or result for memory tasks; qtasks does.
//! - `memory`: pushes `tasks` tasks without a worker and reports the peak
//!   resident memory (`VmHWM`), as `e2e_memory memory` does.

use apalis::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Tasks run so far, and how many to run before stopping.
static DONE: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicU64 = AtomicU64::new(u64::MAX);

/// The no-op task; stops the worker after the last one.
async fn noop(_: (), worker: WorkerContext) {
    if DONE.fetch_add(1, Relaxed) + 1 == TARGET.load(Relaxed) {
        let _ = worker.stop();
    }
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)?.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Res<T> {
    args.get(i).ok_or_else(|| format!("missing <{what}>"))?.parse().map_err(|_| format!("bad <{what}>").into())
}

async fn fill(storage: &mut MemoryStorage<()>, n: u64) -> Res<Duration> {
    let start = Instant::now();
    for _ in 0..n {
        storage.push(()).await?;
    }
    Ok(start.elapsed())
}

async fn throughput(n: u64, concurrency: usize, mode: &str) -> Res<()> {
    let mut storage = MemoryStorage::new();
    let enqueue = fill(&mut storage, n).await?;
    TARGET.store(n, Relaxed);
    let start = Instant::now();
    let builder = WorkerBuilder::new("apalis-memory").backend(storage).concurrency(concurrency);
    match mode {
        "inline" => builder.build(noop).run().await?,
        "spawn" => builder.parallelize(tokio::spawn).build(noop).run().await?,
        _ => return Err("mode: inline | spawn".into()),
    }
    let run = start.elapsed();
    let done = DONE.load(Relaxed);
    if done != n {
        return Err(format!("{done} of {n} tasks ran").into());
    }
    println!(
        "RESULT bench=memory_throughput system=apalis mode={mode} plugins=none concurrency={concurrency} tasks={n} \
         enqueue_s={:.3} enqueue_per_s={:.0} run_s={:.3} run_per_s={:.0}",
        enqueue.as_secs_f64(),
        n as f64 / enqueue.as_secs_f64(),
        run.as_secs_f64(),
        n as f64 / run.as_secs_f64(),
    );
    Ok(())
}

async fn memory(n: u64) -> Res<()> {
    let mut storage = MemoryStorage::new();
    fill(&mut storage, 1).await?;
    let before = status_kb("VmRSS:");
    let enqueue = fill(&mut storage, n).await?;
    let hwm = status_kb("VmHWM:");
    let rss = status_kb("VmRSS:");
    println!(
        "RESULT bench=memory_peak system=apalis tasks={n} rss_before_kb={before} vmhwm_kb={hwm} rss_after_kb={rss} \
         peak_mib={:.1} bytes_per_task={:.0} enqueue_per_s={:.0}",
        hwm as f64 / 1024.0,
        (hwm.saturating_sub(before) * 1024) as f64 / n as f64,
        n as f64 / enqueue.as_secs_f64(),
    );
    drop(storage);
    Ok(())
}

/// A multi-thread runtime, or with `E2E_CURRENT_THREAD` set a single-thread
/// one, as in `e2e_memory`.
fn main() -> Res<()> {
    let mut runtime = if std::env::var_os("E2E_CURRENT_THREAD").is_some() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    runtime.enable_all().build()?.block_on(run())
}

async fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("throughput") => {
            let mode: String = arg(&args, 3, "inline|spawn")?;
            throughput(arg(&args, 1, "tasks")?, arg(&args, 2, "concurrency")?, &mode).await
        }
        Some("memory") => memory(arg(&args, 1, "tasks")?).await,
        _ => Err("usage: apalis_memory throughput <tasks> <concurrency> <inline|spawn> | memory <tasks>".into()),
    }
}
