//! A Rust worker on `CeleryBackend` serving the real Celery 5.7 client
//! (`tests/python/celery_client.py`, run in the virtualenv of
//! `scripts/python-env`), against the Redis server of `QTASKS_REDIS_URL`.
//!
//! Celery's keys are not scoped by app, so each test sends to queues of
//! its own (the client's `task_default_queue`), and removes at the end
//! only what it made: its queues' lists and kombu bindings, the results
//! of its tasks, and the backend's own keys (`flush`).

mod python;
mod support;

use python::{Witness, get_json, json_lines, run};
use qtasks::backend::CeleryBackend;
use qtasks::{Backend, Queue, QueueTasks, TaskError, TaskStatus, Uuid, task};
use serde_json::{Value, json};
use std::time::Duration;
use support::procs::Proc;
use support::{HANG, query, raw_redis, redis_url};

/// Hang guard for one run of the Python client.
const CLIENT: Duration = Duration::from_secs(120);

#[task(name = "app.add")]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task(name = "app.fail")]
fn fail(a: i64, b: i64) -> Result<i64, TaskError> {
    Err(TaskError::msg(format!("boom: a={a} b={b}")))
}

/// Fails at every attempt, saying which; retried once.
#[task(name = "app.flaky", retry = 1)]
fn flaky(ctx: qtasks::TaskContext) -> Result<i64, TaskError> {
    Err(TaskError::msg(format!("attempt {} failed", ctx.attempt())))
}

/// When it ran (seconds since the epoch).
#[task(name = "app.now")]
fn ran_at() -> f64 {
    qtasks::model::now()
}

/// The slow task of the worker process, as this process runs it: at once.
#[task(name = "app.slow")]
fn slow_here(_ms: u64) -> String {
    "ran here".to_owned()
}

