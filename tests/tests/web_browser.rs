//! The dashboard in a real browser: headless Chromium driven through
//! chromedriver (Debian's `chromium` and `chromium-driver`; `.ci/run`
//! installs them). Without them the test is ignored (`cfg(chromium_missing)`,
//! set by `tests/build.rs`), except under CI, where it fails.
//!
//! One browser session walks the dashboard of an in-memory app with a
//! worker: a task enqueued by the test appears in the open task table
//! without a reload, its detail page opens, Cancel on the running task
//! makes it `cancel`, pausing a queue stops the worker taking from it and
//! resuming lets it, and the read-only dashboard shows no action.
//! Screenshots of the main pages are written to
//! `target/dashboard-screenshots/` (CI keeps them as artifacts).

mod support;

use fantoccini::{Client, ClientBuilder, Locator};
use qtasks::web::Dashboard;
use qtasks::{QueueTasks, TaskContext, TaskStatus, Uuid, task};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::HANG;

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

/// A chore of queue `low`.
#[task(queue = "low")]
async fn chore() {}

type App = QueueTasks<((Add, WaitForCancel, Chore),)>;

/// The chromedriver process, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver on a free port and waits for its "started" line.
fn start_driver() -> Driver {
    let mut child = Command::new("chromedriver")
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (apt-get install chromium chromium-driver)");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines.next().expect("chromedriver says it started").unwrap();
        if let Some(rest) = line.split("started successfully on port ").nth(1) {
            break rest.trim_end_matches('.').trim().parse().unwrap();
        }
    };
    // Keep reading its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Driver { child, port }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a chromium session")
}

