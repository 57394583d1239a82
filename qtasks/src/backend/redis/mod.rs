//! The Redis backend (feature `redis`): see [`RedisBackend`] for the key
//! layout, the scripts and the delivery guarantees.
//!
//! # Why the `redis` crate
//!
//! It gives what this design needs with nothing written by hand: a
//! multiplexed connection that pipelines concurrent commands on its own and
//! reconnects (`ConnectionManager`), `EVALSHA` with script caching
//! (`Script`), pub/sub on a dedicated connection, and `rediss://` over
//! rustls. What decides throughput here is round trips, not the client:
//! one script per enqueue, one per fetched batch (which also marks the
//! tasks `process`) and one per finished task, measured with
//! `benches/src/bin/e2e_redis.rs` (see `BENCHMARKS.md`). `fred` offers the
//! same features; it was not measured against `redis` for this choice.

use super::{Backend, BackendError, CancelOutcome, CancelRegistry, QueueStats};
use crate::model::{TaskMessage, TaskRecord, TaskStatus};
use crate::task::CancelToken;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError, Script, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

const KIND: &str = "redis";

/// Default lease of a taken task.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default time finished records are kept.
const DEFAULT_RETENTION: Duration = Duration::from_secs(86_400);
/// Default largest serialized record accepted by `enqueue`.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// Longest a fetcher stays blocked before looking at the queue again, even
/// without a wake-up. A safety net: a wake-up token taken by a fetch that
/// was then cancelled is lost, and this bounds the delay it can cause.
const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the server to answer a (non-blocking) command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the pub/sub connection is pinged to detect a silent loss.
const PUBSUB_PING: Duration = Duration::from_secs(15);
/// Idle blocking connections kept for later fetches.
const BLOCKING_POOL: usize = 8;
/// Expired leases put back per fetch.
const REQUEUE_BATCH: usize = 1000;

/// Stores a new record and queues it (or, with a delay, puts it among the
/// delayed tasks), with a wake-up for blocked fetchers.
///
/// KEYS: record, queue, seq, wake, delayed. ARGV: data, status, priority hex, uuid, delay (ms, 0 = none).
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(ENQUEUE_LUA));
const ENQUEUE_LUA: &str = r"
local seq = redis.call('INCR', KEYS[3])
local entry = ARGV[3] .. string.format('%016x', seq) .. ARGV[4]
-- Ids are fresh (v4) for every enqueue, so there is no old `cancel` field to clear.
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[1], 'entry', entry)
local delay = tonumber(ARGV[5])
if delay > 0 then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[5], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + delay, entry)
else
  redis.call('ZADD', KEYS[2], 0, entry)
