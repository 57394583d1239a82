//! The JSON API (reference: `API.md`), and the reads and checks the pages
//! share with it.

use super::source::{NewCall, Source};
use super::{Shared, redact};
use crate::app::Error;
use crate::backend::{CancelOutcome, QueueStats, TaskCounts, TaskCursor, TaskPage, TaskQuery};
use crate::client::WorkerInfo;
use crate::model::{RETRY_CHILD, RETRY_PARENT, TaskRecord, TaskStatus, Timestamp};
use crate::queue::QueueInfo;
use crate::task::TaskInfo;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The extra field of a task retried from the dashboard: the uuid of the
/// task it retries.
pub(crate) const RETRIED_FROM: &str = "retried_from";

/// The default page size of the task table.
pub(super) const PAGE: usize = 50;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/throughput", get(throughput))
        .route("/api/tasks", get(list).post(enqueue))
        .route("/api/tasks/{uuid}", get(detail))
        .route("/api/tasks/{uuid}/cancel", post(cancel))
        .route("/api/tasks/{uuid}/retry", post(retry))
        .route("/api/tasks/bulk", post(bulk))
        .route("/api/definitions", get(definitions))
        .route("/api/queues", get(queues))
        .route("/api/queues/{queue}/pause", post(pause))
        .route("/api/queues/{queue}/resume", post(resume))
        .route("/api/workers", get(workers))
        .route("/api/schedules", get(schedules))
        .route("/api/plugins", get(plugins))
        .route("/api/plugins/{name}/{action}", post(switch_plugin))
        .route("/api/events", get(super::live::events))
}

/// An error answer: `{"error": message}`.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": message.into() })))
}

/// A failure of the app: its status code and message.
pub(super) fn status_of(e: &Error) -> (StatusCode, String) {
    let status = match e {
        Error::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::UnknownQueue { .. }
        | Error::MissingKey { .. }
        | Error::InvalidTraceparent { .. }
        | Error::EncodeArgs { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, redact(&e.to_string()))
}

fn fail(e: Error) -> Response {
    let (status, message) = status_of(&e);
    error(status, message).into_response()
}

/// A request that does not hold: 400 with a message.
pub(super) struct Invalid(pub String);

impl IntoResponse for Invalid {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0).into_response()
    }
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

/// Counts by status and per task, across every worker.
#[derive(Clone, Debug, Default, Serialize)]
pub(super) struct Overview {
    pub app: String,
    pub backend: &'static str,
    pub version: &'static str,
    pub read_only: bool,
    /// `new` (queued), `process` (in flight), and runs ended with each status.
    pub statuses: BTreeMap<&'static str, u64>,
    pub tasks: BTreeMap<String, TaskCounts>,
    pub queues: Vec<QueueInfo>,
    pub workers: usize,
    /// Finished runs that ended `error`, of all finished runs (0 when none).
    pub failure_rate: f64,
    /// The last hour, per minute (oldest first): runs that ended, and
    /// those that failed, across every worker.
    pub throughput: Vec<super::live::Minute>,
    /// Who counted [`throughput`](Self::throughput): [`COUNTED_BY_BACKEND`]
    /// (every run, whether or not a dashboard watched), or
    /// [`COUNTED_HERE`] for a backend that does not count per minute (the
    /// growth of its counters while the dashboard's poller read them).
    pub counted_by: &'static str,
}

/// [`Overview::counted_by`] when the backend counts runs per minute.
pub(super) const COUNTED_BY_BACKEND: &str = "backend";
/// [`Overview::counted_by`] when the dashboard's poller does.
pub(super) const COUNTED_HERE: &str = "dashboard";

/// The last hour's runs per minute as the backend counted them, or `None`
/// when it does not count per minute.
async fn backend_throughput(source: &dyn Source) -> Result<Option<Vec<super::live::Minute>>, Error> {
    let now = crate::model::now();
    let counts = source.minute_counts(now - 3600.0).await?;
    Ok(counts.map(|counts| super::live::series_of(&counts, now)))
}

