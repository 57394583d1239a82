//! The in-memory backend: one process, no server.

use super::UuidMap;
use super::{Backend, BackendError, CancelOutcome, CancelRegistry, QueueStats, TaskCounts};
use crate::model::{TaskMessage, TaskRecord, TaskStatus};
use crate::task::CancelToken;
use serde_json::{Map, Value};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use uuid::Uuid;

const SHARDS: usize = 16;

/// A queue and record store in this process's memory.
///
/// Tasks are ordered by priority (lower first), then by enqueue order.
/// Records live in 16 independently locked shards, so writers of different
/// tasks rarely contend; the queue itself is one lock taken once per batch
/// by workers. Nothing survives the process. Clones share the same data.
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
        let inner = Arc::<Inner>::default();
        let apps = HashMap::from([(UNBOUND.to_owned(), Arc::clone(&inner))]);
        Self { apps: Arc::new(Mutex::new(apps)), inner, name: UNBOUND.into() }
    }
}

/// The app of a backend used before [`for_app`](Backend::for_app).
const UNBOUND: &str = "default";

#[derive(Default)]
struct Inner {
    queue: Mutex<Queue>,
    queued: Notify,
    shards: [Mutex<UuidMap<Entry>>; SHARDS],
    config: Mutex<HashMap<(String, String), Setting>>,
    cancels: CancelRegistry,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    in_flight: u64,
    tasks: BTreeMap<String, TaskCounts>,
}

impl Counts {
    /// Counts a run of `task` that ended with `status` (the name is copied
    /// only the first time).
    fn add(&mut self, task: &str, status: TaskStatus) {
        match self.tasks.get_mut(task) {
            Some(counts) => counts.add(status),
            None => self.tasks.entry(task.to_owned()).or_default().add(status),
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
    seq: u64,
    message: TaskMessage,
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
        self.due.cmp(&other.due).then_with(|| self.seq.cmp(&other.seq))
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
            self.heap.push(Queued { priority: d.message.priority, seq: d.seq, message: d.message });
        }
        None
    }
}

struct Queued {
    priority: i64,
    seq: u64,
    message: TaskMessage,
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

    /// The data of the app called `app`, made empty the first time.
    fn app(&self, app: &str) -> Self {
        let inner = Arc::clone(lock(&self.apps).entry(app.to_owned()).or_default());
        Self { apps: Arc::clone(&self.apps), inner, name: app.into() }
    }

    /// How many tasks are queued and not yet taken (delayed retries included).
    pub fn queued(&self) -> usize {
        let q = lock(&self.inner.queue);
        q.heap.len() + q.delayed.len()
    }

    fn shard(&self, uuid: &Uuid) -> &Mutex<UuidMap<Entry>> {
        let i = (uuid.as_u128() as usize) % SHARDS;
        &self.inner.shards[i]
    }

    /// Writes a record. With `count`, a run that ends here is counted in
    /// [`stats`](Backend::stats) before its waiters wake, so a waiter reading
    /// the stats next sees it.
    fn store(&self, task: &TaskRecord, count: bool) {
        let mut shard = lock(self.shard(&task.uuid));
        match shard.get_mut(&task.uuid) {
            // A status only moves forward: a late write never undoes an end.
            Some(entry) if entry.task.status.is_done() => {}
            Some(entry) => {
                let previous = entry.task.status;
                entry.task = task.clone();
                if count {
                    let mut counts = lock(&self.inner.counts);
                    if previous == TaskStatus::Process {
                        counts.in_flight = counts.in_flight.saturating_sub(1);
                    }
                    if !previous.is_done() {
                        counts.add(&task.task_name, task.status);
                    }
                }
                if task.status.is_done()
                    && let Some(n) = entry.finished.take()
                {
                    n.notify_waiters();
                }
            }
            None => {
                if count {
                    lock(&self.inner.counts).add(&task.task_name, task.status);
                }
                shard.insert(task.uuid, Entry { task: task.clone(), finished: None });
            }
        }
    }

