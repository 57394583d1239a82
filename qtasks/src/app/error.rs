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
