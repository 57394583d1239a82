//! The Redis backend under faults, against a real server
//! (`QTASKS_REDIS_URL`, or redis://127.0.0.1:6379): bad entries and corrupt
//! records written straight into the app's keys (as `redis-cli` would),
//! connections killed under a waiting client, a worker process SIGKILLed
//! while it holds tasks, a worker whose lease was taken back, and
//! `release`/`claim`. Without a reachable server the tests are ignored
//! (see `tests/build.rs`), except under CI (`CI` set), where they fail.
//!
//! Each test uses an app name of its own and deletes its keys at the end;
//! the test that kills connections kills only its own (those of a Redis
//! user it creates, [`support::TestUser`]).

mod support;

use qtasks::{
    Backend, NewTask, Provider, QueueTasks, RedisBackend, TaskMessage, TaskRecord, TaskStatus, Uuid, json, task,
};
use redis::aio::MultiplexedConnection;
use std::time::{Duration, Instant};
use support::procs::{Proc, delete_runs, run_keys, runs};
use support::{HANG, query};

#[task]
async fn square(n: i64) -> i64 {
    n * n
}

/// A backend for a fresh app, or `None` (test skipped) without a server.
async fn connect(test: &str) -> Option<RedisBackend> {
    support::connect_redis(test, &format!("qtasks-faults-{test}-{}", Uuid::new_v4())).await
}

/// Another backend (connections, holder and runs of its own) for the app
/// of `backend`: another worker process, as far as the server can tell.
async fn another(backend: &RedisBackend) -> RedisBackend {
    RedisBackend::connect(&support::redis_url()).await.unwrap().for_app(backend.app_name())
}

/// An app running `square` on `backend`.
fn app(backend: &RedisBackend) -> QueueTasks<impl qtasks::TaskSet, (), RedisBackend> {
    QueueTasks::builder(backend.app_name().to_owned()).task::<Square>().backend(backend.clone()).build().unwrap()
}

fn square_task(n: i64) -> TaskRecord {
    TaskRecord::new(Uuid::new_v4(), NewTask { priority: 0, ..NewTask::new("square".to_owned(), json!([n])) })
}

fn named(name: &str) -> TaskRecord {
    TaskRecord::new(Uuid::new_v4(), NewTask { priority: 0, ..NewTask::new(name.to_owned(), json!([])) })
}

/// Fetches at most `max` tasks, or none if nothing comes within `within`.
async fn fetch_within(backend: &RedisBackend, max: usize, within: Duration) -> Vec<TaskMessage> {
    let mut out = Vec::new();
    if let Ok(result) =
        tokio::time::timeout(within, backend.fetch(&qtasks::backend::Fetch::default_queue(), max, &mut out)).await
    {
        result.unwrap();
    }
    out
}

/// The app's dead letters, decoded.
async fn dead_letters(conn: &mut MultiplexedConnection, backend: &RedisBackend) -> Vec<serde_json::Value> {
    support::dead_letters(conn, backend.key_prefix()).await
}

/// The dead letter of task `uuid`; fails unless there is exactly one.
fn letter_of(letters: &[serde_json::Value], uuid: Uuid) -> &serde_json::Value {
    let of: Vec<_> = letters.iter().filter(|l| l["uuid"] == uuid.to_string()).collect();
    assert_eq!(of.len(), 1, "dead letters of {uuid}: {letters:#?}");
    of[0]
}

fn record_key(backend: &RedisBackend, uuid: Uuid) -> String {
    format!("{}task:{uuid}", backend.key_prefix())
}

