//! The in-memory backend: one process, no server.

use super::UuidMap;
use super::{Backend, BackendError, CancelOutcome, CancelRegistry, QueueStats, TaskCounts};
use crate::model::{TaskMessage, TaskRecord, TaskStatus};
use crate::task::CancelToken;
use serde_json::{Map, Value};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use uuid::Uuid;

const SHARDS: usize = 16;

/// How long finished records are kept unless set: a day, as on Redis.
const DEFAULT_RETENTION: Duration = Duration::from_secs(86_400);

/// The app of a backend used before [`for_app`](Backend::for_app).
const UNBOUND: &str = "default";

/// A queue and record store in this process's memory.
///
/// Tasks are ordered by priority (lower first), then by enqueue order.
/// Records live in 16 independently locked shards, each with its own
/// counters, so writers of different tasks rarely contend and finishing a
/// task takes no lock shared by all tasks; the queue itself is one lock
/// taken once per batch by workers. A queue entry is only a priority, a
/// place in line and an id: the message is read from the record when a
/// worker takes it, so a queued task is stored once. Cancelling a queued
/// task marks its record; its queue entry is dropped when it comes up.
///
/// Records of finished tasks expire after the retention (a day by default,
/// as on Redis; [`retention`](MemoryBackend::retention)): each write to a
/// shard and each [`stats`](Backend::stats) call drops the shard's expired
/// records, so a long-running process holds only the recent ones. Nothing
/// survives the process. Clones share the same data.
///
/// Like a Redis server, one `MemoryBackend` can hold several apps, each
/// with its own queue, records and settings:
/// [`for_app`](Backend::for_app) (which the app builder calls) picks the
/// app's.
#[derive(Clone)]
pub struct MemoryBackend {
    /// Every app's data, by app name, shared by all the clones.
    apps: Arc<Mutex<HashMap<String, Arc<Inner>>>>,
    /// This value's app, and its name.
    inner: Arc<Inner>,
    name: Arc<str>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        let inner = Arc::new(Inner::new(Some(DEFAULT_RETENTION)));
        let apps = HashMap::from([(UNBOUND.to_owned(), Arc::clone(&inner))]);
        Self { apps: Arc::new(Mutex::new(apps)), inner, name: UNBOUND.into() }
    }
}

struct Inner {
    queue: Mutex<Queue>,
    queued: Notify,
    /// Tasks in the queue (or delayed) that are still `new`: the queue's
    /// entries minus those cancelled or released meanwhile.
    live: AtomicU64,
    shards: [Mutex<Shard>; SHARDS],
    config: Mutex<HashMap<(String, String), Setting>>,
    claims: Mutex<HashMap<String, Instant>>,
    cancels: CancelRegistry,
    /// How long finished records are kept, as nanoseconds (0: for ever).
    retention_nanos: AtomicU64,
}

impl Inner {
    fn new(retention: Option<Duration>) -> Self {
        Self {
            queue: Mutex::default(),
            queued: Notify::new(),
            live: AtomicU64::new(0),
            shards: Default::default(),
            config: Mutex::default(),
            claims: Mutex::default(),
            cancels: CancelRegistry::default(),
            retention_nanos: AtomicU64::new(retention.map_or(0, nanos)),
        }
    }

