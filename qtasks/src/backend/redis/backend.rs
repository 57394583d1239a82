//! `impl Backend for RedisBackend`: each method is one script or command
//! (see "Scripts and round trips" on [`RedisBackend`]), plus the helpers
//! only these methods use (`push`, `read`, `scan`, `conn`).

use super::cluster::{Conn, await_marks, scan_masters};
use super::codec::{RECORD_FIELDS, RecordFields, cancelled, decode_record};
use super::fetch::IDLE_RECHECK;
use super::keys::Keys;
use super::keys::{
    DUPLICATES, LENGTH_PREFIXED, STATS_SEPARATOR, glob_escape, is_holds_key, priority_hex, stats_field, task_key_uuid,
};
use super::scripts::{CANCEL, ENQUEUE, QUEUES, UPDATE};
use super::settings;
use super::{KIND, RedisBackend, decode_error, encode_error, error, expire_millis, millis, redis_error, run_arg};
use crate::backend::{Backend, BackendError, BackendErrorKind, CancelOutcome, Enqueued, Fetch, QueueStats, TaskCounts};
use crate::model::{TaskMessage, TaskRecord, TaskStatus};
use crate::queue::{DEFAULT_QUEUE, QueueInfo};
use crate::task::CancelToken;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// A delay in ms for the enqueue script: a zero delay is an ordinary
/// enqueue; any other is at least 1 ms.
fn delay_millis(delay: Duration) -> u64 {
    if delay.is_zero() { 0 } else { millis(delay) }
}

impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn for_app(&self, app: &str) -> Self {
        RedisBackend::for_app(self, app)
    }

    fn app_name(&self) -> &str {
        &self.shared.keys.app
    }

    async fn enqueue(&self, task: &TaskRecord) -> Result<Enqueued, BackendError> {
        Ok(self.push(&[(task, 0)]).await?[0])
    }

    async fn enqueue_delayed(&self, task: &TaskRecord, delay: Duration) -> Result<Enqueued, BackendError> {
        Ok(self.push(&[(task, delay_millis(delay))]).await?[0])
    }

    async fn enqueue_many(&self, tasks: &[(TaskRecord, Option<Duration>)]) -> Result<Vec<Enqueued>, BackendError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<(&TaskRecord, u64)> =
            tasks.iter().map(|(task, delay)| (task, delay.map_or(0, delay_millis))).collect();
        self.push(&batch).await
    }

    async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<CancelOutcome, BackendError> {
        // The script rejects a `cancel` record built from a stale read
        // (`changed`); the record of a queued task changes rarely, if ever.
        for _ in 0..16 {
            let Some((task, data, keys)) = self.read(uuid).await? else { return Ok(CancelOutcome::NotFound) };
            if task.status.is_done() {
                return Ok(CancelOutcome::Finished(task.status));
            }
            let name = task.task_name.clone();
            let record = serde_json::to_string(&cancelled(task, reason)).map_err(encode_error("the task"))?;
            let outcome: String = CANCEL
                .key(keys.task(uuid))
                .key(&keys.stats)
                .arg(record)
                .arg(data)
                .arg(reason)
                .arg(self.retention.map_or(0, expire_millis))
                .arg(&keys.done)
                .arg(&keys.cancel)
                .arg(uuid.hyphenated().to_string())
                .arg(stats_field(&name, TaskStatus::Cancel))
                .arg(&keys.prefix)
                .invoke_async(&mut self.conn())
                .await
                .map_err(redis_error("cancelling a task"))?;
            return match outcome.as_str() {
                "cancelled" => Ok(CancelOutcome::Cancelled),
                "requested" => {
                    // Published too, but a task running here need not wait for the echo.
                    self.shared.cancels.signal(uuid, reason);
                    Ok(CancelOutcome::Requested)
                }
                "changed" => continue,
                "missing" => Ok(CancelOutcome::NotFound),
                other => match TaskStatus::parse(other) {
                    Some(status) => Ok(CancelOutcome::Finished(status)),
                    None => Err(error(
                        BackendErrorKind::Decode,
                        format!("cancelling a task: unexpected reply {other:?} from the cancel script"),
                    )),
                },
            };
        }
        Err(error(BackendErrorKind::Other, format!("cancelling a task: the record of task {uuid} keeps changing")))
    }

    fn watch_cancel(&self, uuid: Uuid, token: &CancelToken) {
        // `fetch` started the subscription already; this covers a caller
        // that got the task otherwise.
        if tokio::runtime::Handle::try_current().is_ok() {
            self.cancel_listener();
        }
        self.shared.cancels.watch(uuid, token);
    }

    fn unwatch_cancel(&self, uuid: Uuid) {
        self.shared.cancels.unwatch(uuid);
    }

    async fn stats(&self) -> Result<QueueStats, BackendError> {
        let (mut in_flight, mut counts) = (0, Vec::new());
        for keys in self.homes().await? {
            let (some_in_flight, some): (u64, HashMap<String, u64>) = redis::pipe()
                .zcard(&keys.inflight)
                .hgetall(&keys.stats)
                .query_async(&mut self.conn())
                .await
                .map_err(redis_error("reading the stats"))?;
            in_flight += some_in_flight;
            counts.extend(some);
        }
        let queued = self.queue_infos(&[], true).await?.iter().map(|q| q.depth + q.delayed).sum();
        let mut stats = QueueStats { queued, in_flight, tasks: Default::default() };
        for (field, count) in counts {
            let Some((name, status)) = field.rsplit_once(STATS_SEPARATOR) else { continue };
            // `TaskCounts::add` counts one; these are totals.
            let field: fn(&mut TaskCounts) -> &mut u64 = match (status, TaskStatus::parse(status)) {
                (DUPLICATES, _) => |c: &mut TaskCounts| &mut c.duplicates,
                (_, Some(TaskStatus::Success)) => |c: &mut TaskCounts| &mut c.success,
                (_, Some(TaskStatus::Error)) => |c: &mut TaskCounts| &mut c.error,
                (_, Some(TaskStatus::Retry)) => |c: &mut TaskCounts| &mut c.retry,
                (_, Some(TaskStatus::Cancel)) => |c: &mut TaskCounts| &mut c.cancel,
                _ => continue,
            };
            *field(stats.tasks.entry(name.to_owned()).or_default()) += count;
        }
        Ok(stats)
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        // Rides over a reconnect: the first command on a connection that
        // was lost fails while the connection manager reconnects.
        let mut backoff = RETRY_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.read(uuid).await {
                Err(e) if e.kind() == BackendErrorKind::Connection && attempt < GET_ATTEMPTS => {
                    tracing::debug!(backend = KIND, %uuid, error = %e, "reading a task failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                    attempt += 1;
                }
                read => return Ok(read?.map(|(task, _, _)| task)),
            }
        }
    }

    async fn get_all(&self) -> Result<Vec<TaskRecord>, BackendError> {
        let mut all = Vec::new();
        for keys in self.homes().await? {
            self.get_all_at(&keys, &mut all).await?;
        }
        all.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
        Ok(all)
    }

    async fn minute_counts(
        &self,
        since: crate::model::Timestamp,
    ) -> Result<Option<Vec<crate::backend::MinuteCount>>, BackendError> {
        self.read_minutes(since).await.map(Some)
    }

    async fn list_tasks(&self, query: &crate::backend::TaskQuery) -> Result<crate::backend::TaskPage, BackendError> {
        if !self.listing {
            return Err(error(
                BackendErrorKind::InvalidRequest,
                "listing tasks: the task listing is off for this backend (`RedisBackend::listing(false)`)",
            ));
        }
        self.list_page(query).await
    }

    async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Option<TaskRecord>, BackendError> {
        let now = Instant::now();
        // A huge timeout means "no timeout": about 30 years.
        let deadline = now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(1 << 30));
        let waiter = self.shared.waiters.register(uuid);
        // Subscribed before the record is read: a finish after the read is
        // published to a live subscription, so it cannot be missed.
        let mut ready = self.listener();
        let _ = tokio::time::timeout_at(deadline, ready.wait_for(|r| *r)).await;
        let mut backoff = RETRY_BACKOFF;
        // Why the record could not be read last, if it could not.
        let mut unreadable = None;
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.read_fields(uuid).await.map(|(fields, _)| fields) {
                Ok((None, None, _)) => return Ok(None),
                Ok((Some(data), status, started)) => {
                    backoff = RETRY_BACKOFF;
                    match decode_record(&data, status.as_deref(), started) {
                        Ok(task) if task.status.is_done() => return Ok(Some(task)),
                        Ok(_) => unreadable = None,
                        Err(e) => {
                            let e = decode_error(format_args!("the record of task {uuid}"))(e);
                            if status.as_deref().and_then(TaskStatus::parse).is_some_and(TaskStatus::is_done) {
                                return Err(e);
                            }
                            // Not final: a worker that takes it ends it
                            // `error` (see "Dead letters"), and wakes us.
                            unreadable = Some(e);
                        }
                    }
                }
                // A record without data, as above.
                Ok((None, Some(_), _)) => backoff = RETRY_BACKOFF,
                // Rides over reconnects until the deadline: the first
                // command on a lost connection fails while it reconnects
                // (the subscription, lost too, wakes every waiter when it
                // is back, so a finish meanwhile is not missed).
                Err(e) if e.kind() == BackendErrorKind::Connection => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(backend = KIND, %uuid, error = %e, "reading a waited task failed; retrying");
                    tokio::time::sleep_until((now + backoff).min(deadline)).await;
                    backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                    continue;
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => return unreadable.map_or(Ok(None), Err),
            }
        }
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), BackendError> {
        // On a cluster the queue is listed by `queues()` once paused.
        self.register(&[queue]).await?;
        let keys = self.home(queue);
        let mut pipe = redis::pipe();
        pipe.atomic();
        if paused {
            pipe.sadd(&keys.paused, queue).ignore();
        } else {
            // Fetchers blocked on the queue look again.
            let wake = keys.queue_keys(queue).wake;
            pipe.srem(&keys.paused, queue).ignore().rpush(&wake, 1).ignore().ltrim(&wake, 0, 0).ignore();
        }
        let _: () = pipe.query_async(&mut self.conn()).await.map_err(redis_error("pausing or resuming a queue"))?;
        Ok(())
    }

    async fn queues(&self, queues: &[String]) -> Result<Vec<QueueInfo>, BackendError> {
        self.queue_infos(queues, false).await
    }

    async fn fetch(&self, from: &Fetch, max: usize, out: &mut Vec<TaskMessage>) -> Result<(), BackendError> {
        if max == 0 || from.queues.is_empty() {
            return Ok(());
        }
        // Workers learn of cancel requests for the tasks they take, and keep
        // their holder alive while they hold tasks.
        self.cancel_listener();
        for queue in &from.queues {
            self.beat_under(self.home(queue));
        }
        self.keep_alive();
        let wakes: Vec<String> = from.queues.iter().map(|q| self.home(q).queue_keys(q).wake).collect();
        let before = out.len();
        if let Some(cluster) = &self.shared.conns.cluster {
            loop {
                // The tokens seen before looking: one taken after is not missed.
                let mut marks: Vec<_> = wakes.iter().map(|w| self.shared.wakers.watch(cluster, w)).collect();
                let next_deadline = self.take(from, max, out).await?;
                if out.len() > before {
                    return Ok(());
                }
                await_marks(&mut marks, idle_block(next_deadline)).await;
            }
        }
        loop {
            let next_deadline = self.take(from, max, out).await?;
            if out.len() > before {
                return Ok(());
            }
            self.await_work(&wakes, idle_block(next_deadline)).await?;
        }
    }

    async fn update(&self, task: &TaskRecord) -> Result<(), BackendError> {
        let data = serde_json::to_string(task).map_err(encode_error("the task"))?;
        let keys = self.home(&task.queue);
        let _: i64 = UPDATE
            .key(keys.task(task.uuid))
            .key(&keys.inflight)
            .arg(data)
            .arg(task.status.as_str())
            .arg(task.uuid.hyphenated().to_string())
            .arg(millis(self.lease))
            .arg(run_arg(self.shared.run_of(&task.uuid)))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error("updating a task"))?;
        Ok(())
    }

    async fn finish(&self, task: &TaskRecord) -> Result<(), BackendError> {
        let run = self.shared.run_of(&task.uuid);
        self.finish_run(task, run).await?;
        // Only once stored: a finish that failed is retried by the same run.
        if run.is_some() {
            self.shared.forget_run(&task.uuid);
        }
        Ok(())
    }

    fn lease_renewal(&self) -> Option<Duration> {
        Some(self.lease / 3)
    }

    async fn extend_lease(&self, uuid: Uuid) -> Result<bool, BackendError> {
        Ok(self.extend_leases(&[uuid]).await? > 0)
    }

    async fn release(&self, uuid: Uuid) -> Result<bool, BackendError> {
        // Only a task this backend took, at the run it took.
        let Some((run, home)) = self.shared.held(&uuid) else { return Ok(false) };
        // Back to `new` as it was before it was taken (a plugin may have
        // rewritten the record while it ran): the record is rewritten here,
        // as the script cannot re-encode JSON without losing precision.
        let record = match self.read(uuid).await? {
            Some((mut task, _, _)) => {
                task.status = TaskStatus::New;
                task.updated_at = task.updated_at.max(crate::model::now());
                serde_json::to_string(&task).map_err(encode_error("the task"))?
            }
            None => String::new(),
        };
        let released = self.requeue(&home, &[(uuid, run)], Some(&record)).await? > 0;
        self.shared.forget_run(&uuid);
        Ok(released)
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        let key = self.shared.keys.claim(key);
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(expire_millis(ttl))
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error("claiming a key"))?;
        Ok(set.is_some())
    }

    async fn config_set(
        &self,
        name: &str,
        key: &str,
        value: &serde_json::Value,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        let keys = &self.shared.keys;
        let json = serde_json::to_string(value).map_err(encode_error("a setting"))?;
        settings::set(
            &mut self.conn(),
            &keys.config_group(name),
            &keys.config_index(name),
            key,
            json,
            ttl.map(expire_millis),
        )
        .await
        .map_err(redis_error("writing a setting"))
    }

    async fn config_get(&self, name: &str, key: &str) -> Result<Option<serde_json::Value>, BackendError> {
        let full = format!("{}{key}", self.shared.keys.config_group(name));
        let raw: Option<String> = redis::cmd("GET")
            .arg(&full)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error("reading a setting"))?;
        raw.map(|r| serde_json::from_str(&r).map_err(decode_error(format_args!("setting `{key}` of `{name}`"))))
            .transpose()
    }

    async fn config_get_all(&self, name: &str) -> Result<serde_json::Map<String, serde_json::Value>, BackendError> {
        let (group, index) = (self.shared.keys.config_group(name), self.shared.keys.config_index(name));
        // Settings an older qtasks wrote: indexed once per group and backend.
        if !self.shared.indexed.contains(&group) {
            let found = self.scan(&format!("{}*", glob_escape(&group))).await?;
            settings::index_found(&mut self.conn(), &group, &index, &found)
                .await
                .map_err(redis_error("indexing settings"))?;
            self.shared.indexed.insert(&group);
        }
        settings::read_all(&mut self.conn(), &group, &index).await.map_err(redis_error("reading settings"))
    }

    async fn config_delete(&self, name: &str, key: &str) -> Result<(), BackendError> {
        let keys = &self.shared.keys;
        settings::delete(&mut self.conn(), &keys.config_group(name), &keys.config_index(name), key)
            .await
            .map_err(redis_error("deleting a setting"))
    }

    async fn flush(&self) -> Result<(), BackendError> {
        if self.shared.conns.cluster.is_none() {
            return self.flush_at(&self.shared.keys).await;
        }
        // On a cluster every key starting `qtasks:{<len>:<app>:` or
        // `qtasks:{<len>:<app>}` is this app's (the length tells where the
        // app name ends), also those of a queue not in `queues`.
        let app = &self.shared.keys.app;
        let pattern = format!("{}[:}}]*", glob_escape(&format!("qtasks:{{{}:{app}", app.len())));
        let ours = self.scan(&pattern).await?;
        let mut conn = self.conn();
        // `UNLINK` of keys of several slots is split by slot by the client.
        for chunk in ours.chunks(1000) {
            let _: i64 =
                redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await.map_err(redis_error("flushing"))?;
        }
        Ok(())
    }
}

