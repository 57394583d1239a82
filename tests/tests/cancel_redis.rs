//! Cancellation on the Redis backend, across backend instances (processes):
//! requests that outlive their worker, pub/sub delivery and its fallback,
//! and decisions that survive restarts. `QTASKS_REDIS_URL`, or
//! redis://127.0.0.1:6379; ignored without a server (see `tests/build.rs`),
//! except under CI. The backend-agnostic cases are in `conformance.rs`.

mod support;

use qtasks::backend::CancelOutcome;
use qtasks::{
    Backend, CancelToken, NewTask, QueueTasks, RedisBackend, TaskContext, TaskRecord, TaskStatus, json, task,
};
use redis::aio::MultiplexedConnection;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

const WAIT: Duration = support::HANG;

/// How many times each `counted` task ran.
static RUNS: Mutex<BTreeMap<Uuid, u32>> = Mutex::new(BTreeMap::new());

#[task]
async fn counted(ctx: TaskContext) {
    *RUNS.lock().unwrap().entry(ctx.uuid()).or_default() += 1;
}

fn runs(uuid: Uuid) -> u32 {
    RUNS.lock().unwrap().get(&uuid).copied().unwrap_or(0)
}

/// A fresh app name, and a first backend for it (`None`: skipped).
async fn first() -> Option<(String, RedisBackend)> {
    let app = format!("qtasks-cancel-{}", Uuid::new_v4());
    let backend = support::connect_redis("cancel_redis", &app).await?;
    Some((app, backend))
}

/// Another backend instance for `app`: what another process would hold.
async fn another(app: &str) -> RedisBackend {
    RedisBackend::connect(&support::redis_url())
        .await
        .map(|b| b.for_app(app))
        .expect("the server answered a moment ago")
}

