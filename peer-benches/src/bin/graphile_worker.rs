//! The Postgres end-to-end benchmark of `qtasks-benches` (`e2e_postgres`),
//! run on graphile_worker (the Rust crate, 0.14).
//!
//! ```sh
//! graphile_worker enqueue <tasks> <in_flight>
//! graphile_worker bulk <tasks>
//! graphile_worker drain <tasks> <concurrency> <direct|local> [window]
//! graphile_worker roundtrip <round_trips> <concurrency>
//! ```
//!
//! The server is `$QTASKS_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each run works in a
//! schema of its own (`gw_bench_<pid>_<mode>`, created by graphile_worker's
//! migrations) and drops it at the end. The worker runs in this process
//! with graphile_worker's defaults (`LISTEN/NOTIFY`, batched completions).
//! graphile_worker deletes a job when it succeeds and keeps no result, so
//! a task is done when its row is gone. Each mode prints one
//! `RESULT key=value …` line (read by `benches/postgres.sh`).
//!
//! - `enqueue`: `tasks` no-op jobs added by `in_flight` client tasks.
//! - `bulk`: `tasks` no-op jobs added with `add_jobs` in batches of 10,000.
//! - `drain`: adds `tasks` jobs (bulk), starts one worker with
//!   `concurrency`, and times until the jobs table is empty (counted every
//!   100 ms, so the look costs the server little). `direct`:
//!   graphile_worker's default, where each job slot
//!   fetches one job per signal (a notification of a new job, or the poll
//!   interval's tick), so a backlog that was there before the worker started
//!   drains at about `concurrency` jobs per poll interval; `local`: its
//!   LocalQueue (batch fetches of `concurrency` jobs), the setting its docs
//!   give for throughput.
//! - `roundtrip`: adds one job and waits until it ran and its row is gone
//!   (graphile_worker has no result to wait on: the handler signals, then
//!   the row is looked for every 200 µs), `round_trips` times in a row
//!   (after 200 warm-up round trips).

use graphile_worker::{
    IntoTaskHandlerResult, JobSpec, LocalQueueConfig, TaskHandler, Worker, WorkerContext, WorkerOptions,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

fn url() -> String {
    std::env::var("QTASKS_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

#[path = "../../../benches/src/measure.rs"]
mod measure;
use measure::{Res, arg, latency_summary, until_count, windows_summary};

/// Signalled by every run of the no-op job (for the round trip).
static RAN: Notify = Notify::const_new();

/// The no-op job.
#[derive(Clone, Serialize, Deserialize)]
struct Noop {}

impl TaskHandler for Noop {
    const IDENTIFIER: &'static str = "noop";

    async fn run(self, _ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        RAN.notify_one();
    }
}

struct Bench {
    pool: PgPool,
    schema: String,
}

impl Bench {
    async fn new(mode: &str, connections: u32) -> Res<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(connections).connect(&url()).await?;
        Ok(Self { pool, schema: format!("gw_bench_{}_{mode}", std::process::id()) })
    }

    /// A worker (migrating the schema), not yet running.
    async fn worker(&self, concurrency: usize, local: bool) -> Res<Arc<Worker>> {
        let mut options = WorkerOptions::default()
            .pg_pool(self.pool.clone())
            .schema(self.schema.as_str())
            .concurrency(concurrency)
            .define_job::<Noop>()
            .listen_os_shutdown_signals(false);
        if local {
            options = options.local_queue(LocalQueueConfig::default().with_size(concurrency));
        }
        let worker = options.init().await?;
        Ok(Arc::new(worker))
    }

    async fn jobs(&self) -> Res<u64> {
        let sql = format!("SELECT count(*) FROM \"{}\"._private_jobs", self.schema);
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    async fn exists(&self, id: i64) -> Res<bool> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM \"{}\"._private_jobs WHERE id = $1)", self.schema);
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(&self.pool).await?)
    }

    async fn clean(&self) -> Res<()> {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&self.pool).await?;
        Ok(())
    }
}