/// How long an idle fetch waits for a wake-up: until the next lease
/// expires (to requeue its task), the next delayed task or rate token is
/// due (`next_ms`), at most [`IDLE_RECHECK`].
fn idle_block(next_ms: Option<i64>) -> Duration {
    let block = match next_ms {
        Some(ms) => Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(IDLE_RECHECK),
        None => IDLE_RECHECK,
    };
    block.max(Duration::from_millis(10))
}

impl RedisBackend {
    /// Deletes the keys under `keys` (see [`flush`](Backend::flush)).
    async fn flush_at(&self, keys: &Keys) -> Result<(), BackendError> {
        let mut conn = self.conn();
        let fixed = [
            &keys.queue,
            &keys.seq,
            &keys.inflight,
            &keys.held,
            &keys.wake,
            &keys.dead,
            &keys.delayed,
            &keys.stats,
            &keys.holders,
            &keys.alive,
        ];
        let _: i64 = redis::cmd("UNLINK").arg(&fixed).query_async(&mut conn).await.map_err(redis_error("flushing"))?;
        let _: i64 = redis::cmd("UNLINK")
            .arg(&keys.paused)
            .arg(&keys.queues)
            .arg(&keys.queue_keys(DEFAULT_QUEUE).running)
            .arg(keys.index_keys())
            .query_async(&mut conn)
            .await
            .map_err(redis_error("flushing"))?;
        // Named queues, slots, buckets, unique keys, settings and claims go
        // on with a digit (a length); an app named `{app}:config` has other
        // keys under the same prefix. Holder sets end with 32 hex digits.
        let mut found = Vec::new();
        for family in LENGTH_PREFIXED {
            let start = format!("{}{family}", keys.prefix);
            let mut some = self.scan(&format!("{}*", glob_escape(&start))).await?;
            some.retain(|k| k.get(start.len()).is_some_and(u8::is_ascii_digit));
            found.extend(some);
        }
        let mut holds = self.scan(&format!("{}*", glob_escape(&keys.holds_prefix))).await?;
        holds.retain(|k| is_holds_key(keys, k));
        found.extend(holds);
        for chunk in found.chunks(1000) {
            let _: i64 =
                redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await.map_err(redis_error("flushing"))?;
        }
        // Only `task:{uuid}` keys: the prefix of app `a` is also the start
        // of the keys of an app `a:b`, whose keys must stay.
        let mut ours = self.scan(&format!("{}*", glob_escape(&keys.task_prefix))).await?;
        ours.retain(|k| task_key_uuid(keys, k).is_some());
        for chunk in ours.chunks(1000) {
            let _: i64 =
                redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await.map_err(redis_error("flushing"))?;
        }
        self.forget_minutes(keys).await
    }
}

