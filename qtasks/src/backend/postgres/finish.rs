//! Finishing in batches: every `finish` goes to one task per backend,
//! which writes whatever has arrived in one statement (`finish_tasks`),
//! so tasks that end together share a round trip and a commit. A task that
//! ends alone is written at once, as alone; under load, the batches grow
//! by themselves while earlier ones are written. Up to
//! [`BATCHES_IN_FLIGHT`] batches are written at once, so their commits
//! share the server's disk flushes (group commit) instead of queueing for
//! one each.

use super::codec::Encoded;
use super::{BackendErrorKind, KIND, PostgresBackend, error, kind_of};
use crate::backend::batch::write_batches;
use crate::backend::{BackendError, retry_while_lost};
use crate::model::TaskRecord;
use sqlx::{PgPool, SqlStr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most ends written in one statement.
const FINISH_BATCH: usize = 256;
/// Most bytes of encoded values (arguments, results, errors, extra fields)
/// in one statement: large results split a batch into several statements,
/// so one statement never carries hundreds of megabytes. A statement holds
/// at least one end, whatever its size.
const STATEMENT_BYTES: usize = 4 << 20;
/// Most batches written at once (each on a connection of its own).
const BATCHES_IN_FLIGHT: usize = 4;
/// How long a batch that failed on a lost connection (or a deadlock with
/// another batch) is retried.
const RETRY_WITHIN: Duration = Duration::from_secs(3);

/// One end to write, and who waits for the outcome.
pub(super) struct Pending {
    app: Arc<str>,
    task: TaskRecord,
    encoded: Encoded,
    run: Option<i64>,
    retention_ms: Option<i64>,
    reply: oneshot::Sender<Result<i32, BackendError>>,
}

impl PostgresBackend {
    /// Writes the end of `task` for `run` (`None`: not fenced), in the next
    /// batch: see `finish_task` in the migration for the outcome.
    pub(super) async fn finish_batched(&self, task: &TaskRecord, run: Option<i64>) -> Result<i32, BackendError> {
        let encoded = Encoded::of(task).map_err(super::encode_error("the task"))?;
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            app: Arc::clone(&self.app),
            task: task.clone(),
            encoded,
            run,
            retention_ms: self.retention_ms(),
            reply,
        };
        self.finisher()
            .send(pending)
            .map_err(|_| error(BackendErrorKind::Other, "storing a final status: the finishing task stopped"))?;
        outcome
            .await
            .map_err(|_| error(BackendErrorKind::Other, "storing a final status: the finishing task stopped"))?
    }

    /// The queue of the finishing task, starting it if it is not running.
    fn finisher(&self) -> mpsc::UnboundedSender<Pending> {
        let (pool, sql) = (&self.shared.pool, &self.shared.sql.finish_many);
        self.shared.finisher.sender(|receiver| {
            let (pool, sql) = (pool.clone(), sql.clone());
            tokio::spawn(write_batches(receiver, FINISH_BATCH, BATCHES_IN_FLIGHT, move |batch| {
                let (pool, sql) = (pool.clone(), sql.clone());
                async move { write_one(&pool, &sql, batch).await }
            }))
        })
    }
}

/// Worth retrying: a lost connection, or a deadlock with another batch
/// ending the same task (40P01).
fn retryable(e: &BackendError) -> bool {
    e.kind() == BackendErrorKind::Connection || e.message.contains("(40P01)")
}

/// Writes one batch, in statements of up to [`STATEMENT_BYTES`], and
/// answers each of its ends.
async fn write_one(pool: &PgPool, sql: &SqlStr, mut batch: Vec<Pending>) {
    // One lock order for every batch.
    batch.sort_by(|a, b| (&a.app, a.task.uuid).cmp(&(&b.app, b.task.uuid)));
    while !batch.is_empty() {
        let rest = batch.split_off(statement_len(&batch));
        write_statement(pool, sql, batch).await;
        batch = rest;
    }
}

/// How many of `batch`'s first ends one statement takes: at least one, and
/// no more than [`STATEMENT_BYTES`] of values together.
fn statement_len(batch: &[Pending]) -> usize {
    let mut bytes = 0;
    batch
        .iter()
        .position(|p| {
            bytes += p.size();
            bytes > STATEMENT_BYTES
        })
        .map_or(batch.len(), |over| over.max(1))
}

impl Pending {
    /// Bytes of its values in a statement.
    fn size(&self) -> usize {
        let (encoded, task) = (&self.encoded, &self.task);
        encoded.args.len()
            + encoded.result.as_ref().map_or(0, String::len)
            + encoded.extra.as_ref().map_or(0, String::len)
            + task.error.as_ref().map_or(0, String::len)
    }
}

