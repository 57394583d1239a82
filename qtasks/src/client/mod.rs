//! The client side of an app: enqueue, read, wait and cancel; chains and
//! groups ([`canvas`]); the shared settings and the worker registry; and
//! [`inspect`].
//!
//! Every operation is a method of [`QueueTasks`]. Code that only enqueues
//! and waits can hold a [`Client`] instead: the same operations behind one
//! type with no type parameters, cheap to clone (one reference count).
//!
//! # One way for each job
//!
//! | job | call |
//! | --- | --- |
//! | enqueue a task this program defines, typed | `app.enqueue(Add::call(2, 3))` |
//! | enqueue by name (tasks other processes define) | `app.add_task("add", (2, 3))` |
//! | wait for a typed result | `handle.result(timeout)` |
//! | wait for the final record | `handle.record(timeout)`, or `app.wait(uuid, timeout)` for a bare id |
//! | cancel | `app.cancel(uuid, reason)` or `handle.cancel(reason)` |
//! | run several tasks as a unit | `app.chain([..])`, `app.group([..])` |
//!
//! Every wait ends with one kind of timeout, [`WaitError::Timeout`].

pub mod canvas;
mod handles;
pub mod inspect;
pub(crate) mod kv;
#[cfg(feature = "postgres")]
mod postgres;

pub use canvas::{Signature, call};
pub use handles::{Enqueue, EnqueueFuture, TaskHandle};
pub use kv::{PLUGIN_SWITCHES, WorkerInfo};

use crate::app::AllTasks;
use crate::app::events::{Event, EventKind};
use crate::app::{AppInner, QueueTasks};
use crate::app::{Error, WaitError};
use crate::backend::Enqueued;
use crate::backend::{Backend, CancelOutcome, QueueStats};
use crate::dispatch::fire_ctx as fire;
use crate::dispatch::{PluginChain, awaited, fire_now, listened};
use crate::model::{Name, NewTask, TaskRecord, TaskStatus, Unique};
use crate::queue::{DEFAULT_QUEUE, QueueInfo, argument_key};
use crate::task::TaskSet;
use crate::triggers::*;
use canvas::Submit;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The client side of an app, with no type parameters: enqueue, wait,
/// read and cancel, exactly as the app's own methods do (the same triggers
/// fire). Made by [`QueueTasks::client`]; cheap to clone.
///
/// ```
/// use qtasks::{Client, QueueTasks, task};
/// use std::time::Duration;
///
/// #[task]
/// async fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// /// Code that only enqueues names no app type.
/// async fn total(client: Client) -> Result<i64, Box<dyn std::error::Error>> {
///     let handle = client.add_task("add", (2, 3)).await?;
///     Ok(serde_json::from_value(handle.result(Duration::from_secs(5)).await?)?)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = QueueTasks::builder("client-doc").task::<Add>().build()?;
/// let worker = app.worker().start().await?;
/// assert_eq!(total(app.client()).await?, 5);
/// worker.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<dyn ClientApi>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("app", &self.name()).finish()
    }
}

/// The client operations of an app, object-safe, so [`Client`] can hide
/// the app's type. Implemented for every app.
pub(crate) trait ClientApi: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// Enqueues one call; gives the task's id (the existing task's, if one
    /// with its id or unique key was there).
    fn submit(self: Arc<Self>, submit: Submit) -> BoxFuture<'static, Result<Uuid, Error>>;
    fn submit_many(self: Arc<Self>, submits: Vec<Submit>) -> BoxFuture<'static, Result<Vec<TaskRecord>, Error>>;
    fn get(self: Arc<Self>, uuid: Uuid) -> BoxFuture<'static, Result<Option<TaskRecord>, Error>>;
    fn wait(self: Arc<Self>, uuid: Uuid, timeout: Duration) -> BoxFuture<'static, Result<TaskRecord, WaitError>>;
    fn cancel(self: Arc<Self>, uuid: Uuid, reason: String) -> BoxFuture<'static, Result<CancelOutcome, Error>>;
    fn claim(self: Arc<Self>, key: String, ttl: Duration) -> BoxFuture<'static, Result<bool, Error>>;
    fn set_shared(
        self: Arc<Self>,
        name: &'static str,
        key: String,
        value: Value,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), Error>>;
}

impl<T: TaskSet, C: PluginChain, B: Backend> ClientApi for AppInner<T, C, B> {
    fn name(&self) -> &str {
        &self.name
    }

