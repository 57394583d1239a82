//! The client side of an app: enqueue, read, wait and cancel; chains and
//! groups ([`canvas`]); the shared settings and the worker registry; and
//! [`inspect`].

pub mod canvas;
pub mod inspect;
pub(crate) mod kv;

pub use kv::WorkerInfo;

use crate::app::QueueTasks;
use crate::backend::{Backend, CancelOutcome, QueueStats};
use crate::dispatch::PluginChain;
use crate::dispatch::fire_ctx as fire;
use crate::error::{Error, WaitError};
use crate::model::{NewTask, TaskRecord, TaskStatus};
use crate::runtime::events::{Event, EventKind};
use crate::task::{Task, TaskSet};
use crate::triggers::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;
use uuid::Uuid;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<T: TaskSet, C: PluginChain, B: Backend> QueueTasks<T, C, B> {
    /// Enqueues a task by name with JSON-serializable arguments: an array or
    /// tuple (positional) or a map (by parameter name).
    ///
    /// Awaiting the builder returns the stored `new` record at once;
    /// [`.wait(timeout)`](AddTask::wait) waits for the final record instead.
    /// The task need not be one this app knows: a client may enqueue tasks
    /// that only workers elsewhere define.
    pub fn add_task(&self, task_name: impl Into<String>, args: impl Serialize) -> AddTask<'_, T, C, B> {
        let task_name = task_name.into();
        let args = serde_json::to_value(args).map_err(|source| Error::EncodeArgs { task: task_name.clone(), source });
        AddTask { app: self, task_name, args, priority: None, extra: Map::new() }
    }

    /// Enqueues task `K` with typed arguments (a tuple in parameter order).
    ///
    /// Awaiting it returns a [`TaskHandle`] whose
    /// [`result`](TaskHandle::result) waits for the typed result.
    pub fn enqueue<K: Task>(&self, args: K::Args) -> Enqueue<'_, K, T, C, B> {
        Enqueue { inner: self.add_task(K::INFO.name, args), _task: PhantomData }
    }

    /// Reads a task's record; `None` if there is no such task.
    pub async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, Error> {
        let app = &*self.inner;
        let mut task = app.backend.get(uuid).await?;
        if let Some(model) = task.take() {
            task = Some(fire!(&app.chain, StorageGet { app: &app.name, model }).model);
        }
        let model = fire!(&app.chain, BrokerGet { app: &app.name, uuid, model: task }).model;
        Ok(fire!(&app.chain, QtasksGet { app: &app.name, uuid, model }).model)
    }

    /// Reads every task record.
    pub async fn get_all(&self) -> Result<Vec<TaskRecord>, Error> {
        let app = &*self.inner;
        let models = app.backend.get_all().await?;
        Ok(fire!(&app.chain, StorageGetAll { app: &app.name, models }).models)
    }

    /// Waits until the task reaches a final status (notified, not polled).
    ///
    /// A task that failed and was retried (status `retry`) is followed to
    /// its last attempt, whose record is returned: the uuid a client got
    /// from `add_task` leads to the final result.
    ///
    /// `Ok(None)` if the timeout passes first (the task may still finish) or
    /// the task does not exist.
    pub async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Option<TaskRecord>, Error> {
        // No deadline for a timeout too large to add (it never passes).
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        let mut uuid = uuid;
        for _ in 0..MAX_RETRY_HOPS {
            let left = deadline.map_or(timeout, |d| d.saturating_duration_since(tokio::time::Instant::now()));
            let Some(task) = self.inner.backend.wait(uuid, left).await? else { return Ok(None) };
            match task.retry_child() {
                Some(child) if task.status == TaskStatus::Retry => uuid = child,
                _ => return Ok(Some(task)),
            }
        }
        self.get(uuid).await
    }

    /// Cancels a task: a queued one never runs and ends `cancel` at once; a
    /// running one sees its [`CancelToken`](crate::CancelToken) fire (an
    /// async task is stopped at its next `.await`) and ends `cancel`.
    ///
    /// The decision is stored in the backend, so it holds for every worker,
    /// also ones started later. Cancelling again, or cancelling a finished
    /// task, changes nothing and says so. A task that was retried is
    /// followed to its current attempt.
    pub async fn cancel(&self, uuid: Uuid, reason: impl Into<String>) -> Result<CancelOutcome, Error> {
        let reason = reason.into();
        let mut uuid = uuid;
        for _ in 0..MAX_RETRY_HOPS {
            match self.inner.backend.cancel(uuid, &reason).await? {
                CancelOutcome::Finished(TaskStatus::Retry) => {
                    match self.get(uuid).await?.as_ref().and_then(TaskRecord::retry_child) {
                        Some(child) => uuid = child,
                        None => return Ok(CancelOutcome::Finished(TaskStatus::Retry)),
                    }
                }
                CancelOutcome::Cancelled => {
                    let events = &self.inner.events;
                    if events.listens(EventKind::TaskCancel)
                        && let Some(record) = self.inner.backend.get(uuid).await?
                    {
                        events.emit(Event::ended(EventKind::TaskCancel, &self.inner.name, &record)).await;
                    }
                    return Ok(CancelOutcome::Cancelled);
                }
                outcome => return Ok(outcome),
            }
        }
        Ok(CancelOutcome::Finished(TaskStatus::Retry))
    }

    /// The app's queue depth, tasks in flight, and per task how many runs
    /// ended `success`, `error`, `retry` and `cancel`, across every worker
    /// sharing the backend.
    pub async fn queue_stats(&self) -> Result<QueueStats, Error> {
        Ok(self.inner.backend.stats().await?)
    }

    /// Removes every queued task and record of the app.
    pub async fn flush_all(&self) -> Result<(), Error> {
        let app = &*self.inner;
        fire!(&app.chain, QtasksFlushAll { app: &app.name });
        fire!(&app.chain, BrokerFlushAll { app: &app.name });
        fire!(&app.chain, StorageFlushAll { app: &app.name });
        Ok(app.backend.flush().await?)
    }

    async fn submit(&self, request: NewTask) -> Result<TaskRecord, Error> {
        let app = &*self.inner;
        let request = fire!(&app.chain, QtasksAddTaskBeforeBroker { app: &app.name, request }).request;
        let model = TaskRecord::new(Uuid::new_v4(), request);
        let model = fire!(&app.chain, BrokerAddBefore { app: &app.name, model }).model;
        let model = fire!(&app.chain, StorageAdd { app: &app.name, model }).model;
        app.backend.enqueue(&model).await?;
        fire!(&app.chain, BrokerAddAfter { app: &app.name, model: &model });
        fire!(&app.chain, QtasksAddTaskAfterBroker { app: &app.name, model: &model });
        Ok(model)
    }
}

