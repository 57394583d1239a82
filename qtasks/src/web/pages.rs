//! The HTML pages: rendered on the server from the JSON API's reads, with
//! forms for the actions (each a `POST` with the CSRF field) and one small
//! embedded script for live updates.

use super::api::{self, DEFAULT_REASON, Detail, Filter, Invalid, Retried};
use super::{Shared, auth};
use crate::model::{TaskRecord, TaskStatus, Timestamp};
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write as _;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(overview))
        .route("/tasks", get(tasks))
        .route("/tasks/{uuid}", get(detail))
        .route("/tasks/{uuid}/cancel", post(cancel))
        .route("/tasks/{uuid}/retry", post(retry))
        .route("/tasks/bulk", post(bulk))
        .route("/enqueue", get(enqueue_form).post(enqueue))
        .route("/queues", get(queues))
        .route("/queues/{queue}/{action}", post(queue_action))
        .route("/workers", get(workers))
        .route("/plugins", get(plugins))
        .route("/schedules", get(schedules))
        .route("/plugins/{name}/{action}", post(plugin_action))
}

/// The routes open without the token: the login page and the assets.
pub(super) fn public_routes() -> Router<Shared> {
    Router::new()
        .route("/login", get(login_form).post(login_post))
        .route("/assets/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }))
        .route("/assets/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS) }))
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Escapes text for HTML content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(t: Timestamp) -> String {
    let secs = t.floor();
    let nanos = ((t - secs) * 1e9) as u32;
    chrono::DateTime::from_timestamp(secs as i64, nanos.min(999_999_999))
        .map_or_else(|| format!("{t}"), |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// The throughput chart: an inline SVG bar per minute (the script draws
/// the same from each snapshot, `drawChart` in `assets/app.js`).
fn chart(minutes: &[super::live::Minute]) -> String {
    let top = minutes.iter().map(|m| m.finished).max().unwrap_or(0).max(1) as f64;
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 600 100\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"runs per minute\" data-max=\"{top}\">"
    );
    for (i, m) in minutes.iter().enumerate() {
        let h = m.finished as f64 / top * 96.0;
        let f = m.failed as f64 / top * 96.0;
        let x = i * 10;
        let _ = write!(
            out,
            "<rect class=\"ok\" x=\"{x}\" y=\"{:.1}\" width=\"8\" height=\"{h:.1}\"><title>{} ended, {} failed</title></rect>\
             <rect class=\"failed\" x=\"{x}\" y=\"{:.1}\" width=\"8\" height=\"{f:.1}\"></rect>",
            100.0 - h,
            m.finished,
            m.failed,
            100.0 - f
        );
    }
    let _ = write!(out, "</svg><span class=\"meta\">peak {top} per minute</span>");
    out
}

/// A time as a `datetime-local` input shows it (UTC).
fn input_time(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.floor() as i64, 0)
        .map_or_else(String::new, |d| d.format("%Y-%m-%dT%H:%M:%S").to_string())
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn status_badge(status: TaskStatus) -> String {
    format!("<span class=\"status status-{status}\" data-status=\"{status}\">{status}</span>")
}

fn page(state: &Shared, status: StatusCode, title: &str, active: &str, body: &str) -> Response {
    let base = esc(&state.options.base);
    let mut nav = String::new();
    for (href, label) in [
        ("/", "Overview"),
        ("/tasks", "Tasks"),
        ("/queues", "Queues"),
        ("/workers", "Workers"),
        ("/plugins", "Plugins"),
        ("/schedules", "Schedules"),
    ] {
        let class = if label == active { " class=\"active\"" } else { "" };
        let _ = write!(nav, "<a href=\"{base}{href}\"{class}>{label}</a>");
    }
    if !state.options.read_only {
        let class = if active == "Enqueue" { " class=\"active\"" } else { "" };
        let _ = write!(nav, "<a href=\"{base}/enqueue\"{class}>Enqueue</a>");
    }
    let mode = if state.options.read_only { "<span class=\"mode\">read-only</span>" } else { "" };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · {app} · qtasks</title>\
         <link rel=\"stylesheet\" href=\"{base}/assets/app.css\">\
         <script src=\"{base}/assets/app.js\" defer></script></head>\
         <body data-base=\"{base}\" data-read-only=\"{ro}\" data-rendered=\"{rendered:?}\">\
         <header><strong>qtasks</strong> <span class=\"app\">{app}</span> {mode}<nav>{nav}</nav>\
         <span id=\"live\" class=\"live\" title=\"live updates\">●</span></header>\
         <main><h1>{title}</h1>{body}</main></body></html>",
        title = esc(title),
        app = esc(state.source.name()),
        ro = state.options.read_only,
        rendered = crate::model::now(),
    );
    (status, Html(html)).into_response()
}

/// A page with one message (errors, refusals).
pub(super) fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1><p class=\"error\">{m}</p><p><a href=\"javascript:history.back()\">Back</a></p></body></html>",
        t = esc(title),
        m = esc(text)
    );
    (status, Html(html)).into_response()
}

fn failed(state: &Shared, e: &crate::app::Error) -> Response {
    let (status, text) = api::status_of(e);
    page(state, status, "Error", "", &format!("<p class=\"error\">{}</p>", esc(&text)))
}

fn csrf_field(state: &Shared) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&state.csrf))
}

