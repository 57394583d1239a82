//! End to end on the Redis backend: enqueue rate, completion rate with 1 or
//! more worker processes, and the single-task round trip.
//!
//! ```sh
//! e2e_redis enqueue <tasks> <in_flight>
//! e2e_redis bulk <tasks>
//! e2e_redis drain <tasks> <worker_processes> <concurrency> [window]
//! e2e_redis live <tasks> <worker_processes> <concurrency>
//! e2e_redis roundtrip <round_trips> <concurrency>
//! ```
//!
//! The server is `$QTASKS_BROKER_URL` (default `redis://127.0.0.1:6379`).
//! Every run uses an app name of its own (`bench-<pid>-<mode>`) and flushes
//! its keys before and after, so it can share a server with other users.
//! Each mode prints one `RESULT key=value …` line (read by `benches/run-all.sh`).
//!
//! - `enqueue`: `tasks` no-op tasks enqueued by `in_flight` client tasks
//!   sharing the app (1 = one at a time, each awaited before the next).
//! - `bulk`: `tasks` no-op tasks enqueued by one `add_tasks` call (one
//!   enqueue script call per batch of 500), to compare with `enqueue
//!   <tasks> 1`.
//! - `drain`: fills the queue with `tasks` tasks (64 in flight), starts
//!   `worker_processes` copies of this binary (`e2e_redis worker …`, not for
//!   direct use), waits until each has connected and built its app, then
//!   releases them all at once and times until `tasks` completions were
//!   published on the app's `done` channel. Every record is then checked to
//!   be `success`. The line gives the CPU time per task of the worker
//!   processes and of the Redis server over the timed part (live: the
//!   server's includes the enqueues). With `window`, the rate of every `window` completions is
//!   printed too (the backlog check), with the CPU time per task of every
//!   window: the worker processes' threads (`/proc/<pid>/task/*/schedstat`)
//!   plus the Redis server (`INFO cpu`).
//! - `live`: the same, but the workers start on an empty queue and the
//!   client enqueues the tasks (64 in flight) while they run: the time runs
//!   from the first enqueue to the last completion. This is the completion
//!   rate without a backlog.
//! - `E2E_REDIS_LISTING=0`: every process of the run enqueues with
//!   `RedisBackend::listing(false)` (the lean mode, no listing indexes).
//! - `E2E_INLINE=1`: the worker processes run their tasks inline
//!   (`WorkerBuilder::run_inline`).
//! - `E2E_PHASE_HOOK`: a command run with `start` just before the timed
//!   part of `drain` and `live` and with `end` just after (see
//!   `phase_hook`), to profile the server over that part alone.
//! - `roundtrip`: one worker process; the client enqueues one task and
//!   waits for its result, `round_trips` times in a row (after 200 warm-up
//!   round trips), and reports the percentiles.

use futures::StreamExt;
use qtasks::{Backend, QueueTasks, RedisBackend, TaskSet, TaskStatus, task};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

#[path = "../measure.rs"]
mod measure;
use measure::{Res, arg, latency_summary, windows_summary};

/// The task every benchmark runs.
#[task]
async fn noop() {}

