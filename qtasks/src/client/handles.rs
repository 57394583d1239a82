//! What enqueueing gives back: [`Enqueue`] (a task about to be enqueued)
//! and [`TaskHandle`] (an enqueued task whose result can be awaited).
//!
//! Both own a [`Client`] (a reference-counted pointer to the app), so they
//! are `'static`: they can be stored, sent to another task, or awaited
//! after the code that made them returned.

use super::Client;
use super::canvas::Signature;
use crate::app::{Error, WaitError};
use crate::backend::CancelOutcome;
use crate::model::{TaskRecord, TaskStatus};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use uuid::Uuid;

/// A task about to be enqueued, whose result has type `O` (`Value` when
/// enqueued by name). Awaiting it enqueues the task and gives a
/// [`TaskHandle`]; nothing is enqueued until then.
///
/// Made by [`QueueTasks::enqueue`](crate::QueueTasks::enqueue),
/// [`QueueTasks::add_task`](crate::QueueTasks::add_task) and the same
/// methods of [`Client`].
#[must_use = "a task is enqueued only when this is awaited"]
pub struct Enqueue<O> {
    client: Client,
    call: Signature<O>,
}

impl<O> Enqueue<O> {
    pub(crate) fn new(client: Client, call: Signature<O>) -> Self {
        Self { client, call }
    }

    /// Overrides the task's priority (lower runs first); by default the
    /// priority the task declares, else the app's
    /// [`task_default_priority`](crate::Config::task_default_priority).
    pub fn priority(mut self, priority: i64) -> Self {
        self.call = self.call.priority(priority);
        self
    }

    /// Adds an extra field, stored with the task's record and visible to
    /// the task as [`TaskContext::extra`](crate::TaskContext::extra).
    pub fn extra(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.call = self.call.extra(key, value);
        self
    }

    /// Enqueues under this id: idempotent, see [`Signature::id`].
    pub fn id(mut self, id: Uuid) -> Self {
        self.call = self.call.id(id);
        self
    }

    /// Sends the task to another queue; see [`Signature::queue`].
    pub fn queue(mut self, queue: impl Into<crate::model::Name>) -> Self {
        self.call = self.call.queue(queue);
        self
    }

    /// Runs the task no sooner than `delay` from now; see [`Signature::delay`].
    pub fn delay(mut self, delay: Duration) -> Self {
        self.call = self.call.delay(delay);
        self
    }

    /// Sends the task with this W3C traceparent; see [`Signature::traceparent`].
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.call = self.call.traceparent(traceparent);
        self
    }

    /// Sends the W3C tracestate with the traceparent; see [`Signature::tracestate`].
    pub fn tracestate(mut self, tracestate: impl Into<String>) -> Self {
        self.call = self.call.tracestate(tracestate);
        self
    }

    /// Gives the task its own time limit; see [`Signature::max_time`].
    pub fn max_time(mut self, limit: Duration) -> Self {
        self.call = self.call.max_time(limit);
        self
    }

    /// Gives the task a unique key; see [`Signature::unique_key`].
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.call = self.call.unique_key(key);
        self
    }
}

impl<O> fmt::Debug for Enqueue<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enqueue").field("app", &self.client.name()).field("call", &self.call).finish()
    }
}

impl<O> IntoFuture for Enqueue<O> {
    type Output = Result<TaskHandle<O>, Error>;
    type IntoFuture = EnqueueFuture<O>;

    fn into_future(self) -> EnqueueFuture<O> {
        let submit = match self.call.into_submit() {
            Ok(submit) => self.client.inner.clone().submit(submit),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        };
        EnqueueFuture { submit, client: Some(self.client), _output: PhantomData }
    }
}

/// The future of an [`Enqueue`]: resolves to the task's [`TaskHandle`] once
/// the backend has stored it.
#[must_use = "futures do nothing unless polled"]
pub struct EnqueueFuture<O> {
    submit: BoxFuture<'static, Result<Uuid, Error>>,
    client: Option<Client>,
    _output: PhantomData<fn() -> O>,
}

impl<O> Future for EnqueueFuture<O> {
    type Output = Result<TaskHandle<O>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let uuid = ready!(self.submit.as_mut().poll(cx))?;
        let client = self.client.take().expect("an EnqueueFuture is not polled after it completed");
        Poll::Ready(Ok(TaskHandle { client, uuid, _output: PhantomData }))
    }
}

impl<O> fmt::Debug for EnqueueFuture<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnqueueFuture").finish_non_exhaustive()
    }
}

/// An enqueued task whose result has type `O`.
///
/// It owns what it needs (a [`Client`]), so it can move into a spawned task.
/// Waiting is notified by the backend, never polled on an interval, and
/// follows retries: the handle of the first attempt leads to the last
/// attempt's result.
pub struct TaskHandle<O> {
    client: Client,
    uuid: Uuid,
    _output: PhantomData<fn() -> O>,
}

impl<O> TaskHandle<O> {
    /// A handle for a task enqueued elsewhere (for example by another
    /// process that sent you its id), whose result has type `O`.
    pub fn new(client: Client, uuid: Uuid) -> Self {
        Self { client, uuid, _output: PhantomData }
    }

    /// The task's id.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Waits for the task's final record, whatever its status. See
    /// [`QueueTasks::wait`](crate::QueueTasks::wait).
    pub async fn record(&self, timeout: Duration) -> Result<TaskRecord, WaitError> {
        self.client.wait(self.uuid, timeout).await
    }

    /// Cancels the task; see [`QueueTasks::cancel`](crate::QueueTasks::cancel).
    pub async fn cancel(&self, reason: impl Into<String>) -> Result<CancelOutcome, Error> {
        self.client.cancel(self.uuid, reason).await
    }
}

impl<O: DeserializeOwned> TaskHandle<O> {
    /// Waits for the task to finish and decodes its result.
    ///
    /// A task that ended `error` gives [`WaitError::Failed`], one that ended
    /// `cancel` [`WaitError::Cancelled`]; past `timeout`,
    /// [`WaitError::Timeout`] (the task may still finish).
    pub async fn result(&self, timeout: Duration) -> Result<O, WaitError> {
        let record = self.record(timeout).await?;
        match record.status {
            TaskStatus::Success => {
                serde_json::from_value(record.result.unwrap_or(Value::Null)).map_err(WaitError::Decode)
            }
            TaskStatus::Cancel => Err(WaitError::Cancelled(record.error.unwrap_or_default())),
            _ => Err(WaitError::Failed(record.error.unwrap_or_default())),
        }
    }
}

impl<O> Clone for TaskHandle<O> {
    fn clone(&self) -> Self {
        Self { client: self.client.clone(), uuid: self.uuid, _output: PhantomData }
    }
}

impl<O> fmt::Debug for TaskHandle<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle").field("app", &self.client.name()).field("uuid", &self.uuid).finish()
    }
}
