//! [`QtasksPyBackend`]: the wire format of Python QTasks 1.7.3 on its
//! default Redis broker and storage.

use super::{Conns, DEAD_LETTERS_KEPT, MAX_BLOCK, glob_escape, join_args, lock, millis, redis_error, split_args};
use crate::backend::{Backend, BackendError, BackendErrorKind, CancelOutcome, Enqueued, Fetch, QueueStats, UuidMap};
use crate::model::{Name, TaskMessage, TaskRecord, TaskStatus, now};
use crate::queue::{DEFAULT_QUEUE, QueueInfo};
use crate::task::CancelToken;
use futures::StreamExt;
use redis::{Script, Value as RValue};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

const KIND: &str = "qtasks-py";

/// Default liveness of a holder (see [`QtasksPyBackend::liveness`]).
const DEFAULT_LIVENESS: Duration = Duration::from_secs(5);
/// How often a waiter looks at the record even without a notification: a
/// Python worker finishes tasks without publishing anything.
const WAIT_RECHECK: Duration = Duration::from_secs(1);

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/qt_take.lua")));
static FINISH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/qt_finish.lua")));
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/qt_enqueue.lua")));
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/qt_heartbeat.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/qt_release.lua")));

/// The fields of a Python QTasks record that are not extra fields.
const CORE_FIELDS: [&str; 10] = [
    "task_name",
    "priority",
    "args",
    "kwargs",
    "created_at",
    "updated_at",
    "status",
    "returning",
    "traceback",
    "cancel_reason",
];

/// The extra field holding a qtasks attempt number above 1 (Python QTasks
/// shows it as an extra attribute of the task).
const ATTEMPT: &str = "attempt";

/// A backend speaking Python QTasks 1.7.3's Redis format (feature
/// `python`): a qtasks worker built on it runs the tasks that the real
/// Python QTasks client enqueues (`await app.add_task("add", 2, 3,
/// timeout=5)`), and that client reads the results, errors and cancels it
/// writes, and gets `True` from `app.ping()`.
///
/// The Rust app must be named as the Python one (`QueueTasks` unless the
/// Python code names it): the app name is the key prefix.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use qtasks::{QueueTasks, task, TaskError};
/// use qtasks::backend::QtasksPyBackend;
///
/// #[task]
/// fn add(a: i64, b: i64) -> i64 { a + b }
///
/// let backend = QtasksPyBackend::connect("redis://127.0.0.1:6379/0").await?;
/// let app = QueueTasks::builder("QueueTasks").task::<Add>().backend(backend).build()?;
/// let worker = app.worker().start().await?;
/// # Ok(())
/// # }
/// ```
///
/// # Keys
///
/// Python's own, as the Python worker uses them (`N` is the app name):
///
/// | key | type | use |
/// | --- | --- | --- |
/// | `N:task_queue` | list | entries `"<task_name>:<uuid>:<priority>"`; clients `RPUSH`, workers pop from the left |
/// | `N:<uuid>` | hash | the record: `task_name`, `priority`, `args`, `kwargs` (JSON), `created_at`, `updated_at`, `status`, and `returning` (JSON text), `traceback` or `cancel_reason` at the end; any other field is an extra field |
/// | `N:task_process` | sorted set | the entries being run, scored by priority |
/// | `N:GlobalConfig:main` | hash | `name`, `status running`, TTL 20 s, renewed every liveness / 5 by each worker |
///
/// And this backend's, which Python ignores:
///
/// | key | type | use |
/// | --- | --- | --- |
/// | `N:qtasks:holders` | sorted set | ids of the Rust workers that took tasks, scored by liveness deadline (ms, server clock) |
/// | `N:qtasks:holds:<holder>` | set | the entries a holder runs |
/// | `N:qtasks:delayed` | sorted set | entries of delayed tasks (retries with a backoff, countdowns), scored by when due |
/// | `N:qtasks:dead` | list | dead letters, JSON `{entry, uuid, reason, at}` (the newest 10 000) |
/// | `N:qtasks:stats` | hash | `{task}\x1f{status}` → runs that ended so |
/// | `N:qtasks:done` | pub/sub | the uuid of each task this backend finished |
/// | `N:qtasks:config:…`, `N:qtasks:claim:…` | strings | shared settings and claims |
///
/// # What differs from the Python worker
///
/// - **No task lost between pop and `task_process`.** One Lua script pops
///   an entry, adds it to `task_process`, records that this worker holds
///   it, and marks the record `process`. A worker that dies (killed, cut
///   off) stops renewing its liveness (see [`liveness`](Self::liveness));
///   the next fetch of any Rust worker of the app then puts its tasks back
///   at the front of the queue, `new`. (Tasks a *Python* worker took are
///   not tracked: Python has no such recovery.)
/// - **Blocking pops.** An idle worker blocks in `BLMOVE task_queue
///   task_queue LEFT LEFT` (which waits for an entry and leaves it where
///   it is), then takes it with the script; the Python worker sends `LPOP`
///   every 10 ms.
/// - **A task name with `:` works** (the entry is split from the right);
///   it kills the Python worker.
/// - **The client's priority is kept** in the record (Python rewrites the
///   registered one at the end). The list itself is FIFO, as in Python.
/// - **Bad entries cost nothing else.** An entry that does not parse, whose
///   record is missing or not a hash, or whose task is not `new`, goes to
///   the dead letters with its reason; a record whose `args` or `kwargs`
///   are not JSON ends `error` with the reason.
///
/// # Limits of the protocol
///
/// Python QTasks has one queue: every queue a worker fetches from is that
/// queue, and queue limits and pauses do not apply
/// ([`set_paused`](Backend::set_paused) is refused). A task still queued
/// can be cancelled ([`cancel`](Backend::cancel)): its record becomes
/// `cancel` and the entry is skipped; cancelling a running task is refused
/// (Python QTasks has no client-side cancel; a task cancels itself with
/// its context's `cancel`). Unique keys are not kept. [`wait`](Backend::wait)
/// is woken by this backend's workers and also looks every second, for
/// tasks a Python worker runs.
#[derive(Clone)]
pub struct QtasksPyBackend {
    shared: Arc<Shared>,
    liveness: Duration,
}