pub(super) async fn read_overview(source: &dyn Source, read_only: bool) -> Result<Overview, Error> {
    let QueueStats { queued, in_flight, tasks } = source.stats().await?;
    let mut total = TaskCounts::default();
    for counts in tasks.values() {
        total.merge(counts);
    }
    let statuses = BTreeMap::from([
        ("new", queued),
        ("process", in_flight),
        ("success", total.success),
        ("error", total.error),
        ("retry", total.retry),
        ("cancel", total.cancel),
    ]);
    let finished = total.success + total.error + total.cancel;
    let (throughput, counted_by) = match backend_throughput(source).await? {
        Some(minutes) => (minutes, COUNTED_BY_BACKEND),
        None => (Vec::new(), COUNTED_HERE),
    };
    Ok(Overview {
        app: source.name().to_owned(),
        backend: source.backend_kind(),
        version: env!("CARGO_PKG_VERSION"),
        read_only,
        statuses,
        tasks,
        queues: source.queues().await?,
        workers: source.workers().await?.len(),
        failure_rate: if finished == 0 { 0.0 } else { total.error as f64 / finished as f64 },
        throughput,
        counted_by,
    })
}

/// The overview, its throughput from the live poller when the backend
/// does not count per minute.
pub(super) async fn read_overview_here(state: &Shared) -> Result<Overview, Error> {
    let mut o = read_overview(&*state.source, state.options.read_only).await?;
    if o.counted_by == COUNTED_HERE {
        o.throughput = state.live.throughput();
    }
    Ok(o)
}

async fn overview(State(state): State<Shared>) -> Response {
    match read_overview_here(&state).await {
        Ok(o) => Json(o).into_response(),
        Err(e) => fail(e),
    }
}

async fn throughput(State(state): State<Shared>) -> Response {
    let read = match backend_throughput(&*state.source).await {
        Ok(Some(minutes)) => Ok((minutes, COUNTED_BY_BACKEND)),
        Ok(None) => Ok((state.live.throughput(), COUNTED_HERE)),
        Err(e) => Err(e),
    };
    match read {
        Ok((minutes, counted_by)) => Json(json!({ "counted_by": counted_by, "minutes": minutes })).into_response(),
        Err(e) => fail(e),
    }
}

/// The task table's filter, from a query string (empty values are unset).
#[derive(Clone, Debug, Default)]
pub(super) struct Filter {
    pub query: TaskQuery,
    /// Search by id: the one task with this uuid.
    pub id: Option<Uuid>,
}

impl Filter {
    pub(super) fn parse(pairs: &[(String, String)]) -> Result<Self, Invalid> {
        let mut query = TaskQuery::newest(PAGE);
        let mut id = None;
        for (key, value) in pairs {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let bad =
                |what: &str| Invalid(format!("`{key}`: {what}, got `{}`", value.chars().take(80).collect::<String>()));
            match key.as_str() {
                "status" => {
                    query.status = Some(
                        serde_json::from_value(Value::String(value.to_owned()))
                            .map_err(|_| bad("expected new, process, success, error, cancel or retry"))?,
                    );
                }
                "name" => query.task_name = Some(value.to_owned()),
                "queue" => query.queue = Some(value.to_owned()),
                "since" => query.since = Some(timestamp(value).ok_or_else(|| bad(TIME))?),
                "until" => query.until = Some(timestamp(value).ok_or_else(|| bad(TIME))?),
                "after" => {
                    query.after = Some(value.parse::<TaskCursor>().map_err(|_| bad("not a cursor of this API"))?)
                }
                "limit" => {
                    query.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=crate::backend::MAX_PAGE).contains(n))
                        .ok_or_else(|| bad("expected a number from 1 to 500"))?;
                }
                "id" => id = Some(value.parse::<Uuid>().map_err(|_| bad("expected a task id (uuid)"))?),
                _ => return Err(Invalid(format!("unknown parameter `{key}`"))),
            }
        }
        Ok(Self { query, id })
    }

    /// The query string of this filter, without the cursor.
    pub(super) fn to_query_string(&self) -> String {
        let q = &self.query;
        let mut parts = Vec::new();
        if let Some(s) = q.status {
            parts.push(format!("status={s}"));
        }
        if let Some(n) = &q.task_name {
            parts.push(format!("name={}", encode(n)));
        }
        if let Some(n) = &q.queue {
            parts.push(format!("queue={}", encode(n)));
        }
        if let Some(t) = q.since {
            parts.push(format!("since={t}"));
        }
        if let Some(t) = q.until {
            parts.push(format!("until={t}"));
        }
        if q.limit != PAGE {
            parts.push(format!("limit={}", q.limit));
        }
        parts.join("&")
    }
}

