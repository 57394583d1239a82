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

/// A status as stored (`"new"`, `"process"`, …).
pub(super) fn parse_status(s: &str) -> Option<TaskStatus> {
    [
        TaskStatus::New,
        TaskStatus::Process,
        TaskStatus::Success,
        TaskStatus::Error,
        TaskStatus::Cancel,
        TaskStatus::Retry,
    ]
    .into_iter()
    .find(|status| status.as_str() == s)
}
