//! The worker side of a distributed app: tasks plus the qtasks command line.
//!
//! ```sh
//! export QTASKS_BROKER_URL=redis://127.0.0.1:6379
//! # or a Redis Cluster (scripts/redis-cluster starts one on 127.0.0.1:7001-7003):
//! # export QTASKS_BROKER_URL=redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
//! cargo run --example distributed_worker -- run --concurrency 16     # start as many as you like, on any host
//! cargo run --example distributed_worker -- inspect workers          # who is alive
//! cargo run --example distributed_worker -- add add '[2, 3]' --wait 5
//! ```

use qtasks::{QueueTasks, TaskContext, task};
use std::time::Duration;

/// Adds two numbers.
#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Squares a number after a short pause, logging which worker ran it.
#[task]
async fn slow_square(ctx: TaskContext, n: i64) -> i64 {
    tokio::time::sleep(Duration::from_millis(50)).await;
    tracing::info!(task = %ctx.uuid(), n, "squared");
    n * n
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    qtasks::cli::main(|backend| {
        QueueTasks::builder("distributed").task::<Add>().task::<SlowSquare>().backend(backend).build()
    })
    .await
}
