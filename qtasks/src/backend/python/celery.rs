//! [`CeleryBackend`]: Celery's message protocol v2 on kombu's Redis
//! transport (JSON bodies), with Celery's Redis result backend.

use super::{Conns, DEAD_LETTERS_KEPT, MAX_BLOCK, glob_escape, join_args, lock, millis, redis_error, split_args};
use crate::backend::{Backend, BackendError, BackendErrorKind, CancelOutcome, Enqueued, Fetch, QueueStats, UuidMap};
use crate::model::{Name, RETRY, RETRY_PARENT, TaskMessage, TaskRecord, TaskStatus, now};
use crate::queue::{DEFAULT_QUEUE, QueueInfo};
use crate::task::CancelToken;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use redis::Script;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

const KIND: &str = "celery";

/// Celery's default queue, which qtasks's default queue stands for.
pub(crate) const CELERY_QUEUE: &str = "celery";
/// kombu's keys for messages delivered and not acked.
const UNACKED: &str = "unacked";
const UNACKED_INDEX: &str = "unacked_index";
/// kombu's priority buckets, in the order its workers pop them.
const BUCKETS: [u8; 4] = [0, 3, 6, 9];
/// kombu's separator between a queue name and its priority bucket.
const BUCKET_SEPARATOR: &str = "\x06\x16";
/// kombu's default visibility timeout.
const DEFAULT_VISIBILITY: Duration = Duration::from_secs(3600);
/// Celery's default `result_expires`.
const DEFAULT_RESULT_EXPIRES: Duration = Duration::from_secs(86_400);
/// The extra field holding the Celery task id of a task.
pub(crate) const CELERY_ID: &str = "celery_id";
/// The header carrying the retries a qtasks retry has left (Celery ignores it).
const RETRIES_LEFT: &str = "qtasks_retries_left";

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cel_take.lua")));
static FINISH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cel_finish.lua")));
static DEFER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cel_defer.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cel_release.lua")));
static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cel_extend.lua")));

/// A backend speaking Celery's protocol (feature `python`): a qtasks
/// worker built on it runs the tasks that the real Celery client sends
/// (`add.delay(2, 3)`, `apply_async(…, queue=…, countdown=…)`) through
/// kombu's Redis transport, and stores results where Celery's Redis result
/// backend looks, so `AsyncResult.get()` returns the result or raises.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use qtasks::{QueueTasks, task};
/// use qtasks::backend::CeleryBackend;
///
/// /// The Python `@app.task` called `tasks.add`.
/// #[task(name = "tasks.add")]
/// fn add(a: i64, b: i64) -> i64 { a + b }
///
/// let backend = CeleryBackend::connect("redis://127.0.0.1:6379/0").await?;
/// let app = QueueTasks::builder("tasks")
///     .task::<Add>()
///     .queue(qtasks::Queue::new("emails"))
///     .backend(backend)
///     .build()?;
/// let worker = app.worker().queues(["default", "emails"]).start().await?; // `celery` and `emails`
/// # Ok(())
/// # }
/// ```
///
/// The broker and the result backend must be the same Redis server and db
/// (Celery's `broker` and `backend` URLs).
///
/// # What it does, in Celery's keys
///
/// - **Queues.** qtasks's default queue is Celery's `celery`; any other
///   queue has its own name. A fetch pops the queues it is given with
///   kombu's priority buckets (`q`, `q\x06\x163`, `q\x06\x166`,
///   `q\x06\x169`; bucket-major, queue-minor), blocking in `BRPOP` when
///   they are empty.
/// - **Acks, kombu's way.** A message taken is put in `unacked` (delivery
///   tag → `[envelope, exchange, routing_key]`) and `unacked_index` (tag →
///   delivery time) in the same script that pops it; it is acked (removed
///   from both) after its result is stored. Messages whose delivery is
///   older than the visibility timeout are put back in their list, marked
///   `redelivered`, by the next fetch of any Rust worker, as a starting
///   Python worker does: so Python and Rust workers restore each other's
///   tasks. A Rust worker renews the delivery time of the tasks it runs
///   every third of the timeout, so a long task is not restored while its
///   worker lives. (A message popped by `BRPOP` is adopted by a script
///   right after: the same short window as kombu's.)
/// - **Results**: `SETEX celery-task-meta-<id>` with the result expiry and
///   `PUBLISH` on the same channel, one script, unless a ready result
///   (`SUCCESS`, `FAILURE`, `REVOKED`) is stored already. Success is
///   `SUCCESS` with the result; an error is `FAILURE` with `exc_type`,
///   `exc_message`, `exc_module` and a traceback text, so `get()` raises:
///   `RuntimeError` (builtins) for a task's error, `TypeError` for
///   arguments that do not fit, `celery.exceptions.NotRegistered` for an
///   unknown task name; a cancel is `REVOKED`. `ignore_result` stores nothing.
/// - **ETA and countdown**: a message whose `eta` is later moves from
///   `unacked` to a delayed set of this backend (`qtasks:{app}:celery:delayed`),
///   and back to its list when due; no worker holds it meanwhile.
///   `expires` in the past ends the task `REVOKED` without running it.
///   `retries` is the attempt (retries + 1); a retry of a Rust task is a
///   new message with the same task id and `retries + 1`.
/// - **Refused, never run**: bodies that are not JSON (pickle, YAML,
///   msgpack…) end `FAILURE` (`ContentDisallowed`) naming the content type;
///   an envelope or body that does not decode ends `FAILURE` with the
///   reason if it names a task id, else goes to the dead letters
///   (`qtasks:{app}:celery:dead`); either way it is acked and costs no
///   other message.
/// - **Task names**: `headers.task` is the qtasks task name, so name the
///   Rust task as the Python one (`#[task(name = "app.add")]`), or map
///   names with [`alias`](Self::alias).
/// - **Arguments**: see "Arguments" in the module.
/// - **Time limits**: `apply_async(time_limit=…, soft_time_limit=…)` (the
///   `timelimit` header) becomes the run's limit in place of the task's
///   `max_time` (the smaller of the two, since a qtasks run has one limit,
///   which stops it); past it the result is `FAILURE` with
///   `billiard.exceptions.TimeLimitExceeded`, the exception a Python
///   worker's hard limit gives. A header that is not `[hard, soft]` of
///   seconds or nulls is a `FAILURE` (`ValueError`) naming it.
///
/// # Not done
///
/// Queue limits ([`Fetch::limits`](crate::backend::Fetch)) and pauses do
/// not apply ([`set_paused`](Backend::set_paused) is refused): a Celery
/// queue is a plain list.
///
/// A cancel ([`cancel`](Backend::cancel))
/// stores `REVOKED` and keeps a queued message from running on a Rust
/// worker; it does not reach a running task, nor Python workers (no
/// pidbox). No worker events, `_kombu.binding.*` or pidbox: `celery
/// inspect` and Flower do not see Rust workers. [`flush`](Backend::flush)
/// removes only this backend's own keys, never Celery's shared lists.
#[derive(Clone)]
pub struct CeleryBackend {
    shared: Arc<Shared>,
    visibility: Duration,
    result_expires: Duration,
    aliases: Arc<HashMap<String, String>>,
}

