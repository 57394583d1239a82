//! Finishing in batches: every end of a task goes to one task per backend,
//! which writes whatever has arrived in one call of the finish script
//! (`lua/finish.lua`), one call per queue's keys on a cluster. Tasks that
//! end together share the script's fixed cost and its stats updates; a
//! task that ends alone is written at once, alone. Up to
//! [`BATCHES_IN_FLIGHT`] calls are in flight at once, pipelined on the
//! backend's connection.

use super::cluster::Conn;
use super::fetch::DEAD_LETTERS_KEPT;
use super::keys::{Keys, stats_field};
use super::scripts::FINISH;
use super::{KIND, RedisBackend, encode_error, error, expire_millis, redis_error, run_arg};
use crate::backend::batch::write_batches;
use crate::backend::{BackendError, BackendErrorKind};
use crate::model::TaskRecord;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most ends written in one script call.
const FINISH_BATCH: usize = 256;
/// Most script calls in flight at once.
const BATCHES_IN_FLIGHT: usize = 4;
/// Most bytes of records in one script call (a call holds at least one
/// task): large results split a batch, so one call never keeps the server
/// busy for long.
const CALL_BYTES: usize = 1 << 20;

/// One end to write, and who waits for the outcome (the script's reply
/// for this task, see `lua/finish.lua`).
pub(super) struct End {
    keys: Arc<Keys>,
    uuid: uuid::Uuid,
    data: String,
    status: &'static str,
    field: String,
    run: String,
    retention_ms: u64,
    reply: oneshot::Sender<Result<redis::Value, BackendError>>,
}

/// The finishing task stopped before it answered (its runtime is shutting down).
fn stopped<E>(_: E) -> BackendError {
    error(BackendErrorKind::Other, "storing a final status: the finishing task stopped")
}

impl RedisBackend {
    /// Writes a final (or `retry`) record for `run` (`None`: not fenced)
    /// in the next batch, see `lua/finish.lua`. A record key that holds
    /// another type than a record gets the end filed as a dead letter.
    pub(super) async fn finish_run(&self, task: &TaskRecord, run: Option<u64>) -> Result<(), BackendError> {
        let keys = self.home(&task.queue);
        let (reply, outcome) = oneshot::channel();
        let end = End {
            keys: Arc::clone(&keys),
            uuid: task.uuid,
            data: serde_json::to_string(task).map_err(encode_error("the task"))?,
            status: task.status.as_str(),
            field: stats_field(&task.task_name, task.status),
            run: run_arg(run),
            retention_ms: self.retention.map_or(0, expire_millis),
            reply,
        };
        self.finisher().send(end).map_err(stopped)?;
        match outcome.await.map_err(stopped)?? {
            redis::Value::Int(2) => {
                tracing::warn!(backend = KIND, uuid = %task.uuid, run, status = %task.status, "a run whose lease was taken back finished after another run of the task: its end is not stored")
            }
            redis::Value::Int(3) => {
                tracing::warn!(backend = KIND, uuid = %task.uuid, run, status = %task.status, "a run whose lease was taken back finished before the task ran again: its end is stored")
            }
            redis::Value::Int(_) => {}
            redis::Value::BulkString(message) => {
                let message = String::from_utf8_lossy(&message);
                return Err(error(BackendErrorKind::Server, format!("storing a final status: {message}")));
            }
            other => {
                // The record key holds another type: the end goes to the dead letters.
                let (kind, entry): (String, Option<String>) = redis::from_redis_value(other).map_err(|e| {
                    error(BackendErrorKind::Decode, "storing a final status: unexpected reply from the finish script")
                        .with_source(e)
                })?;
                let reason = format!("the record key holds a {kind}, not a task record (a hash), when the task ended");
                tracing::error!(backend = KIND, uuid = %task.uuid, key = %keys.dead, %reason, "the final record was moved to the dead-letter list");
                let record = serde_json::to_string(task).map_err(encode_error("the task"))?;
                let letter = serde_json::json!({
                    "uuid": task.uuid, "reason": reason, "entry": entry, "record": record, "at": crate::model::now(),
                });
                let _: () = redis::pipe()
                    .rpush(&keys.dead, letter.to_string())
                    .ignore()
                    .ltrim(&keys.dead, -(DEAD_LETTERS_KEPT as isize), -1)
                    .ignore()
                    .query_async(&mut self.conn())
                    .await
                    .map_err(redis_error("filing a dead letter"))?;
            }
        }
        Ok(())
    }

    /// The queue of the finishing task, starting it if it is not running.
    fn finisher(&self) -> mpsc::UnboundedSender<End> {
        self.shared.finisher.sender(|receiver| {
            let conn = self.conn();
            tokio::spawn(write_batches(receiver, FINISH_BATCH, BATCHES_IN_FLIGHT, move |batch| {
                write(conn.clone(), batch)
            }))
        })
    }
}

/// Writes one batch, a script call per set of keys (one on a server) and
/// per [`CALL_BYTES`] of records, and answers each of its ends.
async fn write(mut conn: Conn, mut batch: Vec<End>) {
    // On a cluster, the ends of each queue's keys together (a stable sort:
    // each queue's keep their order).
    batch.sort_by(|a, b| a.keys.prefix.cmp(&b.keys.prefix));
    while !batch.is_empty() {
        let mut bytes = 0;
        let split = batch
            .iter()
            .enumerate()
            .position(|(i, e)| {
                bytes += e.data.len();
                i > 0 && (e.keys.prefix != batch[0].keys.prefix || bytes > CALL_BYTES)
            })
            .unwrap_or(batch.len());
        let rest = batch.split_off(split);
        write_at(&mut conn, batch).await;
        batch = rest;
    }
}

/// Writes ends that live under the same keys in one script call.
async fn write_at(conn: &mut Conn, ends: Vec<End>) {
    let keys = &ends[0].keys;
    let mut call = FINISH.key(&keys.inflight);
    call.key(&keys.held).key(&keys.stats).arg(&keys.done).arg(&keys.holds_prefix).arg(&keys.prefix);
    for end in &ends {
        call.key(keys.task(end.uuid));
        call.arg(&end.data).arg(end.status).arg(end.uuid.hyphenated().to_string());
        call.arg(&end.field).arg(&end.run).arg(end.retention_ms);
    }
    let replies = match call.invoke_async::<Vec<redis::Value>>(conn).await {
        Ok(replies) if replies.len() == ends.len() => replies,
        Ok(replies) => {
            let e = format!("storing final statuses: {} answers for {} tasks", replies.len(), ends.len());
            for end in ends {
                let _ = end.reply.send(Err(error(BackendErrorKind::Decode, e.clone())));
            }
            return;
        }
        Err(e) => {
            tracing::warn!(backend = KIND, error = %e, tasks = ends.len(), "storing final statuses failed");
            let e = redis_error("storing a final status")(e);
            for end in ends {
                let _ = end.reply.send(Err(error(e.kind(), e.to_string())));
            }
            return;
        }
    };
    for (end, reply) in ends.into_iter().zip(replies) {
        let _ = end.reply.send(Ok(reply));
    }
}
