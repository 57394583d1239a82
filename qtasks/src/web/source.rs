//! What the dashboard reads and does, over any app: one object-safe trait
//! implemented for every `QueueTasks<T, C, B>`, so the handlers are plain
//! functions compiled once, not once per app type.

use crate::app::{Error, QueueTasks};
use crate::backend::{Backend, CancelOutcome, MinuteCount, QueueStats, TaskPage, TaskQuery};
use crate::client::WorkerInfo;
use crate::dispatch::{PluginChain, PluginInfo};
use crate::model::{TaskRecord, Timestamp};
use crate::queue::QueueInfo;
use crate::task::{TaskInfo, TaskSet};
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use uuid::Uuid;

/// A task to enqueue from the dashboard, already validated.
pub(crate) struct NewCall {
    pub name: String,
    pub args: Value,
    pub queue: Option<String>,
    pub priority: Option<i64>,
    pub extra: Map<String, Value>,
}

/// The app, as the dashboard sees it.
pub(crate) trait Source: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn backend_kind(&self) -> &'static str;
    fn definitions(&self) -> Vec<&'static TaskInfo>;
    fn plugins(&self) -> Vec<PluginInfo>;
    fn list(&self, query: TaskQuery) -> BoxFuture<'_, Result<TaskPage, Error>>;
    fn get(&self, uuid: Uuid) -> BoxFuture<'_, Result<Option<TaskRecord>, Error>>;
    fn cancel(&self, uuid: Uuid, reason: String) -> BoxFuture<'_, Result<CancelOutcome, Error>>;
    fn enqueue(&self, call: NewCall) -> BoxFuture<'_, Result<Uuid, Error>>;
    fn stats(&self) -> BoxFuture<'_, Result<QueueStats, Error>>;
    fn minute_counts(&self, since: Timestamp) -> BoxFuture<'_, Result<Option<Vec<MinuteCount>>, Error>>;
    fn queues(&self) -> BoxFuture<'_, Result<Vec<QueueInfo>, Error>>;
    fn set_paused(&self, queue: String, paused: bool) -> BoxFuture<'_, Result<(), Error>>;
    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerInfo>, Error>>;
    fn switch_plugin(&self, name: String, on: bool) -> BoxFuture<'_, Result<usize, Error>>;
    fn plugin_switches(&self) -> BoxFuture<'_, Result<std::collections::BTreeMap<String, bool>, Error>>;
    fn schedules(&self) -> BoxFuture<'_, Result<Vec<Value>, Error>>;
}

impl<T: TaskSet, C: PluginChain, B: Backend> Source for QueueTasks<T, C, B> {
    fn name(&self) -> &str {
        QueueTasks::name(self)
    }

    fn backend_kind(&self) -> &'static str {
        self.backend().kind()
    }

    fn definitions(&self) -> Vec<&'static TaskInfo> {
        self.tasks()
    }

    fn plugins(&self) -> Vec<PluginInfo> {
        QueueTasks::plugins(self)
    }

    fn list(&self, query: TaskQuery) -> BoxFuture<'_, Result<TaskPage, Error>> {
        Box::pin(async move { Ok(self.backend().list_tasks(&query).await?) })
    }

    fn get(&self, uuid: Uuid) -> BoxFuture<'_, Result<Option<TaskRecord>, Error>> {
        Box::pin(QueueTasks::get(self, uuid))
    }

    fn cancel(&self, uuid: Uuid, reason: String) -> BoxFuture<'_, Result<CancelOutcome, Error>> {
        Box::pin(QueueTasks::cancel(self, uuid, reason))
    }

    fn enqueue(&self, call: NewCall) -> BoxFuture<'_, Result<Uuid, Error>> {
        Box::pin(async move {
            let mut enqueue = self.add_task(call.name, call.args);
            if let Some(queue) = call.queue {
                enqueue = enqueue.queue(queue);
            }
            if let Some(priority) = call.priority {
                enqueue = enqueue.priority(priority);
            }
            for (key, value) in call.extra {
                enqueue = enqueue.extra(key, value);
            }
            Ok(enqueue.await?.uuid())
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<QueueStats, Error>> {
        Box::pin(self.queue_stats())
    }

    fn minute_counts(&self, since: Timestamp) -> BoxFuture<'_, Result<Option<Vec<MinuteCount>>, Error>> {
        Box::pin(async move { Ok(self.backend().minute_counts(since).await?) })
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<QueueInfo>, Error>> {
        Box::pin(QueueTasks::queues(self))
    }

    fn set_paused(&self, queue: String, paused: bool) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { if paused { self.pause_queue(&queue).await } else { self.resume_queue(&queue).await } })
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerInfo>, Error>> {
        Box::pin(QueueTasks::workers(self))
    }

    fn switch_plugin(&self, name: String, on: bool) -> BoxFuture<'_, Result<usize, Error>> {
        Box::pin(async move { QueueTasks::switch_plugin(self, &name, on).await })
    }

    fn plugin_switches(&self) -> BoxFuture<'_, Result<std::collections::BTreeMap<String, bool>, Error>> {
        Box::pin(QueueTasks::plugin_switches(self))
    }

    fn schedules(&self) -> BoxFuture<'_, Result<Vec<Value>, Error>> {
        Box::pin(async move {
            let all = self.backend().config_get_all(crate::runtime::schedule::SCHEDULES).await?;
            let mut entries: Vec<Value> = all.into_iter().map(|(_, v)| v).collect();
            entries.sort_by(|a, b| a["description"].as_str().cmp(&b["description"].as_str()));
            Ok(entries)
        })
    }
}
