//! The Redis backend against a real server: `QTASKS_REDIS_URL`, or
//! redis://127.0.0.1:6379. Without a reachable server the tests are
//! ignored (see `tests/build.rs`), except under CI (`CI` set), where they
//! fail. Each test uses keys of its own; the one that kills connections
//! kills only its own (those of a Redis user it creates), so the tests
//! share the server with each other and with anyone else.

mod support;

use qtasks::backend::TaskQuery;
use qtasks::{Backend, NewTask, QueueTasks, RedisBackend, TaskRecord, TaskStatus, json, task};
use redis::Value;
use redis::aio::MultiplexedConnection;
use std::time::{Duration, Instant};
use uuid::Uuid;

const WAIT: Duration = support::HANG;

fn url() -> String {
    support::redis_url()
}

/// A backend for a fresh app, or `None` (test skipped) without a server.
async fn connect() -> Option<RedisBackend> {
    let app = format!("qtasks-test-{}", Uuid::new_v4());
    connect_app(&app).await
}

async fn connect_app(app: &str) -> Option<RedisBackend> {
    support::connect_redis("redis_backend", app).await
}

/// A plain connection to look at the keys directly.
async fn raw() -> MultiplexedConnection {
    redis::Client::open(url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn query<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(conn).await.unwrap()
}

fn record(name: &str, priority: i64) -> TaskRecord {
    TaskRecord::new(Uuid::new_v4(), NewTask { priority, ..NewTask::new(name, json!([])) })
}

/// Fetches at most `max` tasks, or none if nothing comes within `within`.
async fn fetch_within(backend: &RedisBackend, max: usize, within: Duration) -> Vec<qtasks::TaskMessage> {
    let mut out = Vec::new();
    match tokio::time::timeout(within, backend.fetch(&qtasks::backend::Fetch::default_queue(), max, &mut out)).await {
        Ok(result) => result.unwrap(),
        Err(_) => assert!(out.is_empty(), "a cancelled fetch must not have taken tasks"),
    }
    out
}

#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
fn fail() -> Result<i64, std::io::Error> {
    Err(std::io::Error::other("division by zero"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn fetch_orders_by_priority_then_fifo() {
    let Some(backend) = connect().await else { return };
    assert_eq!(backend.kind(), "redis");
    let plan: [(&str, i64); 10] = [
        ("p5-a", 5),
        ("p1-a", 1),
        ("p5-b", 5),
        ("p0-a", 0),
        ("p1-b", 1),
        ("max", i64::MAX),
        ("min", i64::MIN),
        ("neg", -3),
        // 2^53 and 2^53 + 1 are the same f64: the order must still hold.
        ("big+1", (1 << 53) + 1),
        ("big", 1 << 53),
    ];
    for (name, priority) in plan {
        backend.enqueue(&record(name, priority)).await.unwrap();
    }
    // Small batches: the order holds across calls, not only within one.
    let mut names = Vec::new();
    while names.len() < plan.len() {
        let batch = fetch_within(&backend, 3, WAIT).await;
        assert!(!batch.is_empty() && batch.len() <= 3);
        names.extend(batch.into_iter().map(|m| m.task_name));
    }
    assert_eq!(names, ["min", "neg", "p0-a", "p1-a", "p1-b", "p5-a", "p5-b", "big", "big+1", "max"]);
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn enqueue_worker_result_end_to_end() {
    let Some(backend) = connect().await else { return };
    let app = QueueTasks::builder(backend.app_name().to_owned())
        .task::<Add>()
        .task::<Fail>()
        .backend(backend.clone())
        .build()
        .unwrap();
    let worker = app.worker().max_tasks_process(4).start().await.unwrap();

    let task = app.add_task("add", (2, 3)).await.unwrap().record(WAIT).await.expect("finished");
    assert_eq!(task.status, TaskStatus::Success);
    assert_eq!(task.result, Some(json!(5)));

    let sum = app.enqueue(Add::call(20, 22)).await.unwrap().result(WAIT).await.unwrap();
    assert_eq!(sum, 42);

    let failed = app.add_task("fail", ()).await.unwrap().record(WAIT).await.expect("finished");
    assert_eq!(failed.status, TaskStatus::Error);
    assert_eq!(failed.error.as_deref(), Some("division by zero"));

    let unknown = app.add_task("no_such_task", ()).await.unwrap().record(WAIT).await.expect("finished");
    assert_eq!(unknown.status, TaskStatus::Error);

    // A burst, waited on concurrently: one shared subscription serves all waiters.
    let n = 200;
    let started = Instant::now();
    let mut uuids = Vec::new();
    for i in 0..n {
        uuids.push(app.add_task("add", (i, 1)).await.unwrap().uuid());
    }
    let waits = uuids.iter().map(|&uuid| app.wait(uuid, WAIT));
    let done = futures::future::join_all(waits).await;
    for (i, task) in done.into_iter().enumerate() {
        let task = task.expect("finished");
        assert_eq!(task.result, Some(json!(i as i64 + 1)));
    }
    eprintln!("redis backend: {n} tasks enqueued, run and awaited in {:?}", started.elapsed());

    assert_eq!(app.get_all().await.unwrap().len(), n as usize + 4);
    let stored = app.get(uuids[0]).await.unwrap().expect("stored");
    assert_eq!(stored.status, TaskStatus::Success);

    worker.shutdown().await;
    app.flush_all().await.unwrap();
    assert!(app.get_all().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn wait_returns_none_on_timeout_and_is_notified_on_finish() {
    let Some(backend) = connect().await else { return };
    // Unknown task: at once.
    assert!(backend.wait(Uuid::new_v4(), WAIT).await.unwrap().is_none());

    // No worker: the timeout passes.
    let task = record("t", 0);
    backend.enqueue(&task).await.unwrap();
    let started = Instant::now();
    assert!(backend.wait(task.uuid, Duration::from_millis(300)).await.unwrap().is_none());
    // Not before its timeout (a lower bound a slow machine cannot break).
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A waiter is woken by finish: its own timeout, an hour, cannot pass
    // within the test's hang protection, and `wait` does not poll.
    let waiter = tokio::spawn({
        let backend = backend.clone();
        async move { backend.wait(task.uuid, Duration::from_secs(3600)).await.unwrap() }
    });
    // The backend's subscription to `done` (started by the waits above) is
    // live: the finish below is published to it.
    support::until_subscribed(&format!("{}done", backend.key_prefix()), 1).await;
    let taken = fetch_within(&backend, 1, WAIT).await;
    let mut done = TaskRecord::from_message(&taken[0], TaskStatus::Success);
    done.result = Some(json!("ok"));
    backend.finish(&done).await.unwrap();
    let finished = tokio::time::timeout(WAIT, waiter).await.expect("the finish did not wake the waiter").unwrap();
    let finished = finished.expect("notified");
    assert_eq!(finished.status, TaskStatus::Success);
    assert_eq!(finished.result, Some(json!("ok")));

    // Already final: at once.
    assert!(backend.wait(task.uuid, WAIT).await.unwrap().is_some());
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_blocked_fetch_is_woken_by_enqueue_and_cancelling_it_loses_nothing() {
    let Some(_probe) = connect().await else { return };
    // Logged in as a user of its own: its blocked `BLPOP` is the only one
    // `CLIENT LIST` shows for that user.
    let user = support::TestUser::create().await;
    let backend = RedisBackend::connect(user.url()).await.unwrap().for_app(&format!("qtasks-test-{}", Uuid::new_v4()));
    let blocked = async || {
        let is_blocked = |line: &String| {
            let mut fields = line.split(' ');
            let (mut blpop, mut flag_b) = (false, false);
            for field in &mut fields {
                blpop |= field == "cmd=blpop";
                flag_b |= field.strip_prefix("flags=").is_some_and(|flags| flags.contains('b'));
            }
            blpop && flag_b
        };
        user.connections().await.iter().filter(|line| is_blocked(line)).count()
    };
    // Cancelled while blocked: nothing taken, nothing lost.
    assert!(fetch_within(&backend, 5, Duration::from_millis(300)).await.is_empty());
    // Its connection, dropped with it, leaves the server.
    let deadline = Instant::now() + WAIT;
    while blocked().await > 0 {
        assert!(Instant::now() < deadline, "the cancelled fetch's connection is still blocked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let fetcher = tokio::spawn({
        let backend = backend.clone();
        async move {
            let mut out = Vec::new();
            backend.fetch(&qtasks::backend::Fetch::default_queue(), 5, &mut out).await.unwrap();
            out
        }
    });
    // Until the fetch is blocked in `BLPOP` on the wake-up list.
    while blocked().await == 0 {
        assert!(Instant::now() < deadline, "the fetch never blocked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let task = record("wake", 0);
    backend.enqueue(&task).await.unwrap();
    // Woken by the enqueue, not by the periodic re-check (5 s): the server
    // handed the enqueue's wake-up to the blocked `BLPOP` before it ran
    // any other command, so the list is empty again.
    let mut conn = raw().await;
    assert_eq!(query::<i64>(&mut conn, &["LLEN", &format!("{}wake", backend.key_prefix())]).await, 0);
    let out = tokio::time::timeout(WAIT, fetcher).await.expect("the fetch was not woken").unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].uuid, task.uuid);
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn fetches_cancelled_mid_round_trip_lose_no_task() {
    let Some(backend) = connect().await else { return };
    // No lease expires during the test: a task that a cancelled fetch left
    // in flight stays missing instead of coming back at lease expiry.
    let backend = backend.lease(Duration::from_secs(3600));
    let n = 40;
    let mut expected = std::collections::BTreeSet::new();
    for i in 0..n {
        let task = record("c", i % 3);
        backend.enqueue(&task).await.unwrap();
        expected.insert(task.uuid);
    }
    // Dropped after one poll, while the script's round trip is under way,
    // or (one in four) polled again 2 ms later, when it is done.
    let mut got = std::collections::BTreeSet::new();
    let mut cancelled = 0;
    for i in 0..200usize {
        let mut out = Vec::new();
        {
            let from = qtasks::backend::Fetch::default_queue();
            let fetch = backend.fetch(&from, 3, &mut out);
            tokio::pin!(fetch);
            let mut done = false;
            for poll in 0..=usize::from(i % 4 == 3) {
                if poll > 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                if let std::task::Poll::Ready(result) = futures::poll!(fetch.as_mut()) {
                    result.unwrap();
                    done = true;
                    break;
                }
            }
            cancelled += usize::from(!done);
        }
        for m in out {
            assert!(got.insert(m.uuid), "delivered twice: {}", m.uuid);
        }
        if got.len() == n as usize {
            break;
        }
    }
    assert!(cancelled > 0);
    // The tasks the cancelled fetches took were put back at once: fetch the rest.
    let deadline = Instant::now() + WAIT;
    while got.len() < n as usize {
        let missing: Vec<_> = expected.difference(&got).collect();
        assert!(Instant::now() < deadline, "after {cancelled} cancelled fetches, never came back: {missing:?}");
        for m in fetch_within(&backend, 10, Duration::from_secs(1)).await {
            assert!(got.insert(m.uuid), "delivered twice: {}", m.uuid);
        }
    }
    eprintln!("cancelled {cancelled}, got {}", got.len());
    assert_eq!(got, expected, "after {cancelled} cancelled fetches");
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn an_expired_lease_redelivers_the_task() {
    let Some(backend) = connect().await else { return };
    let lease = Duration::from_secs(1);
    let backend = backend.lease(lease);
    let mut conn = raw().await;
    let prefix = backend.key_prefix().to_owned();
    let task = record("leased", 0);
    backend.enqueue(&task).await.unwrap();

    // Read before the fetch: the lease that fetch starts cannot start earlier.
    let before_fetch = Instant::now();
    let first = fetch_within(&backend, 10, WAIT).await;
    assert_eq!(first.len(), 1);
    // The worker "dies": no finish. Another fetch blocks, then gets it back
    // once the lease has expired: not before (a lower bound that a slow
    // machine only makes easier; the server's clock counts whole ms).
    let again = fetch_within(&backend, 10, WAIT).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].uuid, task.uuid);
    let since_fetch = before_fetch.elapsed();
    assert!(since_fetch >= lease - Duration::from_millis(5), "redelivered {since_fetch:?} after the fetch");

    // Finished: released for good, also once its old lease would have expired.
    backend.finish(&TaskRecord::from_message(&again[0], TaskStatus::Success)).await.unwrap();
    assert_eq!(query::<i64>(&mut conn, &["ZCARD", &format!("{prefix}inflight")]).await, 0);
    assert_eq!(query::<i64>(&mut conn, &["HLEN", &format!("{prefix}held")]).await, 0);
    assert!(fetch_within(&backend, 10, lease + Duration::from_millis(500)).await.is_empty());

    // A lease that is renewed is not redelivered. The renewal comes from a
    // worker with a long lease, so the renewed lease outlasts the check
    // however slowly this runs (until a fetch requeues an expired lease, a
    // renewal still gets it).
    let task = record("renewed", 0);
    backend.enqueue(&task).await.unwrap();
    assert_eq!(fetch_within(&backend, 10, WAIT).await.len(), 1);
    let fetched_at = tokio::time::Instant::now();
    let long = backend.clone().lease(Duration::from_secs(3600));
    assert_eq!(long.extend_leases(&[task.uuid]).await.unwrap(), 1);
    // Past the first lease's deadline (set before `fetched_at`), a fetch
    // leaves the task alone.
    tokio::time::sleep_until(fetched_at + lease + Duration::from_millis(10)).await;
    assert!(fetch_within(&backend, 10, Duration::from_millis(500)).await.is_empty());
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn finish_sets_the_retention_ttl_and_releases_the_task() {
    let Some(backend) = connect().await else { return };
    let backend = backend.retention(Some(Duration::from_secs(60)));
    let mut conn = raw().await;
    let prefix = backend.key_prefix().to_owned();

    let task = record("ttl", 0);
    backend.enqueue(&task).await.unwrap();
    let key = format!("{prefix}task:{}", task.uuid);
    assert_eq!(query::<i64>(&mut conn, &["PTTL", &key]).await, -1, "no expiry before the end");
    let taken = fetch_within(&backend, 1, WAIT).await;
    let process = TaskRecord::from_message(&taken[0], TaskStatus::Process);
    backend.update(&process).await.unwrap();
    assert_eq!(backend.get(task.uuid).await.unwrap().unwrap().status, TaskStatus::Process);
    assert_eq!(query::<i64>(&mut conn, &["ZCARD", &format!("{prefix}inflight")]).await, 1);

    backend.finish(&TaskRecord::from_message(&taken[0], TaskStatus::Success)).await.unwrap();
    let ttl = query::<i64>(&mut conn, &["PTTL", &key]).await;
    assert!(0 < ttl && ttl <= 60_000, "ttl {ttl}");
    assert_eq!(query::<i64>(&mut conn, &["ZCARD", &format!("{prefix}inflight")]).await, 0);
    assert_eq!(query::<i64>(&mut conn, &["HLEN", &format!("{prefix}held")]).await, 0);
    // The status only moves forward: a late `process` does not undo the end.
    backend.update(&process).await.unwrap();
    assert_eq!(backend.get(task.uuid).await.unwrap().unwrap().status, TaskStatus::Success);

    // Without retention the record stays.
    let keep = backend.clone().retention(None);
    let task = record("keep", 0);
    keep.enqueue(&task).await.unwrap();
    let taken = fetch_within(&keep, 1, WAIT).await;
    keep.finish(&TaskRecord::from_message(&taken[0], TaskStatus::Success)).await.unwrap();
    assert_eq!(query::<i64>(&mut conn, &["PTTL", &format!("{prefix}task:{}", task.uuid)]).await, -1);
    backend.flush().await.unwrap();
}

/// Tasks that end together are finished in batches (one script call for
/// many): each good one ends `success`, is counted once and published
/// once; a task whose record was replaced by another type goes to the dead
/// letters, and one whose keys cannot be written fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn tasks_ending_together_are_finished_together_and_a_bad_one_fails_alone() {
    use futures::StreamExt;
    const TASKS: usize = 200;
    let Some(backend) = connect().await else { return };
    let mut conn = raw().await;
    let prefix = backend.key_prefix().to_owned();
    let mut done = redis::Client::open(url()).unwrap().get_async_pubsub().await.unwrap();
    done.subscribe(format!("{prefix}done")).await.unwrap();

    for _ in 0..TASKS {
        backend.enqueue(&record("batch", 0)).await.unwrap();
    }
    let mut taken = Vec::new();
    while taken.len() < TASKS {
        taken.extend(fetch_within(&backend, TASKS - taken.len(), WAIT).await);
    }
    // One record key replaced by a string; one record naming a slot key
    // that holds a string (releasing its slot fails with WRONGTYPE).
    let (replaced, unwritable) = (taken[10].uuid, taken[20].uuid);
    let _: () = query(&mut conn, &["SET", &format!("{prefix}task:{replaced}"), "not a record"]).await;
    let bad_slot = format!("{prefix}slots:7:badslot");
    let _: () = query(&mut conn, &["SET", &bad_slot, "not a set"]).await;
    let _: i64 = query(&mut conn, &["HSET", &format!("{prefix}task:{unwritable}"), "slots", &bad_slot]).await;

    let ends = taken.iter().map(|m| {
        let backend = backend.clone();
        let end = TaskRecord::from_message(m, TaskStatus::Success);
        async move { (end.uuid, backend.finish(&end).await) }
    });
    let outcomes = futures::future::join_all(ends).await;
    let good: std::collections::HashSet<Uuid> =
        taken.iter().map(|m| m.uuid).filter(|u| *u != replaced && *u != unwritable).collect();
    for (uuid, outcome) in &outcomes {
        if *uuid == unwritable {
            let e = outcome.as_ref().expect_err("the task whose slot cannot be released fails");
            assert!(e.to_string().contains("WRONGTYPE"), "{e}");
        } else {
            outcome.as_ref().unwrap_or_else(|e| panic!("finishing {uuid}: {e}"));
        }
    }
    for uuid in &good {
        assert_eq!(backend.get(*uuid).await.unwrap().unwrap().status, TaskStatus::Success);
    }
    let dead: Vec<String> = query(&mut conn, &["LRANGE", &format!("{prefix}dead"), "0", "-1"]).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains(&replaced.to_string()), "{dead:?}");
    let stats = backend.stats().await.unwrap();
    assert_eq!(stats.tasks["batch"].success, good.len() as u64, "each written end counted once");

    // Each good task is published once (and the failed ones are not).
    let mut published = std::collections::HashSet::new();
    let mut messages = done.on_message();
    while published.len() < good.len() {
        let message = tokio::time::timeout(WAIT, messages.next()).await.expect("every end is published").unwrap();
        let uuid: Uuid = message.get_payload::<String>().unwrap().parse().unwrap();
        assert!(good.contains(&uuid), "{uuid} was published");
        assert!(published.insert(uuid), "{uuid} was published twice");
    }
    drop(messages);
    let _: i64 = query(&mut conn, &["DEL", &bad_slot]).await;
    backend.flush().await.unwrap();
}

/// Ends with large results that finish together are split over several
/// script calls (about 1 MiB of records each): every one is stored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn large_ends_finishing_together_are_all_stored() {
    let Some(backend) = connect().await else { return };
    support::check_large_ends(&backend, 12, 300_000).await;
    backend.flush().await.unwrap();
}

/// The lean mode (`listing(false)`): tasks run and end as usual, with
/// their records and counters, but none enters the listing's indexes, and
/// `list_tasks` says the listing is off instead of listing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn with_the_listing_off_tasks_run_and_stay_out_of_the_indexes() {
    let Some(backend) = connect().await else { return };
    let backend = backend.listing(false);
    let mut conn = raw().await;
    let prefix = backend.key_prefix().to_owned();
    let (done, cancelled) = (record("lean", 0), record("lean", 0));
    backend.enqueue(&done).await.unwrap();
    backend.enqueue(&cancelled).await.unwrap();
    assert!(matches!(
        backend.cancel(cancelled.uuid, "not needed").await.unwrap(),
        qtasks::backend::CancelOutcome::Cancelled
    ));
    let taken = fetch_within(&backend, 1, WAIT).await;
    assert_eq!(taken[0].uuid, done.uuid);
    backend.finish(&TaskRecord::from_message(&taken[0], TaskStatus::Success)).await.unwrap();
    assert_eq!(backend.get(done.uuid).await.unwrap().unwrap().status, TaskStatus::Success);
    assert_eq!(backend.get(cancelled.uuid).await.unwrap().unwrap().status, TaskStatus::Cancel);
    assert_eq!(backend.stats().await.unwrap().tasks["lean"].success, 1);
    for status in ["", ":new", ":process", ":success", ":cancel"] {
        assert_eq!(query::<i64>(&mut conn, &["EXISTS", &format!("{prefix}index{status}")]).await, 0, "index{status}");
    }
    let refused = backend.list_tasks(&qtasks::backend::TaskQuery::default()).await.unwrap_err();
    assert!(refused.to_string().contains("listing is off"), "{refused}");
    backend.flush().await.unwrap();
}

/// A record keeps its score in the listing's indexes (its `at` field), so a
/// status change moves it without looking the score up; a record written
/// before that field existed has its score looked up instead, and both end
/// in the right index, at their `created_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn status_changes_move_tasks_between_the_listing_indexes_with_or_without_their_score_field() {
    let Some(backend) = connect().await else { return };
    let mut conn = raw().await;
    let prefix = backend.key_prefix().to_owned();
    let (current, older) = (record("listed", 0), record("listed", 0));
    backend.enqueue(&current).await.unwrap();
    backend.enqueue(&older).await.unwrap();
    let at: String = query(&mut conn, &["HGET", &format!("{prefix}task:{}", current.uuid), "at"]).await;
    assert_eq!(at.parse::<f64>().unwrap(), current.created_at);
    // As a record written by an earlier version: no `at` field.
    let removed: i64 = query(&mut conn, &["HDEL", &format!("{prefix}task:{}", older.uuid), "at"]).await;
    assert_eq!(removed, 1);
    let taken = fetch_within(&backend, 2, WAIT).await;
    assert_eq!(taken.len(), 2);
    let in_process = backend.list_tasks(&TaskQuery::newest(10).status(TaskStatus::Process)).await.unwrap();
    assert_eq!(in_process.tasks.len(), 2, "{in_process:?}");
    for message in &taken {
        backend.finish(&TaskRecord::from_message(message, TaskStatus::Success)).await.unwrap();
    }
    let ended = backend.list_tasks(&TaskQuery::newest(10).status(TaskStatus::Success)).await.unwrap();
    let mut ids: Vec<Uuid> = ended.tasks.iter().map(|t| t.uuid).collect();
    ids.sort();
    let mut want = vec![current.uuid, older.uuid];
    want.sort();
    assert_eq!(ids, want);
    for task in [&current, &older] {
        let score: f64 = query(&mut conn, &["ZSCORE", &format!("{prefix}index:success"), &task.uuid.to_string()]).await;
        assert_eq!(score, task.created_at);
    }
    for status in ["new", "process"] {
        let left: i64 = query(&mut conn, &["ZCARD", &format!("{prefix}index:{status}")]).await;
        assert_eq!(left, 0, "index:{status}");
    }
    // One at a time (a cancel while queued), an older record too.
    let cancelled = record("listed", 0);
    backend.enqueue(&cancelled).await.unwrap();
    let _: i64 = query(&mut conn, &["HDEL", &format!("{prefix}task:{}", cancelled.uuid), "at"]).await;
    assert!(matches!(
        backend.cancel(cancelled.uuid, "not needed").await.unwrap(),
        qtasks::backend::CancelOutcome::Cancelled
    ));
    let score: f64 = query(&mut conn, &["ZSCORE", &format!("{prefix}index:cancel"), &cancelled.uuid.to_string()]).await;
    assert_eq!(score, cancelled.created_at);
    let left: i64 = query(&mut conn, &["ZCARD", &format!("{prefix}index:new")]).await;
    assert_eq!(left, 0, "index:new");
    backend.flush().await.unwrap();
}

/// A group of settings is read through its index, not a `SCAN` of the
/// keyspace (workers read the plugin switches at every heartbeat): names
/// whose setting expired or was deleted leave the index; settings written
/// before groups had indexes are found and indexed; `flush` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn settings_are_read_through_the_groups_index() {
    let Some(backend) = connect().await else { return };
    let mut conn = raw().await;
    let prefix = backend.key_prefix().to_owned();
    let index = format!("{prefix}configs:5:group");
    let members = |mut conn: MultiplexedConnection, index: String| async move {
        let mut names: Vec<String> = query(&mut conn, &["SMEMBERS", &index]).await;
        names.sort();
        names
    };

    // Written the way qtasks wrote settings before indexes: found once read.
    let _: () = query(&mut conn, &["SET", &format!("{prefix}config:5:group:old"), "\"kept\""]).await;
    backend.config_set("group", "a", &json!(1), None).await.unwrap();
    backend.config_set("group", "brief", &json!(2), Some(Duration::from_millis(1))).await.unwrap();
    backend.config_set("group", "gone", &json!(3), None).await.unwrap();
    backend.config_delete("group", "gone").await.unwrap();
    let brief = format!("{prefix}config:5:group:brief");
    let deadline = Instant::now() + WAIT;
    while query::<i64>(&mut conn, &["EXISTS", &brief]).await == 1 {
        assert!(Instant::now() < deadline, "the setting with a 1 ms ttl expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = backend.config_get_all("group").await.unwrap();
    assert_eq!(serde_json::Value::Object(all), json!({"a": 1, "old": "kept"}));
    assert_eq!(members(raw().await, index.clone()).await, ["a", "old"], "expired and deleted names left the index");
    // Another group with a name that starts the same is apart.
    backend.config_set("group2", "x", &json!(true), None).await.unwrap();
    assert_eq!(backend.config_get_all("group").await.unwrap().len(), 2);

    backend.flush().await.unwrap();
    assert_eq!(query::<i64>(&mut conn, &["EXISTS", &index]).await, 0, "flush removes the index");
    assert!(backend.config_get_all("group").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn garbage_in_the_queue_goes_to_the_dead_letters() {
    let Some(backend) = connect().await else { return };
    let mut conn = raw().await;
    let prefix = backend.key_prefix().to_owned();
    let queue = format!("{prefix}queue");

    let good_a = record("good-a", 0);
    backend.enqueue(&good_a).await.unwrap();
    // Entries sorting before and after the good ones.
    let _: i64 = query(&mut conn, &["ZADD", &queue, "0", "\u{1}garbage"]).await;
    let _: i64 = query(&mut conn, &["ZADD", &queue, "0", "zzz not an entry"]).await;
    // Well formed, but its record is missing.
    let missing = format!("{:032x}{}", 0u128, Uuid::new_v4());
    let _: i64 = query(&mut conn, &["ZADD", &queue, "0", &missing]).await;
    // Well formed, but its record is not a task.
    let bad = Uuid::new_v4();
    let _: i64 =
        query(&mut conn, &["HSET", &format!("{prefix}task:{bad}"), "status", "new", "data", "{not json"]).await;
    let _: i64 = query(&mut conn, &["ZADD", &queue, "0", &format!("{:032x}{bad}", 1u128)]).await;
    let good_b = record("good-b", 0);
    backend.enqueue(&good_b).await.unwrap();

    let out = fetch_within(&backend, 10, WAIT).await;
    let uuids: Vec<Uuid> = out.iter().map(|m| m.uuid).collect();
    assert_eq!(uuids, [good_a.uuid, good_b.uuid]);
    let dead: Vec<String> = query(&mut conn, &["LRANGE", &format!("{prefix}dead"), "0", "-1"]).await;
    assert_eq!(dead.len(), 4, "{dead:?}");
    for letter in &dead {
        let letter: serde_json::Value = serde_json::from_str(letter).unwrap();
        assert!(letter["reason"].is_string(), "{letter}");
    }
    // Only the good tasks are in flight.
    assert_eq!(query::<i64>(&mut conn, &["ZCARD", &format!("{prefix}inflight")]).await, 2);
    assert_eq!(query::<i64>(&mut conn, &["ZCARD", &queue]).await, 0);
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn an_oversize_message_is_refused() {
    let Some(backend) = connect().await else { return };
    let backend = backend.max_message_size(1024);
    let mut big = record("big", 0);
    big.args = json!(["x".repeat(2000)]);
    let error = backend.enqueue(&big).await.unwrap_err();
    assert_eq!(error.backend, "redis");
    assert!(error.message.contains("max_message_size"), "{error}");
    assert!(backend.get(big.uuid).await.unwrap().is_none());
    assert!(backend.get_all().await.unwrap().is_empty());

    backend.enqueue(&record("small", 0)).await.unwrap();
    // Through the app too.
    let app =
        QueueTasks::builder(backend.app_name().to_owned()).task::<Add>().backend(backend.clone()).build().unwrap();
    assert!(app.add_task("add", ("y".repeat(2000), 1)).await.is_err());
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn flush_removes_only_the_apps_keys() {
    let app = format!("qtasks-test-{}", Uuid::new_v4());
    let Some(a) = connect_app(&app).await else { return };
    // An app whose prefix starts with `a`'s, and a key of nobody.
    let Some(b) = connect_app(&format!("{app}:task")).await else { return };
    let mut conn = raw().await;
    let stranger = format!("qtasks:{app}-stranger");
    let _: () = query(&mut conn, &["SET", &stranger, "1"]).await;

    let mut a_tasks = Vec::new();
    for i in 0..3 {
        let task = record("a", i);
        a.enqueue(&task).await.unwrap();
        a_tasks.push(task.uuid);
    }
    let taken = fetch_within(&a, 1, WAIT).await;
    a.finish(&TaskRecord::from_message(&taken[0], TaskStatus::Success)).await.unwrap();
    // The delayed set and the stats hash too.
    let later = record("a-later", 0);
    a.enqueue_delayed(&later, Duration::from_secs(60)).await.unwrap();
    a_tasks.push(later.uuid);
    let mut key_names: Vec<String> = query(&mut conn, &["KEYS", &format!("{}*", a.key_prefix())]).await;
    key_names.retain(|k| !k.starts_with(&format!("{}task:", a.key_prefix())));
    for name in ["delayed", "stats"] {
        assert!(key_names.contains(&format!("{}{name}", a.key_prefix())), "no `{name}` key: {key_names:?}");
    }
    let b_task = record("b", 0);
    b.enqueue(&b_task).await.unwrap();

    a.flush().await.unwrap();
    let keys_conn = conn.clone();
    let keys_of = |prefix: String| {
        let mut conn = keys_conn.clone();
        async move {
            let keys: Vec<String> = query(&mut conn, &["KEYS", &format!("{prefix}*")]).await;
            keys
        }
    };
    let left: Vec<String> =
        keys_of(a.key_prefix().to_owned()).await.into_iter().filter(|k| !k.starts_with(b.key_prefix())).collect();
    assert!(left.is_empty(), "left after flush: {left:?}");
    for uuid in a_tasks {
        assert!(a.get(uuid).await.unwrap().is_none());
    }
    assert!(!keys_of(b.key_prefix().to_owned()).await.is_empty());
    assert_eq!(b.get(b_task.uuid).await.unwrap().unwrap().uuid, b_task.uuid);
    assert_eq!(b.get_all().await.unwrap().len(), 1);
    assert_eq!(fetch_within(&b, 10, WAIT).await[0].uuid, b_task.uuid);
    assert_eq!(query::<i64>(&mut conn, &["EXISTS", &stranger]).await, 1);

    b.flush().await.unwrap();
    let _: i64 = query(&mut conn, &["DEL", &stranger]).await;
    assert!(keys_of(b.key_prefix().to_owned()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn the_worker_and_waiters_survive_killed_connections() {
    let Some(_probe) = connect().await else { return };
    // Every connection of this backend logs in as a user of the test's own:
    // those are the connections killed below, and no others.
    let user = support::TestUser::create().await;
    let backend = RedisBackend::connect(user.url()).await.unwrap().for_app(&format!("qtasks-test-{}", Uuid::new_v4()));
    let app =
        QueueTasks::builder(backend.app_name().to_owned()).task::<Add>().backend(backend.clone()).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    assert_eq!(app.enqueue(Add::call(1, 1)).await.unwrap().result(WAIT).await.unwrap(), 2);

    for kind in ["pubsub", "normal"] {
        // The waiter's subscription is live (the result above came through
        // it), and the shared and blocking connections are open.
        let killed = user.kill(kind).await;
        assert!(killed >= 1, "no {kind} connection of the test's user to kill");
        // The shared connection reconnects; a command caught by the loss fails.
        let started = Instant::now();
        let handle = loop {
            match app.enqueue(Add::call(2, 3)).await {
                Ok(handle) => break handle,
                Err(e) if started.elapsed() < WAIT => {
                    eprintln!("enqueue after killing the {kind} connections: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no reconnection after killing the {kind} connections: {e}"),
            }
        };
        // The worker's fetch and the waiter's subscription came back.
        assert_eq!(handle.result(WAIT).await.unwrap(), 5, "after killing the {kind} connections");
        eprintln!("killed {killed} {kind} connections: next task done {:?} later", started.elapsed());
    }
    worker.shutdown().await;
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn passwords_in_the_url_work_and_never_leak_into_errors() {
    let Some(_probe) = connect().await else { return };
    let mut conn = raw().await;
    let user = format!("qtasks-test-{}", Uuid::new_v4().simple());
    let password = format!("pw-{}", Uuid::new_v4().simple());
    let _: Value =
        query(&mut conn, &["ACL", "SETUSER", &user, "on", &format!(">{password}"), "~*", "&*", "+@all"]).await;

    let base = url();
    let authed = base.replacen("redis://", &format!("redis://{user}:{password}@"), 1);
    let app_name = format!("qtasks-test-{}", Uuid::new_v4());
    let backend = RedisBackend::connect(&authed).await.map(|b| b.for_app(&app_name)).expect("connects with a password");
    let app = QueueTasks::builder(app_name).task::<Add>().backend(backend).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let done = app.add_task("add", (40, 2)).await.unwrap().record(WAIT).await.unwrap();
    assert_eq!(done.result, Some(json!(42)));
    worker.shutdown().await;
    app.flush_all().await.unwrap();

    let wrong = base.replacen("redis://", &format!("redis://{user}:not-{password}@"), 1);
    let error = match RedisBackend::connect(&wrong).await.map(|b| b.for_app("qtasks-test-wrong")) {
        Ok(_) => panic!("a wrong password must not connect"),
        Err(e) => e.to_string(),
    };
    assert!(!error.contains(&password), "the error repeats the password: {error}");
    let _: Value = query(&mut conn, &["ACL", "DELUSER", &user]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn workers_register_with_a_heartbeat_and_leave_at_shutdown() {
    let Some(backend) = connect().await else { return };
    let app = QueueTasks::builder(backend.app_name().to_owned()).task::<Add>().backend(backend).build().unwrap();
    assert!(!app.ping().await);
    let one = app.worker().max_tasks_process(3).start().await.unwrap();
    let two = app.worker().start().await.unwrap();
    let workers = app.workers().await.unwrap();
    assert_eq!(workers.len(), 2);
    let mine = workers.iter().find(|w| w.id == one.info().id).expect("worker one is listed");
    assert_eq!((mine.concurrency, mine.backend.as_str(), mine.pid), (3, "redis", std::process::id()));
    assert!(app.ping().await);
    one.shutdown().await;
    assert_eq!(app.workers().await.unwrap().len(), 1);
    two.shutdown().await;
    assert!(!app.ping().await);
    app.flush_all().await.unwrap();
}

static LONG_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static LONG_RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Runs until the test releases it (at most `WAIT`).
#[task]
async fn outlives_its_lease() -> u64 {
    LONG_RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _ = tokio::time::timeout(WAIT, LONG_RELEASE.notified()).await;
    7
}

/// The server's clock, in ms (the clock of lease deadlines).
async fn server_ms(conn: &mut MultiplexedConnection) -> i64 {
    let (secs, micros): (i64, i64) = query(conn, &["TIME"]).await;
    secs * 1000 + micros / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_running_task_keeps_its_lease_and_is_not_handed_out_twice() {
    let Some(backend) = connect().await else { return };
    // Renewed every 500 ms.
    let backend = backend.lease(Duration::from_millis(1500));
    let thief = backend.clone();
    let mut conn = raw().await;
    let inflight = format!("{}inflight", backend.key_prefix());
    let app =
        QueueTasks::builder(backend.app_name().to_owned()).task::<OutlivesItsLease>().backend(backend).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let task = app.add_task("outlives_its_lease", ()).await.unwrap();
    let uuid = task.uuid().to_string();
    assert!(
        support::eventually(WAIT, || LONG_RUNS.load(std::sync::atomic::Ordering::SeqCst) == 1).await,
        "the task never started"
    );
    // Past the deadline of the lease it holds now, on the server's clock,
    // the task still runs under a renewed lease.
    let deadline: i64 = query(&mut conn, &["ZSCORE", &inflight, &uuid]).await;
    let give_up = Instant::now() + WAIT;
    while server_ms(&mut conn).await <= deadline {
        assert!(Instant::now() < give_up, "the server's clock stands still");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stolen = fetch_within(&thief, 10, Duration::from_millis(200)).await;
    assert!(stolen.is_empty(), "a running task was handed out again: {stolen:?}");
    LONG_RELEASE.notify_one();
    let done = app.wait(task.uuid(), WAIT).await.unwrap();
    assert_eq!((done.status, done.result), (TaskStatus::Success, Some(json!(7))));
    worker.shutdown().await;
    assert_eq!(LONG_RUNS.load(std::sync::atomic::Ordering::SeqCst), 1, "the task ran more than once");
    app.flush_all().await.unwrap();
}
