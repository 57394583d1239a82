//! A Rust worker on `QtasksPyBackend` serving the real Python QTasks 1.7.3
//! client (`tests/python/qtasks_client.py`, run in the virtualenv of
//! `scripts/python-env`), against the Redis server of `QTASKS_REDIS_URL`.
//!
//! Each test uses an app name of its own (the key prefix) and removes only
//! its own keys at the end (`flush`).

mod python;
mod support;

use python::{json_lines, run};
use qtasks::backend::QtasksPyBackend;
use qtasks::{Backend, QueueTasks, TaskContext, TaskError, TaskStatus, task};
use serde_json::{Value, json};
use std::time::Duration;
use support::procs::Proc;
use support::{HANG, query, raw_redis, redis_url};

/// Hang guard for one run of the Python client.
const CLIENT: Duration = Duration::from_secs(120);

#[task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
fn fail(a: i64, b: i64) -> Result<i64, TaskError> {
    Err(TaskError::msg(format!("boom: a={a} b={b}")))
}

#[task]
fn cancel_me(ctx: TaskContext, a: i64) -> Result<i64, TaskError> {
    Err(ctx.cancel(format!("cancelled by task, a={a}")).into())
}

#[task]
fn echo(value: Value) -> Value {
    value
}

/// Fails at every attempt, saying which; retried once.
#[task(retry = 1)]
fn flaky(ctx: TaskContext) -> Result<i64, TaskError> {
    Err(TaskError::msg(format!("attempt {} failed", ctx.attempt())))
}

#[task(name = "pkg:mod:add")]
fn colon_add(a: i64, b: i64) -> i64 {
    a + b
}

/// The slow task of the worker process, as this process runs it: at once.
#[task(name = "slow")]
fn slow_here(_ms: u64) -> String {
    "ran here".to_owned()
}

fn app_name(what: &str) -> String {
    format!("pyqt-{what}-{}", &qtasks::Uuid::new_v4().simple().to_string()[..8])
}

async fn backend(app: &str) -> QtasksPyBackend {
    QtasksPyBackend::connect(&redis_url()).await.expect("connecting to Redis").for_app(app)
}