// ---------------------------------------------------------------------------
// 1. A record key of the wrong type (or missing) costs no other task
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_record_key_of_the_wrong_type_costs_no_other_task() {
    let Some(backend) = connect("wrong-type").await else { return };
    let mut conn = support::raw_redis().await;
    // Queued in this order: good ones between the bad ones, so one fetch
    // pops good and bad entries together.
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for n in 0..12 {
        let task = square_task(n);
        backend.enqueue(&task).await.unwrap();
        match n % 4 {
            1 => bad.push((task.uuid, "string")),
            3 => bad.push((task.uuid, "missing")),
            _ => good.push((n, task.uuid)),
        }
    }
    // What an operator's `redis-cli` could do to a record key.
    for (uuid, how) in &bad {
        let key = record_key(&backend, *uuid);
        let _: i64 = query(&mut conn, &["DEL", &key]).await;
        if *how == "string" {
            let () = query(&mut conn, &["SET", &key, "not a task record"]).await;
        }
    }

    let app = app(&backend);
    let worker = app.worker().max_tasks_process(8).start().await.unwrap();
    for (n, uuid) in &good {
        let done = app.wait(*uuid, HANG).await.unwrap_or_else(|e| panic!("good task square({n}): {e}"));
        assert_eq!((done.status, done.result), (TaskStatus::Success, Some(json!(n * n))), "square({n})");
    }
    let letters = dead_letters(&mut conn, &backend).await;
    for (uuid, how) in &bad {
        let letter = letter_of(&letters, *uuid);
        let reason = letter["reason"].as_str().unwrap();
        match *how {
            "string" => assert!(reason.contains("string") && reason.contains("not a task record"), "{letter}"),
            _ => assert!(reason.contains("no record"), "{letter}"),
        }
        assert!(letter["entry"].as_str().is_some_and(|e| e.ends_with(&uuid.to_string())), "{letter}");
    }
    assert_eq!(letters.len(), bad.len(), "{letters:#?}");
    // The string is left as it is.
    let kept: String = query(&mut conn, &["GET", &record_key(&backend, bad[0].0)]).await;
    assert_eq!(kept, "not a task record");

    // A task held when its record key is overwritten: once its lease is
    // taken back, the fetch that finds it files it and goes on.
    worker.shutdown().await;
    let short = backend.clone().lease(Duration::from_millis(300));
    let held = square_task(100);
    short.enqueue(&held).await.unwrap();
    assert_eq!(fetch_within(&short, 1, HANG).await[0].uuid, held.uuid);
    let key = record_key(&backend, held.uuid);
    let _: i64 = query(&mut conn, &["DEL", &key]).await;
    let _: i64 = query(&mut conn, &["RPUSH", &key, "a", "list"]).await;
    let after = square_task(101);
    short.enqueue(&after).await.unwrap();
    // Fetched once the lease expired (the wrong-type task was requeued then,
    // and filed when popped); both in one call or the next.
    let mut fetched = Vec::new();
    let started = Instant::now();
    while !fetched.iter().any(|m: &TaskMessage| m.uuid == after.uuid) {
        assert!(started.elapsed() < HANG, "the task after the bad one was never fetched");
        fetched.extend(fetch_within(&short, 10, HANG).await);
    }
    assert!(fetched.iter().all(|m| m.uuid == after.uuid), "{fetched:?}");
    let started = Instant::now();
    loop {
        let letters = dead_letters(&mut conn, &backend).await;
        if letters.iter().any(|l| l["uuid"] == held.uuid.to_string()) {
            assert!(letter_of(&letters, held.uuid)["reason"].as_str().unwrap().contains("list"));
            break;
        }
        assert!(started.elapsed() < HANG, "the held task with a list for a record was never filed");
        fetch_within(&short, 10, Duration::from_millis(200)).await;
    }

    // Overwritten while it runs: its end goes to the dead letters, with the
    // result, and it is released.
    let running = square_task(102);
    backend.enqueue(&running).await.unwrap();
    let taken = fetch_within(&backend, 1, HANG).await;
    assert_eq!(taken[0].uuid, running.uuid);
    let running_key = record_key(&backend, running.uuid);
    let () = query(&mut conn, &["SET", &running_key, "overwritten"]).await;
    let mut ended = TaskRecord::from_message(&taken[0], TaskStatus::Success);
    ended.result = Some(json!(102 * 102));
    backend.finish(&ended).await.unwrap();
    let letters = dead_letters(&mut conn, &backend).await;
    let letter = letter_of(&letters, running.uuid);
    assert!(letter["reason"].as_str().unwrap().contains("string"), "{letter}");
    let stored: TaskRecord = serde_json::from_str(letter["record"].as_str().unwrap()).unwrap();
    assert_eq!(stored.result, Some(json!(102 * 102)));
    let inflight: Option<f64> =
        query(&mut conn, &["ZSCORE", &format!("{}inflight", backend.key_prefix()), &running.uuid.to_string()]).await;
    assert_eq!(inflight, None, "the task is still in flight");
    backend.flush().await.unwrap();
}

