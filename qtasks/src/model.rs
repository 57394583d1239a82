//! The data that travels through a queue: messages, stored task records and statuses.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

mod name;
pub use name::Name;

/// Seconds since the Unix epoch, as QTasks stores them.
pub type Timestamp = f64;

/// Serializes a duration as seconds (a float).
pub(crate) fn serialize_secs_plain<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Serializes an optional duration as seconds (a float), as listings show it.
pub(crate) fn serialize_secs<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Extra fields of the retry links, as QTasks names them: the retries left,
/// and the uuids of the attempt before and after.
pub(crate) const RETRY: &str = "retry";
pub(crate) const RETRY_PARENT: &str = "retry_parent_uuid";
pub(crate) const RETRY_CHILD: &str = "retry_child_uuid";

/// The current time as a [`Timestamp`].
pub fn now() -> Timestamp {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Where a task is in its life.
///
/// `New → Process → Success | Error | Cancel`. `Retry` marks an attempt that
/// failed and was replaced by a new attempt (see the retry feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Enqueued, not yet taken by a worker.
    New,
    /// Taken by a worker and running.
    Process,
    /// Finished with a result.
    Success,
    /// Finished with an error.
    Error,
    /// Cancelled before or while running.
    Cancel,
    /// Failed and handed over to a new attempt.
    Retry,
}

impl TaskStatus {
    /// `true` for the statuses a task never leaves: success, error and cancel.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Error | Self::Cancel)
    }

    /// `true` once a run has ended: a final status, or `retry` (the run
    /// failed and a new attempt took over). Waiting stops at these.
    pub const fn is_done(self) -> bool {
        self.is_final() || matches!(self, Self::Retry)
    }

    /// The lowercase name stored in backends (`"new"`, `"process"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Process => "process",
            Self::Success => "success",
            Self::Error => "error",
            Self::Cancel => "cancel",
            Self::Retry => "retry",
        }
    }

    /// The status named `s` as [`as_str`](Self::as_str) writes it (read by
    /// the server backends' codecs).
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn parse(s: &str) -> Option<Self> {
        [Self::New, Self::Process, Self::Success, Self::Error, Self::Cancel, Self::Retry]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a client asks for when it enqueues a task, before the broker gives it an id.
///
/// This is the value `qtasks_add_task_before_broker` handlers may replace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// Name of the task to run.
    pub task_name: Name,
    /// The queue it goes to ([`DEFAULT_QUEUE`] unless the task or the
    /// enqueue names another).
    #[serde(default = "default_queue")]
    pub queue: Name,
    /// Lower runs first.
    pub priority: i64,
    /// Arguments as JSON: an array (positional) or an object (by parameter name).
    pub args: Value,
    /// Extra fields stored with the task's status.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// The value of the task's concurrency key (`#[task(concurrency_key = …)]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_key: Option<String>,
    /// The task's unique key and window (`#[task(unique)]`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<Unique>,
}

impl NewTask {
    /// A request for `task_name` with `args`, priority 0, in the default
    /// queue, without extra fields or keys.
    pub fn new(task_name: impl Into<Name>, args: Value) -> Self {
        Self {
            task_name: task_name.into(),
            queue: default_queue(),
            priority: 0,
            args,
            extra: Map::new(),
            limit_key: None,
            unique: None,
        }
    }
}

/// A task's unique key: while a task with the same key is queued or
/// running, and for `window` seconds after it finished, enqueueing another
/// gives that task instead of a new one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unique {
    /// The key (the task's name and the arguments it covers).
    pub key: String,
    /// Seconds after the task finished during which the key still holds.
    pub window: f64,
}

/// The queue of a task that names none (re-exported as
/// [`qtasks::DEFAULT_QUEUE`](crate::DEFAULT_QUEUE)).
pub const DEFAULT_QUEUE: &str = "default";

fn default_queue() -> Name {
    Name::new_static(DEFAULT_QUEUE)
}

/// A task as it sits in the queue: what a worker needs to run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    /// The task's id.
    pub uuid: Uuid,
    /// Name of the task to run.
    pub task_name: Name,
    /// The queue it was taken from.
    #[serde(default = "default_queue")]
    pub queue: Name,
    /// Lower runs first.
    pub priority: i64,
    /// Arguments as JSON: an array (positional) or an object (by parameter name).
    pub args: Value,
    /// When the task was enqueued.
    pub created_at: Timestamp,
    /// 1 for the first run.
    #[serde(default = "one")]
    pub attempt: u32,
    /// Extra fields of the task's record, kept when a worker writes it.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// The value of the task's concurrency key, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_key: Option<String>,
}

impl TaskMessage {
    /// The W3C traceparent of the span that enqueued the task, if it
    /// carries one (its extra field [`traceparent`](crate::trace::TRACEPARENT);
    /// see [`trace`](crate::trace)).
    pub fn traceparent(&self) -> Option<&str> {
        crate::trace::traceparent(&self.extra)
    }