/// Calls of the Python client, one JSON object each (see the script).
async fn client(app: &str, calls: Value) -> Vec<Value> {
    json_lines(&run("qtasks_client.py", &[app, &redis_url(), &calls.to_string()], CLIENT).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn the_python_client_gets_results_errors_and_cancels_from_a_rust_worker() {
    let name = app_name("e2e");
    let backend = backend(&name).await;
    let app = QueueTasks::builder(name.as_str())
        .task::<Add>()
        .task::<Fail>()
        .task::<CancelMe>()
        .task::<Echo>()
        .task::<ColonAdd>()
        .task::<Flaky>()
        .backend(backend.clone())
        .build()
        .unwrap();
    let worker = app.worker().max_tasks_process(4).start().await.unwrap();

    let out = client(
        &name,
        json!([
            {"task": "add", "args": [2, 3], "timeout": 30},
            {"task": "add", "args": [2], "kwargs": {"b": 3}, "timeout": 30},
            {"task": "add", "kwargs": {"a": 2, "b": 3}, "priority": 7, "timeout": 30},
            {"task": "fail", "args": [2, 3], "timeout": 30},
            {"task": "cancel_me", "args": [7], "timeout": 30},
            {"task": "echo", "args": [{"x": [1, 2.5, null, true], "s": "ü"}], "timeout": 30},
            {"task": "pkg:mod:add", "args": [40, 2], "timeout": 30},
            {"task": "nope", "args": [1], "timeout": 30},
            {"ping": true},
            {"task": "flaky", "timeout": 30},
        ]),
    )
    .await;
    assert_eq!(out.len(), 10, "{out:?}");
    for sum in &out[0..3] {
        assert_eq!(sum["status"], "success", "{sum}");
        assert_eq!(sum["returning"], 5, "{sum}");
    }
    assert_eq!(out[3]["status"], "error", "{}", out[3]);
    assert!(out[3]["traceback"].as_str().unwrap().contains("boom: a=2 b=3"), "{}", out[3]);
    assert_eq!(out[4]["status"], "cancel", "{}", out[4]);
    assert_eq!(out[4]["cancel_reason"], "cancelled by task, a=7", "{}", out[4]);
    assert_eq!(out[5]["returning"], json!({"x": [1, 2.5, null, true], "s": "ü"}), "{}", out[5]);
    assert_eq!(out[6]["returning"], 42, "{}", out[6]);
    assert_eq!(out[7]["status"], "error", "{}", out[7]);
    assert!(out[7]["traceback"].as_str().unwrap().contains("unknown task `nope`"), "{}", out[7]);
    assert_eq!(out[8]["ping"], true);
    // The client followed the retry to the second attempt's error.
    assert_eq!(out[9]["status"], "error", "{}", out[9]);
    assert!(out[9]["traceback"].as_str().unwrap().contains("attempt 2 failed"), "{}", out[9]);

    // The client's priority stays in the record; nothing is left in flight.
    let uuid: qtasks::Uuid = out[2]["uuid"].as_str().unwrap().parse().unwrap();
    let record = backend.get(uuid).await.unwrap().unwrap();
    assert_eq!((record.status, record.priority), (TaskStatus::Success, 7));
    let mut raw = raw_redis().await;
    let process: i64 = query(&mut raw, &["ZCARD", &format!("{name}:task_process")]).await;
    assert_eq!(process, 0);
    let stats = backend.stats().await.unwrap();
    assert_eq!(stats.tasks["add"].success, 3);
    // `inspect` and the dashboard show them as they show native tasks.
    let inspection = app.inspect().await.unwrap();
    let counts = inspection.tasks.iter().find(|t| t.info.name == "add").expect("add listed").counts;
    assert_eq!(counts.success, 3, "{inspection}");
    let dashboard = qtasks::web::Dashboard::new().router(&app);
    let listed = python::get_json(&dashboard, &format!("/api/tasks?id={uuid}")).await;
    assert_eq!((&listed["tasks"][0]["status"], &listed["tasks"][0]["priority"]), (&json!("success"), &json!(7)));
    let overview = python::get_json(&dashboard, "/api/overview").await;
    assert_eq!(overview["tasks"]["add"]["success"], 3, "{overview}");

    worker.shutdown().await;
    backend.flush().await.unwrap();
}

/// Plugins see a task the Python client sent as they see one sent from
/// Rust: the same worker-side triggers, in the same order, and a result a
/// plugin replaced is what the Python client gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn plugins_fire_on_python_tasks_as_on_native_ones() {
    let name = app_name("plugins");
    let backend = backend(&name).await;
    let witness = python::Witness::default();
    let app = QueueTasks::builder(name.as_str())
        .task::<Add>()
        .plugin(witness.clone())
        .backend(backend.clone())
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();

    let out = client(&name, json!([{"task": "add", "args": [2, 3], "timeout": 30}])).await;
    assert_eq!(out[0]["returning"], 5 + python::Witness::BONUS, "{out:?}");
    let native = app.enqueue(Add::call(2, 3)).await.unwrap();
    let native_uuid = native.uuid();
    assert_eq!(native.result(HANG).await.unwrap(), 5 + python::Witness::BONUS);
    worker.shutdown().await;

    let from_python = witness.fired(out[0]["uuid"].as_str().unwrap().parse().unwrap());
    assert_eq!(from_python.last(), Some(&"worker_execute_after"), "{from_python:?}");
    assert_eq!(from_python, witness.fired(native_uuid));
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn arguments_that_do_not_fit_end_in_error_with_the_reason() {
    let name = app_name("args");
    let backend = backend(&name).await;
    let app = QueueTasks::builder(name.as_str()).task::<Add>().backend(backend.clone()).build().unwrap();
    let worker = app.worker().start().await.unwrap();

    let out = client(
        &name,
        json!([
            {"task": "add", "args": [1, 2, 3], "timeout": 30},
            {"task": "add", "args": [1], "kwargs": {"c": 3}, "timeout": 30},
            {"task": "add", "args": [1], "kwargs": {"a": 3}, "timeout": 30},
            {"task": "add", "args": [1], "timeout": 30},
            {"task": "add", "args": ["x", 2], "timeout": 30},
        ]),
    )
    .await;
    let reasons: Vec<&str> = out.iter().map(|o| o["traceback"].as_str().unwrap_or_default()).collect();
    assert!(out.iter().all(|o| o["status"] == "error"), "{out:?}");
    assert!(reasons[0].contains("3 positional argument(s) given"), "{}", reasons[0]);
    assert!(reasons[1].contains("unknown argument `c`"), "{}", reasons[1]);
    assert!(reasons[2].contains("argument `a` given twice"), "{}", reasons[2]);
    assert!(reasons[3].contains("missing argument(s) [\"b\"]"), "{}", reasons[3]);
    assert!(reasons[4].contains("invalid arguments"), "{}", reasons[4]);

    worker.shutdown().await;
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn malformed_entries_and_records_cost_no_other_task() {
    let name = app_name("bad");
    let backend = backend(&name).await;
    let mut raw = raw_redis().await;
    let queue = format!("{name}:task_queue");
    let missing = qtasks::Uuid::new_v4();
    let bad_args = qtasks::Uuid::new_v4();
    let bad_key = format!("{name}:{bad_args}");
    let _: i64 = query(
        &mut raw,
        &["HSET", &bad_key, "task_name", "add", "priority", "0", "args", "[2,", "kwargs", "{}", "status", "new"],
    )
    .await;
    for entry in ["garbage".to_owned(), format!("add:{missing}:0"), format!("add:{bad_args}:0")] {
        let _: i64 = query(&mut raw, &["RPUSH", &queue, &entry]).await;
    }
    let app = QueueTasks::builder(name.as_str()).task::<Add>().backend(backend.clone()).build().unwrap();
    let worker = app.worker().start().await.unwrap();

    // A good task queued behind them runs.
    let out = client(&name, json!([{"task": "add", "args": [2, 3], "timeout": 30}])).await;
    assert_eq!(out[0]["returning"], 5, "{out:?}");

    let bad = backend.wait(bad_args, HANG).await.unwrap().expect("the malformed record ended");
    assert_eq!(bad.status, TaskStatus::Error);
    assert!(bad.error.as_deref().unwrap().contains("`args` is not JSON"), "{bad:?}");
    let dead = support::dead_letters(&mut raw, &format!("{name}:qtasks:")).await;
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().any(|r| r.contains("malformed queue entry")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("record is missing")), "{reasons:?}");

    worker.shutdown().await;
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn the_task_of_a_killed_rust_worker_comes_back() {
    let name = app_name("kill");
    let backend = backend(&name).await.liveness(Duration::from_millis(500));
    let url = redis_url();
    let mut first = Proc::spawn_bin(
        env!("CARGO_BIN_EXE_qtasks-py-worker"),
        "first",
        &["qtasks", "--app", &name, "--url", &url, "--liveness-ms", "500"],
    );
    first.expect("READY", HANG).await;

    // The Python client enqueues and waits in the background.
    let calls = json!([{"task": "slow", "args": [600000], "timeout": 90}]).to_string();
    let (app_arg, url_arg) = (name.clone(), url.clone());
    let waiting =
        tokio::spawn(async move { json_lines(&run("qtasks_client.py", &[&app_arg, &url_arg, &calls], CLIENT).await) });

    // Once the first worker holds it, kill it.
    let mut raw = raw_redis().await;
    let process = format!("{name}:task_process");
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let held: i64 = query(&mut raw, &["ZCARD", &process]).await;
        if held == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the first worker never took the task:\n{}", first.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.sigkill();

    // A worker of this process picks it up after the first one's liveness.
    let app = QueueTasks::builder(name.as_str()).task::<SlowHere>().backend(backend.clone()).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let out = waiting.await.unwrap();
    assert_eq!(out[0]["status"], "success", "{out:?}");
    assert_eq!(out[0]["returning"], "ran here", "{out:?}");

    worker.shutdown().await;
    backend.flush().await.unwrap();
}

/// Shared settings (the plugin switches every worker reads at each
/// heartbeat) on this backend's keys: read through each group's index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn settings_are_kept_per_group() {
    let backend = backend(&app_name("settings")).await;
    support::check_settings(&backend).await;
}
