//! Backends: where the queue and the task records live.
//!
//! [`Backend`] is one trait for the broker side (queue) and the storage side
//! (records) of a backend, so the runtime fires the same triggers around
//! every backend. [`MemoryBackend`] needs no server.
//! `RedisBackend` (feature `redis`) keeps them in a Redis server;
//! `PostgresBackend` (feature `postgres`) in a PostgreSQL database, where a
//! task can be enqueued in the caller's own transaction.
//! `QtasksPyBackend` and `CeleryBackend` (feature `python`) speak the Redis
//! formats of Python QTasks and Celery, so Rust workers serve tasks the
//! real Python clients enqueue.
//!
//! A backend of another crate checks that it meets the contract of
//! [`Backend`] with the conformance suite, `qtasks::testing::conformance` (feature
//! `conformance`), which qtasks runs on both of its own backends.

mod any;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod batch;
mod cancel_registry;
mod listing;
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "python")]
mod python;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "postgres")]
pub use self::postgres::{AsPostgres, PostgresBackend, PostgresOptions};
#[cfg(feature = "python")]
pub use self::python::{CeleryBackend, QtasksPyBackend};
#[cfg(feature = "redis")]
pub use self::redis::RedisBackend;
pub use any::AnyBackend;
pub(crate) use cancel_registry::CancelRegistry;
pub use listing::{BadCursor, MAX_PAGE, TaskCursor, TaskPage, TaskQuery};
pub use memory::MemoryBackend;

use crate::BoxError;
use crate::model::{TaskMessage, TaskRecord, TaskStatus, Timestamp};
use crate::queue::{DEFAULT_QUEUE, Limits, QueueInfo};
use crate::task::CancelToken;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A `HashMap` keyed by task id, with `foldhash` instead of SipHash (which
/// ran five times per task in the memory backend). Seeded per map: on Redis
/// the ids may come from clients in other languages, not from qtasks.
pub(crate) type UuidMap<V> = std::collections::HashMap<Uuid, V, foldhash::fast::RandomState>;

/// The run of each task a server backend took and has not finished or
/// released (the fencing token its writes carry, with what else the backend
/// keeps of it), in shards: no lock is shared by every task.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) struct RunTable<V> {
    shards: [std::sync::Mutex<UuidMap<V>>; RunTable::<()>::SHARDS],
}

#[cfg(any(feature = "redis", feature = "postgres"))]
impl<V> Default for RunTable<V> {
    fn default() -> Self {
        Self { shards: Default::default() }
    }
}

#[cfg(any(feature = "redis", feature = "postgres"))]
impl<V: Clone> RunTable<V> {
    const SHARDS: usize = 16;

    fn shard(&self, uuid: &Uuid) -> std::sync::MutexGuard<'_, UuidMap<V>> {
        // Every critical section is a single insert, read or removal.
        self.shards[(uuid.as_u128() as usize) % Self::SHARDS].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the run of a task just taken.
    pub(crate) fn insert(&self, uuid: Uuid, run: V) {
        self.shard(&uuid).insert(uuid, run);
    }

    /// The run of `uuid`, if this backend took the task.
    pub(crate) fn get(&self, uuid: &Uuid) -> Option<V> {
        self.shard(uuid).get(uuid).cloned()
    }

    /// Forgets the run of `uuid` (finished or released), giving it back.
    pub(crate) fn remove(&self, uuid: &Uuid) -> Option<V> {
        self.shard(uuid).remove(uuid)
    }
}

/// An error from a backend: what it was doing, what kind of failure it was
/// and, when there is one, the underlying error as its
/// [`source`](std::error::Error::source) (for Redis a `redis::RedisError`,
/// for a record that does not decode a `serde_json::Error`).
///
/// Match on [`kind`](Self::kind) to tell a lost connection, which may pass
/// if retried, from a request that will fail again. `Display` reads
/// `"{backend} backend: {message}: {source}"`.
///
/// ```
/// use qtasks::backend::{BackendError, BackendErrorKind};
///
/// let json = serde_json::from_str::<u32>("not json").unwrap_err();
/// let error = BackendError::new("mine", BackendErrorKind::Decode, "reading task 7").with_source(json);
/// assert_eq!(error.kind(), BackendErrorKind::Decode);
/// assert!(error.to_string().starts_with("mine backend: reading task 7: "));
/// let source = std::error::Error::source(&error).unwrap();
/// assert!(source.downcast_ref::<serde_json::Error>().is_some());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct BackendError {
    /// Which backend failed (`"memory"`, `"redis"`…).
    pub backend: &'static str,
    /// What the backend was doing, or what was wrong with the request; the
    /// source's own text is not repeated here.
    pub message: String,
    kind: BackendErrorKind,
    source: Option<BoxError>,
}