/// First pause before a read that failed on a lost connection is retried.
const RETRY_BACKOFF: Duration = Duration::from_millis(20);
/// Longest pause between those retries.
const MAX_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Reads `get` makes before it gives up on a lost connection (about 1.5 s
/// of backoff in all).
const GET_ATTEMPTS: u32 = 7;

impl RedisBackend {
    /// What `lua/queues.lua` reads of these queues (all if none is named);
    /// `brief`: counts only.
    pub(super) async fn queue_infos(&self, queues: &[String], brief: bool) -> Result<Vec<QueueInfo>, BackendError> {
        if self.shared.conns.cluster.is_none() {
            return self.queue_infos_at(&self.shared.keys, queues, brief).await;
        }
        // On a cluster, each queue where it lives.
        let names = if queues.is_empty() { self.queue_names().await? } else { queues.to_vec() };
        let mut infos = Vec::with_capacity(names.len());
        for name in names {
            let keys = self.home(&name);
            infos.extend(self.queue_infos_at(&keys, std::slice::from_ref(&name), brief).await?);
        }
        if queues.is_empty() {
            infos.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(infos)
    }

    /// `queue_infos` of the queues under `keys`.
    async fn queue_infos_at(
        &self,
        keys: &Keys,
        queues: &[String],
        brief: bool,
    ) -> Result<Vec<QueueInfo>, BackendError> {
        let reply: Vec<redis::Value> = QUEUES
            .key(&keys.inflight)
            .key(&keys.paused)
            .key(&keys.queues)
            .arg(&keys.prefix)
            .arg(if brief { "1" } else { "0" })
            .arg(queues)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error("reading the queues"))?;
        let now = crate::model::now();
        let bad = || error(BackendErrorKind::Decode, "reading the queues: unexpected reply from the queues script");
        let text = |v: &redis::Value| redis::from_redis_value_ref::<String>(v).map_err(|_| bad());
        let count = |v: &redis::Value| redis::from_redis_value_ref::<u64>(v).map_err(|_| bad());
        let mut infos = Vec::with_capacity(reply.len() / 6);
        for q in reply.chunks_exact(6) {
            let oldest = text(&q[5])?.parse::<f64>().ok();
            infos.push(QueueInfo {
                name: text(&q[0])?,
                depth: count(&q[1])?,
                delayed: count(&q[2])?,
                in_flight: count(&q[3])?,
                paused: count(&q[4])? == 1,
                oldest_age: oldest.map(|created| Duration::from_secs_f64((now - created).max(0.0))),
                limit: Default::default(),
            });
        }
        if queues.is_empty() {
            infos.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(infos)
    }

    /// Every key matching a `SCAN` pattern.
    async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>, BackendError> {
        match self.conn() {
            Conn::Cluster(mut cluster) => scan_masters(&mut cluster, pattern).await,
            mut single => super::scan_all(&mut single, pattern).await.map_err(redis_error("scanning keys")),
        }
    }

    /// Stores `new` records and queues them (a delay in ms > 0: delays
    /// them), in one script call (see `lua/enqueue.lua`); on a cluster, one
    /// call per queue. Every record is checked against the size limit
    /// first: one over it fails the batch before anything is written.
    async fn push(&self, tasks: &[(&TaskRecord, u64)]) -> Result<Vec<Enqueued>, BackendError> {
        let mut encoded = Vec::with_capacity(tasks.len());
        for (task, delay_ms) in tasks {
            let data = serde_json::to_string(task).map_err(encode_error("the task"))?;
            if data.len() > self.max_message_size {
                return Err(error(
                    BackendErrorKind::InvalidRequest,
                    format!(
                        "enqueue refused: task `{}` ({}) is {} bytes as JSON, more than the limit of {} bytes (RedisBackend::max_message_size)",
                        task.task_name,
                        task.uuid,
                        data.len(),
                        self.max_message_size
                    ),
                ));
            }
            encoded.push((*task, *delay_ms, data));
        }
        if self.shared.conns.cluster.is_none() {
            return self.push_at(&self.shared.keys, &encoded).await;
        }
        // By queue, in the order of each queue's first task.
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, (task, _)) in tasks.iter().enumerate() {
            match groups.iter_mut().find(|(q, _)| *q == task.queue) {
                Some((_, some)) => some.push(i),
                None => groups.push((&task.queue, vec![i])),
            }
        }
        // The queues' registration and their scripts at once, each on its
        // master: the enqueue returns once all are done (if the
        // registration fails, the caller's retry, a no-op for the tasks
        // written, registers them).
        let names: Vec<&str> = groups.iter().map(|(q, _)| *q).collect();
        let mut encoded: Vec<Option<_>> = encoded.into_iter().map(Some).collect();
        let batches: Vec<(&str, Vec<usize>, Vec<_>)> = groups
            .into_iter()
            .map(|(queue, at)| {
                let batch = at.iter().filter_map(|&i| encoded[i].take()).collect();
                (queue, at, batch)
            })
            .collect();
        let pushes = batches.iter().map(|(queue, _, batch)| self.push_at_queue(queue, batch));
        let (registered, pushed) = tokio::join!(self.register(&names), futures::future::try_join_all(pushes));
        registered?;
        let mut out = vec![Enqueued::New; tasks.len()];
        for ((_, at, _), enqueued) in batches.iter().zip(pushed?) {
            for (&i, enqueued) in at.iter().zip(enqueued) {
                out[i] = enqueued;
            }
        }
        Ok(out)
    }

    /// `push_at` under the keys of `queue`.
    async fn push_at_queue(
        &self,
        queue: &str,
        tasks: &[(&TaskRecord, u64, String)],
    ) -> Result<Vec<Enqueued>, BackendError> {
        self.push_at(&self.home(queue), tasks).await
    }

    /// `push` of tasks (with their delay and JSON) under `keys`.
    async fn push_at(&self, keys: &Keys, tasks: &[(&TaskRecord, u64, String)]) -> Result<Vec<Enqueued>, BackendError> {
        let mut call = ENQUEUE.key(&keys.seq);
        call.key(&keys.queues).arg(&keys.prefix);
        for (task, delay_ms, data) in tasks {
            let (unique, window) = match &task.unique {
                Some(u) => (keys.unique(&u.key), (u.window.max(0.0) * 1000.0).ceil() as u64),
                None => (String::new(), 0),
            };
            call.arg(task.uuid.hyphenated().to_string())
                .arg(data)
                .arg(task.status.as_str())
                .arg(priority_hex(task.priority))
                .arg(*delay_ms)
                .arg(task.queue.as_str())
                .arg(unique)
                .arg(window)
                // No score: the task stays out of the listing's indexes.
                .arg(if self.listing { format!("{:?}", task.created_at) } else { String::new() });
        }
        let replies: Vec<redis::Value> =
            call.invoke_async(&mut self.conn()).await.map_err(redis_error("enqueueing a task"))?;
        if replies.len() != tasks.len() {
            return Err(error(
                BackendErrorKind::Decode,
                "enqueueing: a reply per task expected from the enqueue script",
            ));
        }
        tasks
            .iter()
            .zip(replies)
            .map(|((task, _, _), reply)| match reply {
                // Its place in line: written. 0: a record with its id exists.
                redis::Value::Int(0) => Ok(Enqueued::Existing(task.uuid)),
                redis::Value::Int(_) => Ok(Enqueued::New),
                // The id of the task holding its unique key.
                redis::Value::BulkString(id) => Uuid::try_parse_ascii(&id).map(Enqueued::Existing).map_err(|e| {
                    error(BackendErrorKind::Decode, "enqueueing: a unique key names no task id").with_source(e)
                }),
                _ => Err(error(BackendErrorKind::Decode, "enqueueing: unexpected reply from the enqueue script")),
            })
            .collect()
    }

    pub(super) fn conn(&self) -> Conn {
        self.shared.conns.manager.clone()
    }

    /// Reads a record with the fields `cancel` compares: the decoded task,
    /// the JSON as stored, and the keys it lives under.
    async fn read(&self, uuid: Uuid) -> Result<Option<(TaskRecord, Vec<u8>, Arc<Keys>)>, BackendError> {
        let ((data, status, started), keys) = self.read_fields(uuid).await?;
        let Some(data) = data else { return Ok(None) };
        let task = decode_record(&data, status.as_deref(), started)
            .map_err(decode_error(format_args!("the record of task {uuid}")))?;
        Ok(Some((task, data, keys)))
    }

    /// Reads the fields of a record hash that make a record, and the keys
    /// it lives under: on a cluster, those of the queue that holds it,
    /// asked of every queue's node at once (of `default`'s when none does).
    async fn read_fields(&self, uuid: Uuid) -> Result<(RecordFields, Arc<Keys>), BackendError> {
        let homes = if self.shared.conns.cluster.is_none() {
            vec![Arc::clone(&self.shared.keys)]
        } else {
            self.homes().await?
        };
        let reads = homes.iter().map(|keys| async move {
            let fields: RecordFields = redis::cmd("HMGET")
                .arg(keys.task(uuid))
                .arg(&RECORD_FIELDS[..])
                .query_async(&mut self.conn())
                .await
                .map_err(redis_error("reading a task"))?;
            Ok::<_, BackendError>(fields)
        });
        let found = futures::future::try_join_all(reads).await?;
        let at = found.iter().position(|(data, status, _)| data.is_some() || status.is_some()).unwrap_or(0);
        let fields = found.into_iter().nth(at).unwrap_or_default();
        Ok((fields, Arc::clone(&homes[at])))
    }

    /// Appends the records under `keys` to `all` (`get_all`).
    async fn get_all_at(&self, keys: &Keys, all: &mut Vec<TaskRecord>) -> Result<(), BackendError> {
        let mut found = self.scan(&format!("{}*", glob_escape(&keys.task_prefix))).await?;
        found.retain(|k| task_key_uuid(keys, k).is_some());
        let mut conn = self.conn();
        for ours in found.chunks(1000) {
            let mut pipe = redis::pipe();
            for key in ours {
                pipe.cmd("HMGET").arg(key).arg(&RECORD_FIELDS[..]);
            }
            let records: Vec<RecordFields> = pipe.query_async(&mut conn).await.map_err(redis_error("reading tasks"))?;
            for (data, status, started) in records {
                let Some(data) = data else { continue };
                match decode_record(&data, status.as_deref(), started) {
                    Ok(task) => all.push(task),
                    Err(e) => tracing::warn!(backend = KIND, error = %e, "skipping an undecodable task record"),
                }
            }
        }
        Ok(())
    }
}