struct Keys {
    app: String,
    prefix: String,
    queue: String,
    process: String,
    global: String,
    holders: String,
    holds_prefix: String,
    delayed: String,
    dead: String,
    stats: String,
    done: String,
    config_prefix: String,
    claim_prefix: String,
    own_prefix: String,
}

impl Keys {
    fn new(app: &str) -> Self {
        let prefix = format!("{app}:");
        let own = format!("{app}:qtasks:");
        Self {
            app: app.to_owned(),
            queue: format!("{prefix}task_queue"),
            process: format!("{prefix}task_process"),
            global: format!("{prefix}GlobalConfig:main"),
            holders: format!("{own}holders"),
            holds_prefix: format!("{own}holds:"),
            delayed: format!("{own}delayed"),
            dead: format!("{own}dead"),
            stats: format!("{own}stats"),
            done: format!("{own}done"),
            config_prefix: format!("{own}config:"),
            claim_prefix: format!("{own}claim:"),
            own_prefix: own,
            prefix,
        }
    }

    fn task(&self, uuid: Uuid) -> String {
        format!("{}{}", self.prefix, uuid.hyphenated())
    }

    fn config(&self, group: &str, key: &str) -> String {
        format!("{}{}:{group}:{key}", self.config_prefix, group.len())
    }
}

struct Shared {
    conns: Arc<Conns>,
    keys: Keys,
    /// This backend's id as a holder of tasks.
    holder: String,
    /// The queue entry of each task this backend took and has not ended.
    entries: Mutex<UuidMap<String>>,
    /// Renews the holder's liveness and `GlobalConfig:main`; started by the first fetch.
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn new(conns: Arc<Conns>, app: &str) -> Arc<Self> {
        Arc::new(Self {
            conns,
            keys: Keys::new(app),
            holder: Uuid::new_v4().simple().to_string(),
            entries: Mutex::default(),
            heartbeat: Mutex::default(),
        })
    }

    fn holds(&self) -> String {
        format!("{}{}", self.keys.holds_prefix, self.holder)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.heartbeat).take() {
            task.abort();
        }
    }
}

fn error(kind: BackendErrorKind, message: impl Into<String>) -> BackendError {
    BackendError::new(KIND, kind, message)
}