async fn raw() -> MultiplexedConnection {
    redis::Client::open(support::redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn query<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(conn).await.unwrap()
}

fn record(name: &str) -> TaskRecord {
    TaskRecord::new(Uuid::new_v4(), NewTask { priority: 0, ..NewTask::new(name.to_owned(), json!([])) })
}

/// Fetches at most `max` tasks, or none if nothing comes within `within`.
async fn fetch_within(backend: &RedisBackend, max: usize, within: Duration) -> Vec<qtasks::TaskMessage> {
    let mut out = Vec::new();
    if let Ok(result) =
        tokio::time::timeout(within, backend.fetch(&qtasks::backend::Fetch::default_queue(), max, &mut out)).await
    {
        result.unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_cancel_request_for_a_task_whose_worker_died_ends_it_at_lease_expiry() {
    let Some((app, client)) = first().await else { return };
    let lease = Duration::from_secs(1);
    let dead = another(&app).await.lease(lease);
    let survivor = another(&app).await.lease(lease);
    let mut conn = raw().await;
    let prefix = client.key_prefix().to_owned();

    let task = record("victim");
    client.enqueue(&task).await.unwrap();
    // Read before the fetch: the lease that fetch starts cannot start earlier.
    let before_fetch = Instant::now();
    // The "dead" worker takes it and never finishes.
    assert_eq!(fetch_within(&dead, 1, WAIT).await[0].uuid, task.uuid);
    assert_eq!(client.cancel(task.uuid, "worker gone").await.unwrap(), CancelOutcome::Requested);
    assert_eq!(client.cancel(task.uuid, "second reason").await.unwrap(), CancelOutcome::Requested);
    let key = format!("{prefix}task:{}", task.uuid);
    assert_eq!(query::<String>(&mut conn, &["HGET", &key, "cancel"]).await, "worker gone", "the first reason wins");
    assert_eq!(client.get(task.uuid).await.unwrap().unwrap().status, TaskStatus::Process);

    // Another worker's fetch ends it at lease expiry instead of handing it
    // out; that fetch goes on until the waiter has the result.
    let mut handed_out = Vec::new();
    let from = qtasks::backend::Fetch::default_queue();
    let waited = tokio::select! {
        waited = client.wait(task.uuid, WAIT) => Some(waited.unwrap().expect("the waiter was woken")),
        fetched = survivor.fetch(&from, 10, &mut handed_out) => {
            fetched.unwrap();
            None
        }
    };
    assert!(handed_out.is_empty(), "a cancelled task was handed out again: {handed_out:?}");
    let waited = waited.expect("the fetch returned without a task");
    // Not before the lease expired: a lower bound that a slow machine only
    // makes easier (the server's clock counts whole milliseconds).
    let ended_within = before_fetch.elapsed();
    assert!(ended_within >= lease - Duration::from_millis(5), "ended {ended_within:?} after the fetch");
    assert_eq!(waited.status, TaskStatus::Cancel);
    assert_eq!(waited.error.as_deref(), Some("worker gone"));
    assert!(waited.result.is_none());

    for (cmd, name) in [("ZCARD", "inflight"), ("HLEN", "held"), ("ZCARD", "queue")] {
        assert_eq!(query::<i64>(&mut conn, &[cmd, &format!("{prefix}{name}")]).await, 0, "{name}");
    }
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
    assert_eq!(stats.tasks["victim"].cancel, 1, "{stats:?}");
    assert!(fetch_within(&survivor, 10, lease + Duration::from_millis(500)).await.is_empty());
    assert_eq!(client.cancel(task.uuid, "again").await.unwrap(), CancelOutcome::Finished(TaskStatus::Cancel));
    client.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_requeued_task_with_a_cancel_request_is_ended_not_handed_out() {
    let Some((app, client)) = first().await else { return };
    let dead = another(&app).await;
    let mut conn = raw().await;
    let prefix = client.key_prefix().to_owned();

    let task = record("requeued");
    client.enqueue(&task).await.unwrap();
    assert_eq!(fetch_within(&dead, 1, WAIT).await[0].uuid, task.uuid);
    // What an expired lease does: the task goes back to the queue, still `process`.
    let id = task.uuid.to_string();
    let entry: String = query(&mut conn, &["HGET", &format!("{prefix}held"), &id]).await;
    let _: i64 = query(&mut conn, &["ZREM", &format!("{prefix}inflight"), &id]).await;
    let _: i64 = query(&mut conn, &["ZADD", &format!("{prefix}queue"), "0", &entry]).await;
    assert_eq!(client.cancel(task.uuid, "requeued, then cancelled").await.unwrap(), CancelOutcome::Requested);

    let next = record("next");
    client.enqueue(&next).await.unwrap();
    let fetched = fetch_within(&client, 10, WAIT).await;
    assert_eq!(fetched.iter().map(|m| m.uuid).collect::<Vec<_>>(), [next.uuid], "only the other task is handed out");
    let ended = client.wait(task.uuid, WAIT).await.unwrap().expect("ended");
    assert_eq!((ended.status, ended.error.as_deref()), (TaskStatus::Cancel, Some("requeued, then cancelled")));
    let stats = client.stats().await.unwrap();
    assert_eq!((stats.queued, stats.in_flight), (0, 1), "{stats:?}");
    client.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_watched_token_fires_on_a_cancel_from_another_instance() {
    let Some((app, client)) = first().await else { return };
    let worker = another(&app).await;
    let task = record("watched");
    client.enqueue(&task).await.unwrap();
    let taken = fetch_within(&worker, 1, WAIT).await;
    assert_eq!(taken[0].uuid, task.uuid);
    let token = CancelToken::new();
    worker.watch_cancel(task.uuid, &token);
    // The fetch started the worker's subscription (the only one of this
    // app): once the server counts it, every request published reaches it.
    let prefix = worker.key_prefix().to_owned();
    support::until_subscribed(&format!("{prefix}cancel"), 1).await;
    assert!(!token.is_cancelled());
    let mut conn = raw().await;
    let inflight = format!("{prefix}inflight");
    let lease: f64 = query(&mut conn, &["ZSCORE", &inflight, &task.uuid.to_string()]).await;

    assert_eq!(client.cancel(task.uuid, "stop, please").await.unwrap(), CancelOutcome::Requested);
    tokio::time::timeout(WAIT, token.cancelled()).await.expect("the token never fired");
    // Pub/sub, not a lease renewal (which also delivers requests): the
    // lease is the one the fetch set, renewed by nobody.
    let after: f64 = query(&mut conn, &["ZSCORE", &inflight, &task.uuid.to_string()]).await;
    assert_eq!(after, lease, "the lease was renewed");
    assert_eq!(token.reason(), Some("stop, please"));
    worker.unwatch_cancel(task.uuid);

    let mut ended = TaskRecord::from_message(&taken[0], TaskStatus::Cancel);
    ended.error = token.reason().map(str::to_owned);
    worker.finish(&ended).await.unwrap();
    let done = client.wait(task.uuid, WAIT).await.unwrap().expect("ended");
    assert_eq!((done.status, done.error.as_deref()), (TaskStatus::Cancel, Some("stop, please")));
    client.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn lease_renewal_delivers_a_cancel_request_that_pub_sub_missed() {
    let Some((app, client)) = first().await else { return };
    let fetcher = another(&app).await;
    let task = record("missed");
    client.enqueue(&task).await.unwrap();
    assert_eq!(fetch_within(&fetcher, 1, WAIT).await[0].uuid, task.uuid);
    // Published while `late` had no subscription: lost for it.
    assert_eq!(client.cancel(task.uuid, "you missed this").await.unwrap(), CancelOutcome::Requested);
    let late = another(&app).await;
    let token = CancelToken::new();
    late.watch_cancel(task.uuid, &token);
    // Both `fetcher`'s subscription and `late`'s are live: a message still
    // on its way would have arrived.
    support::until_subscribed(&format!("{}cancel", late.key_prefix()), 2).await;
    assert!(!token.is_cancelled(), "fired without a message");

    late.extend_lease(task.uuid).await.unwrap();
    assert!(token.is_cancelled(), "the lease renewal did not deliver the request");
    assert_eq!(token.reason(), Some("you missed this"));
    late.unwatch_cancel(task.uuid);
    client.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_cancelled_queued_task_leaves_the_queue_and_never_runs_after_a_restart() {
    let Some((app, client)) = first().await else { return };
    let client = client.retention(Some(Duration::from_secs(60)));
    let mut conn = raw().await;
    let prefix = client.key_prefix().to_owned();
    let queued = record("counted");
    let delayed = record("counted");
    let delay = Duration::from_millis(200);
    client.enqueue(&queued).await.unwrap();
    client.enqueue_delayed(&delayed, delay).await.unwrap();
    // The server set the due time before this instant: due by `due`.
    let due = tokio::time::Instant::now() + delay;
    assert_eq!(client.stats().await.unwrap().queued, 2);
    for task in [&queued, &delayed] {
        assert_eq!(client.cancel(task.uuid, "cancelled with no worker").await.unwrap(), CancelOutcome::Cancelled);
        let key = format!("{prefix}task:{}", task.uuid);
        let ttl = query::<i64>(&mut conn, &["PTTL", &key]).await;
        assert!(0 < ttl && ttl <= 60_000, "the cancel record keeps the retention: ttl {ttl}");
        assert_eq!(query::<i64>(&mut conn, &["HEXISTS", &key, "entry"]).await, 0);
    }
    for name in ["queue", "delayed"] {
        assert_eq!(query::<i64>(&mut conn, &["ZCARD", &format!("{prefix}{name}")]).await, 0, "{name}");
    }
    assert_eq!(client.stats().await.unwrap().tasks["counted"].cancel, 2);
    drop(client);

    // "Restart": new instances, a worker. The probe is enqueued past the
    // delay, so the fetch that took it would have promoted the delayed task
    // (ahead of it: enqueued first) had its entry still been there.
    let backend = another(&app).await;
    let qt = QueueTasks::builder(app.clone()).task::<Counted>().backend(backend.clone()).build().unwrap();
    let worker = qt.worker().start().await.unwrap();
    tokio::time::sleep_until(due + Duration::from_millis(10)).await;
    let probe = qt.add_task("counted", ()).await.unwrap().record(WAIT).await.expect("the worker runs");
    assert_eq!(probe.status, TaskStatus::Success);
    worker.shutdown().await;
    for task in [&queued, &delayed] {
        assert_eq!(runs(task.uuid), 0, "a cancelled task ran");
        let stored = backend.get(task.uuid).await.unwrap().unwrap();
        assert_eq!((stored.status, stored.error.as_deref()), (TaskStatus::Cancel, Some("cancelled with no worker")));
    }
    assert_eq!(runs(probe.uuid), 1);
    backend.flush().await.unwrap();
}