/// Sleeps `ms` (with no time limit of its own).
#[task(name = "app.naps")]
async fn naps(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

/// A queue name of this test's own.
fn queue(what: &str) -> String {
    format!("pycel-{what}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

/// An app serving queue `q` with the tasks `T` on `backend`.
fn app_of<T: qtasks::TaskSet>(q: &str, backend: &CeleryBackend) -> QueueTasks<(T,), (), CeleryBackend> {
    QueueTasks::builder(q).tasks::<T>().queue(Queue::new(q)).backend(backend.clone()).build().unwrap()
}

async fn backend(app: &str) -> CeleryBackend {
    CeleryBackend::connect(&redis_url()).await.expect("connecting to Redis").for_app(app)
}

/// Calls of the Python client, one JSON object each (see the script).
async fn client(default_queue: &str, calls: Value) -> Vec<Value> {
    json_lines(&run("celery_client.py", &[&redis_url(), default_queue, &calls.to_string()], CLIENT).await)
}

/// Removes what a test made: its queues' lists and bindings, the results of `ids`.
async fn cleanup(backend: &CeleryBackend, queues: &[&str], ids: &[Value]) {
    let mut raw = raw_redis().await;
    for q in queues {
        for key in [
            q.to_string(),
            format!("{q}\x06\x163"),
            format!("{q}\x06\x166"),
            format!("{q}\x06\x169"),
            format!("_kombu.binding.{q}"),
            format!("_kombu.binding_permanent.{q}"),
        ] {
            let _: i64 = query(&mut raw, &["DEL", &key]).await;
        }
    }
    for id in ids.iter().filter_map(Value::as_str) {
        let _: i64 = query(&mut raw, &["DEL", &format!("celery-task-meta-{id}")]).await;
    }
    backend.flush().await.unwrap();
}

fn ids(out: &[Value]) -> Vec<Value> {
    out.iter().map(|o| o["id"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn the_celery_client_gets_results_and_exceptions_from_a_rust_worker() {
    let q = queue("e2e");
    let backend = backend(&q).await;
    let app = app_of::<(Add, Fail, RanAt, Flaky)>(&q, &backend);
    let worker = app.worker().queues([q.as_str()]).start().await.unwrap();

    let out = client(
        &q,
        json!([
            {"task": "app.add", "args": [2, 3], "timeout": 30},
            {"task": "app.fail", "args": [2, 3], "timeout": 30},
            {"task": "app.add", "args": [2], "kwargs": {"b": 3}, "priority": 5, "timeout": 30},
            {"task": "app.now", "countdown": 1, "timeout": 30},
            {"task": "app.add", "args": [1, 1], "serializer": "pickle", "timeout": 30},
            {"task": "app.nope", "timeout": 30},
            {"task": "app.add", "args": [1, 1], "expires": -1, "timeout": 30},
            {"task": "app.add", "args": [1, 2, 3], "timeout": 30},
            {"task": "app.flaky", "timeout": 30},
        ]),
    )
    .await;
    assert_eq!(out.len(), 9, "{out:?}");
    assert_eq!((&out[0]["state"], &out[0]["result"]), (&json!("SUCCESS"), &json!(5)), "{}", out[0]);
    assert_eq!(out[1]["state"], "FAILURE", "{}", out[1]);
    assert_eq!(out[1]["error"], json!({"type": "RuntimeError", "module": "builtins", "message": "boom: a=2 b=3"}));
    assert!(out[1]["traceback"].as_str().unwrap().contains("boom: a=2 b=3"), "{}", out[1]);
    assert_eq!(out[2]["result"], 5, "{}", out[2]);
    // The countdown task ran no earlier than its countdown (one clock).
    let ran = out[3]["result"].as_f64().expect("a time");
    assert!(ran >= out[3]["sent_at"].as_f64().unwrap() + 1.0, "{}", out[3]);
    assert_eq!(out[4]["error"]["type"], "ContentDisallowed", "{}", out[4]);
    assert!(out[4]["error"]["message"].as_str().unwrap().contains("application/x-python-serialize"), "{}", out[4]);
    assert_eq!(out[5]["error"]["type"], "NotRegistered", "{}", out[5]);
    assert_eq!(out[6]["state"], "REVOKED", "{}", out[6]);
    assert_eq!(out[7]["error"]["type"], "TypeError", "{}", out[7]);
    // Retried once under the same task id, then failed for good.
    assert_eq!(out[8]["error"]["message"], "attempt 2 failed", "{}", out[8]);

    // Everything is acked: nothing of this test is left unacked. Polled: a
    // retried task's first delivery is acked when its failed attempt's
    // record is written, which may come just after the retry's result.
    let mut raw = raw_redis().await;
    let sent: Vec<String> = ids(&out).iter().map(|id| id.as_str().unwrap().to_owned()).collect();
    let deadline = std::time::Instant::now() + HANG;
    loop {
        let unacked: Vec<String> = query(&mut raw, &["HVALS", "unacked"]).await;
        let left: Vec<&String> = sent.iter().filter(|id| unacked.iter().any(|v| v.contains(id.as_str()))).collect();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left:?} still unacked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The Rust side reads the same results.
    let uuid: Uuid = out[0]["id"].as_str().unwrap().parse().unwrap();
    let record = backend.get(uuid).await.unwrap().unwrap();
    assert_eq!((record.status, record.result), (TaskStatus::Success, Some(json!(5))));
    // `inspect` and the dashboard show them as they show native tasks.
    let inspection = app.inspect().await.unwrap();
    let counts = inspection.tasks.iter().find(|t| t.info.name == "app.add").expect("app.add listed").counts;
    assert_eq!(counts.success, 2, "{inspection}");
    let dashboard = qtasks::web::Dashboard::new().router(&app);
    let listed = get_json(&dashboard, &format!("/api/tasks?id={uuid}")).await;
    assert_eq!((&listed["tasks"][0]["status"], &listed["tasks"][0]["result"]), (&json!("success"), &json!(5)));
    let overview = get_json(&dashboard, "/api/overview").await;
    assert_eq!(overview["tasks"]["app.add"]["success"], 2, "{overview}");

    worker.shutdown().await;
    cleanup(&backend, &[&q], &ids(&out)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn celery_time_limits_stop_a_rust_task() {
    let q = queue("limits");
    let backend = backend(&q).await;
    let app = app_of::<(Naps,)>(&q, &backend);
    let worker = app.worker().queues([q.as_str()]).start().await.unwrap();

    let out = client(
        &q,
        json!([
            {"task": "app.naps", "args": [600000], "time_limit": 0.2, "timeout": 60},
            {"task": "app.naps", "args": [600000], "soft_time_limit": 0.2, "time_limit": 300, "timeout": 60},
            {"task": "app.naps", "args": [10], "time_limit": 300, "timeout": 60},
        ]),
    )
    .await;
    assert_eq!(out.len(), 3, "{out:?}");
    for stopped in &out[..2] {
        assert_eq!(stopped["state"], "FAILURE", "{stopped}");
        assert_eq!(stopped["error"]["type"], "TimeLimitExceeded", "{stopped}");
        assert_eq!(stopped["error"]["module"], "billiard.exceptions", "{stopped}");
        assert!(stopped["error"]["message"].as_str().unwrap().contains("time limit exceeded (0.200 s)"), "{stopped}");
    }
    assert_eq!((&out[2]["state"], &out[2]["result"]), (&json!("SUCCESS"), &json!(10)), "{}", out[2]);

    worker.shutdown().await;
    cleanup(&backend, &[&q], &ids(&out)).await;
}

/// Plugins see a task a Python client sent as they see one sent from Rust:
/// the same worker-side triggers, in the same order, and a result a plugin
/// replaced is what the Python client gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn plugins_fire_on_python_tasks_as_on_native_ones() {
    let q = queue("plugins");
    let backend = backend(&q).await;
    let witness = Witness::default();
    let app = QueueTasks::builder(q.as_str())
        .task::<Add>()
        .plugin(witness.clone())
        .queue(Queue::new(q.as_str()))
        .backend(backend.clone())
        .build()
        .unwrap();
    let worker = app.worker().queues([q.as_str()]).start().await.unwrap();

    let out = client(&q, json!([{"task": "app.add", "args": [2, 3], "timeout": 30}])).await;
    assert_eq!(out[0]["result"], 5 + Witness::BONUS, "{out:?}");
    let native = app.enqueue(Add::call(2, 3)).queue(q.as_str()).await.unwrap();
    let native_uuid = native.uuid();
    assert_eq!(native.result(HANG).await.unwrap(), 5 + Witness::BONUS);
    worker.shutdown().await;

    let from_python = witness.fired(out[0]["id"].as_str().unwrap().parse().unwrap());
    assert_eq!(from_python.last(), Some(&"worker_execute_after"), "{from_python:?}");
    assert_eq!(from_python, witness.fired(native_uuid));
    let mut ids = ids(&out);
    ids.push(json!(native_uuid.to_string()));
    cleanup(&backend, &[&q], &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn a_named_queue_is_consumed_only_by_workers_of_that_queue() {
    let (qa, qb) = (queue("a"), queue("b"));
    let backend = backend(&qa).await;
    let app = QueueTasks::builder(qa.as_str())
        .task::<Add>()
        .queue(Queue::new(qa.as_str()))
        .queue(Queue::new(qb.as_str()))
        .backend(backend.clone())
        .build()
        .unwrap();
    let only_a = app.worker().queues([qa.as_str()]).start().await.unwrap();

    // Sent to qb first, then to qa: once qa's result is back, qb's message
    // is still where it was.
    let out = client(
        &qa,
        json!([
            {"task": "app.add", "args": [1, 1], "queue": qb, "no_wait": true},
            {"task": "app.add", "args": [2, 2], "timeout": 30},
        ]),
    )
    .await;
    assert_eq!(out[1]["result"], 4, "{out:?}");
    let mut raw = raw_redis().await;
    let waiting: i64 = query(&mut raw, &["LLEN", &qb]).await;
    assert_eq!(waiting, 1, "the message on {qb} was taken by a worker of {qa}");

    let of_b = app.worker().queues([qb.as_str()]).start().await.unwrap();
    let uuid: Uuid = out[0]["id"].as_str().unwrap().parse().unwrap();
    let record = backend.wait(uuid, HANG).await.unwrap().expect("the worker of qb ran it");
    assert_eq!(record.result, Some(json!(2)));
    // And the Python client reads it.
    let got = client(&qa, json!([{"get": out[0]["id"], "timeout": 30}])).await;
    assert_eq!(got[0]["result"], 2, "{got:?}");

    only_a.shutdown().await;
    of_b.shutdown().await;
    cleanup(&backend, &[&qa, &qb], &ids(&out)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn malformed_messages_are_dead_lettered_or_failed_and_cost_no_other_task() {
    let q = queue("bad");
    let backend = backend(&q).await;
    let mut raw = raw_redis().await;
    let no_id = json!({"body": "W10=", "content-type": "application/json", "headers": {"task": "app.add"},
                       "properties": {"delivery_tag": format!("tag-{q}"), "body_encoding": "base64"}})
    .to_string();
    let bad_body_id = Uuid::new_v4().to_string();
    let bad_body = json!({"body": "bm90IGpzb24=", "content-type": "application/json", "content-encoding": "utf-8",
                          "headers": {"task": "app.add", "id": bad_body_id},
                          "properties": {"delivery_tag": format!("tag2-{q}"), "body_encoding": "base64"}})
    .to_string();
    for message in ["not json", no_id.as_str(), bad_body.as_str()] {
        let _: i64 = query(&mut raw, &["LPUSH", &q, message]).await;
    }
    let app = app_of::<(Add,)>(&q, &backend);
    let worker = app.worker().queues([q.as_str()]).start().await.unwrap();

    // A good task sent behind them runs.
    let out = client(
        &q,
        json!([{"task": "app.add", "args": [2, 3], "timeout": 30},
                               {"get": bad_body_id, "timeout": 30}]),
    )
    .await;
    assert_eq!(out[0]["result"], 5, "{out:?}");
    assert_eq!(out[1]["state"], "FAILURE", "{out:?}");
    assert!(out[1]["error"]["message"].as_str().unwrap().contains("the body is not JSON"), "{out:?}");
    let dead = support::dead_letters(&mut raw, &format!("qtasks:{q}:celery:")).await;
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().any(|r| r.contains("not a kombu message")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("no headers.id")), "{reasons:?}");
    let unacked: Vec<String> = query(&mut raw, &["HKEYS", "unacked"]).await;
    assert!(!unacked.iter().any(|t| t.ends_with(&q)), "a malformed message stayed unacked: {unacked:?}");

    worker.shutdown().await;
    cleanup(&backend, &[&q], &[out[0]["id"].clone(), json!(bad_body_id)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn the_task_of_a_killed_rust_worker_comes_back() {
    let q = queue("kill");
    let backend = backend(&q).await.visibility_timeout(Duration::from_millis(1000));
    let url = redis_url();
    let mut first = Proc::spawn_bin(
        env!("CARGO_BIN_EXE_qtasks-py-worker"),
        "first",
        &["celery", "--app", &q, "--url", &url, "--queues", &q, "--visibility-ms", "1000"],
    );
    first.expect("READY", HANG).await;

    let sent = client(&q, json!([{"task": "app.slow", "args": [600000], "no_wait": true}])).await;
    let id = sent[0]["id"].as_str().unwrap().to_owned();
    // Once the first worker holds it (unacked), kill it.
    let mut raw = raw_redis().await;
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let unacked: Vec<String> = query(&mut raw, &["HVALS", "unacked"]).await;
        if unacked.iter().any(|v| v.contains(&id)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the first worker never took the task:\n{}", first.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.sigkill();

    // A worker of this process restores it after the visibility timeout and runs it.
    let app = app_of::<(SlowHere,)>(&q, &backend);
    let worker = app.worker().queues([q.as_str()]).start().await.unwrap();
    let got = client(&q, json!([{"get": id, "timeout": 90}])).await;
    assert_eq!(got[0]["result"], "ran here", "{got:?}");

    worker.shutdown().await;
    cleanup(&backend, &[&q], &[json!(id)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn a_rust_worker_restores_the_tasks_of_a_sigkilled_python_celery_worker() {
    let q = queue("mixed");
    let url = redis_url();
    let python = python::python();
    let workdir = python::script("");
    let mut celery = Proc::spawn_env(
        python.to_str().unwrap(),
        "python celery worker",
        &[
            "-m",
            "celery",
            "--workdir",
            workdir.to_str().unwrap(),
            "-A",
            "celery_worker_app",
            "worker",
            "-Q",
            &q,
            "--pool",
            "solo",
            "-c",
            "1",
            "-n",
            &format!("{q}@%h"),
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-l",
            "info",
        ],
        &[("QTASKS_REDIS_URL", url.as_str()), ("QTASKS_VISIBILITY_S", "2")],
    );
    let started = tokio::time::Instant::now();
    while !celery.logged(&["ready."]) {
        assert!(started.elapsed() < HANG, "the Python worker did not start:\n{}", celery.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let calls: Vec<Value> = (0..12).map(|_| json!({"task": "app.slow", "args": [300], "no_wait": true})).collect();
    let sent = client(&q, Value::Array(calls)).await;
    let ids: Vec<String> = sent.iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();

    // Kill the Python worker while it holds one of these tasks, unfinished,
    // after it finished two.
    let mut raw = raw_redis().await;
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let mut done = 0;
        for id in &ids {
            let exists: i64 = query(&mut raw, &["EXISTS", &format!("celery-task-meta-{id}")]).await;
            done += exists;
        }
        let unacked: Vec<String> = query(&mut raw, &["HVALS", "unacked"]).await;
        let mut held_unfinished = false;
        for id in ids.iter().filter(|id| unacked.iter().any(|v| v.contains(id.as_str()))) {
            let exists: i64 = query(&mut raw, &["EXISTS", &format!("celery-task-meta-{id}")]).await;
            held_unfinished |= exists == 0;
        }
        if done >= 2 && held_unfinished {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the Python worker ran nothing:\n{}", celery.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    celery.sigkill();

    // A Rust worker takes over: what the Python worker held comes back
    // after the visibility timeout, and every task ends.
    let backend = backend(&q).await.visibility_timeout(Duration::from_secs(2));
    let app = app_of::<(SlowHere,)>(&q, &backend);
    let worker = app.worker().queues([q.as_str()]).start().await.unwrap();
    let gets: Vec<Value> = ids.iter().map(|id| json!({"get": id, "timeout": 90})).collect();
    let got = client(&q, Value::Array(gets)).await;
    assert_eq!(got.len(), ids.len());
    for g in &got {
        assert_eq!(g["state"], "SUCCESS", "{g}");
        assert!(g["result"] == "slow" || g["result"] == "ran here", "{g}");
    }
    // Some ran on each side.
    assert!(got.iter().any(|g| g["result"] == "slow") && got.iter().any(|g| g["result"] == "ran here"), "{got:?}");

    worker.shutdown().await;
    let ids: Vec<Value> = ids.into_iter().map(Value::from).collect();
    cleanup(&backend, &[&q], &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
#[cfg_attr(python_env_missing, ignore = "the Python virtualenv is missing; see the build warning")]
async fn a_cancelled_queued_task_is_revoked_for_the_client_and_never_runs() {
    let q = queue("cancel");
    let backend = backend(&q).await;
    let sent = client(
        &q,
        json!([{"task": "app.fail", "args": [1, 2], "no_wait": true}, {"task": "app.add", "args": [1, 2], "no_wait": true}]),
    )
    .await;
    let uuid: Uuid = sent[0]["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(backend.cancel(uuid, "not needed").await.unwrap(), qtasks::backend::CancelOutcome::Cancelled);

    let app = app_of::<(Add, Fail)>(&q, &backend);
    let worker = app.worker().queues([q.as_str()]).start().await.unwrap();
    let got = client(&q, json!([{"get": sent[0]["id"], "timeout": 30}, {"get": sent[1]["id"], "timeout": 30}])).await;
    assert_eq!(got[0]["state"], "REVOKED", "{got:?}");
    assert_eq!(got[0]["error"]["type"], "TaskRevokedError", "{got:?}");
    assert_eq!(got[1]["result"], 3, "{got:?}");
    // The revoked message was taken (after the one behind it was run, or
    // before) and acked without running: `fail` never stored a FAILURE.
    let stats = backend.stats().await.unwrap();
    assert!(!stats.tasks.contains_key("app.fail"), "{stats:?}");
    let mut raw = raw_redis().await;
    let left: i64 = query(&mut raw, &["LLEN", &q]).await;
    assert_eq!(left, 0);

    worker.shutdown().await;
    cleanup(&backend, &[&q], &ids(&sent)).await;
}

/// Shared settings (the plugin switches every worker reads at each
/// heartbeat) on this backend's keys: read through each group's index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn settings_are_kept_per_group() {
    let backend = backend(&queue("settings")).await;
    support::check_settings(&backend).await;
}