const TIME: &str = "expected seconds since the epoch, or a UTC time YYYY-MM-DDTHH:MM[:SS]";

/// Seconds since the epoch, or a UTC date and time as an HTML
/// `datetime-local` input sends it.
fn timestamp(value: &str) -> Option<Timestamp> {
    if let Ok(t) = value.parse::<f64>() {
        return t.is_finite().then_some(t);
    }
    ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(value, f).ok())
        .map(|d| d.and_utc().timestamp() as f64)
}

/// Percent-encodes a query string value.
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) async fn read_list(source: &dyn Source, filter: &Filter) -> Result<TaskPage, Error> {
    match filter.id {
        Some(uuid) => {
            let found = source.get(uuid).await?.filter(|t| filter.query.matches(t));
            Ok(TaskPage { tasks: found.into_iter().collect(), next: None })
        }
        None => source.list(filter.query.clone()).await,
    }
}

async fn list(State(state): State<Shared>, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let filter = match Filter::parse(&pairs) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    match read_list(&*state.source, &filter).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => fail(e),
    }
}

pub(super) fn parse_uuid(text: &str) -> Result<Uuid, Invalid> {
    text.parse().map_err(|_| Invalid(format!("not a task id: `{}`", text.chars().take(80).collect::<String>())))
}

/// One attempt of a task's chain of retries.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Attempt {
    pub uuid: Uuid,
    pub attempt: u32,
    pub status: Option<TaskStatus>,
}

/// A step of a task's timeline.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Step {
    pub status: TaskStatus,
    pub at: Timestamp,
    /// The worker that ran it, on the `process` step (when the record
    /// names it: once the run ended, or while it runs if a plugin rewrote
    /// the running record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// The statuses `task` went through that its record dates, oldest first:
/// enqueued (`new`, at `created_at`), started (`process`, at `started_at`,
/// by its worker; for a running record that does not name its start, when
/// it was taken), and ended (its status, at `updated_at`). A task
/// cancelled before it ran has no `process` step.
pub(super) fn timeline(task: &TaskRecord) -> Vec<Step> {
    let mut steps = vec![Step { status: TaskStatus::New, at: task.created_at, worker: None }];
    let started = match task.status {
        TaskStatus::New => None,
        TaskStatus::Process => Some(task.started_at.unwrap_or(task.updated_at)),
        _ => task.started_at,
    };
    if let Some(at) = started {
        steps.push(Step { status: TaskStatus::Process, at, worker: task.worker.as_ref().map(ToString::to_string) });
    }
    if task.status.is_done() {
        steps.push(Step { status: task.status, at: task.updated_at, worker: None });
    }
    steps
}

/// A task with what the detail page shows around it.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Detail {
    pub task: TaskRecord,
    /// The statuses it went through that the record dates.
    pub timeline: Vec<Step>,
    /// Every attempt of its retry chain, first first (itself included).
    pub attempts: Vec<Attempt>,
    /// The task this one retries from the dashboard, if any.
    pub retried_from: Option<Uuid>,
    /// Whether it can be cancelled (it is not done) or retried (it ended
    /// `error` or `cancel`).
    pub can_cancel: bool,
    pub can_retry: bool,
}