    fn submit(self: Arc<Self>, submit: Submit) -> BoxFuture<'static, Result<Uuid, Error>> {
        Box::pin(async move { self.enqueue_request(submit).await })
    }

    fn submit_many(self: Arc<Self>, submits: Vec<Submit>) -> BoxFuture<'static, Result<Vec<TaskRecord>, Error>> {
        Box::pin(async move { self.enqueue_requests(submits).await })
    }

    fn get(self: Arc<Self>, uuid: Uuid) -> BoxFuture<'static, Result<Option<TaskRecord>, Error>> {
        Box::pin(async move { self.read(uuid).await })
    }

    fn wait(self: Arc<Self>, uuid: Uuid, timeout: Duration) -> BoxFuture<'static, Result<TaskRecord, WaitError>> {
        Box::pin(async move { self.wait_final(uuid, timeout).await })
    }

    fn cancel(self: Arc<Self>, uuid: Uuid, reason: String) -> BoxFuture<'static, Result<CancelOutcome, Error>> {
        Box::pin(async move { self.cancel_task(uuid, reason).await })
    }

    fn claim(self: Arc<Self>, key: String, ttl: Duration) -> BoxFuture<'static, Result<bool, Error>> {
        Box::pin(async move { Ok(self.backend.claim(&key, ttl).await?) })
    }

    fn set_shared(
        self: Arc<Self>,
        name: &'static str,
        key: String,
        value: Value,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(async move { Ok(self.backend.config_set(name, &key, &value, Some(ttl)).await?) })
    }
}

impl Client {
    /// Writes a shared setting with a ttl straight to the backend, without
    /// firing triggers (registries: schedules).
    pub(crate) async fn set_shared(
        &self,
        name: &'static str,
        key: String,
        value: Value,
        ttl: Duration,
    ) -> Result<(), Error> {
        Arc::clone(&self.inner).set_shared(name, key, value, ttl).await
    }
}

impl Client {
    /// The app's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Enqueues a call: typed (`Add::call(2, 3)`, whose handle gives an
    /// `i64`) or by name ([`call`]). See [`QueueTasks::enqueue`].
    pub fn enqueue<O>(&self, call: Signature<O>) -> Enqueue<O> {
        Enqueue::new(self.clone(), call)
    }

    /// Enqueues a task by name; see [`QueueTasks::add_task`].
    pub fn add_task(&self, task_name: impl Into<Name>, args: impl Serialize) -> Enqueue<Value> {
        self.enqueue(call(task_name, args))
    }

    /// Enqueues many calls in one go; see [`QueueTasks::add_tasks`].
    pub async fn add_tasks<O>(
        &self,
        calls: impl IntoIterator<Item = Signature<O>>,
    ) -> Result<Vec<TaskHandle<O>>, Error> {
        let submits = calls.into_iter().map(Signature::into_submit).collect::<Result<Vec<_>, _>>()?;
        let records = self.inner.clone().submit_many(submits).await?;
        Ok(records.into_iter().map(|record| TaskHandle::new(self.clone(), record.uuid)).collect())
    }

    /// Reads a task's record; see [`QueueTasks::get`].
    pub async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, Error> {
        self.inner.clone().get(uuid).await
    }

    /// Waits for a task's final record; see [`QueueTasks::wait`].
    pub async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<TaskRecord, WaitError> {
        self.inner.clone().wait(uuid, timeout).await
    }

    /// Cancels a task; see [`QueueTasks::cancel`].
    pub async fn cancel(&self, uuid: Uuid, reason: impl Into<String>) -> Result<CancelOutcome, Error> {
        self.inner.clone().cancel(uuid, reason.into()).await
    }

    /// A handle for a task enqueued elsewhere, whose result has type `O`.
    pub fn handle<O>(&self, uuid: Uuid) -> TaskHandle<O> {
        TaskHandle::new(self.clone(), uuid)
    }

    /// Claims a one-time key in the backend (see [`Backend::claim`]).
    pub(crate) async fn claim(&self, key: String, ttl: Duration) -> Result<bool, Error> {
        self.inner.clone().claim(key, ttl).await
    }

    pub(crate) async fn submit(&self, submit: Submit) -> Result<Uuid, Error> {
        self.inner.clone().submit(submit).await
    }
}

