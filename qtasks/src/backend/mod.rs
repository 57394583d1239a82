//! Backends: where the queue and the task records live.
//!
//! [`Backend`] is one trait for the broker side (queue) and the storage side
//! (records) of a backend, so the runtime fires the same triggers around
//! every backend. [`MemoryBackend`] needs no server.
//! `RedisBackend` (feature `redis`) keeps them in a Redis server.

mod any;
mod memory;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::RedisBackend;
pub use any::AnyBackend;
pub use memory::MemoryBackend;

use crate::model::{Task, TaskMessage};
use serde_json::{Map, Value};
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;

/// An error from a backend: the server could not be reached or answered
/// something unexpected.
#[derive(Debug, thiserror::Error)]
#[error("{backend} backend: {message}")]
pub struct BackendError {
    /// Which backend failed (`"memory"`, `"redis"`…).
    pub backend: &'static str,
    /// What went wrong.
    pub message: String,
}

/// The queue and the task records of an app.
///
/// Contract every backend meets (the conformance suite checks it):
/// - [`fetch`](Backend::fetch) returns tasks by priority (lower first), then
///   in enqueue order, and waits without polling while the queue is empty;
/// - [`wait`](Backend::wait) is notified when a task reaches a final status;
/// - a record's status only moves forward (`new → process → final`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a qtasks backend",
    note = "use `qtasks::MemoryBackend`, or a backend from a qtasks backend feature"
)]
pub trait Backend: Send + Sync + 'static {
    /// A short name for banners and errors (`"memory"`, `"redis"`).
    fn kind(&self) -> &'static str;

    /// Stores a `new` record and queues its task.
    fn enqueue(&self, task: &Task) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Reads a record.
    fn get(&self, uuid: Uuid) -> impl Future<Output = Result<Option<Task>, BackendError>> + Send;

    /// Reads every record.
    fn get_all(&self) -> impl Future<Output = Result<Vec<Task>, BackendError>> + Send;

    /// Waits until the task reaches a final status and returns its record;
    /// `Ok(None)` if the timeout passes first or the task does not exist.
    fn wait(&self, uuid: Uuid, timeout: Duration) -> impl Future<Output = Result<Option<Task>, BackendError>> + Send;

    /// Moves up to `max` queued tasks into `out`, waiting until at least one
    /// is available, and marks their records `process`. Cancel-safe: if the
    /// future is dropped, no task is lost.
    fn fetch(&self, max: usize, out: &mut Vec<TaskMessage>) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Writes a record of a task a worker holds: the `process` record, when
    /// a plugin replaced it (`worker_execute_before`, `broker_update`,
    /// `storage_update`); otherwise `fetch` has marked it already.
    fn update(&self, task: &Task) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// How often a worker should renew the lease of a task it runs, for
    /// backends whose tasks go back to the queue when a lease expires
    /// (`None`, the default: no leases).
    fn lease_renewal(&self) -> Option<Duration> {
        None
    }

    /// Renews the lease of a task this worker runs (see
    /// [`lease_renewal`](Backend::lease_renewal)).
    fn extend_lease(&self, uuid: Uuid) -> impl Future<Output = Result<(), BackendError>> + Send {
        let _ = uuid;
        std::future::ready(Ok(()))
    }

    /// Writes a final status, releases the task and wakes its waiters.
    fn finish(&self, task: &Task) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Removes every queued task, record and shared setting of the app.
    fn flush(&self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Writes a shared setting (QTasks's global config) in group `name`;
    /// with a `ttl` it disappears unless written again in time. Workers
    /// register themselves this way, in group `"workers"`.
    fn config_set(
        &self,
        name: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Reads a shared setting.
    fn config_get(&self, name: &str, key: &str) -> impl Future<Output = Result<Option<Value>, BackendError>> + Send;

    /// Reads every live setting of group `name`.
    fn config_get_all(&self, name: &str) -> impl Future<Output = Result<Map<String, Value>, BackendError>> + Send;

    /// Removes a shared setting.
    fn config_delete(&self, name: &str, key: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
}
