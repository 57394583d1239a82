//! Named queues, routing, pausing, limits, unique keys and bulk enqueue,
//! through apps and workers (the backend-level contract is in the
//! conformance suite). Each scenario is generic over the backend and runs
//! on the memory backend and on Redis (an app name of its own per test,
//! flushed afterwards; ignored without a server at build time).

mod support;

use qtasks::{Backend, Error, MemoryBackend, Queue, QueueTasks, TaskStatus, json, task};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::HANG;

// ---------------------------------------------------------------------------
// Tasks: each records what it saw under a `run` key, one per test.
// ---------------------------------------------------------------------------

/// Per run key: (running now, most running at once).
static RUNNING: Mutex<BTreeMap<String, (usize, usize)>> = Mutex::new(BTreeMap::new());
/// Per run key: what ran, in order.
static LOG: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());
/// Per run key: when each run started.
static STARTS: Mutex<BTreeMap<String, Vec<Instant>>> = Mutex::new(BTreeMap::new());

fn enter(key: &str) {
    let mut running = RUNNING.lock().unwrap();
    let (now, max) = running.entry(key.to_owned()).or_default();
    *now += 1;
    *max = (*max).max(*now);
}

fn leave(key: &str) {
    RUNNING.lock().unwrap().get_mut(key).expect("entered before").0 -= 1;
}

fn max_running(key: &str) -> usize {
    RUNNING.lock().unwrap().get(key).map_or(0, |(_, max)| *max)
}

fn log(run: &str, what: String) {
    LOG.lock().unwrap().entry(run.to_owned()).or_default().push(what);
}

fn logged(run: &str) -> Vec<String> {
    LOG.lock().unwrap().get(run).cloned().unwrap_or_default()
}

/// Sleeps `ms` while counted as running under `run`.
async fn hold(run: &str, ms: u64) {
    enter(run);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    leave(run);
}

#[task(queue = "emails")]
async fn email(run: String, n: i64) -> i64 {
    log(&run, format!("email {n}"));
    n
}

#[task]
async fn plain(run: String, n: i64) -> i64 {
    log(&run, format!("plain {n}"));
    n
}

#[task(queue = "low")]
async fn chore(run: String, n: i64) -> i64 {
    log(&run, format!("chore {n}"));
    n
}

#[task(concurrency = 3)]
async fn limited(run: String, ms: u64) {
    hold(&run, ms).await;
}

#[task(concurrency_key = user, key_concurrency = 1)]
async fn per_user(run: String, user: u64, ms: u64) {
    hold(&format!("{run}:{user}"), ms).await;
}

#[task(rate = "50/s")]
async fn rated(run: String) {
    STARTS.lock().unwrap().entry(run).or_default().push(Instant::now());
}

#[task(unique)]
async fn report(run: String, day: String) -> String {
    log(&run, format!("report {day}"));
    day
}

#[task(unique_key = [order_id], unique_for = 60)]
async fn invoice(run: String, order_id: u64, note: String) -> String {
    log(&run, format!("invoice {order_id} {note}"));
    note
}

#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// The app of these tests on `backend`, its queues declared.
macro_rules! app {
    ($backend:expr) => {
        QueueTasks::builder(support::app_name("queues-test", &$backend))
            .tasks::<(Email, Plain, Chore, Limited, PerUser, Rated, Report, Invoice, Add)>()
            .queue(Queue::new("emails"))
            .queue(Queue::new("low").concurrency(2))
            .queue(Queue::new("bulk"))
            .backend($backend)
            .build()
            .unwrap()
    };
}