fn link(task: &TaskRecord, key: &str) -> Option<Uuid> {
    task.extra.get(key)?.as_str()?.parse().ok()
}

/// How many links of a retry chain are followed each way.
const CHAIN: usize = 100;

pub(super) async fn read_detail(source: &dyn Source, uuid: Uuid) -> Result<Option<Detail>, Error> {
    let Some(task) = source.get(uuid).await? else { return Ok(None) };
    let mut before = Vec::new();
    let mut at = link(&task, RETRY_PARENT);
    while let Some(uuid) = at.filter(|_| before.len() < CHAIN) {
        let parent = source.get(uuid).await?;
        before.push(Attempt {
            uuid,
            attempt: parent.as_ref().map_or(0, |p| p.attempt),
            status: parent.as_ref().map(|p| p.status),
        });
        at = parent.as_ref().and_then(|p| link(p, RETRY_PARENT));
    }
    before.reverse();
    let mut attempts = before;
    attempts.push(Attempt { uuid, attempt: task.attempt, status: Some(task.status) });
    let mut at = link(&task, RETRY_CHILD);
    let mut after = 0;
    while let Some(uuid) = at.filter(|_| after < CHAIN) {
        let child = source.get(uuid).await?;
        attempts.push(Attempt {
            uuid,
            attempt: child.as_ref().map_or(0, |c| c.attempt),
            status: child.as_ref().map(|c| c.status),
        });
        at = child.as_ref().and_then(|c| link(c, RETRY_CHILD));
        after += 1;
    }
    Ok(Some(Detail {
        retried_from: link(&task, RETRIED_FROM),
        can_cancel: !task.status.is_done(),
        can_retry: matches!(task.status, TaskStatus::Error | TaskStatus::Cancel),
        timeline: timeline(&task),
        attempts,
        task,
    }))
}

async fn detail(State(state): State<Shared>, Path(uuid): Path<String>) -> Response {
    let uuid = match parse_uuid(&uuid) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    match read_detail(&*state.source, uuid).await {
        Ok(Some(d)) => Json(d).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no task {uuid}")).into_response(),
        Err(e) => fail(e),
    }
}

async fn definitions(State(state): State<Shared>) -> Response {
    Json(state.source.definitions()).into_response()
}

async fn queues(State(state): State<Shared>) -> Response {
    match state.source.queues().await {
        Ok(q) => Json(q).into_response(),
        Err(e) => fail(e),
    }
}

/// A live worker, as listed.
#[derive(Clone, Debug, Serialize)]
pub(super) struct WorkerRow {
    #[serde(flatten)]
    pub info: WorkerInfo,
    /// `"alive"`, or `"gone"` for a worker this dashboard saw that stopped
    /// heartbeating (its entry expired).
    pub state: &'static str,
}

async fn workers(State(state): State<Shared>) -> Response {
    match state.live.workers().await {
        Ok(w) => Json(w).into_response(),
        Err(e) => fail(e),
    }
}

async fn schedules(State(state): State<Shared>) -> Response {
    match state.source.schedules().await {
        Ok(s) => Json(s).into_response(),
        Err(e) => fail(e),
    }
}

/// The plugins: this process's, the shared switches, and each worker's.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Plugins {
    pub local: Vec<crate::dispatch::PluginInfo>,
    pub switches: BTreeMap<String, bool>,
    pub workers: Vec<WorkerPlugins>,
}

/// A worker's plugins at its last heartbeat.
#[derive(Clone, Debug, Serialize)]
pub(super) struct WorkerPlugins {
    pub worker: String,
    pub state: &'static str,
    pub plugins: Vec<Value>,
}

pub(super) async fn read_plugins(state: &Shared) -> Result<Plugins, Error> {
    let workers = state.live.workers().await?;
    Ok(Plugins {
        local: state.source.plugins(),
        switches: state.source.plugin_switches().await?,
        workers: workers
            .into_iter()
            .map(|w| WorkerPlugins { worker: w.info.id, state: w.state, plugins: w.info.plugins })
            .collect(),
    })
}