impl<T: TaskSet, C: PluginChain, B: Backend> From<&QueueTasks<T, C, B>> for Client {
    fn from(app: &QueueTasks<T, C, B>) -> Self {
        app.client()
    }
}

impl<T: TaskSet, C: PluginChain, B: Backend> From<QueueTasks<T, C, B>> for Client {
    fn from(app: QueueTasks<T, C, B>) -> Self {
        app.client()
    }
}

impl<T: TaskSet, C: PluginChain, B: Backend> QueueTasks<T, C, B> {
    /// The app's client side as a [`Client`]: no type parameters, cheap
    /// to clone, for code that only enqueues, waits and cancels.
    pub fn client(&self) -> Client {
        Client { inner: self.inner.clone() }
    }

    /// Enqueues a call. Awaiting the returned [`Enqueue`] stores the task
    /// and gives its [`TaskHandle`]:
    ///
    /// ```
    /// # use qtasks::{QueueTasks, Signature, task};
    /// # use std::time::Duration;
    /// #[task]
    /// async fn add(a: i64, b: i64) -> i64 {
    ///     a + b
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let app = QueueTasks::builder("enqueue-doc").task::<Add>().build()?;
    /// # let worker = app.worker().start().await?;
    /// let handle = app.enqueue(Add::call(2, 3)).priority(1).await?;
    /// assert_eq!(handle.result(Duration::from_secs(5)).await?, 5);
    /// # worker.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Fires `qtasks_add_task_before_broker`, `broker_add_before`,
    /// `storage_add`, then after the backend stored it `broker_add_after`
    /// and `qtasks_add_task_after_broker`.
    pub fn enqueue<O>(&self, call: Signature<O>) -> Enqueue<O> {
        Enqueue::new(self.client(), call)
    }