end
redis.call('RPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, 0)
return seq
";

/// Moves due delayed tasks into the queue, requeues expired leases (or,
/// for tasks whose cancel was requested, keeps them to be ended `cancel`),
/// then takes up to `max` (`ARGV[1]`) tasks.
///
/// KEYS: queue, inflight, held, wake, dead, delayed.
/// ARGV: max, lease (ms), record key prefix (`P` `task:`), dead letters kept,
/// expired leases requeued and delayed tasks promoted at most.
/// Returns `{ms until the next lease deadline or delayed task or -1, dead letters,
/// {uuid, data, …} taken, {uuid, data, reason, …} to end cancel}`.
static FETCH: LazyLock<Script> = LazyLock::new(|| Script::new(FETCH_LUA));
const FETCH_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local batch = tonumber(ARGV[5])
local deadline = now + tonumber(ARGV[2])
local function done(status)
  return status == 'success' or status == 'error' or status == 'cancel' or status == 'retry'
end
local cancels = {}
local function to_cancel(id, data, reason)
  redis.call('ZADD', KEYS[2], deadline, id)
  cancels[#cancels + 1] = id
  cancels[#cancels + 1] = data
  cancels[#cancels + 1] = reason
end
local due = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, batch)
for _, entry in ipairs(due) do
  redis.call('ZREM', KEYS[6], entry)
  redis.call('ZADD', KEYS[1], 0, entry)
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, batch)
for _, id in ipairs(expired) do
  local rec = redis.call('HMGET', ARGV[3] .. id, 'status', 'data', 'cancel')
  if rec[2] and rec[3] and not done(rec[1]) then
    -- Its worker is gone and a cancel was requested: it ends here, unrun.
    to_cancel(id, rec[2], rec[3])
  else
    redis.call('ZREM', KEYS[2], id)
    local entry = redis.call('HGET', KEYS[3], id)
    if entry then redis.call('ZADD', KEYS[1], 0, entry) end
  end
end
local want = tonumber(ARGV[1])
local pattern = '^' .. string.rep('%x', 32)
  .. '(%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x)$'
local taken, dead, out = 0, 0, {}
local function bury(entry, reason)
  redis.call('RPUSH', KEYS[5], cjson.encode({entry = entry, reason = reason, at = now / 1000}))
  dead = dead + 1
end
while taken < want do
  local popped = redis.call('ZPOPMIN', KEYS[1], want - taken)
  if #popped == 0 then break end
  for i = 1, #popped, 2 do
    local entry = popped[i]
    local id = string.match(entry, pattern)
    if not id then
      bury(entry, 'malformed queue entry')
    else
      local rec = redis.call('HMGET', ARGV[3] .. id, 'status', 'data', 'cancel')
      if not rec[2] then
        bury(entry, 'no record for this task')
      elseif done(rec[1]) then
        redis.call('HDEL', KEYS[3], id)
      elseif rec[3] then
        -- Requeued after its worker was gone, and a cancel was requested.
        redis.call('HSET', KEYS[3], id, entry)
        to_cancel(id, rec[2], rec[3])
      else
        redis.call('ZADD', KEYS[2], deadline, id)
        redis.call('HSET', KEYS[3], id, entry)
        -- Taken: the record reads `process` from now on (see `decode_record`).
        redis.call('HSET', ARGV[3] .. id, 'status', 'process', 'started', tonumber(t[1]) * 1000000 + tonumber(t[2]))
        out[#out + 1] = id
        out[#out + 1] = rec[2]
        taken = taken + 1
      end
    end
  end
end
if dead > 0 then redis.call('LTRIM', KEYS[5], -tonumber(ARGV[4]), -1) end
if redis.call('ZCARD', KEYS[1]) > 0 then
  redis.call('RPUSH', KEYS[4], '1')
  redis.call('LTRIM', KEYS[4], 0, 0)
end
local next_ms = -1
for _, key in ipairs({KEYS[2], KEYS[6]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 then
    local ms = math.max(0, tonumber(first[2]) - now)
    if next_ms < 0 or ms < next_ms then next_ms = ms end
  end
end
return {next_ms, dead, out, cancels}
";

/// Writes a non-final status unless the record is already done (final or
/// `retry`), and renews the lease.
///
/// KEYS: record, inflight. ARGV: data, status, uuid, lease (ms).
static UPDATE: LazyLock<Script> = LazyLock::new(|| Script::new(UPDATE_LUA));
const UPDATE_LUA: &str = r"
local cur = redis.call('HGET', KEYS[1], 'status')
if cur == 'success' or cur == 'error' or cur == 'cancel' or cur == 'retry' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[4]), ARGV[3])
return 1
";

/// Writes the final (or `retry`) record with its expiry, releases the task
/// (lease and any requeued copy), counts it in the stats unless it had
/// ended already, and publishes its uuid. A `retry` never replaces a record
/// that is already done (a status only moves forward).
///
/// KEYS: record, queue, inflight, held, stats.
/// ARGV: data, status, retention (ms, 0 = keep), channel, uuid, stats field (empty: not counted).
static FINISH: LazyLock<Script> = LazyLock::new(|| Script::new(FINISH_LUA));
const FINISH_LUA: &str = r"
local cur = redis.call('HGET', KEYS[1], 'status')
local was_done = cur == 'success' or cur == 'error' or cur == 'cancel' or cur == 'retry'
if not (was_done and ARGV[2] == 'retry') then
  -- `entry` stays: only a `new` record's is ever read (by CANCEL).
  redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[1])
  if tonumber(ARGV[3]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  else
    redis.call('PERSIST', KEYS[1])
  end
end
local entry = redis.call('HGET', KEYS[4], ARGV[5])
if entry then
  redis.call('ZREM', KEYS[2], entry)
  redis.call('HDEL', KEYS[4], ARGV[5])
end
redis.call('ZREM', KEYS[3], ARGV[5])
if not was_done and ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[5], ARGV[6], 1) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// Cancels a task: a `new` one becomes the `cancel` record built by the
/// caller (if its data is still the one the caller read), leaves the queue
/// or the delayed set, is counted and published; for a `process` one the
/// request is stored (field `cancel`, the first reason wins) and published.
///
/// KEYS: record, queue, delayed, stats.
/// ARGV: cancel record, data read, reason, retention (ms, 0 = keep), done channel,
/// cancel channel, uuid, stats field.
/// Returns `cancelled`, `requested`, `changed` (read again), `missing`, or the status it had.
static CANCEL: LazyLock<Script> = LazyLock::new(|| Script::new(CANCEL_LUA));
const CANCEL_LUA: &str = r"
local rec = redis.call('HMGET', KEYS[1], 'status', 'data', 'entry')
if not rec[1] or not rec[2] then return 'missing' end
if rec[1] == 'new' then
  if rec[2] ~= ARGV[2] then return 'changed' end
  redis.call('HSET', KEYS[1], 'status', 'cancel', 'data', ARGV[1])
  if rec[3] then
    redis.call('ZREM', KEYS[2], rec[3])
    redis.call('ZREM', KEYS[3], rec[3])
    redis.call('HDEL', KEYS[1], 'entry')
  end
  if tonumber(ARGV[4]) > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
  else
    redis.call('PERSIST', KEYS[1])
  end
  redis.call('HINCRBY', KEYS[4], ARGV[8], 1)
  redis.call('PUBLISH', ARGV[5], ARGV[7])
  return 'cancelled'
end
if rec[1] == 'process' then
  redis.call('HSETNX', KEYS[1], 'cancel', ARGV[3])
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. ' ' .. redis.call('HGET', KEYS[1], 'cancel'))
  return 'requested'
end
return rec[1]
";

/// Releases tasks whose record could not be decoded and files them as dead letters.
///
/// KEYS: inflight, held, dead. ARGV: dead letters kept, then (uuid, dead letter) pairs.
static BURY: LazyLock<Script> = LazyLock::new(|| Script::new(BURY_LUA));
const BURY_LUA: &str = r"
for i = 2, #ARGV, 2 do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('RPUSH', KEYS[3], ARGV[i + 1])
end
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[1]), -1)
return 1
";

/// Puts tasks back into the queue at their old place (a fetch that was
/// cancelled while its script ran), and wakes a fetcher.
///
/// KEYS: inflight, held, queue, wake. ARGV: uuids.
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));
const RELEASE_LUA: &str = r"
local n = 0
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    local entry = redis.call('HGET', KEYS[2], ARGV[i])
    if entry then
      redis.call('ZADD', KEYS[3], 0, entry)
      redis.call('HDEL', KEYS[2], ARGV[i])
      n = n + 1
    end
  end
end
if n > 0 then
  redis.call('RPUSH', KEYS[4], '1')
  redis.call('LTRIM', KEYS[4], 0, 0)
end
return n
";

