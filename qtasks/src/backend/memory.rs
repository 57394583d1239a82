//! The in-memory backend: one process, no server.

use super::{Backend, BackendError};
use crate::model::{Task, TaskMessage};
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
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
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<Queue>,
    queued: Notify,
    shards: [Mutex<HashMap<Uuid, Entry>>; SHARDS],
    config: Mutex<HashMap<(String, String), Setting>>,
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Queued>,
    seq: u64,
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
    task: Task,
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

    /// How many tasks are queued and not yet taken.
    pub fn queued(&self) -> usize {
        lock(&self.inner.queue).heap.len()
    }

    fn shard(&self, uuid: &Uuid) -> &Mutex<HashMap<Uuid, Entry>> {
        let i = (uuid.as_u128() as usize) % SHARDS;
        &self.inner.shards[i]
    }

    fn store(&self, task: &Task) {
        let mut shard = lock(self.shard(&task.uuid));
        match shard.get_mut(&task.uuid) {
            // A status only moves forward: a late write never undoes a final one.
            Some(entry) if entry.task.status.is_final() && !task.status.is_final() => {}
            Some(entry) => {
                entry.task = task.clone();
                if task.status.is_final()
                    && let Some(n) = entry.finished.take()
                {
                    n.notify_waiters();
                }
            }
            None => {
                shard.insert(task.uuid, Entry { task: task.clone(), finished: None });
            }
        }
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn enqueue(&self, task: &Task) -> Result<(), BackendError> {
        self.store(task);
        let message = task.message();
        {
            let mut q = lock(&self.inner.queue);
            q.seq += 1;
            let seq = q.seq;
            q.heap.push(Queued { priority: message.priority, seq, message });
        }
        self.inner.queued.notify_one();
        Ok(())
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<Task>, BackendError> {
        Ok(lock(self.shard(&uuid)).get(&uuid).map(|e| e.task.clone()))
    }

    async fn get_all(&self) -> Result<Vec<Task>, BackendError> {
        let mut all = Vec::new();
        for shard in &self.inner.shards {
            all.extend(lock(shard).values().map(|e| e.task.clone()));
        }
        all.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
        Ok(all)
    }

    async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Option<Task>, BackendError> {
        let notify = {
            let mut shard = lock(self.shard(&uuid));
            let Some(entry) = shard.get_mut(&uuid) else { return Ok(None) };
            if entry.task.status.is_final() {
                return Ok(Some(entry.task.clone()));
            }
            entry.finished.get_or_insert_with(Default::default).clone()
        };
        // `notified()` registers before we re-check, so a finish between the
        // check above and the await below is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(task) = self.get(uuid).await?.filter(|t| t.status.is_final()) {
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
            {
                let mut q = lock(&self.inner.queue);
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
            }
            if !out.is_empty() {
                let now = crate::model::now();
                for message in out.iter() {
                    if let Some(entry) = lock(self.shard(&message.uuid)).get_mut(&message.uuid)
                        && entry.task.status == crate::model::TaskStatus::New
                    {
                        entry.task.status = crate::model::TaskStatus::Process;
                        entry.task.updated_at = now;
                    }
                }
                return Ok(());
            }
            notified.await;
        }
    }

    async fn update(&self, task: &Task) -> Result<(), BackendError> {
        self.store(task);
        Ok(())
    }

    async fn finish(&self, task: &Task) -> Result<(), BackendError> {
        self.store(task);
        Ok(())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        lock(&self.inner.queue).heap.clear();
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
        let expires = ttl.map(|t| Instant::now() + t);
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
