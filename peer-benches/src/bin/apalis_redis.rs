//! The Redis end-to-end benchmark of `qtasks-benches` (`e2e_redis`), run on
//! apalis 1.0 with apalis-redis 1.0.
//!
//! ```sh
//! apalis_redis enqueue <tasks> <in_flight>
//! apalis_redis drain <tasks> <worker_processes> <concurrency> <batch_size> <inline|spawn> [window]
//! apalis_redis live <tasks> <worker_processes> <concurrency> <batch_size> <inline|spawn>
//! ```
//!
//! The server is `$QTASKS_BROKER_URL` (default `redis://127.0.0.1:6379`).
//! Every run uses a queue of its own (`bench-apalis-<pid>`) and deletes its
//! keys (`<queue>:*`) before and after. Each mode prints one
//! `RESULT key=value …` line (read by `benches/run-all.sh`).
//!
//! - `enqueue`: `tasks` no-op tasks pushed by `in_flight` client tasks, each
//!   with its own clone of the storage (1 = one at a time).
//! - `drain`: fills the queue with `tasks` tasks (64 in flight), starts
//!   `worker_processes` copies of this binary (`apalis_redis worker …`),
//!   waits until each has connected, releases them at once and times until
//!   `tasks` completions were published on `tasks:<queue>:done` (apalis
//!   publishes one per acknowledged task, like qtasks's `done` channel).
//!   Then it checks that `<queue>:done` holds `tasks` ids and the dead set
//!   none. `batch_size` is apalis's `Config::batch_size` (tasks per fetch,
//!   10 by default); `inline`/`spawn` as in `apalis_memory`. Locking and
//!   results stay on (apalis's defaults), so apalis leases tasks and stores
//!   results as qtasks does.
//! - `live`: the same, but the workers start on an empty queue and the
//!   client pushes the tasks (64 in flight) while they run; the time runs
//!   from the first push to the last completion.

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use futures::StreamExt;
use redis::aio::ConnectionManager;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