/// Renews the leases of tasks still in flight; returns how many were
/// renewed, and the cancel requests stored for those tasks.
///
/// KEYS: inflight. ARGV: lease (ms), record key prefix, uuids.
/// Returns `{renewed, {uuid, reason, …}}`.
static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_LUA));
const EXTEND_LUA: &str = r"
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local n, cancels = 0, {}
for i = 3, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, ARGV[i])
  local reason = redis.call('HGET', ARGV[2] .. ARGV[i], 'cancel')
  if reason then
    cancels[#cancels + 1] = ARGV[i]
    cancels[#cancels + 1] = reason
  end
end
return {n, cancels}
";

/// Dead letters kept per app (the newest).
const DEAD_LETTERS_KEPT: usize = 10_000;

/// A queue and record store in a Redis server (feature `redis`).
///
/// Tasks are ordered by priority (lower first), then by enqueue order,
/// across every process using the same server and app name. Delivery is
/// at least once: a task taken by a worker that dies goes back to the
/// queue when its lease expires. Clones share the connections.
///
/// ```no_run
/// # async fn demo() -> Result<(), qtasks::BackendError> {
/// use qtasks::RedisBackend;
/// use std::time::Duration;
///
/// let backend = RedisBackend::connect("redis://127.0.0.1:6379", "my_app")
///     .await?
///     .lease(Duration::from_secs(120));
/// # Ok(())
/// # }
/// ```
///
/// # Key layout
///
/// Every key of an app starts with `qtasks:{app}:` (`P` below), so apps
/// sharing a server never collide, and [`flush`](Backend::flush) deletes
/// exactly the keys below (never those of an app named `{app}:…`):
///
/// | key | type | holds |
/// | --- | --- | --- |
/// | `P task:{uuid}` | hash | `status` (`"new"`, `"process"`, …) and `data`, the [`TaskRecord`](crate::TaskRecord) as JSON; `started` (µs, set by `fetch`); `entry`, the task's queue entry until it ends; `cancel`, the reason of a cancel requested while it ran |
/// | `P queue` | sorted set | queued tasks, see below |
/// | `P delayed` | sorted set | queue entries of delayed tasks, scored by when they are due (ms since the epoch, server clock) |
/// | `P seq` | string | counter giving each enqueued task its place in line |
/// | `P inflight` | sorted set | uuids of taken tasks, scored by lease deadline (ms since the epoch, server clock) |
/// | `P held` | hash | uuid → queue entry of each taken task, to requeue it at its old place |
/// | `P wake` | list | at most one wake-up token for fetchers blocked in `BLPOP` |
/// | `P dead` | list | dead letters: queue entries that could not be decoded, as JSON (the newest 10 000) |
/// | `P stats` | hash | `{task name}\x1f{status}` → how many runs ended so (`success`, `error`, `retry`, `cancel`) |
/// | `P done` | pub/sub channel | uuid of each task that reached a final status or `retry` |
/// | `P cancel` | pub/sub channel | `{uuid} {reason}` for each cancel request of a running task |
///
/// # Queue order
///
/// Every queue entry has score 0, so Redis orders the set by member, byte
/// by byte. A member is `{priority:016x}{seq:016x}{uuid}`: the priority as
/// offset binary (`priority ^ 2^63`, so negative priorities sort first),
/// then the enqueue counter, both as fixed-width lowercase hex, then the
/// uuid. The byte order of such strings is the numeric order of
/// (priority, seq): exact for every `i64` priority and every counter
/// value, which a float score combining both could not be (an `f64` has a
/// 53-bit mantissa). `ZPOPMIN` therefore pops the lowest priority, then the
/// oldest task.
///
/// # Scripts and round trips
///
/// Each operation is one atomic Lua script, so one round trip:
/// - `enqueue`: writes the record, adds the queue entry, pushes a wake-up.
///   `enqueue_delayed` adds the entry to `delayed` instead, due at the
///   server's time plus the delay.
/// - `fetch`: moves due delayed entries into the queue, requeues expired
///   leases, pops up to `max` entries, moves each
///   into `inflight`/`held`, returns the records; malformed entries, and
///   entries whose record is missing, go to the dead letters instead (an
///   entry whose record is not a task costs one more round trip to file).
///   When nothing is queued, the fetch blocks in `BLPOP` on the `wake`
///   list, on a connection of its own (a blocking command would stall the
///   shared multiplexed one), until an enqueue wakes it, the next lease
///   expires, the next delayed task is due, or 5 s pass; then it runs the
///   script again.
/// - `update`: writes the status unless the record is already final (a
///   status only moves forward), and renews the lease.
/// - `finish`: writes the final (or `retry`) record and its expiry (the
///   retention), releases the lease and any requeued copy, counts the run
///   in `stats` (once per task), publishes the uuid on `done`.
/// - `wait`: one subscription to `done` per backend, shared by the
///   waiters of the process; a waiter reads the record once subscribed,
///   then sleeps until its uuid is published or the timeout passes.
/// - `stats`: one `MULTI` reading the sizes of `queue`, `delayed` and
///   `inflight` and the `stats` hash.
///
/// # Cancellation
///
/// [`cancel`](Backend::cancel) reads the record, then runs a script that
/// decides on the status the record has at that moment:
/// - `new`: the record becomes the `cancel` record built from the one read
///   (if it is unchanged; else it reads again), its queue or delayed entry
///   is removed, it is counted and published on `done`. No worker can take
///   it any more, whenever it starts.
/// - `process`: the request is stored in the record's `cancel` field and
///   published on `cancel`. Each backend that runs tasks subscribes to that
///   channel (a connection of its own, started by the first `fetch`) and
///   fires the task's [`CancelToken`]. A message lost while the
///   subscription was down is caught by the lease renewal
///   ([`extend_lease`](Backend::extend_lease), every lease / 3), which also
///   reads the field. If the worker is gone, `fetch` finds the request when
///   the lease expires (or when it pops a requeued copy) and ends the task
///   `cancel` instead of handing it out again.
/// - anything else: already ended, nothing changes.
///
/// # Delivery: leases, at least once
///
/// A taken task holds a lease (30 s by default, see [`lease`](Self::lease));
/// `update` renews it and `finish` ends it. Before taking tasks, `fetch`
/// puts back into the queue, at their old place, the tasks whose lease
/// expired: those of a worker that died or lost its connection. A task
/// that runs longer than its lease may therefore run twice: choose a lease
/// longer than the longest task, or renew it with
/// [`extend_leases`](Self::extend_leases).
///
/// `fetch` is cancel-safe: dropped while blocked, it loses only a wake-up
/// token; dropped while its script runs, the tasks it took are put back
/// at once by the task that ran the script.
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
    lease: Duration,
    retention: Option<Duration>,
    max_message_size: usize,
}

struct Shared {
    client: Client,
    manager: ConnectionManager,
    keys: Keys,
    /// Idle connections for `BLPOP`, one per concurrent blocked fetch.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    waiters: Arc<Waiters>,
    /// The subscription to `done`, serving `wait`.
    listener: Mutex<Option<Listener>>,
    /// Tokens of the tasks this process runs.
    cancels: Arc<CancelRegistry>,
    /// The subscription to `cancel`, firing those tokens.
    cancel_listener: Mutex<Option<Listener>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for slot in [&self.listener, &self.cancel_listener] {
            if let Some(listener) = lock(slot).take() {
                listener.task.abort();
            }
        }
    }
}