/// What kind of failure a [`BackendError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The server could not be reached, the connection was lost, or it did
    /// not answer in time. Often passes if retried (the worker does).
    Connection,
    /// The server answered with an error: a command or a script failed.
    Server,
    /// A stored record or setting, or the server's reply, could not be
    /// decoded.
    Decode,
    /// The request was refused before it was sent: a record over the size
    /// limit, a URL that does not parse or names no backend, a value that
    /// cannot be encoded. It fails again if retried as is.
    InvalidRequest,
    /// Anything else.
    Other,
}

impl BackendError {
    /// An error of `backend` (its [`Backend::kind`]) of `kind`, described by
    /// `message`: what was being done, or what was wrong.
    pub fn new(backend: &'static str, kind: BackendErrorKind, message: impl Into<String>) -> Self {
        Self { backend, message: message.into(), kind, source: None }
    }

    /// The same error, caused by `source` (returned by
    /// [`Error::source`](std::error::Error::source) and shown after the message).
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }
}

// By hand rather than with `thiserror`: the source is optional, and shown
// after the message when there is one.
impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} backend: {}", self.backend, self.message)?;
        // Shown here too: most callers log only the top error.
        match &self.source {
            Some(source) => write!(f, ": {source}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// Runs `op` until it succeeds, fails with an error that is not a lost
/// connection (`lost` tells), or `within` has passed since the first try,
/// waiting with a doubling backoff in between: what a start step does so a
/// connection dropped at that moment does not stop a process.
pub(crate) async fn retry_while_lost<T, E, Fut>(
    within: Duration,
    lost: impl Fn(&E) -> bool,
    mut op: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + within;
    let mut backoff = Duration::from_millis(20);
    loop {
        match op().await {
            Err(e) if lost(&e) && tokio::time::Instant::now() + backoff < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            done => return done,
        }
    }
}

/// Where a [`Backend::fetch`] takes from, and the limits it holds.
#[derive(Clone, Debug, Default)]
pub struct Fetch {
    /// The queues, in the order to try them.
    pub queues: Vec<String>,
    /// The limits to hold, across every worker.
    pub limits: Arc<Limits>,
}

impl Fetch {
    /// From these queues, with no limit.
    pub fn queues<S: Into<String>>(queues: impl IntoIterator<Item = S>) -> Self {
        Self { queues: queues.into_iter().map(Into::into).collect(), limits: Arc::default() }
    }

    /// From the default queue only, with no limit.
    pub fn default_queue() -> Self {
        Self::queues([DEFAULT_QUEUE])
    }

    /// The same queues, holding `limits`.
    pub fn with_limits(mut self, limits: Arc<Limits>) -> Self {
        self.limits = limits;
        self
    }
}

/// What [`Backend::enqueue`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// The task was stored and queued.
    New,
    /// A task with the same id, or the same unique key, exists: nothing was
    /// written. Its id.
    Existing(Uuid),
}

/// What [`Backend::cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The task was queued: it is now `cancel` and no worker will run it.
    Cancelled,
    /// The task is running: its worker was asked to stop it; it ends
    /// `cancel` when it does (or when its lease expires, on backends with leases).
    Requested,
    /// The task had already ended with this status; nothing changed.
    Finished(TaskStatus),
    /// No task has this id.
    NotFound,
}

/// Counters of an app's queue, across every worker using the backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Tasks queued and not yet taken (retries waiting for their backoff included).
    pub queued: u64,
    /// Tasks taken by a worker and not finished.
    pub in_flight: u64,
    /// Per task name: how many runs ended with each status.
    pub tasks: BTreeMap<String, TaskCounts>,
}

/// How many runs of one task ended with each status (see [`QueueStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    /// Runs that ended `success`.
    pub success: u64,
    /// Runs that ended `error`.
    pub error: u64,
    /// Runs that failed and were retried (status `retry`).
    pub retry: u64,
    /// Tasks that ended `cancel`, queued or running.
    pub cancel: u64,
    /// Runs that started while another run of the same task held it, or
    /// had held it (its worker died or lost its lease): the runs that may
    /// have done the task's work twice.
    pub duplicates: u64,
}