/// Refuses a form post without the page's CSRF token.
fn check_csrf(state: &Shared, form: &HashMap<String, String>) -> Result<(), Response> {
    match form.get("csrf") {
        Some(token) if auth::eq(token.as_bytes(), state.csrf.as_bytes()) => Ok(()),
        _ => {
            Err(message(StatusCode::FORBIDDEN, "Refused", "missing or wrong CSRF token: reload the page and try again"))
        }
    }
}

fn see_other(state: &Shared, path: &str) -> Response {
    Redirect::to(&format!("{}{path}", state.options.base)).into_response()
}

// ---------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------

/// The login page, with `status` (401 when a page needed the token).
pub(super) fn login(state: &Shared, status: StatusCode, error: Option<&str>) -> Response {
    let error = error.map(|e| format!("<p class=\"error\">{}</p>", esc(e))).unwrap_or_default();
    let body = format!(
        "{error}<form method=\"post\" action=\"{base}/login\" class=\"card\">\
         <label>Token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label>\
         <button type=\"submit\">Sign in</button></form>",
        base = esc(&state.options.base)
    );
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in · qtasks</title>\
         <link rel=\"stylesheet\" href=\"{base}/assets/app.css\"></head><body><main><h1>Sign in</h1>{body}</main></body></html>",
        base = esc(&state.options.base)
    );
    (status, Html(html)).into_response()
}

async fn login_form(State(state): State<Shared>) -> Response {
    login(&state, StatusCode::OK, None)
}