fn rerr<'a>(context: &'a str) -> impl FnOnce(redis::RedisError) -> BackendError + 'a {
    redis_error(KIND, context)
}

/// A time as Python's `str(time.time())` would write it.
fn timestamp(t: f64) -> String {
    format!("{t}")
}

/// The text of a value in a record: a string as is, anything else as JSON.
fn field_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An extra field as Python QTasks reads it back: `true`/`false`, then an
/// integer, then a float, else the string.
fn guess(text: &str) -> Value {
    match text {
        "true" | "True" => Value::Bool(true),
        "false" | "False" => Value::Bool(false),
        _ => text
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number))
            .unwrap_or_else(|| Value::String(text.to_owned())),
    }
}

/// Parses a queue entry `"<task_name>:<uuid>:<priority>"`, splitting from
/// the right (a task name may contain `:`).
fn parse_entry(entry: &str) -> Option<(&str, Uuid, i64)> {
    let (rest, priority) = entry.rsplit_once(':')?;
    let (name, uuid) = rest.rsplit_once(':')?;
    Some((name, Uuid::parse_str(uuid).ok()?, priority.parse().ok()?))
}

fn entry_of(record: &TaskRecord) -> String {
    format!("{}:{}:{}", record.task_name, record.uuid.hyphenated(), record.priority)
}

/// Decodes a Python QTasks record (`HGETALL`), as a qtasks record. With
/// `strict` (a task about to run) `args` and `kwargs` that are not JSON
/// are an error; else (reading a record) the arguments are kept as their
/// text.
fn decode(uuid: Uuid, fields: &HashMap<String, String>, strict: bool) -> Result<TaskRecord, String> {
    let field = |name: &str| fields.get(name).map(String::as_str);
    let status = match field("status") {
        Some("new") => TaskStatus::New,
        Some("process") => TaskStatus::Process,
        Some("success") => TaskStatus::Success,
        Some("error") => TaskStatus::Error,
        Some("cancel") => TaskStatus::Cancel,
        Some("retry") => TaskStatus::Retry,
        Some(other) => return Err(format!("unknown status `{other}`")),
        None => return Err("no `status` field".to_owned()),
    };
    let arguments = arguments(field("args"), field("kwargs"));
    let args = match (arguments, strict) {
        (Ok(args), _) => args,
        (Err(reason), true) => return Err(reason),
        (Err(_), false) => {
            Value::String(format!("args={} kwargs={}", field("args").unwrap_or("[]"), field("kwargs").unwrap_or("{}")))
        }
    };

    let result = match (status, field("returning")) {
        (TaskStatus::Success, Some(text)) => {
            Some(serde_json::from_str(text).map_err(|e| format!("`returning` is not JSON ({e})"))?)
        }
        (TaskStatus::Success, None) => Some(Value::Null),
        _ => None,
    };
    let error = match status {
        TaskStatus::Cancel => field("cancel_reason").map(str::to_owned),
        TaskStatus::Error | TaskStatus::Retry => field("traceback").map(str::to_owned),
        _ => None,
    };
    let created_at = field("created_at").and_then(|t| t.parse().ok()).unwrap_or(0.0);
    let mut extra = Map::new();
    for (name, text) in fields {
        if !CORE_FIELDS.contains(&name.as_str()) && name != ATTEMPT {
            extra.insert(name.clone(), guess(text));
        }
    }
    Ok(TaskRecord {
        uuid,
        task_name: field("task_name").unwrap_or_default().into(),
        priority: field("priority").and_then(|p| p.parse().ok()).unwrap_or(0),
        args,
        status,
        created_at,
        updated_at: field("updated_at").and_then(|t| t.parse().ok()).unwrap_or(created_at),
        result,
        error,
        attempt: field(ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(1),
        extra,
        queue: Name::new_static(DEFAULT_QUEUE),
        limit_key: None,
        unique: None,
        worker: None,
        started_at: None,
    })
}

/// Python's `args` and `kwargs`, joined (see "Arguments" in the module).
fn arguments(args: Option<&str>, kwargs: Option<&str>) -> Result<Value, String> {
    let args = match args {
        None => Vec::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Array(args)) => args,
            Ok(_) => return Err(format!("`args` is not a JSON array: {text:.200}")),
            Err(e) => return Err(format!("`args` is not JSON ({e}): {text:.200}")),
        },
    };
    let kwargs = match kwargs {
        None => Map::new(),
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(kwargs)) => kwargs,
            Ok(_) => return Err(format!("`kwargs` is not a JSON object: {text:.200}")),
            Err(e) => return Err(format!("`kwargs` is not JSON ({e}): {text:.200}")),
        },
    };
    Ok(join_args(args, kwargs))
}

