//! `impl Backend for PostgresBackend`, and the enqueue that runs in a
//! caller's transaction.

use super::codec::{self, Encoded, Taken};
use super::{
    BackendErrorKind, KIND, PURGE_BATCH, PURGE_EVERY, PostgresBackend, db_error, encode_error, error, lock, millis,
};
use crate::backend::{
    Backend, BackendError, CancelOutcome, Enqueued, Fetch, MinuteCount, QueueStats, retry_while_lost,
};
use crate::model::{TaskMessage, TaskRecord, TaskStatus, Timestamp};
use crate::queue::{Limit, Limits, QueueInfo};
use crate::task::CancelToken;
use serde_json::{Map, Value, json};
use sqlx::postgres::PgConnection;
use sqlx::{PgExecutor, Row};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// How long a busy worker gathers freed slots before a fetch.
const FETCH_GATHER: Duration = Duration::from_millis(2);

/// How long a statement that failed on a lost connection is retried, when
/// that is safe (see "Lost connections" on [`PostgresBackend`]).
const RETRY_WITHIN: Duration = Duration::from_secs(3);

fn lost(e: &BackendError) -> bool {
    e.kind() == BackendErrorKind::Connection
}

/// The limits a fetch holds, as `fetch_tasks` reads them (`None`: none).
fn limits_json(limits: &Limits) -> Option<String> {
    if limits.is_empty() {
        return None;
    }
    let one = |limit: &Limit| {
        let mut m = Map::new();
        if let Some(c) = limit.concurrency {
            m.insert("c".into(), json!(c));
        }
        if let Some(k) = limit.per_key {
            m.insert("k".into(), json!(k));
        }
        if let Some(rate) = limit.rate {
            m.insert("r".into(), json!([rate.count, rate.per.as_secs_f64()]));
        }
        Value::Object(m)
    };
    let group = |limits: &std::collections::BTreeMap<String, Limit>| -> Map<String, Value> {
        limits.iter().filter(|(_, l)| !l.is_none()).map(|(name, l)| (name.clone(), one(l))).collect()
    };
    Some(json!({ "tasks": group(&limits.tasks), "queues": group(&limits.queues) }).to_string())
}

/// Runs the enqueue statement of `task` on `exec`.
#[allow(clippy::too_many_arguments)]
async fn run_enqueue<'e>(
    exec: impl PgExecutor<'e>,
    sql: &sqlx::SqlStr,
    app: &str,
    task: &TaskRecord,
    encoded: &Encoded,
    delay_ms: i64,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar::<_, Option<Uuid>>(sql.clone())
        .bind(app)
        .bind(task.uuid)
        .bind(task.task_name.as_str())
        .bind(task.queue.as_str())
        .bind(task.priority)
        .bind(&encoded.args)
        .bind(task.created_at)
        .bind(task.updated_at)
        .bind(i64::from(task.attempt))
        .bind(encoded.extra.as_deref())
        .bind(task.limit_key.as_deref())
        .bind(task.unique.as_ref().map(|u| u.key.as_str()))
        .bind(task.unique.as_ref().map(|u| u.window))
        .bind(delay_ms)
        .fetch_one(exec)
        .await
}

fn delay_ms(delay: Option<Duration>) -> i64 {
    match delay {
        Some(d) if !d.is_zero() => millis(d),
        _ => 0,
    }
}

impl PostgresBackend {
    /// Runs `op` again while it fails on a lost connection, for a few seconds.
    pub(super) async fn retrying<T, Fut>(&self, op: impl FnMut() -> Fut) -> Result<T, BackendError>
    where
        Fut: Future<Output = Result<T, BackendError>>,
    {
        retry_while_lost(RETRY_WITHIN, lost, op).await
    }