impl TaskCounts {
    /// Counts one more task ending with `status` (other statuses are ignored).
    pub fn add(&mut self, status: TaskStatus) {
        match status {
            TaskStatus::Success => self.success += 1,
            TaskStatus::Error => self.error += 1,
            TaskStatus::Retry => self.retry += 1,
            TaskStatus::Cancel => self.cancel += 1,
            TaskStatus::New | TaskStatus::Process => {}
        }
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &Self) {
        self.success += other.success;
        self.error += other.error;
        self.retry += other.retry;
        self.cancel += other.cancel;
        self.duplicates += other.duplicates;
    }
}

/// How long backends keep their per-minute counts
/// ([`Backend::minute_counts`]) at least: an hour.
pub const MINUTES_KEPT: Duration = Duration::from_secs(3600);

/// How many runs ended in one minute with each status, across every
/// worker and client of the app (see [`Backend::minute_counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    /// The minute's start, in seconds since the Unix epoch (a multiple of 60).
    pub at: i64,
    /// Runs that ended `success`.
    pub success: u64,
    /// Runs that ended `error`.
    pub error: u64,
    /// Runs that failed and were retried (status `retry`).
    pub retry: u64,
    /// Tasks that ended `cancel`, queued or running.
    pub cancel: u64,
}

impl MinuteCount {
    /// No run yet in the minute that holds `t`.
    pub fn new(t: Timestamp) -> Self {
        Self { at: Self::minute_of(t), ..Self::default() }
    }

    /// The start of the minute that holds `t`, in seconds since the epoch.
    pub fn minute_of(t: Timestamp) -> i64 {
        (t / 60.0).floor() as i64 * 60
    }

    /// Counts `n` more runs ending with `status` (other statuses are ignored).
    pub fn add(&mut self, status: TaskStatus, n: u64) {
        match status {
            TaskStatus::Success => self.success += n,
            TaskStatus::Error => self.error += n,
            TaskStatus::Retry => self.retry += n,
            TaskStatus::Cancel => self.cancel += n,
            TaskStatus::New | TaskStatus::Process => {}
        }
    }

    /// Runs that ended, whatever their status.
    pub fn ended(&self) -> u64 {
        self.success + self.error + self.retry + self.cancel
    }
}

