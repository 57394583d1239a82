//! The in-memory backend: one process, no server.

mod held;

use super::UuidMap;
use super::{
    Backend, BackendError, CancelOutcome, CancelRegistry, Enqueued, Fetch, MINUTES_KEPT, MinuteCount, QueueStats,
    TaskCounts,
};
use crate::model::{TaskMessage, TaskRecord, TaskStatus, Timestamp};
use crate::queue::{Limit, Limits, QueueInfo};
use crate::task::CancelToken;
use held::{Held, Names};
use serde_json::{Map, Value};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use uuid::Uuid;

const SHARDS: usize = 16;

/// A map keyed by names the app chose (queues, task names), looked up on
/// every enqueue and fetch: a fast hash, seeded per process.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// How long finished records are kept unless set: a day, as on Redis.
const DEFAULT_RETENTION: Duration = Duration::from_secs(86_400);

/// The app of a backend used before [`for_app`](Backend::for_app).
const UNBOUND: &str = "default";

/// Queue entries looked at past the ones taken, per queue and fetch, to
/// find tasks under their limits behind tasks over them.
const SCAN_PAST_LIMITED: usize = 256;

/// A century: "never" for a delay or a TTL too large to add.
const NEVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A queue and record store in this process's memory.
///
/// Tasks are ordered by priority (lower first), then by enqueue order,
/// within each queue. Records live in 16 independently locked shards, each
/// with its own counters, so writers of different tasks rarely contend and
/// finishing a task takes no lock shared by all tasks (unless the task is
/// under a concurrency limit, whose slot is given back); the queues are
/// one lock taken once per batch by workers. A queue entry is only a
/// priority, a place in line and an id: the message is read from the
/// record when a worker takes it, so a queued task is stored once.
/// Cancelling a queued task marks its record; its queue entry is dropped
/// when it comes up.
///
/// Records of finished tasks expire after the retention (a day by default,
/// as on Redis; [`retention`](MemoryBackend::retention)): each write to a
/// shard and each [`stats`](Backend::stats) call drops the shard's expired
/// records, so a long-running process holds only the recent ones. Nothing
/// survives the process. Clones share the same data. Each shard also
/// counts the runs that ended per minute, for the last hour
/// ([`minute_counts`](Backend::minute_counts)).
///
/// Like a Redis server, one `MemoryBackend` can hold several apps, each
/// with its own queues, records and settings:
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
    queues: Mutex<Queues>,
    /// Woken by an enqueue, a resumed queue, a released task or a freed slot.
    queued: Notify,
    /// Tasks waiting (now or delayed) that are still `new`.
    live: AtomicU64,
    /// The last place in line given (enqueue order, across the queues).
    seq: AtomicU64,
    shards: [Mutex<Shard>; SHARDS],
    limits: Mutex<LimitState>,
    uniques: Mutex<HashMap<String, Uuid>>,
    /// Serialises the enqueues of unique tasks (check, then insert).
    unique_enqueue: Mutex<()>,
    config: Mutex<HashMap<(String, String), Setting>>,
    claims: Mutex<HashMap<String, Instant>>,
    cancels: CancelRegistry,
    /// How long finished records are kept, as nanoseconds (0: for ever).
    retention_nanos: AtomicU64,
    /// What the due instants of delayed entries count from ([`Due`]).
    epoch: Instant,
}

impl Inner {
    fn new(retention: Option<Duration>) -> Self {
        Self {
            queues: Mutex::default(),
            queued: Notify::new(),
            live: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            shards: Default::default(),
            limits: Mutex::default(),
            uniques: Mutex::default(),
            unique_enqueue: Mutex::default(),
            config: Mutex::default(),
            claims: Mutex::default(),
            cancels: CancelRegistry::default(),
            retention_nanos: AtomicU64::new(retention.map_or(0, nanos)),
            epoch: Instant::now(),
        }
    }

    /// `at` in the 8 bytes an entry keeps it in.
    fn due(&self, at: Instant) -> Due {
        let nanos = u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        Due(NonZeroU64::new(nanos.saturating_add(1)).unwrap_or(NonZeroU64::MAX))
    }

