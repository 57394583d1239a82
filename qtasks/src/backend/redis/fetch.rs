//! Taking tasks: one fetch script call per batch, run in a task of its own
//! so a dropped fetch puts back what it took (`take`, `pop`, `requeue`),
//! giving up on records that cannot run (`bury`), the holder's liveness
//! (`keep_alive`), and the wait for work while the queue is empty, a
//! `BLPOP` on the `wake` list over a small pool of connections of their own
//! (`await_work`, `connect_blocking`), since a blocking command would stall
//! the shared multiplexed connection (on a cluster, `cluster::Wakers`).

use super::codec::{cancelled, decode_taken, error_record};
use super::keys::{Keys, stats_field};
use super::scripts::{BURY, FETCH, HEARTBEAT, RELEASE};
use super::{CONNECT_TIMEOUT, HEARTBEATS_PER_LIVENESS, KIND, RedisBackend, error, lock, millis, redis_error};
use crate::backend::{BackendError, BackendErrorKind, Fetch};
use crate::model::{TaskMessage, TaskStatus};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Longest a fetcher stays blocked before looking at the queue again, even
/// without a wake-up. A safety net: a wake-up token taken by a fetch that
/// was then cancelled is lost, and this bounds the delay it can cause.
pub(super) const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// Idle blocking connections kept for later fetches.
const BLOCKING_POOL: usize = 8;
/// Expired leases put back, delayed tasks promoted and dead holders reaped
/// per fetch; also how many bad entries a fetch looks at beyond those it
/// takes.
const REQUEUE_BATCH: usize = 1000;

/// Dead letters kept per app (the newest).
pub(super) const DEAD_LETTERS_KEPT: usize = 10_000;

/// A task taken, with its run.
type Taken = (TaskMessage, u64);

/// Tasks taken, with their run and the keys they live under.
type TakenAt = Vec<(TaskMessage, u64, Arc<Keys>)>;

/// A taken task whose record cannot run: it is dead-lettered and ends `error`.
struct GiveUp {
    id: String,
    run: u64,
    reason: String,
    /// The record's `data` as stored, if it has one.
    data: Option<Vec<u8>>,
}

/// The bytes of a bulk string in a script's reply.
fn bulk(value: Value) -> Result<Vec<u8>, BackendError> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        _ => Err(error(BackendErrorKind::Decode, "fetching tasks: unexpected reply from the fetch script")),
    }
}

/// A run number in a script's reply.
fn run_number(value: Value) -> Result<u64, BackendError> {
    match value {
        Value::Int(n) => u64::try_from(n)
            .map_err(|_| error(BackendErrorKind::Decode, "fetching tasks: a negative run from the fetch script")),
        _ => Err(error(BackendErrorKind::Decode, "fetching tasks: unexpected reply from the fetch script")),
    }
}

impl RedisBackend {
    /// Runs the fetch script once: appends the tasks taken to `out` and
    /// returns the time until the next lease or liveness deadline, if any.
    ///
    /// The round trip runs in a task of its own: if this future is dropped
    /// while the script runs, that task puts the tasks it took back into
    /// the queue at once, instead of leaving them to their lease.
    pub(super) async fn take(
        &self,
        from: &Fetch,
        max: usize,
        out: &mut Vec<TaskMessage>,
    ) -> Result<Option<i64>, BackendError> {
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let from = from.clone();
        tokio::spawn(async move {
            let taken = this.pop_all(&from, max).await;
            if let Err(Ok((_, taken))) = tx.send(taken) {
                for (message, run, keys) in &taken {
                    if let Err(e) = this.requeue(keys, &[(message.uuid, *run)], None).await {
                        tracing::warn!(backend = KIND, error = %e, "could not requeue a task of a cancelled fetch; it returns when its lease expires");
                    }
                }
            }
        });
        let (next_ms, taken) =
            rx.await.map_err(|_| error(BackendErrorKind::Other, "fetching tasks: the fetch task stopped"))??;
        // Nothing awaited from here on: the tasks reach `out` or the error is returned.
        for (message, run, keys) in taken {
            self.shared.runs.insert(message.uuid, (run, keys));
            out.push(message);
        }
        Ok(next_ms)
    }

