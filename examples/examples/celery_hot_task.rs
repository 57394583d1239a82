//! Moving one hot Celery task to Rust: a qtasks worker that runs the
//! Celery task `tasks.resize` (and nothing else), for the unchanged Python
//! producers and their `AsyncResult.get()`.
//!
//! The Python side stays as it is:
//!
//! ```python
//! # tasks.py
//! from celery import Celery
//! app = Celery("tasks", broker="redis://127.0.0.1:6379/0", backend="redis://127.0.0.1:6379/0")
//!
//! @app.task(name="tasks.resize")
//! def resize(width, height, scale=1.0):   # the Python body is no longer run
//!     ...
//!
//! # a web view, unchanged:
//! resize.delay(640, 480, scale=0.5).get(timeout=10)   # [320, 240], computed in Rust
//! ```
//!
//! ```sh
//! cargo run -p qtasks-examples --example celery_hot_task            # Ctrl-C stops it
//! cargo run -p qtasks-examples --example celery_hot_task -- --once  # sends one task itself, prints its result
//! ```
//!
//! Keep the Python workers for every other task: give the hot task a queue
//! of its own (`task_routes = {"tasks.resize": {"queue": "resize"}}`), run
//! this worker on that queue and the Python workers on the others
//! (`celery -A tasks worker -Q celery`).

use qtasks::backend::CeleryBackend;
use qtasks::{Queue, QueueTasks, TaskError, task};

/// The hot task: the Python `tasks.resize`, by name, with the same
/// parameters (positional or by keyword; `scale` may be left out).
#[task(name = "tasks.resize")]
fn resize(width: u32, height: u32, scale: Option<f64>) -> Result<(u32, u32), TaskError> {
    let scale = scale.unwrap_or(1.0);
    if !(scale > 0.0 && scale <= 16.0) {
        // The Python caller gets `RuntimeError: scale must be in (0, 16], got …`.
        return Err(TaskError::msg(format!("scale must be in (0, 16], got {scale}")));
    }
    Ok(((f64::from(width) * scale).round() as u32, (f64::from(height) * scale).round() as u32))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let url = std::env::var("CELERY_BROKER_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let backend = CeleryBackend::connect(&url).await?;
    let app = QueueTasks::builder("tasks").task::<Resize>().queue(Queue::new("resize")).backend(backend).build()?;
    // `default` is Celery's `celery` queue; `resize` the hot task's own.
    let worker = app.worker().queues(["resize", "default"]).max_tasks_process(8).start().await?;
    if std::env::args().any(|a| a == "--once") {
        // What `resize.delay(640, 480, scale=0.5)` sends, from Rust.
        let size =
            app.enqueue(Resize::call(640, 480, Some(0.5))).await?.result(std::time::Duration::from_secs(10)).await?;
        println!("resized to {size:?}");
    } else {
        tokio::signal::ctrl_c().await?;
    }
    worker.shutdown().await;
    Ok(())
}