struct Keys {
    prefix: String,
    task_prefix: String,
    queue: String,
    seq: String,
    inflight: String,
    held: String,
    wake: String,
    dead: String,
    delayed: String,
    stats: String,
    done: String,
    cancel: String,
    config_prefix: String,
}

impl Keys {
    fn new(app: &str) -> Self {
        let prefix = format!("qtasks:{app}:");
        let key = |name: &str| format!("{prefix}{name}");
        Self {
            task_prefix: key("task:"),
            queue: key("queue"),
            seq: key("seq"),
            inflight: key("inflight"),
            held: key("held"),
            wake: key("wake"),
            dead: key("dead"),
            delayed: key("delayed"),
            stats: key("stats"),
            done: key("done"),
            cancel: key("cancel"),
            config_prefix: key("config:"),
            prefix,
        }
    }

    fn task(&self, uuid: Uuid) -> String {
        format!("{}{}", self.task_prefix, uuid.hyphenated())
    }

    /// A shared setting: `config:{len(name)}:{name}:{key}`. The length keeps
    /// group `a` from matching the keys of a group `a:b`.
    fn config_group(&self, name: &str) -> String {
        format!("{}{}:{name}:", self.config_prefix, name.len())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single push, pop or map update.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn error(context: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError { backend: KIND, message: format!("{context}: {e}") }
}

fn redis_error(context: &str) -> impl FnOnce(RedisError) -> BackendError + '_ {
    move |e| error(context, e)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The fields of a record hash a read needs: the JSON record, the status
/// and the time (µs, server clock) the fetch script marked it `process`.
const RECORD_FIELDS: [&str; 3] = ["data", "status", "started"];
type RecordFields = (Option<Vec<u8>>, Option<String>, Option<f64>);

/// Decodes a record. The fetch script marks a taken task `process` in the
/// hash's `status` and `started` fields without rewriting the JSON (one
/// round trip per batch instead of one write per task), so a `new` record
/// whose hash says `process` is reported as `process` since `started`.
fn decode_record(data: &[u8], status: Option<&str>, started_us: Option<f64>) -> Result<TaskRecord, serde_json::Error> {
    let mut task: TaskRecord = serde_json::from_slice(data)?;
    if task.status == crate::model::TaskStatus::New && status == Some("process") {
        task.status = crate::model::TaskStatus::Process;
        // The server's clock may lag the client's: never let time go back.
        if let Some(us) = started_us {
            task.updated_at = task.updated_at.max(us / 1_000_000.0);
        }
    }
    Ok(task)
}

/// The `cancel` record of a task that was queued or held: status `cancel`,
/// the reason as its error, no result.
fn cancelled(mut task: TaskRecord, reason: &str) -> TaskRecord {
    task.status = TaskStatus::Cancel;
    task.error = Some(reason.to_owned());
    task.result = None;
    task.updated_at = task.updated_at.max(crate::model::now());
    task
}

/// A status as stored (`"new"`, `"process"`, …).
fn parse_status(s: &str) -> Option<TaskStatus> {
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

/// The field of `P stats` counting the runs of `name` that ended `status`.
const STATS_SEPARATOR: char = '\x1f';

fn stats_field(name: &str, status: TaskStatus) -> String {
    match status {
        TaskStatus::Success | TaskStatus::Error | TaskStatus::Retry | TaskStatus::Cancel => {
            format!("{name}{STATS_SEPARATOR}{status}")
        }
        TaskStatus::New | TaskStatus::Process => String::new(),
    }
}

/// `priority` as 16 hex digits whose byte order is the numeric order.
fn priority_hex(priority: i64) -> String {
    format!("{:016x}", (priority as u64) ^ (1 << 63))
}

/// Escapes the glob characters of `SCAN … MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The uuid a record key ends with, if it is one of ours (`…task:{uuid}`).
fn task_key_uuid<'a>(keys: &Keys, key: &'a [u8]) -> Option<&'a [u8]> {
    let rest = key.strip_prefix(keys.task_prefix.as_bytes())?;
    (rest.len() == 36 && Uuid::try_parse_ascii(rest).is_ok()).then_some(rest)
}

impl RedisBackend {
    /// Connects to the server at `url` (`redis://`, `rediss://` for TLS,
    /// `redis+unix://`) for the app `app_name`.
    ///
    /// The shared connection reconnects by itself when it is lost; commands
    /// sent meanwhile fail with a [`BackendError`] (the worker retries with
    /// backoff).
    pub async fn connect(url: &str, app_name: &str) -> Result<Self, BackendError> {
        if url.starts_with("rediss") && rustls::crypto::CryptoProvider::get_default().is_none() {
            // Another thread may install one first: either is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // The URL may hold a password: errors do not repeat it.
        let client = Client::open(url).map_err(redis_error("invalid Redis URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let mut manager = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(redis_error("could not connect to Redis"))?;
        // Load the scripts in one round trip, so the first calls need not
        // retry after NOSCRIPT.
        let mut load = redis::pipe();
        for code in [ENQUEUE_LUA, FETCH_LUA, UPDATE_LUA, FINISH_LUA, CANCEL_LUA, BURY_LUA, RELEASE_LUA, EXTEND_LUA] {
            load.cmd("SCRIPT").arg("LOAD").arg(code);
        }
        let _: Vec<String> = load.query_async(&mut manager).await.map_err(redis_error("loading the Lua scripts"))?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                manager,
                keys: Keys::new(app_name),
                blocking: Mutex::new(Vec::new()),
                waiters: Arc::default(),
                listener: Mutex::new(None),
                cancels: Arc::default(),
                cancel_listener: Mutex::new(None),
            }),
            lease: DEFAULT_LEASE,
            retention: Some(DEFAULT_RETENTION),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        })
    }

