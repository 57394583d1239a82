//! The plugin-error rescue (QTasks's `TaskPluginTriggerError`).
//!
//! A task ends itself with `ctx.plugin_error(…)`. A worker plugin on
//! `task_executor_run_task_trigger_error` rescues it with `123`, so the task
//! ends `success` with result 123. Without the plugin it ends `error` with
//! the reason. Run with `cargo run --example plugin_error`.

use qtasks::triggers::TaskExecutorRunTaskTriggerError;
use qtasks::{PluginError, QueueTasks, TaskContext, TaskStatus, Value, json, plugin, task};
use std::time::Duration;

#[task]
async fn test_task(ctx: TaskContext) -> Result<i64, PluginError> {
    Err(ctx.plugin_error("Non-standard situation"))
}

/// Sees the executor's view (task, message) and the error, and returns 123.
#[plugin(on = "task_executor_run_task_trigger_error")]
fn task_trigger_error(ctx: &TaskExecutorRunTaskTriggerError<'_>) -> Option<Value> {
    println!("  [plugin] task `{}` ({}) raised: {}", ctx.task.name, ctx.message.uuid, ctx.error);
    Some(json!(123))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let wait = Duration::from_secs(5);

    let app = QueueTasks::builder("rescued").task::<TestTask>().plugin(TaskTriggerError).build()?;
    let worker = app.worker().start().await?;
    let task = app.add_task("test_task", ()).await?.record(wait).await?;
    println!("with the plugin:    status {}, result {:?}", task.status, task.result);
    assert_eq!(task.status, TaskStatus::Success);
    assert_eq!(task.result, Some(json!(123)));
    worker.shutdown().await;

    let app = QueueTasks::builder("plain").task::<TestTask>().build()?;
    let worker = app.worker().start().await?;
    let task = app.add_task("test_task", ()).await?.record(wait).await?;
    println!("without the plugin: status {}, error {:?}", task.status, task.error);
    assert_eq!(task.status, TaskStatus::Error);
    assert_eq!(task.error.as_deref(), Some("Non-standard situation"));
    worker.shutdown().await;
    Ok(())
}
