//! A task's record as the memory backend holds it: compact.
//!
//! A stored record repeats a few strings across all tasks (the task's name,
//! its queue, the worker that ran it) and leaves most fields empty until
//! the task has run (no result, no error, no worker). [`Held`] keeps the
//! names once per shard ([`Names`]) and what a run writes in a box of its
//! own, made only when there is something in it: a waiting task takes 192
//! bytes of heap, not a 304-byte [`TaskRecord`] with two strings of its
//! own. Readers get back the same [`TaskRecord`] that was written.

use crate::model::{Name, TaskMessage, TaskRecord, TaskStatus, Timestamp, Unique};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

/// A task's record in a shard (its id is the map's key).
pub(super) struct Held(Box<Stored>);

struct Stored {
    task_name: Arc<str>,
    queue: Arc<str>,
    priority: i64,
    args: Value,
    status: TaskStatus,
    created_at: Timestamp,
    updated_at: Timestamp,
    attempt: u32,
    extra: Map<String, Value>,
    limit_key: Option<String>,
    unique: Option<Unique>,
    /// What a run or a cancel wrote; `None` while all of it is empty.
    ran: Option<Box<Ran>>,
}

/// The fields of a record that stay empty until the task runs or ends.
#[derive(Default)]
struct Ran {
    result: Option<Value>,
    error: Option<String>,
    worker: Option<Arc<str>>,
    started_at: Option<Timestamp>,
}

impl Held {
    /// `task` as it is stored.
    pub(super) fn new(task: &TaskRecord, names: &mut Names) -> Self {
        // Built here, not as an empty record that `overwrite` fills: that
        // costs about 120 instructions more per enqueue (callgrind).
        // Destructured, so a field added to `TaskRecord` is not forgotten here.
        let TaskRecord {
            uuid: _,
            task_name,
            priority,
            args,
            status,
            created_at,
            updated_at,
            result,
            error,
            attempt,
            extra,
            queue,
            limit_key,
            unique,
            worker,
            started_at,
        } = task;
        let mut held = Self(Box::new(Stored {
            task_name: names.get(task_name),
            queue: names.get(queue),
            priority: *priority,
            args: args.clone(),
            status: *status,
            created_at: *created_at,
            updated_at: *updated_at,
            attempt: *attempt,
            extra: extra.clone(),
            limit_key: limit_key.clone(),
            unique: unique.clone(),
            ran: None,
        }));
        held.write_ran(result, error, worker, started_at, names);
        held
    }

    pub(super) fn status(&self) -> TaskStatus {
        self.0.status
    }

    /// Moves the task to `status` at `at` (the take, a release).
    pub(super) fn set_status(&mut self, status: TaskStatus, at: Timestamp) {
        (self.0.status, self.0.updated_at) = (status, at);
    }

    /// Ends the task `cancel` with `reason`, at `at`.
    pub(super) fn cancel(&mut self, reason: &str, at: Timestamp) {
        self.set_status(TaskStatus::Cancel, at);
        self.0.ran.get_or_insert_with(Box::default).error = Some(reason.to_owned());
    }

    pub(super) fn task_name(&self) -> &str {
        &self.0.task_name
    }

    pub(super) fn queue(&self) -> &str {
        &self.0.queue
    }

    pub(super) fn priority(&self) -> i64 {
        self.0.priority
    }

    pub(super) fn created_at(&self) -> Timestamp {
        self.0.created_at
    }

    pub(super) fn updated_at(&self) -> Timestamp {
        self.0.updated_at
    }

    pub(super) fn limit_key(&self) -> Option<&str> {
        self.0.limit_key.as_deref()
    }

    pub(super) fn unique(&self) -> Option<&Unique> {
        self.0.unique.as_ref()
    }

    /// The unique key, once the record is dropped.
    pub(super) fn into_unique(self) -> Option<Unique> {
        self.0.unique
    }