    /// How long a worker holds a task it took before the task goes back to
    /// the queue (30 s by default; at least 1 ms). A task that runs longer
    /// may run again elsewhere: delivery is at least once.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(1));
        self
    }

    /// How long records of finished tasks are kept (1 day by default);
    /// `None` keeps them until [`flush`](Backend::flush).
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Largest task record, as JSON bytes, that [`enqueue`](Backend::enqueue)
    /// accepts (1 MiB by default); larger ones are refused with an error.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The prefix of every key of this app: `qtasks:{app}:`.
    pub fn key_prefix(&self) -> &str {
        &self.shared.keys.prefix
    }

    /// Renews the leases of tasks this process holds, as a heartbeat for
    /// tasks that run longer than the lease. Returns how many leases were
    /// renewed: tasks already finished or requeued are not in flight any more.
    ///
    /// A cancel requested for one of these tasks (see
    /// [`cancel`](Backend::cancel)) fires its token if it runs here, also
    /// when the pub/sub message of that request was lost.
    pub async fn extend_leases(&self, uuids: &[Uuid]) -> Result<usize, BackendError> {
        if uuids.is_empty() {
            return Ok(0);
        }
        let keys = &self.shared.keys;
        let mut call = EXTEND.key(&keys.inflight);
        call.arg(millis(self.lease)).arg(&keys.task_prefix);
        for uuid in uuids {
            call.arg(uuid.hyphenated().to_string());
        }
        let (n, cancels): (usize, Vec<(String, String)>) =
            call.invoke_async(&mut self.conn()).await.map_err(redis_error("extending leases"))?;
        for (uuid, reason) in cancels {
            if let Ok(uuid) = Uuid::parse_str(&uuid) {
                self.shared.cancels.signal(uuid, &reason);
            }
        }
        Ok(n)
    }

    /// Every key matching a `SCAN` pattern.
    async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>, BackendError> {
        let mut conn = self.conn();
        let mut cursor = 0u64;
        let mut all = Vec::new();
        loop {
            let (next, found): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(redis_error("scanning keys"))?;
            all.extend(found);
            cursor = next;
            if cursor == 0 {
                return Ok(all);
            }
        }
    }

    /// Stores a `new` record and queues it, or delays it by `delay_ms` (> 0).
    async fn push(&self, task: &TaskRecord, delay_ms: u64) -> Result<(), BackendError> {
        let data = serde_json::to_string(task).map_err(|e| error("encoding the task", e))?;
        if data.len() > self.max_message_size {
            return Err(error(
                "enqueue refused",
                format_args!(
                    "task `{}` ({}) is {} bytes as JSON, more than the limit of {} bytes (RedisBackend::max_message_size)",
                    task.task_name,
                    task.uuid,
                    data.len(),
                    self.max_message_size
                ),
            ));
        }
        let keys = &self.shared.keys;
        let _: i64 = ENQUEUE
            .key(keys.task(task.uuid))
            .key(&keys.queue)
            .key(&keys.seq)
            .key(&keys.wake)
            .key(&keys.delayed)
            .arg(data)
            .arg(task.status.as_str())
            .arg(priority_hex(task.priority))
            .arg(task.uuid.hyphenated().to_string())
            .arg(delay_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error("enqueueing a task"))?;
        Ok(())
    }

    fn conn(&self) -> ConnectionManager {
        self.shared.manager.clone()
    }

    /// Runs the fetch script once: appends the tasks taken to `out` and
    /// returns the time until the next lease deadline, if any.
    ///
    /// The round trip runs in a task of its own: if this future is dropped
    /// while the script runs, that task puts the tasks it took back into
    /// the queue at once, instead of leaving them to their lease.
    async fn take(&self, max: usize, out: &mut Vec<TaskMessage>) -> Result<Option<i64>, BackendError> {
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let taken = this.pop(max).await;
            if let Err(Ok((_, messages))) = tx.send(taken) {
                let uuids: Vec<Uuid> = messages.iter().map(|m| m.uuid).collect();
                if let Err(e) = this.release(&uuids).await {
                    tracing::warn!(backend = KIND, error = %e, "could not requeue the tasks of a cancelled fetch; they return when their lease expires");
                }
            }
        });
        let (next_ms, messages) = rx.await.map_err(|_| error("fetching tasks", "the fetch task stopped"))??;
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
                return Err(error("fetching tasks", "unexpected reply from the fetch script"));
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
                return Err(error("fetching tasks", "unexpected reply from the fetch script"));
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
    async fn release(&self, uuids: &[Uuid]) -> Result<(), BackendError> {
        if uuids.is_empty() {
            return Ok(());
        }
        let keys = &self.shared.keys;
        let mut call = RELEASE.key(&keys.inflight);
        call.key(&keys.held).key(&keys.queue).key(&keys.wake);
        for uuid in uuids {
            call.arg(uuid.hyphenated().to_string());
        }
        let _: i64 = call.invoke_async(&mut self.conn()).await.map_err(redis_error("requeueing tasks"))?;
        Ok(())
    }

    /// Blocks until a wake-up token arrives or `block` passes.
    ///
    /// Only a token is taken here, never a task: if this future is dropped
    /// the token is lost with its connection, but no task is.
    async fn await_work(&self, block: Duration) -> Result<(), BackendError> {
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
            Ok(Err(e)) => Err(error("waiting for tasks (BLPOP)", e)),
            Err(_) => Err(error("waiting for tasks (BLPOP)", "the server did not answer in time")),
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
                Err(e) if attempts >= 4 => return Err(error("opening the blocking connection", e)),
                Err(e) => {
                    tracing::warn!(backend = KIND, error = %e, "opening the blocking connection failed; retrying");
                    attempts += 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }

    /// The readiness of the subscription to `done`, starting it on first use.
    fn listener(&self) -> watch::Receiver<bool> {
        let shared = &self.shared;
        subscription(&shared.listener, &shared.client, &shared.keys.done, &shared.waiters)
    }

    /// Starts the subscription to `cancel` if it is not running.
    fn cancel_listener(&self) {
        let shared = &self.shared;
        subscription(&shared.cancel_listener, &shared.client, &shared.keys.cancel, &shared.cancels);
    }

    /// Reads a record with the fields `cancel` compares: the decoded task and
    /// the JSON as stored.
    async fn read(&self, uuid: Uuid) -> Result<Option<(TaskRecord, Vec<u8>)>, BackendError> {
        let (data, status, started): RecordFields = redis::cmd("HMGET")
            .arg(self.shared.keys.task(uuid))
            .arg(&RECORD_FIELDS[..])
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error("reading a task"))?;
        let Some(data) = data else { return Ok(None) };
        let task = decode_record(&data, status.as_deref(), started)
            .map_err(|e| error(&format!("decoding the record of task {uuid}"), e))?;
        Ok(Some((task, data)))
    }
}

impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn enqueue(&self, task: &TaskRecord) -> Result<(), BackendError> {
        self.push(task, 0).await
    }

    async fn enqueue_delayed(&self, task: &TaskRecord, delay: Duration) -> Result<(), BackendError> {
        // A zero delay is an ordinary enqueue; any other is at least 1 ms.
        self.push(task, if delay.is_zero() { 0 } else { millis(delay) }).await
    }

    async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<CancelOutcome, BackendError> {
        let keys = &self.shared.keys;
        // The script rejects a `cancel` record built from a stale read
        // (`changed`); the record of a queued task changes rarely, if ever.
        for _ in 0..16 {
            let Some((task, data)) = self.read(uuid).await? else { return Ok(CancelOutcome::NotFound) };
            if task.status.is_done() {
                return Ok(CancelOutcome::Finished(task.status));
            }
            let name = task.task_name.clone();
            let record = serde_json::to_string(&cancelled(task, reason)).map_err(|e| error("encoding the task", e))?;
            let outcome: String = CANCEL
                .key(keys.task(uuid))
                .key(&keys.queue)
                .key(&keys.delayed)
                .key(&keys.stats)
                .arg(record)
                .arg(data)
                .arg(reason)
                .arg(self.retention.map_or(0, millis))
                .arg(&keys.done)
                .arg(&keys.cancel)
                .arg(uuid.hyphenated().to_string())
                .arg(stats_field(&name, TaskStatus::Cancel))
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
                other => match parse_status(other) {
                    Some(status) => Ok(CancelOutcome::Finished(status)),
                    None => Err(error("cancelling a task", format_args!("unexpected status {other:?}"))),
                },
            };
        }
        Err(error("cancelling a task", format_args!("the record of task {uuid} keeps changing")))
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
        let keys = &self.shared.keys;
        let (queued, delayed, in_flight, counts): (u64, u64, u64, HashMap<String, u64>) = redis::pipe()
            .atomic()
            .zcard(&keys.queue)
            .zcard(&keys.delayed)
            .zcard(&keys.inflight)
            .hgetall(&keys.stats)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error("reading the stats"))?;
        let mut stats = QueueStats { queued: queued + delayed, in_flight, tasks: Default::default() };
        for (field, count) in counts {
            let Some((name, status)) = field.rsplit_once(STATS_SEPARATOR) else { continue };
            let Some(status) = parse_status(status) else { continue };
            // `TaskCounts::add` counts one; these are totals.
            let counts = stats.tasks.entry(name.to_owned()).or_default();
            let field = match status {
                TaskStatus::Success => &mut counts.success,
                TaskStatus::Error => &mut counts.error,
                TaskStatus::Retry => &mut counts.retry,
                TaskStatus::Cancel => &mut counts.cancel,
                TaskStatus::New | TaskStatus::Process => continue,
            };
            *field += count;
        }
        Ok(stats)
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        Ok(self.read(uuid).await?.map(|(task, _)| task))
    }

    async fn get_all(&self) -> Result<Vec<TaskRecord>, BackendError> {
        let keys = &self.shared.keys;
        let pattern = format!("{}*", glob_escape(&keys.task_prefix));
        let mut conn = self.conn();
        let mut all = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, found): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(redis_error("listing tasks"))?;
            let ours: Vec<&[u8]> =
                found.iter().map(Vec::as_slice).filter(|k| task_key_uuid(keys, k).is_some()).collect();
            if !ours.is_empty() {
                let mut pipe = redis::pipe();
                for key in &ours {
                    pipe.cmd("HMGET").arg(*key).arg(&RECORD_FIELDS[..]);
                }
                let records: Vec<RecordFields> =
                    pipe.query_async(&mut conn).await.map_err(redis_error("reading tasks"))?;
                for (data, status, started) in records {
                    let Some(data) = data else { continue };
                    match decode_record(&data, status.as_deref(), started) {
                        Ok(task) => all.push(task),
                        Err(e) => tracing::warn!(backend = KIND, error = %e, "skipping an undecodable task record"),
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        all.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
        Ok(all)
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
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.get(uuid).await? {
                None => return Ok(None),
                Some(task) if task.status.is_done() => return Ok(Some(task)),
                Some(_) => {}
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    async fn fetch(&self, max: usize, out: &mut Vec<TaskMessage>) -> Result<(), BackendError> {
        if max == 0 {
            return Ok(());
        }
        // Workers learn of cancel requests for the tasks they take.
        self.cancel_listener();
        let before = out.len();
        loop {
            let next_deadline = self.take(max, out).await?;
            if out.len() > before {
                return Ok(());
            }
            let block = match next_deadline {
                // Wake up when the next lease expires, to requeue its task,
                // or when the next delayed task is due.
                Some(ms) => Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(IDLE_RECHECK),
                None => IDLE_RECHECK,
            };
            self.await_work(block.max(Duration::from_millis(10))).await?;
        }
    }

    async fn update(&self, task: &TaskRecord) -> Result<(), BackendError> {
        let data = serde_json::to_string(task).map_err(|e| error("encoding the task", e))?;
        let keys = &self.shared.keys;
        let _: i64 = UPDATE
            .key(keys.task(task.uuid))
            .key(&keys.inflight)
            .arg(data)
            .arg(task.status.as_str())
            .arg(task.uuid.hyphenated().to_string())
            .arg(millis(self.lease))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error("updating a task"))?;
        Ok(())
    }

    async fn finish(&self, task: &TaskRecord) -> Result<(), BackendError> {
        let data = serde_json::to_string(task).map_err(|e| error("encoding the task", e))?;
        let keys = &self.shared.keys;
        let _: i64 = FINISH
            .key(keys.task(task.uuid))
            .key(&keys.queue)
            .key(&keys.inflight)
            .key(&keys.held)
            .key(&keys.stats)
            .arg(data)
            .arg(task.status.as_str())
            .arg(self.retention.map_or(0, millis))
            .arg(&keys.done)
            .arg(task.uuid.hyphenated().to_string())
            .arg(stats_field(&task.task_name, task.status))
            .invoke_async(&mut self.conn())
            .await
            .map_err(redis_error("storing a final status"))?;
        Ok(())
    }

    fn lease_renewal(&self) -> Option<Duration> {
        Some(self.lease / 3)
    }

    async fn extend_lease(&self, uuid: Uuid) -> Result<(), BackendError> {
        self.extend_leases(&[uuid]).await.map(drop)
    }

    async fn config_set(
        &self,
        name: &str,
        key: &str,
        value: &serde_json::Value,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        let full = format!("{}{key}", self.shared.keys.config_group(name));
        let json = serde_json::to_string(value).map_err(|e| error("encoding a setting", e))?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(&full).arg(json);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        let _: () = cmd.query_async(&mut self.conn()).await.map_err(redis_error("writing a setting"))?;
        Ok(())
    }

    async fn config_get(&self, name: &str, key: &str) -> Result<Option<serde_json::Value>, BackendError> {
        let full = format!("{}{key}", self.shared.keys.config_group(name));
        let raw: Option<String> = redis::cmd("GET")
            .arg(&full)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error("reading a setting"))?;
        raw.map(|r| serde_json::from_str(&r).map_err(|e| error("decoding a setting", e))).transpose()
    }

    async fn config_get_all(&self, name: &str) -> Result<serde_json::Map<String, serde_json::Value>, BackendError> {
        let group = self.shared.keys.config_group(name);
        let keys = self.scan(&format!("{}*", glob_escape(&group))).await?;
        if keys.is_empty() {
            return Ok(serde_json::Map::new());
        }
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error("reading settings"))?;
        let mut out = serde_json::Map::new();
        for (k, v) in keys.iter().zip(values) {
            // A key may expire between SCAN and MGET.
            let Some(v) = v else { continue };
            let name = String::from_utf8_lossy(&k[group.len()..]).into_owned();
            match serde_json::from_str(&v) {
                Ok(v) => {
                    out.insert(name, v);
                }
                Err(e) => tracing::warn!(key = %name, error = %e, "skipping an unreadable setting"),
            }
        }
        Ok(out)
    }

    async fn config_delete(&self, name: &str, key: &str) -> Result<(), BackendError> {
        let full = format!("{}{key}", self.shared.keys.config_group(name));
        let _: i64 = redis::cmd("DEL")
            .arg(&full)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error("deleting a setting"))?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        let keys = &self.shared.keys;
        let mut conn = self.conn();
        let fixed =
            [&keys.queue, &keys.seq, &keys.inflight, &keys.held, &keys.wake, &keys.dead, &keys.delayed, &keys.stats];
        let _: i64 = redis::cmd("UNLINK").arg(&fixed).query_async(&mut conn).await.map_err(redis_error("flushing"))?;
        // Settings keys continue with a digit (the group's length); an app
        // named `{app}:config` has other keys under the same prefix.
        let mut configs = self.scan(&format!("{}*", glob_escape(&keys.config_prefix))).await?;
        configs.retain(|k| k.get(keys.config_prefix.len()).is_some_and(u8::is_ascii_digit));
        if !configs.is_empty() {
            let _: i64 =
                redis::cmd("UNLINK").arg(&configs).query_async(&mut conn).await.map_err(redis_error("flushing"))?;
        }
        // Only `task:{uuid}` keys: the prefix of app `a` is also the start
        // of the keys of an app `a:b`, whose keys must stay.
        let mut ours = self.scan(&format!("{}*", glob_escape(&keys.task_prefix))).await?;
        ours.retain(|k| task_key_uuid(keys, k).is_some());
        for chunk in ours.chunks(1000) {
            let _: i64 =
                redis::cmd("UNLINK").arg(chunk).query_async(&mut conn).await.map_err(redis_error("flushing"))?;
        }
        Ok(())
    }
}