/// The fields of a `new` record, as the Python client writes them.
fn new_fields(record: &TaskRecord) -> Vec<(String, String)> {
    let (args, kwargs) = split_args(&record.args);
    let mut fields = vec![
        ("task_name".to_owned(), record.task_name.to_string()),
        ("priority".to_owned(), record.priority.to_string()),
        ("args".to_owned(), Value::Array(args).to_string()),
        ("kwargs".to_owned(), Value::Object(kwargs).to_string()),
        ("created_at".to_owned(), timestamp(record.created_at)),
        ("updated_at".to_owned(), timestamp(record.updated_at)),
        ("status".to_owned(), TaskStatus::New.as_str().to_owned()),
    ];
    fields.extend(extra_fields(record));
    fields
}

fn extra_fields(record: &TaskRecord) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = record
        .extra
        .iter()
        .filter(|(name, _)| !CORE_FIELDS.contains(&name.as_str()) && *name != ATTEMPT)
        .map(|(name, value)| (name.clone(), field_text(value)))
        .collect();
    if record.attempt != 1 {
        fields.push((ATTEMPT.to_owned(), record.attempt.to_string()));
    }
    fields
}

/// Reads a flat `HGETALL` reply as a map.
fn hash_of(value: RValue) -> HashMap<String, String> {
    let items = match value {
        RValue::Array(items) => items,
        RValue::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    };
    let mut out = HashMap::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        if let (Some(k), Some(v)) = (text(k), text(v)) {
            out.insert(k, v);
        }
    }
    out
}

