//! Taking tasks: one fetch script call per batch, run in a task of its own
//! so a dropped fetch puts back what it took (`take`, `pop`, `release`),
//! and the wait for work while the queue is empty, a `BLPOP` on the `wake`
//! list over a small pool of connections of their own (`await_work`,
//! `connect_blocking`), since a blocking command would stall the shared
//! multiplexed connection.

use super::codec::cancelled;
use super::scripts::{BURY, FETCH, RELEASE};
use super::{CONNECT_TIMEOUT, KIND, RedisBackend, error, lock, millis, redis_error};
use crate::backend::{Backend, BackendError, BackendErrorKind};
use crate::model::{TaskMessage, TaskRecord};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Longest a fetcher stays blocked before looking at the queue again, even
/// without a wake-up. A safety net: a wake-up token taken by a fetch that
/// was then cancelled is lost, and this bounds the delay it can cause.
pub(super) const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// Idle blocking connections kept for later fetches.
const BLOCKING_POOL: usize = 8;
/// Expired leases put back per fetch.
const REQUEUE_BATCH: usize = 1000;

/// Dead letters kept per app (the newest).
const DEAD_LETTERS_KEPT: usize = 10_000;

impl RedisBackend {
    /// Runs the fetch script once: appends the tasks taken to `out` and
    /// returns the time until the next lease deadline, if any.
    ///
    /// The round trip runs in a task of its own: if this future is dropped
    /// while the script runs, that task puts the tasks it took back into
    /// the queue at once, instead of leaving them to their lease.
    pub(super) async fn take(&self, max: usize, out: &mut Vec<TaskMessage>) -> Result<Option<i64>, BackendError> {
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let taken = this.pop(max).await;
            if let Err(Ok((_, messages))) = tx.send(taken) {
                let uuids: Vec<Uuid> = messages.iter().map(|m| m.uuid).collect();
                if let Err(e) = this.requeue(&uuids).await {
                    tracing::warn!(backend = KIND, error = %e, "could not requeue the tasks of a cancelled fetch; they return when their lease expires");
                }
            }
        });
        let (next_ms, messages) =
            rx.await.map_err(|_| error(BackendErrorKind::Other, "fetching tasks: the fetch task stopped"))??;
        // Nothing awaited from here on: the tasks reach `out` or the error is returned.
        out.extend(messages);
        Ok(next_ms)
    }

    /// One fetch script call, with decoding and dead letters.
    async fn pop(&self, max: usize) -> Result<(Option<i64>, Vec<TaskMessage>), BackendError> {
        let keys = &self.shared.keys;
        let (next_ms, dead, taken, cancels): (i64, u64, Vec<Value>, Vec<Value>) = FETCH
            .key(&keys.queue)
            .key(&keys.inflight)
            .key(&keys.held)
            .key(&keys.wake)
            .key(&keys.dead)
            .key(&keys.delayed)
            .arg(max)
            .arg(millis(self.lease))
            .arg(&keys.task_prefix)
            .arg(DEAD_LETTERS_KEPT)
            .arg(REQUEUE_BATCH)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error("fetching tasks"))?;
        if dead > 0 {
            tracing::error!(backend = KIND, key = %keys.dead, count = dead, "malformed queue entries moved to the dead-letter list");
        }
        let mut messages = Vec::with_capacity(taken.len() / 2);
        let mut buried = Vec::new();
        let mut taken = taken.into_iter();
        while let (Some(id), Some(data)) = (taken.next(), taken.next()) {
            let (Value::BulkString(id), Value::BulkString(data)) = (id, data) else {
                return Err(error(BackendErrorKind::Decode, "fetching tasks: unexpected reply from the fetch script"));
            };
            let id = String::from_utf8_lossy(&id).into_owned();
            match serde_json::from_slice::<TaskRecord>(&data) {
                Ok(task) if task.uuid.hyphenated().to_string() == id => messages.push(task.message()),
                Ok(task) => buried.push((id, data, format!("record holds task {}", task.uuid))),
                Err(e) => buried.push((id, data, format!("undecodable record: {e}"))),
            }
        }
        // Tasks whose cancel was requested while no worker held them: they
        // end `cancel` here (if this fails, they come back when the lease
        // the script gave them expires).
        let mut cancels = cancels.into_iter();
        while let (Some(id), Some(data), Some(reason)) = (cancels.next(), cancels.next(), cancels.next()) {
            let (Value::BulkString(id), Value::BulkString(data), Value::BulkString(reason)) = (id, data, reason) else {
                return Err(error(BackendErrorKind::Decode, "fetching tasks: unexpected reply from the fetch script"));
            };
            let id = String::from_utf8_lossy(&id).into_owned();
            match serde_json::from_slice::<TaskRecord>(&data) {
                Ok(task) if task.uuid.hyphenated().to_string() == id => {
                    let reason = String::from_utf8_lossy(&reason);
                    let task = cancelled(task, &reason);
                    tracing::info!(backend = KIND, uuid = %id, %reason, "task cancelled while no worker held it");
                    if let Err(e) = self.finish(&task).await {
                        tracing::warn!(backend = KIND, uuid = %id, error = %e, "could not end a cancelled task; retried when its lease expires");
                    }
                }
                Ok(task) => buried.push((id, data, format!("record holds task {}", task.uuid))),
                Err(e) => buried.push((id, data, format!("undecodable record: {e}"))),
            }
        }
        if !buried.is_empty() {
            let mut call = BURY.key(&keys.inflight);
            call.key(&keys.held).key(&keys.dead).arg(DEAD_LETTERS_KEPT);
            for (id, data, reason) in &buried {
                tracing::error!(backend = KIND, key = %keys.dead, uuid = %id, %reason, "queued task moved to the dead-letter list");
                let letter = serde_json::json!({
                    "entry": String::from_utf8_lossy(data),
                    "uuid": id,
                    "reason": reason,
                    "at": crate::model::now(),
                });
                call.arg(id).arg(letter.to_string());
            }
            // If this fails the tasks stay in flight and come back (and are
            // buried again) when their lease expires.
            let buried: Result<i64, _> = call.invoke_async(&mut self.conn()).await;
            if let Err(e) = buried {
                tracing::warn!(backend = KIND, error = %e, "filing dead letters failed");
            }
        }
        Ok(((next_ms >= 0).then_some(next_ms), messages))
    }

    /// Puts tasks taken but not handed out back into the queue, at their place.
    pub(super) async fn requeue(&self, uuids: &[Uuid]) -> Result<usize, BackendError> {
        if uuids.is_empty() {
            return Ok(0);
        }
        let keys = &self.shared.keys;
        let mut call = RELEASE.key(&keys.inflight);
        call.key(&keys.held).key(&keys.queue).key(&keys.wake);
        for uuid in uuids {
            call.arg(uuid.hyphenated().to_string());
        }
        let n: usize = call.invoke_async(&mut self.conn()).await.map_err(redis_error("requeueing tasks"))?;
        Ok(n)
    }

    /// Blocks until a wake-up token arrives or `block` passes.
    ///
    /// Only a token is taken here, never a task: if this future is dropped
    /// the token is lost with its connection, but no task is.
    pub(super) async fn await_work(&self, block: Duration) -> Result<(), BackendError> {
        let idle = lock(&self.shared.blocking).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.connect_blocking().await?,
        };
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(&self.shared.keys.wake).arg(block.as_secs_f64());
        let blpop = blpop.query_async::<Value>(&mut conn);
        // No response timeout on this connection: ours is the block plus a margin.
        match tokio::time::timeout(block + CONNECT_TIMEOUT, blpop).await {
            Ok(Ok(_)) => {
                let mut pool = lock(&self.shared.blocking);
                if pool.len() < BLOCKING_POOL {
                    pool.push(conn);
                }
                Ok(())
            }
            Ok(Err(e)) => Err(redis_error("waiting for tasks (BLPOP)")(e)),
            Err(_) => {
                Err(error(BackendErrorKind::Connection, "waiting for tasks (BLPOP): the server did not answer in time"))
            }
        }
    }

    /// Opens a connection for blocking commands, retrying with backoff.
    async fn connect_blocking(&self) -> Result<MultiplexedConnection, BackendError> {
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(Some(CONNECT_TIMEOUT)).set_response_timeout(None);
        let mut backoff = Duration::from_millis(50);
        let mut attempts = 0;
        loop {
            match self.shared.client.get_multiplexed_async_connection_with_config(&config).await {
                Ok(conn) => return Ok(conn),
                Err(e) if attempts >= 4 => return Err(redis_error("opening the blocking connection")(e)),
                Err(e) => {
                    tracing::warn!(backend = KIND, error = %e, "opening the blocking connection failed; retrying");
                    attempts += 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
}
