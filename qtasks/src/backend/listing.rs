//! Listing an app's task records, newest first, a page at a time
//! ([`Backend::list_tasks`](super::Backend::list_tasks)): what the
//! dashboard's task table and `GET /api/tasks` read.
//!
//! Pages are keyset-paginated: a page ends with a [`TaskCursor`] (the
//! `created_at` and uuid of its last record) and the next page starts
//! strictly after it, so a page costs the same at the millionth record as
//! at the first and a record enqueued meanwhile never shifts a page.

use crate::model::{TaskRecord, TaskStatus, Timestamp};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The largest page [`Backend::list_tasks`](super::Backend::list_tasks)
/// gives; a larger [`TaskQuery::limit`] is lowered to it.
pub const MAX_PAGE: usize = 500;

/// Which records [`Backend::list_tasks`](super::Backend::list_tasks) lists,
/// and from where. Every filter set must hold (they are and-ed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskQuery {
    /// Only records with this status.
    pub status: Option<TaskStatus>,
    /// Only tasks of this name.
    pub task_name: Option<String>,
    /// Only tasks of this queue.
    pub queue: Option<String>,
    /// Only tasks enqueued at or after this time.
    pub since: Option<Timestamp>,
    /// Only tasks enqueued before this time.
    pub until: Option<Timestamp>,
    /// Start after this record (the [`TaskPage::next`] of the page before);
    /// `None`: from the newest.
    pub after: Option<TaskCursor>,
    /// How many records at most (0 is read as 1; over [`MAX_PAGE`] as it).
    pub limit: usize,
}

impl TaskQuery {
    /// The newest `limit` records, without filters.
    pub fn newest(limit: usize) -> Self {
        Self { limit, ..Self::default() }
    }

    /// Only records with `status`.
    pub fn status(mut self, status: TaskStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only tasks called `name`.
    pub fn task_name(mut self, name: impl Into<String>) -> Self {
        self.task_name = Some(name.into());
        self
    }

    /// Only tasks of `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Only tasks enqueued in `[since, until)` (either bound may be `None`).
    pub fn created(mut self, since: Option<Timestamp>, until: Option<Timestamp>) -> Self {
        self.since = since;
        self.until = until;
        self
    }

    /// Starting after `cursor`.
    pub fn after(mut self, cursor: Option<TaskCursor>) -> Self {
        self.after = cursor;
        self
    }

    /// The page size to use: `limit` within `1..=MAX_PAGE`.
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }

    /// Whether `task` passes every filter and comes after the cursor.
    pub fn matches(&self, task: &TaskRecord) -> bool {
        self.status.is_none_or(|s| task.status == s)
            && self.task_name.as_ref().is_none_or(|n| &task.task_name == n)
            && self.queue.as_ref().is_none_or(|q| &task.queue == q)
            && self.since.is_none_or(|t| task.created_at >= t)
            && self.until.is_none_or(|t| task.created_at < t)
            && self.after.is_none_or(|c| c.is_before(&TaskCursor::of(task)))
    }

    /// Lists `records` (any order, any number) as a backend without an
    /// index does: filters, sorts newest first and cuts a page. The
    /// default [`Backend::list_tasks`](super::Backend::list_tasks) and the
    /// memory backend use it.
    pub fn page_of(&self, records: impl IntoIterator<Item = TaskRecord>) -> TaskPage {
        let mut tasks: Vec<TaskRecord> = records.into_iter().filter(|t| self.matches(t)).collect();
        tasks.sort_by(|a, b| TaskCursor::of(a).cmp_newest_first(&TaskCursor::of(b)));
        TaskPage::cut(tasks, self.page_size())
    }
}