struct Shared {
    conns: Arc<Conns>,
    app: String,
    /// `qtasks:{app}:celery:`: this backend's own keys.
    own: String,
    /// The messages this backend took and has not acked, by task.
    held: Mutex<UuidMap<Held>>,
    /// The Celery ids of tasks whose id is not a uuid, by the uuid given them.
    ids: Mutex<UuidMap<String>>,
    /// The Celery queues fetched from, for `stats` and `queues`.
    seen: Mutex<BTreeSet<String>>,
}

/// A message taken and not acked.
struct Held {
    tag: String,
    task_id: String,
    /// The list it was popped from.
    key: String,
    envelope: Value,
    ignore_result: bool,
    retries: u64,
}

fn error(kind: BackendErrorKind, message: impl Into<String>) -> BackendError {
    BackendError::new(KIND, kind, message)
}

fn rerr<'a>(context: &'a str) -> impl FnOnce(redis::RedisError) -> BackendError + 'a {
    redis_error(KIND, context)
}

/// The Celery queue of a qtasks queue.
fn celery_queue(queue: &str) -> &str {
    if queue == DEFAULT_QUEUE { CELERY_QUEUE } else { queue }
}

/// The qtasks queue of a Celery queue.
fn qtasks_queue(queue: &str) -> &str {
    if queue == CELERY_QUEUE { DEFAULT_QUEUE } else { queue }
}

/// kombu's list for `queue` at `priority`.
fn list_key(queue: &str, priority: i64) -> String {
    let bucket = BUCKETS.iter().rev().find(|b| priority >= i64::from(**b)).copied().unwrap_or(0);
    if bucket == 0 { queue.to_owned() } else { format!("{queue}{BUCKET_SEPARATOR}{bucket}") }
}

/// The queue a list belongs to (the list name without its bucket).
fn queue_of_key(key: &str) -> &str {
    key.split_once(BUCKET_SEPARATOR).map_or(key, |(queue, _)| queue)
}

fn meta_key(task_id: &str) -> String {
    format!("celery-task-meta-{task_id}")
}

/// Now as Celery writes `date_done`.
fn date_done() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// An ISO 8601 time (with an offset, or UTC without one) as seconds since the epoch.
fn parse_time(value: &Value) -> Result<Option<f64>, String> {
    let Some(text) = value.as_str() else {
        return if value.is_null() { Ok(None) } else { Err(format!("not a time: {value}")) };
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.timestamp_micros() as f64 / 1e6));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| Some(t.and_utc().timestamp_micros() as f64 / 1e6))
        .map_err(|e| format!("not an ISO 8601 time ({e}): {text}"))
}

/// A result as Celery's backend stores it (keys in Celery's order).
fn meta(status: &str, result: &Value, traceback: Option<&str>, task_id: &str) -> String {
    format!(
        "{{\"status\": {}, \"result\": {}, \"traceback\": {}, \"children\": [], \"date_done\": {}, \"task_id\": {}}}",
        Value::from(status),
        result,
        traceback.map_or(Value::Null, Value::from),
        Value::from(date_done()),
        Value::from(task_id),
    )
}

/// An exception as Celery's backend stores it.
fn exception(exc_type: &str, module: &str, message: &str) -> Value {
    json!({"exc_type": exc_type, "exc_message": [message], "exc_module": module})
}

/// A Python-looking traceback text for an error of a Rust task.
fn traceback(task: &str, exc_type: &str, message: &str) -> String {
    format!("Traceback (most recent call last):\n  Rust task \"{task}\" (qtasks worker)\n{exc_type}: {message}\n")
}

/// The time limit of a message's `timelimit` header (`[hard, soft]`, each
/// seconds or null), in seconds: the smaller of the two given, since a
/// qtasks run has one limit, which stops it (Celery's soft limit raises
/// inside the task, which most tasks do not catch). `None` when neither is.
fn time_limit(header: &Value) -> Result<Option<f64>, String> {
    let limits = match header {
        Value::Null => return Ok(None),
        Value::Array(limits) if limits.len() == 2 => limits,
        other => return Err(format!("expected [hard, soft], got {other}")),
    };
    let mut limit: Option<f64> = None;
    for value in limits {
        match value {
            Value::Null => {}
            v => match v.as_f64() {
                Some(secs) if secs > 0.0 && secs.is_finite() => limit = Some(limit.map_or(secs, |l| l.min(secs))),
                _ => return Err(format!("expected seconds above 0 or null, got {v}")),
            },
        }
    }
    Ok(limit)
}

/// The Celery result of a qtasks record that ended.
fn meta_of(record: &TaskRecord, task_id: &str) -> String {
    let reason = record.error.as_deref().unwrap_or("");
    match record.status {
        TaskStatus::Success => meta("SUCCESS", record.result.as_ref().unwrap_or(&Value::Null), None, task_id),
        TaskStatus::Cancel => {
            let exc = exception("TaskRevokedError", "celery.exceptions", reason);
            meta("REVOKED", &exc, Some(&traceback(&record.task_name, "TaskRevokedError", reason)), task_id)
        }
        status => {
            let (exc_type, module) = if reason.starts_with("unknown task") {
                ("NotRegistered", "celery.exceptions")
            } else if reason.starts_with("invalid arguments") {
                ("TypeError", "builtins")
            } else if reason.starts_with("time limit exceeded") {
                ("TimeLimitExceeded", "billiard.exceptions")
            } else {
                ("RuntimeError", "builtins")
            };
            let state = if status == TaskStatus::Retry { "RETRY" } else { "FAILURE" };
            let exc = exception(exc_type, module, reason);
            meta(state, &exc, Some(&traceback(&record.task_name, exc_type, reason)), task_id)
        }
    }
}