// ---------------------------------------------------------------------------
// 2. Corrupt records end `error`, with expiry, and wake their waiters
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn corrupt_records_end_error_and_wake_their_waiters() {
    let Some(backend) = connect("corrupt").await else { return };
    let backend = backend.retention(Some(Duration::from_secs(600)));
    let mut conn = support::raw_redis().await;
    let queue = format!("{}queue", backend.key_prefix());
    let kinds = ["invalid json", "another uuid", "no data", "bad priority"];
    let mut corrupt = Vec::new();
    let mut good = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let before = square_task(i as i64);
        backend.enqueue(&before).await.unwrap();
        good.push(before);
        let task = square_task(10 + i as i64);
        backend.enqueue(&task).await.unwrap();
        let key = record_key(&backend, task.uuid);
        match *kind {
            "invalid json" => {
                let _: i64 = query(&mut conn, &["HSET", &key, "data", "{\"uuid\": not json"]).await;
            }
            "another uuid" => {
                let other = serde_json::to_string(&square_task(99)).unwrap();
                let _: i64 = query(&mut conn, &["HSET", &key, "data", &other]).await;
            }
            "no data" => {
                let _: i64 = query(&mut conn, &["HDEL", &key, "data"]).await;
            }
            _ => {
                let entry: String = query(&mut conn, &["HGET", &key, "entry"]).await;
                let broken = format!("zz{}", &entry[2..]);
                let _: i64 = query(&mut conn, &["ZREM", &queue, &entry]).await;
                let _: i64 = query(&mut conn, &["ZADD", &queue, "0", &broken]).await;
                let _: i64 = query(&mut conn, &["HSET", &key, "entry", &broken]).await;
            }
        }
        corrupt.push((*kind, task.uuid));
    }
    let after = square_task(50);
    backend.enqueue(&after).await.unwrap();
    good.push(after);

    // Waiters first: they must be woken by the end, not time out.
    let app = app(&backend);
    let waiters: Vec<_> = corrupt
        .iter()
        .map(|(kind, uuid)| {
            let (app, kind, uuid) = (app.clone(), *kind, *uuid);
            tokio::spawn(async move { (kind, uuid, app.wait(uuid, HANG).await) })
        })
        .collect();
    support::until_subscribed(&format!("{}done", backend.key_prefix()), 1).await;
    let worker = app.worker().max_tasks_process(4).start().await.unwrap();

    for task in &good {
        let done = app.wait(task.uuid, HANG).await.unwrap();
        assert_eq!(done.status, TaskStatus::Success, "{done:?}");
    }
    let letters = dead_letters(&mut conn, &backend).await;
    for waiter in waiters {
        let (kind, uuid, waited) = waiter.await.unwrap();
        let record = waited.unwrap_or_else(|e| panic!("the waiter of the {kind:?} record: {e}"));
        assert_eq!((record.uuid, record.status), (uuid, TaskStatus::Error), "{kind}: {record:?}");
        let error = record.error.clone().unwrap_or_default();
        let expected = match kind {
            "invalid json" => "undecodable record",
            "another uuid" => "holds task",
            "no data" => "no data field",
            _ => "bad priority prefix",
        };
        assert!(error.contains(expected), "{kind}: error {error:?} lacks {expected:?}");
        assert_eq!(app.get(uuid).await.unwrap().as_ref(), Some(&record), "{kind}: get and wait disagree");
        let ttl: i64 = query(&mut conn, &["PTTL", &record_key(&backend, uuid)]).await;
        assert!(0 < ttl && ttl <= 600_000, "{kind}: the record's ttl is {ttl}");
        let letter = letter_of(&letters, uuid);
        assert!(letter["reason"].as_str().unwrap().contains(expected), "{kind}: {letter}");
        if kind != "no data" {
            assert!(letter["record"].is_string(), "{kind}: the stored record is kept in {letter}");
        }
    }
    assert_eq!(letters.len(), corrupt.len(), "{letters:#?}");
    worker.shutdown().await;
    let prefix = backend.key_prefix().to_owned();
    for (cmd, name) in [("ZCARD", "inflight"), ("HLEN", "held"), ("ZCARD", "queue")] {
        assert_eq!(query::<i64>(&mut conn, &[cmd, &format!("{prefix}{name}")]).await, 0, "{name}");
    }
    backend.flush().await.unwrap();
}

// ---------------------------------------------------------------------------
// 3. `wait` and `get` ride over reconnects
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn wait_and_get_ride_over_killed_connections() {
    let Some(worker_side) = connect("reconnect").await else { return };
    let user = support::TestUser::create().await;
    let client = RedisBackend::connect(user.url()).await.unwrap().for_app(worker_side.app_name());
    let app = app(&client);
    let done_channel = format!("{}done", client.key_prefix());

    for kill_pubsub in [false, true] {
        let task = app.add_task("square", [7]).await.unwrap().uuid();
        // The worker's side (another user: never killed) takes the task.
        let taken = fetch_within(&worker_side, 1, HANG).await;
        assert_eq!(taken[0].uuid, task);
        // A client reads the record and waits for it to end.
        assert_eq!(app.get(task).await.unwrap().unwrap().status, TaskStatus::Process);
        let waiter = tokio::spawn({
            let app = app.clone();
            async move { app.wait(task, HANG).await }
        });
        support::until_subscribed(&done_channel, 1).await;
        // Its connections die under it…
        assert!(user.kill("normal").await >= 1, "the client's connection was not found");
        if kill_pubsub {
            assert!(user.kill("pubsub").await >= 1, "the client's subscription was not found");
        }
        // …and the task ends meanwhile.
        let mut done = TaskRecord::from_message(&taken[0], TaskStatus::Success);
        done.result = Some(json!(49));
        worker_side.finish(&done).await.unwrap();
        let waited = waiter.await.unwrap().unwrap_or_else(|e| panic!("wait (pub/sub killed: {kill_pubsub}): {e}"));
        assert_eq!((waited.status, waited.result), (TaskStatus::Success, Some(json!(49))));

        // A one-off `get` right after a kill.
        assert!(user.kill("normal").await >= 1);
        let got = app.get(task).await.unwrap_or_else(|e| panic!("get after a kill: {e}"));
        assert_eq!(got.map(|t| t.status), Some(TaskStatus::Success));
    }
    worker_side.flush().await.unwrap();
}