    /// The task's record.
    pub(super) fn record(&self, uuid: Uuid) -> TaskRecord {
        let t = &*self.0;
        let ran = t.ran.as_deref();
        TaskRecord {
            uuid,
            task_name: Name::from(&*t.task_name),
            priority: t.priority,
            args: t.args.clone(),
            status: t.status,
            created_at: t.created_at,
            updated_at: t.updated_at,
            result: ran.and_then(|r| r.result.clone()),
            error: ran.and_then(|r| r.error.clone()),
            attempt: t.attempt,
            extra: t.extra.clone(),
            queue: Name::from(&*t.queue),
            limit_key: t.limit_key.clone(),
            unique: t.unique.clone(),
            worker: ran.and_then(|r| r.worker.as_deref().map(Name::from)),
            started_at: ran.and_then(|r| r.started_at),
        }
    }

    /// The message a worker gets when it takes the task.
    pub(super) fn message(&self, uuid: Uuid) -> TaskMessage {
        let t = &*self.0;
        TaskMessage {
            uuid,
            task_name: Name::from(&*t.task_name),
            priority: t.priority,
            args: t.args.clone(),
            created_at: t.created_at,
            attempt: t.attempt,
            extra: t.extra.clone(),
            queue: Name::from(&*t.queue),
            limit_key: t.limit_key.clone(),
        }
    }

    /// Writes `task` over the record, field by field: what did not change
    /// (the names, most often) is kept, a buffer is reused where it can
    /// be, so a write allocates only for what is new. The unique key stays
    /// with the record whatever a plugin wrote.
    pub(super) fn overwrite(&mut self, task: &TaskRecord, names: &mut Names) {
        // Destructured, so a field added to `TaskRecord` is not forgotten here.
        let TaskRecord {
            uuid: _,
            task_name,
            priority,
            args,
            status,
            created_at,
            updated_at,
            result,
            error,
            attempt,
            extra,
            queue,
            limit_key,
            unique,
            worker,
            started_at,
        } = task;
        let t = &mut *self.0;
        if *t.task_name != **task_name {
            t.task_name = names.get(task_name);
        }
        if *t.queue != **queue {
            t.queue = names.get(queue);
        }
        t.priority = *priority;
        t.args.clone_from(args);
        t.status = *status;
        t.created_at = *created_at;
        t.updated_at = *updated_at;
        t.attempt = *attempt;
        t.extra.clone_from(extra);
        t.limit_key.clone_from(limit_key);
        if unique.is_some() {
            t.unique.clone_from(unique);
        }
        self.write_ran(result, error, worker, started_at, names);
    }

    fn write_ran(
        &mut self,
        result: &Option<Value>,
        error: &Option<String>,
        worker: &Option<Name>,
        started_at: &Option<Timestamp>,
        names: &mut Names,
    ) {
        if result.is_none() && error.is_none() && worker.is_none() && started_at.is_none() {
            self.0.ran = None;
            return;
        }
        let ran = self.0.ran.get_or_insert_with(Box::default);
        ran.result.clone_from(result);
        ran.error.clone_from(error);
        match worker {
            Some(w) if ran.worker.as_deref() != Some(w.as_str()) => ran.worker = Some(names.get(w)),
            Some(_) => {}
            None => ran.worker = None,
        }
        ran.started_at = *started_at;
    }
}

/// The task, queue and worker names of a shard's records, each held once.
pub(super) struct Names {
    set: HashSet<Arc<str>, foldhash::fast::RandomState>,
    /// The names asked for last, looked at before hashing: a shard sees
    /// the same few names over and over.
    recent: [Option<Arc<str>>; RECENT],
    /// The slot of `recent` the next new name goes to.
    next: usize,
    /// At this size, names no record holds any more are dropped.
    prune_at: usize,
}

/// Names remembered in [`Names::recent`].
const RECENT: usize = 4;

/// Names kept before the first look for unused ones.
const NAMES_KEPT: usize = 256;

impl Default for Names {
    fn default() -> Self {
        Self { set: HashSet::default(), recent: Default::default(), next: 0, prune_at: NAMES_KEPT }
    }
}