/// A qtasks record of a stored Celery result.
fn record_of(uuid: Uuid, task_id: &str, text: &str) -> Result<TaskRecord, String> {
    let meta: Value = serde_json::from_str(text).map_err(|e| format!("the result is not JSON: {e}"))?;
    let status = meta["status"].as_str().ok_or("the result has no status")?;
    let updated_at = parse_time(&meta["date_done"]).ok().flatten().unwrap_or(0.0);
    let exc_text = || {
        let result = &meta["result"];
        let message = match &result["exc_message"] {
            Value::Array(parts) => parts
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match result["exc_type"].as_str() {
            Some(exc_type) => format!("{exc_type}: {message}"),
            None => message,
        }
    };
    let (status, result, error) = match status {
        "SUCCESS" => (TaskStatus::Success, Some(meta["result"].clone()), None),
        "FAILURE" => (TaskStatus::Error, None, Some(exc_text())),
        "REVOKED" => (TaskStatus::Cancel, None, Some(exc_text())),
        "RETRY" => (TaskStatus::Retry, None, Some(exc_text())),
        "STARTED" => (TaskStatus::Process, None, None),
        _ => (TaskStatus::New, None, None),
    };
    let mut extra = Map::new();
    extra.insert(CELERY_ID.to_owned(), Value::from(task_id));
    Ok(TaskRecord {
        uuid,
        task_name: Name::default(),
        priority: 0,
        args: Value::Null,
        status,
        created_at: updated_at,
        updated_at,
        result,
        error,
        attempt: 1,
        extra,
        queue: Name::new_static(DEFAULT_QUEUE),
        limit_key: None,
        unique: None,
        worker: None,
        started_at: None,
    })
}

/// What a taken message is.
enum Taken {
    /// A task to run.
    Run(TaskMessage, Held),
    /// A task to end without running: its result, and its message to ack.
    End { held: Held, meta: String, reason: String },
    /// A task whose ETA is later.
    Defer { held: Held, due_ms: u64, raw: String },
    /// Not a task (no id to answer to): dead-lettered, and acked.
    Drop { tag: Option<String>, reason: String, raw: String, key: String },
}

/// Reads a message as popped from `key`.
fn read_message(key: &str, raw: &str, aliases: &HashMap<String, String>) -> Taken {
    let envelope: Value = match serde_json::from_str(raw) {
        Ok(envelope) => envelope,
        Err(e) => {
            return Taken::Drop {
                tag: None,
                reason: format!("the envelope is not JSON: {e}"),
                raw: raw.to_owned(),
                key: key.to_owned(),
            };
        }
    };
    let properties = &envelope["properties"];
    let tag = match &properties["delivery_tag"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let headers = &envelope["headers"];
    let Some(task_id) = headers["id"].as_str().map(str::to_owned) else {
        let reason = if envelope["body"].is_string() && headers.is_object() {
            "the message has no headers.id (message protocol v1 is not supported)".to_owned()
        } else {
            "the message has no headers.id".to_owned()
        };
        return Taken::Drop { tag: Some(tag), reason, raw: raw.to_owned(), key: key.to_owned() };
    };
    let name = headers["task"].as_str().unwrap_or_default().to_owned();
    let retries = headers["retries"].as_u64().unwrap_or(0);
    let held = Held {
        tag,
        task_id: task_id.clone(),
        key: key.to_owned(),
        envelope: envelope.clone(),
        ignore_result: headers["ignore_result"].as_bool().unwrap_or(false),
        retries,
    };
    let fail = |held: Held, exc_type: &str, module: &str, reason: String| {
        let exc = exception(exc_type, module, &reason);
        let meta = meta("FAILURE", &exc, Some(&traceback(&name, exc_type, &reason)), &task_id);
        Taken::End { held, meta, reason }
    };
    if name.is_empty() {
        return fail(held, "ValueError", "builtins", "the message has no headers.task".to_owned());
    }
    let content_type = envelope["content-type"].as_str().unwrap_or("");
    if content_type != "application/json" {
        let what = match content_type {
            "application/x-python-serialize" => " (pickle)",
            "application/x-yaml" | "application/yaml" | "text/yaml" => " (YAML)",
            "application/x-msgpack" | "application/msgpack" => " (msgpack)",
            _ => "",
        };
        let reason = format!(
            "refused a message of content type `{content_type}`{what}: a qtasks worker runs only application/json bodies and never deserializes others"
        );
        return fail(held, "ContentDisallowed", "kombu.exceptions", reason);
    }
    let encoding = envelope["content-encoding"].as_str().unwrap_or("utf-8");
    if !encoding.eq_ignore_ascii_case("utf-8") {
        return fail(
            held,
            "ContentDisallowed",
            "kombu.exceptions",
            format!("refused a body in encoding `{encoding}`: only utf-8 is read"),
        );
    }
    let Some(body) = envelope["body"].as_str() else {
        return fail(held, "ValueError", "builtins", "the message body is not a string".to_owned());
    };
    let body = if properties["body_encoding"].as_str() == Some("base64") {
        match BASE64.decode(body) {
            Ok(bytes) => bytes,
            Err(e) => return fail(held, "ValueError", "builtins", format!("the message body is not base64: {e}")),
        }
    } else {
        body.as_bytes().to_vec()
    };
    let (args, kwargs) = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(mut parts)) if parts.len() == 3 => {
            let kwargs = parts.swap_remove(1);
            let args = parts.swap_remove(0);
            match (args, kwargs) {
                (Value::Array(args), Value::Object(kwargs)) => (args, kwargs),
                _ => return fail(held, "ValueError", "builtins", "the body is not [args, kwargs, embed]".to_owned()),
            }
        }
        Ok(_) => return fail(held, "ValueError", "builtins", "the body is not [args, kwargs, embed]".to_owned()),
        Err(e) => return fail(held, "ValueError", "builtins", format!("the body is not JSON: {e}")),
    };
    let now = now();
    match parse_time(&headers["expires"]) {
        Ok(Some(expires)) if expires <= now => {
            let reason = "expired".to_owned();
            let exc = exception("TaskRevokedError", "celery.exceptions", &reason);
            let meta = meta("REVOKED", &exc, None, &task_id);
            return Taken::End { held, meta, reason };
        }
        Ok(_) => {}
        Err(e) => return fail(held, "ValueError", "builtins", format!("headers.expires: {e}")),
    }
    match parse_time(&headers["eta"]) {
        Ok(Some(eta)) if eta > now => {
            let due_ms = (eta * 1000.0) as u64;
            return Taken::Defer { held, due_ms, raw: raw.to_owned() };
        }
        Ok(_) => {}
        Err(e) => return fail(held, "ValueError", "builtins", format!("headers.eta: {e}")),
    }
    let limit = match time_limit(&headers["timelimit"]) {
        Ok(limit) => limit,
        Err(e) => return fail(held, "ValueError", "builtins", format!("headers.timelimit: {e}")),
    };
    let uuid = Uuid::parse_str(&task_id).unwrap_or_else(|_| Uuid::new_v4());
    let task_name = aliases.get(&name).cloned().unwrap_or(name);
    let mut extra = Map::new();
    extra.insert(CELERY_ID.to_owned(), Value::from(task_id));
    if let Some(left) = headers[RETRIES_LEFT].as_u64() {
        extra.insert(RETRY.to_owned(), Value::from(left));
    }
    if let Some(secs) = limit {
        extra.insert(crate::task::MAX_TIME.to_owned(), Value::from(secs));
    }
    let message = TaskMessage {
        uuid,
        task_name: task_name.into(),
        queue: qtasks_queue(queue_of_key(key)).into(),
        priority: properties["priority"].as_i64().unwrap_or(0),
        args: join_args(args, kwargs),
        created_at: now,
        attempt: u32::try_from(retries.saturating_add(1)).unwrap_or(u32::MAX),
        extra,
        limit_key: None,
    };
    Taken::Run(message, held)
}