/// A key of its own for each run of a scenario.
fn run_key(name: &str) -> String {
    format!("{name}-{}", qtasks::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// `#[task(queue)]` routes; an enqueue overrides it; a worker takes from
/// its queues only, in strict order.
pub async fn routing<B: Backend + Clone>(backend: B) {
    let app = app!(backend);
    let run = run_key("routing");
    let mut handles = Vec::new();
    for n in 0..3 {
        handles.push(app.enqueue(Plain::call(run.clone(), n)).await.unwrap());
    }
    for n in 0..3 {
        handles.push(app.enqueue(Email::call(run.clone(), n)).await.unwrap());
    }
    let moved = app.enqueue(Plain::call(run.clone(), 9)).queue("low").await.unwrap();
    for handle in &handles[3..] {
        assert_eq!(app.get(handle.uuid()).await.unwrap().unwrap().queue, "emails");
    }
    assert_eq!(app.get(moved.uuid()).await.unwrap().unwrap().queue, "low", "an enqueue overrides the queue");

    // One slot, emails first: the three emails run before any plain task.
    let worker = app.worker().max_tasks_process(1).queues(["emails", "default"]).start().await.unwrap();
    for handle in &handles {
        handle.record(HANG).await.unwrap();
    }
    let order = logged(&run);
    assert_eq!(order[..3], ["email 0", "email 1", "email 2"], "strict order: {order:?}");
    assert_eq!(order[3..], ["plain 0", "plain 1", "plain 2"], "strict order: {order:?}");
    // The task sent to `low` waits there: this worker does not take from it.
    let low = app.queues().await.unwrap().into_iter().find(|q| q.name == "low").unwrap();
    assert_eq!(low.depth, 1, "{low:?}");
    worker.shutdown().await;
    let worker = app.worker().queues(["low"]).start().await.unwrap();
    assert_eq!(moved.result(HANG).await.unwrap(), 9);
    worker.shutdown().await;
    app.flush_all().await.unwrap();
}

/// Weighted queues: a busy queue does not starve the other.
pub async fn weighted<B: Backend + Clone>(backend: B) {
    let app = app!(backend);
    let run = run_key("weighted");
    let mut handles = Vec::new();
    for n in 0..10 {
        handles.push(app.enqueue(Plain::call(run.clone(), n)).await.unwrap());
        handles.push(app.enqueue(Email::call(run.clone(), n)).await.unwrap());
    }
    let worker =
        app.worker().max_tasks_process(1).weighted_queues([("default", 1), ("emails", 1)]).start().await.unwrap();
    for handle in &handles {
        handle.record(HANG).await.unwrap();
    }
    let order = logged(&run);
    let first = &order[..6];
    assert!(
        first.iter().any(|o| o.starts_with("email")) && first.iter().any(|o| o.starts_with("plain")),
        "weighted 1:1, the first six runs came from one queue: {order:?}"
    );
    worker.shutdown().await;
    app.flush_all().await.unwrap();
}

/// A paused queue keeps its tasks (enqueueing works) while a worker runs
/// the others; resumed, its tasks run.
pub async fn pause_and_resume<B: Backend + Clone>(backend: B) {
    let app = app!(backend);
    let run = run_key("pause");
    app.pause_queue("emails").await.unwrap();
    let worker = app.worker().max_tasks_process(1).queues(["emails", "default"]).start().await.unwrap();
    let paused = app.enqueue(Email::call(run.clone(), 1)).await.unwrap();
    // A task of the next queue runs: the worker is past the paused one.
    let other = app.enqueue(Plain::call(run.clone(), 2)).await.unwrap();
    assert_eq!(other.result(HANG).await.unwrap(), 2);
    let record = app.get(paused.uuid()).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::New, "a task of a paused queue ran: {record:?}");
    let emails = app.queues().await.unwrap().into_iter().find(|q| q.name == "emails").unwrap();
    assert!(emails.paused && emails.depth == 1, "{emails:?}");
    app.resume_queue("emails").await.unwrap();
    assert_eq!(paused.result(HANG).await.unwrap(), 1);
    assert_eq!(logged(&run), ["plain 2", "email 1"]);
    let unknown = app.pause_queue("nope").await.unwrap_err();
    assert!(matches!(unknown, Error::UnknownQueue { .. }), "{unknown}");
    worker.shutdown().await;
    app.flush_all().await.unwrap();
}

/// 4 workers × 16 slots and a task limited to 3 at once: never more than
/// 3 run, measured by the tasks themselves; a queue limit (2) the same.
pub async fn concurrency_across_workers<B: Backend + Clone>(backend: B) {
    let app = app!(backend);
    let run = run_key("concurrency");
    let mut workers = Vec::new();
    for _ in 0..4 {
        workers.push(app.worker().max_tasks_process(16).start().await.unwrap());
    }
    let handles = app.add_tasks((0..48).map(|_| Limited::call(run.clone(), 20))).await.unwrap();
    for handle in &handles {
        let record = handle.record(HANG).await.unwrap();
        assert_eq!(record.status, TaskStatus::Success, "{record:?}");
    }
    let max = max_running(&run);
    assert!((1..=3).contains(&max), "{max} ran at once under a limit of 3");
    let counts = app.queue_stats().await.unwrap().tasks["limited"];
    assert_eq!((counts.success, counts.retry, counts.error), (48, 0, 0), "waiting for a slot counts as nothing");

    // Per key: at most one per user, users in parallel.
    let mut calls = Vec::new();
    for user in 0..3 {
        for _ in 0..5 {
            calls.push(PerUser::call(run.clone(), user, 10));
        }
    }
    for handle in app.add_tasks(calls).await.unwrap() {
        handle.record(HANG).await.unwrap();
    }
    for user in 0..3 {
        let max = max_running(&format!("{run}:{user}"));
        assert_eq!(max, 1, "user {user}: {max} at once under a key limit of 1");
    }
    for worker in workers {
        worker.shutdown().await;
    }
    app.flush_all().await.unwrap();
}

/// A rate of 50/s across workers: in any window of T seconds at most a
/// full bucket (50) plus 50 per second started, measured by the tasks.
pub async fn rate_across_workers<B: Backend + Clone>(backend: B) {
    const TASKS: usize = 300;
    let app = app!(backend);
    let run = run_key("rate");
    let handles = app.add_tasks((0..TASKS).map(|_| Rated::call(run.clone()))).await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..2 {
        workers.push(app.worker().max_tasks_process(16).start().await.unwrap());
    }
    for handle in &handles {
        handle.record(HANG).await.unwrap();
    }
    let mut starts = STARTS.lock().unwrap().remove(&run).unwrap();
    starts.sort();
    assert_eq!(starts.len(), TASKS);
    for window in [0.5, 1.0, 2.0, 5.0] {
        let bound = 50.0 + 50.0 * window + 1.0;
        for (i, start) in starts.iter().enumerate() {
            let end = *start + Duration::from_secs_f64(window);
            let within = starts[i..].iter().take_while(|s| **s <= end).count();
            assert!(within as f64 <= bound, "{within} starts within {window} s (bound {bound})");
        }
    }
    let span = starts[TASKS - 1].duration_since(starts[0]);
    eprintln!("rate 50/s: {TASKS} tasks started over {span:?} ({:.1}/s after the burst)", 250.0 / span.as_secs_f64());
    for worker in workers {
        worker.shutdown().await;
    }
    app.flush_all().await.unwrap();
}

/// Unique tasks: 8 clients at once enqueue one task; a key holds while
/// queued and running, and within its window after the end.
pub async fn unique_keys<B: Backend + Clone>(backend: B) {
    let app = app!(backend);
    let run = run_key("unique");
    let racers = (0..8).map(|_| {
        let client = app.client();
        let run = run.clone();
        tokio::spawn(async move { client.enqueue(Report::call(run, "2026-12-06".into())).await.map(|h| h.uuid()) })
    });
    let mut ids = Vec::new();
    for racer in racers {
        ids.push(racer.await.unwrap().unwrap());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "8 enqueues of one unique task gave {ids:?}");
    let other_day = app.enqueue(Report::call(run.clone(), "2026-12-07".into())).await.unwrap();
    assert_ne!(other_day.uuid(), ids[0], "other arguments, another task");

    // A key given at enqueue, held while the task is queued (before any
    // worker starts: a task without a window frees its key when it ends).
    let a = app.enqueue(Add::call(1, 2)).unique_key("once").await.unwrap();
    let b = app.enqueue(Add::call(3, 4)).unique_key("once").await.unwrap();
    assert_eq!(a.uuid(), b.uuid());

    let worker = app.worker().start().await.unwrap();
    assert_eq!(app.wait(ids[0], HANG).await.unwrap().status, TaskStatus::Success);
    other_day.record(HANG).await.unwrap();
    // Window 60 s on the order id only: the note does not matter.
    let first = app.enqueue(Invoice::call(run.clone(), 7, "first".into())).await.unwrap();
    first.record(HANG).await.unwrap();
    let again = app.enqueue(Invoice::call(run.clone(), 7, "again".into())).await.unwrap();
    assert_eq!(again.uuid(), first.uuid(), "within the window after the end");
    assert_eq!(a.result(HANG).await.unwrap(), 3);
    let mut ran = logged(&run);
    ran.sort();
    assert_eq!(ran, ["invoice 7 first", "report 2026-12-06", "report 2026-12-07"]);

    // A key that cannot be computed is a clear error, and nothing is stored.
    let missing = app.add_task("invoice", json!({"run": run, "note": "x"})).await.unwrap_err();
    assert!(matches!(missing, Error::MissingKey { .. }), "{missing}");
    assert!(missing.to_string().contains("order_id"), "{missing}");
    let missing = app.add_task("per_user", json!([run, 1])).await.err();
    assert!(missing.is_none_or(|e| matches!(e, Error::MissingKey { .. })));
    worker.shutdown().await;
    app.flush_all().await.unwrap();
}

/// `add_tasks`: 2,000 tasks in one call, handles in order, each result its own.
pub async fn bulk<B: Backend + Clone>(backend: B) {
    let app = app!(backend);
    let handles = app.add_tasks((0..2000).map(|i| Add::call(i, 1).queue("bulk"))).await.unwrap();
    assert_eq!(handles.len(), 2000);
    let bulk = app.queues().await.unwrap().into_iter().find(|q| q.name == "bulk").unwrap();
    assert_eq!(bulk.depth, 2000, "{bulk:?}");
    let worker = app.worker().max_tasks_process(32).start().await.unwrap();
    for (i, handle) in handles.iter().enumerate() {
        assert_eq!(handle.result(HANG).await.unwrap(), i as i64 + 1);
    }
    // An empty batch, and a batch whose call cannot be encoded enqueues nothing.
    assert!(app.add_tasks(Vec::<qtasks::Signature<i64>>::new()).await.unwrap().is_empty());
    worker.shutdown().await;
    app.flush_all().await.unwrap();
}

/// Delayed tasks wait in the backend, listed as delayed, and `inspect`
/// shows every queue with its limits.
pub async fn delayed_and_inspect<B: Backend + Clone>(backend: B) {
    let app = app!(backend);
    let run = run_key("delayed");
    let later = app.enqueue(Chore::call(run.clone(), 1)).delay(Duration::from_secs(3600)).await.unwrap();
    let low = app.queues().await.unwrap().into_iter().find(|q| q.name == "low").unwrap();
    assert_eq!((low.depth, low.delayed), (0, 1), "{low:?}");
    assert_eq!(low.limit.concurrency, Some(2));
    let text = app.inspect().await.unwrap().to_string();
    for line in [&["queue", "low"][..], &["delayed", "1"], &["limits", "concurrency", "2"], &["queue", "emails"]] {
        assert!(text.lines().any(|l| l.split_whitespace().eq(line.iter().copied())), "no {line:?} in:\n{text}");
    }
    assert_eq!(app.cancel(later.uuid(), "test").await.unwrap(), qtasks::backend::CancelOutcome::Cancelled);
    app.flush_all().await.unwrap();
}

// ---------------------------------------------------------------------------
// On the memory backend
// ---------------------------------------------------------------------------

macro_rules! on_memory {
    ($($scenario:ident => $test:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            $scenario(MemoryBackend::new()).await;
        }
    )*};
}

