//! A client in another process: it knows no task code, only names, and
//! talks to the workers through Redis.
//!
//! ```sh
//! cargo run --example distributed_client -- 100     # enqueue 100 slow_square tasks and wait for them all
//! ```

use qtasks::{AnyBackend, QueueTasks, TaskStatus};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: i64 = std::env::args().nth(1).map_or(Ok(100), |s| s.parse())?;
    let url = std::env::var("QTASKS_BROKER_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let backend = AnyBackend::connect(&url).await?;
    let app = QueueTasks::builder("distributed").backend(backend).build()?;
    if !app.ping().await {
        eprintln!("no worker is alive: start one with `cargo run --example distributed_worker -- run`");
    }
    let start = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push((i, app.add_task("slow_square", [i]).await?.uuid()));
    }
    for (i, id) in ids {
        let task = app.wait(id, Duration::from_secs(60)).await?;
        assert_eq!(task.status, TaskStatus::Success, "{task:?}");
        assert_eq!(task.result_as::<i64>().transpose()?, Some(i * i));
    }
    println!("{n} tasks done in {:.2} s by {} worker(s)", start.elapsed().as_secs_f64(), app.workers().await?.len());
    Ok(())
}