/// Where a page of [`Backend::list_tasks`](super::Backend::list_tasks)
/// ended: the `created_at` and uuid of its last record. Records are
/// ordered newest first, ties broken by uuid (greater first), so the
/// order is total and a cursor names one place in it.
///
/// Its text form (`Display`, `FromStr`, serde) is `{created_at}_{uuid}`,
/// opaque to clients of the JSON API.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskCursor {
    /// The last record's `created_at`.
    pub created_at: Timestamp,
    /// The last record's uuid.
    pub uuid: Uuid,
}

impl TaskCursor {
    /// The place of `task`.
    pub fn of(task: &TaskRecord) -> Self {
        Self { created_at: task.created_at, uuid: task.uuid }
    }

    /// `Less` when `self` comes first in the listing (is newer).
    pub fn cmp_newest_first(&self, other: &Self) -> Ordering {
        other.created_at.total_cmp(&self.created_at).then_with(|| other.uuid.cmp(&self.uuid))
    }

    /// Whether `self` comes before `other` in the listing.
    pub fn is_before(&self, other: &Self) -> bool {
        self.cmp_newest_first(other) == Ordering::Less
    }
}

impl fmt::Display for TaskCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` of an f64 round-trips exactly.
        write!(f, "{:?}_{}", self.created_at, self.uuid.simple())
    }
}

/// A cursor text that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("not a task cursor (expected `{{created_at}}_{{uuid}}`)")]
pub struct BadCursor;

impl FromStr for TaskCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (at, uuid) = s.split_once('_').ok_or(BadCursor)?;
        let created_at: f64 = at.parse().map_err(|_| BadCursor)?;
        if !created_at.is_finite() {
            return Err(BadCursor);
        }
        Ok(Self { created_at, uuid: uuid.parse().map_err(|_| BadCursor)? })
    }
}

impl Serialize for TaskCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TaskCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One page of [`Backend::list_tasks`](super::Backend::list_tasks).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TaskPage {
    /// The records, newest first.
    pub tasks: Vec<TaskRecord>,
    /// Where the next page starts ([`TaskQuery::after`]); `None` when this
    /// page is the last one. A backend that bounds the work of one page
    /// (Redis reads at most 10 000 index entries) may end a page short,
    /// with `next` set, when few tasks match a filter.
    pub next: Option<TaskCursor>,
}

impl TaskPage {
    /// A page of `tasks` (sorted newest first, possibly one page and more):
    /// the first `size`, with a cursor if more follow.
    pub fn cut(mut tasks: Vec<TaskRecord>, size: usize) -> Self {
        let more = tasks.len() > size;
        tasks.truncate(size);
        let next = if more { tasks.last().map(TaskCursor::of) } else { None };
        Self { tasks, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NewTask;
    use serde_json::json;

    fn at(created_at: f64, n: u128) -> TaskRecord {
        let mut t = TaskRecord::new(Uuid::from_u128(n), NewTask::new("t", json!([])));
        t.created_at = created_at;
        t
    }

    #[test]
    fn cursors_round_trip_as_text() {
        let c = TaskCursor { created_at: 1_700_000_000.123_456_7, uuid: Uuid::from_u128(42) };
        let back: TaskCursor = c.to_string().parse().unwrap();
        assert_eq!(back, c);
        assert!("nope".parse::<TaskCursor>().is_err());
        assert!("inf_00000000000000000000000000000000".parse::<TaskCursor>().is_err());
        assert!("1.5_zz".parse::<TaskCursor>().is_err());
    }

    #[test]
    fn pages_go_newest_first_and_never_repeat_a_record() {
        // Ties on created_at are broken by uuid.
        let all: Vec<TaskRecord> = (0..25).map(|i| at(f64::from((i / 3) as u32), i)).collect();
        let mut seen = Vec::new();
        let mut query = TaskQuery::newest(4);
        loop {
            let page = query.page_of(all.clone());
            seen.extend(page.tasks.iter().map(|t| t.uuid.as_u128()));
            match page.next {
                Some(next) => query = query.after(Some(next)),
                None => break,
            }
        }
        let expected: Vec<u128> = (0..25).rev().collect();
        assert_eq!(seen, expected);
    }
}
