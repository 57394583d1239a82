//! The Postgres end-to-end benchmark of `qtasks-benches` (`e2e_postgres`),
//! run on apalis 1.0 with apalis-postgres 1.0.
//!
//! ```sh
//! apalis_postgres enqueue <tasks> <in_flight>
//! apalis_postgres bulk <tasks>
//! apalis_postgres drain <tasks> <concurrency> <batch_size> [window]
//! apalis_postgres roundtrip <round_trips> <concurrency>
//! ```
//!
//! The server is `$QTASKS_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). apalis keeps every queue
//! in one table (`apalis.jobs`, created by its migrations); each run uses a
//! queue of its own (`bench-apalis-<pid>-<mode>`) and deletes its rows at
//! the end. The worker runs in this process, with apalis's `LISTEN`-based
//! fetch (`with_pubsub`), locking and stored results on (its defaults, so
//! it leases tasks and keeps results as qtasks does). Each mode prints one
//! `RESULT key=value …` line (read by `benches/postgres.sh`).
//!
//! - `enqueue`: `tasks` no-op tasks pushed by `in_flight` client tasks.
//! - `bulk`: `tasks` no-op tasks pushed with one `push_bulk` call.
//! - `drain`: pushes `tasks` tasks (bulk), starts one worker with
//!   `concurrency` and `batch_size` (apalis's tasks per fetch), and times
//!   until every row reads `Done` (counted every 100 ms, a count over the
//!   table, so the look costs the server little).
//! - `roundtrip`: pushes one task and waits for its result with apalis's
//!   own `wait_for_single`, `round_trips` times in a row (after 20 warm-up
//!   round trips). apalis looks for results again every 500 ms.

use apalis::prelude::*;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use futures::StreamExt;
use std::time::{Duration, Instant};