/// Writes one statement's ends and answers each.
async fn write_statement(pool: &PgPool, sql: &SqlStr, batch: Vec<Pending>) {
    let written = retry_while_lost(RETRY_WITHIN, retryable, || write(pool, sql, &batch)).await;
    match written {
        Ok(outcomes) if outcomes.len() == batch.len() => {
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                let _ = pending.reply.send(Ok(outcome));
            }
        }
        Ok(outcomes) => {
            let e = format!("storing final statuses: {} answers for {} tasks", outcomes.len(), batch.len());
            for pending in batch {
                let _ = pending.reply.send(Err(error(BackendErrorKind::Decode, e.clone())));
            }
        }
        Err(e) => {
            tracing::warn!(backend = KIND, error = %e, tasks = batch.len(), "storing final statuses failed");
            for pending in batch {
                let _ = pending.reply.send(Err(error(e.kind(), e.to_string())));
            }
        }
    }
}

async fn write(pool: &PgPool, sql: &SqlStr, batch: &[Pending]) -> Result<Vec<i32>, BackendError> {
    let column = |f: fn(&Pending) -> i64| batch.iter().map(f).collect::<Vec<i64>>();
    let apps: Vec<&str> = batch.iter().map(|p| &*p.app).collect();
    let uuids: Vec<uuid::Uuid> = batch.iter().map(|p| p.task.uuid).collect();
    let runs: Vec<Option<i64>> = batch.iter().map(|p| p.run).collect();
    let statuses: Vec<&str> = batch.iter().map(|p| p.task.status.as_str()).collect();
    let names: Vec<&str> = batch.iter().map(|p| p.task.task_name.as_str()).collect();
    let queues: Vec<&str> = batch.iter().map(|p| p.task.queue.as_str()).collect();
    let args: Vec<&str> = batch.iter().map(|p| p.encoded.args.as_str()).collect();
    let created: Vec<f64> = batch.iter().map(|p| p.task.created_at).collect();
    let updated: Vec<f64> = batch.iter().map(|p| p.task.updated_at).collect();
    let results: Vec<Option<&str>> = batch.iter().map(|p| p.encoded.result.as_deref()).collect();
    let errors: Vec<Option<&str>> = batch.iter().map(|p| p.task.error.as_deref()).collect();
    let extras: Vec<Option<&str>> = batch.iter().map(|p| p.encoded.extra.as_deref()).collect();
    let limit_keys: Vec<Option<&str>> = batch.iter().map(|p| p.task.limit_key.as_deref()).collect();
    let retentions: Vec<Option<i64>> = batch.iter().map(|p| p.retention_ms).collect();
    sqlx::query_scalar::<_, Vec<i32>>(sql.clone())
        .bind(&apps)
        .bind(&uuids)
        .bind(&runs)
        .bind(&statuses)
        .bind(&names)
        .bind(&queues)
        .bind(column(|p| p.task.priority))
        .bind(&args)
        .bind(&created)
        .bind(&updated)
        .bind(&results)
        .bind(&errors)
        .bind(column(|p| i64::from(p.task.attempt)))
        .bind(&extras)
        .bind(&limit_keys)
        .bind(&retentions)
        .fetch_one(pool)
        .await
        .map_err(|e| {
            let code = match &e {
                sqlx::Error::Database(db) => db.code().map(|c| format!(" ({c})")).unwrap_or_default(),
                _ => String::new(),
            };
            error(kind_of(&e), format!("storing final statuses{code}")).with_source(e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewTask, TaskStatus};

    fn pending(result_bytes: usize) -> Pending {
        let mut task = TaskRecord::new(uuid::Uuid::new_v4(), NewTask::new("t", serde_json::json!([])));
        task.status = TaskStatus::Success;
        task.result = Some(serde_json::Value::String("x".repeat(result_bytes)));
        let encoded = Encoded::of(&task).unwrap();
        let (reply, _) = oneshot::channel();
        Pending { app: "a".into(), task, encoded, run: None, retention_ms: None, reply }
    }

    #[test]
    fn large_ends_split_a_batch_into_statements() {
        // Small ends share one statement.
        let small: Vec<Pending> = (0..256).map(|_| pending(10)).collect();
        assert_eq!(statement_len(&small), 256);
        // Ends of 1.5 MiB: two fit under the cap, a third would not.
        let large: Vec<Pending> = (0..5).map(|_| pending(1_500_000)).collect();
        assert_eq!(statement_len(&large), 2);
        // An end larger than the cap goes alone, not never.
        let huge = vec![pending(STATEMENT_BYTES + 1), pending(10)];
        assert_eq!(statement_len(&huge), 1);
        assert_eq!(statement_len(&huge[1..]), 1);
    }
}