impl Names {
    /// The shared copy of `name`.
    pub(super) fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.recent.iter().flatten().find(|r| ***r == *name) {
            return Arc::clone(shared);
        }
        let shared = self.shared(name);
        self.recent[self.next] = Some(Arc::clone(&shared));
        self.next = (self.next + 1) % RECENT;
        shared
    }

    fn shared(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(name) {
            return Arc::clone(shared);
        }
        if self.set.len() >= self.prune_at {
            // Many distinct names (queues or tasks named per use): keep the
            // ones still held, and look again when the set has doubled.
            let recent = &self.recent;
            self.set
                .retain(|n| Arc::strong_count(n) > 1 + usize::from(recent.iter().flatten().any(|r| Arc::ptr_eq(r, n))));
            self.prune_at = (self.set.len() * 2).max(NAMES_KEPT);
        }
        let shared: Arc<str> = Arc::from(name);
        self.set.insert(Arc::clone(&shared));
        shared
    }

    /// How many names are held (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewTask;

    fn record() -> TaskRecord {
        let mut task = TaskRecord::new(Uuid::new_v4(), NewTask::new("send", serde_json::json!([1, "a"])));
        task.queue = "mail".into();
        task.extra.insert("k".into(), Value::from(2));
        task.limit_key = Some("user-7".into());
        task.unique = Some(Unique { key: "send:1".into(), window: 3.0 });
        task
    }

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let mut names = Names::default();
        let task = record();
        let held = Held::new(&task, &mut names);
        assert!(held.0.ran.is_none(), "nothing of a run is stored for a waiting task");
        assert_eq!(held.record(task.uuid), task);
        assert_eq!(held.message(task.uuid), task.message());
        assert_eq!(held.task_name(), "send");
        assert_eq!(held.queue(), "mail");
        assert_eq!(held.limit_key(), Some("user-7"));
        let mut ran = record();
        ran.worker = Some("w1".into());
        ran.started_at = Some(5.5);
        ran.error = Some("boom".into());
        ran.result = Some(Value::Null);
        assert_eq!(Held::new(&ran, &mut names).record(ran.uuid), ran);
    }

    #[test]
    fn writes_over_a_record_keep_its_unique_key_and_share_names() {
        let mut names = Names::default();
        let task = record();
        let mut held = Held::new(&task, &mut names);
        let mut done = task.clone();
        done.unique = None;
        done.status = TaskStatus::Success;
        done.result = Some(Value::from(5));
        done.worker = Some("w1".into());
        held.overwrite(&done, &mut names);
        let stored = held.record(task.uuid);
        assert_eq!(stored.unique, task.unique);
        assert_eq!(TaskRecord { unique: None, ..stored }, done);
        // A plugin may rename the task or move it; the names follow.
        let mut moved = done.clone();
        moved.task_name = "resend".into();
        moved.queue = "other".into();
        moved.worker = None;
        moved.result = None;
        held.overwrite(&moved, &mut names);
        assert!(held.0.ran.is_none());
        assert_eq!(TaskRecord { unique: None, ..held.record(task.uuid) }, moved);
        let mut other = Held::new(&moved, &mut names);
        assert!(Arc::ptr_eq(&other.0.task_name, &held.0.task_name));
        other.cancel("no", 9.0);
        let cancelled = other.record(task.uuid);
        assert_eq!(
            (cancelled.status, cancelled.error.as_deref(), cancelled.updated_at),
            (TaskStatus::Cancel, Some("no"), 9.0)
        );
    }

    #[test]
    fn names_are_shared_and_unused_ones_are_dropped() {
        let mut names = Names::default();
        let a = names.get("send");
        let b = names.get("send");
        assert!(Arc::ptr_eq(&a, &b));
        // Names nobody holds any more go once the set is full.
        for i in 0..NAMES_KEPT {
            drop(names.get(&format!("once-{i}")));
        }
        names.get("one-more");
        assert!(names.len() <= 3, "{} names kept", names.len());
        assert!(Arc::ptr_eq(&names.get("send"), &a));
    }
}