    /// Takes up to `max` tasks: one fetch script call on a server; on a
    /// cluster, one per queue (on the queue's node), in the order of the
    /// queues, until `max` are taken. Returns the soonest deadline of the
    /// calls made.
    async fn pop_all(&self, from: &Fetch, max: usize) -> Result<(Option<i64>, TakenAt), BackendError> {
        if self.shared.conns.cluster.is_none() {
            let keys = Arc::clone(&self.shared.keys);
            let (next_ms, taken) = self.pop(&keys, &from.queues, from, max).await?;
            return Ok((next_ms, taken.into_iter().map(|(m, run)| (m, run, Arc::clone(&keys))).collect()));
        }
        let (mut next, mut all) = (None, Vec::new());
        for queue in &from.queues {
            if all.len() >= max {
                break;
            }
            let keys = self.home(queue);
            let (next_ms, taken) = match self.pop(&keys, std::slice::from_ref(queue), from, max - all.len()).await {
                Ok(popped) => popped,
                // Tasks taken from earlier queues are handed out; the error
                // comes again at the next fetch.
                Err(e) if !all.is_empty() => {
                    tracing::warn!(backend = KIND, %queue, error = %e, "fetching from a queue failed");
                    break;
                }
                Err(e) => return Err(e),
            };
            next = match (next, next_ms) {
                (Some(a), Some(b)) => Some(i64::min(a, b)),
                (a, b) => a.or(b),
            };
            all.extend(taken.into_iter().map(|(m, run)| (m, run, Arc::clone(&keys))));
        }
        Ok((next, all))
    }

    /// One fetch script call on `queues` under `keys`, with the limits of
    /// `from`, with decoding, cancels and dead letters.
    async fn pop(
        &self,
        keys: &Keys,
        queues: &[String],
        from: &Fetch,
        max: usize,
    ) -> Result<(Option<i64>, Vec<Taken>), BackendError> {
        let mut call = FETCH.key(&keys.inflight);
        call.key(&keys.held)
            .key(&keys.dead)
            .key(&keys.holders)
            .key(&keys.stats)
            .key(&keys.alive)
            .key(&keys.paused)
            .arg(max)
            .arg(millis(self.lease))
            .arg(&keys.prefix)
            .arg(DEAD_LETTERS_KEPT)
            .arg(REQUEUE_BATCH)
            .arg(&self.shared.holder)
            .arg(millis(self.liveness))
            .arg(queues.len())
            .arg(queues)
            .arg(from.limits.tasks.len() + from.limits.queues.len());
        let limits = from.limits.tasks.iter().map(|(name, l)| ("t", name, l));
        for (kind, name, limit) in limits.chain(from.limits.queues.iter().map(|(name, l)| ("q", name, l))) {
            let (count, period) = limit.rate.map_or((0, 0), |rate| (rate.count, millis(rate.per)));
            call.arg(kind)
                .arg(name)
                .arg(limit.concurrency.unwrap_or(0))
                .arg(count)
                .arg(period)
                .arg(limit.per_key.unwrap_or(0));
        }
        let (next_ms, dead, taken, cancels, corrupt): (i64, u64, Vec<Value>, Vec<Value>, Vec<Value>) =
            call.invoke_async(&mut self.conn()).await.map_err(redis_error("fetching tasks"))?;
        if dead > 0 {
            tracing::error!(backend = KIND, key = %keys.dead, count = dead, "bad queue entries moved to the dead-letter list (each with its uuid, if any, and the reason)");
        }
        let mut messages = Vec::with_capacity(taken.len() / 3);
        let mut buried = Vec::new();
        let mut taken = taken.into_iter();
        while let (Some(id), Some(data), Some(run)) = (taken.next(), taken.next(), taken.next()) {
            let (id, data, run) = (String::from_utf8_lossy(&bulk(id)?).into_owned(), bulk(data)?, run_number(run)?);
            match decode_taken(&id, &data) {
                Ok(task) => messages.push((task.message(), run)),
                Err(reason) => buried.push(GiveUp { id, run, reason, data: Some(data) }),
            }
        }
        // Tasks whose cancel was requested while no worker held them: they
        // end `cancel` here (if this fails, they come back when the lease
        // the script gave them expires).
        let mut cancels = cancels.into_iter();
        while let (Some(id), Some(data), Some(reason), Some(run)) =
            (cancels.next(), cancels.next(), cancels.next(), cancels.next())
        {
            let (id, data, run) = (String::from_utf8_lossy(&bulk(id)?).into_owned(), bulk(data)?, run_number(run)?);
            let reason = String::from_utf8_lossy(&bulk(reason)?).into_owned();
            match decode_taken(&id, &data) {
                Ok(task) => {
                    let task = cancelled(task, &reason);
                    tracing::info!(backend = KIND, uuid = %id, %reason, "task cancelled while no worker held it");
                    if let Err(e) = self.finish_run(&task, Some(run)).await {
                        tracing::warn!(backend = KIND, uuid = %id, error = %e, "could not end a cancelled task; retried when its lease expires");
                    }
                }
                Err(why) => buried.push(GiveUp { id, run, reason: why, data: Some(data) }),
            }
        }
        let mut corrupt = corrupt.into_iter();
        while let (Some(id), Some(data), Some(reason), Some(run)) =
            (corrupt.next(), corrupt.next(), corrupt.next(), corrupt.next())
        {
            let (id, data, run) = (String::from_utf8_lossy(&bulk(id)?).into_owned(), bulk(data)?, run_number(run)?);
            let reason = String::from_utf8_lossy(&bulk(reason)?).into_owned();
            buried.push(GiveUp { id, run, reason, data: (!data.is_empty()).then_some(data) });
        }
        if !buried.is_empty() {
            // If this fails the tasks stay in flight and come back (and are
            // buried again) when their lease expires.
            if let Err(e) = self.bury(keys, &buried).await {
                tracing::warn!(backend = KIND, error = %e, "filing dead letters failed; retried when their lease expires");
            }
        }
        Ok(((next_ms >= 0).then_some(next_ms), messages))
    }

