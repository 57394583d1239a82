//! How records are read back from a record hash: the fields a read asks for,
//! decoding the JSON record with the `process` status the fetch script
//! writes beside it, the `cancel` record of a task that never ran, and
//! statuses as stored.

use crate::model::{TaskRecord, TaskStatus};

/// The fields of a record hash a read needs: the JSON record, the status
/// and the time (µs, server clock) the fetch script marked it `process`.
pub(super) const RECORD_FIELDS: [&str; 3] = ["data", "status", "started"];
pub(super) type RecordFields = (Option<Vec<u8>>, Option<String>, Option<f64>);

/// Decodes a record. The fetch script marks a taken task `process` in the
/// hash's `status` and `started` fields without rewriting the JSON (one
/// round trip per batch instead of one write per task), so a `new` record
/// whose hash says `process` is reported as `process` since `started`.
pub(super) fn decode_record(
    data: &[u8],
    status: Option<&str>,
    started_us: Option<f64>,
) -> Result<TaskRecord, serde_json::Error> {
    let mut task: TaskRecord = serde_json::from_slice(data)?;
    if task.status == TaskStatus::New && status == Some("process") {
        task.status = TaskStatus::Process;
        // The server's clock may lag the client's: never let time go back.
        if let Some(us) = started_us {
            task.updated_at = task.updated_at.max(us / 1_000_000.0);
        }
    }
    Ok(task)
}

/// The `cancel` record of a task that was queued or held: status `cancel`,
/// the reason as its error, no result.
pub(super) fn cancelled(mut task: TaskRecord, reason: &str) -> TaskRecord {
    task.status = TaskStatus::Cancel;
    task.error = Some(reason.to_owned());
    task.result = None;
    task.updated_at = task.updated_at.max(crate::model::now());
    task
}

/// Decodes the record of a task the fetch script took as `id`: the reason
/// it cannot run if it does not decode or holds another task.
pub(super) fn decode_taken(id: &str, data: &[u8]) -> Result<TaskRecord, String> {
    let task: TaskRecord = serde_json::from_slice(data).map_err(|e| format!("undecodable record: {e}"))?;
    match uuid::Uuid::try_parse(id) {
        Ok(uuid) if uuid == task.uuid => Ok(task),
        _ => Err(format!("the record holds task {}, not {id}", task.uuid)),
    }
}

/// The `error` record of task `id` whose stored record cannot run, with
/// `reason` as its error: what can be read of the stored one (`data`) is
/// kept (name, priority, arguments, creation time, attempt, extra fields),
/// the rest is left empty.
pub(super) fn error_record(id: &str, data: Option<&[u8]>, reason: &str) -> TaskRecord {
    use serde_json::Value;
    let salvaged = data.and_then(|d| serde_json::from_slice::<Value>(d).ok());
    let field = |name: &str| salvaged.as_ref().and_then(|v| v.get(name));
    let now = crate::model::now();
    let created_at = field("created_at").and_then(Value::as_f64).filter(|t| t.is_finite()).unwrap_or(now);
    TaskRecord {
        uuid: uuid::Uuid::try_parse(id).unwrap_or_default(),
        task_name: field("task_name").and_then(Value::as_str).unwrap_or_default().into(),
        priority: field("priority").and_then(Value::as_i64).unwrap_or(0),
        args: field("args").cloned().unwrap_or(Value::Null),
        status: TaskStatus::Error,
        created_at,
        updated_at: now.max(created_at),
        result: None,
        error: Some(reason.to_owned()),
        attempt: field("attempt").and_then(Value::as_u64).and_then(|a| u32::try_from(a).ok()).unwrap_or(1),
        extra: field("extra").and_then(Value::as_object).cloned().unwrap_or_default(),
        queue: field("queue").and_then(Value::as_str).unwrap_or(crate::queue::DEFAULT_QUEUE).into(),
        limit_key: field("limit_key").and_then(Value::as_str).map(str::to_owned),
        unique: None,
        worker: None,
        started_at: None,
    }
}
