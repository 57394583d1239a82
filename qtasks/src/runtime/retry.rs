//! Retries as QTasks's retry plugin does them: a failed attempt becomes
//! `retry`, linked to a new attempt enqueued in its place.

use crate::app::AppInner;
use crate::backend::Backend;
use crate::dispatch::PluginChain;
use crate::dispatch::fire_ctx as fire;
use crate::model::{NewTask, RETRY, RETRY_CHILD, RETRY_PARENT, TaskMessage, TaskRecord, TaskStatus};
use crate::task::Task;
use crate::triggers::WorkerTaskErrorRetry;
use serde_json::Value;

/// Replaces a failed run by a new attempt while retries are left (QTasks's
/// retry plugin): the failed record becomes `retry` with a link to the new
/// attempt, which carries the retries left and a link back. Handlers of
/// `worker_task_error_retry` see the `retry` record and may replace it; if
/// they change its status, no new attempt is made.
pub(super) async fn retry<K: Task, T, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    message: &TaskMessage,
    mut model: TaskRecord,
) -> TaskRecord {
    let info = &K::INFO;
    let left =
        message.extra.get(RETRY).and_then(Value::as_u64).map_or(info.retry, |n| n.min(u64::from(info.retry)) as u32);
    if left == 0 {
        model.extra.insert(RETRY.into(), 0.into());
        return model;
    }
    let child_uuid = uuid::Uuid::new_v4();
    let mut extra = message.extra.clone();
    extra.insert(RETRY.into(), (left - 1).into());
    extra.insert(RETRY_PARENT.into(), message.uuid.to_string().into());
    let request = NewTask {
        task_name: message.task_name.clone(),
        queue: message.queue.clone(),
        priority: message.priority,
        args: message.args.clone(),
        extra,
        limit_key: message.limit_key.clone(),
        unique: None,
    };
    let mut child = TaskRecord::new(child_uuid, request);
    child.attempt = message.attempt.saturating_add(1);

    model.status = TaskStatus::Retry;
    model.extra.insert(RETRY.into(), left.into());
    model.extra.insert(RETRY_CHILD.into(), child_uuid.to_string().into());
    let name = app.name.as_str();
    let mut model = fire!(&app.chain, WorkerTaskErrorRetry { app: name, task: info, message, model }).model;
    if model.status != TaskStatus::Retry {
        // Vetoed: no new attempt, so no link to one.
        if model.retry_child() == Some(child_uuid) {
            model.extra.remove(RETRY_CHILD);
        }
        return model;
    }
    let enqueued = match info.retry_delay(info.retry.saturating_sub(left) + 1) {
        Some(delay) => app.backend.enqueue_delayed(&child, delay).await,
        None => app.backend.enqueue(&child).await,
    };
    match enqueued {
        Ok(_) => {
            tracing::info!(app = name, task = info.name, uuid = %message.uuid, retry = %child_uuid, left = left - 1, "task failed; retrying")
        }
        Err(error) => {
            tracing::error!(app = name, task = info.name, uuid = %message.uuid, %error, "enqueueing the retry failed");
            model.status = TaskStatus::Error;
            model.extra.remove(RETRY_CHILD);
            let reason = model.error.take().unwrap_or_default();
            model.error = Some(format!("{reason} (the retry could not be enqueued: {error})"));
        }
    }
    model
}