    /// Gives up on taken tasks whose record cannot run: dead letters, and
    /// their records end `error` (waiters woken).
    async fn bury(&self, keys: &Keys, buried: &[GiveUp]) -> Result<(), BackendError> {
        let mut call = BURY.key(&keys.inflight);
        call.key(&keys.held)
            .key(&keys.dead)
            .key(&keys.stats)
            .arg(DEAD_LETTERS_KEPT)
            .arg(&keys.task_prefix)
            .arg(&keys.holds_prefix)
            .arg(self.retention.map_or(0, super::expire_millis))
            .arg(&keys.done);
        for GiveUp { id, run, reason, data } in buried {
            tracing::error!(backend = KIND, key = %keys.dead, uuid = %id, %reason, "task moved to the dead-letter list and ended `error`");
            let record = error_record(id, data.as_deref(), reason);
            let field = if record.task_name.is_empty() {
                String::new()
            } else {
                stats_field(&record.task_name, TaskStatus::Error)
            };
            let record = serde_json::to_string(&record).map_err(super::encode_error("an error record"))?;
            call.arg(id).arg(run).arg(reason).arg(record).arg(data.as_deref().unwrap_or_default()).arg(field);
        }
        let _: i64 = call.invoke_async(&mut self.conn()).await.map_err(redis_error("filing dead letters"))?;
        Ok(())
    }

    /// Puts tasks this backend took back into the queue at their place,
    /// `new` again: tasks of a fetch that was cancelled before handing them
    /// out (`data` `None`: the run is taken back too), or one task released
    /// (`data`: its `new` record). Returns how many were put back.
    pub(super) async fn requeue(
        &self,
        keys: &Keys,
        runs: &[(Uuid, u64)],
        data: Option<&str>,
    ) -> Result<usize, BackendError> {
        if runs.is_empty() {
            return Ok(0);
        }
        let mut call = RELEASE.key(&keys.inflight);
        call.key(&keys.held).key(&keys.stats).arg(&keys.task_prefix).arg(&keys.holds_prefix).arg(if data.is_some() {
            "release"
        } else {
            "undo"
        });
        for (uuid, run) in runs {
            call.arg(uuid.hyphenated().to_string()).arg(run).arg(data.unwrap_or_default());
        }
        let n: usize = call.invoke_async(&mut self.conn()).await.map_err(redis_error("requeueing tasks"))?;
        Ok(n)
    }

    /// Renews this holder's liveness under `keys` from now on (once it
    /// fetched from a queue under them: on a cluster each queue has its
    /// own holders).
    pub(super) fn beat_under(&self, keys: Arc<Keys>) {
        let mut beats = lock(&self.shared.beats);
        if !beats.iter().any(|k| k.prefix == keys.prefix) {
            beats.push(keys);
        }
    }

    /// Starts renewing this holder's liveness, if it is not being renewed.
    pub(super) fn keep_alive(&self) {
        let mut slot = lock(&self.shared.heartbeat);
        if slot.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let mut conn = self.conn();
        // Not the backend itself: the task must not keep it alive.
        let shared = Arc::downgrade(&self.shared);
        let holder = self.shared.holder.clone();
        let liveness = self.liveness;
        *slot = Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(liveness / HEARTBEATS_PER_LIVENESS);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(beats) = shared.upgrade().map(|shared| lock(&shared.beats).clone()) else { return };
                for keys in beats {
                    let beat: Result<i64, _> = HEARTBEAT
                        .key(&keys.holders)
                        .key(&keys.alive)
                        .arg(&holder)
                        .arg(millis(liveness))
                        .invoke_async(&mut conn)
                        .await;
                    if let Err(e) = beat {
                        tracing::warn!(backend = KIND, error = %e, "renewing the liveness of this worker's tasks failed; retrying");
                    }
                }
            }
        }));
    }

    /// Blocks until a wake-up token arrives on one of `wakes` (the wake-up
    /// lists of the queues fetched from) or `block` passes.
    ///
    /// Only a token is taken here, never a task: if this future is dropped
    /// the token is lost with its connection, but no task is.
    pub(super) async fn await_work(&self, wakes: &[String], block: Duration) -> Result<(), BackendError> {
        let idle = lock(&self.shared.blocking).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.connect_blocking().await?,
        };
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(wakes).arg(block.as_secs_f64());
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
            match self.shared.conns.client.get_multiplexed_async_connection_with_config(&config).await {
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