on_memory! {
    routing => memory_routing;
    weighted => memory_weighted;
    pause_and_resume => memory_pause_and_resume;
    concurrency_across_workers => memory_concurrency_across_workers;
    rate_across_workers => memory_rate_across_workers;
    unique_keys => memory_unique_keys;
    bulk => memory_bulk;
    delayed_and_inspect => memory_delayed_and_inspect;
}

// ---------------------------------------------------------------------------
// On Redis: every worker of a scenario shares the limits through the server
// ---------------------------------------------------------------------------

macro_rules! on_redis {
    ($($scenario:ident => $test:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
        async fn $test() {
            let app = format!("qtasks-test-queues-{}-{}", stringify!($scenario), qtasks::Uuid::new_v4());
            let Some(backend) = support::connect_redis(stringify!($test), &app).await else { return };
            $scenario(backend.clone()).await;
            let _ = backend.flush().await;
        }
    )*};
}

on_redis! {
    routing => redis_routing;
    weighted => redis_weighted;
    pause_and_resume => redis_pause_and_resume;
    concurrency_across_workers => redis_concurrency_across_workers;
    rate_across_workers => redis_rate_across_workers;
    unique_keys => redis_unique_keys;
    bulk => redis_bulk;
    delayed_and_inspect => redis_delayed_and_inspect;
}

// ---------------------------------------------------------------------------
// On a Redis Cluster: each queue on the node of its hash tag (see
// "Redis Cluster" on `RedisBackend`); the scenarios hold each task name to
// one queue, so their limits are exact there too
// ---------------------------------------------------------------------------

macro_rules! on_redis_cluster {
    ($($scenario:ident => $test:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(redis_cluster_unreachable, ignore = "the Redis Cluster is not reachable; see the build warning")]
        async fn $test() {
            let app = format!("qtasks-test-queues-{}-{}", stringify!($scenario), qtasks::Uuid::new_v4());
            let Some(backend) = support::connect_redis_cluster(stringify!($test), &app).await else { return };
            $scenario(backend.clone()).await;
            let _ = backend.flush().await;
        }
    )*};
}

on_redis_cluster! {
    routing => cluster_routing;
    weighted => cluster_weighted;
    pause_and_resume => cluster_pause_and_resume;
    concurrency_across_workers => cluster_concurrency_across_workers;
    rate_across_workers => cluster_rate_across_workers;
    unique_keys => cluster_unique_keys;
    bulk => cluster_bulk;
    delayed_and_inspect => cluster_delayed_and_inspect;
}