/// A Celery protocol v2 message for `record`, as the Python client builds it.
fn envelope(record: &TaskRecord, task_id: &str, retries: u64, eta: Option<String>, queue: &str) -> Value {
    let (args, kwargs) = split_args(&record.args);
    let embed = json!({"callbacks": null, "errbacks": null, "chain": null, "chord": null});
    let body = Value::Array(vec![Value::Array(args.clone()), Value::Object(kwargs.clone()), embed]);
    let repr = |v: &Value| v.to_string();
    json!({
        "body": BASE64.encode(body.to_string()),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": record.task_name,
            "id": task_id,
            "shadow": null,
            "eta": eta,
            "expires": null,
            "group": null,
            "group_index": null,
            "retries": retries,
            // A limit set at enqueue travels as the hard one.
            "timelimit": [record.extra.get(crate::task::MAX_TIME), null],
            "root_id": task_id,
            "parent_id": null,
            "argsrepr": repr(&Value::Array(args)),
            "kwargsrepr": repr(&Value::Object(kwargs)),
            "origin": "qtasks",
            "ignore_result": false,
            "replaced_task_nesting": 0,
            "stamped_headers": null,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": Uuid::new_v4().hyphenated().to_string(),
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": record.priority,
            "body_encoding": "base64",
            "delivery_tag": Uuid::new_v4().hyphenated().to_string(),
        },
    })
}