async fn plugins(State(state): State<Shared>) -> Response {
    match read_plugins(&state).await {
        Ok(p) => Json(p).into_response(),
        Err(e) => fail(e),
    }
}

/// `enable` or `disable`, as a switch.
pub(super) fn switch_of(action: &str) -> Result<bool, Invalid> {
    match action {
        "enable" => Ok(true),
        "disable" => Ok(false),
        other => Err(Invalid(format!(
            "a plugin can be enabled or disabled, not `{}`",
            other.chars().take(40).collect::<String>()
        ))),
    }
}

async fn switch_plugin(State(state): State<Shared>, Path((name, action)): Path<(String, String)>) -> Response {
    let on = match switch_of(&action) {
        Ok(on) => on,
        Err(e) => return e.into_response(),
    };
    if name.trim().is_empty() {
        return Invalid("the plugin name is missing".to_owned()).into_response();
    }
    match state.source.switch_plugin(name.clone(), on).await {
        Ok(here) => Json(json!({ "plugin": name, "enabled": on, "switched_here": here })).into_response(),
        Err(e) => fail(e),
    }
}

// ---------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------

/// Reads a JSON body (an empty body is `{}`).
fn body(bytes: &Bytes) -> Result<Map<String, Value>, Invalid> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Invalid("the body must be a JSON object".to_owned())),
        Err(e) => Err(Invalid(format!("the body is not JSON: {e}"))),
    }
}

fn string_field(map: &Map<String, Value>, key: &str) -> Result<Option<String>, Invalid> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Invalid(format!("`{key}` must be a string"))),
    }
}

/// Checks a call against the app's task definitions: the name is one of
/// its tasks, and the arguments fit its parameters.
pub(super) fn check_call(
    definitions: &[&'static TaskInfo],
    name: &str,
    args: Value,
    queue: Option<String>,
    priority: Option<i64>,
) -> Result<NewCall, Invalid> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Invalid("the task name is missing".to_owned()));
    }
    let Some(info) = definitions.iter().find(|d| d.name == name) else {
        let known: Vec<&str> = definitions.iter().map(|d| d.name).collect();
        return Err(Invalid(format!("unknown task `{name}`; this app defines: {}", known.join(", "))));
    };
    let params = info.params;
    let args = match args {
        Value::Null => Value::Array(Vec::new()),
        Value::Array(items) if items.len() > params.len() => {
            return Err(Invalid(format!(
                "task `{name}` takes {} argument(s) ({}), got {}",
                params.len(),
                params.join(", "),
                items.len()
            )));
        }
        Value::Object(map) => {
            if let Some(unknown) = map.keys().find(|k| !params.contains(&k.as_str())) {
                return Err(Invalid(format!(
                    "task `{name}` has no parameter `{unknown}`; its parameters: {}",
                    params.join(", ")
                )));
            }
            Value::Object(map)
        }
        Value::Array(items) => Value::Array(items),
        bare if params.len() == 1 => Value::Array(vec![bare]),
        _ => {
            return Err(Invalid(format!(
                "arguments of `{name}` must be a JSON array (by position) or object (by name) of: {}",
                params.join(", ")
            )));
        }
    };
    let queue = queue.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    Ok(NewCall { name: name.to_owned(), args, queue, priority, extra: Map::new() })
}

/// Parses the arguments text of a form.
pub(super) fn parse_args(text: &str) -> Result<Value, Invalid> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| Invalid(format!("the arguments are not JSON: {e}")))
}

async fn enqueue(State(state): State<Shared>, bytes: Bytes) -> Response {
    let call = (|| {
        let map = body(&bytes)?;
        let name =
            string_field(&map, "task")?.ok_or_else(|| Invalid("`task` (the task's name) is missing".to_owned()))?;
        let priority = match map.get("priority") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| Invalid("`priority` must be an integer".to_owned()))?),
        };
        let args = map.get("args").cloned().unwrap_or(Value::Null);
        check_call(&state.source.definitions(), &name, args, string_field(&map, "queue")?, priority)
    })();
    let call = match call {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match state.source.enqueue(call).await {
        Ok(uuid) => (StatusCode::CREATED, Json(json!({ "uuid": uuid }))).into_response(),
        Err(e) => fail(e),
    }
}