fn url() -> String {
    std::env::var("QTASKS_BROKER_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn connect(app_name: &str) -> Res<QueueTasks<impl TaskSet, (), RedisBackend>> {
    // `E2E_REDIS_LISTING=0`: the lean mode, without the task listing's indexes.
    let listing = std::env::var("E2E_REDIS_LISTING").map_or(true, |v| v != "0");
    let backend = RedisBackend::connect(&url()).await.map(|b| b.for_app(app_name).listing(listing))?;
    Ok(QueueTasks::builder(app_name).task::<Noop>().backend(backend).build()?)
}

/// Errors unless the app holds exactly `n` records, all `success`.
async fn check_all_success<T: TaskSet, B: Backend>(app: &QueueTasks<T, (), B>, n: u64) -> Res<()> {
    let all = app.get_all().await?;
    let ok = all.iter().filter(|t| t.status == TaskStatus::Success).count() as u64;
    if all.len() as u64 != n || ok != n {
        return Err(format!("expected {n} successful records, found {} records, {ok} successful", all.len()).into());
    }
    Ok(())
}

async fn enqueue(n: u64, in_flight: u64) -> Res<()> {
    let name = format!("bench-{}-enqueue", std::process::id());
    let app = connect(&name).await?;
    app.flush_all().await?;
    let took = qtasks_benches::fill_noop(&app, n, in_flight).await?;
    let queued = app.get_all().await?.len() as u64;
    app.flush_all().await?;
    if queued != n {
        return Err(format!("{queued} records for {n} enqueued tasks").into());
    }
    println!(
        "RESULT bench=redis_enqueue system=qtasks tasks={n} in_flight={in_flight} enqueue_s={:.3} enqueue_per_s={:.0}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    Ok(())
}

async fn bulk(n: u64) -> Res<()> {
    let name = format!("bench-{}-bulk", std::process::id());
    let app = connect(&name).await?;
    app.flush_all().await?;
    let start = Instant::now();
    let handles = app.add_tasks((0..n).map(|_| Noop::call())).await?;
    let took = start.elapsed();
    let queued = app.get_all().await?.len() as u64;
    app.flush_all().await?;
    if queued != n || handles.len() as u64 != n {
        return Err(format!("{queued} records, {} handles for {n} enqueued tasks", handles.len()).into());
    }
    println!(
        "RESULT bench=redis_bulk_enqueue system=qtasks tasks={n} enqueue_s={:.3} enqueue_per_s={:.0}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    Ok(())
}

/// Worker processes started by `drain` and `roundtrip`, held until released.
struct Workers {
    children: Vec<(Child, ChildStdin)>,
}

impl Workers {
    /// Starts `count` worker processes for `app_name` and waits until each is ready.
    async fn spawn(count: usize, app_name: &str, concurrency: usize) -> Res<Self> {
        let exe = std::env::current_exe()?;
        let mut children = Vec::new();
        for _ in 0..count {
            let mut child = Command::new(&exe)
                .args(["worker", app_name, &concurrency.to_string()])
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

    /// CPU time of every thread of the worker processes so far, in µs (the
    /// first field of `/proc/<pid>/task/*/schedstat`, in ns).
    fn cpu_us(&self) -> f64 {
        let mut ns = 0u64;
        for (child, _) in &self.children {
            let Some(pid) = child.id() else { continue };
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
            ns += tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
                .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        ns as f64 / 1000.0
    }

    /// Tells every worker process to start its worker.
    async fn go(&mut self) -> Res<()> {
        for (_, stdin) in &mut self.children {
            stdin.write_all(b"GO\n").await?;
            stdin.flush().await?;
        }
        Ok(())
    }

    /// Shuts every worker down and waits for the processes to exit.
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

/// The `worker` subcommand: connect, say READY, start on GO, stop at end of input.
async fn worker(app_name: &str, concurrency: usize) -> Res<()> {
    let app = connect(app_name).await?;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(b"READY\n").await?;
    stdout.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    if lines.next_line().await?.as_deref() != Some("GO") {
        return Ok(());
    }
    let inline = std::env::var_os("E2E_INLINE").is_some();
    let worker = app.worker().max_tasks_process(concurrency).run_inline(inline).start().await?;
    while lines.next_line().await?.is_some() {}
    worker.shutdown().await;
    Ok(())
}

/// `drain` (`live` false) or `live` (`live` true).
async fn drain(n: u64, processes: usize, concurrency: usize, window: Option<u64>, live: bool) -> Res<()> {
    let mode = if live { "live" } else { "drain" };
    let name = format!("bench-{}-{mode}", std::process::id());
    let app = connect(&name).await?;
    app.flush_all().await?;
    // Count completions on the channel every finish publishes to.
    let done_channel = format!("{}done", app.backend().key_prefix());
    let client = redis::Client::open(url())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(&done_channel).await?;
    let fill_took = if live { Duration::ZERO } else { qtasks_benches::fill_noop(&app, n, 64).await? };
    let mut workers = Workers::spawn(processes, &name, concurrency).await?;
    let mut stream = pubsub.on_message();
    phase_hook("start").await?;
    let start = Instant::now();
    workers.go().await?;
    let producer = live.then(|| {
        let app = app.clone();
        tokio::spawn(async move { qtasks_benches::fill_noop(&app, n, 64).await })
    });
    // With windows: the CPU time of the worker processes and of the Redis
    // server at the start and at the end of every window.
    let mut info = client.get_multiplexed_async_connection().await?;
    let mut cpu_marks = Vec::new();
    let (worker_cpu_start, server_cpu_start) = (workers.cpu_us(), redis_cpu_us(&mut info).await?);
    if window.is_some() {
        cpu_marks.push(worker_cpu_start + server_cpu_start);
    }
    let mut marks = Vec::new();
    let mut seen = 0u64;
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
            Ok(Some(_)) => seen += 1,
            Ok(None) => return Err("the pub/sub connection closed".into()),
            Err(_) => return Err(format!("no completion for 60 s after {seen} of {n}").into()),
        }
        if window.is_some_and(|w| seen.is_multiple_of(w)) {
            marks.push(start.elapsed());
            cpu_marks.push(workers.cpu_us() + redis_cpu_us(&mut info).await?);
        }
    }
    let took = start.elapsed();
    phase_hook("end").await?;
    let worker_cpu = (workers.cpu_us() - worker_cpu_start) / n as f64;
    let server_cpu = (redis_cpu_us(&mut info).await? - server_cpu_start) / n as f64;
    let fill_took = match producer {
        Some(p) => p.await??,
        None => fill_took,
    };
    drop(stream);
    workers.stop().await?;
    let checked = check_all_success(&app, n).await;
    app.flush_all().await?;
    checked?;
    let mut line = format!(
        "RESULT bench=redis_{mode} system=qtasks tasks={n} processes={processes} concurrency={concurrency} \
         fill_in_flight=64 fill_per_s={:.0} run_s={:.3} run_per_s={:.0} errors=0 \
         worker_cpu_us_per_task={worker_cpu:.2} server_cpu_us_per_task={server_cpu:.2}",
        n as f64 / fill_took.as_secs_f64(),
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    if let Some(w) = window {
        line += &windows_summary(w, &marks);
        let per_task: Vec<String> = cpu_marks.windows(2).map(|c| format!("{:.3}", (c[1] - c[0]) / w as f64)).collect();
        line += &format!(" windows_cpu_us_per_task={}", per_task.join(","));
    }
    println!("{line}");
    Ok(())
}

/// Runs `$E2E_PHASE_HOOK <phase>` (through `sh -c`) if it is set, and
/// waits for it: `start` just before the timed part of `drain` and `live`,
/// `end` just after. For profilers of the server, e.g. `callgrind_control
/// -z` at the start and `-d` at the end.
async fn phase_hook(phase: &str) -> Res<()> {
    let Ok(hook) = std::env::var("E2E_PHASE_HOOK") else { return Ok(()) };
    let status = Command::new("sh").arg("-c").arg(format!("{hook} {phase}")).status().await?;
    if !status.success() {
        return Err(format!("E2E_PHASE_HOOK {phase} exited with {status}").into());
    }
    Ok(())
}

/// CPU time used by the Redis server so far (`INFO cpu`: user + system), in µs.
async fn redis_cpu_us(conn: &mut redis::aio::MultiplexedConnection) -> Res<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum::<f64>()
        * 1e6)
}

async fn roundtrip(count: usize, concurrency: usize) -> Res<()> {
    let name = format!("bench-{}-roundtrip", std::process::id());
    let app = connect(&name).await?;
    app.flush_all().await?;
    let mut workers = Workers::spawn(1, &name, concurrency).await?;
    workers.go().await?;
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
    workers.stop().await?;
    app.flush_all().await?;
    println!(
        "RESULT bench=redis_roundtrip system=qtasks round_trips={count} concurrency={concurrency}{}",
        latency_summary(&mut times)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("enqueue") => enqueue(arg(&args, 1, "tasks")?, arg(&args, 2, "in_flight")?).await,
        Some("bulk") => bulk(arg(&args, 1, "tasks")?).await,
        Some("drain") => {
            let window = if args.len() > 4 { Some(arg(&args, 4, "window")?) } else { None };
            let (n, processes, concurrency) =
                (arg(&args, 1, "tasks")?, arg(&args, 2, "worker_processes")?, arg(&args, 3, "concurrency")?);
            drain(n, processes, concurrency, window, false).await
        }
        Some("live") => {
            let (n, processes, concurrency) =
                (arg(&args, 1, "tasks")?, arg(&args, 2, "worker_processes")?, arg(&args, 3, "concurrency")?);
            drain(n, processes, concurrency, None, true).await
        }
        Some("roundtrip") => roundtrip(arg(&args, 1, "round_trips")?, arg(&args, 2, "concurrency")?).await,
        Some("worker") => worker(args.get(1).ok_or("missing <app>")?, arg(&args, 2, "concurrency")?).await,
        _ => Err("usage: e2e_redis enqueue <tasks> <in_flight> | bulk <tasks> | drain <tasks> <worker_processes> <concurrency> \
                  [window] | live <tasks> <worker_processes> <concurrency> | roundtrip <round_trips> <concurrency>"
            .into()),
    }
}