async fn enqueue(n: u64, in_flight: u64) -> Res<()> {
    let bench = Bench::new("enqueue", in_flight.clamp(10, 64) as u32).await?;
    let outcome = async {
        let utils = bench.worker(1, false).await?.create_utils();
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..in_flight {
            let utils = utils.clone();
            let share = n / in_flight + u64::from(i < n % in_flight);
            set.spawn(async move {
                for _ in 0..share {
                    utils.add_job(Noop {}, JobSpec::default()).await?;
                }
                Ok::<_, graphile_worker::errors::GraphileWorkerError>(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        let took = start.elapsed();
        let queued = bench.jobs().await?;
        if queued != n {
            return Err(format!("{queued} jobs for {n} added").into());
        }
        println!(
            "RESULT bench=postgres_enqueue system=graphile_worker tasks={n} in_flight={in_flight} enqueue_s={:.3} \
             enqueue_per_s={:.0}",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        Ok(())
    }
    .await;
    bench.clean().await?;
    outcome
}

/// Adds `n` jobs with `add_jobs` in batches of 10,000.
async fn add_bulk(utils: &graphile_worker::WorkerUtils, n: u64) -> Res<Duration> {
    let spec = JobSpec::default();
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let batch = left.min(10_000);
        let jobs: Vec<(Noop, &JobSpec)> = (0..batch).map(|_| (Noop {}, &spec)).collect();
        utils.add_jobs(&jobs).await?;
        left -= batch;
    }
    Ok(start.elapsed())
}

async fn bulk(n: u64) -> Res<()> {
    let bench = Bench::new("bulk", 10).await?;
    let outcome = async {
        let utils = bench.worker(1, false).await?.create_utils();
        let took = add_bulk(&utils, n).await?;
        let queued = bench.jobs().await?;
        if queued != n {
            return Err(format!("{queued} jobs for {n} added").into());
        }
        println!(
            "RESULT bench=postgres_bulk_enqueue system=graphile_worker tasks={n} enqueue_s={:.3} enqueue_per_s={:.0}",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        Ok(())
    }
    .await;
    bench.clean().await?;
    outcome
}

async fn drain(n: u64, concurrency: usize, mode: &str, window: Option<u64>) -> Res<()> {
    let local = match mode {
        "direct" => false,
        "local" => true,
        _ => return Err("mode: direct | local".into()),
    };
    let bench = Bench::new("drain", (concurrency as u32 / 4).clamp(10, 64)).await?;
    let outcome = async {
        let worker = bench.worker(concurrency, local).await?;
        let fill_took = add_bulk(&worker.create_utils(), n).await?;
        let start = Instant::now();
        let running = Arc::clone(&worker);
        let run = tokio::spawn(async move { running.run().await });
        let remaining = || async { Ok(n - bench.jobs().await?) };
        let marks = until_count(n, window, start, Duration::from_millis(100), remaining).await?;
        let took = start.elapsed();
        worker.request_shutdown();
        run.await??;
        let mut line = format!(
            "RESULT bench=postgres_drain system=graphile_worker mode={mode} tasks={n} concurrency={concurrency} fill_per_s={:.0} \
             run_s={:.3} run_per_s={:.0} errors=0",
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
        let worker = bench.worker(concurrency, false).await?;
        let utils = worker.create_utils();
        let running = Arc::clone(&worker);
        let run = tokio::spawn(async move { running.run().await });
        let mut times = Vec::with_capacity(count);
        for i in 0..200 + count {
            let start = Instant::now();
            let ran = RAN.notified();
            let job = utils.add_job(Noop {}, JobSpec::default()).await?;
            tokio::time::timeout(Duration::from_secs(10), ran).await.map_err(|_| "the job did not run within 10 s")?;
            while bench.exists(*job.id()).await? {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let took = start.elapsed();
            if i >= 200 {
                times.push(took);
            }
        }
        worker.request_shutdown();
        run.await??;
        println!(
            "RESULT bench=postgres_roundtrip system=graphile_worker round_trips={count} concurrency={concurrency}{}",
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
            let mode = args.get(3).ok_or("missing <direct|local>")?;
            drain(arg(&args, 1, "tasks")?, arg(&args, 2, "concurrency")?, mode, window).await
        }
        Some("roundtrip") => roundtrip(arg(&args, 1, "round_trips")?, arg(&args, 2, "concurrency")?).await,
        _ => Err("usage: graphile_worker enqueue <tasks> <in_flight> | bulk <tasks> | drain <tasks> <concurrency> \
                  <direct|local> [window] | roundtrip <round_trips> <concurrency>"
            .into()),
    }
}