/// Retry links followed at most (a guard against links that loop).
const MAX_RETRY_HOPS: usize = 10_000;

/// A task about to be enqueued by name; await it, or [`wait`](AddTask::wait) for its result.
#[must_use = "a task is enqueued only when this is awaited"]
pub struct AddTask<'a, T, C, B> {
    app: &'a QueueTasks<T, C, B>,
    task_name: String,
    args: Result<Value, Error>,
    priority: Option<i64>,
    extra: Map<String, Value>,
}

impl<'a, T: TaskSet, C: PluginChain, B: Backend> AddTask<'a, T, C, B> {
    /// Overrides the task's priority (lower runs first).
    pub fn priority(mut self, priority: i64) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Adds an extra field, stored with the task's record.
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// Waits for the final record after enqueueing. Awaiting gives
    /// `Ok(None)` if the timeout passes first; the task is still queued.
    pub fn wait(self, timeout: Duration) -> AddTaskWait<'a, T, C, B> {
        AddTaskWait { add: self, timeout }
    }

    async fn send(self) -> Result<TaskRecord, Error> {
        let args = self.args?;
        let priority = self.priority.unwrap_or_else(|| self.app.default_priority(&self.task_name));
        self.app.submit(NewTask { task_name: self.task_name, priority, args, extra: self.extra }).await
    }
}

impl<'a, T: TaskSet, C: PluginChain, B: Backend> IntoFuture for AddTask<'a, T, C, B> {
    type Output = Result<TaskRecord, Error>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A task about to be enqueued whose final record is awaited.
#[must_use = "a task is enqueued only when this is awaited"]
pub struct AddTaskWait<'a, T, C, B> {
    add: AddTask<'a, T, C, B>,
    timeout: Duration,
}

impl<'a, T: TaskSet, C: PluginChain, B: Backend> IntoFuture for AddTaskWait<'a, T, C, B> {
    type Output = Result<Option<TaskRecord>, Error>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let app = self.add.app;
            let task = self.add.send().await?;
            app.wait(task.uuid, self.timeout).await
        })
    }
}

/// A typed task about to be enqueued; awaiting it gives a [`TaskHandle`].
#[must_use = "a task is enqueued only when this is awaited"]
pub struct Enqueue<'a, K, T, C, B> {
    inner: AddTask<'a, T, C, B>,
    _task: PhantomData<fn() -> K>,
}

impl<'a, K: Task, T: TaskSet, C: PluginChain, B: Backend> Enqueue<'a, K, T, C, B> {
    /// Overrides the task's priority (lower runs first).
    pub fn priority(mut self, priority: i64) -> Self {
        self.inner = self.inner.priority(priority);
        self
    }
}

impl<'a, K: Task, T: TaskSet, C: PluginChain, B: Backend> IntoFuture for Enqueue<'a, K, T, C, B> {
    type Output = Result<TaskHandle<'a, K::Output, T, C, B>, Error>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let app = self.inner.app;
            let record = self.inner.send().await?;
            Ok(TaskHandle { app, uuid: record.uuid, _output: PhantomData })
        })
    }
}

/// An enqueued task whose result has type `O`.
pub struct TaskHandle<'a, O, T, C, B> {
    app: &'a QueueTasks<T, C, B>,
    uuid: Uuid,
    _output: PhantomData<fn() -> O>,
}

impl<O: DeserializeOwned, T: TaskSet, C: PluginChain, B: Backend> TaskHandle<'_, O, T, C, B> {
    /// The task's id.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Waits for the task to finish and decodes its result.
    pub async fn result(&self, timeout: Duration) -> Result<O, WaitError> {
        let task = match self.app.wait(self.uuid, timeout).await {
            Ok(task) => task.ok_or(WaitError::Timeout)?,
            Err(Error::Backend(e)) => return Err(WaitError::Backend(e)),
            Err(e) => return Err(WaitError::Failed(e.to_string())),
        };
        match task.status {
            TaskStatus::Success => {
                serde_json::from_value(task.result.unwrap_or(Value::Null)).map_err(WaitError::Decode)
            }
            TaskStatus::Cancel => Err(WaitError::Cancelled(task.error.unwrap_or_default())),
            _ => Err(WaitError::Failed(task.error.unwrap_or_default())),
        }
    }
}