    fn queue(&self, task: &TaskRecord, delay: Option<Duration>) {
        self.store(task, false);
        let message = task.message();
        {
            let mut q = lock(&self.inner.queue);
            q.seq += 1;
            let seq = q.seq;
            match delay {
                Some(delay) => {
                    let now = Instant::now();
                    // A delay too large to add is a century: never, in practice.
                    let due = now.checked_add(delay).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
                    q.delayed.push(Reverse(Delayed { due, seq, message }))
                }
                None => q.heap.push(Queued { priority: message.priority, seq, message }),
            }
        }
        self.inner.queued.notify_one();
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

    async fn enqueue(&self, task: &TaskRecord) -> Result<(), BackendError> {
        self.queue(task, None);
        Ok(())
    }

    async fn enqueue_delayed(&self, task: &TaskRecord, delay: Duration) -> Result<(), BackendError> {
        self.queue(task, Some(delay));
        Ok(())
    }

    async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<CancelOutcome, BackendError> {
        let cancelled = {
            let mut shard = lock(self.shard(&uuid));
            let Some(entry) = shard.get_mut(&uuid) else { return Ok(CancelOutcome::NotFound) };
            match entry.task.status {
                TaskStatus::New => {
                    entry.task.status = TaskStatus::Cancel;
                    entry.task.error = Some(reason.to_owned());
                    entry.task.updated_at = crate::model::now();
                    Some((entry.task.task_name.clone(), entry.finished.take()))
                }
                TaskStatus::Process => None,
                done => return Ok(CancelOutcome::Finished(done)),
            }
        };
        match cancelled {
            Some((name, finished)) => {
                {
                    let mut q = lock(&self.inner.queue);
                    q.heap.retain(|e| e.message.uuid != uuid);
                    q.delayed.retain(|Reverse(d)| d.message.uuid != uuid);
                }
                lock(&self.inner.counts).tasks.entry(name).or_default().add(TaskStatus::Cancel);
                // Waiters wake once the queue and the counters agree with the record.
                if let Some(n) = finished {
                    n.notify_waiters();
                }
                Ok(CancelOutcome::Cancelled)
            }
            None => {
                self.inner.cancels.signal(uuid, reason);
                Ok(CancelOutcome::Requested)
            }
        }
    }

    fn watch_cancel(&self, uuid: Uuid, token: &CancelToken) {
        self.inner.cancels.watch(uuid, token);
    }

    fn unwatch_cancel(&self, uuid: Uuid) {
        self.inner.cancels.unwatch(uuid);
    }

    async fn stats(&self) -> Result<QueueStats, BackendError> {
        let queued = self.queued() as u64;
        let counts = lock(&self.inner.counts);
        Ok(QueueStats { queued, in_flight: counts.in_flight, tasks: counts.tasks.clone() })
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        Ok(lock(self.shard(&uuid)).get(&uuid).map(|e| e.task.clone()))
    }

    async fn get_all(&self) -> Result<Vec<TaskRecord>, BackendError> {
        let mut all = Vec::new();
        for shard in &self.inner.shards {
            all.extend(lock(shard).values().map(|e| e.task.clone()));
        }
        all.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
        Ok(all)
    }

    async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Option<TaskRecord>, BackendError> {
        let notify = {
            let mut shard = lock(self.shard(&uuid));
            let Some(entry) = shard.get_mut(&uuid) else { return Ok(None) };
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
        loop {
            // Register interest before looking, so an enqueue in between wakes us.
            let notified = self.inner.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut q = lock(&self.inner.queue);
                let next_due = q.promote(Instant::now());
                while out.len() < max {
                    match q.heap.pop() {
                        Some(entry) => out.push(entry.message),
                        None => break,
                    }
                }
                if !q.heap.is_empty() {
                    // Others may be waiting too: pass the wake-up on.
                    self.inner.queued.notify_one();
                }
                next_due
            };
            if !out.is_empty() {
                let now = crate::model::now();
                let mut taken = 0;
                // Tasks cancelled while queued are dropped here, unrun.
                out.retain(|message| {
                    let mut shard = lock(self.shard(&message.uuid));
                    match shard.get_mut(&message.uuid) {
                        Some(entry) if entry.task.status == TaskStatus::New => {
                            entry.task.status = TaskStatus::Process;
                            entry.task.updated_at = now;
                            taken += 1;
                            true
                        }
                        Some(entry) => !entry.task.status.is_done(),
                        None => true,
                    }
                });
                lock(&self.inner.counts).in_flight += taken;
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

    async fn finish(&self, task: &TaskRecord) -> Result<(), BackendError> {
        self.store(task, true);
        Ok(())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        {
            let mut q = lock(&self.inner.queue);
            q.heap.clear();
            q.delayed.clear();
        }
        *lock(&self.inner.counts) = Counts::default();
        for shard in &self.inner.shards {
            lock(shard).clear();
        }
        lock(&self.inner.config).clear();
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