/// Waiters of this process, by task.
#[derive(Default)]
struct Waiters {
    map: Mutex<HashMap<Uuid, (Arc<Notify>, usize)>>,
}

impl Waiters {
    fn register(&self, uuid: Uuid) -> Waiter<'_> {
        let mut map = lock(&self.map);
        let (notify, count) = map.entry(uuid).or_insert_with(|| (Arc::default(), 0));
        *count += 1;
        Waiter { waiters: self, uuid, notify: Arc::clone(notify) }
    }

    fn wake(&self, uuid: &Uuid) {
        if let Some((notify, _)) = lock(&self.map).get(uuid) {
            notify.notify_waiters();
        }
    }

    /// After a gap in the subscription: everyone looks again.
    fn wake_all(&self) {
        for (notify, _) in lock(&self.map).values() {
            notify.notify_waiters();
        }
    }
}

/// A registered waiter; unregisters when dropped (also when cancelled).
struct Waiter<'a> {
    waiters: &'a Waiters,
    uuid: Uuid,
    notify: Arc<Notify>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.waiters.map);
        if let Some((_, count)) = map.get_mut(&self.uuid) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.uuid);
            }
        }
    }
}

/// The task holding the pub/sub subscription of a backend.
struct Listener {
    ready: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

/// What a subscription does with the messages of its channel.
trait Subscriber: Send + Sync + 'static {
    /// One message.
    fn message(&self, channel: &str, payload: &[u8]);
    /// Subscribed again after a gap, during which messages may have been lost.
    fn resubscribed(&self);
}