    /// Encodes `task` for an enqueue, refusing it if it is over the size limit.
    fn encode_new(&self, task: &TaskRecord) -> Result<Encoded, BackendError> {
        let encoded = Encoded::of(task).map_err(encode_error("the task"))?;
        let size = encoded.size(task);
        if size > self.max_message_size {
            return Err(error(
                BackendErrorKind::InvalidRequest,
                format!(
                    "enqueue refused: task `{}` ({}) is {size} bytes encoded, more than the limit of {} bytes \
                     (PostgresBackend::max_message_size)",
                    task.task_name, task.uuid, self.max_message_size
                ),
            ));
        }
        Ok(encoded)
    }

    /// Enqueues `task` (after `delay`, if any) on `conn`: inside the
    /// transaction open on it, if there is one. Workers see the task when
    /// that transaction commits and never if it rolls back; the
    /// notification that wakes them is sent at commit too.
    ///
    /// What [`QueueTasks::add_task_in`](crate::QueueTasks::add_task_in)
    /// runs after the app's triggers; call it yourself only to enqueue a
    /// record you built. Not retried: a lost connection fails the caller's
    /// transaction anyway.
    pub async fn enqueue_in(
        &self,
        conn: &mut PgConnection,
        task: &TaskRecord,
        delay: Option<Duration>,
    ) -> Result<Enqueued, BackendError> {
        let encoded = self.encode_new(task)?;
        let existing = run_enqueue(conn, &self.shared.sql.enqueue, &self.app, task, &encoded, delay_ms(delay))
            .await
            .map_err(db_error("enqueueing a task in a transaction"))?;
        Ok(existing.map_or(Enqueued::New, Enqueued::Existing))
    }

    async fn push(&self, task: &TaskRecord, delay: Option<Duration>) -> Result<Enqueued, BackendError> {
        let encoded = self.encode_new(task)?;
        let pool = &self.shared.pool;
        let existing = self
            .retrying(|| async {
                run_enqueue(pool, &self.shared.sql.enqueue, &self.app, task, &encoded, delay_ms(delay))
                    .await
                    .map_err(db_error("enqueueing a task"))
            })
            .await?;
        Ok(existing.map_or(Enqueued::New, Enqueued::Existing))
    }

