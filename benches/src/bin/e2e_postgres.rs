//! End to end on the Postgres backend: enqueue rate (single and bulk), the
//! drain rate of a pre-filled queue, the single-task round trip, and the
//! size of the table after many tasks passed through with a short retention.
//!
//! ```sh
//! e2e_postgres enqueue <tasks> <in_flight>
//! e2e_postgres bulk <tasks>
//! e2e_postgres drain <tasks> <concurrency> [window]
//! e2e_postgres roundtrip <round_trips> <concurrency>
//! e2e_postgres size <tasks> <concurrency>
//! ```
//!
//! With `BENCH_SYNCHRONOUS_FINISH=0`, the backend finishes asynchronously
//! (`PostgresOptions::synchronous_finish(false)`); each line says which.
//!
//! The server is `$QTASKS_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Every run works in a
//! schema of its own (`bench_<pid>_<mode>`), dropped at the end, so it can
//! share a server with other users. Each mode prints one `RESULT key=value …`
//! line (read by `benches/postgres.sh`).
//!
//! - `enqueue`: `tasks` no-op tasks enqueued by `in_flight` client tasks
//!   (1 = one at a time, each awaited before the next).
//! - `bulk`: `tasks` no-op tasks enqueued by one `add_tasks` call.
//! - `drain`: fills the queue with `tasks` tasks (bulk), then starts one
//!   worker in this process and times until every task has ended (counted
//!   from the notifications finishing sends), then checks from the
//!   backend's counters that every one ended `success`. With
//!   `window`, the rate of every `window` completions too (the backlog
//!   check: a 1 M backlog should drain at a flat rate).
//! - `roundtrip`: one worker; the client enqueues one task and waits for
//!   its result, `round_trips` times in a row (after 200 warm-up round
//!   trips), and reports the percentiles.
//! - `size`: a worker runs while the client enqueues `tasks` tasks in
//!   batches of 10 000 with a one-minute retention; prints the table's and
//!   its indexes' size at the end of the run, then again once retention
//!   has deleted every finished row (the purge runs every 10 s).

use qtasks::backend::postgres::sqlx::postgres::PgListener;
use qtasks::backend::postgres::sqlx::{self, Executor};
use qtasks::{Backend, PostgresBackend, QueueTasks, TaskStatus, task};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "../measure.rs"]
mod measure;
use measure::{Res, arg, latency_summary, until_count, windows_summary};

/// The task every benchmark runs.
#[task]
async fn noop() {}

type App = QueueTasks<(Noop,), (), PostgresBackend>;