async fn login_post(State(state): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let Some(token) = &state.options.token else { return see_other(&state, "/") };
    let given = form.get("token").map(String::as_str).unwrap_or_default();
    if !auth::eq(given.as_bytes(), token.as_bytes()) {
        return login(&state, StatusCode::UNAUTHORIZED, Some("wrong token"));
    }
    let mut response = see_other(&state, "/");
    if let Ok(cookie) = HeaderValue::from_str(&auth::login_cookie(token, &state.options.base)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------

async fn overview(State(state): State<Shared>) -> Response {
    let o = match api::read_overview_here(&state).await {
        Ok(o) => o,
        Err(e) => return failed(&state, &e),
    };
    let mut body = String::from("<section class=\"cards\">");
    for (status, n) in &o.statuses {
        let _ = write!(
            body,
            "<a class=\"card status-{status}\" href=\"{base}/tasks?status={status}\"><span class=\"n\" data-live=\"statuses.{status}\">{n}</span><span>{status}</span></a>",
            base = esc(&state.options.base)
        );
    }
    let _ = write!(
        body,
        "<div class=\"card\"><span class=\"n\" data-live=\"workers\">{}</span><span>workers</span></div>\
         <div class=\"card\"><span class=\"n\" data-live=\"failure_rate\" data-format=\"percent\">{:.1}%</span><span>failure rate</span></div></section>",
        o.workers,
        o.failure_rate * 100.0
    );
    let _ = write!(
        body,
        "<h2>Throughput <span class=\"meta\">last hour, runs ended per minute (red: failed), {}</span></h2>\
         <div id=\"throughput\">{}</div>",
        if o.counted_by == api::COUNTED_HERE {
            "while the dashboard is open"
        } else {
            "counted by the backend across every worker"
        },
        chart(&o.throughput)
    );
    body.push_str("<h2>Queues</h2>");
    body.push_str(&queue_table(&state, &o.queues));
    body.push_str("<h2>Tasks</h2><table><thead><tr><th>task</th><th>success</th><th>error</th><th>retry</th><th>cancel</th><th>duplicates</th></tr></thead><tbody>");
    for (name, c) in &o.tasks {
        let _ = write!(
            body,
            "<tr><td><a href=\"{base}/tasks?name={q}\">{n}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.success,
            c.error,
            c.retry,
            c.cancel,
            c.duplicates,
            base = esc(&state.options.base),
            q = esc(&api::encode(name)),
            n = esc(name)
        );
    }
    body.push_str("</tbody></table>");
    let _ = write!(body, "<p class=\"meta\">backend {} · qtasks {}</p>", esc(o.backend), esc(o.version));
    page(&state, StatusCode::OK, "Overview", "Overview", &body)
}

fn queue_table(state: &Shared, queues: &[crate::queue::QueueInfo]) -> String {
    let actions = !state.options.read_only;
    let mut out = String::from(
        "<table id=\"queues\"><thead><tr><th>queue</th><th>depth</th><th>delayed</th><th>in flight</th><th>paused</th><th>oldest queued</th><th>limits</th>",
    );
    if actions {
        out.push_str("<th></th>");
    }
    out.push_str("</tr></thead><tbody>");
    for q in queues {
        let age = q.oldest_age.map_or_else(|| "-".to_owned(), |a| format!("{:.1} s", a.as_secs_f64()));
        let name = esc(&q.name);
        let _ = write!(
            out,
            "<tr data-queue=\"{name}\"><td>{name}</td><td data-field=\"depth\">{}</td><td data-field=\"delayed\">{}</td><td data-field=\"in_flight\">{}</td>\
             <td data-field=\"paused\">{}</td><td data-field=\"oldest_age\">{age}</td><td>{}</td>",
            q.depth,
            q.delayed,
            q.in_flight,
            if q.paused { "yes" } else { "no" },
            esc(&q.limit.to_string()),
        );
        if actions {
            let (action, label) = if q.paused { ("resume", "Resume") } else { ("pause", "Pause") };
            let _ = write!(
                out,
                "<td><form method=\"post\" action=\"{base}/queues/{path}/{action}\">{csrf}<button type=\"submit\" class=\"action\" data-action=\"{action}\">{label}</button></form></td>",
                base = esc(&state.options.base),
                path = esc(&api::encode(&q.name)),
                csrf = csrf_field(state)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

// ---------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------

fn task_row(state: &Shared, t: &TaskRecord) -> String {
    let base = esc(&state.options.base);
    format!(
        "<tr data-uuid=\"{u}\" data-created=\"{cr:?}\"><td><a class=\"uuid\" href=\"{base}/tasks/{u}\">{u}</a></td><td>{n}</td><td>{q}</td>\
         <td>{s}</td><td>{a}</td><td>{c}</td><td data-field=\"updated_at\">{up}</td></tr>",
        u = t.uuid,
        n = esc(&t.task_name),
        q = esc(&t.queue),
        s = status_badge(t.status),
        a = t.attempt,
        c = time(t.created_at),
        up = time(t.updated_at),
        cr = t.created_at,
    )
}

async fn tasks(State(state): State<Shared>, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let filter = match Filter::parse(&pairs) {
        Ok(f) => f,
        Err(Invalid(e)) => {
            return page(
                &state,
                StatusCode::BAD_REQUEST,
                "Tasks",
                "Tasks",
                &format!("<p class=\"error\">{}</p>", esc(&e)),
            );
        }
    };
    let list = match api::read_list(&*state.source, &filter).await {
        Ok(p) => p,
        Err(e) => return failed(&state, &e),
    };
    let base = esc(&state.options.base);
    let q = &filter.query;
    let mut body = format!("<form method=\"get\" action=\"{base}/tasks\" class=\"filters\">");
    body.push_str("<select name=\"status\"><option value=\"\">any status</option>");
    for s in [
        TaskStatus::New,
        TaskStatus::Process,
        TaskStatus::Success,
        TaskStatus::Error,
        TaskStatus::Cancel,
        TaskStatus::Retry,
    ] {
        let selected = if q.status == Some(s) { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{s}\"{selected}>{s}</option>");
    }
    body.push_str("</select><select name=\"name\"><option value=\"\">any task</option>");
    for d in state.source.definitions() {
        let selected = if q.task_name.as_deref() == Some(d.name) { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{n}\"{selected}>{n}</option>", n = esc(d.name));
    }
    let _ = write!(
        body,
        "</select><input name=\"queue\" placeholder=\"queue\" value=\"{}\">\
         <label>from <input type=\"datetime-local\" name=\"since\" step=\"1\" value=\"{}\"></label>\
         <label>to <input type=\"datetime-local\" name=\"until\" step=\"1\" value=\"{}\"></label> (UTC)\
         <input name=\"id\" placeholder=\"search by id\" value=\"{}\" size=\"36\">\
         <button type=\"submit\">Filter</button> <a href=\"{base}/tasks\">clear</a></form>",
        esc(q.queue.as_deref().unwrap_or_default()),
        q.since.map(input_time).unwrap_or_default(),
        q.until.map(input_time).unwrap_or_default(),
        filter.id.map(|u| u.to_string()).unwrap_or_default(),
    );
    // The first page of a listing (no cursor, no id) takes live rows.
    let live = q.after.is_none() && filter.id.is_none();
    let _ = write!(
        body,
        "<table id=\"tasks\" data-live=\"{live}\" data-status=\"{}\" data-name=\"{}\" data-queue=\"{}\" data-limit=\"{}\">\
         <thead><tr><th>id</th><th>task</th><th>queue</th><th>status</th><th>attempt</th><th>enqueued</th><th>updated</th></tr></thead><tbody>",
        q.status.map(|s| s.as_str()).unwrap_or_default(),
        esc(q.task_name.as_deref().unwrap_or_default()),
        esc(q.queue.as_deref().unwrap_or_default()),
        q.page_size(),
    );
    for t in &list.tasks {
        body.push_str(&task_row(&state, t));
    }
    body.push_str("</tbody></table>");
    if list.next.is_some() && list.tasks.len() < q.page_size() {
        // A backend that bounds a page's reads (Redis: 10 000 index entries).
        body.push_str(
            "<p class=\"meta\" id=\"short-page\">This page ended early: one page reads at most 10 000 tasks \
             looking for matches. Older matching tasks may follow: see <em>older</em> below.</p>",
        );
    } else if list.tasks.is_empty() {
        body.push_str("<p class=\"empty\">No task matches.</p>");
    }
    let filtered = q.status.is_some() || q.task_name.is_some() || q.queue.is_some() || filter.id.is_some();
    if filtered && !state.options.read_only {
        let hidden = filter_fields(&filter);
        let _ = write!(
            body,
            "<div class=\"actions bulk\">\
             <form method=\"post\" action=\"{base}/tasks/bulk\">{csrf}{hidden}<input type=\"hidden\" name=\"action\" value=\"cancel\">\
             <button type=\"submit\" class=\"action danger\" data-action=\"bulk-cancel\">Cancel all matching…</button></form>\
             <form method=\"post\" action=\"{base}/tasks/bulk\">{csrf}{hidden}<input type=\"hidden\" name=\"action\" value=\"retry\">\
             <button type=\"submit\" class=\"action\" data-action=\"bulk-retry\">Retry all matching…</button></form></div>",
            csrf = csrf_field(&state),
        );
    }
    body.push_str("<nav class=\"pages\">");
    if q.after.is_some() {
        let qs = filter.to_query_string();
        let _ = write!(body, "<a href=\"{base}/tasks?{}\">« newest</a> ", esc(&qs));
    }
    if let Some(next) = list.next {
        let mut qs = filter.to_query_string();
        if !qs.is_empty() {
            qs.push('&');
        }
        let _ = write!(body, "<a rel=\"next\" href=\"{base}/tasks?{}after={next}\">older »</a>", esc(&qs));
    }
    body.push_str("</nav>");
    page(&state, StatusCode::OK, "Tasks", "Tasks", &body)
}

async fn detail(State(state): State<Shared>, Path(uuid): Path<String>) -> Response {
    let uuid = match api::parse_uuid(&uuid) {
        Ok(u) => u,
        Err(Invalid(e)) => {
            return page(
                &state,
                StatusCode::BAD_REQUEST,
                "Task",
                "Tasks",
                &format!("<p class=\"error\">{}</p>", esc(&e)),
            );
        }
    };
    let d = match api::read_detail(&*state.source, uuid).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return page(
                &state,
                StatusCode::NOT_FOUND,
                "Task",
                "Tasks",
                &format!("<p class=\"error\">No task {uuid}.</p>"),
            );
        }
        Err(e) => return failed(&state, &e),
    };
    page(&state, StatusCode::OK, &format!("Task {}", d.task.task_name), "Tasks", &detail_body(&state, &d))
}

fn detail_body(state: &Shared, d: &Detail) -> String {
    let t = &d.task;
    let base = esc(&state.options.base);
    let mut body = format!(
        "<dl class=\"detail\" id=\"task\" data-uuid=\"{u}\"><dt>id</dt><dd>{u}</dd><dt>task</dt><dd>{n}</dd>\
         <dt>status</dt><dd id=\"task-status\">{s}</dd><dt>queue</dt><dd>{q}</dd><dt>priority</dt><dd>{p}</dd>\
         <dt>attempt</dt><dd>{a}</dd><dt>enqueued</dt><dd>{c}</dd><dt>updated</dt><dd id=\"task-updated\">{up}</dd>",
        u = t.uuid,
        n = esc(&t.task_name),
        s = status_badge(t.status),
        q = esc(&t.queue),
        p = t.priority,
        a = t.attempt,
        c = time(t.created_at),
        up = time(t.updated_at),
    );
    // A task put back in the queue may still name the worker of the run before.
    if let Some(worker) = t.worker.as_ref().filter(|_| t.status != TaskStatus::New) {
        let _ = write!(body, "<dt>worker</dt><dd id=\"task-worker\">{}</dd>", esc(worker));
    }
    if let Some(from) = d.retried_from {
        let _ = write!(body, "<dt>retry of</dt><dd><a href=\"{base}/tasks/{from}\">{from}</a></dd>");
    }
    body.push_str("</dl>");
    if !state.options.read_only && (d.can_cancel || d.can_retry) {
        body.push_str("<div class=\"actions\">");
        if d.can_cancel {
            let _ = write!(
                body,
                "<form method=\"post\" action=\"{base}/tasks/{u}/cancel\">{csrf}<input name=\"reason\" placeholder=\"{DEFAULT_REASON}\">\
                 <button type=\"submit\" class=\"action danger\" data-action=\"cancel\">Cancel</button></form>",
                u = t.uuid,
                csrf = csrf_field(state)
            );
        }
        if d.can_retry {
            let _ = write!(
                body,
                "<form method=\"post\" action=\"{base}/tasks/{u}/retry\">{csrf}<button type=\"submit\" class=\"action\" data-action=\"retry\">Retry as a new task</button></form>",
                u = t.uuid,
                csrf = csrf_field(state)
            );
        }
        body.push_str("</div>");
    }
    let _ = write!(body, "<h2>Arguments</h2><pre>{}</pre>", esc(&pretty(&t.args)));
    if let Some(result) = &t.result {
        let _ = write!(body, "<h2>Result</h2><pre id=\"task-result\">{}</pre>", esc(&pretty(result)));
    }
    if let Some(error) = &t.error {
        let label = if t.status == TaskStatus::Cancel { "Cancel reason" } else { "Error" };
        let _ = write!(body, "<h2>{label}</h2><pre class=\"error\" id=\"task-error\">{}</pre>", esc(error));
    }
    body.push_str("<h2>Timeline</h2><ol class=\"timeline\">");
    for step in &d.timeline {
        let what = match (step.status, &step.worker) {
            (TaskStatus::New, _) => "enqueued".to_owned(),
            (TaskStatus::Process, Some(worker)) => format!("started by worker {}", esc(worker)),
            (TaskStatus::Process, None) => "started".to_owned(),
            _ => "ended".to_owned(),
        };
        let _ = write!(
            body,
            "<li data-status=\"{}\">{} {what} at {}</li>",
            step.status,
            status_badge(step.status),
            time(step.at)
        );
    }
    body.push_str("</ol>");
    if d.attempts.len() > 1 {
        body.push_str("<h2>Attempts</h2><ol class=\"attempts\">");
        for a in &d.attempts {
            let status = a.status.map_or_else(|| "<span class=\"status\">expired</span>".to_owned(), status_badge);
            let current = if a.uuid == t.uuid { " (this one)" } else { "" };
            let _ = write!(
                body,
                "<li><a href=\"{base}/tasks/{u}\">attempt {n}</a> {status}{current}</li>",
                u = a.uuid,
                n = a.attempt
            );
        }
        body.push_str("</ol>");
    }
    if !t.extra.is_empty() {
        let _ = write!(body, "<h2>Extra fields</h2><pre>{}</pre>", esc(&pretty(&Value::Object(t.extra.clone()))));
    }
    body
}

/// The task a form action on `/tasks/{uuid}/…` is for, once its CSRF token
/// checked out; else the page to answer with (403 or 400).
fn form_target(state: &Shared, form: &HashMap<String, String>, uuid: &str) -> Result<uuid::Uuid, Response> {
    check_csrf(state, form)?;
    api::parse_uuid(uuid).map_err(|Invalid(e)| message(StatusCode::BAD_REQUEST, "Bad request", &e))
}

async fn cancel(
    State(state): State<Shared>,
    Path(uuid): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let uuid = match form_target(&state, &form, &uuid) {
        Ok(uuid) => uuid,
        Err(r) => return r,
    };
    let reason = form.get("reason").map(|r| r.trim()).filter(|r| !r.is_empty()).unwrap_or(DEFAULT_REASON);
    match state.source.cancel(uuid, reason.to_owned()).await {
        Ok(_) => see_other(&state, &format!("/tasks/{uuid}")),
        Err(e) => failed(&state, &e),
    }
}

async fn retry(
    State(state): State<Shared>,
    Path(uuid): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let uuid = match form_target(&state, &form, &uuid) {
        Ok(uuid) => uuid,
        Err(r) => return r,
    };
    match api::do_retry(&*state.source, uuid).await {
        Ok(Retried::New(new)) => see_other(&state, &format!("/tasks/{new}")),
        Ok(Retried::NotFound) => message(StatusCode::NOT_FOUND, "Not found", &format!("no task {uuid}")),
        Ok(Retried::NotRetriable(s)) => message(
            StatusCode::CONFLICT,
            "Cannot retry",
            &format!("only a task that ended error or cancel can be retried; this one is {s}"),
        ),
        Err(e) => failed(&state, &e),
    }
}

/// The filter as hidden form fields.
fn filter_fields(filter: &Filter) -> String {
    let q = &filter.query;
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        let _ = write!(out, "<input type=\"hidden\" name=\"{name}\" value=\"{}\">", esc(&value));
    };
    if let Some(s) = q.status {
        field("status", s.to_string());
    }
    if let Some(n) = &q.task_name {
        field("name", n.clone());
    }
    if let Some(n) = &q.queue {
        field("queue", n.clone());
    }
    if let Some(t) = q.since {
        field("since", t.to_string());
    }
    if let Some(t) = q.until {
        field("until", t.to_string());
    }
    if let Some(id) = filter.id {
        field("id", id.to_string());
    }
    out
}

/// `POST /tasks/bulk`: a confirmation page showing how many tasks match,
/// then (with `confirm=yes` and the count shown) the action on each.
async fn bulk(State(state): State<Shared>, Form(form): Form<Vec<(String, String)>>) -> Response {
    let map: HashMap<String, String> = form.iter().cloned().collect();
    if let Err(r) = check_csrf(&state, &map) {
        return r;
    }
    let pairs: Vec<(String, String)> = form
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "status" | "name" | "queue" | "since" | "until" | "id"))
        .cloned()
        .collect();
    let parsed = Filter::parse(&pairs)
        .and_then(|f| Ok((f, api::BulkAction::parse(map.get("action").map(String::as_str).unwrap_or_default())?)));
    let (filter, action) = match parsed {
        Ok(p) => p,
        Err(Invalid(e)) => return message(StatusCode::BAD_REQUEST, "Bad request", &e),
    };
    let targets = match api::bulk_targets(&*state.source, &filter, action).await {
        Ok(Ok(t)) => t,
        Ok(Err(Invalid(e))) => return message(StatusCode::BAD_REQUEST, "Too many tasks", &e),
        Err(e) => return failed(&state, &e),
    };
    let base = esc(&state.options.base);
    let back = format!("{base}/tasks?{}", esc(&filter.to_query_string()));
    let confirmed = map.get("confirm").map(String::as_str) == Some("yes");
    let expected = map.get("expect").and_then(|e| e.parse::<usize>().ok());
    if !confirmed || expected != Some(targets.len()) {
        let changed =
            if confirmed { "<p class=\"error\">The number of matching tasks changed; confirm again.</p>" } else { "" };
        let what = match action {
            api::BulkAction::Cancel => "Cancel",
            api::BulkAction::Retry => "Retry",
        };
        let body = format!(
            "{changed}<p id=\"bulk-count\" data-count=\"{n}\">{what} <strong>{n}</strong> task(s) matching this filter?</p>\
             <form method=\"post\" action=\"{base}/tasks/bulk\" class=\"actions\">{csrf}{hidden}\
             <input type=\"hidden\" name=\"action\" value=\"{a}\"><input type=\"hidden\" name=\"expect\" value=\"{n}\">\
             <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
             <button type=\"submit\" class=\"action danger\" data-action=\"bulk-confirm\">{what} {n} task(s)</button> <a href=\"{back}\">back</a></form>",
            n = targets.len(),
            a = action.as_str(),
            csrf = csrf_field(&state),
            hidden = filter_fields(&filter),
        );
        return page(&state, StatusCode::OK, "Confirm", "Tasks", &body);
    }
    match api::bulk_apply(&*state.source, action, &targets).await {
        Ok(report) => {
            let body = format!(
                "<p id=\"bulk-done\">{a}: {d} task(s) done, {s} skipped (they had changed meanwhile).</p><p><a href=\"{back}\">back to the tasks</a></p>",
                a = report.action,
                d = report.done,
                s = report.skipped,
            );
            page(&state, StatusCode::OK, "Done", "Tasks", &body)
        }
        Err(e) => failed(&state, &e),
    }
}

// ---------------------------------------------------------------------------
// Enqueue
// ---------------------------------------------------------------------------

fn enqueue_page(state: &Shared, status: StatusCode, form: &HashMap<String, String>, error: Option<&str>) -> Response {
    let field = |k: &str| esc(form.get(k).map(String::as_str).unwrap_or_default());
    let mut body = error.map(|e| format!("<p class=\"error\" id=\"enqueue-error\">{}</p>", esc(e))).unwrap_or_default();
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{base}/enqueue\" class=\"card enqueue\">{csrf}<label>Task <select name=\"task\">",
        base = esc(&state.options.base),
        csrf = csrf_field(state)
    );
    for d in state.source.definitions() {
        let selected = if form.get("task").map(String::as_str) == Some(d.name) { " selected" } else { "" };
        let _ = write!(
            body,
            "<option value=\"{n}\"{selected}>{n}({p})</option>",
            n = esc(d.name),
            p = esc(&d.params.join(", "))
        );
    }
    let _ = write!(
        body,
        "</select></label><label>Arguments (JSON array or object) <textarea name=\"args\" rows=\"4\">{}</textarea></label>\
         <label>Queue <input name=\"queue\" placeholder=\"the task's own\" value=\"{}\"></label>\
         <label>Priority <input name=\"priority\" placeholder=\"the task's own\" value=\"{}\"></label>\
         <button type=\"submit\" class=\"action\" data-action=\"enqueue\">Enqueue</button></form>",
        field("args"),
        field("queue"),
        field("priority"),
    );
    page(state, status, "Enqueue", "Enqueue", &body)
}