    /// Starts the retention task if it is not running.
    fn keep_purging(&self) {
        let mut slot = lock(&self.shared.purger);
        if slot.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let (pool, sql) = (self.shared.pool.clone(), self.shared.sql.purge.clone());
        let minutes = self.shared.sql.purge_minutes.clone();
        let vacuum = self.shared.vacuum_every.map(|every| (every, self.shared.sql.vacuum.clone()));
        let period = vacuum.as_ref().map_or(PURGE_EVERY, |(every, _)| PURGE_EVERY.min(*every));
        *slot = Some(tokio::spawn(async move {
            let mut vacuumed = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = sqlx::query(minutes.clone()).execute(&pool).await {
                    tracing::warn!(backend = KIND, error = %e, "deleting old counts per minute failed; retrying later");
                }
                loop {
                    match sqlx::query_scalar::<_, i32>(sql.clone()).bind(PURGE_BATCH).fetch_one(&pool).await {
                        Ok(n) if n >= PURGE_BATCH => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(backend = KIND, error = %e, "deleting expired records failed; retrying later");
                            break;
                        }
                    }
                }
                if let Some((every, vacuum)) = &vacuum
                    && vacuumed.elapsed() >= *every
                {
                    vacuumed = tokio::time::Instant::now();
                    // The simple protocol: VACUUM cannot run in the implicit
                    // transaction of a prepared statement.
                    if let Err(e) = sqlx::raw_sql(vacuum.clone()).execute(&pool).await {
                        tracing::warn!(backend = KIND, error = %e, "vacuuming the tasks table failed; retrying later");
                    }
                }
            }
        }));
    }

    /// One fetch statement in a task of its own (so a dropped fetch loses
    /// no task); the tasks taken go to `out`. Returns how long until
    /// something is due, when nothing was taken.
    async fn take(
        &self,
        from: &Fetch,
        limits: &Option<String>,
        max: usize,
        out: &mut Vec<TaskMessage>,
    ) -> Result<Option<Duration>, BackendError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let (queues, limits) = (from.queues.clone(), limits.clone());
        tokio::spawn(async move {
            let taken = this.pop(&queues, limits.as_deref(), max).await;
            if let Err(Ok((_, taken))) = tx.send(taken) {
                // The fetch was dropped: its tasks go back, as if never taken.
                for (message, run) in taken {
                    let undone = sqlx::query_scalar::<_, bool>(this.shared.sql.release.clone())
                        .bind(&*this.app)
                        .bind(message.uuid)
                        .bind(run)
                        .bind(this.shared.holder)
                        .bind(true)
                        .bind(this.retention_ms())
                        .fetch_one(&this.shared.pool)
                        .await;
                    if let Err(e) = undone {
                        tracing::warn!(backend = KIND, uuid = %message.uuid, error = %e, "could not put back a task of a cancelled fetch; it returns when its lease expires");
                    }
                }
            }
        });
        let (next, taken) =
            rx.await.map_err(|_| error(BackendErrorKind::Other, "fetching tasks: the fetch task stopped"))??;
        // Nothing awaited from here on: the tasks reach `out` or the error is returned.
        for (message, run) in taken {
            self.shared.runs.insert(message.uuid, run);
            out.push(message);
        }
        Ok(next)
    }

    /// The fetch statement; tasks that cannot run are ended `error` here.
    async fn pop(
        &self,
        queues: &[String],
        limits: Option<&str>,
        max: usize,
    ) -> Result<(Option<Duration>, Vec<(TaskMessage, i64)>), BackendError> {
        let (full, sweep_ms) = {
            let mut fetched = lock(&self.shared.fetched);
            let key = (self.app.clone(), queues.to_vec());
            fetched.entry(key).or_default().next(std::time::Instant::now())
        };
        let rows = sqlx::query(self.shared.sql.fetch.clone())
            .bind(&*self.app)
            .bind(queues)
            .bind(i32::try_from(max).unwrap_or(i32::MAX))
            .bind(self.lease_ms())
            .bind(self.shared.holder)
            .bind(limits)
            .bind(self.retention_ms())
            .bind(full)
            .bind(sweep_ms)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(db_error("fetching tasks"))?;
        let mut next = None;
        let mut taken = Vec::with_capacity(rows.len());
        let mut unrunnable = Vec::new();
        for row in &rows {
            let kind: String = row.try_get("o_kind").map_err(db_error("decoding a fetched task"))?;
            if kind == "due" {
                let ms: Option<i64> = row.try_get("o_next_ms").map_err(db_error("decoding a fetched task"))?;
                next = ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
                continue;
            }
            let Taken { message, run, problem } = codec::taken(row).map_err(db_error("decoding a fetched task"))?;
            match problem {
                None => taken.push((message, run)),
                Some(reason) => unrunnable.push((message, run, reason)),
            }
        }
        for (message, run, reason) in unrunnable {
            tracing::error!(backend = KIND, uuid = %message.uuid, %reason, "a task that cannot run ends `error`");
            let mut record = TaskRecord::from_message(&message, TaskStatus::Error);
            record.error = Some(reason);
            // If this fails, the task comes back when its lease expires, and ends then.
            if let Err(e) = self.finish_run(&record, Some(run)).await {
                tracing::warn!(backend = KIND, uuid = %message.uuid, error = %e, "could not end a task that cannot run; retried when its lease expires");
            }
        }
        Ok((next, taken))
    }

    /// Writes the end of `task` for `run` (`None`: not fenced).
    async fn finish_run(&self, task: &TaskRecord, run: Option<i64>) -> Result<(), BackendError> {
        let outcome = self.finish_batched(task, run).await?;
        match outcome {
            2 => {
                tracing::warn!(backend = KIND, uuid = %task.uuid, run, status = %task.status, "a run whose lease was taken back finished while another run holds the task: its end is not stored")
            }
            3 => {
                tracing::warn!(backend = KIND, uuid = %task.uuid, run, status = %task.status, "a run whose lease was taken back finished before the task ran again: its end is stored")
            }
            _ => {}
        }
        Ok(())
    }
    /// Writes the record of a task that has not ended (`update`).
    async fn store_running(&self, task: &TaskRecord) -> Result<(), BackendError> {
        let encoded = Encoded::of(task).map_err(encode_error("the task"))?;
        let run = self.shared.run_of(&task.uuid);
        let pool = &self.shared.pool;
        self.retrying(|| async {
            sqlx::query(self.shared.sql.update.clone())
                .bind(&*self.app)
                .bind(task.uuid)
                .bind(&encoded.args)
                .bind(task.updated_at)
                .bind(encoded.result.as_deref())
                .bind(task.error.as_deref())
                .bind(i64::from(task.attempt))
                .bind(encoded.extra.as_deref())
                .bind(self.lease_ms())
                .bind(run)
                .execute(pool)
                .await
                .map(drop)
                .map_err(db_error("updating a task"))
        })
        .await
    }

    /// Writes the end of a task this backend may hold (`finish`).
    async fn store_end(&self, task: &TaskRecord) -> Result<(), BackendError> {
        let run = self.shared.run_of(&task.uuid);
        self.finish_run(task, run).await?;
        // Only once stored: a finish that failed is retried by the same run.
        if run.is_some() {
            self.shared.forget_run(&task.uuid);
        }
        Ok(())
    }
}

impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn for_app(&self, app: &str) -> Self {
        PostgresBackend::for_app(self, app)
    }

    fn app_name(&self) -> &str {
        &self.app
    }

    async fn enqueue(&self, task: &TaskRecord) -> Result<Enqueued, BackendError> {
        self.push(task, None).await
    }

    async fn enqueue_delayed(&self, task: &TaskRecord, delay: Duration) -> Result<Enqueued, BackendError> {
        self.push(task, Some(delay)).await
    }

    /// One statement for the whole batch (the arrays of its columns).
    async fn enqueue_many(&self, tasks: &[(TaskRecord, Option<Duration>)]) -> Result<Vec<Enqueued>, BackendError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        // Repeats within the batch (an id, or a unique key, seen before)
        // are answered here with the earlier task's outcome.
        let mut repeats: Vec<Option<usize>> = vec![None; tasks.len()];
        let mut sent: Vec<usize> = Vec::with_capacity(tasks.len());
        {
            let mut ids: HashMap<Uuid, usize> = HashMap::with_capacity(tasks.len());
            let mut keys: HashMap<&str, usize> = HashMap::new();
            for (i, (task, _)) in tasks.iter().enumerate() {
                let earlier = ids
                    .get(&task.uuid)
                    .or_else(|| task.unique.as_ref().and_then(|u| keys.get(u.key.as_str())))
                    .copied();
                if let Some(j) = earlier {
                    repeats[i] = Some(j);
                    continue;
                }
                ids.insert(task.uuid, i);
                if let Some(u) = &task.unique {
                    keys.insert(u.key.as_str(), i);
                }
                sent.push(i);
            }
        }
        let encoded = sent.iter().map(|&i| self.encode_new(&tasks[i].0)).collect::<Result<Vec<_>, _>>()?;
        let uuids: Vec<Uuid> = sent.iter().map(|&i| tasks[i].0.uuid).collect();
        let names: Vec<&str> = sent.iter().map(|&i| tasks[i].0.task_name.as_str()).collect();
        let queues: Vec<&str> = sent.iter().map(|&i| tasks[i].0.queue.as_str()).collect();
        let priorities: Vec<i64> = sent.iter().map(|&i| tasks[i].0.priority).collect();
        let args: Vec<&str> = encoded.iter().map(|e| e.args.as_str()).collect();
        let created: Vec<f64> = sent.iter().map(|&i| tasks[i].0.created_at).collect();
        let updated: Vec<f64> = sent.iter().map(|&i| tasks[i].0.updated_at).collect();
        let attempts: Vec<i64> = sent.iter().map(|&i| i64::from(tasks[i].0.attempt)).collect();
        let extras: Vec<Option<&str>> = encoded.iter().map(|e| e.extra.as_deref()).collect();
        let limit_keys: Vec<Option<&str>> = sent.iter().map(|&i| tasks[i].0.limit_key.as_deref()).collect();
        let unique_keys: Vec<Option<&str>> =
            sent.iter().map(|&i| tasks[i].0.unique.as_ref().map(|u| u.key.as_str())).collect();
        let windows: Vec<Option<f64>> = sent.iter().map(|&i| tasks[i].0.unique.as_ref().map(|u| u.window)).collect();
        let delays: Vec<i64> = sent.iter().map(|&i| delay_ms(tasks[i].1)).collect();
        let pool = &self.shared.pool;
        let answers: Vec<Option<Uuid>> = self
            .retrying(|| async {
                sqlx::query_scalar::<_, Vec<Option<Uuid>>>(self.shared.sql.enqueue_many.clone())
                    .bind(&*self.app)
                    .bind(&uuids)
                    .bind(&names)
                    .bind(&queues)
                    .bind(&priorities)
                    .bind(&args)
                    .bind(&created)
                    .bind(&updated)
                    .bind(&attempts)
                    .bind(&extras)
                    .bind(&limit_keys)
                    .bind(&unique_keys)
                    .bind(&windows)
                    .bind(&delays)
                    .fetch_one(pool)
                    .await
                    .map_err(db_error("enqueueing tasks"))
            })
            .await?;
        if answers.len() != sent.len() {
            return Err(error(
                BackendErrorKind::Decode,
                format!("enqueueing tasks: {} answers for {} tasks", answers.len(), sent.len()),
            ));
        }
        let mut outcomes: Vec<Option<Enqueued>> = vec![None; tasks.len()];
        for (&i, answer) in sent.iter().zip(answers) {
            outcomes[i] = Some(answer.map_or(Enqueued::New, Enqueued::Existing));
        }
        for i in 0..tasks.len() {
            if let Some(j) = repeats[i] {
                outcomes[i] = Some(match outcomes[j] {
                    Some(Enqueued::Existing(existing)) => Enqueued::Existing(existing),
                    _ => Enqueued::Existing(tasks[j].0.uuid),
                });
            }
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or(Enqueued::New)).collect())
    }

    async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<CancelOutcome, BackendError> {
        let pool = &self.shared.pool;
        let outcome: String = self
            .retrying(|| async {
                sqlx::query_scalar::<_, String>(self.shared.sql.cancel.clone())
                    .bind(&*self.app)
                    .bind(uuid)
                    .bind(reason)
                    .bind(self.retention_ms())
                    .fetch_one(pool)
                    .await
                    .map_err(db_error("cancelling a task"))
            })
            .await?;
        Ok(match outcome.as_str() {
            "cancelled" => CancelOutcome::Cancelled,
            "requested" => CancelOutcome::Requested,
            "missing" => CancelOutcome::NotFound,
            status => CancelOutcome::Finished(TaskStatus::parse(status).ok_or_else(|| {
                error(BackendErrorKind::Decode, format!("cancelling a task: unexpected answer `{status}`"))
            })?),
        })
    }

    fn watch_cancel(&self, uuid: Uuid, token: &CancelToken) {
        self.shared.hub.cancels.watch(uuid, token);
    }

    fn unwatch_cancel(&self, uuid: Uuid) {
        self.shared.hub.cancels.unwatch(uuid);
    }

    async fn stats(&self) -> Result<QueueStats, BackendError> {
        let pool = &self.shared.pool;
        let rows: Vec<(String, String, i64)> = self
            .retrying(|| async {
                sqlx::query_as(self.shared.sql.stats.clone())
                    .bind(&*self.app)
                    .fetch_all(pool)
                    .await
                    .map_err(db_error("reading the stats"))
            })
            .await?;
        let mut stats = QueueStats::default();
        for (name, status, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match (name.as_str(), status.as_str()) {
                ("", "queued") => stats.queued = n,
                ("", "in_flight") => stats.in_flight = n,
                (_, "duplicates") => stats.tasks.entry(name).or_default().duplicates += n,
                (_, status) => {
                    let counts = stats.tasks.entry(name).or_default();
                    match TaskStatus::parse(status) {
                        Some(TaskStatus::Success) => counts.success += n,
                        Some(TaskStatus::Error) => counts.error += n,
                        Some(TaskStatus::Retry) => counts.retry += n,
                        Some(TaskStatus::Cancel) => counts.cancel += n,
                        _ => {}
                    }
                }
            }
        }
        Ok(stats)
    }

    async fn minute_counts(&self, since: Timestamp) -> Result<Option<Vec<MinuteCount>>, BackendError> {
        let first = MinuteCount::minute_of(since) / 60;
        let pool = &self.shared.pool;
        let rows: Vec<(i64, String, i64)> = self
            .retrying(|| async {
                sqlx::query_as(self.shared.sql.minutes.clone())
                    .bind(&*self.app)
                    .bind(first)
                    .fetch_all(pool)
                    .await
                    .map_err(db_error("reading the counts per minute"))
            })
            .await?;
        let mut out: Vec<MinuteCount> = Vec::new();
        for (at, status, n) in rows {
            if out.last().is_none_or(|m| m.at != at) {
                out.push(MinuteCount { at, ..MinuteCount::default() });
            }
            if let (Some(last), Some(status)) = (out.last_mut(), TaskStatus::parse(&status)) {
                last.add(status, u64::try_from(n).unwrap_or(0));
            }
        }
        Ok(Some(out))
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        let pool = &self.shared.pool;
        let row = self
            .retrying(|| async {
                sqlx::query(self.shared.sql.get.clone())
                    .bind(&*self.app)
                    .bind(uuid)
                    .fetch_optional(pool)
                    .await
                    .map_err(db_error("reading a task"))
            })
            .await?;
        row.map(|row| codec::record(&row).map(|(task, _)| task).map_err(db_error("decoding a task"))).transpose()
    }

    async fn get_all(&self) -> Result<Vec<TaskRecord>, BackendError> {
        let pool = &self.shared.pool;
        let rows = self
            .retrying(|| async {
                sqlx::query(self.shared.sql.get_all.clone())
                    .bind(&*self.app)
                    .fetch_all(pool)
                    .await
                    .map_err(db_error("reading the tasks"))
            })
            .await?;
        rows.iter().map(|row| codec::record(row).map(|(task, _)| task).map_err(db_error("decoding a task"))).collect()
    }

    async fn list_tasks(&self, query: &crate::backend::TaskQuery) -> Result<crate::backend::TaskPage, BackendError> {
        self.list_page(query).await
    }

    async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Option<TaskRecord>, BackendError> {
        // Listening before the first read: an end after it is notified.
        self.listening().await;
        let deadline = Instant::now().checked_add(timeout);
        let waiter = self.shared.hub.waiter(uuid);
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.get(uuid).await? {
                None => return Ok(None),
                Some(task) if task.status.is_done() => return Ok(Some(task)),
                Some(_) => {}
            }
            let left = deadline.map_or(self.fallback_poll, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                return Ok(None);
            }
            let _ = tokio::time::timeout(left.min(self.fallback_poll), notified).await;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    async fn fetch(&self, from: &Fetch, max: usize, out: &mut Vec<TaskMessage>) -> Result<(), BackendError> {
        if max == 0 || from.queues.is_empty() {
            return Ok(());
        }
        // Cancel requests and wake-ups reach this process from now on.
        self.listening().await;
        self.keep_purging();
        let wake = self.shared.hub.app(&self.app);
        let limits = limits_json(&from.limits);
        let before = out.len();
        loop {
            // Registered before the statement: a notification sent after
            // its snapshot wakes this fetch.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next = self.take(from, &limits, max, out).await?;
            if out.len() > before {
                return Ok(());
            }
            let nap = next.map_or(self.fallback_poll, |due| due.min(self.fallback_poll)).max(Duration::from_millis(1));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), BackendError> {
        let pool = &self.shared.pool;
        self.retrying(|| async {
            sqlx::query(self.shared.sql.set_paused.clone())
                .bind(&*self.app)
                .bind(queue)
                .bind(paused)
                .execute(pool)
                .await
                .map(drop)
                .map_err(db_error("pausing or resuming a queue"))
        })
        .await
    }

    async fn queues(&self, queues: &[String]) -> Result<Vec<QueueInfo>, BackendError> {
        let pool = &self.shared.pool;
        let rows: Vec<(String, i64, i64, i64, bool, Option<f64>)> = self
            .retrying(|| async {
                sqlx::query_as(self.shared.sql.queues.clone())
                    .bind(&*self.app)
                    .bind(queues)
                    .fetch_all(pool)
                    .await
                    .map_err(db_error("reading the queues"))
            })
            .await?;
        let now = crate::model::now();
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(|(name, depth, delayed, in_flight, paused, oldest)| QueueInfo {
                name,
                depth: count(depth),
                delayed: count(delayed),
                in_flight: count(in_flight),
                paused,
                oldest_age: oldest.map(|t| Duration::from_secs_f64((now - t).max(0.0))),
                limit: Limit::default(),
            })
            .collect())
    }

    async fn update(&self, task: &TaskRecord) -> Result<(), BackendError> {
        if task.status.is_done() { self.store_end(task).await } else { self.store_running(task).await }
    }

    fn lease_renewal(&self) -> Option<Duration> {
        Some(self.lease / 3)
    }

    /// Every fetch is a commit: a busy worker gathers its freed slots for
    /// up to 2 ms and takes their tasks in one.
    fn fetch_gather(&self) -> Option<Duration> {
        Some(FETCH_GATHER)
    }

    async fn extend_lease(&self, uuid: Uuid) -> Result<bool, BackendError> {
        let Some(run) = self.shared.run_of(&uuid) else { return Ok(false) };
        let pool = &self.shared.pool;
        let renewed: Option<Option<String>> = self
            .retrying(|| async {
                sqlx::query_scalar(self.shared.sql.extend.clone())
                    .bind(&*self.app)
                    .bind(uuid)
                    .bind(self.lease_ms())
                    .bind(run)
                    .bind(self.shared.holder)
                    .fetch_optional(pool)
                    .await
                    .map_err(db_error("extending a lease"))
            })
            .await?;
        match renewed {
            Some(cancel) => {
                // A cancel request whose notification was lost.
                if let Some(reason) = cancel {
                    self.shared.hub.cancels.signal(uuid, &reason);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn release(&self, uuid: Uuid) -> Result<bool, BackendError> {
        // Only a task this backend took, at the run it took.
        let Some(run) = self.shared.run_of(&uuid) else { return Ok(false) };
        let pool = &self.shared.pool;
        let released: bool = self
            .retrying(|| async {
                sqlx::query_scalar(self.shared.sql.release.clone())
                    .bind(&*self.app)
                    .bind(uuid)
                    .bind(run)
                    .bind(self.shared.holder)
                    .bind(false)
                    .bind(self.retention_ms())
                    .fetch_one(pool)
                    .await
                    .map_err(db_error("releasing a task"))
            })
            .await?;
        self.shared.forget_run(&uuid);
        Ok(released)
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        // Not retried: a claim stored before its answer was lost would
        // read as taken by someone else.
        let row = sqlx::query(self.shared.sql.claim.clone())
            .bind(&*self.app)
            .bind(key)
            .bind(millis(ttl))
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(db_error("claiming a key"))?;
        Ok(row.is_some())
    }

    async fn finish(&self, task: &TaskRecord) -> Result<(), BackendError> {
        if task.status.is_done() { self.store_end(task).await } else { self.store_running(task).await }
    }

    async fn flush(&self) -> Result<(), BackendError> {
        let pool = &self.shared.pool;
        self.retrying(|| async {
            sqlx::query(self.shared.sql.flush.clone())
                .bind(&*self.app)
                .execute(pool)
                .await
                .map(drop)
                .map_err(db_error("flushing"))
        })
        .await
    }

    async fn config_set(
        &self,
        name: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        let json = serde_json::to_string(value).map_err(encode_error("a setting"))?;
        let pool = &self.shared.pool;
        self.retrying(|| async {
            sqlx::query(self.shared.sql.config_set.clone())
                .bind(&*self.app)
                .bind(name)
                .bind(key)
                .bind(&json)
                .bind(ttl.map(millis))
                .execute(pool)
                .await
                .map(drop)
                .map_err(db_error("writing a setting"))
        })
        .await
    }

    async fn config_get(&self, name: &str, key: &str) -> Result<Option<Value>, BackendError> {
        let pool = &self.shared.pool;
        let raw: Option<String> = self
            .retrying(|| async {
                sqlx::query_scalar(self.shared.sql.config_get.clone())
                    .bind(&*self.app)
                    .bind(name)
                    .bind(key)
                    .fetch_optional(pool)
                    .await
                    .map_err(db_error("reading a setting"))
            })
            .await?;
        raw.map(|raw| {
            serde_json::from_str(&raw).map_err(|e| {
                error(BackendErrorKind::Decode, format!("decoding setting `{key}` of `{name}`")).with_source(e)
            })
        })
        .transpose()
    }

    async fn config_get_all(&self, name: &str) -> Result<Map<String, Value>, BackendError> {
        let pool = &self.shared.pool;
        let rows: Vec<(String, String)> = self
            .retrying(|| async {
                sqlx::query_as(self.shared.sql.config_get_all.clone())
                    .bind(&*self.app)
                    .bind(name)
                    .fetch_all(pool)
                    .await
                    .map_err(db_error("reading settings"))
            })
            .await?;
        let mut out = Map::new();
        for (key, raw) in rows {
            match serde_json::from_str(&raw) {
                Ok(value) => {
                    out.insert(key, value);
                }
                Err(e) => tracing::warn!(backend = KIND, %key, error = %e, "skipping an unreadable setting"),
            }
        }
        Ok(out)
    }

    async fn config_delete(&self, name: &str, key: &str) -> Result<(), BackendError> {
        let pool = &self.shared.pool;
        self.retrying(|| async {
            sqlx::query(self.shared.sql.config_delete.clone())
                .bind(&*self.app)
                .bind(name)
                .bind(key)
                .execute(pool)
                .await
                .map(drop)
                .map_err(db_error("deleting a setting"))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Rate;

    #[test]
    fn limits_travel_as_the_fetch_function_reads_them() {
        assert_eq!(limits_json(&Limits::default()), None);
        let mut limits = Limits::default();
        limits.tasks.insert("a".into(), Limit { concurrency: Some(2), per_key: Some(1), rate: None });
        limits.queues.insert("q".into(), Limit { rate: Some(Rate::per_minute(30)), ..Limit::default() });
        limits.queues.insert("none".into(), Limit::default());
        let json: Value = serde_json::from_str(&limits_json(&limits).unwrap()).unwrap();
        assert_eq!(json, json!({"tasks": {"a": {"c": 2, "k": 1}}, "queues": {"q": {"r": [30, 60.0]}}}));
    }

    #[test]
    fn delays_of_zero_are_no_delay() {
        assert_eq!((delay_ms(None), delay_ms(Some(Duration::ZERO))), (0, 0));
        assert_eq!(delay_ms(Some(Duration::from_millis(250))), 250);
    }
}