/// A worker started just after its connection was killed (a network blip
/// at start) starts: its first registration rides over the drop. Found by
/// the fault suite, where such a worker exited with `broken pipe`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_worker_starts_over_a_killed_connection() {
    let Some(admin) = connect("start-after-kill").await else { return };
    let user = support::TestUser::create().await;
    let backend = RedisBackend::connect(user.url()).await.unwrap().for_app(admin.app_name());
    let app = app(&backend);
    assert!(user.kill("normal").await >= 1, "the worker's connection was not found");
    let worker = app.worker().start().await.unwrap_or_else(|e| panic!("start after a killed connection: {e}"));
    let task = app.add_task("square", [6]).await.unwrap();
    let record = task.record(HANG).await.unwrap();
    assert_eq!((record.status, record.result), (TaskStatus::Success, Some(json!(36))));
    worker.shutdown().await;
    admin.flush().await.unwrap();
}

// ---------------------------------------------------------------------------
// 4. A SIGKILLed worker's tasks run elsewhere within seconds
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_sigkilled_workers_tasks_run_elsewhere_long_before_its_lease_expires() {
    const TASKS: i64 = 8;
    // Far longer than the recovery this checks (the holder's liveness, 5 s)
    // and than the test's hang guard: a task done at all was taken back
    // because its holder died, not because its lease ran out.
    const LEASE: Duration = Duration::from_secs(3600);
    let Some(backend) = connect("sigkill").await else { return };
    let name = backend.app_name().to_owned();
    let url = support::redis_url();
    let app = app(&backend);
    let mut conn = support::raw_redis().await;
    let [runs_key, ..] = run_keys(&name);

    let mut uuids = Vec::new();
    for n in 0..TASKS {
        uuids.push(app.add_task("square", [n]).await.unwrap().uuid());
    }
    let worker = |label: &str, task: Duration| Proc::worker(label, &name, &url, 16, LEASE, task);
    // Worker A takes every task, and its runs never end.
    let mut doomed = worker("worker A (SIGKILLed)", Duration::from_secs(3600));
    doomed.expect("READY", HANG).await;
    let started = Instant::now();
    loop {
        let ran: i64 = query(&mut conn, &["HLEN", &runs_key]).await;
        if ran == TASKS {
            break;
        }
        assert!(started.elapsed() < HANG, "worker A started {ran} of {TASKS} tasks:\n{}", doomed.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Worker B is up, idle: everything is held by A.
    let mut survivor = worker("worker B", Duration::ZERO);
    survivor.expect("READY", HANG).await;

    doomed.sigkill();
    let killed = Instant::now();
    // Recovered long before the lease would have let the tasks go.
    for (n, uuid) in uuids.iter().enumerate() {
        let done = app.wait(*uuid, HANG).await.unwrap_or_else(|e| {
            panic!(
                "square({n}) not done {:?} after the SIGKILL (lease {LEASE:?}): {e}\nworker B:\n{}",
                killed.elapsed(),
                survivor.log()
            )
        });
        assert_eq!((done.status, done.result), (TaskStatus::Success, Some(json!(n * n))), "square({n})");
    }
    let recovered = killed.elapsed();
    eprintln!("every task of the SIGKILLed worker done {recovered:.2?} after the kill (lease {LEASE:?})");

    // None lost, each ran once in A and once in B, counted as a duplicate.
    let (runs, by_worker) = runs(&mut conn, &name).await;
    assert_eq!(runs, (0..TASKS).map(|n| (n, 2)).collect(), "runs per task");
    assert_eq!(by_worker.get(&survivor.pid()), Some(&TASKS), "{by_worker:?}");
    let stats = backend.stats().await.unwrap();
    assert_eq!(stats.tasks["square"].duplicates, TASKS as u64, "{stats:?}");
    assert_eq!(stats.tasks["square"].success, TASKS as u64, "{stats:?}");
    assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");

    drop(survivor);
    backend.flush().await.unwrap();
    delete_runs(&mut conn, &name).await;
}

// ---------------------------------------------------------------------------
// 4 and 5. Fencing: a run whose lease was taken back; duplicates counted
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_run_whose_lease_was_taken_back_is_fenced_and_counted() {
    let Some(backend) = connect("fencing").await else { return };
    // Alive all along (its holder renews its liveness), but it never renews
    // this lease: like a process stalled longer than its lease.
    let slow = backend.clone().lease(Duration::from_millis(500));
    let other = another(&backend).await;

    let task = named("fenced");
    slow.enqueue(&task).await.unwrap();
    let first = fetch_within(&slow, 1, HANG).await;
    assert_eq!(first[0].uuid, task.uuid);
    assert!(slow.extend_lease(task.uuid).await.unwrap(), "a held lease was not renewed");
    // Another worker gets it once the lease expired: a second run.
    let second = fetch_within(&other, 1, HANG).await;
    assert_eq!(second[0].uuid, task.uuid);
    assert!(!slow.extend_lease(task.uuid).await.unwrap(), "the first run still renews a lease taken back");
    assert!(other.extend_lease(task.uuid).await.unwrap(), "the second run cannot renew its lease");
    // The first run's `process` write does not touch the second run's record.
    let mut late = TaskRecord::from_message(&first[0], TaskStatus::Process);
    late.extra.insert("late".to_owned(), json!(true));
    slow.update(&late).await.unwrap();
    assert!(!other.get(task.uuid).await.unwrap().unwrap().extra.contains_key("late"));

    let mut ok = TaskRecord::from_message(&second[0], TaskStatus::Success);
    ok.result = Some(json!("second run"));
    other.finish(&ok).await.unwrap();
    // The first run ends late: its end does not replace the second's.
    let mut stale = TaskRecord::from_message(&first[0], TaskStatus::Error);
    stale.error = Some("first run".to_owned());
    slow.finish(&stale).await.unwrap();
    let stored = backend.get(task.uuid).await.unwrap().unwrap();
    assert_eq!((stored.status, &stored.result), (TaskStatus::Success, &Some(json!("second run"))), "{stored:?}");

    // A run whose lease expired but whose task was not taken again yet
    // still ends it, and it never runs again.
    let requeued = named("requeued");
    slow.enqueue(&requeued).await.unwrap();
    let mut taken = fetch_within(&slow, 1, HANG).await;
    assert_eq!(taken[0].uuid, requeued.uuid);
    let inflight = format!("{}inflight", backend.key_prefix());
    let mut conn = support::raw_redis().await;
    // A fetch after the lease expired puts it back in the queue; an urgent
    // task ahead of it is what that fetch takes.
    let mut urgent = named("urgent");
    urgent.priority = -1;
    let started = Instant::now();
    loop {
        let deadline: Option<f64> = query(&mut conn, &["ZSCORE", &inflight, &requeued.uuid.to_string()]).await;
        let (secs, micros): (i64, i64) = query(&mut conn, &["TIME"]).await;
        if deadline.is_some_and(|d| d < (secs * 1000 + micros / 1000) as f64) {
            break;
        }
        assert!(started.elapsed() < HANG, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    other.enqueue(&urgent).await.unwrap();
    assert_eq!(fetch_within(&other, 1, HANG).await[0].uuid, urgent.uuid);
    assert_eq!(backend.stats().await.unwrap().queued, 1, "the expired task is queued again");
    slow.finish(&TaskRecord::from_message(&taken.remove(0), TaskStatus::Success)).await.unwrap();
    assert_eq!(backend.stats().await.unwrap().queued, 0, "the requeued copy of the finished task is gone");
    assert!(fetch_within(&other, 1, Duration::from_millis(300)).await.is_empty());

    // Counted: one duplicate run of `fenced`; `requeued` and `urgent` ran once.
    other.finish(&TaskRecord::from_message(&urgent.message(), TaskStatus::Success)).await.unwrap();
    let stats = backend.stats().await.unwrap();
    let counts = |name: &str| stats.tasks.get(name).copied().unwrap_or_default();
    assert_eq!((counts("fenced").success, counts("fenced").error, counts("fenced").duplicates), (1, 0, 1));
    assert_eq!((counts("requeued").success, counts("requeued").duplicates), (1, 0));
    assert_eq!((counts("urgent").success, counts("urgent").duplicates), (1, 0));
    assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn duplicates_count_runs_after_a_lease_was_taken_back_not_normal_runs() {
    let Some(backend) = connect("duplicates").await else { return };
    let app = app(&backend);
    let worker = app.worker().start().await.unwrap();
    // A normal run.
    let normal = app.add_task("square", [3]).await.unwrap().uuid();
    assert_eq!(app.wait(normal, HANG).await.unwrap().status, TaskStatus::Success);
    worker.shutdown().await;
    assert_eq!(backend.stats().await.unwrap().tasks["square"].duplicates, 0);

    // A run after the first one's lease was taken back.
    let dead = another(&backend).await.lease(Duration::from_millis(300));
    let task = square_task(4);
    backend.enqueue(&task).await.unwrap();
    assert_eq!(fetch_within(&dead, 1, HANG).await[0].uuid, task.uuid);
    let worker = app.worker().start().await.unwrap();
    assert_eq!(app.wait(task.uuid, HANG).await.unwrap().result, Some(json!(16)));
    worker.shutdown().await;
    let counts = backend.stats().await.unwrap().tasks["square"];
    assert_eq!((counts.success, counts.duplicates), (2, 1), "{counts:?}");
    // `inspect stats` says so.
    let inspection = app.inspect().await.unwrap().to_string();
    assert!(inspection.contains("2 success, 0 error, 0 retry, 0 cancel, 1 duplicated"), "{inspection}");
    backend.flush().await.unwrap();
}

/// How many times each `held_long` task ran.
static HELD_RUNS: std::sync::Mutex<Vec<Uuid>> = std::sync::Mutex::new(Vec::new());

/// How long each slow step around the body takes: longer than the lease.
const SLOW_STEP: Duration = Duration::from_millis(500);

/// A per-task value whose close is slow.
struct SlowToClose;

/// A task held long outside its body: slow handlers before and after it
/// (one async, one on the blocking pool) and a slow dependency close.
#[task]
async fn held_long(ctx: qtasks::TaskContext, _value: qtasks::Dep<SlowToClose>) -> i64 {
    HELD_RUNS.lock().unwrap().push(ctx.uuid());
    7
}

#[derive(Clone)]
struct SlowHandlers;

#[qtasks::plugin]
impl SlowHandlers {
    async fn task_executor_before_execute(&self, _ctx: &qtasks::triggers::TaskExecutorBeforeExecute<'_>) {
        tokio::time::sleep(SLOW_STEP).await;
    }

    #[blocking]
    fn task_executor_after_execute(&self, _ctx: &qtasks::triggers::TaskExecutorAfterExecute<'_>) {
        std::thread::sleep(SLOW_STEP);
    }
}

/// The lease covers the whole time a worker holds a task, not only its
/// body: with a lease of 200 ms and 1.5 s of handlers and dependency close
/// around a fast body, two workers of the app (separate holders) run each
/// task once and count no duplicate. Without renewal outside the body, the
/// other worker would take each task back after 200 ms and run it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn the_lease_covers_plugins_and_dependency_close_not_only_the_body() {
    let Some(backend) = connect("held-long").await else { return };
    let lease = Duration::from_millis(200);
    let apps = [backend.clone().lease(lease), another(&backend).await.lease(lease)].map(|b| {
        let close = Provider::per_task(|| Ok(SlowToClose)).on_close(|_: SlowToClose| tokio::time::sleep(SLOW_STEP));
        QueueTasks::builder(b.app_name().to_owned())
            .task::<HeldLong>()
            .plugin(SlowHandlers)
            .provide(close)
            .backend(b)
            .build()
            .unwrap()
    });
    let mut workers = Vec::new();
    for app in &apps {
        workers.push(app.worker().start().await.unwrap());
    }
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(apps[0].enqueue(HeldLong::call()).await.unwrap().uuid());
    }
    for id in &ids {
        let record = apps[0].wait(*id, HANG).await.unwrap();
        assert_eq!((record.status, record.result), (TaskStatus::Success, Some(json!(7))), "{id}");
    }
    for worker in workers {
        worker.shutdown().await;
    }
    let runs = HELD_RUNS.lock().unwrap().clone();
    for id in &ids {
        assert_eq!(runs.iter().filter(|r| *r == id).count(), 1, "runs of {id}: {runs:?}");
    }
    assert_eq!(backend.stats().await.unwrap().tasks["held_long"].duplicates, 0);
    backend.flush().await.unwrap();
}

// ---------------------------------------------------------------------------
// 6. `release` and `claim`
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn release_puts_back_only_a_task_this_backend_holds_as_new() {
    let Some(backend) = connect("release").await else { return };
    let other = another(&backend).await;
    let mut conn = support::raw_redis().await;
    let prefix = backend.key_prefix().to_owned();
    let task = square_task(5);
    let later = square_task(6);
    backend.enqueue(&task).await.unwrap();
    backend.enqueue(&later).await.unwrap();
    let taken = fetch_within(&backend, 1, HANG).await;
    assert_eq!(taken[0].uuid, task.uuid);
    // Another backend does not hold it: it cannot release it.
    assert!(!other.release(task.uuid).await.unwrap(), "released a task held by another backend");
    assert_eq!(backend.get(task.uuid).await.unwrap().unwrap().status, TaskStatus::Process);
    let key = record_key(&backend, task.uuid);
    assert!(query::<Option<String>>(&mut conn, &["HGET", &key, "holder"]).await.is_some());

    // A plugin rewrote the running task's record: released, it is `new`.
    let mut running = TaskRecord::from_message(&taken[0], TaskStatus::Process);
    running.extra.insert("note".to_owned(), json!("kept"));
    backend.update(&running).await.unwrap();
    assert!(backend.release(task.uuid).await.unwrap());
    let record = backend.get(task.uuid).await.unwrap().unwrap();
    assert_eq!((record.status, record.attempt), (TaskStatus::New, 1), "{record:?}");
    assert_eq!(record.extra.get("note"), Some(&json!("kept")));
    let id = task.uuid.to_string();
    assert_eq!(query::<Option<String>>(&mut conn, &["HGET", &key, "holder"]).await, None, "holder kept");
    assert_eq!(query::<Option<f64>>(&mut conn, &["ZSCORE", &format!("{prefix}inflight"), &id]).await, None);
    assert_eq!(query::<Option<String>>(&mut conn, &["HGET", &format!("{prefix}held"), &id]).await, None);
    assert!(!backend.release(task.uuid).await.unwrap(), "released twice");

    // Back at its old place, ahead of the task queued after it.
    let again = fetch_within(&other, 1, HANG).await;
    assert_eq!(again.iter().map(|m| m.uuid).collect::<Vec<_>>(), [task.uuid]);
    let next = fetch_within(&other, 1, HANG).await;
    assert_eq!(next.iter().map(|m| m.uuid).collect::<Vec<_>>(), [later.uuid]);

    // A fetcher waiting on the empty queue is woken by a release.
    let waiting = tokio::spawn({
        let backend = backend.clone();
        async move { fetch_within(&backend, 1, HANG).await }
    });
    assert!(other.release(later.uuid).await.unwrap());
    let woken = waiting.await.unwrap();
    assert_eq!(woken.iter().map(|m| m.uuid).collect::<Vec<_>>(), [later.uuid]);

    for (holder, message) in [(&other, &again[0]), (&backend, &woken[0])] {
        holder.finish(&TaskRecord::from_message(message, TaskStatus::Success)).await.unwrap();
        assert!(!holder.release(message.uuid).await.unwrap(), "released a finished task");
    }
    let counts = backend.stats().await.unwrap().tasks["square"];
    // Each ran again after a release: the released run may have done part of the work.
    assert_eq!((counts.success, counts.duplicates), (2, 2), "{counts:?}");
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn claims_live_under_the_app_and_go_with_its_flush() {
    let Some(backend) = connect("claim").await else { return };
    let mut conn = support::raw_redis().await;
    let neighbour = backend.for_app(&format!("{}:claim", backend.app_name()));
    let key = "schedule:nightly:2024-01-01T00:00";
    assert!(backend.claim(key, Duration::from_secs(60)).await.unwrap());
    assert!(!backend.claim(key, Duration::from_secs(60)).await.unwrap());
    // An app whose name makes its keys start like this app's claims.
    assert!(neighbour.claim(key, Duration::from_secs(60)).await.unwrap());

    backend.flush().await.unwrap();
    assert!(backend.claim(key, Duration::from_secs(60)).await.unwrap(), "a claim survived the flush");
    assert!(!neighbour.claim(key, Duration::from_secs(60)).await.unwrap(), "the flush removed another app's claim");
    neighbour.flush().await.unwrap();
    assert!(neighbour.claim(key, Duration::from_secs(60)).await.unwrap());
    // Under the app's prefix, expiring with its ttl.
    let ttl: i64 = query(&mut conn, &["PTTL", &format!("{}claim:{}:{key}", backend.key_prefix(), key.len())]).await;
    assert!(0 < ttl && ttl <= 60_000, "ttl {ttl}");
    neighbour.flush().await.unwrap();
    backend.flush().await.unwrap();
}

// ---------------------------------------------------------------------------
// Liveness after a gap: an outage does not make live workers' tasks run again
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn after_a_gap_with_no_holder_seen_only_holders_that_stay_silent_are_reaped() {
    let Some(live) = connect("gap").await else { return };
    let mut conn = support::raw_redis().await;
    let prefix = live.key_prefix().to_owned();
    let (kept, lost) = (named("kept"), named("lost"));
    live.enqueue(&kept).await.unwrap();
    live.enqueue(&lost).await.unwrap();
    assert_eq!(fetch_within(&live, 1, HANG).await[0].uuid, kept.uuid);
    // A worker that takes the other task and dies with it.
    let dead = another(&live).await;
    assert_eq!(fetch_within(&dead, 1, HANG).await[0].uuid, lost.uuid);
    drop(dead);

    // What an outage of a minute looks like once the server is back: no
    // holder seen since, every liveness deadline long past.
    let (secs, _): (i64, i64) = query(&mut conn, &["TIME"]).await;
    let long_ago = ((secs - 60) * 1000).to_string();
    let holders: Vec<String> = query(&mut conn, &["ZRANGE", &format!("{prefix}holders"), "0", "-1"]).await;
    assert_eq!(holders.len(), 2, "{holders:?}");
    for holder in &holders {
        let _: i64 = query(&mut conn, &["ZADD", &format!("{prefix}holders"), &long_ago, holder]).await;
    }
    let () = query(&mut conn, &["SET", &format!("{prefix}alive"), &long_ago]).await;

    // The first fetch after the gap gives every holder a fresh liveness
    // instead of taking their tasks.
    let fetcher = another(&live).await;
    assert!(fetch_within(&fetcher, 10, Duration::from_millis(200)).await.is_empty(), "tasks taken after a gap");
    // Then the silent one is reaped when that liveness passes; the live one
    // (its heartbeat runs every second) keeps its task.
    let back = fetch_within(&fetcher, 10, HANG).await;
    assert_eq!(back.iter().map(|m| m.uuid).collect::<Vec<_>>(), [lost.uuid]);
    assert!(live.extend_lease(kept.uuid).await.unwrap(), "the live worker lost its task");
    live.flush().await.unwrap();
}

// ---------------------------------------------------------------------------
// 6. A queue limit across worker processes, and a SIGKILLed worker's slots
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_queue_limit_holds_across_processes_and_a_killed_workers_slots_come_back() {
    const TASKS: i64 = 60;
    const LIMIT: &str = "3";
    const LEASE: Duration = Duration::from_secs(60);
    let Some(backend) = connect("limit-procs").await else { return };
    let name = backend.app_name().to_owned();
    let url = support::redis_url();
    let app = app(&backend);
    let mut conn = support::raw_redis().await;
    let (running, max_running) = (format!("qtasks-test:{name}:running"), format!("qtasks-test:{name}:max-running"));
    let worker = |label: &str, task_ms: &str| {
        let args = ["worker", "--app", &name, "--url", &url, "--concurrency", "16", "--lease-ms", "60000"];
        Proc::spawn(label, &[&args[..], &["--task-ms", task_ms, "--queue-limit", LIMIT]].concat())
    };

    // Worker A takes the three slots with runs that never end, then dies.
    let mut doomed = worker("worker A (SIGKILLed)", "3600000");
    doomed.expect("READY", HANG).await;
    let mut uuids = Vec::new();
    for n in 0..TASKS {
        uuids.push(app.add_task("square", [n]).await.unwrap().uuid());
    }
    let [runs_key, ..] = run_keys(&name);
    let started = Instant::now();
    while query::<i64>(&mut conn, &["HLEN", &runs_key]).await < 3 {
        assert!(started.elapsed() < HANG, "worker A did not start three tasks:\n{}", doomed.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Four workers of 16 slots each: all blocked by the limit A holds.
    let mut survivors = Vec::new();
    for i in 0..4 {
        let mut survivor = worker(&format!("worker {i}"), "20");
        survivor.expect("READY", HANG).await;
        survivors.push(survivor);
    }
    let held: i64 = query(&mut conn, &["HLEN", &runs_key]).await;
    assert_eq!(held, 3, "tasks started while a worker held every slot of the limit");

    doomed.sigkill();
    let killed = Instant::now();
    // A's runs are not running any more: not counted as running from now.
    let _: i64 = query(&mut conn, &["HDEL", &running, &doomed.pid().to_string()]).await;
    for (n, uuid) in uuids.iter().enumerate() {
        let done = app.wait(*uuid, HANG).await.unwrap_or_else(|e| panic!("square({n}): {e}"));
        assert_eq!((done.status, done.result), (TaskStatus::Success, Some(json!(n * n))), "square({n})");
    }
    let most: i64 = query::<Option<i64>>(&mut conn, &["GET", &max_running]).await.unwrap_or(0);
    eprintln!(
        "limit 3 across 4 processes x 16 slots: {TASKS} tasks done {:.2?} after the SIGKILL of the worker holding the slots (lease {LEASE:?}), at most {most} at once",
        killed.elapsed()
    );
    assert!((1..=3).contains(&most), "{most} tasks ran at once across 4 worker processes under a limit of 3");
    // Every task ran once in the survivors; A's three ran twice.
    let (runs, _) = runs(&mut conn, &name).await;
    assert_eq!(runs.len(), TASKS as usize, "{runs:?}");
    let twice = runs.values().filter(|r| **r == 2).count();
    assert_eq!((twice, runs.values().all(|r| *r <= 2)), (3, true), "runs per task: {runs:?}");
    let stats = backend.stats().await.unwrap();
    assert_eq!((stats.tasks["square"].success, stats.tasks["square"].duplicates), (TASKS as u64, 3), "{stats:?}");
    let queue = &app.queues().await.unwrap()[0];
    assert_eq!((queue.depth, queue.in_flight), (0, 0), "{queue:?}");

    drop(survivors);
    backend.flush().await.unwrap();
    delete_runs(&mut conn, &name).await;
    let _: i64 = query(&mut conn, &["DEL", &running, &max_running]).await;
}