async fn enqueue_form(State(state): State<Shared>) -> Response {
    if state.options.read_only {
        return message(StatusCode::FORBIDDEN, "Refused", "the dashboard is read-only: actions are switched off");
    }
    enqueue_page(&state, StatusCode::OK, &HashMap::new(), None)
}

async fn enqueue(State(state): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    if let Err(r) = check_csrf(&state, &form) {
        return r;
    }
    let call = (|| {
        let args = api::parse_args(form.get("args").map(String::as_str).unwrap_or_default())?;
        let priority = match form.get("priority").map(|p| p.trim()).filter(|p| !p.is_empty()) {
            Some(p) => {
                Some(p.parse::<i64>().map_err(|_| Invalid(format!("the priority must be an integer, got `{p}`")))?)
            }
            None => None,
        };
        let name = form.get("task").map(String::as_str).unwrap_or_default();
        api::check_call(&state.source.definitions(), name, args, form.get("queue").cloned(), priority)
    })();
    match call {
        Ok(call) => match state.source.enqueue(call).await {
            Ok(uuid) => see_other(&state, &format!("/tasks/{uuid}")),
            Err(e) => {
                let (status, text) = api::status_of(&e);
                enqueue_page(&state, status, &form, Some(&text))
            }
        },
        Err(Invalid(e)) => enqueue_page(&state, StatusCode::BAD_REQUEST, &form, Some(&e)),
    }
}