/// Serves `router` on a free local port; its base URL.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Waits (hang protection only) for an element.
async fn element(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(HANG)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` within {HANG:?}: {e}"))
}

async fn status_of(app: &App, uuid: Uuid) -> Option<TaskStatus> {
    app.get(uuid).await.unwrap().map(|t| t.status)
}

async fn until_status(app: &App, uuid: Uuid, status: TaskStatus) {
    let deadline = tokio::time::Instant::now() + HANG;
    while status_of(app, uuid).await != Some(status) {
        assert!(tokio::time::Instant::now() < deadline, "{uuid} never reached {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(chromium_missing, ignore = "chromium or chromedriver is not installed (see the build warning)")]
async fn the_dashboard_in_a_real_browser() {
    let app: App = QueueTasks::builder(format!("web-browser-{}", Uuid::new_v4()))
        .tasks::<(Add, WaitForCancel, Chore)>()
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    let url = serve(Dashboard::new().poll_interval(Duration::from_millis(200)).router(&app)).await;
    let read_only = serve(Dashboard::new().read_only(true).router(&app)).await;
    let driver = start_driver();
    let client = browser(&driver).await;

    // A task enqueued by the test appears in the open table, no reload.
    for i in 0..3 {
        let done = app.add_task("add", (i, i)).await.unwrap().uuid();
        until_status(&app, done, TaskStatus::Success).await;
    }
    client.goto(&format!("{url}/tasks")).await.unwrap();
    element(&client, "#live.on").await;
    client.execute("window.notReloaded = true; return null;", vec![]).await.unwrap();
    let running = app.add_task("wait_for_cancel", ()).await.unwrap().uuid();
    until_status(&app, running, TaskStatus::Process).await;
    element(&client, &format!("tr[data-uuid=\"{running}\"] [data-status=\"process\"]")).await;
    let same_page = client.execute("return window.notReloaded === true;", vec![]).await.unwrap();
    assert_eq!(same_page, json!(true), "the row came by a live update, not a reload");
    screenshot(&client, "tasks").await;

    // Its detail page, then Cancel: it ends `cancel`.
    element(&client, &format!("tr[data-uuid=\"{running}\"] a.uuid")).await.click().await.unwrap();
    element(&client, "#task-status [data-status=\"process\"]").await;
    screenshot(&client, "task-detail").await;
    element(&client, "button[data-action=\"cancel\"]").await.click().await.unwrap();
    element(&client, "#task-status [data-status=\"cancel\"]").await;
    assert_eq!(status_of(&app, running).await, Some(TaskStatus::Cancel));
    let reason = element(&client, "#task-error").await.text().await.unwrap();
    assert_eq!(reason, "cancelled from the dashboard");
    assert!(client.find(Locator::Css("button[data-action=\"cancel\"]")).await.is_err(), "no cancel once done");
    element(&client, "button[data-action=\"retry\"]").await;
    // Reloaded, the detail names the worker that ran it and dates its start.
    client.refresh().await.unwrap();
    let id = &worker.info().id;
    assert_eq!(&element(&client, "#task-worker").await.text().await.unwrap(), id);
    let started = element(&client, "ol.timeline li[data-status=\"process\"]").await.text().await.unwrap();
    assert!(started.contains(&format!("started by worker {id}")), "{started}");

    // Pause queue `low`: the worker stops taking from it; resume: it takes.
    client.goto(&format!("{url}/queues")).await.unwrap();
    element(&client, "tr[data-queue=\"low\"] button[data-action=\"pause\"]").await.click().await.unwrap();
    element(&client, "tr[data-queue=\"low\"] button[data-action=\"resume\"]").await;
    assert!(app.queues().await.unwrap().iter().any(|q| q.name == "low" && q.paused));
    let chore = app.add_task("chore", ()).await.unwrap().uuid();
    // The page shows it waiting (live), while the worker runs other queues.
    element(&client, "tr[data-queue=\"low\"] td[data-field=\"depth\"]").await;
    client
        .wait()
        .at_most(HANG)
        .for_element(Locator::XPath("//tr[@data-queue='low']/td[@data-field='depth' and text()='1']"))
        .await
        .expect("the paused queue shows its waiting task");
    let other = app.add_task("add", (1, 1)).await.unwrap().uuid();
    until_status(&app, other, TaskStatus::Success).await;
    assert_eq!(status_of(&app, chore).await, Some(TaskStatus::New), "no worker takes from a paused queue");
    screenshot(&client, "queues").await;
    element(&client, "tr[data-queue=\"low\"] button[data-action=\"resume\"]").await.click().await.unwrap();
    until_status(&app, chore, TaskStatus::Success).await;

    client.goto(&format!("{url}/")).await.unwrap();
    element(&client, "#live.on").await;
    // No live update older than the page overwrites it.
    client
        .wait()
        .at_most(HANG)
        .for_element(Locator::XPath("//tr[@data-queue='low']/td[@data-field='paused' and text()='no']"))
        .await
        .expect("queue `low` shows resumed");
    let paused = element(&client, "tr[data-queue=\"low\"] td[data-field=\"paused\"]").await.text().await.unwrap();
    assert_eq!(paused, "no");
    let bars = client.find_all(Locator::Css("#throughput svg.chart rect.ok")).await.unwrap();
    assert_eq!(bars.len(), 60, "a bar per minute of the last hour");
    screenshot(&client, "overview").await;
    client.goto(&format!("{url}/workers")).await.unwrap();
    element(&client, "#workers tr.alive td[data-field=\"in_flight\"]").await;
    screenshot(&client, "workers").await;

    // Read-only: no action anywhere.
    for path in ["/".to_owned(), "/tasks".to_owned(), format!("/tasks/{running}"), "/queues".to_owned()] {
        client.goto(&format!("{read_only}{path}")).await.unwrap();
        element(&client, "main h1").await;
        let actions = client.find_all(Locator::Css("[data-action], form[method=\"post\"]")).await.unwrap();
        assert!(actions.is_empty(), "{path}: {} action(s) in read-only mode", actions.len());
        element(&client, "header .mode").await;
    }
    screenshot(&client, "read-only-task").await;

    client.close().await.unwrap();
    drop(driver);
    worker.shutdown().await;
}
