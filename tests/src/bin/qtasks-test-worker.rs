//! The worker and client processes of the tests that run several
//! processes (`tests/tests/distributed.rs`, `faults_redis.rs`,
//! `fault_suite.rs`, through `tests/tests/support/procs.rs`), which reach it with
//! `env!("CARGO_BIN_EXE_qtasks-test-worker")`.
//!
//! ```text
//! qtasks-test-worker worker --app NAME [--url URL] [--concurrency N] [--lease-ms MS] [--task-ms MS] [--queue-limit N]
//! qtasks-test-worker client --app NAME [--url URL] [--count N] [--timeout-s S]
//! ```
//!
//! Options may also come from the environment: `QTASKS_TEST_APP`,
//! `QTASKS_REDIS_URL` (default redis://127.0.0.1:6379),
//! `QTASKS_TEST_CONCURRENCY` (16), `QTASKS_TEST_LEASE_MS` (30000),
//! `QTASKS_TEST_TASK_MS` (0), `QTASKS_TEST_QUEUE_LIMIT` (none),
//! `QTASKS_TEST_COUNT` (1000),
//! `QTASKS_TEST_TIMEOUT_S` (120); `QTASKS_TEST_INLINE=1` makes the worker
//! run its tasks inline (`WorkerBuilder::run_inline`). Logs go to stderr (`RUST_LOG`, default
//! `warn`).
//!
//! **worker** runs the task `square(n: i64) -> i64` with up to N tasks at
//! once on a Redis backend whose lease is MS. Each run of `square` is
//! counted first, then lasts `--task-ms` (a sleep). It is counted through
//! a connection of its own, in two hashes: field `n` of
//! `qtasks-test:{app}:runs` and field `{pid}` of
//! `qtasks-test:{app}:runs-by-worker`, so a test can see which tasks ran
//! more than once, and where; and logged in `qtasks-test:{app}:run-log`,
//! field `{n} {pid} {k}` (the k-th run of this process) → the server's
//! time in µs, so a test can tell when. One script does all three, once
//! per run: a count retried after its reply was lost is not counted
//! again. With `--queue-limit N` the default queue is limited to N tasks
//! running at once across every worker, and each run is also counted as
//! running while it lasts: field `{pid}` of `qtasks-test:{app}:running`,
//! with the most seen at once across all processes in
//! `qtasks-test:{app}:max-running` (a test removes the field of a process
//! it killed). Once started it prints
//! `READY {worker id} {pid}`; on SIGTERM, Ctrl-C or the end of its stdin
//! (the test that started it is gone) it shuts down gracefully, prints
//! `STOPPED` and exits 0.
//!
//! **client** enqueues `square` by name with JSON arguments `[n]` for
//! n = 0..N, printing `TASK {n} {uuid}` for each, then `ENQUEUED {N}`;
//! then it waits (notified) for every task and prints
//! `DONE {ok} {failed} {unfinished}`. It exits 0 if every task ended
//! `success` with `n * n`, else 1. Backend errors (a lost connection) are
//! retried until the timeout.

use qtasks::{DEFAULT_QUEUE, Queue, QueueTasks, RedisBackend, TaskStatus, WaitError, task};
use redis::aio::ConnectionManager;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where `square` counts its runs.
struct Recorder {
    conn: ConnectionManager,
    runs: String,
    by_worker: String,
    log: String,
    pid: u32,
    /// Runs of this process so far: each run's own number in the log.
    started: AtomicU64,
    /// How long each run lasts after it is counted.
    pause: Duration,
}

/// Counts a run once: logs it (`HSETNX`, so a retry after a lost reply
/// finds it logged) and, the first time only, adds it to both counts.
const RECORD: &str = r"
-- KEYS: 1 runs (n -> runs), 2 runs by worker (pid -> runs), 3 run log.
-- ARGV: 1 n, 2 pid, 3 the run's number in its process.
local t = redis.call('TIME')
local at = t[1] .. string.format('%06d', tonumber(t[2]))
if redis.call('HSETNX', KEYS[3], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3], at) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
end
return 1
";

/// Counts a run as running (ARGV[2] = 1) or ended (-1) under its process,
/// and keeps the most running at once across processes.
const RUNNING: &str = r"
-- KEYS: 1 running (pid -> runs now), 2 most at once. ARGV: 1 pid, 2 +1 or -1.
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
local total = 0
for _, n in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(n) end
if total > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], total) end
return total
";