// ---------------------------------------------------------------------------
// Queues, workers, plugins
// ---------------------------------------------------------------------------

async fn queues(State(state): State<Shared>) -> Response {
    match state.source.queues().await {
        Ok(q) => page(&state, StatusCode::OK, "Queues", "Queues", &queue_table(&state, &q)),
        Err(e) => failed(&state, &e),
    }
}

async fn queue_action(
    State(state): State<Shared>,
    Path((queue, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(r) = check_csrf(&state, &form) {
        return r;
    }
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => return message(StatusCode::NOT_FOUND, "Not found", "a queue can be paused or resumed"),
    };
    match state.source.set_paused(queue, paused).await {
        Ok(()) => see_other(&state, "/queues"),
        Err(e) => failed(&state, &e),
    }
}

async fn workers(State(state): State<Shared>) -> Response {
    let rows = match state.live.workers().await {
        Ok(w) => w,
        Err(e) => return failed(&state, &e),
    };
    let mut body = String::from(
        "<table id=\"workers\"><thead><tr><th>worker</th><th>state</th><th>host</th><th>pid</th><th>queues</th><th>concurrency</th><th>in flight</th><th>backend</th><th>started</th><th>last heartbeat</th></tr></thead><tbody>",
    );
    for w in &rows {
        let i = &w.info;
        let _ = write!(
            body,
            "<tr data-worker=\"{id}\" class=\"{s}\"><td>{id}</td><td>{s}</td><td>{h}</td><td>{pid}</td><td>{q}</td><td>{c}</td><td data-field=\"in_flight\">{f}</td><td>{b}</td><td>{t}</td><td>{hb}</td></tr>",
            id = esc(&i.id),
            s = w.state,
            h = esc(&i.host),
            pid = i.pid,
            q = esc(&i.queues.join(", ")),
            c = i.concurrency,
            f = i.in_flight,
            b = esc(&i.backend),
            t = time(i.started_at),
            hb = i.heartbeat_at.map_or_else(|| "-".to_owned(), time),
        );
    }
    body.push_str("</tbody></table>");
    if rows.is_empty() {
        body.push_str("<p class=\"empty\">No worker is alive.</p>");
    }
    page(&state, StatusCode::OK, "Workers", "Workers", &body)
}

async fn schedules(State(state): State<Shared>) -> Response {
    let entries = match state.source.schedules().await {
        Ok(e) => e,
        Err(e) => return failed(&state, &e),
    };
    let text = |v: &Value| match v {
        Value::String(s) => esc(s),
        Value::Null => "-".to_owned(),
        other => esc(&other.to_string()),
    };
    let mut body = String::from(
        "<table id=\"schedules\"><thead><tr><th>entry</th><th>task</th><th>next run</th><th>fired</th><th>failed</th><th>missed ticks</th><th>claimed elsewhere</th><th>last error</th><th>scheduler</th></tr></thead><tbody>",
    );
    for e in &entries {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td></tr>",
            text(&e["description"]),
            text(&e["task_name"]),
            e["next_run"].as_f64().map_or_else(|| "-".to_owned(), time),
            text(&e["fired"]),
            text(&e["failed"]),
            text(&e["skipped"]),
            text(&e["claimed_elsewhere"]),
            text(&e["last_error"]),
            text(&e["host"]),
            text(&e["pid"]),
        );
    }
    body.push_str("</tbody></table>");
    if entries.is_empty() {
        body.push_str("<p class=\"empty\">No scheduler is running.</p>");
    }
    page(&state, StatusCode::OK, "Schedules", "Schedules", &body)
}

