//! Errors of the app, the client and the worker.

use crate::backend::BackendError;
use crate::dispatch::PluginStartError;
use crate::error::BoxError;

/// An error from building an app, enqueueing, reading or running a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A plugin's `start` failed; start-up stopped.
    #[error("plugin `{plugin}` failed to start: {source}")]
    PluginStart {
        /// The plugin's name.
        plugin: String,
        /// What its `start` returned.
        #[source]
        source: BoxError,
    },
    /// A task's dependency or state is not provided, or a per-worker
    /// dependency could not be opened; the worker did not start.
    #[error(transparent)]
    Dependency(#[from] crate::task::DependencyError),
    /// A worker was given a queue the app does not know (no task of it
    /// names the queue and the app does not declare it), or no queue.
    #[error(
        "unknown queue `{queue}`: the app knows {known:?} (tasks name their queue with #[task(queue = ..)]; declare others with Builder::queue)"
    )]
    UnknownQueue {
        /// The queue asked for.
        queue: String,
        /// The queues the app knows.
        known: Vec<String>,
    },
    /// A task's unique or concurrency key names an argument the enqueue
    /// does not give; nothing was enqueued.
    #[error("cannot enqueue task `{task}`: its {which} is the argument `{param}`, which the arguments do not give")]
    MissingKey {
        /// The task's name.
        task: String,
        /// `"unique key"` or `"concurrency key"`.
        which: &'static str,
        /// The argument it needs.
        param: String,
    },
    /// The traceparent a call set (see [`trace`](crate::trace)) is not a
    /// W3C traceparent; nothing was enqueued.
    #[error(
        "cannot enqueue task `{task}`: its traceparent {value} is not a W3C traceparent (00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)"
    )]
    InvalidTraceparent {
        /// The task's name.
        task: String,
        /// The value given, as JSON.
        value: String,
    },
    /// The arguments could not be encoded as JSON.
    #[error("could not encode the arguments of task `{task}` as JSON: {source}")]
    EncodeArgs {
        /// The task's name.
        task: String,
        /// The serializer's error.
        #[source]
        source: std::sync::Arc<serde_json::Error>,
    },
}

impl Error {
    /// The key of task `task` cannot be made from its arguments.
    pub(crate) fn missing_key(task: &str, which: &'static str, param: &str) -> Self {
        Self::MissingKey { task: task.to_owned(), which, param: param.to_owned() }
    }
}

/// Why waiting for a typed task result did not give a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed before the task finished; it may still finish.
    #[error("timed out waiting for the task's result")]
    Timeout,
    /// The task ended `error`.
    #[error("task failed: {0}")]
    Failed(String),
    /// The task ended `cancel`.
    #[error("task was cancelled: {0}")]
    Cancelled(String),
    /// The result could not be decoded into the task's output type.
    #[error("could not decode the task's result: {0}")]
    Decode(#[source] serde_json::Error),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<PluginStartError> for Error {
    fn from(e: PluginStartError) -> Self {
        Self::PluginStart { plugin: e.plugin, source: e.source }
    }
}