    /// Enqueues a task by name with JSON-serializable arguments: an array or
    /// tuple (positional), a map (by parameter name), a bare value for a
    /// one-parameter task, or `()`. The same as `enqueue(call(name, args))`:
    /// the form for tasks that only workers elsewhere define (QTasks's
    /// `add_task`); the handle's result is JSON.
    ///
    /// ```
    /// # use qtasks::{QueueTasks, json, task};
    /// # use std::time::Duration;
    /// # #[task]
    /// # async fn add(a: i64, b: i64) -> i64 { a + b }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let app = QueueTasks::builder("add-task-doc").task::<Add>().build()?;
    /// # let worker = app.worker().start().await?;
    /// let handle = app.add_task("add", json!({"a": 2, "b": 3})).await?;
    /// let record = handle.record(Duration::from_secs(5)).await?;
    /// assert_eq!(record.result, Some(json!(5)));
    /// # worker.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn add_task(&self, task_name: impl Into<Name>, args: impl Serialize) -> Enqueue<Value> {
        self.enqueue(call(task_name, args))
    }

    /// Enqueues many calls in one go and gives their handles, in order.
    ///
    /// Each call is enqueued as by [`enqueue`](Self::enqueue) (the same
    /// options, the same triggers for each), but the backend writes them in
    /// batches of up to 500 per round trip (on Redis, one script call per
    /// batch), many times the rate of one enqueue after another. A call
    /// whose arguments cannot be encoded, or whose unique or concurrency
    /// key cannot be computed, fails the whole call before anything is
    /// stored. A call with the id or unique key of an existing task (or of
    /// an earlier call in the same batch) is not enqueued again: its handle
    /// is that task's.
    ///
    /// ```
    /// # use qtasks::{QueueTasks, task};
    /// # use std::time::Duration;
    /// #[task]
    /// async fn add(a: i64, b: i64) -> i64 {
    ///     a + b
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let app = QueueTasks::builder("add-tasks-doc").task::<Add>().build()?;
    /// # let worker = app.worker().start().await?;
    /// let handles = app.add_tasks((0..100).map(|i| Add::call(i, i))).await?;
    /// assert_eq!(handles[7].result(Duration::from_secs(5)).await?, 14);
    /// # worker.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn add_tasks<O>(
        &self,
        calls: impl IntoIterator<Item = Signature<O>>,
    ) -> Result<Vec<TaskHandle<O>>, Error> {
        self.client().add_tasks(calls).await
    }

    /// Reads a task's record; `None` if there is no such task. Fires
    /// `storage_get`, `broker_get` and `qtasks_get`.
    pub async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, Error> {
        self.inner.read(uuid).await
    }

    /// Reads every task record kept by the backend.
    pub async fn get_all(&self) -> Result<Vec<TaskRecord>, Error> {
        let app = &*self.inner;
        let models = app.backend.get_all().await?;
        Ok(fire!(&app.chain, StorageGetAll { app: &app.name, models }).models)
    }

    /// Waits until the task reaches a final status (notified, not polled)
    /// and returns its record, whatever the status.
    ///
    /// A task that failed and was retried (status `retry`) is followed to
    /// its last attempt, whose record is returned: the uuid a client got
    /// when it enqueued leads to the final result.
    ///
    /// [`WaitError::Timeout`] if `timeout` passes first (the task may still
    /// finish) or there is no such task.
    ///
    /// ```
    /// # use qtasks::{QueueTasks, TaskStatus, WaitError, task};
    /// # use std::time::Duration;
    /// # #[task]
    /// # async fn add(a: i64, b: i64) -> i64 { a + b }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let app = QueueTasks::builder("wait-doc").task::<Add>().build()?;
    /// let uuid = app.enqueue(Add::call(2, 3)).await?.uuid(); // say, sent to another process
    /// // No worker yet: the wait times out, and the task is still queued.
    /// assert!(matches!(app.wait(uuid, Duration::from_millis(10)).await, Err(WaitError::Timeout)));
    /// let worker = app.worker().start().await?;
    /// let record = app.wait(uuid, Duration::from_secs(5)).await?;
    /// assert_eq!(record.status, TaskStatus::Success);
    /// # worker.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<TaskRecord, WaitError> {
        self.inner.wait_final(uuid, timeout).await
    }

    /// Cancels a task: a queued one never runs and ends `cancel` at once; a
    /// running one sees its [`CancelToken`](crate::CancelToken) fire (an
    /// async task is stopped at its next `.await`) and ends `cancel`.
    ///
    /// The decision is stored in the backend, so it holds for every worker,
    /// also ones started later. Cancelling again, or cancelling a finished
    /// task, changes nothing and says so. A task that was retried is
    /// followed to its current attempt.
    ///
    /// ```
    /// # use qtasks::{QueueTasks, backend::CancelOutcome, task};
    /// # #[task]
    /// # async fn slow() {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let app = QueueTasks::builder("cancel-doc").task::<Slow>().build()?;
    /// let handle = app.add_task("slow", ()).await?; // no worker: it stays queued
    /// assert_eq!(app.cancel(handle.uuid(), "not needed").await?, CancelOutcome::Cancelled);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cancel(&self, uuid: Uuid, reason: impl Into<String>) -> Result<CancelOutcome, Error> {
        self.inner.cancel_task(uuid, reason.into()).await
    }

    /// A chain of `steps`; see [`canvas`].
    pub fn chain(&self, steps: impl IntoIterator<Item = Signature>) -> canvas::TaskChain {
        self.client().chain(steps)
    }

    /// A group of `members`; see [`canvas`].
    pub fn group(&self, members: impl IntoIterator<Item = Signature>) -> canvas::TaskGroup {
        self.client().group(members)
    }

    /// The app's queue depth, tasks in flight, and per task how many runs
    /// ended `success`, `error`, `retry` and `cancel`, across every worker
    /// sharing the backend.
    pub async fn queue_stats(&self) -> Result<QueueStats, Error> {
        Ok(self.inner.backend.stats().await?)
    }

    /// Pauses `queue` for every worker sharing the backend: within a
    /// second (at their next fetch) no worker takes a task from it. Tasks
    /// already running finish; enqueueing into it still works. Stored in
    /// the backend, so it holds for workers started later, until
    /// [`resume_queue`](Self::resume_queue).
    ///
    /// ```
    /// # use qtasks::{QueueTasks, task};
    /// # use std::time::Duration;
    /// # #[task]
    /// # async fn add(a: i64, b: i64) -> i64 { a + b }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let app = QueueTasks::builder("pause-doc").task::<Add>().build()?;
    /// let worker = app.worker().start().await?;
    /// app.pause_queue("default").await?;
    /// let handle = app.enqueue(Add::call(2, 3)).await?;
    /// assert_eq!(app.queues().await?[0].depth, 1); // waits while paused
    /// app.resume_queue("default").await?;
    /// assert_eq!(handle.result(Duration::from_secs(5)).await?, 5);
    /// # worker.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A queue the app does not know (see [`queues`](Self::queues)) is
    /// [`Error::UnknownQueue`].
    pub async fn pause_queue(&self, queue: &str) -> Result<(), Error> {
        self.set_paused(queue, true).await
    }

    /// Resumes a paused `queue` (see [`pause_queue`](Self::pause_queue)):
    /// idle workers that consume it wake and take its tasks.
    pub async fn resume_queue(&self, queue: &str) -> Result<(), Error> {
        self.set_paused(queue, false).await
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), Error> {
        let known = self.inner.known_queues();
        if !known.iter().any(|q| q == queue) {
            return Err(Error::UnknownQueue { queue: queue.to_owned(), known });
        }
        Ok(self.inner.backend.set_paused(queue, paused).await?)
    }

    /// Every queue of the app, across every worker: depth, delayed tasks,
    /// in flight, paused, the age of the oldest waiting task, and its
    /// limits. The app's own queues come first (`default`, the queues its
    /// tasks name, the ones it declares), then any other queue the backend
    /// holds tasks for (tasks enqueued by name into a queue this program
    /// does not know).
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, Error> {
        let inner = &*self.inner;
        let known = inner.known_queues();
        let limits = inner.limits();
        let mut seen = inner.backend.queues(&[]).await?;
        let mut queues = Vec::with_capacity(known.len() + seen.len());
        for name in known {
            let info = match seen.iter().position(|q| q.name == name) {
                Some(at) => seen.swap_remove(at),
                None => QueueInfo { name, ..QueueInfo::default() },
            };
            queues.push(info);
        }
        seen.sort_by(|a, b| a.name.cmp(&b.name));
        queues.extend(seen);
        for queue in &mut queues {
            queue.limit = limits.queue(&queue.name).cloned().unwrap_or_default();
        }
        Ok(queues)
    }

    /// Removes every queued task and record of the app.
    pub async fn flush_all(&self) -> Result<(), Error> {
        let app = &*self.inner;
        fire!(&app.chain, QtasksFlushAll { app: &app.name });
        fire!(&app.chain, BrokerFlushAll { app: &app.name });
        fire!(&app.chain, StorageFlushAll { app: &app.name });
        Ok(app.backend.flush().await?)
    }
}