    /// The W3C tracestate that travels with the traceparent, if any.
    pub fn tracestate(&self) -> Option<&str> {
        crate::trace::tracestate(&self.extra)
    }
}

fn one() -> u32 {
    1
}

/// A field that is present is `Some`, even when it is `null` (serde's
/// default reads a present `null` as `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The stored record of a task: its status, result or error, and timestamps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's id.
    pub uuid: Uuid,
    /// Name of the task.
    pub task_name: Name,
    /// Lower runs first.
    pub priority: i64,
    /// Arguments as enqueued.
    pub args: Value,
    /// Current status.
    pub status: TaskStatus,
    /// When the task was enqueued.
    pub created_at: Timestamp,
    /// When the status last changed.
    pub updated_at: Timestamp,
    /// The task's result (JSON) when the status is `success`; a task that
    /// returns `()` has `Some(Value::Null)`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub result: Option<Value>,
    /// Why the task failed (status `error`) or was cancelled (status `cancel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// 1 for the first run.
    #[serde(default = "one")]
    pub attempt: u32,
    /// Extra fields attached by the client or by plugins.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
    /// The queue it went to.
    #[serde(default = "default_queue")]
    pub queue: Name,
    /// The value of the task's concurrency key, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_key: Option<String>,
    /// The task's unique key, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<Unique>,
    /// The worker that ran the task, as its
    /// [`WorkerInfo::id`](crate::client::WorkerInfo::id): set by the worker
    /// when it starts the run, so the final record names it. `None` before
    /// a worker started it, and in records written by an older qtasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<Name>,
    /// When the run of this attempt began (the worker started it); `None`
    /// as [`worker`](Self::worker) is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
}

impl TaskRecord {
    /// A `new` record for a task about to be enqueued.
    pub fn new(uuid: Uuid, request: NewTask) -> Self {
        let now = now();
        Self {
            uuid,
            task_name: request.task_name,
            priority: request.priority,
            args: request.args,
            status: TaskStatus::New,
            created_at: now,
            updated_at: now,
            result: None,
            error: None,
            attempt: 1,
            extra: request.extra,
            queue: request.queue,
            limit_key: request.limit_key,
            unique: request.unique,
            worker: None,
            started_at: None,
        }
    }

    /// The queue entry for this record.
    pub fn message(&self) -> TaskMessage {
        TaskMessage {
            uuid: self.uuid,
            task_name: self.task_name.clone(),
            priority: self.priority,
            args: self.args.clone(),
            created_at: self.created_at,
            attempt: self.attempt,
            extra: self.extra.clone(),
            queue: self.queue.clone(),
            limit_key: self.limit_key.clone(),
        }
    }

    /// A record for a message a worker took, with the given status.
    pub fn from_message(message: &TaskMessage, status: TaskStatus) -> Self {
        Self::from_message_at(message, status, now())
    }

    /// [`from_message`](Self::from_message), updated at `at`.
    pub(crate) fn from_message_at(message: &TaskMessage, status: TaskStatus, at: Timestamp) -> Self {
        Self {
            uuid: message.uuid,
            task_name: message.task_name.clone(),
            priority: message.priority,
            args: message.args.clone(),
            status,
            created_at: message.created_at,
            updated_at: at,
            result: None,
            error: None,
            attempt: message.attempt,
            extra: message.extra.clone(),
            queue: message.queue.clone(),
            limit_key: message.limit_key.clone(),
            unique: None,
            worker: None,
            started_at: None,
        }
    }

    /// The W3C traceparent of the span that enqueued the task, if it
    /// carries one (its extra field [`traceparent`](crate::trace::TRACEPARENT);
    /// see [`trace`](crate::trace)).
    pub fn traceparent(&self) -> Option<&str> {
        crate::trace::traceparent(&self.extra)
    }

    /// The W3C tracestate that travels with the traceparent, if any.
    pub fn tracestate(&self) -> Option<&str> {
        crate::trace::tracestate(&self.extra)
    }

    /// The new attempt that replaced this one, for a `retry` record (its
    /// `extra.retry_child_uuid`).
    pub fn retry_child(&self) -> Option<Uuid> {
        self.extra.get(RETRY_CHILD)?.as_str()?.parse().ok()
    }

    /// Decodes the JSON result into `T`.
    ///
    /// Returns `None` when the task has no result (it is not `success`).
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.result.clone().map(serde_json::from_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_without_a_worker_decode_and_none_is_not_written() {
        let old = json!({"uuid": Uuid::nil(), "task_name": "t", "priority": 0, "args": [], "status": "success",
                         "created_at": 1.0, "updated_at": 2.0});
        let record: TaskRecord = serde_json::from_value(old).unwrap();
        assert_eq!((&record.worker, record.started_at), (&None, None));
        let text = serde_json::to_string(&record).unwrap();
        assert!(!text.contains("worker") && !text.contains("started_at"), "{text}");
    }
}
