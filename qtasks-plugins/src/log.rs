//! [`TaskLog`]: task start and end through `tracing`.

use qtasks::plugin;
use qtasks::triggers::{WorkerExecuteAfter, WorkerRunTaskBefore};

/// Logs each task as it starts (debug) and ends (info for success, warn for
/// error and cancel), with its name, id, attempt and duration, as `tracing`
/// events with fields. Sync handlers: no future, no thread hop.
///
/// ```
/// let app = qtasks::QueueTasks::builder("demo").plugin(qtasks_plugins::TaskLog).build().unwrap();
/// assert_eq!(app.plugins()[0].name, "task_log");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskLog;

#[plugin(name = "task_log")]
impl TaskLog {
    fn worker_run_task_before(&self, ctx: &WorkerRunTaskBefore<'_>) {
        tracing::debug!(app = ctx.app, task = ctx.task.name, uuid = %ctx.message.uuid, attempt = ctx.message.attempt, "task started");
    }

    fn worker_execute_after(&self, ctx: &WorkerExecuteAfter<'_>) {
        let task = &ctx.model;
        let seconds = task.updated_at - task.created_at;
        match task.status {
            qtasks::TaskStatus::Success => {
                tracing::info!(app = ctx.app, task = %task.task_name, uuid = %task.uuid, status = %task.status, seconds, "task finished");
            }
            _ => tracing::warn!(
                app = ctx.app,
                task = %task.task_name,
                uuid = %task.uuid,
                status = %task.status,
                error = task.error.as_deref().unwrap_or(""),
                seconds,
                "task finished"
            ),
        }
    }
}
