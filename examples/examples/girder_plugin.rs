//! A plugin crate that brings tasks (Girder Worker's plugin example).
//!
//! The app adds the `gwexample` plugin in one line; that registers its
//! `fibonacci` task. The banner lists the task under the plugin, and a
//! client that enqueues `fibonacci` with 26 gets 121393.
//! Run with `cargo run --example girder_plugin`.

use qtasks::{QueueTasks, TaskStatus};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = QueueTasks::builder("girder").plugin(gwexample::GwExample).build()?;
    print!("{}", qtasks::cli::banner(&app, "memory://", 4, None));

    let worker = app.worker().max_tasks_process(4).start().await?;
    let task = app.add_task("fibonacci", [26]).await?.record(Duration::from_secs(30)).await?;
    assert_eq!(task.status, TaskStatus::Success);
    println!("fibonacci(26) = {}", task.result.expect("a result"));
    worker.shutdown().await;
    Ok(())
}