fn url() -> String {
    std::env::var("QTASKS_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `false` when `BENCH_SYNCHRONOUS_FINISH=0`: finishes commit asynchronously
/// (`PostgresOptions::synchronous_finish`).
fn synchronous_finish() -> bool {
    std::env::var("BENCH_SYNCHRONOUS_FINISH").map_or(true, |v| v != "0")
}

/// An app on a fresh schema of its own, with a pool big enough for `concurrency`.
async fn connect(mode: &str, concurrency: usize) -> Res<App> {
    let schema = format!("bench_{}_{mode}", std::process::id());
    let backend = PostgresBackend::options(&url())
        .schema(&schema)
        .pool_size((concurrency as u32 / 4).clamp(10, 64))
        .synchronous_finish(synchronous_finish())
        .connect()
        .await?
        .for_app("bench");
    Ok(QueueTasks::builder("bench").task::<Noop>().backend(backend).build()?)
}

async fn drop_schema(app: &App) -> Res<()> {
    let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", app.backend().schema());
    app.backend().pool().execute(sqlx::AssertSqlSafe(sql)).await?;
    Ok(())
}

/// Counts ended tasks from the backend's `{schema}_done` notifications
/// (one id, or a batch's ids separated by commas), as a waiting client
/// learns of them: no query per look, so measuring costs the server nothing.
struct Completions {
    seen: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Completions {
    async fn listen(app: &App) -> Res<Self> {
        let mut listener = PgListener::connect_with(app.backend().pool()).await?;
        listener.listen(&format!("{}_done", app.backend().schema())).await?;
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok(n) = listener.recv().await {
                counter.fetch_add(n.payload().split(',').count() as u64, Ordering::Relaxed);
            }
        });
        Ok(Self { seen, task })
    }

    fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Waits until `n` tasks ended; with `window`, returns when each
    /// multiple of `window` was passed.
    async fn until(&self, n: u64, window: Option<u64>, start: Instant) -> Res<Vec<Duration>> {
        until_count(n, window, start, Duration::from_millis(5), || std::future::ready(Ok(self.seen()))).await
    }
}

impl Drop for Completions {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn enqueue(n: u64, in_flight: u64) -> Res<()> {
    let app = connect("enqueue", in_flight as usize).await?;
    let took = qtasks_benches::fill_noop(&app, n, in_flight).await;
    let queued = app.backend().stats().await.map(|s| s.queued);
    drop_schema(&app).await?;
    let (took, queued) = (took?, queued?);
    if queued != n {
        return Err(format!("{queued} queued for {n} enqueued tasks").into());
    }
    println!(
        "RESULT bench=postgres_enqueue system=qtasks tasks={n} in_flight={in_flight} enqueue_s={:.3} enqueue_per_s={:.0}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    Ok(())
}

async fn bulk(n: u64) -> Res<()> {
    let app = connect("bulk", 1).await?;
    let start = Instant::now();
    let handles = app.add_tasks((0..n).map(|_| Noop::call())).await;
    let took = start.elapsed();
    let queued = app.backend().stats().await.map(|s| s.queued);
    drop_schema(&app).await?;
    let (handles, queued) = (handles?, queued?);
    if queued != n || handles.len() as u64 != n {
        return Err(format!("{queued} queued, {} handles for {n} enqueued tasks", handles.len()).into());
    }
    println!(
        "RESULT bench=postgres_bulk_enqueue system=qtasks tasks={n} enqueue_s={:.3} enqueue_per_s={:.0}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    Ok(())
}

async fn drain(n: u64, concurrency: usize, window: Option<u64>) -> Res<()> {
    let app = connect("drain", concurrency).await?;
    let outcome = async {
        let fill_start = Instant::now();
        // In batches, so a 1 M backlog is not one million handles at once.
        let mut left = n;
        while left > 0 {
            let batch = left.min(100_000);
            app.add_tasks((0..batch).map(|_| Noop::call())).await?;
            left -= batch;
        }
        let fill_took = fill_start.elapsed();
        let completions = Completions::listen(&app).await?;
        let start = Instant::now();
        let worker = app.worker().max_tasks_process(concurrency).start().await?;
        let marks = completions.until(n, window, start).await?;
        let took = start.elapsed();
        worker.shutdown().await;
        let stats = app.backend().stats().await?;
        let counts = stats.tasks.get("noop").copied().unwrap_or_default();
        if counts.success != n || counts.error != 0 || stats.queued != 0 || stats.in_flight != 0 {
            return Err(format!("after the drain: {stats:?}").into());
        }
        let mut line = format!(
            "RESULT bench=postgres_drain system=qtasks synchronous_finish={} tasks={n} concurrency={concurrency} \
             fill_per_s={:.0} \
             run_s={:.3} run_per_s={:.0} duplicates={} errors=0",
            synchronous_finish(),
            n as f64 / fill_took.as_secs_f64(),
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            counts.duplicates,
        );
        if let Some(w) = window {
            line += &windows_summary(w, &marks);
        }
        println!("{line}");
        Ok(())
    }
    .await;
    drop_schema(&app).await?;
    outcome
}

async fn roundtrip(count: usize, concurrency: usize) -> Res<()> {
    let app = connect("roundtrip", concurrency).await?;
    let outcome = async {
        let worker = app.worker().max_tasks_process(concurrency).start().await?;
        let timeout = Duration::from_secs(10);
        let mut times = Vec::with_capacity(count);
        for i in 0..200 + count {
            let start = Instant::now();
            let task = app.add_task("noop", ()).await?.record(timeout).await?;
            let took = start.elapsed();
            if task.status != TaskStatus::Success {
                return Err(format!("a task ended {:?}", task.status).into());
            }
            if i >= 200 {
                times.push(took);
            }
        }
        worker.shutdown().await;
        println!(
            "RESULT bench=postgres_roundtrip system=qtasks synchronous_finish={} round_trips={count} \
             concurrency={concurrency}{}",
            synchronous_finish(),
            latency_summary(&mut times)
        );
        Ok(())
    }
    .await;
    drop_schema(&app).await?;
    outcome
}

/// Table, index and TOAST size of the schema's `tasks` table, its rows
/// and dead rows.
async fn table_size(app: &App) -> Res<String> {
    let schema = app.backend().schema();
    let table = format!("\"{schema}\".tasks");
    let (heap, indexes, total, rows): (i64, i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT pg_relation_size('{table}'), pg_indexes_size('{table}'), pg_total_relation_size('{table}'), \
         (SELECT count(*) FROM {table})"
    )))
    .fetch_one(app.backend().pool())
    .await?;
    let dead: i64 = sqlx::query_scalar(
        "SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'tasks'",
    )
    .bind(schema)
    .fetch_optional(app.backend().pool())
    .await?
    .unwrap_or(0);
    let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
    Ok(format!(
        "rows={rows} dead_rows={dead} heap_mib={:.1} indexes_mib={:.1} total_mib={:.1}",
        mib(heap),
        mib(indexes),
        mib(total)
    ))
}

async fn size(n: u64, concurrency: usize) -> Res<()> {
    let schema = format!("bench_{}_size", std::process::id());
    let backend = PostgresBackend::options(&url())
        .schema(&schema)
        .pool_size((concurrency as u32 / 4).clamp(10, 64))
        .connect()
        .await?
        .for_app("bench")
        .retention(Some(Duration::from_secs(60)));
    let app: App = QueueTasks::builder("bench").task::<Noop>().backend(backend).build()?;
    let outcome = async {
        let completions = Completions::listen(&app).await?;
        let start = Instant::now();
        let worker = app.worker().max_tasks_process(concurrency).start().await?;
        let mut sent = 0;
        while sent < n {
            let batch = (n - sent).min(10_000);
            app.add_tasks((0..batch).map(|_| Noop::call())).await?;
            sent += batch;
            // Keep the backlog small: this measures tasks passing through.
            while sent - completions.seen() > 50_000 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        completions.until(n, None, start).await?;
        let took = start.elapsed();
        let at_end = table_size(&app).await?;
        // Retention: every row ended at least a minute ago, then one purge.
        let drained = Instant::now();
        loop {
            let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{schema}\".tasks")))
                .fetch_one(app.backend().pool())
                .await?;
            if rows == 0 {
                break;
            }
            if drained.elapsed() > Duration::from_secs(300) {
                return Err(format!("{rows} rows left 5 minutes after the last task").into());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let purged_after = drained.elapsed();
        let after_purge = table_size(&app).await?;
        worker.shutdown().await;
        let to = |s: &str, p: &str| s.split(' ').map(|kv| format!("{p}{kv}")).collect::<Vec<_>>().join(" ");
        println!(
            "RESULT bench=postgres_size system=qtasks tasks={n} concurrency={concurrency} retention_s=60 run_s={:.1} \
             run_per_s={:.0} {} purged_after_s={:.0} {}",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            to(&at_end, "end_"),
            purged_after.as_secs_f64(),
            to(&after_purge, "purged_"),
        );
        Ok(())
    }
    .await;
    drop_schema(&app).await?;
    outcome
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("enqueue") => enqueue(arg(&args, 1, "tasks")?, arg(&args, 2, "in_flight")?).await,
        Some("bulk") => bulk(arg(&args, 1, "tasks")?).await,
        Some("drain") => {
            let window = if args.len() > 3 { Some(arg(&args, 3, "window")?) } else { None };
            drain(arg(&args, 1, "tasks")?, arg(&args, 2, "concurrency")?, window).await
        }
        Some("roundtrip") => roundtrip(arg(&args, 1, "round_trips")?, arg(&args, 2, "concurrency")?).await,
        Some("size") => size(arg(&args, 1, "tasks")?, arg(&args, 2, "concurrency")?).await,
        _ => Err(
            "usage: e2e_postgres enqueue <tasks> <in_flight> | bulk <tasks> | drain <tasks> <concurrency> [window] \
                  | roundtrip <round_trips> <concurrency> | size <tasks> <concurrency>"
                .into(),
        ),
    }
}