/// `done`: each payload is the uuid of a task whose waiters wake up.
impl Subscriber for Waiters {
    fn message(&self, channel: &str, payload: &[u8]) {
        match std::str::from_utf8(payload).ok().and_then(|p| Uuid::parse_str(p).ok()) {
            Some(uuid) => self.wake(&uuid),
            None => tracing::warn!(backend = KIND, %channel, "ignoring a malformed notification"),
        }
    }

    fn resubscribed(&self) {
        self.wake_all();
    }
}

/// `cancel`: each payload is `{uuid} {reason}`, a request for a running task.
impl Subscriber for CancelRegistry {
    fn message(&self, channel: &str, payload: &[u8]) {
        let payload = String::from_utf8_lossy(payload);
        match payload.split_once(' ').and_then(|(id, reason)| Some((Uuid::parse_str(id).ok()?, reason))) {
            Some((uuid, reason)) => {
                self.signal(uuid, reason);
            }
            None => tracing::warn!(backend = KIND, %channel, "ignoring a malformed cancel request"),
        }
    }

    fn resubscribed(&self) {
        // Requests lost meanwhile reach the worker with its next lease renewal.
    }
}

/// The readiness of the subscription in `slot`, starting it if it is not running.
fn subscription<S: Subscriber>(
    slot: &Mutex<Option<Listener>>,
    client: &Client,
    channel: &str,
    subscriber: &Arc<S>,
) -> watch::Receiver<bool> {
    let mut listener = lock(slot);
    if let Some(l) = listener.as_ref().filter(|l| !l.task.is_finished()) {
        return l.ready.clone();
    }
    let (tx, ready) = watch::channel(false);
    let task = tokio::spawn(listen(client.clone(), channel.to_owned(), Arc::clone(subscriber), tx));
    *listener = Some(Listener { ready: ready.clone(), task });
    ready
}

/// Subscribes to `channel` and hands each message to `subscriber`,
/// resubscribing with backoff when the connection is lost.
async fn listen<S: Subscriber>(client: Client, channel: String, subscriber: Arc<S>, ready: watch::Sender<bool>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let subscribed = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            sink.subscribe(&channel).await?;
            Ok::<_, RedisError>((sink, stream))
        })
        .await;
        match subscribed {
            Ok(Ok((mut sink, mut stream))) => {
                backoff = Duration::from_millis(50);
                ready.send_replace(true);
                subscriber.resubscribed();
                let mut ping = tokio::time::interval_at(Instant::now() + PUBSUB_PING, PUBSUB_PING);
                loop {
                    tokio::select! {
                        message = stream.next() => match message {
                            Some(message) => subscriber.message(&channel, message.get_payload_bytes()),
                            None => break,
                        },
                        _ = ping.tick() => {
                            if !matches!(tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<Value>()).await, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                ready.send_replace(false);
                tracing::warn!(backend = KIND, %channel, "pub/sub connection lost; resubscribing");
            }
            Ok(Err(e)) => tracing::warn!(backend = KIND, %channel, error = %e, "subscribing failed; retrying"),
            Err(_) => tracing::warn!(backend = KIND, %channel, "subscribing timed out; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_hex_sorts_like_the_priority() {
        let ps = [i64::MIN, -1_000_000, -1, 0, 1, 2, 1 << 53, (1 << 53) + 1, i64::MAX];
        for w in ps.windows(2) {
            assert!(priority_hex(w[0]) < priority_hex(w[1]), "{} vs {}", w[0], w[1]);
        }
        assert_eq!(priority_hex(0).len(), 16);
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn only_task_uuid_keys_are_ours() {
        let keys = Keys::new("app");
        let uuid = Uuid::from_u128(7);
        assert!(task_key_uuid(&keys, keys.task(uuid).as_bytes()).is_some());
        assert!(task_key_uuid(&keys, b"qtasks:app:task:queue").is_none());
        assert!(task_key_uuid(&keys, b"qtasks:app:queue").is_none());
    }
}
