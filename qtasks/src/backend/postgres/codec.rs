//! Records to and from rows: the JSON values (arguments, result, extra
//! fields) travel as text, stored exactly as encoded; everything else has
//! a column of its own type.
//!
//! Reading never fails on a value that is not valid JSON (a row written by
//! hand or by another program): what cannot be decoded is salvaged (the
//! text as a JSON string, or no extra fields) and the problem is reported
//! beside the record, so `get` and `wait` still show the task, and `fetch`
//! ends it `error` with the reason instead of running it.
//!
//! The worker that ran a task and when its run began
//! ([`TaskRecord::worker`], [`TaskRecord::started_at`]) have no column:
//! they travel in the `extra` text under the reserved keys [`WORKER`] and
//! [`STARTED_AT`], put in on write and taken out on read, so the schema
//! needs no migration for them and the extra fields a reader sees are the
//! task's own.

use crate::model::{Name, TaskMessage, TaskRecord, TaskStatus, Unique};
use crate::queue::DEFAULT_QUEUE;
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

/// The reserved key of the `extra` text holding [`TaskRecord::worker`].
const WORKER: &str = "__qtasks_worker";
/// The reserved key of the `extra` text holding [`TaskRecord::started_at`].
const STARTED_AT: &str = "__qtasks_started_at";

/// A record as its columns: what statements bind.
pub(super) struct Encoded {
    pub(super) args: String,
    pub(super) result: Option<String>,
    pub(super) extra: Option<String>,
}

impl Encoded {
    /// Encodes the JSON values of `task`.
    pub(super) fn of(task: &TaskRecord) -> Result<Self, serde_json::Error> {
        Ok(Self {
            args: serde_json::to_string(&task.args)?,
            result: task.result.as_ref().map(serde_json::to_string).transpose()?,
            extra: extra_text(task)?,
        })
    }

    /// The size `max_message_size` is compared with.
    pub(super) fn size(&self, task: &TaskRecord) -> usize {
        self.args.len() + self.extra.as_ref().map_or(0, String::len) + task.task_name.len() + task.queue.len()
    }
}

/// The `extra` text of `task`: its extra fields, with its worker and start
/// time under the reserved keys; `None` when there is nothing to store.
fn extra_text(task: &TaskRecord) -> Result<Option<String>, serde_json::Error> {
    if task.worker.is_none() && task.started_at.is_none() {
        return if task.extra.is_empty() { Ok(None) } else { serde_json::to_string(&task.extra).map(Some) };
    }
    let mut extra = task.extra.clone();
    if let Some(worker) = &task.worker {
        extra.insert(WORKER.to_owned(), Value::String(worker.to_string()));
    }
    if let Some(at) = task.started_at {
        extra.insert(STARTED_AT.to_owned(), Value::from(at));
    }
    serde_json::to_string(&extra).map(Some)
}

/// Takes the worker and start time out of the extra fields as read.
fn lift_run(extra: &mut Map<String, Value>) -> (Option<Name>, Option<f64>) {
    let worker = match extra.remove(WORKER) {
        Some(Value::String(worker)) => Some(worker.into()),
        _ => None,
    };
    let started_at = extra.remove(STARTED_AT).and_then(|at| at.as_f64());
    (worker, started_at)
}

/// Decodes a JSON text, or salvages it as a JSON string, noting the problem.
fn json(text: String, what: &str, problems: &mut Vec<String>) -> Value {
    match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(e) => {
            problems.push(format!("{what}: {e}"));
            Value::String(text)
        }
    }
}

/// The extra fields, or none (noting the problem) if they are not a JSON object.
fn extra(text: Option<String>, problems: &mut Vec<String>) -> Map<String, Value> {
    let Some(text) = text else { return Map::new() };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            problems.push(format!("extra fields: not a JSON object but {other}"));
            Map::new()
        }
        Err(e) => {
            problems.push(format!("extra fields: {e}"));
            Map::new()
        }
    }
}

/// An attempt as stored, in range (the first run is 1).
fn attempt(n: i64) -> u32 {
    u32::try_from(n.max(1)).unwrap_or(u32::MAX)
}