impl CeleryBackend {
    /// Connects to the Redis server that is both the Celery app's broker
    /// and its result backend (same db).
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let conns = Arc::new(Conns::connect(KIND, url).await?);
        Ok(Self {
            shared: Shared::new(conns, "default"),
            visibility: DEFAULT_VISIBILITY,
            result_expires: DEFAULT_RESULT_EXPIRES,
            aliases: Arc::default(),
        })
    }

    /// kombu's visibility timeout (1 hour by default, as kombu's; at least
    /// 100 ms): a message delivered longer ago and not acked is put back
    /// in its list by the next fetch (its worker is taken for dead). Rust
    /// workers renew the tasks they run every third of it. Use the value
    /// of the Python workers (`broker_transport_options`).
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility = timeout.max(Duration::from_millis(100));
        self
    }

    /// How long results are kept (Celery's `result_expires`, 1 day by default).
    pub fn result_expires(mut self, expires: Duration) -> Self {
        self.result_expires = expires.max(Duration::from_secs(1));
        self
    }

    /// Runs messages of the Celery task `celery_name` as the qtasks task
    /// `task` (instead of naming the Rust task as the Python one).
    pub fn alias(mut self, celery_name: impl Into<String>, task: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.aliases).insert(celery_name.into(), task.into());
        self
    }

    fn conn(&self) -> redis::aio::ConnectionManager {
        self.shared.conns.conn()
    }

    fn own(&self, name: &str) -> String {
        format!("{}{name}", self.shared.own)
    }

    /// The Celery id of a task.
    fn task_id(&self, uuid: Uuid) -> String {
        lock(&self.shared.ids).get(&uuid).cloned().unwrap_or_else(|| uuid.hyphenated().to_string())
    }

    /// Runs the take script (after a `BRPOP` if `block` and nothing was
    /// there); if the caller is dropped meanwhile, what it took is put back.
    async fn take(
        &self,
        keys: Vec<String>,
        max: usize,
        block: Option<Duration>,
    ) -> Result<(Vec<(String, String)>, i64), BackendError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.take_now(&keys, max, block).await;
            if let Err(Ok((taken, _))) = tx.send(result) {
                for (key, raw) in taken {
                    if let Taken::Run(_, held) | Taken::Defer { held, .. } | Taken::End { held, .. } =
                        read_message(&key, &raw, &this.aliases)
                    {
                        let _ = this.restore(&held).await;
                    }
                }
            }
        });
        rx.await.map_err(|_| error(BackendErrorKind::Other, "the fetch task stopped"))?
    }

    async fn take_now(
        &self,
        keys: &[String],
        max: usize,
        block: Option<Duration>,
    ) -> Result<(Vec<(String, String)>, i64), BackendError> {
        let (taken, next_ms) = self.take_script(keys, max, None).await?;
        let Some(block) = block.filter(|_| taken.is_empty()) else { return Ok((taken, next_ms)) };
        let block = if next_ms < 0 {
            block
        } else {
            let now_ms = (now() * 1000.0) as i64;
            Duration::from_millis(u64::try_from(next_ms - now_ms).unwrap_or(0).clamp(10, millis(block)))
        };
        let mut brpop = redis::cmd("BRPOP");
        brpop.arg(keys).arg(block.as_secs_f64());
        let popped: Option<(String, String)> = self.shared.conns.blocking(KIND, &brpop, block).await?;
        match popped {
            Some(popped) => self.take_script(keys, max, Some(popped)).await,
            None => Ok((taken, next_ms)),
        }
    }

    async fn take_script(
        &self,
        keys: &[String],
        max: usize,
        popped: Option<(String, String)>,
    ) -> Result<(Vec<(String, String)>, i64), BackendError> {
        let mut call = TAKE.key(UNACKED);
        call.key(UNACKED_INDEX).key(self.own("delayed")).key(self.own("dead"));
        for key in keys {
            call.key(key);
        }
        let (key, raw) = popped.unwrap_or_default();
        call.arg(max.max(1)).arg(DEAD_LETTERS_KEPT).arg(millis(self.visibility)).arg(key).arg(raw);
        let (flat, next_ms): (Vec<String>, i64) =
            call.invoke_async(&mut self.conn()).await.map_err(rerr("taking messages"))?;
        let mut taken = Vec::with_capacity(flat.len() / 2);
        let mut items = flat.into_iter();
        while let (Some(key), Some(raw)) = (items.next(), items.next()) {
            taken.push((key, raw));
        }
        Ok((taken, next_ms))
    }

    /// Puts a held message back in its list, marked redelivered.
    async fn restore(&self, held: &Held) -> Result<bool, BackendError> {
        let mut envelope = held.envelope.clone();
        if let Some(headers) = envelope["headers"].as_object_mut() {
            headers.insert("redelivered".to_owned(), Value::Bool(true));
        }
        if let Some(info) = envelope["properties"]["delivery_info"].as_object_mut() {
            info.insert("redelivered".to_owned(), Value::Bool(true));
        }
        let put: i64 = RELEASE
            .key(UNACKED)
            .key(UNACKED_INDEX)
            .key(&held.key)
            .arg(&held.tag)
            .arg(envelope.to_string())
            .invoke_async(&mut self.conn())
            .await
            .map_err(rerr("restoring a message"))?;
        Ok(put == 1)
    }

    /// Stores `meta` (unless `None` or a ready result is there) and acks `tag`.
    async fn store_and_ack(
        &self,
        task_id: &str,
        tag: &str,
        meta: Option<&str>,
        stats: &str,
    ) -> Result<bool, BackendError> {
        let stored: i64 = FINISH
            .key(meta_key(task_id))
            .key(UNACKED)
            .key(UNACKED_INDEX)
            .key(self.own("stats"))
            .arg(tag)
            .arg(meta.unwrap_or(""))
            .arg(self.result_expires.as_secs())
            .arg(stats)
            .invoke_async(&mut self.conn())
            .await
            .map_err(rerr("storing a result"))?;
        Ok(stored == 1)
    }

    /// Handles what a fetch took: tasks to run go to `out`, the others end here.
    async fn accept(&self, taken: Vec<(String, String)>, out: &mut Vec<TaskMessage>) -> Result<(), BackendError> {
        let revoked_key = self.own("revoked");
        for (key, raw) in taken {
            match read_message(&key, &raw, &self.aliases) {
                Taken::Run(message, held) => {
                    let revoked: bool = redis::cmd("SISMEMBER")
                        .arg(&revoked_key)
                        .arg(&held.task_id)
                        .query_async(&mut self.conn())
                        .await
                        .map_err(rerr("reading the revoked tasks"))?;
                    if revoked {
                        // Its REVOKED result is stored already: only ack it.
                        self.store_and_ack(&held.task_id, &held.tag, None, "").await?;
                        continue;
                    }
                    if message.uuid.hyphenated().to_string() != held.task_id {
                        lock(&self.shared.ids).insert(message.uuid, held.task_id.clone());
                    }
                    lock(&self.shared.held).insert(message.uuid, held);
                    out.push(message);
                }
                Taken::End { held, meta, reason } => {
                    tracing::warn!(backend = KIND, task_id = %held.task_id, %reason, "Celery message ended without running");
                    let stats = format!("{}\x1ferror", held.envelope["headers"]["task"].as_str().unwrap_or_default());
                    self.store_and_ack(&held.task_id, &held.tag, Some(&meta), &stats).await?;
                }
                Taken::Defer { held, due_ms, raw } => {
                    let _: i64 = DEFER
                        .key(UNACKED)
                        .key(UNACKED_INDEX)
                        .key(self.own("delayed"))
                        .arg(&held.tag)
                        .arg(due_ms)
                        .arg(format!("{}\x1f{raw}", held.key))
                        .invoke_async(&mut self.conn())
                        .await
                        .map_err(rerr("delaying a message"))?;
                }
                Taken::Drop { tag, reason, raw, key } => {
                    tracing::error!(backend = KIND, %reason, "malformed Celery message dead-lettered");
                    let letter = json!({"key": key, "entry": raw, "reason": reason, "at": now()}).to_string();
                    let mut pipe = redis::pipe();
                    pipe.atomic()
                        .lpush(self.own("dead"), letter)
                        .ignore()
                        .ltrim(self.own("dead"), 0, DEAD_LETTERS_KEPT as isize - 1)
                        .ignore();
                    if let Some(tag) = tag {
                        pipe.zrem(UNACKED_INDEX, &tag).ignore().hdel(UNACKED, &tag).ignore();
                    }
                    let _: () = pipe.query_async(&mut self.conn()).await.map_err(rerr("dead-lettering a message"))?;
                }
            }
        }
        Ok(())
    }

    async fn read(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        let task_id = self.task_id(uuid);
        let text: Option<String> = redis::cmd("GET")
            .arg(meta_key(&task_id))
            .query_async(&mut self.conn())
            .await
            .map_err(rerr("reading a result"))?;
        text.map(|text| record_of(uuid, &task_id, &text)).transpose().map_err(|reason| {
            error(BackendErrorKind::Decode, format!("decoding the result of task {task_id}: {reason}"))
        })
    }

    /// Sends `record` as a Celery message.
    async fn send(&self, record: &TaskRecord, delay: Duration) -> Result<Enqueued, BackendError> {
        // A retry of a task taken here keeps its Celery id, one more retry.
        let parent = record.extra.get(RETRY_PARENT).and_then(Value::as_str).and_then(|p| Uuid::parse_str(p).ok());
        let (task_id, retries, queue) = match parent.and_then(|p| {
            lock(&self.shared.held).get(&p).map(|h| (h.task_id.clone(), h.retries + 1, queue_of_key(&h.key).to_owned()))
        }) {
            Some(found) => found,
            None => (
                record.uuid.hyphenated().to_string(),
                u64::from(record.attempt.saturating_sub(1)),
                celery_queue(&record.queue).to_owned(),
            ),
        };
        if task_id != record.uuid.hyphenated().to_string() {
            lock(&self.shared.ids).insert(record.uuid, task_id.clone());
        }
        let eta = (!delay.is_zero()).then(|| {
            (chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default())
                .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
                .to_string()
        });
        let mut message = envelope(record, &task_id, retries, eta, &queue);
        if let (Some(left), Some(headers)) = (record.extra.get(RETRY), message["headers"].as_object_mut()) {
            headers.insert(RETRIES_LEFT.to_owned(), left.clone());
        }
        let _: i64 = redis::cmd("LPUSH")
            .arg(list_key(&queue, record.priority))
            .arg(message.to_string())
            .query_async(&mut self.conn())
            .await
            .map_err(rerr("sending a message"))?;
        Ok(Enqueued::New)
    }
}

