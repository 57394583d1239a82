//! A task's record as the memory backend holds it: compact while it waits.
//!
//! Most of a queued task's record is empty (no result, no error, no worker)
//! and its name and queue are the same few strings for every task. A task
//! that only the enqueue and the take have written is therefore held as a
//! [`Lean`] record: the fields a waiting task has, with its name and queue
//! shared through [`Names`]. The first write of a whole record (the
//! worker's, a cancel's) makes it [`Whole`](Held::Whole). What a reader gets
//! back is the same [`TaskRecord`] either way.

use crate::model::{TaskMessage, TaskRecord, TaskStatus, Timestamp, Unique};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

/// A record in the store: [`Lean`] until a whole record is written over it.
pub(super) enum Held {
    Lean(Box<Lean>),
    Whole(Box<TaskRecord>),
}

/// The record of a task nothing but the enqueue and the take wrote: no
/// result, error, worker or start time, and its name and queue shared.
pub(super) struct Lean {
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
}

impl Held {
    /// `task` as it is stored: lean if it has nothing a waiting task lacks.
    pub(super) fn new(task: &TaskRecord, names: &mut Names) -> Self {
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
        if result.is_some() || error.is_some() || worker.is_some() || started_at.is_some() {
            return Self::Whole(Box::new(task.clone()));
        }
        Self::Lean(Box::new(Lean {
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
        }))
    }

    pub(super) fn status(&self) -> TaskStatus {
        match self {
            Self::Lean(t) => t.status,
            Self::Whole(t) => t.status,
        }
    }

    /// Moves the task to `status` at `at` (the take, a release).
    pub(super) fn set_status(&mut self, status: TaskStatus, at: Timestamp) {
        match self {
            Self::Lean(t) => (t.status, t.updated_at) = (status, at),
            Self::Whole(t) => (t.status, t.updated_at) = (status, at),
        }
    }

    pub(super) fn task_name(&self) -> &str {
        match self {
            Self::Lean(t) => &t.task_name,
            Self::Whole(t) => &t.task_name,
        }
    }

    pub(super) fn queue(&self) -> &str {
        match self {
            Self::Lean(t) => &t.queue,
            Self::Whole(t) => &t.queue,
        }
    }

    pub(super) fn priority(&self) -> i64 {
        match self {
            Self::Lean(t) => t.priority,
            Self::Whole(t) => t.priority,
        }
    }

    pub(super) fn created_at(&self) -> Timestamp {
        match self {
            Self::Lean(t) => t.created_at,
            Self::Whole(t) => t.created_at,
        }
    }

    pub(super) fn updated_at(&self) -> Timestamp {
        match self {
            Self::Lean(t) => t.updated_at,
            Self::Whole(t) => t.updated_at,
        }
    }

    pub(super) fn limit_key(&self) -> Option<&str> {
        match self {
            Self::Lean(t) => t.limit_key.as_deref(),
            Self::Whole(t) => t.limit_key.as_deref(),
        }
    }

    pub(super) fn unique(&self) -> Option<&Unique> {
        match self {
            Self::Lean(t) => t.unique.as_ref(),
            Self::Whole(t) => t.unique.as_ref(),
        }
    }

    /// The unique key, once the record is dropped.
    pub(super) fn into_unique(self) -> Option<Unique> {
        match self {
            Self::Lean(t) => t.unique,
            Self::Whole(t) => t.unique,
        }
    }

    /// The task's record.
    pub(super) fn record(&self, uuid: Uuid) -> TaskRecord {
        match self {
            Self::Lean(t) => TaskRecord {
                uuid,
                task_name: String::from(&*t.task_name),
                priority: t.priority,
                args: t.args.clone(),
                status: t.status,
                created_at: t.created_at,
                updated_at: t.updated_at,
                result: None,
                error: None,
                attempt: t.attempt,
                extra: t.extra.clone(),
                queue: String::from(&*t.queue),
                limit_key: t.limit_key.clone(),
                unique: t.unique.clone(),
                worker: None,
                started_at: None,
            },
            Self::Whole(t) => TaskRecord::clone(t),
        }
    }