    /// The instant `due` stands for.
    fn instant(&self, due: Due) -> Instant {
        later(self.epoch, Duration::from_nanos(due.0.get() - 1))
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

fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now + NEVER)
}

/// When a delayed task is due: nanoseconds after [`Inner::epoch`], plus
/// one (an `Instant` takes twice the room in every entry).
#[derive(Clone, Copy)]
struct Due(NonZeroU64);

/// One shard of records, with the counters of the runs that ended in it.
#[derive(Default)]
struct Shard {
    entries: UuidMap<Entry>,
    /// The task and queue names its lean records share.
    names: Names,
    counts: BTreeMap<String, TaskCounts>,
    /// Runs that ended per minute, oldest first, for [`MINUTES_KEPT`].
    minutes: VecDeque<MinuteCount>,
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
        let now = MinuteCount::new(crate::model::now());
        match self.minutes.back_mut() {
            // A clock set back counts in the newest minute kept.
            Some(last) if last.at >= now.at => last.add(status, 1),
            _ => {
                let oldest = now.at - MINUTES_KEPT.as_secs() as i64;
                while self.minutes.front().is_some_and(|m| m.at < oldest) {
                    self.minutes.pop_front();
                }
                self.minutes.push_back(now);
                if let Some(last) = self.minutes.back_mut() {
                    last.add(status, 1);
                }
            }
        }
    }

    /// Drops the records whose retention has passed, and gives back memory
    /// once most of it is unused. Returns their unique keys, to drop too.
    fn purge(&mut self, now: Instant, uniques: &mut Vec<(String, Uuid)>) {
        let before = self.entries.len();
        while let Some(&(at, uuid)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            if self.entries.get(&uuid).is_some_and(|e| e.task.status().is_done())
                && let Some(entry) = self.entries.remove(&uuid)
                && let Some(unique) = entry.task.into_unique()
            {
                uniques.push((unique.key, uuid));
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

/// Every queue of the app, by name.
#[derive(Default)]
struct Queues {
    by_name: FastMap<String, QueueState>,
}

/// One queue: who waits, who waits for later, and its counters.
#[derive(Default)]
struct QueueState {
    heap: Line,
    /// Tasks that may not run before their instant.
    delayed: BinaryHeap<Reverse<Delayed>>,
    paused: bool,
    /// Waiting now and still `new` (the heap less its stale entries).
    waiting: u64,
    /// Waiting for later and still `new`.
    later: u64,
    /// Running: each running task's entry holds this counter and takes
    /// itself off it when it ends or is released, with no lock on the
    /// queues.
    in_flight: Arc<AtomicU64>,
    /// Every delayed entry due by then has been moved into `heap`: a task
    /// due later than this is still in `delayed`.
    promoted_to: Option<Instant>,
    /// Delayed entries whose task was cancelled (uuid → `seq`): dropped,
    /// uncounted, when they come due, so a cancel needs no scan.
    cancelled_later: UuidMap<u64>,
}

impl QueueState {
    /// Moves the delayed tasks that are due into the queue; returns when
    /// the next one is due.
    fn promote(&mut self, now: Instant) -> Option<Instant> {
        self.promoted_to = Some(self.promoted_to.map_or(now, |p| p.max(now)));
        while let Some(Reverse(first)) = self.delayed.peek() {
            if first.due > now {
                return Some(first.due);
            }
            let Some(Reverse(d)) = self.delayed.pop() else { break };
            if self.cancelled_later.get(&d.entry.uuid) == Some(&d.entry.seq) {
                self.cancelled_later.remove(&d.entry.uuid);
                continue;
            }
            self.heap.push(d.entry);
            self.later = self.later.saturating_sub(1);
            self.waiting += 1;
        }
        None
    }

    /// Whether a task due at `due` waits in `delayed` (not yet moved into
    /// the queue).
    fn is_delayed(&self, due: Option<Instant>) -> bool {
        due.is_some_and(|due| self.promoted_to.is_none_or(|p| due > p))
    }

    /// Gives back memory once most of it is unused.
    fn shrink(&mut self) {
        self.heap.shrink();
    }
}

/// The tasks waiting in a queue, in the order they are taken: priority,
/// then place in line. Tasks enqueued one after another at the same
/// priority (the common case) go to the back of a plain FIFO, taken from
/// its front; the others (another priority, a task released back to its
/// old place, a delayed one come due) go to a heap. A take compares the
/// two fronts: O(1) for the first kind, O(log n) for the second.
#[derive(Default)]
struct Line {
    /// Entries of one priority, in increasing place in line.
    fifo: VecDeque<Queued>,
    heap: BinaryHeap<Queued>,
}

impl Line {
    fn push(&mut self, entry: Queued) {
        match self.fifo.back() {
            Some(back) if back.priority != entry.priority || back.seq > entry.seq => self.heap.push(entry),
            _ => self.fifo.push_back(entry),
        }
    }

    /// The first entry in line (the "greatest": see `Ord for Queued`).
    fn pop(&mut self) -> Option<Queued> {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(h)) if h > f => self.heap.pop(),
            (Some(_), _) => self.fifo.pop_front(),
            (None, _) => self.heap.pop(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.fifo.iter().chain(self.heap.iter())
    }

    /// Gives back memory once most of it is unused.
    fn shrink(&mut self) {
        if self.fifo.capacity() > 64 && self.fifo.len() < self.fifo.capacity() / 4 {
            self.fifo.shrink_to_fit();
        }
        if self.heap.capacity() > 64 && self.heap.len() < self.heap.capacity() / 4 {
            self.heap.shrink_to_fit();
        }
    }
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

/// Running counts and token buckets of the limited task names, queues and
/// concurrency keys.
#[derive(Default)]
struct LimitState {
    running: FastMap<Scope, u32>,
    buckets: FastMap<Scope, Bucket>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Scope {
    Task(String),
    Queue(String),
    Key(String, String),
}

/// A token bucket holding one period's worth of tokens.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The concurrency slots a running task holds, given back when it ends.
#[derive(Default)]
struct Slots(Vec<Scope>);

impl LimitState {
    /// Takes what a task needs to start under `limits`: a slot in each of
    /// its concurrency scopes and a token from each rate. `Err` with the
    /// instant a token is due (or `None`: when a slot frees) if it may not
    /// start now; nothing is taken then.
    fn admit(&mut self, limits: &Limits, task: &Held, now: Instant) -> Result<Slots, Option<Instant>> {
        let mut scopes: Vec<(Scope, &Limit)> = Vec::new();
        if let Some(limit) = limits.task(task.task_name()) {
            scopes.push((Scope::Task(task.task_name().to_owned()), limit));
        }
        if let Some(limit) = limits.queue(task.queue()) {
            scopes.push((Scope::Queue(task.queue().to_owned()), limit));
        }
        let mut due = None::<Instant>;
        let mut blocked = false;
        for (scope, limit) in &scopes {
            if let Some(max) = limit.concurrency
                && self.running.get(scope).copied().unwrap_or(0) >= max
            {
                blocked = true;
            }
            if let Some(rate) = limit.rate {
                let bucket =
                    self.buckets.entry(scope.clone()).or_insert(Bucket { tokens: f64::from(rate.count), at: now });
                let per_token = rate.interval().as_secs_f64();
                bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() / per_token)
                    .min(f64::from(rate.count));
                bucket.at = now;
                if bucket.tokens < 1.0 {
                    blocked = true;
                    let wait = Duration::from_secs_f64((1.0 - bucket.tokens) * per_token);
                    due = Some(due.map_or(now + wait, |d| d.min(now + wait)));
                }
            }
        }
        let key_scope = match (task.limit_key(), limits.task(task.task_name()).and_then(|l| l.per_key)) {
            (Some(key), Some(max)) => {
                let scope = Scope::Key(task.task_name().to_owned(), key.to_owned());
                if self.running.get(&scope).copied().unwrap_or(0) >= max {
                    blocked = true;
                }
                Some(scope)
            }
            _ => None,
        };
        if blocked {
            return Err(due);
        }
        let mut slots = Slots::default();
        for (scope, limit) in scopes {
            if limit.rate.is_some()
                && let Some(bucket) = self.buckets.get_mut(&scope)
            {
                bucket.tokens -= 1.0;
            }
            if limit.concurrency.is_some() {
                *self.running.entry(scope.clone()).or_default() += 1;
                slots.0.push(scope);
            }
        }
        if let Some(scope) = key_scope {
            *self.running.entry(scope.clone()).or_default() += 1;
            slots.0.push(scope);
        }
        Ok(slots)
    }

    /// Gives back the slots of a task that ended or was released.
    fn free(&mut self, slots: Slots) {
        for scope in slots.0 {
            if let Some(n) = self.running.get_mut(&scope) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.running.remove(&scope);
                }
            }
        }
    }
}

/// A shared setting and when it expires.
type Setting = (Value, Option<Instant>);

/// A task in a shard: 48 bytes, so the unused half of the map's table
/// after a growth costs little.
struct Entry {
    /// Boxed (in [`Held`]): the map holds a small entry per task.
    task: Held,
    /// Its place in line while it is queued (`new`): a queue entry with
    /// another `seq` is stale (the task was released and queued again).
    seq: u64,
    /// When it is due, if it was enqueued with a delay (see
    /// [`QueueState::is_delayed`]).
    due: Option<Due>,
    /// The concurrency slots it holds while it runs (boxed: only limited
    /// tasks have any).
    slots: Option<Box<Slots>>,
    /// Its queue's running count, while it runs.
    running: Option<Arc<AtomicU64>>,
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

    /// How many tasks are queued and not yet taken (delayed ones included).
    pub fn queued(&self) -> usize {
        usize::try_from(self.inner.live.load(AtomicOrdering::Acquire)).unwrap_or(usize::MAX)
    }

    fn shard(&self, uuid: &Uuid) -> &Mutex<Shard> {
        let i = (uuid.as_u128() as usize) % SHARDS;
        &self.inner.shards[i]
    }

    /// Drops the shard's expired records and their unique keys.
    fn purge(&self, shard: &mut Shard, now: Instant) {
        let mut gone = Vec::new();
        shard.purge(now, &mut gone);
        if !gone.is_empty() {
            let mut uniques = lock(&self.inner.uniques);
            for (key, uuid) in gone {
                if uniques.get(&key) == Some(&uuid) {
                    uniques.remove(&key);
                }
            }
        }
    }

    /// Writes a record of a task that exists. With `count`, a run that ends
    /// here is counted in [`stats`](Backend::stats) before its waiters
    /// wake, so a waiter reading the stats next sees it.
    fn store(&self, task: &TaskRecord, count: bool) {
        let mut shard = lock(self.shard(&task.uuid));
        let now = Instant::now();
        self.purge(&mut shard, now);
        // A record written without being enqueued first (flushed meanwhile,
        // or a backend used directly) is stored as given.
        let mut fresh = false;
        let Shard { entries, names, .. } = &mut *shard;
        let entry = entries.entry(task.uuid).or_insert_with(|| {
            fresh = true;
            Entry { task: Held::new(task, names), seq: 0, due: None, slots: None, running: None, finished: None }
        });
        // A status only moves forward: a late write never undoes an end.
        if entry.task.status().is_done() && !fresh {
            return;
        }
        let previous = entry.task.status();
        if !fresh {
            entry.task.overwrite(task, names);
        }
        let finished = task.status.is_done().then(|| entry.finished.take()).flatten();
        let slots = task.status.is_done().then(|| entry.slots.take()).flatten();
        if task.status.is_done()
            && let Some(running) = entry.running.take()
        {
            running.fetch_sub(1, AtomicOrdering::AcqRel);
        }
        if count {
            if previous == TaskStatus::Process {
                shard.in_flight = shard.in_flight.saturating_sub(1);
            }
            shard.count(&task.task_name, task.status);
        }
        if task.status.is_done()
            && let Some(retention) = self.inner.retention()
        {
            shard.expiry.push_back((later(now, retention), task.uuid));
        }
        drop(shard);
        if let Some(slots) = slots {
            lock(&self.inner.limits).free(*slots);
            // A freed slot may let a waiting task start.
            self.inner.queued.notify_waiters();
        }
        if let Some(n) = finished {
            n.notify_waiters();
        }
    }

    /// The task that holds `unique`'s key, if it still holds it.
    fn unique_holder(&self, key: &str, now: f64) -> Option<Uuid> {
        let uuid = *lock(&self.inner.uniques).get(key)?;
        let shard = lock(self.shard(&uuid));
        let task = &shard.entries.get(&uuid)?.task;
        let window = task.unique().map_or(0.0, |u| u.window);
        (!task.status().is_done() || now - task.updated_at() < window).then_some(uuid)
    }

    /// Stores a new record and queues it, unless it exists (see
    /// [`Backend::enqueue`]).
    fn queue(&self, task: &TaskRecord, delay: Option<Duration>) -> Enqueued {
        // One enqueue of a unique task at a time, so two at once cannot
        // both find its key free.
        let _enqueueing = task.unique.as_ref().map(|_| lock(&self.inner.unique_enqueue));
        if let Some(unique) = &task.unique
            && let Some(holder) = self.unique_holder(&unique.key, crate::model::now())
        {
            return Enqueued::Existing(holder);
        }
        let seq = self.inner.seq.fetch_add(1, AtomicOrdering::Relaxed) + 1;
        let due = delay.filter(|d| !d.is_zero()).map(|d| later(Instant::now(), d));
        {
            let mut shard = lock(self.shard(&task.uuid));
            self.purge(&mut shard, Instant::now());
            if shard.entries.contains_key(&task.uuid) {
                return Enqueued::Existing(task.uuid);
            }
            let held = Held::new(task, &mut shard.names);
            let entry = Entry {
                task: held,
                seq,
                due: due.map(|at| self.inner.due(at)),
                slots: None,
                running: None,
                finished: None,
            };
            shard.entries.insert(task.uuid, entry);
        }
        if let Some(unique) = &task.unique {
            lock(&self.inner.uniques).insert(unique.key.clone(), task.uuid);
        }
        self.inner.live.fetch_add(1, AtomicOrdering::AcqRel);
        self.push(&task.queue, Queued { priority: task.priority, seq, uuid: task.uuid }, due);
        Enqueued::New
    }

    /// Puts `entry` in line in `queue`: waiting, or delayed until `due`.
    fn push(&self, queue: &str, entry: Queued, due: Option<Instant>) {
        {
            let mut queues = lock(&self.inner.queues);
            let q = match queues.by_name.get_mut(queue) {
                Some(q) => q,
                None => queues.by_name.entry(queue.to_owned()).or_default(),
            };
            // Due by the last promotion: it goes straight in line, so what
            // is in `delayed` is exactly what is due after `promoted_to`.
            match due {
                Some(due) if q.is_delayed(Some(due)) => {
                    q.delayed.push(Reverse(Delayed { due, entry }));
                    q.later += 1;
                }
                _ => {
                    q.heap.push(entry);
                    q.waiting += 1;
                }
            }
        }
        // Every fetcher may take from other queues: wake them all.
        self.inner.queued.notify_waiters();
    }

    /// The record of a taken entry, marked `process` with the slots it holds;
    /// its message. `Ok(None)` for a stale entry (cancelled, or released and
    /// queued again); `Err` when it is over its limits now (`Some`: the
    /// instant a token is due).
    fn take(
        &self,
        queued: Queued,
        limits: &Limits,
        now: (Instant, f64),
        running: &Arc<AtomicU64>,
    ) -> Result<Option<TaskMessage>, Option<Instant>> {
        let mut shard = lock(self.shard(&queued.uuid));
        let Some(entry) = shard.entries.get_mut(&queued.uuid) else { return Ok(None) };
        if entry.seq != queued.seq || entry.task.status() != TaskStatus::New {
            return Ok(None);
        }
        if !limits.is_empty() {
            entry.slots = Some(Box::new(lock(&self.inner.limits).admit(limits, &entry.task, now.0)?));
        }
        entry.task.set_status(TaskStatus::Process, now.1);
        running.fetch_add(1, AtomicOrdering::AcqRel);
        entry.running = Some(Arc::clone(running));
        let message = entry.task.message(queued.uuid);
        shard.in_flight += 1;
        Ok(Some(message))
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

    async fn enqueue(&self, task: &TaskRecord) -> Result<Enqueued, BackendError> {
        Ok(self.queue(task, None))
    }

    async fn enqueue_delayed(&self, task: &TaskRecord, delay: Duration) -> Result<Enqueued, BackendError> {
        Ok(self.queue(task, Some(delay)))
    }

    async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<CancelOutcome, BackendError> {
        let (finished, queue, delayed) = {
            let mut shard = lock(self.shard(&uuid));
            let Some(entry) = shard.entries.get_mut(&uuid) else { return Ok(CancelOutcome::NotFound) };
            match entry.task.status() {
                TaskStatus::New => {
                    // Its queue entry is dropped when it comes up (no scan).
                    entry.task.cancel(reason, crate::model::now());
                    let (name, queue) = (entry.task.task_name().to_owned(), entry.task.queue().to_owned());
                    let finished = entry.finished.take();
                    let delayed = (entry.seq, entry.due.map(|due| self.inner.instant(due)));
                    shard.count(&name, TaskStatus::Cancel);
                    if let Some(retention) = self.inner.retention() {
                        shard.expiry.push_back((later(Instant::now(), retention), uuid));
                    }
                    self.inner.live.fetch_sub(1, AtomicOrdering::AcqRel);
                    (finished, queue, delayed)
                }
                TaskStatus::Process => {
                    drop(shard);
                    self.inner.cancels.signal(uuid, reason);
                    return Ok(CancelOutcome::Requested);
                }
                done => return Ok(CancelOutcome::Finished(done)),
            }
        };
        if let Some(q) = lock(&self.inner.queues).by_name.get_mut(&queue) {
            // Which count it was in, known without a scan: a task due after
            // the last promotion is still in the delayed heap, where its
            // entry is dropped uncounted when it comes due.
            let (seq, due) = delayed;
            if q.is_delayed(due) {
                q.later = q.later.saturating_sub(1);
                q.cancelled_later.insert(uuid, seq);
            } else {
                q.waiting = q.waiting.saturating_sub(1);
            }
        }
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
            self.purge(&mut shard, now);
            stats.in_flight += shard.in_flight;
            for (name, counts) in &shard.counts {
                stats.tasks.entry(name.clone()).or_default().merge(counts);
            }
        }
        Ok(stats)
    }

    async fn minute_counts(&self, since: Timestamp) -> Result<Option<Vec<MinuteCount>>, BackendError> {
        let first = MinuteCount::minute_of(since);
        let mut merged: BTreeMap<i64, MinuteCount> = BTreeMap::new();
        for shard in &self.inner.shards {
            for m in lock(shard).minutes.iter().filter(|m| m.at >= first) {
                let sum = merged.entry(m.at).or_insert(MinuteCount { at: m.at, ..MinuteCount::default() });
                sum.success += m.success;
                sum.error += m.error;
                sum.retry += m.retry;
                sum.cancel += m.cancel;
            }
        }
        Ok(Some(merged.into_values().collect()))
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        Ok(lock(self.shard(&uuid)).entries.get(&uuid).map(|e| e.task.record(uuid)))
    }

    async fn get_all(&self) -> Result<Vec<TaskRecord>, BackendError> {
        let mut all = Vec::new();
        for shard in &self.inner.shards {
            all.extend(lock(shard).entries.iter().map(|(uuid, e)| e.task.record(*uuid)));
        }
        all.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
        Ok(all)
    }

    async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Option<TaskRecord>, BackendError> {
        let notify = {
            let mut shard = lock(self.shard(&uuid));
            let Some(entry) = shard.entries.get_mut(&uuid) else { return Ok(None) };
            if entry.task.status().is_done() {
                return Ok(Some(entry.task.record(uuid)));
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

    async fn fetch(&self, from: &Fetch, max: usize, out: &mut Vec<TaskMessage>) -> Result<(), BackendError> {
        let limits = &*from.limits;
        let mut candidates: Vec<(usize, Queued)> = Vec::new();
        loop {
            // Register interest before looking, so an enqueue in between wakes us.
            let notified = self.inner.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let mut next_due: Option<Instant> = None;
            let mut due = |at: Option<Instant>| {
                if let Some(at) = at {
                    next_due = Some(next_due.map_or(at, |d| d.min(at)));
                }
            };
            // Candidates from each queue in order, as many as may be
            // taken plus some past limited ones.
            let running: Vec<Arc<AtomicU64>>;
            {
                let mut queues = lock(&self.inner.queues);
                running = from
                    .queues
                    .iter()
                    .map(|name| queues.by_name.get(name).map(|q| Arc::clone(&q.in_flight)).unwrap_or_default())
                    .collect();
                for (i, name) in from.queues.iter().enumerate() {
                    let Some(q) = queues.by_name.get_mut(name) else { continue };
                    due(q.promote(now));
                    if q.paused {
                        continue;
                    }
                    let want =
                        max.saturating_sub(candidates.len()) + if limits.is_empty() { 0 } else { SCAN_PAST_LIMITED };
                    for _ in 0..want {
                        match q.heap.pop() {
                            Some(entry) => candidates.push((i, entry)),
                            None => break,
                        }
                    }
                    q.shrink();
                    if candidates.len() >= max && limits.is_empty() {
                        break;
                    }
                }
            }
            let wall = crate::model::now();
            let mut back: Vec<(usize, Queued)> = Vec::new();
            let mut taken_from: Vec<usize> = Vec::new();
            for (i, queued) in candidates.drain(..) {
                if out.len() >= max {
                    back.push((i, queued));
                    continue;
                }
                match self.take(queued, limits, (now, wall), &running[i]) {
                    Ok(Some(message)) => {
                        self.inner.live.fetch_sub(1, AtomicOrdering::AcqRel);
                        taken_from.push(i);
                        out.push(message);
                    }
                    // Cancelled or queued again meanwhile: its count moved then.
                    Ok(None) => {}
                    Err(at) => {
                        due(at);
                        back.push((i, queued));
                    }
                }
            }
            {
                let mut queues = lock(&self.inner.queues);
                for (i, queued) in back {
                    if let Some(q) = queues.by_name.get_mut(&from.queues[i]) {
                        q.heap.push(queued);
                    }
                }
                for i in taken_from {
                    if let Some(q) = queues.by_name.get_mut(&from.queues[i]) {
                        q.waiting = q.waiting.saturating_sub(1);
                    }
                }
            }
            if !out.is_empty() {
                // Others may be waiting too: let them look.
                self.inner.queued.notify_one();
                return Ok(());
            }
            match next_due {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at.into(), notified).await;
                }
                None => notified.await,
            }
        }
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), BackendError> {
        lock(&self.inner.queues).by_name.entry(queue.to_owned()).or_default().paused = paused;
        if !paused {
            self.inner.queued.notify_waiters();
        }
        Ok(())
    }

    async fn queues(&self, names: &[String]) -> Result<Vec<QueueInfo>, BackendError> {
        let now = (Instant::now(), crate::model::now());
        let mut infos: Vec<(QueueInfo, Vec<Uuid>)> = {
            let mut queues = lock(&self.inner.queues);
            let wanted: Vec<String> =
                if names.is_empty() { queues.by_name.keys().cloned().collect() } else { names.to_vec() };
            wanted
                .into_iter()
                .map(|name| {
                    let q = queues.by_name.entry(name.clone()).or_default();
                    q.promote(now.0);
                    let info = QueueInfo {
                        name,
                        depth: q.waiting,
                        delayed: q.later,
                        in_flight: q.in_flight.load(AtomicOrdering::Acquire),
                        paused: q.paused,
                        oldest_age: None,
                        limit: Limit::default(),
                    };
                    (info, q.heap.iter().map(|e| e.uuid).collect())
                })
                .collect()
        };
        // The oldest waiting task: a scan of the queue (for listings only).
        for (info, uuids) in &mut infos {
            let oldest = uuids
                .iter()
                .filter_map(|uuid| {
                    let shard = lock(self.shard(uuid));
                    shard.entries.get(uuid).filter(|e| e.task.status() == TaskStatus::New).map(|e| e.task.created_at())
                })
                .min_by(f64::total_cmp);
            info.oldest_age = oldest.map(|t| Duration::from_secs_f64((now.1 - t).max(0.0)));
        }
        let mut infos: Vec<QueueInfo> = infos.into_iter().map(|(i, _)| i).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    async fn update(&self, task: &TaskRecord) -> Result<(), BackendError> {
        self.store(task, false);
        Ok(())
    }

    /// No leases: a task is held from its fetch until it finishes or is
    /// released, so it is still held exactly while its record is `process`.
    async fn extend_lease(&self, uuid: Uuid) -> Result<bool, BackendError> {
        let shard = lock(self.shard(&uuid));
        Ok(shard.entries.get(&uuid).is_some_and(|e| e.task.status() == TaskStatus::Process))
    }

    async fn release(&self, uuid: Uuid) -> Result<bool, BackendError> {
        let (queued, queue, slots) = {
            let mut shard = lock(self.shard(&uuid));
            let Some(entry) = shard.entries.get_mut(&uuid) else { return Ok(false) };
            if entry.task.status() != TaskStatus::Process {
                return Ok(false);
            }
            entry.task.set_status(TaskStatus::New, crate::model::now());
            let queued = Queued { priority: entry.task.priority(), seq: entry.seq, uuid };
            let (queue, slots) = (entry.task.queue().to_owned(), entry.slots.take());
            if let Some(running) = entry.running.take() {
                running.fetch_sub(1, AtomicOrdering::AcqRel);
            }
            // Back in line at once, whatever delay it was enqueued with.
            entry.due = None;
            shard.in_flight = shard.in_flight.saturating_sub(1);
            (queued, queue, slots)
        };
        if let Some(slots) = slots {
            lock(&self.inner.limits).free(*slots);
        }
        self.inner.live.fetch_add(1, AtomicOrdering::AcqRel);
        // Back at its old place in line.
        self.push(&queue, queued, None);
        Ok(true)
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        let now = Instant::now();
        let mut claims = lock(&self.inner.claims);
        claims.retain(|_, until| *until > now);
        if claims.contains_key(key) {
            return Ok(false);
        }
        claims.insert(key.to_owned(), later(now, ttl));
        Ok(true)
    }

    async fn finish(&self, task: &TaskRecord) -> Result<(), BackendError> {
        self.store(task, true);
        Ok(())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        *lock(&self.inner.queues) = Queues::default();
        self.inner.live.store(0, AtomicOrdering::Release);
        for shard in &self.inner.shards {
            *lock(shard) = Shard::default();
        }
        *lock(&self.inner.limits) = LimitState::default();
        lock(&self.inner.uniques).clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(priority: i64, seq: u64) -> Queued {
        Queued { priority, seq, uuid: Uuid::from_u128(u128::from(seq)) }
    }

    #[test]
    fn a_line_takes_by_priority_then_place_whatever_the_order_of_pushes() {
        let mut line = Line::default();
        // In order at one priority (the FIFO), then a higher priority, a
        // task back at an old place, a lower priority (the heap).
        for (priority, seq) in [(0, 3), (0, 4), (0, 6), (-1, 7), (0, 1), (5, 8), (0, 9), (-1, 2)] {
            line.push(queued(priority, seq));
        }
        assert_eq!(line.iter().count(), 8);
        let taken: Vec<(i64, u64)> = std::iter::from_fn(|| line.pop()).map(|q| (q.priority, q.seq)).collect();
        assert_eq!(taken, [(-1, 2), (-1, 7), (0, 1), (0, 3), (0, 4), (0, 6), (0, 9), (5, 8)]);
        assert!(line.pop().is_none());
    }

    #[test]
    fn a_shard_entry_stays_small() {
        // The map of a shard holds one per task, and up to twice as many
        // slots after a growth: this is most of a queued task's bytes
        // beside its lean record (BENCHMARKS.md, peak memory).
        assert!(std::mem::size_of::<Entry>() <= 48, "{} bytes", std::mem::size_of::<Entry>());
    }
}