impl<T: TaskSet, C: PluginChain, B: Backend> AppInner<T, C, B> {
    async fn read(&self, uuid: Uuid) -> Result<Option<TaskRecord>, Error> {
        let mut task = self.backend.get(uuid).await?;
        if let Some(model) = task.take() {
            task = Some(fire!(&self.chain, StorageGet { app: &self.name, model }).model);
        }
        let model = fire!(&self.chain, BrokerGet { app: &self.name, uuid, model: task }).model;
        Ok(fire!(&self.chain, QtasksGet { app: &self.name, uuid, model }).model)
    }

    async fn wait_final(&self, uuid: Uuid, timeout: Duration) -> Result<TaskRecord, WaitError> {
        // No deadline for a timeout too large to add (it never passes).
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        let mut uuid = uuid;
        for _ in 0..MAX_RETRY_HOPS {
            let left = deadline.map_or(timeout, |d| d.saturating_duration_since(tokio::time::Instant::now()));
            let task = self.backend.wait(uuid, left).await?.ok_or(WaitError::Timeout)?;
            match task.retry_child() {
                Some(child) if task.status == TaskStatus::Retry => uuid = child,
                _ => return Ok(task),
            }
        }
        match self.read(uuid).await {
            Ok(Some(task)) => Ok(task),
            Ok(None) => Err(WaitError::Timeout),
            Err(Error::Backend(e)) => Err(WaitError::Backend(e)),
            Err(e) => Err(WaitError::Failed(e.to_string())),
        }
    }

    async fn cancel_task(&self, uuid: Uuid, reason: String) -> Result<CancelOutcome, Error> {
        let mut uuid = uuid;
        for _ in 0..MAX_RETRY_HOPS {
            match self.backend.cancel(uuid, &reason).await? {
                CancelOutcome::Finished(TaskStatus::Retry) => {
                    match self.read(uuid).await?.as_ref().and_then(TaskRecord::retry_child) {
                        Some(child) => uuid = child,
                        None => return Ok(CancelOutcome::Finished(TaskStatus::Retry)),
                    }
                }
                CancelOutcome::Cancelled => {
                    if self.events.listens(EventKind::TaskCancel)
                        && let Some(record) = self.backend.get(uuid).await?
                    {
                        self.events.emit(Event::ended(EventKind::TaskCancel, &self.name, &record)).await;
                    }
                    return Ok(CancelOutcome::Cancelled);
                }
                outcome => return Ok(outcome),
            }
        }
        Ok(CancelOutcome::Finished(TaskStatus::Retry))
    }

