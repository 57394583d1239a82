//! The web dashboard (feature `web`) of an app with a worker and a steady
//! trickle of tasks, on the in-memory backend: open the printed address,
//! watch tasks appear and finish, cancel a slow one, retry a failed one,
//! pause the `reports` queue and see its backlog grow, enqueue by name.
//!
//! `cargo run --example dashboard` (then http://127.0.0.1:8080/)
//! `cargo run --example dashboard -- 127.0.0.1:9000` (another address)
//!
//! With `QTASKS_DASHBOARD_TOKEN=s3cret` the pages ask for that token. The
//! same dashboard for an app binary built on `qtasks::cli` (Redis or
//! Postgres, every worker of the app) is its `dashboard` command:
//! `cargo run --example distributed_worker -- dashboard`.

use qtasks::web::Dashboard;
use qtasks::{QueueTasks, TaskContext, task};
use std::time::Duration;

/// Adds two numbers.
#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Takes `secs` seconds, unless cancelled first.
#[task]
async fn slow(ctx: TaskContext, secs: u64) -> u64 {
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(secs)) => secs,
        () = ctx.cancelled() => 0,
    }
}

/// Fails when `n` is a multiple of 5.
#[task]
async fn flaky(n: u64) -> Result<u64, std::io::Error> {
    if n.is_multiple_of(5) { Err(std::io::Error::other(format!("{n} is a multiple of 5"))) } else { Ok(n) }
}

/// A report, in its own queue.
#[task(queue = "reports")]
async fn report(day: u64) -> String {
    tokio::time::sleep(Duration::from_millis(300)).await;
    format!("report of day {day}")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let app = QueueTasks::builder("dashboard-demo").tasks::<(Add, Slow, Flaky, Report)>().build()?;
    let worker = app.worker().max_tasks_process(4).start().await?;

    // A trickle of tasks: some quick, some slow, some failing, some reports.
    let producer = {
        let app = app.clone();
        tokio::spawn(async move {
            for n in 0u64.. {
                let enqueued = match n % 4 {
                    0 => app.enqueue(Add::call(n as i64, 1)).await.map(|h| h.uuid()),
                    1 => app.enqueue(Slow::call(5 + n % 10)).await.map(|h| h.uuid()),
                    2 => app.enqueue(Flaky::call(n)).await.map(|h| h.uuid()),
                    _ => app.enqueue(Report::call(n)).await.map(|h| h.uuid()),
                };
                if let Err(error) = enqueued {
                    eprintln!("enqueue failed: {error}");
                }
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        })
    };

    let token = std::env::var("QTASKS_DASHBOARD_TOKEN").unwrap_or_default();
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("dashboard on http://{}/ (Ctrl-C to stop)", listener.local_addr()?);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    qtasks::web::serve(&app, Dashboard::new().token(token), listener, shutdown).await?;
    producer.abort();
    worker.shutdown().await;
    Ok(())
}