/// A record from a row of [`RECORD_COLUMNS`](super::sql::RECORD_COLUMNS), and
/// why it cannot run (`None`: it decoded).
pub(super) fn record(row: &PgRow) -> Result<(TaskRecord, Option<String>), sqlx::Error> {
    let mut problems = Vec::new();
    let status_text: String = row.try_get(5)?;
    let status = TaskStatus::parse(&status_text).unwrap_or_else(|| {
        problems.push(format!("unknown status `{status_text}`"));
        TaskStatus::Error
    });
    let args = json(row.try_get(4)?, "arguments", &mut problems);
    let result = row.try_get::<Option<String>, _>(8)?.map(|r| json(r, "result", &mut problems));
    let mut extra = extra(row.try_get(11)?, &mut problems);
    let (worker, started_at) = lift_run(&mut extra);
    let unique = match (row.try_get::<Option<String>, _>(13)?, row.try_get::<Option<f64>, _>(14)?) {
        (Some(key), window) => Some(Unique { key, window: window.unwrap_or(0.0) }),
        (None, _) => None,
    };
    let task = TaskRecord {
        uuid: row.try_get(0)?,
        task_name: row.try_get::<&str, _>(1)?.into(),
        queue: row.try_get::<&str, _>(2)?.into(),
        priority: row.try_get(3)?,
        args,
        status,
        created_at: row.try_get(6)?,
        updated_at: row.try_get(7)?,
        result,
        error: row.try_get(9)?,
        attempt: attempt(row.try_get(10)?),
        extra,
        limit_key: row.try_get(12)?,
        unique,
        worker,
        started_at,
    };
    Ok((task, problem(problems)))
}

fn problem(problems: Vec<String>) -> Option<String> {
    (!problems.is_empty()).then(|| format!("undecodable record: {}", problems.join("; ")))
}

/// A task taken by `fetch`, from a `task` row of `fetch_tasks`: its
/// message, its run, and why it cannot run (then the message holds what
/// could be salvaged).
pub(super) struct Taken {
    pub(super) message: TaskMessage,
    pub(super) run: i64,
    pub(super) problem: Option<String>,
}

/// Decodes a `task` row of `fetch_tasks` (columns `o_uuid` to `o_run`).
pub(super) fn taken(row: &PgRow) -> Result<Taken, sqlx::Error> {
    let mut problems = Vec::new();
    let uuid: Uuid = row.try_get("o_uuid")?;
    let args = json(row.try_get("o_args")?, "arguments", &mut problems);
    let mut extra = extra(row.try_get("o_extra")?, &mut problems);
    // A task put back after a run wrote its record: a new run, no worker yet.
    lift_run(&mut extra);
    let message = TaskMessage {
        uuid,
        task_name: row.try_get::<&str, _>("o_task_name")?.into(),
        queue: row.try_get::<Option<&str>, _>("o_queue")?.unwrap_or(DEFAULT_QUEUE).into(),
        priority: row.try_get("o_priority")?,
        args,
        created_at: row.try_get("o_created")?,
        attempt: attempt(row.try_get("o_attempt")?),
        extra,
        limit_key: row.try_get("o_limit_key")?,
    };
    Ok(Taken { message, run: row.try_get("o_run")?, problem: problem(problems) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_json_is_salvaged_and_reported() {
        let mut problems = Vec::new();
        assert_eq!(json("[1, 2]".into(), "arguments", &mut problems), json!([1, 2]));
        assert!(problems.is_empty());
        assert_eq!(json("{nope".into(), "arguments", &mut problems), json!("{nope"));
        assert_eq!(extra(Some("[1]".into()), &mut problems), Map::new());
        assert_eq!(problems.len(), 2);
        let reason = problem(problems).unwrap();
        assert!(reason.starts_with("undecodable record: arguments: "), "{reason}");
        assert!(reason.contains("extra fields: not a JSON object"), "{reason}");
    }

    #[test]
    fn statuses_parse_as_stored() {
        for status in [TaskStatus::New, TaskStatus::Process, TaskStatus::Retry, TaskStatus::Cancel] {
            assert_eq!(TaskStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(TaskStatus::parse("lost"), None);
    }

    #[test]
    fn attempts_stay_in_range() {
        assert_eq!((attempt(0), attempt(3), attempt(i64::MAX)), (1, 3, u32::MAX));
    }

    #[test]
    fn empty_extra_fields_are_not_stored() {
        let task = TaskRecord::new(Uuid::nil(), crate::model::NewTask::new("t", json!([null])));
        let encoded = Encoded::of(&task).unwrap();
        assert_eq!((encoded.args.as_str(), encoded.extra, encoded.result), ("[null]", None, None));
    }

    #[test]
    fn the_worker_and_start_travel_in_the_extra_text_and_come_back_out() {
        let mut task = TaskRecord::new(Uuid::nil(), crate::model::NewTask::new("t", json!([])));
        task.extra.insert("mine".into(), json!(1));
        task.worker = Some("host-1-abcdef12".into());
        task.started_at = Some(1_700_000_000.25);
        let text = Encoded::of(&task).unwrap().extra.unwrap();
        let mut extra = extra(Some(text), &mut Vec::new());
        assert_eq!(lift_run(&mut extra), (Some("host-1-abcdef12".into()), Some(1_700_000_000.25)));
        assert_eq!(extra, task.extra, "the task's own extra fields, as written");
    }
}