    /// The request of a call: what the call leaves open comes from its
    /// task's declaration (when this app defines the task) or the app's
    /// defaults.
    fn resolve(&self, submit: Submit) -> Result<(NewTask, Option<Uuid>, Option<Duration>), Error> {
        let Submit { task_name, args, options } = submit;
        let info = <AllTasks<T, C>>::info(&task_name);
        let priority =
            options.priority.or_else(|| info.and_then(|i| i.priority)).unwrap_or(self.config.task_default_priority);
        let queue = options.queue.unwrap_or_else(|| Name::new_static(info.map_or(DEFAULT_QUEUE, |i| i.queue)));
        let limit_key = match info.and_then(|i| i.concurrency_key.map(|p| (i, p))) {
            Some((i, param)) => Some(
                argument_key(&args, i.params, param)
                    .ok_or_else(|| Error::missing_key(&task_name, "concurrency key", param))?,
            ),
            None => None,
        };
        let window = info.and_then(|i| i.unique).map_or(0.0, |u| u.window.as_secs_f64());
        let unique = match (options.unique_key, info.and_then(|i| i.unique.map(|u| (i, u)))) {
            (Some(key), _) => Some(Unique { key: format!("{task_name}:{key}"), window }),
            (None, Some((i, spec))) => {
                let key = if spec.params.is_empty() {
                    args.to_string()
                } else {
                    let mut parts = Vec::with_capacity(spec.params.len());
                    for param in spec.params {
                        let part = argument_key(&args, i.params, param)
                            .ok_or_else(|| Error::missing_key(&task_name, "unique key", param))?;
                        parts.push(serde_json::Value::String(part));
                    }
                    serde_json::Value::Array(parts).to_string()
                };
                Some(Unique { key: format!("{task_name}:{key}"), window })
            }
            (None, None) => None,
        };
        let mut extra = options.extra;
        crate::trace::inject_current(&mut extra);
        if let Some(value) = extra.get(crate::trace::TRACEPARENT)
            && !value.as_str().is_some_and(crate::trace::is_valid_traceparent)
        {
            return Err(Error::InvalidTraceparent { task: task_name.to_string(), value: value.to_string() });
        }
        let request = NewTask { task_name, queue, priority, args, extra, limit_key, unique };
        Ok((request, options.id, options.delay))
    }

    /// The record of a call, after the triggers that may change it before
    /// the backend stores it, and its delay.
    async fn prepare(&self, submit: Submit) -> Result<(TaskRecord, Option<Duration>), Error> {
        if prepare_awaits::<C>() {
            // Boxed: only apps whose plugins wait here carry these triggers' state.
            return Box::pin(self.prepare_awaiting(submit)).await;
        }
        // In place: the request and the record stay out of the enqueue's future.
        prepare_steps!(self, submit, fire_now)
    }

    /// [`prepare`](Self::prepare) where an async handler listens.
    async fn prepare_awaiting(&self, submit: Submit) -> Result<(TaskRecord, Option<Duration>), Error> {
        prepare_steps!(self, submit, fire)
    }

    /// What follows the backend's answer for one task: the record the
    /// caller gets (written in place: the id of the task that exists, if
    /// one did), and the triggers of a task that was enqueued now.
    async fn stored(&self, model: &mut TaskRecord, stored: Enqueued) {
        if let Enqueued::Existing(existing) = stored {
            // A task with this id (given by the caller), or with this
            // unique key, exists: nothing was enqueued now.
            tracing::debug!(app = %self.name, uuid = %model.uuid, %existing, "not enqueued: the task exists");
            model.uuid = existing;
            return;
        }
        let (app, model) = (self.name.as_str(), &*model);
        if awaited::<C, BrokerAddAfter<'static>>() || awaited::<C, QtasksAddTaskAfterBroker<'static>>() {
            // Boxed: only apps whose plugins wait here carry these triggers' state.
            Box::pin(async {
                fire!(&self.chain, BrokerAddAfter { app, model });
                fire!(&self.chain, QtasksAddTaskAfterBroker { app, model });
            })
            .await;
        } else {
            fire_now!(&self.chain, BrokerAddAfter { app, model });
            fire_now!(&self.chain, QtasksAddTaskAfterBroker { app, model });
        }
    }

