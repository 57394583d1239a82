//! [`TaskMetrics`]: task counts and durations through the `metrics` facade.

use qtasks::plugin;
use qtasks::triggers::{QtasksAddTaskAfterBroker, WorkerExecuteAfter};

/// Records, through the `metrics` crate (install any recorder, e.g. a
/// Prometheus exporter):
///
/// - `qtasks_tasks_enqueued_total{app, task}` on every enqueue;
/// - `qtasks_tasks_finished_total{app, task, status}` on every final status;
/// - `qtasks_task_seconds{app, task, status}`: enqueue to final status.
///
/// ```
/// let app = qtasks::QueueTasks::builder("demo").plugin(qtasks_plugins::TaskMetrics).build().unwrap();
/// assert_eq!(app.plugins()[0].name, "task_metrics");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskMetrics;

#[plugin(name = "task_metrics")]
impl TaskMetrics {
    fn qtasks_add_task_after_broker(&self, ctx: &QtasksAddTaskAfterBroker<'_>) {
        let labels = [("app", ctx.app.to_owned()), ("task", ctx.model.task_name.to_string())];
        metrics::counter!("qtasks_tasks_enqueued_total", &labels).increment(1);
    }

    fn worker_execute_after(&self, ctx: &WorkerExecuteAfter<'_>) {
        let task = &ctx.model;
        let labels = [
            ("app", ctx.app.to_owned()),
            ("task", task.task_name.to_string()),
            ("status", task.status.as_str().to_owned()),
        ];
        metrics::counter!("qtasks_tasks_finished_total", &labels).increment(1);
        metrics::histogram!("qtasks_task_seconds", &labels).record((task.updated_at - task.created_at).max(0.0));
    }
}