fn text(value: RValue) -> Option<String> {
    match value {
        RValue::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        RValue::SimpleString(s) => Some(s),
        RValue::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

impl QtasksPyBackend {
    /// Connects to the Redis server the Python app uses (its broker URL,
    /// same db). The app builder scopes it to its app; the app's name must
    /// be the Python app's name (`QueueTasks` by default).
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let conns = Arc::new(Conns::connect(KIND, url).await?);
        Ok(Self { shared: Shared::new(conns, "QueueTasks"), liveness: DEFAULT_LIVENESS })
    }

    /// How long after its last sign of life a worker that took tasks
    /// counts as gone (5 s by default, at least 50 ms); then the next fetch
    /// of any worker puts its tasks back at the front of the queue. It
    /// renews its liveness every fifth of this, in the background.
    pub fn liveness(mut self, liveness: Duration) -> Self {
        self.liveness = liveness.max(Duration::from_millis(50));
        self
    }

    /// The keys' prefix: the app name and `:`.
    pub fn key_prefix(&self) -> &str {
        &self.shared.keys.prefix
    }

    fn conn(&self) -> redis::aio::ConnectionManager {
        self.shared.conns.conn()
    }

    /// Starts renewing this holder's liveness and `GlobalConfig:main`.
    fn keep_alive(&self) {
        let mut slot = lock(&self.shared.heartbeat);
        if slot.is_some() {
            return;
        }
        let weak = Arc::downgrade(&self.shared);
        let liveness = self.liveness;
        *slot = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(liveness / 5);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let beat = HEARTBEAT
                    .key(&shared.keys.holders)
                    .key(&shared.keys.global)
                    .arg(&shared.holder)
                    .arg(millis(liveness))
                    .arg(&shared.keys.app)
                    .invoke_async::<i64>(&mut shared.conns.conn())
                    .await;
                if let Err(e) = beat {
                    tracing::warn!(backend = KIND, error = %e, "renewing the worker's liveness failed");
                }
            }
        }));
    }

    /// Runs the take script; if the caller is dropped meanwhile, the tasks
    /// it took are put back (so `fetch` is cancel-safe).
    async fn take(&self, max: usize) -> Result<(Vec<(String, HashMap<String, String>)>, i64), BackendError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.take_now(max).await;
            if let Err(Ok((taken, _))) = tx.send(result) {
                for (entry, _) in taken {
                    if let Some((_, uuid, _)) = parse_entry(&entry) {
                        let _ = this.release_entry(uuid, &entry).await;
                    }
                }
            }
        });
        rx.await.map_err(|_| error(BackendErrorKind::Other, "the fetch task stopped"))?
    }

    async fn take_now(&self, max: usize) -> Result<(Vec<(String, HashMap<String, String>)>, i64), BackendError> {
        let keys = &self.shared.keys;
        let (taken, next_ms): (Vec<RValue>, i64) = TAKE
            .key(&keys.queue)
            .key(&keys.process)
            .key(&keys.holders)
            .key(&keys.delayed)
            .key(&keys.dead)
            .arg(&keys.prefix)
            .arg(&keys.holds_prefix)
            .arg(&self.shared.holder)
            .arg(millis(self.liveness))
            .arg(max.max(1))
            .arg(DEAD_LETTERS_KEPT)
            .invoke_async(&mut self.conn())
            .await
            .map_err(rerr("taking tasks"))?;
        let mut out = Vec::with_capacity(taken.len() / 2);
        let mut items = taken.into_iter();
        while let (Some(entry), Some(fields)) = (items.next(), items.next()) {
            if let Some(entry) = text(entry) {
                out.push((entry, hash_of(fields)));
            }
        }
        Ok((out, next_ms))
    }

    async fn release_entry(&self, uuid: Uuid, entry: &str) -> Result<bool, BackendError> {
        let keys = &self.shared.keys;
        let released: i64 = RELEASE
            .key(keys.task(uuid))
            .key(&keys.queue)
            .key(&keys.process)
            .key(self.shared.holds())
            .arg(entry)
            .invoke_async(&mut self.conn())
            .await
            .map_err(rerr("releasing a task"))?;
        Ok(released == 1)
    }

    /// Ends a taken task (see `lua/qt_finish.lua`).
    async fn end(&self, entry: &str, record: &TaskRecord) -> Result<bool, BackendError> {
        let keys = &self.shared.keys;
        let mut call = FINISH.key(keys.task(record.uuid));
        call.key(&keys.process)
            .key(self.shared.holds())
            .key(&keys.stats)
            .arg(entry)
            .arg(record.status.as_str())
            .arg(&keys.done)
            .arg(record.uuid.hyphenated().to_string())
            .arg(format!("{}\x1f{}", record.task_name, record.status));
        let reason = || record.error.clone().unwrap_or_default();
        match record.status {
            TaskStatus::Success => {
                let returning = record.result.as_ref().unwrap_or(&Value::Null).to_string();
                call.arg("returning").arg(returning);
            }
            TaskStatus::Cancel => {
                call.arg("cancel_reason").arg(reason());
            }
            _ => {
                call.arg("traceback").arg(reason());
            }
        }
        for (name, value) in extra_fields(record) {
            call.arg(name).arg(value);
        }
        let written: i64 = call.invoke_async(&mut self.conn()).await.map_err(rerr("storing the end of a task"))?;
        Ok(written == 1)
    }

    async fn read(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.shared.keys.task(uuid))
            .query_async(&mut self.conn())
            .await
            .map_err(rerr("reading a task"))?;
        if fields.is_empty() {
            return Ok(None);
        }
        decode(uuid, &fields, false)
            .map(Some)
            .map_err(|reason| error(BackendErrorKind::Decode, format!("decoding the record of task {uuid}: {reason}")))
    }

    /// The uuids of every record of the app.
    async fn record_uuids(&self) -> Result<Vec<Uuid>, BackendError> {
        let prefix = &self.shared.keys.prefix;
        let pattern = format!("{}*", glob_escape(prefix));
        Ok(self
            .shared
            .conns
            .scan(KIND, &pattern)
            .await?
            .iter()
            .filter_map(|key| key.strip_prefix(prefix.as_str()))
            .filter(|rest| rest.len() == 36)
            .filter_map(|rest| Uuid::parse_str(rest).ok())
            .collect())
    }
}

