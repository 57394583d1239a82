//! A Rust worker for tasks the real Python clients enqueue, as a process
//! the Python interop tests (`tests/tests/python_qtasks.rs`,
//! `python_celery.rs`) can SIGKILL.
//!
//! ```text
//! qtasks-py-worker qtasks --app NAME [--url URL] [--liveness-ms MS] [--concurrency N]
//! qtasks-py-worker celery --app NAME [--url URL] [--queues a,b] [--visibility-ms MS] [--concurrency N]
//! ```
//!
//! Tasks: `add(a, b)`, `fail(a, b)` (raises `boom: a=… b=…`) and
//! `slow(ms)` (sleeps, then returns `"slow"`); for Celery they are named
//! `app.add`, `app.fail` and `app.slow`. Once started it prints
//! `READY {pid}`. It runs up to N tasks at once (4 by default). The
//! Python interop benchmark (`benches/python-interop.sh`) runs it too. On SIGTERM or the end of its stdin it shuts down and
//! prints `STOPPED`. Logs go to stderr (`RUST_LOG`, default `warn`).

use qtasks::backend::{CeleryBackend, QtasksPyBackend};
use qtasks::{Backend, DEFAULT_QUEUE, Queue, QueueTasks, TaskError, task};
use std::process::ExitCode;
use std::time::Duration;

#[task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
fn fail(a: i64, b: i64) -> Result<i64, TaskError> {
    Err(TaskError::msg(format!("boom: a={a} b={b}")))
}

#[task]
async fn slow(ms: u64) -> String {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slow".to_owned()
}

#[task(name = "app.add")]
fn celery_add(a: i64, b: i64) -> i64 {
    a + b
}

#[task(name = "app.fail")]
fn celery_fail(a: i64, b: i64) -> Result<i64, TaskError> {
    Err(TaskError::msg(format!("boom: a={a} b={b}")))
}

#[task(name = "app.slow")]
async fn celery_slow(ms: u64) -> String {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slow".to_owned()
}

struct Options {
    protocol: String,
    app: String,
    url: String,
    queues: Vec<String>,
    millis: Option<u64>,
    concurrency: usize,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let protocol = args.next().ok_or("usage: qtasks-py-worker qtasks|celery --app NAME [options]")?;
    let (mut app, mut url, mut queues, mut millis, mut concurrency) = (None, None, None, None, None);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--app" => &mut app,
            "--url" => &mut url,
            "--queues" => &mut queues,
            "--liveness-ms" | "--visibility-ms" => &mut millis,
            "--concurrency" => &mut concurrency,
            other => return Err(format!("unknown option `{other}`")),
        };
        *slot = Some(args.next().ok_or_else(|| format!("`{flag}` needs a value"))?);
    }
    Ok(Options {
        protocol,
        app: app.ok_or("--app is required")?,
        url: url.unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
        queues: queues.map(|q| q.split(',').map(str::to_owned).collect()).unwrap_or_default(),
        millis: millis.map(|m| m.parse().map_err(|_| format!("`{m}` is not a number"))).transpose()?,
        concurrency: concurrency.map_or(Ok(4), |c| c.parse().map_err(|_| format!("`{c}` is not a number")))?,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    qtasks_tests::init_tracing();
    let result = match options() {
        Ok(o) if o.protocol == "qtasks" => qtasks(o).await,
        Ok(o) if o.protocol == "celery" => celery(o).await,
        Ok(o) => Err(format!("unknown protocol `{}`: qtasks or celery", o.protocol).into()),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qtasks-py-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

async fn qtasks(o: Options) -> BoxResult<()> {
    let mut backend = QtasksPyBackend::connect(&o.url).await?;
    if let Some(ms) = o.millis {
        backend = backend.liveness(Duration::from_millis(ms));
    }
    let app =
        QueueTasks::builder(o.app.as_str()).task::<Add>().task::<Fail>().task::<Slow>().backend(backend).build()?;
    serve(app, &[], o.concurrency).await
}

async fn celery(o: Options) -> BoxResult<()> {
    let mut backend = CeleryBackend::connect(&o.url).await?;
    if let Some(ms) = o.millis {
        backend = backend.visibility_timeout(Duration::from_millis(ms));
    }
    let mut builder = QueueTasks::builder(o.app.as_str()).task::<CeleryAdd>().task::<CeleryFail>().task::<CelerySlow>();
    for queue in o.queues.iter().filter(|q| *q != DEFAULT_QUEUE) {
        builder = builder.queue(Queue::new(queue.as_str()));
    }
    let app = builder.backend(backend).build()?;
    serve(app, &o.queues, o.concurrency).await
}

async fn serve<T: qtasks::TaskSet, C: qtasks::PluginChain, B: Backend>(
    app: QueueTasks<T, C, B>,
    queues: &[String],
    concurrency: usize,
) -> BoxResult<()> {
    let mut worker = app.worker().max_tasks_process(concurrency);
    if !queues.is_empty() {
        worker = worker.queues(queues.iter().cloned());
    }
    let worker = worker.start().await?;
    println!("READY {}", std::process::id());
    qtasks_tests::stop_signal().await;
    worker.shutdown().await;
    println!("STOPPED");
    Ok(())
}
