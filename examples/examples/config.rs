//! Configuration: settings from code, overridden by `QTASKS_*` variables.
//!
//! Run with `cargo run --example config`, then try e.g.
//! `QTASKS_TASK_DEFAULT_PRIORITY=21 QTASKS_MAX_TASKS_PROCESS=2 cargo run --example config`
//! or a bad value, `QTASKS_LEASE=soon cargo run --example config`.

use qtasks::{AnyBackend, Config, QueueTasks, task};
use std::process::ExitCode;
use std::time::Duration;

/// Greets someone; declares no priority, so it gets the config's default.
#[task]
async fn hello(name: String) -> String {
    format!("hello, {name}")
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Logging first, so a warning about an unknown `QTASKS_*` variable shows.
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new("info")).init();
    // Defaults from code; the environment overrides what it sets.
    let config = match Config::default().max_tasks_process(4).with_env() {
        Ok(config) => config,
        Err(error) => {
            // Names the variable, its value and what is expected.
            eprintln!("error: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    println!("settings (passwords hidden):\n{}", serde_json::to_string_pretty(&config)?);

    // The backend gets the Redis settings (lease, retention, message size);
    // the app its default priority and its workers' concurrency.
    let backend = AnyBackend::connect_with(&config.broker_url, &config).await?;
    let app = QueueTasks::builder("config-demo").task::<Hello>().backend(backend).config(config).build()?;
    let worker = app.worker().start().await?;
    let handle = app.enqueue(Hello::call("world".to_owned())).await?;
    let record = app.get(handle.uuid()).await?.expect("just enqueued");
    println!("enqueued {} with priority {}", record.task_name, record.priority);
    println!("{}", handle.result(app.config().result_timeout.min(Duration::from_secs(10))).await?);
    worker.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