/// A table of plugins, from their `PluginInfo` JSON.
fn plugin_table(plugins: &[Value]) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => esc(s),
        Value::Null => "-".to_owned(),
        other => esc(&other.to_string()),
    };
    let secs = |v: &Value| v.as_f64().map_or_else(|| "-".to_owned(), |s| format!("{:.3} ms", s * 1000.0));
    let mut out = String::from(
        "<table class=\"plugins\"><thead><tr><th>plugin</th><th>version</th><th>enabled</th><th>triggers</th><th>errors</th><th>panics</th></tr></thead><tbody>",
    );
    for p in plugins {
        let triggers =
            p["triggers"].as_array().map(|t| t.iter().map(&text).collect::<Vec<_>>().join(", ")).unwrap_or_default();
        let enabled = match p["enabled"].as_bool() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let _ = write!(
            out,
            "<tr data-plugin=\"{n}\"><td>{n}</td><td>{}</td><td data-field=\"enabled\">{enabled}</td><td>{triggers}</td><td>{}</td><td>{}</td></tr>",
            text(&p["version"]),
            text(&p["errors"]),
            text(&p["panics"]),
            n = text(&p["name"]),
        );
        if let Some(stats) = p["stats"].as_array().filter(|s| !s.is_empty()) {
            out.push_str(
                "<tr class=\"sub\"><td colspan=\"6\"><table><thead><tr><th>trigger</th><th>calls</th><th>errors</th><th>panics</th><th>timeouts</th><th>p50</th><th>p90</th><th>p99</th></tr></thead><tbody>",
            );
            for t in stats {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    text(&t["trigger"]),
                    text(&t["calls"]),
                    text(&t["errors"]),
                    text(&t["panics"]),
                    text(&t["timeouts"]),
                    secs(&t["p50"]),
                    secs(&t["p90"]),
                    secs(&t["p99"]),
                );
            }
            out.push_str("</tbody></table></td></tr>");
        }
    }
    out.push_str("</tbody></table>");
    if plugins.is_empty() {
        out.push_str("<p class=\"empty\">No plugin.</p>");
    }
    out
}