    fn retention(&self) -> Option<Duration> {
        match self.retention_nanos.load(AtomicOrdering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// One shard of records, with the counters of the runs that ended in it.
#[derive(Default)]
struct Shard {
    entries: UuidMap<Entry>,
    counts: BTreeMap<String, TaskCounts>,
    in_flight: u64,
    /// Finished records in the order they expire (the retention is the same
    /// for all, so finishing order is expiry order).
    expiry: VecDeque<(Instant, Uuid)>,
}

impl Shard {
    /// Counts a run of `task` that ended with `status` (the name is copied
    /// only the first time).
    fn count(&mut self, task: &str, status: TaskStatus) {
        match self.counts.get_mut(task) {
            Some(counts) => counts.add(status),
            None => self.counts.entry(task.to_owned()).or_default().add(status),
        }
    }

    /// Drops the records whose retention has passed, and gives back memory
    /// once most of it is unused.
    fn purge(&mut self, now: Instant) {
        let before = self.entries.len();
        while let Some(&(at, uuid)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            if self.entries.get(&uuid).is_some_and(|e| e.task.status.is_done()) {
                self.entries.remove(&uuid);
            }
        }
        if self.entries.len() < before
            && self.entries.capacity() > 64
            && self.entries.len() < self.entries.capacity() / 4
        {
            self.entries.shrink_to_fit();
        }
        if self.expiry.capacity() > 64 && self.expiry.len() < self.expiry.capacity() / 4 {
            self.expiry.shrink_to_fit();
        }
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Queued>,
    /// Tasks that may not run before their instant (retries with a backoff).
    delayed: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
}

/// A delayed task, ordered by when it is due, then by enqueue order.
struct Delayed {
    due: Instant,
    entry: Queued,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> Ordering {
        self.due.cmp(&other.due).then_with(|| self.entry.seq.cmp(&other.entry.seq))
    }
}

impl Queue {
    /// Moves the delayed tasks that are due into the queue; returns when
    /// the next one is due.
    fn promote(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse(first)) = self.delayed.peek() {
            if first.due > now {
                return Some(first.due);
            }
            let Some(Reverse(d)) = self.delayed.pop() else { break };
            self.heap.push(d.entry);
        }
        None
    }

    /// Gives back memory once most of it is unused.
    fn shrink(&mut self) {
        if self.heap.capacity() > 64 && self.heap.len() < self.heap.capacity() / 4 {
            self.heap.shrink_to_fit();
        }
    }
}

/// A place in line: the task's record holds the rest.
#[derive(Clone, Copy)]
struct Queued {
    priority: i64,
    seq: u64,
    uuid: Uuid,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // BinaryHeap is a max-heap: the "greatest" entry is the lowest priority
    // value, then the oldest.
    fn cmp(&self, other: &Self) -> Ordering {
        other.priority.cmp(&self.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A shared setting and when it expires.
type Setting = (Value, Option<Instant>);

struct Entry {
    task: TaskRecord,
    /// Its place in line while it is queued (`new`): a queue entry with
    /// another `seq` is stale (the task was released and queued again).
    seq: u64,
    // Created only when someone waits on this task.
    finished: Option<Arc<Notify>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data
    // half-written (every critical section is a single insert or pop).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long records of finished tasks are kept (1 day by default, as on
    /// Redis); `None` keeps them until [`flush`](crate::Backend::flush). For
    /// this app, and the apps later scoped from this value.
    pub fn retention(self, retention: Option<Duration>) -> Self {
        self.inner.retention_nanos.store(retention.map_or(0, nanos), AtomicOrdering::Relaxed);
        self
    }

    /// The data of the app called `app`, made empty the first time.
    fn app(&self, app: &str) -> Self {
        let retention = self.inner.retention();
        let inner =
            Arc::clone(lock(&self.apps).entry(app.to_owned()).or_insert_with(|| Arc::new(Inner::new(retention))));
        Self { apps: Arc::clone(&self.apps), inner, name: app.into() }
    }

    /// How many tasks are queued and not yet taken (delayed retries included).
    pub fn queued(&self) -> usize {
        usize::try_from(self.inner.live.load(AtomicOrdering::Acquire)).unwrap_or(usize::MAX)
    }

    fn shard(&self, uuid: &Uuid) -> &Mutex<Shard> {
        let i = (uuid.as_u128() as usize) % SHARDS;
        &self.inner.shards[i]
    }

    /// Writes a record of a task that exists. With `count`, a run that ends
    /// here is counted in [`stats`](Backend::stats) before its waiters
    /// wake, so a waiter reading the stats next sees it.
    fn store(&self, task: &TaskRecord, count: bool) {
        let mut shard = lock(self.shard(&task.uuid));
        let now = Instant::now();
        shard.purge(now);
        // A record written without being enqueued first (flushed meanwhile,
        // or a backend used directly) is stored as given.
        let mut fresh = false;
        let entry = shard.entries.entry(task.uuid).or_insert_with(|| {
            fresh = true;
            Entry { task: task.clone(), seq: 0, finished: None }
        });
        // A status only moves forward: a late write never undoes an end.
        if entry.task.status.is_done() && !fresh {
            return;
        }
        let previous = entry.task.status;
        entry.task = task.clone();
        let finished = task.status.is_done().then(|| entry.finished.take()).flatten();
        if count {
            if previous == TaskStatus::Process {
                shard.in_flight = shard.in_flight.saturating_sub(1);
            }
            shard.count(&task.task_name, task.status);
        }
        if task.status.is_done()
            && let Some(retention) = self.inner.retention()
        {
            let at = now.checked_add(retention).unwrap_or(now + Duration::from_secs(100 * 365 * 86_400));
            shard.expiry.push_back((at, task.uuid));
        }
        drop(shard);
        if let Some(n) = finished {
            n.notify_waiters();
        }
    }

    /// Stores a new record and queues it; `false` if the id is taken.
    fn queue(&self, task: &TaskRecord, delay: Option<Duration>) -> bool {
        let seq = {
            let mut q = lock(&self.inner.queue);
            q.seq += 1;
            q.seq
        };
        {
            let mut shard = lock(self.shard(&task.uuid));
            shard.purge(Instant::now());
            if shard.entries.contains_key(&task.uuid) {
                return false;
            }
            shard.entries.insert(task.uuid, Entry { task: task.clone(), seq, finished: None });
        }
        self.inner.live.fetch_add(1, AtomicOrdering::AcqRel);
        self.push(Queued { priority: task.priority, seq, uuid: task.uuid }, delay);
        true
    }

    fn push(&self, entry: Queued, delay: Option<Duration>) {
        {
            let mut q = lock(&self.inner.queue);
            match delay {
                Some(delay) => {
                    let now = Instant::now();
                    // A delay too large to add is a century: never, in practice.
                    let due = now.checked_add(delay).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
                    q.delayed.push(Reverse(Delayed { due, entry }))
                }
                None => q.heap.push(entry),
            }
        }
        self.inner.queued.notify_one();
    }

    /// Marks a taken entry `process` and gives its message; `None` for a
    /// stale entry (the task was cancelled, or released and queued again).
    fn take(&self, queued: Queued, now: f64) -> Option<TaskMessage> {
        let mut shard = lock(self.shard(&queued.uuid));
        let entry = shard.entries.get_mut(&queued.uuid)?;
        if entry.seq != queued.seq || entry.task.status != TaskStatus::New {
            return None;
        }
        entry.task.status = TaskStatus::Process;
        entry.task.updated_at = now;
        let message = entry.task.message();
        shard.in_flight += 1;
        Some(message)
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn for_app(&self, app: &str) -> Self {
        self.app(app)
    }

    fn app_name(&self) -> &str {
        &self.name
    }

    async fn enqueue(&self, task: &TaskRecord) -> Result<bool, BackendError> {
        Ok(self.queue(task, None))
    }

    async fn enqueue_delayed(&self, task: &TaskRecord, delay: Duration) -> Result<bool, BackendError> {
        Ok(self.queue(task, Some(delay)))
    }

    async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<CancelOutcome, BackendError> {
        let finished = {
            let mut shard = lock(self.shard(&uuid));
            let Some(entry) = shard.entries.get_mut(&uuid) else { return Ok(CancelOutcome::NotFound) };
            match entry.task.status {
                TaskStatus::New => {
                    // Its queue entry is dropped when it comes up (no scan).
                    entry.task.status = TaskStatus::Cancel;
                    entry.task.error = Some(reason.to_owned());
                    entry.task.updated_at = crate::model::now();
                    let (name, finished) = (entry.task.task_name.clone(), entry.finished.take());
                    shard.count(&name, TaskStatus::Cancel);
                    if let Some(retention) = self.inner.retention() {
                        shard.expiry.push_back((Instant::now() + retention, uuid));
                    }
                    self.inner.live.fetch_sub(1, AtomicOrdering::AcqRel);
                    finished
                }
                TaskStatus::Process => {
                    drop(shard);
                    self.inner.cancels.signal(uuid, reason);
                    return Ok(CancelOutcome::Requested);
                }
                done => return Ok(CancelOutcome::Finished(done)),
            }
        };
        // Waiters wake once the queue count and the counters agree with the record.
        if let Some(n) = finished {
            n.notify_waiters();
        }
        Ok(CancelOutcome::Cancelled)
    }

    fn watch_cancel(&self, uuid: Uuid, token: &CancelToken) {
        self.inner.cancels.watch(uuid, token);
    }

    fn unwatch_cancel(&self, uuid: Uuid) {
        self.inner.cancels.unwatch(uuid);
    }

    async fn stats(&self) -> Result<QueueStats, BackendError> {
        let queued = self.queued() as u64;
        let now = Instant::now();
        let mut stats = QueueStats { queued, in_flight: 0, tasks: BTreeMap::new() };
        for shard in &self.inner.shards {
            let mut shard = lock(shard);
            shard.purge(now);
            stats.in_flight += shard.in_flight;
            for (name, counts) in &shard.counts {
                stats.tasks.entry(name.clone()).or_default().merge(counts);
            }
        }
        Ok(stats)
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        Ok(lock(self.shard(&uuid)).entries.get(&uuid).map(|e| e.task.clone()))
    }

    async fn get_all(&self) -> Result<Vec<TaskRecord>, BackendError> {
        let mut all = Vec::new();
        for shard in &self.inner.shards {
            all.extend(lock(shard).entries.values().map(|e| e.task.clone()));
        }
        all.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
        Ok(all)
    }

    async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Option<TaskRecord>, BackendError> {
        let notify = {
            let mut shard = lock(self.shard(&uuid));
            let Some(entry) = shard.entries.get_mut(&uuid) else { return Ok(None) };
            if entry.task.status.is_done() {
                return Ok(Some(entry.task.clone()));
            }
            entry.finished.get_or_insert_with(Default::default).clone()
        };
        // `notified()` registers before we re-check, so a finish between the
        // check above and the await below is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(task) = self.get(uuid).await?.filter(|t| t.status.is_done()) {
            return Ok(Some(task));
        }
        match tokio::time::timeout(timeout, notified).await {
            Ok(()) => self.get(uuid).await,
            Err(_) => Ok(None),
        }
    }

    async fn fetch(&self, max: usize, out: &mut Vec<TaskMessage>) -> Result<(), BackendError> {
        let mut taken = Vec::with_capacity(max.min(256));
        loop {
            // Register interest before looking, so an enqueue in between wakes us.
            let notified = self.inner.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut q = lock(&self.inner.queue);
                let next_due = q.promote(Instant::now());
                while taken.len() < max {
                    match q.heap.pop() {
                        Some(entry) => taken.push(entry),
                        None => break,
                    }
                }
                q.shrink();
                if !q.heap.is_empty() {
                    // Others may be waiting too: pass the wake-up on.
                    self.inner.queued.notify_one();
                }
                next_due
            };
            if !taken.is_empty() {
                let now = crate::model::now();
                // Entries of tasks cancelled (or released) meanwhile are dropped here, unrun.
                for queued in taken.drain(..) {
                    if let Some(message) = self.take(queued, now) {
                        self.inner.live.fetch_sub(1, AtomicOrdering::AcqRel);
                        out.push(message);
                    }
                }
                if !out.is_empty() {
                    return Ok(());
                }
                continue;
            }
            match next_due {
                Some(due) => {
                    let _ = tokio::time::timeout_at(due.into(), notified).await;
                }
                None => notified.await,
            }
        }
    }

    async fn update(&self, task: &TaskRecord) -> Result<(), BackendError> {
        self.store(task, false);
        Ok(())
    }

    /// No leases: a task is held from its fetch until it finishes or is
    /// released, so it is still held exactly while its record is `process`.
    async fn extend_lease(&self, uuid: Uuid) -> Result<bool, BackendError> {
        let shard = lock(self.shard(&uuid));
        Ok(shard.entries.get(&uuid).is_some_and(|e| e.task.status == TaskStatus::Process))
    }

    async fn release(&self, uuid: Uuid) -> Result<bool, BackendError> {
        let entry = {
            let mut shard = lock(self.shard(&uuid));
            let Some(entry) = shard.entries.get_mut(&uuid) else { return Ok(false) };
            if entry.task.status != TaskStatus::Process {
                return Ok(false);
            }
            entry.task.status = TaskStatus::New;
            entry.task.updated_at = crate::model::now();
            let queued = Queued { priority: entry.task.priority, seq: entry.seq, uuid };
            shard.in_flight = shard.in_flight.saturating_sub(1);
            queued
        };
        self.inner.live.fetch_add(1, AtomicOrdering::AcqRel);
        // Back at its old place in line.
        self.push(entry, None);
        Ok(true)
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        let now = Instant::now();
        let mut claims = lock(&self.inner.claims);
        claims.retain(|_, until| *until > now);
        if claims.contains_key(key) {
            return Ok(false);
        }
        claims.insert(key.to_owned(), now.checked_add(ttl).unwrap_or(now + Duration::from_secs(100 * 365 * 86_400)));
        Ok(true)
    }

    async fn finish(&self, task: &TaskRecord) -> Result<(), BackendError> {
        self.store(task, true);
        Ok(())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        {
            let mut q = lock(&self.inner.queue);
            q.heap = BinaryHeap::new();
            q.delayed = BinaryHeap::new();
        }
        self.inner.live.store(0, AtomicOrdering::Release);
        for shard in &self.inner.shards {
            *lock(shard) = Shard::default();
        }
        lock(&self.inner.config).clear();
        lock(&self.inner.claims).clear();
        Ok(())
    }

    async fn config_set(
        &self,
        name: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        // A TTL too large to add never expires.
        let expires = ttl.and_then(|t| Instant::now().checked_add(t));
        lock(&self.inner.config).insert((name.to_owned(), key.to_owned()), (value.clone(), expires));
        Ok(())
    }

    async fn config_get(&self, name: &str, key: &str) -> Result<Option<Value>, BackendError> {
        let now = Instant::now();
        let config = lock(&self.inner.config);
        Ok(config
            .get(&(name.to_owned(), key.to_owned()))
            .filter(|(_, expires)| expires.is_none_or(|e| e > now))
            .map(|(v, _)| v.clone()))
    }

    async fn config_get_all(&self, name: &str) -> Result<Map<String, Value>, BackendError> {
        let now = Instant::now();
        let mut config = lock(&self.inner.config);
        config.retain(|_, (_, expires)| expires.is_none_or(|e| e > now));
        Ok(config.iter().filter(|((n, _), _)| n == name).map(|((_, k), (v, _))| (k.clone(), v.clone())).collect())
    }

    async fn config_delete(&self, name: &str, key: &str) -> Result<(), BackendError> {
        lock(&self.inner.config).remove(&(name.to_owned(), key.to_owned()));
        Ok(())
    }
}