impl Shared {
    fn new(conns: Arc<Conns>, app: &str) -> Arc<Self> {
        Arc::new(Self {
            conns,
            app: app.to_owned(),
            own: format!("qtasks:{app}:celery:"),
            held: Mutex::default(),
            ids: Mutex::default(),
            seen: Mutex::new(BTreeSet::from([CELERY_QUEUE.to_owned()])),
        })
    }
}

impl Backend for CeleryBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn for_app(&self, app: &str) -> Self {
        Self { shared: Shared::new(Arc::clone(&self.shared.conns), app), ..self.clone() }
    }

    fn app_name(&self) -> &str {
        &self.shared.app
    }

    async fn enqueue(&self, task: &TaskRecord) -> Result<Enqueued, BackendError> {
        self.send(task, Duration::ZERO).await
    }

    async fn enqueue_delayed(&self, task: &TaskRecord, delay: Duration) -> Result<Enqueued, BackendError> {
        self.send(task, delay).await
    }

    async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<CancelOutcome, BackendError> {
        if let Some(record) = self.read(uuid).await?
            && record.status.is_done()
        {
            return Ok(CancelOutcome::Finished(record.status));
        }
        let task_id = self.task_id(uuid);
        let exc = exception("TaskRevokedError", "celery.exceptions", reason);
        let meta = meta("REVOKED", &exc, None, &task_id);
        let _: () = redis::pipe()
            .atomic()
            .sadd(self.own("revoked"), &task_id)
            .ignore()
            .expire(self.own("revoked"), self.result_expires.as_secs() as i64)
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(rerr("revoking a task"))?;
        if self.store_and_ack(&task_id, "", Some(&meta), "").await? {
            return Ok(CancelOutcome::Cancelled);
        }
        // A result was stored meanwhile: that one stays.
        let status = self.read(uuid).await?.map_or(TaskStatus::Success, |r| r.status);
        Ok(CancelOutcome::Finished(status))
    }

    fn watch_cancel(&self, _uuid: Uuid, _token: &CancelToken) {}

    fn unwatch_cancel(&self, _uuid: Uuid) {}

    async fn stats(&self) -> Result<QueueStats, BackendError> {
        let queues: Vec<String> = lock(&self.shared.seen).iter().cloned().collect();
        let mut pipe = redis::pipe();
        for queue in &queues {
            for bucket in BUCKETS {
                pipe.llen(list_key(queue, i64::from(bucket)));
            }
        }
        pipe.zcard(self.own("delayed")).hlen(UNACKED).hgetall(self.own("stats"));
        let mut replies: Vec<redis::Value> =
            pipe.query_async(&mut self.conn()).await.map_err(rerr("reading the stats"))?;
        let counts: HashMap<String, u64> =
            redis::from_redis_value(replies.pop().unwrap_or(redis::Value::Nil)).unwrap_or_default();
        let numbers: Vec<u64> = replies.into_iter().map(|v| redis::from_redis_value(v).unwrap_or(0)).collect();
        let (queued, in_flight) = match numbers.split_last() {
            Some((in_flight, queued)) => (queued.iter().sum(), *in_flight),
            None => (0, 0),
        };
        let mut stats = QueueStats { queued, in_flight, ..QueueStats::default() };
        super::add_counts(&mut stats, counts);
        Ok(stats)
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        self.read(uuid).await
    }

    async fn get_all(&self) -> Result<Vec<TaskRecord>, BackendError> {
        let prefix = meta_key("");
        let mut records = Vec::new();
        for key in self.shared.conns.scan(KIND, &format!("{}*", glob_escape(&prefix))).await? {
            let Some(id) = key.strip_prefix(prefix.as_str()) else { continue };
            let Ok(uuid) = Uuid::parse_str(id) else { continue };
            if let Ok(Some(record)) = self.read(uuid).await {
                records.push(record);
            }
        }
        Ok(records)
    }

    async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Option<TaskRecord>, BackendError> {
        // What Celery's client does: subscribe to the result's channel, read
        // it once, then wait for its message.
        let deadline = Instant::now() + timeout;
        let channel = meta_key(&self.task_id(uuid));
        let mut pubsub = self.shared.conns.client.get_async_pubsub().await.map_err(rerr("subscribing"))?;
        pubsub.subscribe(&channel).await.map_err(rerr("subscribing"))?;
        let mut messages = pubsub.on_message();
        loop {
            if let Some(record) = self.read(uuid).await?
                && record.status.is_done()
            {
                return Ok(Some(record));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match tokio::time::timeout(left, messages.next()).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err(error(BackendErrorKind::Connection, "the result subscription was lost")),
                Err(_) => return Ok(None),
            }
        }
    }

    async fn fetch(&self, from: &Fetch, max: usize, out: &mut Vec<TaskMessage>) -> Result<(), BackendError> {
        let queues: Vec<&str> = if from.queues.is_empty() {
            vec![CELERY_QUEUE]
        } else {
            from.queues.iter().map(|q| celery_queue(q)).collect()
        };
        lock(&self.shared.seen).extend(queues.iter().map(|q| (*q).to_owned()));
        let keys: Vec<String> =
            BUCKETS.iter().flat_map(|b| queues.iter().map(move |q| list_key(q, i64::from(*b)))).collect();
        loop {
            let (taken, _) = self.take(keys.clone(), max, Some(MAX_BLOCK)).await?;
            self.accept(taken, out).await?;
            if !out.is_empty() {
                return Ok(());
            }
        }
    }

    async fn set_paused(&self, queue: &str, _paused: bool) -> Result<(), BackendError> {
        Err(error(
            BackendErrorKind::InvalidRequest,
            format!("cannot pause queue `{queue}`: the Celery protocol has no paused queues"),
        ))
    }

    async fn queues(&self, queues: &[String]) -> Result<Vec<QueueInfo>, BackendError> {
        let names: Vec<String> = if queues.is_empty() {
            lock(&self.shared.seen).iter().map(|q| qtasks_queue(q).to_owned()).collect()
        } else {
            queues.to_vec()
        };
        let mut pipe = redis::pipe();
        for name in &names {
            for bucket in BUCKETS {
                pipe.llen(list_key(celery_queue(name), i64::from(bucket)));
            }
        }
        let depths: Vec<u64> = pipe.query_async(&mut self.conn()).await.map_err(rerr("reading the queues"))?;
        Ok(names
            .into_iter()
            .zip(depths.chunks(BUCKETS.len()))
            .map(|(name, depth)| QueueInfo {
                name,
                depth: depth.iter().sum(),
                delayed: 0,
                in_flight: 0,
                paused: false,
                oldest_age: None,
                limit: Default::default(),
            })
            .collect())
    }

    async fn update(&self, _task: &TaskRecord) -> Result<(), BackendError> {
        // Celery writes no STARTED state by default (`task_track_started`).
        Ok(())
    }

    fn lease_renewal(&self) -> Option<Duration> {
        Some(self.visibility / 3)
    }

    async fn extend_lease(&self, uuid: Uuid) -> Result<bool, BackendError> {
        let Some(tag) = lock(&self.shared.held).get(&uuid).map(|h| h.tag.clone()) else { return Ok(false) };
        let renewed: i64 = EXTEND
            .key(UNACKED_INDEX)
            .arg(tag)
            .invoke_async(&mut self.conn())
            .await
            .map_err(rerr("renewing a delivery"))?;
        Ok(renewed == 1)
    }

    async fn release(&self, uuid: Uuid) -> Result<bool, BackendError> {
        let Some(held) = lock(&self.shared.held).remove(&uuid) else { return Ok(false) };
        self.restore(&held).await
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        self.shared.conns.claim(KIND, &self.own("claim:"), key, ttl).await
    }

    async fn finish(&self, task: &TaskRecord) -> Result<(), BackendError> {
        let held = lock(&self.shared.held).remove(&task.uuid);
        let task_id = held.as_ref().map_or_else(|| self.task_id(task.uuid), |h| h.task_id.clone());
        let tag = held.as_ref().map_or("", |h| h.tag.as_str());
        let ignore = held.as_ref().is_some_and(|h| h.ignore_result);
        let meta = (!ignore).then(|| meta_of(task, &task_id));
        let stats = format!("{}\x1f{}", task.task_name, task.status);
        let done = self.store_and_ack(&task_id, tag, meta.as_deref(), &stats).await;
        if done.is_err()
            && let Some(held) = held
        {
            // Retried by the worker: keep what it needs to ack.
            lock(&self.shared.held).insert(task.uuid, held);
        }
        done.map(|_| ())
    }

    async fn flush(&self) -> Result<(), BackendError> {
        let doomed = self.shared.conns.scan(KIND, &format!("{}*", glob_escape(&self.shared.own))).await?;
        self.shared.conns.delete(KIND, &doomed).await
    }

    async fn config_set(
        &self,
        name: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.shared.conns.config_set(KIND, &self.own(&format!("config:{}:{name}:", name.len())), key, value, ttl).await
    }

    async fn config_get(&self, name: &str, key: &str) -> Result<Option<Value>, BackendError> {
        self.shared.conns.config_get(KIND, &self.own(&format!("config:{}:{name}:{key}", name.len()))).await
    }

    async fn config_get_all(&self, name: &str) -> Result<Map<String, Value>, BackendError> {
        self.shared.conns.config_get_all(KIND, &self.own(&format!("config:{}:{name}:", name.len()))).await
    }

    async fn config_delete(&self, name: &str, key: &str) -> Result<(), BackendError> {
        self.shared.conns.config_delete(KIND, &self.own(&format!("config:{}:{name}:", name.len())), key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_go_to_kombu_buckets() {
        assert_eq!(list_key("celery", 0), "celery");
        assert_eq!(list_key("celery", 2), "celery");
        assert_eq!(list_key("celery", 5), "celery\x06\x163");
        assert_eq!(list_key("emails", 9), "emails\x06\x169");
        assert_eq!(list_key("emails", 200), "emails\x06\x169");
        assert_eq!(queue_of_key("emails\x06\x163"), "emails");
    }

    fn message(content_type: &str, body: &Value, headers: Value) -> String {
        let mut h = json!({"task": "app.add", "id": "743efb4e-ac39-43a7-a119-0e0649b4693f", "retries": 0, "eta": null, "expires": null});
        if let (Some(h), Some(extra)) = (h.as_object_mut(), headers.as_object()) {
            h.extend(extra.clone());
        }
        json!({
            "body": BASE64.encode(body.to_string()),
            "content-encoding": "utf-8",
            "content-type": content_type,
            "headers": h,
            "properties": {"delivery_tag": "t1", "body_encoding": "base64", "priority": 0,
                           "delivery_info": {"exchange": "", "routing_key": "celery"}},
        })
        .to_string()
    }

    #[test]
    fn a_json_message_becomes_a_task_with_its_arguments() {
        let raw = message("application/json", &json!([[2], {"b": 3}, {}]), json!({"retries": 2}));
        let Taken::Run(m, held) = read_message("celery", &raw, &HashMap::new()) else { panic!("not run") };
        assert_eq!((m.task_name.as_str(), m.queue.as_str(), m.attempt), ("app.add", "default", 3));
        assert_eq!(m.args, json!({"0": 2, "b": 3}));
        assert_eq!(held.tag, "t1");
        let aliases = HashMap::from([("app.add".to_owned(), "add".to_owned())]);
        let Taken::Run(m, _) = read_message("celery", &raw, &aliases) else { panic!("not run") };
        assert_eq!(m.task_name, "add");
    }

    #[test]
    fn a_timelimit_header_becomes_the_run_s_max_time() {
        let limit_of = |timelimit: Value| {
            let raw = message("application/json", &json!([[2, 3], {}, {}]), json!({ "timelimit": timelimit }));
            match read_message("celery", &raw, &HashMap::new()) {
                Taken::Run(m, _) => Ok(m.extra.get(crate::task::MAX_TIME).cloned()),
                Taken::End { reason, .. } => Err(reason),
                _ => panic!("neither run nor ended"),
            }
        };
        assert_eq!(limit_of(json!([null, null])), Ok(None));
        assert_eq!(limit_of(Value::Null), Ok(None));
        assert_eq!(limit_of(json!([30, null])), Ok(Some(json!(30.0))));
        assert_eq!(limit_of(json!([30, 2.5])), Ok(Some(json!(2.5))));
        assert_eq!(limit_of(json!([null, 4])), Ok(Some(json!(4.0))));
        for bad in [json!("soon"), json!([1]), json!([0, null]), json!(["1", null])] {
            let reason = limit_of(bad.clone()).expect_err("a bad header ran");
            assert!(reason.starts_with("headers.timelimit:"), "{bad}: {reason}");
        }
        // A qtasks record sent to Celery carries its limit as the hard one.
        let mut record = TaskRecord::new(Uuid::from_u128(1), crate::model::NewTask::new("app.add", json!([2, 3])));
        record.extra.insert(crate::task::MAX_TIME.to_owned(), json!(1.5));
        assert_eq!(envelope(&record, "id-1", 0, None, "celery")["headers"]["timelimit"], json!([1.5, null]));
    }

    #[test]
    fn pickle_and_yaml_are_refused_naming_the_content_type() {
        for (content_type, name) in [("application/x-python-serialize", "pickle"), ("application/x-yaml", "YAML")] {
            let raw = message(content_type, &json!("whatever"), json!({}));
            let Taken::End { meta, reason, .. } = read_message("celery", &raw, &HashMap::new()) else { panic!("ran") };
            assert!(reason.contains(content_type) && reason.contains(name), "{reason}");
            let meta: Value = serde_json::from_str(&meta).unwrap();
            assert_eq!(meta["status"], "FAILURE");
            assert_eq!(meta["result"]["exc_type"], "ContentDisallowed");
        }
    }

    #[test]
    fn expired_eta_and_malformed_messages() {
        let expired =
            message("application/json", &json!([[], {}, {}]), json!({"expires": "2000-01-01T00:00:00+00:00"}));
        let Taken::End { meta, .. } = read_message("celery", &expired, &HashMap::new()) else { panic!("ran") };
        assert!(meta.contains("\"REVOKED\""), "{meta}");
        let later = message("application/json", &json!([[], {}, {}]), json!({"eta": "2999-01-01T00:00:00.5+00:00"}));
        assert!(matches!(read_message("celery", &later, &HashMap::new()), Taken::Defer { .. }));
        let bad_body = message("application/json", &json!({"not": "a list"}), json!({}));
        assert!(matches!(read_message("celery", &bad_body, &HashMap::new()), Taken::End { .. }));
        assert!(matches!(read_message("celery", "{nope", &HashMap::new()), Taken::Drop { .. }));
    }

    #[test]
    fn results_are_celery_s_json() {
        let mut record = TaskRecord::new(Uuid::from_u128(1), crate::model::NewTask::new("app.add", json!([2, 3])));
        record.status = TaskStatus::Success;
        record.result = Some(json!(5));
        let success: Value = serde_json::from_str(&meta_of(&record, "id-1")).unwrap();
        assert_eq!(
            (success["status"].as_str(), &success["result"], success["task_id"].as_str()),
            (Some("SUCCESS"), &json!(5), Some("id-1"))
        );
        record.status = TaskStatus::Error;
        record.error = Some("boom".to_owned());
        let failure: Value = serde_json::from_str(&meta_of(&record, "id-1")).unwrap();
        assert_eq!(
            failure["result"],
            json!({"exc_type": "RuntimeError", "exc_message": ["boom"], "exc_module": "builtins"})
        );
        assert!(failure["traceback"].as_str().unwrap().ends_with("RuntimeError: boom\n"));
        let back = record_of(record.uuid, "id-1", &meta_of(&record, "id-1")).unwrap();
        assert_eq!((back.status, back.error.as_deref()), (TaskStatus::Error, Some("RuntimeError: boom")));
        record.error = Some("time limit exceeded (0.200 s)".to_owned());
        let limited: Value = serde_json::from_str(&meta_of(&record, "id-1")).unwrap();
        assert_eq!(
            (limited["result"]["exc_type"].as_str(), limited["result"]["exc_module"].as_str()),
            (Some("TimeLimitExceeded"), Some("billiard.exceptions"))
        );
    }
}