/// The queue and the task records of an app.
///
/// Contract every backend meets (the conformance suite checks it):
/// - [`fetch`](Backend::fetch) returns tasks by priority (lower first), then
///   in enqueue order, and waits without polling while the queue is empty;
/// - [`wait`](Backend::wait) is notified when a task reaches a final status;
/// - a record's status only moves forward (`new → process → final`);
/// - an app sees only its own tasks ([`for_app`](Backend::for_app)).
///
/// # Writing one
///
/// Implement every method; the async ones may be written `async fn`. Keep
/// a clone cheap (the runtime clones the backend into every worker), store
/// records as [`TaskRecord`] and queue entries as [`TaskMessage`] (JSON on
/// the wire, so clients in other processes and languages can read them),
/// and make `finish` write the final record, release the task, count it in
/// [`stats`](Backend::stats) and wake its waiters as one step. Then run the
/// public conformance suite in your crate's tests (feature `conformance`):
///
/// ```ignore
/// #[tokio::test(flavor = "multi_thread")]
/// async fn conforms() {
///     qtasks::testing::conformance::run_all(|lease| async move { MyBackend::new().lease(lease) })
///         .await
///         .unwrap();
/// }
/// ```
///
/// [`MemoryBackend`] (one process, about 500 lines) is the smallest complete
/// example to start from.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a qtasks backend",
    note = "use `qtasks::MemoryBackend`, or a backend from a qtasks backend feature"
)]
pub trait Backend: Send + Sync + 'static {
    /// A short name for banners and errors (`"memory"`, `"redis"`).
    fn kind(&self) -> &'static str;

    /// The same backend (sharing its connections) scoped to the app called
    /// `app`: every queue, record and setting it touches belongs to that
    /// app, and apps of other names on the same server never see them.
    ///
    /// [`Builder::build`](crate::Builder::build) calls it with the app's
    /// name, so an app is named in one place and its backend cannot
    /// disagree with it. Call it yourself only to use a backend without an
    /// app (as the conformance suite does); until then a backend serves the
    /// app called `default`.
    fn for_app(&self, app: &str) -> Self
    where
        Self: Sized;

    /// The name of the app this backend serves (see
    /// [`for_app`](Backend::for_app)).
    fn app_name(&self) -> &str;

    /// Stores a `new` record and queues its task in its queue
    /// ([`TaskRecord::queue`]), unless the task exists already: a task with
    /// the same id (an enqueue retried after an ambiguous error: the
    /// connection dropped before the answer), or a task with the same
    /// [`unique`](TaskRecord::unique) key that is not final or ended less
    /// than its window ago. Then nothing is written and it returns
    /// [`Enqueued::Existing`] with that task's id.
    fn enqueue(&self, task: &TaskRecord) -> impl Future<Output = Result<Enqueued, BackendError>> + Send;

    /// As [`enqueue`](Backend::enqueue), and no worker takes the task
    /// before `delay` has passed (countdowns, ETAs and retries with a
    /// backoff use this). The task waits in the backend, not in a worker.
    fn enqueue_delayed(
        &self,
        task: &TaskRecord,
        delay: Duration,
    ) -> impl Future<Output = Result<Enqueued, BackendError>> + Send;

    /// Enqueues many tasks in one go, each as [`enqueue`](Backend::enqueue)
    /// (a `Some` delay: as [`enqueue_delayed`](Backend::enqueue_delayed)),
    /// in order, and returns what happened to each, in the same order. A
    /// later task with the id or unique key of an earlier one in the batch
    /// is [`Enqueued::Existing`] of it.
    ///
    /// The default enqueues one after the other. Backends with round trips
    /// override it to write a batch in one (Redis: one script call).
    fn enqueue_many(
        &self,
        tasks: &[(TaskRecord, Option<Duration>)],
    ) -> impl Future<Output = Result<Vec<Enqueued>, BackendError>> + Send {
        async move {
            let mut done = Vec::with_capacity(tasks.len());
            for (task, delay) in tasks {
                done.push(match delay {
                    Some(delay) => self.enqueue_delayed(task, *delay).await?,
                    None => self.enqueue(task).await?,
                });
            }
            Ok(done)
        }
    }

    /// Cancels a task (see [`CancelOutcome`]). The decision is stored: a
    /// queued task is `cancel` at once and never runs, whichever worker
    /// takes its queue entry, also after a restart. Idempotent.
    fn cancel(&self, uuid: Uuid, reason: &str) -> impl Future<Output = Result<CancelOutcome, BackendError>> + Send;

    /// Called by a worker as it starts running a task: `token` fires when a
    /// client cancels that task. Cheap (no round trip).
    fn watch_cancel(&self, uuid: Uuid, token: &CancelToken);

    /// Called by a worker when a task it ran has finished.
    fn unwatch_cancel(&self, uuid: Uuid);

    /// The app's queue depth, tasks in flight and per-task counters.
    fn stats(&self) -> impl Future<Output = Result<QueueStats, BackendError>> + Send;

    /// How many runs ended per minute, by status, from the minute that
    /// holds `since` to now: oldest first, one [`MinuteCount`] per minute
    /// in which a run ended (quiet minutes may be left out). A run counts
    /// where [`stats`](Backend::stats) counts it (once, when
    /// [`finish`](Backend::finish) or [`cancel`](Backend::cancel) ends it),
    /// in the minute the backend stored it, by the backend's clock, so
    /// every worker and client of the app counts. Backends keep at least
    /// the last [`MINUTES_KEPT`]; for a `since` further back they give
    /// what they still have.
    ///
    /// `Ok(None)`, the default: the backend does not count per minute (the
    /// dashboard then charts the growth of [`stats`](Backend::stats) while
    /// it watches). The memory, Redis and Postgres backends count.
    fn minute_counts(
        &self,
        since: Timestamp,
    ) -> impl Future<Output = Result<Option<Vec<MinuteCount>>, BackendError>> + Send {
        let _ = since;
        std::future::ready(Ok(None))
    }

    /// Reads a record.
    fn get(&self, uuid: Uuid) -> impl Future<Output = Result<Option<TaskRecord>, BackendError>> + Send;

    /// Reads every record.
    fn get_all(&self) -> impl Future<Output = Result<Vec<TaskRecord>, BackendError>> + Send;

    /// One page of the app's records matching `query`, newest first
    /// (`created_at`, then uuid, descending), starting after
    /// [`query.after`](TaskQuery::after), at most
    /// [`page_size`](TaskQuery::page_size) records; the page's
    /// [`next`](TaskPage::next) is set when more records may match. What
    /// the dashboard's task table reads.
    ///
    /// A backend may bound the work of one call: then a page can hold
    /// fewer records than the page size, even none, and still have a
    /// `next` (Redis reads at most 10 000 index entries per call, so a
    /// filter that few tasks match ends pages early). Following `next`
    /// until it is `None` reaches every matching record.
    ///
    /// The default reads every record ([`get_all`](Backend::get_all)) and
    /// cuts the page in memory ([`TaskQuery::page_of`]): right, but a full
    /// read per page. Backends with an index override it (Postgres reads
    /// one keyset page of its `tasks` table along an index; Redis walks
    /// its per-status sorted sets of tasks by enqueue time).
    fn list_tasks(&self, query: &TaskQuery) -> impl Future<Output = Result<TaskPage, BackendError>> + Send {
        async move { Ok(query.page_of(self.get_all().await?)) }
    }

    /// Waits until the task reaches a final status, or `retry` (its run
    /// ended and a new attempt replaced it), and returns its record;
    /// `Ok(None)` if the timeout passes first or the task does not exist.
    fn wait(
        &self,
        uuid: Uuid,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<TaskRecord>, BackendError>> + Send;

    /// Moves up to `max` tasks from the queues of `from` into `out`, waiting
    /// until at least one can be taken, and marks their records `process`.
    ///
    /// Queues are tried in the order given: a later queue gives tasks only
    /// while the ones before it have none to give (empty, paused, or every
    /// task over its limits). Within a queue: priority, then enqueue order.
    /// A task over one of `from.limits` stays queued, at its place; a task
    /// that takes a concurrency slot holds it until it finishes, is
    /// released, or its lease expires. Waiting never polls: it is woken by
    /// an enqueue, a resumed queue, a freed slot, or the time the next
    /// delayed task or rate token is due. Cancel-safe: if the future is
    /// dropped, no task is lost.
    fn fetch(
        &self,
        from: &Fetch,
        max: usize,
        out: &mut Vec<TaskMessage>,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Pauses (`true`) or resumes a queue for every worker: paused, it gives
    /// no task to any fetch; enqueueing into it still works. Stored in the
    /// backend, so it holds for workers started later too.
    fn set_paused(&self, queue: &str, paused: bool) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// What the backend knows of these queues (every queue it has seen if
    /// `queues` is empty): depth, delayed, in flight, paused, the age of the
    /// oldest waiting task. The `limit` of each is left empty: limits are
    /// the app's, which fills them in.
    fn queues(&self, queues: &[String]) -> impl Future<Output = Result<Vec<QueueInfo>, BackendError>> + Send;

    /// Writes a record of a task a worker holds: the `process` record, when
    /// a plugin replaced it (`worker_execute_before`, `broker_update`,
    /// `storage_update`); otherwise `fetch` has marked it already.
    fn update(&self, task: &TaskRecord) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// How long a busy worker may wait for more of its slots to free
    /// before it fetches, so that one fetch takes many tasks (`None`, the
    /// default: fetch as soon as one slot is free). For backends whose
    /// every fetch costs a commit, where taking 30 tasks costs about what
    /// taking one does. A worker waits only while tasks run and fewer
    /// than half of its slots are free; an idle worker fetches at once.
    fn fetch_gather(&self) -> Option<Duration> {
        None
    }

    /// How often a worker should renew the lease of a task it runs, for
    /// backends whose tasks go back to the queue when a lease expires
    /// (`None`, the default: no leases).
    fn lease_renewal(&self) -> Option<Duration> {
        None
    }

    /// Renews the lease of a task this worker holds (see
    /// [`lease_renewal`](Backend::lease_renewal)); `false` if this worker
    /// no longer holds it (its lease expired and the task was handed to
    /// another worker, or it already finished). Backends without leases
    /// hold every task until it finishes.
    fn extend_lease(&self, uuid: Uuid) -> impl Future<Output = Result<bool, BackendError>> + Send {
        let _ = uuid;
        std::future::ready(Ok(true))
    }

    /// Puts a task this worker holds back in the queue, as it was before it
    /// was taken (same attempt, same place in line), for another worker to
    /// run: what a worker forced to stop does with its running tasks.
    /// `false` if this worker did not hold it.
    fn release(&self, uuid: Uuid) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Claims `key` for `ttl`, across every process using the backend:
    /// `true` for the first caller, `false` for every other until the claim
    /// expires. Schedules claim each tick with it, so N schedulers enqueue
    /// a tick once.
    fn claim(&self, key: &str, ttl: Duration) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Writes a final status (or `retry`), releases the task, wakes its
    /// waiters and counts it in [`stats`](Backend::stats).
    fn finish(&self, task: &TaskRecord) -> impl Future<Output = Result<(), BackendError>> + Send;

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