fn url() -> String {
    std::env::var("QTASKS_BROKER_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

#[path = "../../../benches/src/measure.rs"]
mod measure;
use measure::{Res, arg, windows_summary};

/// The no-op task.
async fn noop(_: ()) {}

async fn storage(queue: &str, batch_size: usize) -> Res<RedisStorage<()>> {
    let conn = apalis_redis::connect(url()).await?;
    Ok(RedisStorage::new(conn).with_config(Config::default().queue(queue).batch_size(batch_size)))
}

/// Deletes every key of the queue.
async fn delete_queue(conn: &mut ConnectionManager, queue: &str) -> Res<()> {
    let pattern = format!("{queue}:*");
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(conn).await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK").arg(&keys).query_async(conn).await?;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}

/// Tasks waiting: pushed tasks wait in `<queue>:scheduled` until a fetch
/// moves them to `<queue>:active`.
async fn queued(conn: &mut ConnectionManager, queue: &str) -> Res<u64> {
    let scheduled: u64 = redis::cmd("ZCARD").arg(format!("{queue}:scheduled")).query_async(conn).await?;
    let active: u64 = redis::cmd("LLEN").arg(format!("{queue}:active")).query_async(conn).await?;
    Ok(scheduled + active)
}

/// Moves the pushed tasks from `<queue>:scheduled` to `<queue>:active` in
/// chunks of 5,000, in order, as apalis's fetch script does in one go.
///
/// apalis-redis 1.0.0 pushes every task into the scheduled set (its `run_at`
/// is clamped to now), and its fetch script promotes all due tasks with one
/// `RPUSH key unpack(ids)`: with more than about 8,000 due tasks, Lua fails
/// with "too many results to unpack" and the worker stops. A pre-filled
/// queue of 100,000 tasks therefore cannot be drained as is; promoting them
/// beforehand (no worker is running yet) is the smallest change that lets it.
async fn promote(conn: &mut ConnectionManager, queue: &str) -> Res<()> {
    let scheduled = format!("{queue}:scheduled");
    let active = format!("{queue}:active");
    loop {
        let ids: Vec<String> = redis::cmd("ZRANGE").arg(&scheduled).arg(0).arg(4999).query_async(conn).await?;
        if ids.is_empty() {
            return Ok(());
        }
        let _: () = redis::pipe()
            .atomic()
            .cmd("RPUSH")
            .arg(&active)
            .arg(&ids)
            .ignore()
            .cmd("ZREM")
            .arg(&scheduled)
            .arg(&ids)
            .ignore()
            .query_async(conn)
            .await?;
    }
}

/// Pushes `n` no-op tasks from `in_flight` concurrent client tasks; returns the time taken.
async fn fill(storage: &RedisStorage<()>, n: u64, in_flight: u64) -> Res<Duration> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..in_flight {
        let mut storage = storage.clone();
        let share = n / in_flight + u64::from(i < n % in_flight);
        set.spawn(async move {
            for _ in 0..share {
                storage.push(()).await?;
            }
            Ok::<_, TaskSinkError<apalis_redis::Error>>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(start.elapsed())
}

async fn enqueue(n: u64, in_flight: u64) -> Res<()> {
    let queue = format!("bench-apalis-{}-enqueue", std::process::id());
    let storage = storage(&queue, 10).await?;
    let mut conn = apalis_redis::connect(url()).await?;
    delete_queue(&mut conn, &queue).await?;
    let took = fill(&storage, n, in_flight).await?;
    let queued = queued(&mut conn, &queue).await?;
    delete_queue(&mut conn, &queue).await?;
    if queued != n {
        return Err(format!("{queued} queued for {n} pushed").into());
    }
    println!(
        "RESULT bench=redis_enqueue system=apalis tasks={n} in_flight={in_flight} enqueue_s={:.3} enqueue_per_s={:.0}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// The `worker` subcommand: connect, say READY, run on GO, stop at end of input.
async fn worker(queue: &str, concurrency: usize, batch_size: usize, mode: &str) -> Res<()> {
    let storage = storage(queue, batch_size).await?;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(b"READY\n").await?;
    stdout.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    if lines.next_line().await?.as_deref() != Some("GO") {
        return Ok(());
    }
    let stop = async move {
        while lines.next_line().await?.is_some() {}
        Ok::<(), std::io::Error>(())
    };
    let name = format!("bench-apalis-{}", std::process::id());
    let builder = WorkerBuilder::new(name).backend(storage).concurrency(concurrency);
    match mode {
        "inline" => builder.build(noop).run_until(stop).await?,
        "spawn" => builder.parallelize(tokio::spawn).build(noop).run_until(stop).await?,
        _ => return Err("mode: inline | spawn".into()),
    }
    Ok(())
}

/// Worker processes, held until released.
struct Workers {
    children: Vec<(Child, ChildStdin)>,
}

impl Workers {
    async fn spawn(count: usize, args: &[String]) -> Res<Self> {
        let exe = std::env::current_exe()?;
        let mut children = Vec::new();
        for _ in 0..count {
            let mut child = Command::new(&exe)
                .arg("worker")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let stdin = child.stdin.take().ok_or("no stdin")?;
            children.push((child, stdin));
        }
        for (child, _) in &mut children {
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).await?;
            if line.trim() != "READY" {
                return Err(format!("worker process said {line:?} instead of READY").into());
            }
        }
        Ok(Self { children })
    }

    async fn go(&mut self) -> Res<()> {
        for (_, stdin) in &mut self.children {
            stdin.write_all(b"GO\n").await?;
            stdin.flush().await?;
        }
        Ok(())
    }

    async fn stop(self) -> Res<()> {
        for (mut child, stdin) in self.children {
            drop(stdin);
            let status = child.wait().await?;
            if !status.success() {
                return Err(format!("a worker process exited with {status}").into());
            }
        }
        Ok(())
    }
}

/// `drain` (`live` false) or `live` (`live` true).
#[allow(clippy::too_many_arguments)]
async fn drain(
    n: u64,
    processes: usize,
    concurrency: usize,
    batch_size: usize,
    mode: &str,
    window: Option<u64>,
    live: bool,
) -> Res<()> {
    let bench = if live { "live" } else { "drain" };
    let queue = format!("bench-apalis-{}-{bench}", std::process::id());
    let mut conn = apalis_redis::connect(url()).await?;
    delete_queue(&mut conn, &queue).await?;
    let storage = storage(&queue, batch_size).await?;
    let client = redis::Client::open(url())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(format!("tasks:{queue}:done")).await?;
    let mut fill_took = Duration::ZERO;
    if !live {
        fill_took = fill(&storage, n, 64).await?;
        promote(&mut conn, &queue).await?;
    }
    let worker_args = [queue.clone(), concurrency.to_string(), batch_size.to_string(), mode.to_owned()];
    let mut workers = Workers::spawn(processes, &worker_args).await?;
    let mut stream = pubsub.on_message();
    let start = Instant::now();
    workers.go().await?;
    let producer = live.then(|| tokio::spawn(async move { fill(&storage, n, 64).await }));
    let mut marks = Vec::new();
    let mut seen = 0u64;
    let mut stalled = None;
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
            Ok(Some(_)) => seen += 1,
            Ok(None) => return Err("the pub/sub connection closed".into()),
            Err(_) => {
                stalled = Some(format!("no completion for 60 s after {seen} of {n}"));
                break;
            }
        }
        if window.is_some_and(|w| seen.is_multiple_of(w)) {
            marks.push(start.elapsed());
        }
    }
    let took = start.elapsed();
    if let Some(p) = producer {
        fill_took = p.await??;
    }
    drop(stream);
    workers.stop().await?;
    let done: u64 = redis::cmd("SCARD").arg(format!("{queue}:done")).query_async(&mut conn).await?;
    let dead: u64 = redis::cmd("SCARD").arg(format!("{queue}:dead")).query_async(&mut conn).await?;
    delete_queue(&mut conn, &queue).await?;
    if let Some(stalled) = stalled {
        return Err(stalled.into());
    }
    if done != n || dead != 0 {
        return Err(format!("{done} done and {dead} dead of {n}").into());
    }
    let mut line = format!(
        "RESULT bench=redis_{bench} system=apalis mode={mode} batch_size={batch_size} tasks={n} processes={processes} \
         concurrency={concurrency} fill_in_flight=64 fill_per_s={:.0} run_s={:.3} run_per_s={:.0} errors=0",
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

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("enqueue") => enqueue(arg(&args, 1, "tasks")?, arg(&args, 2, "in_flight")?).await,
        Some("drain") => {
            let mode: String = arg(&args, 5, "inline|spawn")?;
            let window = if args.len() > 6 { Some(arg(&args, 6, "window")?) } else { None };
            drain(
                arg(&args, 1, "tasks")?,
                arg(&args, 2, "worker_processes")?,
                arg(&args, 3, "concurrency")?,
                arg(&args, 4, "batch_size")?,
                &mode,
                window,
                false,
            )
            .await
        }
        Some("live") => {
            let mode: String = arg(&args, 5, "inline|spawn")?;
            drain(
                arg(&args, 1, "tasks")?,
                arg(&args, 2, "worker_processes")?,
                arg(&args, 3, "concurrency")?,
                arg(&args, 4, "batch_size")?,
                &mode,
                None,
                true,
            )
            .await
        }
        Some("worker") => {
            let mode: String = arg(&args, 4, "mode")?;
            worker(
                args.get(1).ok_or("missing <queue>")?,
                arg(&args, 2, "concurrency")?,
                arg(&args, 3, "batch_size")?,
                &mode,
            )
            .await
        }
        _ => Err("usage: apalis_redis enqueue <tasks> <in_flight> | drain <tasks> <worker_processes> <concurrency> \
                  <batch_size> <inline|spawn> [window] | live <tasks> <worker_processes> <concurrency> <batch_size> \
                  <inline|spawn>"
            .into()),
    }
}