    /// The message a worker gets when it takes the task.
    pub(super) fn message(&self, uuid: Uuid) -> TaskMessage {
        match self {
            Self::Lean(t) => TaskMessage {
                uuid,
                task_name: String::from(&*t.task_name),
                priority: t.priority,
                args: t.args.clone(),
                created_at: t.created_at,
                attempt: t.attempt,
                extra: t.extra.clone(),
                queue: String::from(&*t.queue),
                limit_key: t.limit_key.clone(),
            },
            Self::Whole(t) => t.message(),
        }
    }

    /// The whole record, to write to (a lean one is made whole first).
    pub(super) fn whole(&mut self, uuid: Uuid) -> &mut TaskRecord {
        if let Self::Lean(_) = self {
            *self = Self::Whole(Box::new(self.record(uuid)));
        }
        match self {
            Self::Whole(t) => t,
            Self::Lean(_) => unreachable!("made whole above"),
        }
    }

    /// Writes `task` over the record, field by field: a string of the same
    /// task (its name, its queue) is copied into the buffer it already has,
    /// so a write allocates only for what is new. The unique key stays with
    /// the record whatever a plugin wrote.
    pub(super) fn overwrite(&mut self, task: &TaskRecord) {
        if let Self::Lean(lean) = self {
            let mut whole = task.clone();
            if whole.unique.is_none() {
                whole.unique = lean.unique.take();
            }
            *self = Self::Whole(Box::new(whole));
            return;
        }
        let Self::Whole(stored) = self else { return };
        // Destructured, so a field added to `TaskRecord` is not forgotten here.
        let TaskRecord {
            uuid,
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
        stored.uuid = *uuid;
        stored.task_name.clone_from(task_name);
        stored.priority = *priority;
        stored.args.clone_from(args);
        stored.status = *status;
        stored.created_at = *created_at;
        stored.updated_at = *updated_at;
        stored.result.clone_from(result);
        stored.error.clone_from(error);
        stored.attempt = *attempt;
        stored.extra.clone_from(extra);
        stored.queue.clone_from(queue);
        stored.limit_key.clone_from(limit_key);
        if unique.is_some() {
            stored.unique.clone_from(unique);
        }
        stored.worker.clone_from(worker);
        stored.started_at = *started_at;
    }
}

/// The task and queue names of a shard's lean records, each held once.
pub(super) struct Names {
    set: HashSet<Arc<str>, foldhash::fast::RandomState>,
    /// At this size, names no record holds any more are dropped.
    prune_at: usize,
}

/// Names kept before the first look for unused ones.
const NAMES_KEPT: usize = 256;

impl Default for Names {
    fn default() -> Self {
        Self { set: HashSet::default(), prune_at: NAMES_KEPT }
    }
}

impl Names {
    /// The shared copy of `name`.
    pub(super) fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(name) {
            return Arc::clone(shared);
        }
        if self.set.len() >= self.prune_at {
            // Many distinct names (queues or tasks named per use): keep the
            // ones still held, and look again when the set has doubled.
            self.set.retain(|n| Arc::strong_count(n) > 1);
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
    fn a_lean_record_reads_back_as_it_was_written() {
        let mut names = Names::default();
        let task = record();
        let held = Held::new(&task, &mut names);
        assert!(matches!(held, Held::Lean(_)));
        assert_eq!(held.record(task.uuid), task);
        assert_eq!(held.message(task.uuid), task.message());
        assert_eq!(held.task_name(), "send");
        assert_eq!(held.queue(), "mail");
        assert_eq!(held.limit_key(), Some("user-7"));
    }

    #[test]
    fn a_record_with_a_worker_or_a_result_is_held_whole() {
        let mut names = Names::default();
        let mut task = record();
        task.worker = Some("w1".into());
        assert!(matches!(Held::new(&task, &mut names), Held::Whole(_)));
        let mut task = record();
        task.result = Some(Value::Null);
        assert!(matches!(Held::new(&task, &mut names), Held::Whole(_)));
    }

    #[test]
    fn a_write_over_a_lean_record_keeps_its_unique_key() {
        let mut names = Names::default();
        let task = record();
        let mut held = Held::new(&task, &mut names);
        let mut done = task.clone();
        done.unique = None;
        done.status = TaskStatus::Success;
        done.result = Some(Value::from(5));
        held.overwrite(&done);
        assert!(matches!(held, Held::Whole(_)));
        let stored = held.record(task.uuid);
        assert_eq!(stored.unique, task.unique);
        assert_eq!(stored.result, Some(Value::from(5)));
        assert_eq!(stored.status, TaskStatus::Success);
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
