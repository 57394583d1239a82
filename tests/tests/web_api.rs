//! The dashboard's JSON API and pages (`qtasks::web`), called in process
//! through the router: every route of `API.md`, auth (bearer, basic, the
//! login cookie), read-only mode, CSRF, bad input, and keyset pagination
//! over 10 000 tasks. On the in-memory backend (each test an app of its
//! own), and the listing once more on Redis (its per-status indexes and
//! their trimming with the retention); the listing of every backend is
//! also a conformance check (`conformance::listing`).

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use futures::StreamExt;
use qtasks::web::Dashboard;
use qtasks::{Backend, PluginChain, QueueTasks, TaskContext, TaskSet, TaskStatus, Uuid, task};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use support::HANG;
use tower::ServiceExt;

/// Adds two numbers.
#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Runs until cancelled.
#[task]
async fn wait_for_cancel(ctx: TaskContext) {
    ctx.cancelled().await;
}

/// Always fails.
#[task]
async fn fail(why: String) -> Result<(), std::io::Error> {
    Err(std::io::Error::other(why))
}

/// Goes to queue `low`.
#[task(queue = "low")]
async fn chore() {}

type App = QueueTasks<((Add, WaitForCancel, Fail, Chore),)>;

/// Counts the tasks it sees start.
struct Counter {
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[qtasks::plugin]
impl Counter {
    fn task_executor_before_execute(&self, _ctx: &qtasks::triggers::TaskExecutorBeforeExecute<'_>) {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn app(name: &str) -> App {
    QueueTasks::builder(format!("web-api-{name}-{}", Uuid::new_v4()))
        .tasks::<(Add, WaitForCancel, Fail, Chore)>()
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Answer { status, headers, text: String::from_utf8_lossy(&bytes).into_owned() }
}

async fn get(router: &Router, path: &str) -> Answer {
    send(router, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn post_json(router: &Router, path: &str, body: Value) -> Answer {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(router, request).await
}

async fn post_form(router: &Router, path: &str, form: &str) -> Answer {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    send(router, request).await
}

/// The CSRF token of a page's forms.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF field") + 19;
    page[at..at + 32].to_owned()
}

async fn status_of<T: TaskSet, C: PluginChain, B: Backend>(
    app: &QueueTasks<T, C, B>,
    uuid: Uuid,
) -> Option<TaskStatus> {
    app.get(uuid).await.unwrap().map(|t| t.status)
}

/// Waits (hang protection only) until `uuid` has `status`.
async fn until_status<T: TaskSet, C: PluginChain, B: Backend>(
    app: &QueueTasks<T, C, B>,
    uuid: Uuid,
    status: TaskStatus,
) {
    let deadline = tokio::time::Instant::now() + HANG;
    while status_of(app, uuid).await != Some(status) {
        assert!(tokio::time::Instant::now() < deadline, "{uuid} never reached {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_overview_definitions_queues_workers_and_plugins() {
    let app = app("reads");
    let router = Dashboard::new().router(&app);
    app.add_task("add", (1, 2)).await.unwrap();
    let o = get(&router, "/api/overview").await;
    assert_eq!(o.status, StatusCode::OK);
    let o = o.json();
    assert_eq!(o["app"], app.name());
    assert_eq!(o["backend"], "memory");
    assert_eq!(o["statuses"]["new"], 1);
    assert_eq!(o["read_only"], false);
    let defs = get(&router, "/api/definitions").await.json();
    let names: Vec<&str> = defs.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["add", "wait_for_cancel", "fail", "chore"]);
    let queues = get(&router, "/api/queues").await.json();
    let names: Vec<&str> = queues.as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "low"]);
    assert_eq!(queues[0]["depth"], 1);

    assert_eq!(get(&router, "/api/workers").await.json(), json!([]));
    let worker = app.worker().start().await.unwrap();
    let workers = get(&router, "/api/workers").await.json();
    assert_eq!(workers.as_array().unwrap().len(), 1);
    assert_eq!(workers[0]["state"], "alive");
    assert_eq!(workers[0]["queues"], json!(["default", "low"]));
    assert!(workers[0]["heartbeat_at"].as_f64().is_some());
    let page = get(&router, "/workers").await;
    assert!(page.text.contains("default, low"), "{}", page.text);
    worker.shutdown().await;
    // A worker this dashboard saw, which left: listed as gone.
    let workers = get(&router, "/api/workers").await.json();
    assert_eq!(workers[0]["state"], "gone");
    assert_eq!(get(&router, "/api/plugins").await.json()["local"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_10000_tasks_newest_first_in_keyset_pages_with_filters() {
    let app = app("pages");
    let router = Dashboard::new().router(&app);
    let handles = app.add_tasks((0..10_000).map(|i| Add::call(i, i))).await.unwrap();
    let chores = app.add_tasks((0..30).map(|_| Chore::call())).await.unwrap();
    let mut seen = Vec::new();
    let mut path = "/api/tasks?name=add&limit=500".to_owned();
    let mut pages = 0;
    loop {
        let page = get(&router, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let page = page.json();
        for t in page["tasks"].as_array().unwrap() {
            seen.push((t["created_at"].as_f64().unwrap(), t["uuid"].as_str().unwrap().parse::<Uuid>().unwrap()));
        }
        pages += 1;
        match page["next"].as_str() {
            Some(next) => path = format!("/api/tasks?name=add&limit=500&after={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 20);
    assert_eq!(seen.len(), 10_000);
    let unique: HashSet<Uuid> = seen.iter().map(|(_, u)| *u).collect();
    assert_eq!(unique.len(), 10_000, "no task listed twice");
    assert!(seen.windows(2).all(|w| (w[0].0, w[0].1) > (w[1].0, w[1].1)), "newest first");
    let all: HashSet<Uuid> = handles.iter().map(|h| h.uuid()).collect();
    assert_eq!(unique, all);

    // Filters: queue, status, id, default page size.
    let low = get(&router, "/api/tasks?queue=low").await.json();
    assert_eq!(low["tasks"].as_array().unwrap().len(), 30);
    assert!(low["next"].is_null());
    let newest = get(&router, "/api/tasks?status=new").await.json();
    assert_eq!(newest["tasks"].as_array().unwrap().len(), 50);
    assert_eq!(newest["tasks"][0]["uuid"], chores[29].uuid().to_string());
    assert!(get(&router, "/api/tasks?status=success").await.json()["tasks"].as_array().unwrap().is_empty());
    let future = get(&router, "/api/tasks?since=2999-01-01T00:00").await.json();
    assert!(future["tasks"].as_array().unwrap().is_empty());
    let past = get(&router, "/api/tasks?until=2000-01-01T00:00:00&limit=1").await.json();
    assert!(past["tasks"].as_array().unwrap().is_empty());
    let all = get(&router, "/api/tasks?since=2000-01-01T00:00&limit=1").await.json();
    assert_eq!(all["tasks"].as_array().unwrap().len(), 1);
    let one = get(&router, &format!("/api/tasks?id={}", handles[7].uuid())).await.json();
    assert_eq!(one["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(one["tasks"][0]["args"], json!([7, 7]));

    // Bad input: 400 with a message.
    for (query, says) in [
        ("status=done", "`status`"),
        ("limit=0", "`limit`"),
        ("limit=501", "`limit`"),
        ("after=nope", "`after`"),
        ("since=yesterday", "`since`"),
        ("id=42", "`id`"),
        ("colour=red", "unknown parameter"),
    ] {
        let answer = get(&router, &format!("/api/tasks?{query}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(answer.error().contains(says), "{query}: {}", answer.error());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueues_by_name_with_checked_json_arguments() {
    let app = app("enqueue");
    let router = Dashboard::new().router(&app);
    let answer = post_json(&router, "/api/tasks", json!({"task": "add", "args": [2, 3], "priority": 4})).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let uuid: Uuid = answer.json()["uuid"].as_str().unwrap().parse().unwrap();
    let task = app.get(uuid).await.unwrap().unwrap();
    assert_eq!((task.task_name.as_str(), task.args.clone(), task.priority), ("add", json!([2, 3]), 4));
    let by_name =
        post_json(&router, "/api/tasks", json!({"task": "add", "args": {"a": 1, "b": 2}, "queue": "low"})).await;
    assert_eq!(by_name.status, StatusCode::CREATED);

    for (body, says) in [
        (json!({"task": "nope", "args": []}), "unknown task `nope`"),
        (json!({"args": []}), "`task`"),
        (json!({"task": "add", "args": [1, 2, 3]}), "takes 2 argument"),
        (json!({"task": "add", "args": {"c": 1}}), "no parameter `c`"),
        (json!({"task": "add", "args": "x"}), "JSON array"),
        (json!({"task": "add", "priority": "high"}), "`priority`"),
        (json!([1]), "JSON object"),
    ] {
        let answer = post_json(&router, "/api/tasks", body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(answer.error().contains(says), "{body}: {}", answer.error());
    }
    let request = Request::post("/api/tasks")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let answer = send(&router, request).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.error().contains("not JSON"), "{}", answer.error());
    // Not JSON: what a cross-site form would send.
    let answer = post_form(&router, "/api/tasks", "task=add").await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_cancel_and_retry() {
    let app = app("actions");
    let router = Dashboard::new().router(&app);
    let worker = app.worker().start().await.unwrap();

    // Cancel a running task.
    let running = app.add_task("wait_for_cancel", ()).await.unwrap().uuid();
    until_status(&app, running, TaskStatus::Process).await;
    let detail = get(&router, &format!("/api/tasks/{running}")).await.json();
    assert_eq!(detail["can_cancel"], true);
    assert_eq!(detail["task"]["status"], "process");
    let answer = post_json(&router, &format!("/api/tasks/{running}/cancel"), json!({"reason": "from a test"})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json()["outcome"], "requested");
    until_status(&app, running, TaskStatus::Cancel).await;
    assert_eq!(app.get(running).await.unwrap().unwrap().error.as_deref(), Some("from a test"));

    // Retry a failed task: a new task, linked to the old one.
    let failed = app.add_task("fail", ("boom",)).await.unwrap().uuid();
    until_status(&app, failed, TaskStatus::Error).await;
    let answer = post_json(&router, &format!("/api/tasks/{failed}/retry"), json!({})).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let new: Uuid = answer.json()["uuid"].as_str().unwrap().parse().unwrap();
    assert_ne!(new, failed);
    let detail = get(&router, &format!("/api/tasks/{new}")).await.json();
    assert_eq!(detail["retried_from"], failed.to_string());
    assert_eq!(detail["task"]["args"], json!(["boom"]));
    until_status(&app, new, TaskStatus::Error).await;

    // A task that succeeded cannot be retried; unknown and bad ids.
    let done = app.add_task("add", (1, 1)).await.unwrap().uuid();
    until_status(&app, done, TaskStatus::Success).await;
    let answer = post_json(&router, &format!("/api/tasks/{done}/retry"), json!({})).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert!(answer.error().contains("success"));
    let cancel_done = post_json(&router, &format!("/api/tasks/{done}/cancel"), json!({})).await;
    assert_eq!(cancel_done.json()["outcome"], json!({"finished": "success"}));
    let unknown = Uuid::new_v4();
    assert_eq!(get(&router, &format!("/api/tasks/{unknown}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        post_json(&router, &format!("/api/tasks/{unknown}/cancel"), json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post_json(&router, &format!("/api/tasks/{unknown}/retry"), json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    let bad = get(&router, "/api/tasks/not-a-uuid").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.error().contains("not a task id"));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_and_resumes_queues() {
    let app = app("pause");
    let router = Dashboard::new().router(&app);
    let answer = post_json(&router, "/api/queues/low/pause", json!({})).await;
    assert_eq!(answer.json(), json!({"queue": "low", "paused": true}));
    let queues = get(&router, "/api/queues").await.json();
    assert_eq!(queues[1]["paused"], true);
    let worker = app.worker().start().await.unwrap();
    let chore = app.add_task("chore", ()).await.unwrap().uuid();
    let add = app.add_task("add", (1, 2)).await.unwrap().uuid();
    until_status(&app, add, TaskStatus::Success).await;
    assert_eq!(status_of(&app, chore).await, Some(TaskStatus::New), "a paused queue gives nothing");
    let answer = post_json(&router, "/api/queues/low/resume", json!({})).await;
    assert_eq!(answer.json(), json!({"queue": "low", "paused": false}));
    until_status(&app, chore, TaskStatus::Success).await;
    let unknown = post_json(&router, "/api/queues/nowhere/pause", json!({})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.error().contains("unknown queue `nowhere`"));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_route_but_login_and_assets() {
    let app = app("auth");
    let router = Dashboard::new().token("s3cret").router(&app);
    let bare = get(&router, "/api/overview").await;
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bare.headers[header::WWW_AUTHENTICATE], "Bearer realm=\"qtasks\"");
    assert!(bare.error().contains("token"));
    let page = get(&router, "/tasks").await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.text.contains("name=\"token\""), "the login form");
    for (value, status) in [
        ("Bearer s3cret", StatusCode::OK),
        ("bearer s3cret", StatusCode::OK),
        ("Bearer wrong", StatusCode::UNAUTHORIZED),
        ("Basic YW55OnMzY3JldA==", StatusCode::OK),       // any:s3cret
        ("Basic YW55Ondyb25n", StatusCode::UNAUTHORIZED), // any:wrong
        ("Basic %%%", StatusCode::UNAUTHORIZED),
    ] {
        let request = Request::get("/api/overview").header(header::AUTHORIZATION, value).body(Body::empty()).unwrap();
        assert_eq!(send(&router, request).await.status, status, "{value}");
    }
    let post = post_json(&router, "/api/tasks", json!({"task": "add", "args": [1, 2]})).await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED, "actions too");
    assert_eq!(get(&router, "/assets/app.js").await.status, StatusCode::OK);
    assert_eq!(get(&router, "/assets/app.css").await.status, StatusCode::OK);
    assert_eq!(get(&router, "/login").await.status, StatusCode::OK);

    // The login page sets a cookie that opens the pages.
    let wrong = post_form(&router, "/login", "token=nope").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let login = post_form(&router, "/login", "token=s3cret").await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let cookie = login.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains("s3cret"), "the cookie does not show the token as is");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let request = Request::get("/tasks").header(header::COOKIE, pair).body(Body::empty()).unwrap();
    let page = send(&router, request).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("s3cret"), "no page shows the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_hides_and_refuses_every_action() {
    let app = app("read-only");
    let router = Dashboard::new().read_only(true).router(&app);
    let uuid = app.add_task("add", (1, 2)).await.unwrap().uuid();
    for path in ["/api/tasks".to_owned(), format!("/api/tasks/{uuid}/cancel"), "/api/queues/low/pause".to_owned()] {
        let answer = post_json(&router, &path, json!({"task": "add", "args": [1, 2]})).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        assert!(answer.error().contains("read-only"));
    }
    let form = post_form(&router, &format!("/tasks/{uuid}/cancel"), "csrf=x").await;
    assert_eq!(form.status, StatusCode::FORBIDDEN);
    assert_eq!(status_of(&app, uuid).await, Some(TaskStatus::New), "nothing was cancelled");
    for path in ["/".to_owned(), "/tasks".to_owned(), format!("/tasks/{uuid}"), "/queues".to_owned()] {
        let page = get(&router, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.text.contains("data-action"), "{path} shows an action");
        assert!(!page.text.contains("method=\"post\""), "{path} has a form that posts");
        assert!(page.text.contains("read-only"));
    }
    assert_eq!(get(&router, "/enqueue").await.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&router, "/api/overview").await.json()["read_only"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_posts_need_the_csrf_token_and_the_same_origin() {
    let app = app("csrf");
    let router = Dashboard::new().router(&app);
    let page = get(&router, "/queues").await;
    let csrf = csrf_of(&page.text);
    let refused = post_form(&router, "/queues/low/pause", "csrf=wrong").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = post_form(&router, "/queues/low/pause", "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(!app.queues().await.unwrap()[1].paused);
    let cross = Request::post("/queues/low/pause")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    assert_eq!(send(&router, cross).await.status, StatusCode::FORBIDDEN);
    assert!(!app.queues().await.unwrap()[1].paused);
    let done = post_form(&router, "/queues/low/pause", &format!("csrf={csrf}")).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert!(app.queues().await.unwrap()[1].paused);

    // The enqueue form: errors shown on the page, success goes to the task.
    let form = get(&router, "/enqueue").await;
    assert_eq!(form.status, StatusCode::OK);
    let bad = post_form(&router, "/enqueue", &format!("csrf={csrf}&task=add&args=%5B1%2C")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("the arguments are not JSON"), "{}", bad.text);
    let unknown = post_form(&router, "/enqueue", &format!("csrf={csrf}&task=nope&args=%5B%5D")).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.text.contains("unknown task `nope`"));
    let ok = post_form(&router, "/enqueue", &format!("csrf={csrf}&task=add&args=%5B1%2C2%5D")).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let location = ok.headers[header::LOCATION].to_str().unwrap();
    let uuid: Uuid = location.trim_start_matches("/tasks/").parse().unwrap();
    assert_eq!(app.get(uuid).await.unwrap().unwrap().args, json!([1, 2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_and_escape_what_they_show() {
    let app = app("pages");
    let router = Dashboard::new().router(&app);
    let uuid = app.add_task("add", json!({"a": "<script>alert(1)</script>", "b": 1})).await.unwrap().uuid();
    for (path, shows) in [
        ("/".to_owned(), "Overview"),
        ("/tasks".to_owned(), "search by id"),
        (format!("/tasks/{uuid}"), "Arguments"),
        ("/queues".to_owned(), "oldest queued"),
        ("/workers".to_owned(), "No worker is alive"),
        ("/plugins".to_owned(), "No plugin"),
        ("/tasks?status=new&name=add".to_owned(), &uuid.to_string()),
    ] {
        let page = get(&router, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(page.text.contains(shows), "{path} does not show {shows}");
        assert!(!page.text.contains("<script>alert"), "{path} does not escape");
    }
    assert_eq!(get(&router, "/tasks?status=nope").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&router, "/tasks/nope").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&router, &format!("/tasks/{}", Uuid::new_v4())).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_snapshots() {
    let app = app("events");
    let router = Dashboard::new().poll_interval(Duration::from_millis(50)).router(&app);
    let response = router.clone().oneshot(Request::get("/api/events").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    let uuid = app.add_task("add", (1, 2)).await.unwrap().uuid().to_string();
    // Snapshots until one shows the task (each is sent when it changed).
    tokio::time::timeout(HANG, async {
        while !text.contains(&uuid) {
            let chunk = body.next().await.expect("the stream goes on").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("a snapshot with the task");
    assert!(text.starts_with("event: snapshot\ndata: {"), "{text}");

    // Throughput: runs that end while the stream is open are counted in
    // the last hour's minutes.
    let worker = app.worker().start().await.unwrap();
    for i in 0..3 {
        app.add_task("add", (i, i)).await.unwrap();
    }
    let counted = |text: &str| -> u64 {
        let Some(data) = text.rsplit("data: ").next() else { return 0 };
        let Ok(snapshot) = serde_json::from_str::<Value>(data.trim()) else { return 0 };
        let minutes = snapshot["overview"]["throughput"].as_array().cloned().unwrap_or_default();
        assert!(minutes.is_empty() || minutes.len() == 60);
        minutes.iter().map(|m| m["finished"].as_u64().unwrap()).sum()
    };
    tokio::time::timeout(HANG, async {
        let mut last = String::new();
        while counted(&last) < 3 {
            let chunk = body.next().await.expect("the stream goes on").unwrap();
            last.push_str(&String::from_utf8_lossy(&chunk));
            // Keep only the last complete event.
            if let Some(end) = last.rfind("\n\n") {
                let (done, rest) = last.split_at(end);
                let event = done.rsplit("\n\n").next().unwrap_or(done).to_owned();
                if rest.trim().is_empty() {
                    last = event;
                }
            }
        }
    })
    .await
    .expect("the three runs counted in the throughput");
    let overview = get(&router, "/api/overview").await.json();
    assert_eq!(overview["throughput"].as_array().unwrap().len(), 60);
    worker.shutdown().await;
}

/// Every route of the API reference is mounted (none answers the router's
/// bare 404), and the reference lists every `/api/` route the tests call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reference_matches_the_router() {
    let app = app("reference");
    let router = Dashboard::new().router(&app);
    let uuid = app.add_task("add", (1, 2)).await.unwrap().uuid();
    let mut routes = Vec::new();
    for line in qtasks::web::API.lines().filter(|l| l.starts_with("| `")) {
        let route = line.trim_start_matches("| `").split('`').next().unwrap();
        let (method, path) = route.split_once(' ').unwrap();
        routes.push((method.to_owned(), path.to_owned()));
    }
    assert_eq!(routes.len(), 17, "{routes:?}");
    for (method, path) in &routes {
        if path == "/api/events" {
            continue; // never ends; see events_stream_snapshots
        }
        let path = path
            .replace("{uuid}", &uuid.to_string())
            .replace("{queue}", "default")
            .replace("{name}", "some_plugin")
            .replace("{action}", "enable");
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let answer = send(&router, request).await;
        assert!(
            !(answer.status == StatusCode::NOT_FOUND && answer.text.is_empty())
                && answer.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            answer.status
        );
    }
}

/// The listing on Redis, through the API: 10 000 tasks in keyset pages
/// filtered by status (the per-status index), and finished records that
/// the retention removed leave the indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable (see the build warning)")]
async fn redis_lists_by_status_index_and_trims_with_retention() {
    let name = format!("web-api-redis-{}", Uuid::new_v4());
    let Some(backend) = support::connect_redis("redis_lists_by_status_index_and_trims_with_retention", &name).await
    else {
        return;
    };
    let backend = backend.retention(Some(Duration::from_millis(300)));
    let app = QueueTasks::builder(name)
        .tasks::<(Add, WaitForCancel, Fail, Chore)>()
        .backend(backend.clone())
        .build()
        .unwrap();
    let outcome = tokio::spawn({
        let app = app.clone();
        async move {
            let router = Dashboard::new().router(&app);
            let handles = app.add_tasks((0..10_000).map(|i| Add::call(i, 0))).await.unwrap();
            let mut seen = HashSet::new();
            let mut path = "/api/tasks?status=new&limit=500".to_owned();
            let mut last: Option<(f64, Uuid)> = None;
            loop {
                let page = get(&router, &path).await;
                assert_eq!(page.status, StatusCode::OK, "{}", page.text);
                let page = page.json();
                for t in page["tasks"].as_array().unwrap() {
                    let key = (t["created_at"].as_f64().unwrap(), t["uuid"].as_str().unwrap().parse::<Uuid>().unwrap());
                    assert!(last.is_none_or(|l| l > key), "newest first");
                    last = Some(key);
                    assert!(seen.insert(key.1), "listed twice");
                }
                match page["next"].as_str() {
                    Some(next) => path = format!("/api/tasks?status=new&limit=500&after={next}"),
                    None => break,
                }
            }
            assert_eq!(seen.len(), 10_000);
            assert_eq!(seen, handles.iter().map(|h| h.uuid()).collect::<HashSet<_>>());

            // Run a few; their records expire after the retention and leave
            // the `success` index.
            app.flush_all().await.unwrap();
            let worker = app.worker().start().await.unwrap();
            let done: Vec<Uuid> =
                app.add_tasks((0..5).map(|i| Add::call(i, 1))).await.unwrap().iter().map(|h| h.uuid()).collect();
            for uuid in &done {
                until_status(&app, *uuid, TaskStatus::Success).await;
            }
            let listed = get(&router, "/api/tasks?status=success").await.json();
            assert_eq!(listed["tasks"].as_array().unwrap().len(), 5);
            let mut conn = support::raw_redis().await;
            let index = format!("qtasks:{}:index:success", app.name());
            let deadline = tokio::time::Instant::now() + HANG;
            loop {
                let listed = get(&router, "/api/tasks?status=success").await.json();
                let left: usize = redis::cmd("ZCARD").arg(&index).query_async(&mut conn).await.unwrap();
                if listed["tasks"].as_array().unwrap().is_empty() && left == 0 {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "expired records stay listed ({left} in the index)");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            worker.shutdown().await;
        }
    })
    .await;
    app.flush_all().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_confirm_the_count_then_act_on_every_matching_task() {
    let app = app("bulk");
    let router = Dashboard::new().router(&app);
    let queued: Vec<Uuid> =
        app.add_tasks((0..12).map(|_| Chore::call())).await.unwrap().iter().map(|h| h.uuid()).collect();
    app.add_task("add", (1, 2)).await.unwrap();
    let body = json!({"action": "cancel", "filter": {"name": "chore", "status": "new"}});
    let ask = post_json(&router, "/api/tasks/bulk", body.clone()).await;
    assert_eq!(ask.status, StatusCode::CONFLICT, "{}", ask.text);
    assert_eq!(ask.json()["count"], 12);
    let wrong =
        post_json(&router, "/api/tasks/bulk", json!({"action": "cancel", "filter": {"name": "chore"}, "expect": 5}))
            .await;
    assert_eq!(wrong.status, StatusCode::CONFLICT);
    for uuid in &queued {
        assert_eq!(status_of(&app, *uuid).await, Some(TaskStatus::New), "nothing done before the confirmation");
    }
    let mut confirmed = body.clone();
    confirmed["expect"] = json!(12);
    let done = post_json(&router, "/api/tasks/bulk", confirmed).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.json()["done"], 12);
    for uuid in &queued {
        assert_eq!(status_of(&app, *uuid).await, Some(TaskStatus::Cancel));
    }
    // The `add` task was not touched.
    assert_eq!(get(&router, "/api/tasks?status=new").await.json()["tasks"].as_array().unwrap().len(), 1);

    // Retry them all: 12 new tasks, each linked to its cancelled one.
    let retry =
        post_json(&router, "/api/tasks/bulk", json!({"action": "retry", "filter": {"status": "cancel"}, "expect": 12}))
            .await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text);
    let created = retry.json()["created"].as_array().unwrap().len();
    assert_eq!(created, 12);
    assert_eq!(get(&router, "/api/tasks?name=chore&status=new").await.json()["tasks"].as_array().unwrap().len(), 12);

    for (body, status) in [
        (json!({"action": "delete", "filter": {}}), StatusCode::BAD_REQUEST),
        (json!({"action": "cancel", "filter": {"status": "nope"}}), StatusCode::BAD_REQUEST),
        (json!({"action": "cancel", "filter": {"after": "x"}}), StatusCode::BAD_REQUEST),
        (json!({"action": "cancel", "filter": [1]}), StatusCode::BAD_REQUEST),
        (json!({"action": "cancel", "expect": "all"}), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(post_json(&router, "/api/tasks/bulk", body.clone()).await.status, status, "{body}");
    }

    // The page: a confirmation showing the count, then the action.
    let page = get(&router, "/tasks?name=chore&status=new").await;
    assert!(page.text.contains("data-action=\"bulk-cancel\""));
    let csrf = csrf_of(&page.text);
    let confirm = post_form(&router, "/tasks/bulk", &format!("csrf={csrf}&action=cancel&name=chore&status=new")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.text.contains("data-count=\"12\""), "{}", confirm.text);
    let stale = post_form(
        &router,
        "/tasks/bulk",
        &format!("csrf={csrf}&action=cancel&name=chore&status=new&expect=3&confirm=yes"),
    )
    .await;
    assert!(stale.text.contains("changed; confirm again"));
    let done = post_form(
        &router,
        "/tasks/bulk",
        &format!("csrf={csrf}&action=cancel&name=chore&status=new&expect=12&confirm=yes"),
    )
    .await;
    assert!(done.text.contains("12 task(s) done"), "{}", done.text);
    assert!(get(&router, "/api/tasks?name=chore&status=new").await.json()["tasks"].as_array().unwrap().is_empty());
    let refused = post_form(&router, "/tasks/bulk", "action=cancel&name=add").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "no CSRF token");
}

/// A plugin switched off from the dashboard is switched off in a worker
/// of another process (here: another app handle on the same backend)
/// within a heartbeat, and its per-worker stats show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_switched_across_workers() {
    let name = format!("web-api-plugins-{}", Uuid::new_v4());
    let backend = qtasks::MemoryBackend::new();
    let dashboard_app = QueueTasks::builder(&name).task::<Add>().backend(backend.clone()).build().unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker_app = QueueTasks::builder(&name)
        .task::<Add>()
        .plugin(qtasks::plugin::Managed::new(Counter { calls: calls.clone() }).metrics())
        .backend(backend)
        .build()
        .unwrap();
    let worker = worker_app.worker().start().await.unwrap();
    let router = Dashboard::new().router(&dashboard_app);
    let plugins = get(&router, "/api/plugins").await.json();
    assert_eq!(plugins["workers"][0]["plugins"][0]["name"], "Counter");
    assert_eq!(plugins["workers"][0]["plugins"][0]["enabled"], true);

    let answer = post_json(&router, "/api/plugins/Counter/disable", json!({})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json()["enabled"], false);
    assert_eq!(get(&router, "/api/plugins").await.json()["switches"], json!({"Counter": false}));
    // Within a heartbeat (5 s; hang protection only).
    let deadline = tokio::time::Instant::now() + HANG;
    while worker_app.plugins()[0].enabled != Some(false) {
        assert!(tokio::time::Instant::now() < deadline, "the worker never applied the switch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    let uuid = worker_app.add_task("add", (1, 2)).await.unwrap().uuid();
    until_status(&worker_app, uuid, TaskStatus::Success).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), before, "a switched-off plugin is not called");

    let page = get(&router, "/plugins").await;
    assert!(page.text.contains("data-action=\"enable\""), "{}", page.text);
    let csrf = csrf_of(&page.text);
    let on = post_form(&router, "/plugins/Counter/enable", &format!("csrf={csrf}")).await;
    assert_eq!(on.status, StatusCode::SEE_OTHER);
    let deadline = tokio::time::Instant::now() + HANG;
    while worker_app.plugins()[0].enabled != Some(true) {
        assert!(tokio::time::Instant::now() < deadline, "the worker never applied the switch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bad = post_json(&router, "/api/plugins/Counter/toggle", json!({})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    worker.shutdown().await;
}

/// The entries of a running scheduler, with their next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_listed_with_their_next_run() {
    let app = app("schedules");
    let router = Dashboard::new().router(&app);
    assert_eq!(get(&router, "/api/schedules").await.json(), json!([]));
    let schedule = qtasks::Scheduler::new(&app)
        .entry(
            qtasks::ScheduleEntry::every(Duration::from_secs(3600), qtasks::call("add", (1, 2)))
                .unwrap()
                .name("hourly add"),
        )
        .entry(qtasks::ScheduleEntry::cron("0 3 * * *", qtasks::call("chore", ())).unwrap())
        .start();
    let deadline = tokio::time::Instant::now() + HANG;
    let entries = loop {
        let entries = get(&router, "/api/schedules").await.json();
        let list = entries.as_array().unwrap();
        if list.len() == 2 && list.iter().all(|e| e["next_run"].is_f64()) {
            break entries;
        }
        assert!(tokio::time::Instant::now() < deadline, "the entries were never registered: {entries}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let hourly = entries.as_array().unwrap().iter().find(|e| e["description"] == "hourly add").unwrap();
    assert_eq!(hourly["task_name"], "add");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(hourly["next_run"].as_f64().unwrap() > now, "the next run is ahead");
    let page = get(&router, "/schedules").await;
    assert!(page.text.contains("hourly add") && page.text.contains("0 3 * * *"), "{}", page.text);
    schedule.shutdown().await;
}

type Tasks = ((Add, WaitForCancel, Fail, Chore),);

/// An app of the test's tasks on `backend`.
fn app_on<B: Backend>(name: &str, backend: B) -> QueueTasks<Tasks, (), B> {
    QueueTasks::builder(name).tasks::<(Add, WaitForCancel, Fail, Chore)>().backend(backend).build().unwrap()
}

/// The detail names the worker that ran a task and dates each step
/// (enqueued, started by the worker, ended); `/api/workers` and the
/// Workers page show how many tasks each worker runs.
async fn worker_timeline_and_in_flight<B: Backend>(app: QueueTasks<Tasks, (), B>) {
    let router = Dashboard::new().router(&app);
    let worker = app.worker().start().await.unwrap();
    let id = worker.info().id.clone();

    let done = app.add_task("add", (2, 3)).await.unwrap().uuid();
    until_status(&app, done, TaskStatus::Success).await;
    let detail = get(&router, &format!("/api/tasks/{done}")).await.json();
    let task = &detail["task"];
    assert_eq!(task["worker"], id, "{detail}");
    let started = task["started_at"].as_f64().expect("the record dates its start");
    let timeline = detail["timeline"].as_array().unwrap();
    let statuses: Vec<&str> = timeline.iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["new", "process", "success"], "{detail}");
    assert_eq!(timeline[1]["worker"], id);
    assert_eq!(timeline[1]["at"].as_f64(), Some(started));
    let ats: Vec<f64> = timeline.iter().map(|s| s["at"].as_f64().unwrap()).collect();
    assert!(ats.windows(2).all(|w| w[0] <= w[1]), "steps in order: {ats:?}");
    let page = get(&router, &format!("/tasks/{done}")).await;
    assert!(page.text.contains(&format!("started by worker {id}")), "{}", page.text);

    // A running task counts in its worker's `in_flight` at the next
    // heartbeat (every 5 s); cancelled, its record still names the worker.
    let running = app.add_task("wait_for_cancel", ()).await.unwrap().uuid();
    until_status(&app, running, TaskStatus::Process).await;
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let workers = get(&router, "/api/workers").await.json();
        let me = workers.as_array().unwrap().iter().find(|w| w["id"] == id).cloned().unwrap_or_default();
        if me["in_flight"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "in flight never shown as 1: {workers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = get(&router, "/workers").await;
    assert!(page.text.contains("<td data-field=\"in_flight\">1</td>"), "{}", page.text);
    app.cancel(running, "enough").await.unwrap();
    until_status(&app, running, TaskStatus::Cancel).await;
    let detail = get(&router, &format!("/api/tasks/{running}")).await.json();
    let statuses: Vec<&str> =
        detail["timeline"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["new", "process", "cancel"], "{detail}");
    assert_eq!(detail["task"]["worker"], id);
    worker.shutdown().await;

    // Cancelled while queued: never started, no worker.
    let queued = app.add_task("add", (1, 1)).await.unwrap().uuid();
    app.cancel(queued, "not now").await.unwrap();
    let detail = get(&router, &format!("/api/tasks/{queued}")).await.json();
    let statuses: Vec<&str> =
        detail["timeline"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["new", "cancel"], "{detail}");
    assert!(detail["task"].get("worker").is_none(), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_names_the_worker_and_dates_the_steps_memory() {
    worker_timeline_and_in_flight(app("timeline")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable (see the build warning)")]
async fn detail_names_the_worker_and_dates_the_steps_redis() {
    let name = format!("web-api-timeline-redis-{}", Uuid::new_v4());
    let Some(backend) = support::connect_redis("detail_names_the_worker_and_dates_the_steps_redis", &name).await else {
        return;
    };
    let app = app_on(&name, backend);
    let outcome = tokio::spawn(worker_timeline_and_in_flight(app.clone())).await;
    app.flush_all().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable (see the build warning)")]
async fn detail_names_the_worker_and_dates_the_steps_postgres() {
    let Some(base) = support::postgres::fresh("detail_names_the_worker_and_dates_the_steps_postgres").await else {
        return;
    };
    let app = app_on("web-api-timeline-postgres", base.clone());
    let outcome = tokio::spawn(worker_timeline_and_in_flight(app)).await;
    support::postgres::drop_schema(&base).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Throughput per minute is counted by the backend as runs end, with no
/// browser open: `GET /api/throughput` and the overview read it, per status.
async fn throughput_counted_by_the_backend<B: Backend>(app: QueueTasks<Tasks, (), B>) {
    let router = Dashboard::new().router(&app);
    let worker = app.worker().start().await.unwrap();
    let mut uuids = Vec::new();
    for i in 0..3 {
        uuids.push((app.add_task("add", (i, i)).await.unwrap().uuid(), TaskStatus::Success));
    }
    uuids.push((app.add_task("fail", ("no",)).await.unwrap().uuid(), TaskStatus::Error));
    for (uuid, status) in &uuids {
        until_status(&app, *uuid, *status).await;
    }
    worker.shutdown().await;
    let answer = get(&router, "/api/throughput").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let t = answer.json();
    assert_eq!(t["counted_by"], "backend", "{t}");
    let minutes = t["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let sum = |field: &str| minutes.iter().map(|m| m[field].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("finished"), sum("failed"), sum("success"), sum("error")), (4, 1, 3, 1), "{t}");
    let starts: Vec<i64> = minutes.iter().map(|m| m["at"].as_i64().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[1] - w[0] == 60), "one per minute, oldest first: {starts:?}");
    let o = get(&router, "/api/overview").await.json();
    assert_eq!(o["counted_by"], "backend");
    assert_eq!(o["throughput"], t["minutes"]);
    let page = get(&router, "/").await;
    assert!(page.text.contains("counted by the backend across every worker"), "{}", page.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_is_counted_by_the_backend_memory() {
    throughput_counted_by_the_backend(app("throughput")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable (see the build warning)")]
async fn throughput_is_counted_by_the_backend_redis() {
    let name = format!("web-api-throughput-redis-{}", Uuid::new_v4());
    let Some(backend) = support::connect_redis("throughput_is_counted_by_the_backend_redis", &name).await else {
        return;
    };
    let app = app_on(&name, backend);
    let outcome = tokio::spawn(throughput_counted_by_the_backend(app.clone())).await;
    app.flush_all().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable (see the build warning)")]
async fn throughput_is_counted_by_the_backend_postgres() {
    let Some(base) = support::postgres::fresh("throughput_is_counted_by_the_backend_postgres").await else {
        return;
    };
    let app = app_on("web-api-throughput-postgres", base.clone());
    let outcome = tokio::spawn(throughput_counted_by_the_backend(app)).await;
    support::postgres::drop_schema(&base).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// On Redis one page reads at most 10 000 index entries: a filter that
/// few tasks match ends pages early, with a cursor, and following the
/// cursors reaches every match. The page says it ended early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable (see the build warning)")]
async fn redis_selective_filters_reach_every_match_through_short_pages() {
    let name = format!("web-api-redis-sparse-{}", Uuid::new_v4());
    let Some(backend) =
        support::connect_redis("redis_selective_filters_reach_every_match_through_short_pages", &name).await
    else {
        return;
    };
    let app = app_on(&name, backend);
    let outcome = tokio::spawn({
        let app = app.clone();
        async move {
            let router = Dashboard::new().router(&app);
            let oldest = app.add_task("chore", ()).await.unwrap().uuid();
            app.add_tasks((0..11_000).map(|i| Add::call(i, 0))).await.unwrap();
            let newest = app.add_task("chore", ()).await.unwrap().uuid();
            let mut found = Vec::new();
            let mut short_pages = 0;
            let mut path = "/api/tasks?name=chore&limit=50".to_owned();
            for _ in 0..10 {
                let page = get(&router, &path).await;
                assert_eq!(page.status, StatusCode::OK, "{}", page.text);
                let page = page.json();
                let tasks = page["tasks"].as_array().unwrap();
                found.extend(tasks.iter().map(|t| t["uuid"].as_str().unwrap().parse::<Uuid>().unwrap()));
                match page["next"].as_str() {
                    Some(next) => {
                        short_pages += usize::from(tasks.len() < 50);
                        path = format!("/api/tasks?name=chore&limit=50&after={next}");
                    }
                    None => break,
                }
            }
            assert_eq!(found, [newest, oldest], "every match once, newest first");
            assert!(short_pages >= 1, "11 000 entries between the two: a page ended early");
            let html = get(&router, "/tasks?name=chore").await;
            assert!(html.text.contains("id=\"short-page\""), "{}", html.text);
            assert!(html.text.contains("rel=\"next\""), "{}", html.text);
        }
    })
    .await;
    app.flush_all().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