async fn plugins(State(state): State<Shared>) -> Response {
    let p = match api::read_plugins(&state).await {
        Ok(p) => p,
        Err(e) => return failed(&state, &e),
    };
    let base = esc(&state.options.base);
    let local: Vec<Value> = p.local.iter().filter_map(|i| serde_json::to_value(i).ok()).collect();
    let mut names: std::collections::BTreeSet<String> = p.switches.keys().cloned().collect();
    for v in local.iter().chain(p.workers.iter().flat_map(|w| w.plugins.iter())) {
        if let Some(n) = v["name"].as_str() {
            names.insert(n.to_owned());
        }
    }
    let mut body = String::from(
        "<h2>Switches</h2><p class=\"meta\">Stored in the backend; every worker applies them at its next heartbeat (within 5 s).</p>\
         <table id=\"switches\"><thead><tr><th>plugin</th><th>switch</th>",
    );
    if !state.options.read_only {
        body.push_str("<th></th>");
    }
    body.push_str("</tr></thead><tbody>");
    for name in &names {
        let switch = match p.switches.get(name) {
            Some(true) => "on",
            Some(false) => "off",
            None => "not set",
        };
        let _ =
            write!(body, "<tr data-plugin=\"{n}\"><td>{n}</td><td data-field=\"switch\">{switch}</td>", n = esc(name));
        if !state.options.read_only {
            let (action, label) =
                if p.switches.get(name) == Some(&false) { ("enable", "Switch on") } else { ("disable", "Switch off") };
            let _ = write!(
                body,
                "<td><form method=\"post\" action=\"{base}/plugins/{path}/{action}\">{csrf}<button type=\"submit\" class=\"action\" data-action=\"{action}\">{label}</button></form></td>",
                path = esc(&api::encode(name)),
                csrf = csrf_field(&state)
            );
        }
        body.push_str("</tr>");
    }
    body.push_str("</tbody></table>");
    if names.is_empty() {
        body.push_str("<p class=\"empty\">No plugin.</p>");
    }
    body.push_str("<h2>This process</h2>");
    body.push_str(&plugin_table(&local));
    for w in &p.workers {
        let _ = write!(body, "<h2>Worker {} <span class=\"meta\">{}</span></h2>", esc(&w.worker), w.state);
        body.push_str(&plugin_table(&w.plugins));
    }
    page(&state, StatusCode::OK, "Plugins", "Plugins", &body)
}

async fn plugin_action(
    State(state): State<Shared>,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(r) = check_csrf(&state, &form) {
        return r;
    }
    let on = match api::switch_of(&action) {
        Ok(on) => on,
        Err(Invalid(e)) => return message(StatusCode::BAD_REQUEST, "Bad request", &e),
    };
    match state.source.switch_plugin(name, on).await {
        Ok(_) => see_other(&state, "/plugins"),
        Err(e) => failed(&state, &e),
    }
}