    async fn enqueue_request(&self, submit: Submit) -> Result<Uuid, Error> {
        let (mut model, delay) = self.prepare(submit).await?;
        let stored = match delay {
            Some(delay) => self.backend.enqueue_delayed(&model, delay).await?,
            None => self.backend.enqueue(&model).await?,
        };
        self.stored(&mut model, stored).await;
        Ok(model.uuid)
    }

    async fn enqueue_requests(&self, submits: Vec<Submit>) -> Result<Vec<TaskRecord>, Error> {
        let mut batch = Vec::with_capacity(submits.len());
        for submit in submits {
            batch.push(self.prepare(submit).await?);
        }
        // Moved out front to back: splitting the rest off each time would
        // copy it again per batch (quadratic in the number of tasks).
        let mut chunks = Vec::with_capacity(batch.len().div_ceil(ENQUEUE_BATCH));
        let mut tasks = batch.into_iter();
        loop {
            let chunk: Vec<_> = tasks.by_ref().take(ENQUEUE_BATCH).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        // A few batches in flight at once, sent in order (a backend with one
        // connection runs them in that order), their outcomes kept in order.
        // (A loop, not a closure: a closure here makes the future not `Send`.)
        let mut calls = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            calls.push(self.backend.enqueue_many(chunk));
        }
        let outcomes: Vec<Vec<Enqueued>> =
            futures::stream::iter(calls).buffered(ENQUEUE_BATCHES_IN_FLIGHT).try_collect().await?;
        let mut done = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
        for (chunk, outcomes) in chunks.into_iter().zip(outcomes) {
            if outcomes.len() != chunk.len() {
                return Err(Error::Backend(crate::backend::BackendError::new(
                    self.backend.kind(),
                    crate::backend::BackendErrorKind::Other,
                    format!("enqueue_many answered for {} tasks of {}", outcomes.len(), chunk.len()),
                )));
            }
            for ((mut model, _), outcome) in chunk.into_iter().zip(outcomes) {
                self.stored(&mut model, outcome).await;
                done.push(model);
            }
        }
        Ok(done)
    }
}

/// The steps of `AppInner::prepare`, each trigger fired with `$fire`
/// (`fire!`, which may wait, or `fire_now!`), and only if a plugin listens
/// (a constant): the request and the record are not moved through contexts
/// for nothing.
macro_rules! prepare_steps {
    ($app:expr, $submit:expr, $fire:ident) => {{
        let (mut request, id, delay) = $app.resolve($submit)?;
        let (app, chain) = ($app.name.as_str(), &$app.chain);
        if listened::<C, QtasksAddTaskBeforeBroker<'static>>() {
            request = $fire!(chain, QtasksAddTaskBeforeBroker { app, request }).request;
        }
        let mut model = TaskRecord::new(id.unwrap_or_else(Uuid::new_v4), request);
        if listened::<C, BrokerAddBefore<'static>>() {
            model = $fire!(chain, BrokerAddBefore { app, model }).model;
        }
        if listened::<C, StorageAdd<'static>>() {
            model = $fire!(chain, StorageAdd { app, model }).model;
        }
        Ok((model, delay))
    }};
}
use prepare_steps;

/// Whether an async handler listens to a trigger fired while a task is
/// prepared for the backend (a constant).
fn prepare_awaits<C: PluginChain>() -> bool {
    awaited::<C, QtasksAddTaskBeforeBroker<'static>>()
        || awaited::<C, BrokerAddBefore<'static>>()
        || awaited::<C, StorageAdd<'static>>()
}

/// Tasks [`QueueTasks::add_tasks`] hands the backend in one call at most:
/// big enough to amortize a round trip, small enough that one script call
/// does not hold a Redis server for long.
const ENQUEUE_BATCH: usize = 500;

/// Batches of [`QueueTasks::add_tasks`] sent before the first is answered,
/// so the client prepares and sends the next while the backend stores one.
const ENQUEUE_BATCHES_IN_FLIGHT: usize = 4;

/// Retry links followed at most (a guard against links that loop).
const MAX_RETRY_HOPS: usize = 10_000;