pub(super) const DEFAULT_REASON: &str = "cancelled from the dashboard";

async fn cancel(State(state): State<Shared>, Path(uuid): Path<String>, bytes: Bytes) -> Response {
    let parsed = parse_uuid(&uuid).and_then(|uuid| Ok((uuid, body(&bytes)?)));
    let (uuid, map) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let reason = match string_field(&map, "reason") {
        Ok(r) => r.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| DEFAULT_REASON.to_owned()),
        Err(e) => return e.into_response(),
    };
    match state.source.cancel(uuid, reason).await {
        Ok(CancelOutcome::NotFound) => error(StatusCode::NOT_FOUND, format!("no task {uuid}")).into_response(),
        Ok(outcome) => Json(json!({ "uuid": uuid, "outcome": outcome })).into_response(),
        Err(e) => fail(e),
    }
}

/// What retrying a task gave, or why it could not.
pub(super) enum Retried {
    New(Uuid),
    NotFound,
    NotRetriable(TaskStatus),
}

pub(super) async fn do_retry(source: &dyn Source, uuid: Uuid) -> Result<Retried, Error> {
    let Some(task) = source.get(uuid).await? else { return Ok(Retried::NotFound) };
    if !matches!(task.status, TaskStatus::Error | TaskStatus::Cancel) {
        return Ok(Retried::NotRetriable(task.status));
    }
    let mut extra = Map::new();
    extra.insert(RETRIED_FROM.to_owned(), Value::String(uuid.to_string()));
    let call = NewCall {
        name: task.task_name.into(),
        args: task.args,
        queue: Some(task.queue.into()),
        priority: Some(task.priority),
        extra,
    };
    Ok(Retried::New(source.enqueue(call).await?))
}

async fn retry(State(state): State<Shared>, Path(uuid): Path<String>) -> Response {
    let uuid = match parse_uuid(&uuid) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    match do_retry(&*state.source, uuid).await {
        Ok(Retried::New(new)) => {
            (StatusCode::CREATED, Json(json!({ "uuid": new, "retried_from": uuid }))).into_response()
        }
        Ok(Retried::NotFound) => error(StatusCode::NOT_FOUND, format!("no task {uuid}")).into_response(),
        Ok(Retried::NotRetriable(status)) => error(
            StatusCode::CONFLICT,
            format!("only a task that ended error or cancel can be retried; this one is {status}"),
        )
        .into_response(),
        Err(e) => fail(e),
    }
}

async fn set_paused(state: Shared, queue: String, paused: bool) -> Response {
    match state.source.set_paused(queue.clone(), paused).await {
        Ok(()) => Json(json!({ "queue": queue, "paused": paused })).into_response(),
        Err(e) => fail(e),
    }
}

async fn pause(State(state): State<Shared>, Path(queue): Path<String>) -> Response {
    set_paused(state, queue, true).await
}

async fn resume(State(state): State<Shared>, Path(queue): Path<String>) -> Response {
    set_paused(state, queue, false).await
}

// ---------------------------------------------------------------------------
// Bulk actions
// ---------------------------------------------------------------------------

/// The most tasks one bulk action touches.
pub(super) const BULK_MAX: usize = 10_000;

/// What a bulk action does to every task matching a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BulkAction {
    /// Cancels each task not done yet.
    Cancel,
    /// Retries each task that ended `error` or `cancel`.
    Retry,
}