impl Backend for QtasksPyBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn for_app(&self, app: &str) -> Self {
        Self { shared: Shared::new(Arc::clone(&self.shared.conns), app), liveness: self.liveness }
    }

    fn app_name(&self) -> &str {
        &self.shared.keys.app
    }

    async fn enqueue(&self, task: &TaskRecord) -> Result<Enqueued, BackendError> {
        self.enqueue_delayed(task, Duration::ZERO).await
    }

    async fn enqueue_delayed(&self, task: &TaskRecord, delay: Duration) -> Result<Enqueued, BackendError> {
        let keys = &self.shared.keys;
        let mut call = ENQUEUE.key(keys.task(task.uuid));
        call.key(&keys.queue).key(&keys.delayed).arg(entry_of(task)).arg(if delay.is_zero() {
            0
        } else {
            millis(delay)
        });
        for (name, value) in new_fields(task) {
            call.arg(name).arg(value);
        }
        let stored: i64 = call.invoke_async(&mut self.conn()).await.map_err(rerr("enqueueing a task"))?;
        Ok(if stored == 1 { Enqueued::New } else { Enqueued::Existing(task.uuid) })
    }

    async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<CancelOutcome, BackendError> {
        let keys = &self.shared.keys;
        let key = keys.task(uuid);
        let mut conn = self.conn();
        // The status is checked and changed in one WATCH transaction-free
        // step: HSET only if it is still `new` (a tiny script).
        let outcome: String = redis::Script::new(
            "local s = redis.call('HGET', KEYS[1], 'status')
             if not s then return 'none' end
             if s ~= 'new' then return s end
             local t = redis.call('TIME')
             redis.call('HSET', KEYS[1], 'status', 'cancel', 'cancel_reason', ARGV[1], 'updated_at', t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
             redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
             redis.call('PUBLISH', ARGV[3], ARGV[4])
             return 'cancelled'",
        )
        .key(&key)
        .key(&keys.stats)
        .arg(reason)
        .arg(format!("{}\x1fcancel", self.read(uuid).await?.map(|r| r.task_name).unwrap_or_default()))
        .arg(&keys.done)
        .arg(uuid.hyphenated().to_string())
        .invoke_async(&mut conn)
        .await
        .map_err(rerr("cancelling a task"))?;
        match outcome.as_str() {
            "none" => Ok(CancelOutcome::NotFound),
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "process" => Err(error(
                BackendErrorKind::InvalidRequest,
                format!("task {uuid} is running: the QTasks protocol cannot cancel a running task"),
            )),
            "success" => Ok(CancelOutcome::Finished(TaskStatus::Success)),
            "error" => Ok(CancelOutcome::Finished(TaskStatus::Error)),
            "cancel" => Ok(CancelOutcome::Finished(TaskStatus::Cancel)),
            "retry" => Ok(CancelOutcome::Finished(TaskStatus::Retry)),
            other => Err(error(BackendErrorKind::Decode, format!("task {uuid} has the unknown status `{other}`"))),
        }
    }

    fn watch_cancel(&self, _uuid: Uuid, _token: &CancelToken) {}

    fn unwatch_cancel(&self, _uuid: Uuid) {}

    async fn stats(&self) -> Result<QueueStats, BackendError> {
        let keys = &self.shared.keys;
        let (queued, delayed, in_flight, counts): (u64, u64, u64, HashMap<String, u64>) = redis::pipe()
            .atomic()
            .llen(&keys.queue)
            .zcard(&keys.delayed)
            .zcard(&keys.process)
            .hgetall(&keys.stats)
            .query_async(&mut self.conn())
            .await
            .map_err(rerr("reading the stats"))?;
        let mut stats = QueueStats { queued: queued + delayed, in_flight, ..QueueStats::default() };
        super::add_counts(&mut stats, counts);
        Ok(stats)
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        self.read(uuid).await
    }

    async fn get_all(&self) -> Result<Vec<TaskRecord>, BackendError> {
        let mut records = Vec::new();
        for uuid in self.record_uuids().await? {
            // A record that does not decode is not listed (`get` reports it).
            if let Ok(Some(record)) = self.read(uuid).await {
                records.push(record);
            }
        }
        Ok(records)
    }

    async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Option<TaskRecord>, BackendError> {
        let deadline = Instant::now() + timeout;
        let mut pubsub = self.shared.conns.client.get_async_pubsub().await.map_err(rerr("subscribing"))?;
        pubsub.subscribe(&self.shared.keys.done).await.map_err(rerr("subscribing"))?;
        let me = uuid.hyphenated().to_string();
        let mut messages = pubsub.on_message();
        loop {
            match self.read(uuid).await? {
                None => return Ok(None),
                Some(record) if record.status.is_done() => return Ok(Some(record)),
                Some(_) => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let pause = left.min(WAIT_RECHECK);
            let _ = tokio::time::timeout(pause, async {
                while let Some(message) = messages.next().await {
                    if message.get_payload_bytes() == me.as_bytes() {
                        return;
                    }
                }
                // The subscription ended: fall back to the recheck.
                tokio::time::sleep(pause).await;
            })
            .await;
        }
    }

    async fn fetch(&self, _from: &Fetch, max: usize, out: &mut Vec<TaskMessage>) -> Result<(), BackendError> {
        self.keep_alive();
        loop {
            let (taken, next_ms) = self.take(max).await?;
            for (entry, fields) in taken {
                let Some((name, uuid, priority)) = parse_entry(&entry) else { continue };
                match decode(uuid, &fields, true) {
                    Ok(mut record) => {
                        // The entry is what the client sent: its priority and name.
                        record.priority = priority;
                        if record.task_name.is_empty() {
                            record.task_name = name.into();
                        }
                        lock(&self.shared.entries).insert(uuid, entry);
                        out.push(record.message());
                    }
                    Err(reason) => {
                        let mut record = TaskRecord::from_message(
                            &TaskMessage {
                                uuid,
                                task_name: name.into(),
                                queue: Name::new_static(DEFAULT_QUEUE),
                                priority,
                                args: Value::Null,
                                created_at: now(),
                                attempt: 1,
                                extra: Map::new(),
                                limit_key: None,
                            },
                            TaskStatus::Error,
                        );
                        record.error = Some(format!("the task cannot run: its record is malformed: {reason}"));
                        tracing::error!(backend = KIND, %uuid, %reason, "malformed QTasks record; ending it `error`");
                        self.end(&entry, &record).await?;
                    }
                }
            }
            if !out.is_empty() {
                return Ok(());
            }
            let block = if next_ms < 0 {
                MAX_BLOCK
            } else {
                let now_ms = (now() * 1000.0) as i64;
                Duration::from_millis(
                    u64::try_from(next_ms - now_ms).unwrap_or(0).clamp(10, MAX_BLOCK.as_millis() as u64),
                )
            };
            // Waits for an entry without taking it: LEFT to LEFT puts it back
            // where it was, in the same atomic step.
            let mut blmove = redis::cmd("BLMOVE");
            let queue = &self.shared.keys.queue;
            blmove.arg(queue).arg(queue).arg("LEFT").arg("LEFT").arg(block.as_secs_f64());
            let _: Option<String> = self.shared.conns.blocking(KIND, &blmove, block).await?;
        }
    }

    async fn set_paused(&self, queue: &str, _paused: bool) -> Result<(), BackendError> {
        Err(error(
            BackendErrorKind::InvalidRequest,
            format!("cannot pause queue `{queue}`: the QTasks protocol has no paused queues"),
        ))
    }

    async fn queues(&self, _queues: &[String]) -> Result<Vec<QueueInfo>, BackendError> {
        let keys = &self.shared.keys;
        let (depth, delayed, in_flight): (u64, u64, u64) = redis::pipe()
            .atomic()
            .llen(&keys.queue)
            .zcard(&keys.delayed)
            .zcard(&keys.process)
            .query_async(&mut self.conn())
            .await
            .map_err(rerr("reading the queue"))?;
        Ok(vec![QueueInfo {
            name: DEFAULT_QUEUE.to_owned(),
            depth,
            delayed,
            in_flight,
            paused: false,
            oldest_age: None,
            limit: Default::default(),
        }])
    }

    async fn update(&self, task: &TaskRecord) -> Result<(), BackendError> {
        if !lock(&self.shared.entries).contains_key(&task.uuid) {
            return Ok(());
        }
        let mut fields =
            vec![("status".to_owned(), task.status.as_str().to_owned()), ("updated_at".to_owned(), timestamp(now()))];
        fields.extend(extra_fields(task));
        let _: () = redis::cmd("HSET")
            .arg(self.shared.keys.task(task.uuid))
            .arg(fields)
            .query_async(&mut self.conn())
            .await
            .map_err(rerr("updating a task"))?;
        Ok(())
    }

    async fn release(&self, uuid: Uuid) -> Result<bool, BackendError> {
        let Some(entry) = lock(&self.shared.entries).remove(&uuid) else { return Ok(false) };
        self.release_entry(uuid, &entry).await
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        self.shared.conns.claim(KIND, &self.shared.keys.claim_prefix, key, ttl).await
    }

    async fn finish(&self, task: &TaskRecord) -> Result<(), BackendError> {
        let entry = lock(&self.shared.entries).get(&task.uuid).cloned().unwrap_or_else(|| entry_of(task));
        let written = self.end(&entry, task).await?;
        lock(&self.shared.entries).remove(&task.uuid);
        if !written {
            tracing::warn!(backend = KIND, uuid = %task.uuid, "the end of a task was not stored: another worker holds it or it had ended");
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        // Stops this backend's heartbeat first, so it does not write its
        // keys again (a later fetch starts it anew).
        if let Some(task) = lock(&self.shared.heartbeat).take() {
            task.abort();
        }
        let keys = &self.shared.keys;
        let mut doomed: Vec<String> = vec![keys.queue.clone(), keys.process.clone(), keys.global.clone()];
        doomed.extend(self.record_uuids().await?.into_iter().map(|uuid| keys.task(uuid)));
        doomed.extend(self.shared.conns.scan(KIND, &format!("{}*", glob_escape(&keys.own_prefix))).await?);
        self.shared.conns.delete(KIND, &doomed).await
    }

    async fn config_set(
        &self,
        name: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.shared.conns.config_set(KIND, &self.shared.keys.config(name, ""), key, value, ttl).await
    }

    async fn config_get(&self, name: &str, key: &str) -> Result<Option<Value>, BackendError> {
        self.shared.conns.config_get(KIND, &self.shared.keys.config(name, key)).await
    }

    async fn config_get_all(&self, name: &str) -> Result<Map<String, Value>, BackendError> {
        self.shared.conns.config_get_all(KIND, &self.shared.keys.config(name, "")).await
    }

    async fn config_delete(&self, name: &str, key: &str) -> Result<(), BackendError> {
        self.shared.conns.config_delete(KIND, &self.shared.keys.config(name, ""), key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_split_from_the_right() {
        let uuid = Uuid::from_u128(7);
        let entry = format!("mod:add:{}:-3", uuid.hyphenated());
        assert_eq!(parse_entry(&entry), Some(("mod:add", uuid, -3)));
        assert_eq!(parse_entry("add:not-a-uuid:0"), None);
        assert_eq!(parse_entry("nothing"), None);
    }

    #[test]
    fn a_python_record_decodes_with_its_arguments_and_extras() {
        let uuid = Uuid::from_u128(9);
        let fields: HashMap<String, String> = [
            ("task_name", "add"),
            ("priority", "7"),
            ("args", "[2]"),
            ("kwargs", "{\"b\": 3}"),
            ("created_at", "1796577917.8169672"),
            ("updated_at", "1796577917.8169672"),
            ("status", "success"),
            ("returning", "5"),
            ("worker_id", "rust-1"),
            ("ratio", "0.5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let record = decode(uuid, &fields, true).unwrap();
        assert_eq!(record.args, json!({"0": 2, "b": 3}));
        assert_eq!(record.result, Some(json!(5)));
        assert_eq!(record.priority, 7);
        assert_eq!(record.extra.get("worker_id"), Some(&json!("rust-1")));
        assert_eq!(record.extra.get("ratio"), Some(&json!(0.5)));
        let mut bad = fields.clone();
        bad.insert("args".into(), "[2".into());
        assert!(decode(uuid, &bad, true).unwrap_err().contains("`args` is not JSON"));
        assert_eq!(decode(uuid, &bad, false).unwrap().args, json!("args=[2 kwargs={\"b\": 3}"));
    }
}