static RECORDER: OnceLock<Recorder> = OnceLock::new();
/// Where runs are counted as running, with `--queue-limit`: (running, most at once).
static RUNNING_KEYS: OnceLock<(String, String)> = OnceLock::new();

/// Counts this run as running (`delta` 1) or ended (-1), with `--queue-limit`.
async fn running(delta: i64) -> Result<(), std::io::Error> {
    let (Some((running, max)), Some(recorder)) = (RUNNING_KEYS.get(), RECORDER.get()) else { return Ok(()) };
    let _: i64 = redis::Script::new(RUNNING)
        .key(running)
        .key(max)
        .arg(recorder.pid)
        .arg(delta)
        .invoke_async(&mut recorder.conn.clone())
        .await
        .map_err(|e| std::io::Error::other(format!("counting a running task: {e}")))?;
    Ok(())
}

/// Squares `n`, after counting this run (and a pause).
#[task]
async fn square(n: i64) -> Result<i64, std::io::Error> {
    record(n).await?;
    running(1).await?;
    if let Some(recorder) = RECORDER.get().filter(|r| !r.pause.is_zero()) {
        tokio::time::sleep(recorder.pause).await;
    }
    running(-1).await?;
    Ok(n * n)
}

/// Counts one run of `square(n)`, retrying while the connection is lost
/// (once: see [`RECORD`]).
async fn record(n: i64) -> Result<(), std::io::Error> {
    static SCRIPT: OnceLock<redis::Script> = OnceLock::new();
    let recorder = RECORDER.get().ok_or_else(|| std::io::Error::other("no run recorder"))?;
    let script = SCRIPT.get_or_init(|| redis::Script::new(RECORD));
    let run = recorder.started.fetch_add(1, Ordering::Relaxed);
    let mut attempt = 0;
    loop {
        let mut conn = recorder.conn.clone();
        let counted: Result<i64, _> = script
            .key(&recorder.runs)
            .key(&recorder.by_worker)
            .key(&recorder.log)
            .arg(n)
            .arg(recorder.pid)
            .arg(run)
            .invoke_async(&mut conn)
            .await;
        match counted {
            Ok(_) => return Ok(()),
            Err(e) if attempt >= 40 => return Err(std::io::Error::other(format!("counting the run of {n}: {e}"))),
            Err(e) => {
                eprintln!("counting the run of {n} failed (attempt {attempt}): {e}; retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The command line, with environment fallbacks.
struct Options {
    command: String,
    app: String,
    url: String,
    concurrency: usize,
    lease: Duration,
    pause: Duration,
    queue_limit: Option<u32>,
    count: i64,
    timeout: Duration,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let command = args.next().ok_or("usage: qtasks-test-worker worker|client --app NAME [options]")?;
    let env = |name: &str| std::env::var(name).ok();
    let mut app = env("QTASKS_TEST_APP");
    let mut url = env("QTASKS_REDIS_URL");
    let mut concurrency = env("QTASKS_TEST_CONCURRENCY");
    let mut lease_ms = env("QTASKS_TEST_LEASE_MS");
    let mut task_ms = env("QTASKS_TEST_TASK_MS");
    let mut queue_limit = env("QTASKS_TEST_QUEUE_LIMIT");
    let mut count = env("QTASKS_TEST_COUNT");
    let mut timeout_s = env("QTASKS_TEST_TIMEOUT_S");
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--app" => &mut app,
            "--url" => &mut url,
            "--concurrency" => &mut concurrency,
            "--lease-ms" => &mut lease_ms,
            "--task-ms" => &mut task_ms,
            "--queue-limit" => &mut queue_limit,
            "--count" => &mut count,
            "--timeout-s" => &mut timeout_s,
            other => return Err(format!("unknown option `{other}`")),
        };
        *slot = Some(args.next().ok_or_else(|| format!("`{flag}` needs a value"))?);
    }
    fn number<T: std::str::FromStr>(name: &str, value: Option<String>, default: T) -> Result<T, String> {
        value.map_or(Ok(default), |v| v.parse().map_err(|_| format!("{name}: `{v}` is not a number")))
    }
    Ok(Options {
        command,
        app: app.ok_or("--app (or QTASKS_TEST_APP) is required")?,
        url: url.unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
        concurrency: number("--concurrency", concurrency, 16)?,
        lease: Duration::from_millis(number("--lease-ms", lease_ms, 30_000)?),
        pause: Duration::from_millis(number("--task-ms", task_ms, 0)?),
        queue_limit: queue_limit.map(|v| number("--queue-limit", Some(v), 0)).transpose()?,
        count: number("--count", count, 1000)?,
        timeout: Duration::from_secs(number("--timeout-s", timeout_s, 120)?),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    qtasks_tests::init_tracing();
    let result = match options() {
        Ok(o) if o.command == "worker" => worker(o).await,
        Ok(o) if o.command == "client" => client(o).await,
        Ok(o) => Err(format!("unknown command `{}`: worker or client", o.command).into()),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("qtasks-test-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

async fn worker(o: Options) -> BoxResult<ExitCode> {
    let backend = RedisBackend::connect(&o.url).await.map(|b| b.for_app(&o.app))?.lease(o.lease);
    let conn = redis::Client::open(o.url.as_str())?.get_connection_manager().await?;
    let pid = std::process::id();
    let runs = format!("qtasks-test:{}:runs", o.app);
    let by_worker = format!("qtasks-test:{}:runs-by-worker", o.app);
    let log = format!("qtasks-test:{}:run-log", o.app);
    let started = AtomicU64::new(0);
    let _ = RECORDER.set(Recorder { conn, runs, by_worker, log, pid, started, pause: o.pause });
    let mut builder = QueueTasks::builder(o.app.as_str()).task::<Square>();
    if let Some(limit) = o.queue_limit {
        builder = builder.queue(Queue::new(DEFAULT_QUEUE).concurrency(limit));
        let _ =
            RUNNING_KEYS.set((format!("qtasks-test:{}:running", o.app), format!("qtasks-test:{}:max-running", o.app)));
    }
    let app = builder.backend(backend).build()?;
    let inline = std::env::var("QTASKS_TEST_INLINE").is_ok_and(|v| v == "1");
    let worker = app.worker().max_tasks_process(o.concurrency).run_inline(inline).start().await?;
    println!("READY {} {pid}", worker.info().id);
    qtasks_tests::stop_signal().await;
    worker.shutdown().await;
    println!("STOPPED");
    Ok(ExitCode::SUCCESS)
}

async fn client(o: Options) -> BoxResult<ExitCode> {
    let deadline = Instant::now() + o.timeout;
    let backend = RedisBackend::connect(&o.url).await.map(|b| b.for_app(&o.app))?;
    let app = QueueTasks::builder(o.app.as_str()).backend(backend).build()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut uuids = Vec::with_capacity(usize::try_from(o.count).unwrap_or(0));
    for n in 0..o.count {
        let task = loop {
            match app.add_task("square", [n]).await {
                Ok(task) => break task,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("enqueueing {n} failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        std::io::Write::write_fmt(&mut out, format_args!("TASK {n} {}\n", task.uuid()))?;
        uuids.push((n, task.uuid()));
    }
    std::io::Write::write_fmt(&mut out, format_args!("ENQUEUED {}\n", o.count))?;
    std::io::Write::flush(&mut out)?;
    drop(out);

    let mut waits = tokio::task::JoinSet::new();
    for (n, uuid) in uuids {
        let app = app.clone();
        waits.spawn(async move {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match app.wait(uuid, left).await {
                    Ok(task) => {
                        let good = task.status == TaskStatus::Success
                            && matches!(task.result_as::<i64>(), Some(Ok(r)) if r == n * n);
                        if !good {
                            eprintln!("task {n} ({uuid}) ended badly: {task:?}");
                        }
                        return Some(good);
                    }
                    Err(WaitError::Timeout) => return None,
                    Err(e) if !left.is_zero() => {
                        eprintln!("waiting for {n} failed: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => return None,
                }
            }
        });
    }
    let (mut ok, mut failed, mut unfinished) = (0, 0, 0);
    while let Some(done) = waits.join_next().await {
        match done? {
            Some(true) => ok += 1,
            Some(false) => failed += 1,
            None => unfinished += 1,
        }
    }
    println!("DONE {ok} {failed} {unfinished}");
    Ok(if failed == 0 && unfinished == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