impl BulkAction {
    pub(super) fn parse(text: &str) -> Result<Self, Invalid> {
        match text {
            "cancel" => Ok(Self::Cancel),
            "retry" => Ok(Self::Retry),
            other => Err(Invalid(format!(
                "`action` must be cancel or retry, got `{}`",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Retry => "retry",
        }
    }

    /// Whether the action does something to a task with `status`.
    pub(super) fn applies(self, status: TaskStatus) -> bool {
        match self {
            Self::Cancel => !status.is_done(),
            Self::Retry => matches!(status, TaskStatus::Error | TaskStatus::Cancel),
        }
    }
}

/// The tasks matching `filter` that `action` applies to (at most
/// [`BULK_MAX`]; more is bad input: the filter must be narrowed).
pub(super) async fn bulk_targets(
    source: &dyn Source,
    filter: &Filter,
    action: BulkAction,
) -> Result<Result<Vec<Uuid>, Invalid>, Error> {
    let mut query = filter.query.clone();
    query.limit = crate::backend::MAX_PAGE;
    query.after = None;
    let mut out = Vec::new();
    loop {
        let page = read_list(source, &Filter { query: query.clone(), id: filter.id }).await?;
        out.extend(page.tasks.iter().filter(|t| action.applies(t.status)).map(|t| t.uuid));
        if out.len() > BULK_MAX {
            return Ok(Err(Invalid(format!("more than {BULK_MAX} tasks match: narrow the filter"))));
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(Ok(out)),
        }
    }
}

/// What a bulk action did.
#[derive(Clone, Debug, Default, Serialize)]
pub(super) struct BulkReport {
    pub action: &'static str,
    /// Tasks it was applied to.
    pub done: usize,
    /// Tasks that had changed meanwhile (finished, or gone).
    pub skipped: usize,
    /// The new tasks, for a retry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<Uuid>,
}

pub(super) async fn bulk_apply(source: &dyn Source, action: BulkAction, uuids: &[Uuid]) -> Result<BulkReport, Error> {
    let mut report = BulkReport { action: action.as_str(), ..BulkReport::default() };
    for uuid in uuids {
        match action {
            BulkAction::Cancel => match source.cancel(*uuid, DEFAULT_REASON.to_owned()).await? {
                CancelOutcome::Cancelled | CancelOutcome::Requested => report.done += 1,
                CancelOutcome::Finished(_) | CancelOutcome::NotFound => report.skipped += 1,
            },
            BulkAction::Retry => match do_retry(source, *uuid).await? {
                Retried::New(new) => {
                    report.done += 1;
                    report.created.push(new);
                }
                Retried::NotFound | Retried::NotRetriable(_) => report.skipped += 1,
            },
        }
    }
    Ok(report)
}

/// The filter of a bulk request: `{status?, name?, queue?, since?, until?, id?}`.
fn filter_of(value: Option<&Value>) -> Result<Filter, Invalid> {
    let mut pairs = Vec::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                if key == "after" || key == "limit" {
                    return Err(Invalid(format!("`filter.{key}`: a bulk action takes every matching task")));
                }
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Null => continue,
                    _ => return Err(Invalid(format!("`filter.{key}` must be a string or a number"))),
                };
                pairs.push((key.clone(), text));
            }
        }
        Some(_) => return Err(Invalid("`filter` must be an object".to_owned())),
    }
    Filter::parse(&pairs)
}

async fn bulk(State(state): State<Shared>, bytes: Bytes) -> Response {
    let parsed = (|| {
        let map = body(&bytes)?;
        let action = BulkAction::parse(&string_field(&map, "action")?.unwrap_or_default())?;
        let filter = filter_of(map.get("filter"))?;
        let expect = match map.get("expect") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| Invalid("`expect` must be a count".to_owned()))?),
        };
        Ok::<_, Invalid>((action, filter, expect))
    })();
    let (action, filter, expect) = match parsed {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let targets = match bulk_targets(&*state.source, &filter, action).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return fail(e),
    };
    if expect != Some(targets.len() as u64) {
        let message = format!("{} task(s) match: confirm by sending `\"expect\": {}`", targets.len(), targets.len());
        return (StatusCode::CONFLICT, Json(json!({ "error": message, "count": targets.len() }))).into_response();
    }
    match bulk_apply(&*state.source, action, &targets).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => fail(e),
    }
}