fn url() -> String {
    std::env::var("QTASKS_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

#[path = "../../../benches/src/measure.rs"]
mod measure;
use measure::{Res, arg, latency_summary, until_count, windows_summary};

/// The no-op task.
async fn noop(_: ()) {}

struct Bench {
    pool: PgPool,
    queue: String,
}

impl Bench {
    async fn new(mode: &str, connections: u32) -> Res<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(connections).connect(&url()).await?;
        PostgresStorage::<()>::setup(&pool).await?;
        Ok(Self { pool, queue: format!("bench-apalis-{}-{mode}", std::process::id()) })
    }

    fn storage(&self, batch_size: usize) -> PostgresStorage<()> {
        PostgresStorage::new(&self.pool).with_config(Config::default().queue(&self.queue).batch_size(batch_size))
    }

    async fn count(&self, done_only: bool) -> Res<u64> {
        let sql = if done_only {
            "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'"
        } else {
            "SELECT count(*) FROM apalis.jobs WHERE job_type = $1"
        };
        let n: i64 = sqlx::query_scalar(sql).bind(&self.queue).fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    async fn clean(&self) -> Res<()> {
        sqlx::query("DELETE FROM apalis.jobs WHERE job_type = $1").bind(&self.queue).execute(&self.pool).await?;
        Ok(())
    }
}

async fn enqueue(n: u64, in_flight: u64) -> Res<()> {
    let bench = Bench::new("enqueue", in_flight.clamp(10, 64) as u32).await?;
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..in_flight {
        let mut storage = bench.storage(10);
        let share = n / in_flight + u64::from(i < n % in_flight);
        set.spawn(async move {
            for _ in 0..share {
                storage.push(()).await?;
            }
            Ok::<_, TaskSinkError<apalis_postgres::Error>>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let took = start.elapsed();
    let queued = bench.count(false).await?;
    bench.clean().await?;
    if queued != n {
        return Err(format!("{queued} rows for {n} pushed").into());
    }
    println!(
        "RESULT bench=postgres_enqueue system=apalis tasks={n} in_flight={in_flight} enqueue_s={:.3} enqueue_per_s={:.0}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// Pushes `n` tasks in batches of 10,000 with `push_bulk`.
async fn push_bulk(bench: &Bench, n: u64) -> Res<Duration> {
    let mut storage = bench.storage(10);
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(10_000);
        storage.push_bulk(vec![(); batch as usize]).await?;
        left -= batch;
    }
    Ok(start.elapsed())
}

async fn bulk(n: u64) -> Res<()> {
    let bench = Bench::new("bulk", 10).await?;
    let took = push_bulk(&bench, n).await;
    let queued = bench.count(false).await;
    bench.clean().await?;
    let (took, queued) = (took?, queued?);
    if queued != n {
        return Err(format!("{queued} rows for {n} pushed").into());
    }
    println!(
        "RESULT bench=postgres_bulk_enqueue system=apalis tasks={n} enqueue_s={:.3} enqueue_per_s={:.0}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// Runs a worker until `stop` resolves.
fn spawn_worker(
    bench: &Bench,
    concurrency: usize,
    batch_size: usize,
) -> (tokio::task::JoinHandle<Res<()>>, tokio::sync::oneshot::Sender<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let storage = bench.storage(batch_size).with_pubsub();
    let name = format!("bench-apalis-{}", std::process::id());
    let handle = tokio::spawn(async move {
        WorkerBuilder::new(name)
            .backend(storage)
            .concurrency(concurrency)
            .build(noop)
            .run_until(async move {
                let _ = rx.await;
                Ok::<(), std::io::Error>(())
            })
            .await?;
        Ok(())
    });
    (handle, tx)
}

async fn drain(n: u64, concurrency: usize, batch_size: usize, window: Option<u64>) -> Res<()> {
    let bench = Bench::new("drain", (concurrency as u32 / 4).clamp(10, 64)).await?;
    let outcome = async {
        let fill_took = push_bulk(&bench, n).await?;
        let start = Instant::now();
        let (worker, stop) = spawn_worker(&bench, concurrency, batch_size);
        let marks = until_count(n, window, start, Duration::from_millis(100), || bench.count(true)).await?;
        let took = start.elapsed();
        let _ = stop.send(());
        worker.await??;
        let mut line = format!(
            "RESULT bench=postgres_drain system=apalis tasks={n} concurrency={concurrency} batch_size={batch_size} \
             fill_per_s={:.0} run_s={:.3} run_per_s={:.0} errors=0",
            n as f64 / fill_took.as_secs_f64(),
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        if let Some(w) = window {
            line += &windows_summary(w, &marks);
        }
        println!("{line}");
        Ok(())
    }
    .await;
    bench.clean().await?;
    outcome
}

async fn roundtrip(count: usize, concurrency: usize) -> Res<()> {
    let bench = Bench::new("roundtrip", 10).await?;
    let outcome = async {
        let (worker, stop) = spawn_worker(&bench, concurrency, 10);
        let mut storage = bench.storage(10);
        let mut times = Vec::with_capacity(count);
        for i in 0..20 + count {
            let id = TaskId::from(ulid::Ulid::generate());
            let start = Instant::now();
            storage.push_task(TaskBuilder::new(()).task_id(id.clone()).build()).await?;
            let result = tokio::time::timeout(Duration::from_secs(10), storage.wait_for_single(id).next())
                .await
                .map_err(|_| "no result within 10 s")?
                .ok_or("the result stream ended")??;
            let took = start.elapsed();
            let result: &Result<(), String> = result.result();
            if let Err(e) = result {
                return Err(format!("a task failed: {e}").into());
            }
            if i >= 20 {
                times.push(took);
            }
        }
        let _ = stop.send(());
        worker.await??;
        println!(
            "RESULT bench=postgres_roundtrip system=apalis round_trips={count} concurrency={concurrency}{}",
            latency_summary(&mut times)
        );
        Ok(())
    }
    .await;
    bench.clean().await?;
    outcome
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("enqueue") => enqueue(arg(&args, 1, "tasks")?, arg(&args, 2, "in_flight")?).await,
        Some("bulk") => bulk(arg(&args, 1, "tasks")?).await,
        Some("drain") => {
            let window = if args.len() > 4 { Some(arg(&args, 4, "window")?) } else { None };
            drain(arg(&args, 1, "tasks")?, arg(&args, 2, "concurrency")?, arg(&args, 3, "batch_size")?, window).await
        }
        Some("roundtrip") => roundtrip(arg(&args, 1, "round_trips")?, arg(&args, 2, "concurrency")?).await,
        _ => Err("usage: apalis_postgres enqueue <tasks> <in_flight> | bulk <tasks> | drain <tasks> <concurrency> \
                  <batch_size> [window] | roundtrip <round_trips> <concurrency>"
            .into()),
    }
}
