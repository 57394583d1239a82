//! The Redis backend on a Redis Cluster (`redis+cluster://`): the
//! conformance suite's checks, each queue's keys on one node and two
//! queues on two masters, and a worker taking tasks from two queues that
//! live on different masters.
//!
//! The cluster: `QTASKS_REDIS_CLUSTER_URL`, or the three masters on
//! 127.0.0.1:7001-7003 that `scripts/redis-cluster` starts (`scripts/test`
//! runs it). Without a reachable cluster at build time these tests are
//! ignored (`cfg(redis_cluster_unreachable)`, set by `tests/build.rs`),
//! and fail under CI. Each test uses an app name of its own and flushes
//! only that app's keys.

mod support;

use qtasks::testing::conformance::{self, ConformanceError, LEASE, SHORT_LEASE};
use qtasks::{Backend, Queue, QueueTasks, RedisBackend, json, task};
use redis::AsyncCommands;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use support::HANG;
use uuid::Uuid;

/// Runs `check` on the cluster for a fresh app whose taken tasks are held
/// for `lease`, then flushes the app's keys (also when the check failed).
async fn on_cluster<F, Fut>(test: &str, lease: Duration, check: F)
where
    F: FnOnce(RedisBackend) -> Fut,
    Fut: Future<Output = Result<(), ConformanceError>> + Send + 'static,
{
    let app = format!("qtasks-cluster-{}-{}", test, Uuid::new_v4());
    let Some(backend) = support::connect_redis_cluster(test, &app).await else { return };
    support::check_then_flush(test, backend.lease(lease), check).await;
}

/// `check(lease) => test;`: the conformance check `check` on the cluster.
macro_rules! conformance {
    ($($check:ident($lease:ident) => $test:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(redis_cluster_unreachable, ignore = "the Redis Cluster is not reachable; see the build warning")]
        async fn $test() {
            on_cluster(stringify!($test), $lease, conformance::$check).await;
        }
    )*};
}

conformance! {
    // Queues.
    order(LEASE) => cluster_order;
    named_queues(LEASE) => cluster_named_queues;
    pause(LEASE) => cluster_pause;
    enqueue_many(LEASE) => cluster_enqueue_many;
    delayed(LEASE) => cluster_delayed;
    stats(LEASE) => cluster_stats;
    minute_counts(LEASE) => cluster_minute_counts;
    // Leases.
    leases(SHORT_LEASE) => cluster_leases;
    extend_lease(LEASE) => cluster_extend_lease;
    release(LEASE) => cluster_release;
    // Limits.
    concurrency_limits(LEASE) => cluster_concurrency_limits;
    limits_and_leases(SHORT_LEASE) => cluster_limits_and_leases;
    rate_limits(LEASE) => cluster_rate_limits;
    unique(LEASE) => cluster_unique;
    // Records, waits and cancels, which find a task by its uuid alone.
    statuses(LEASE) => cluster_statuses;
    waiting(LEASE) => cluster_waiting;
    cancel_queued(LEASE) => cluster_cancel_queued;
    cancel_running(LEASE) => cluster_cancel_running;
    idempotent_enqueue(LEASE) => cluster_idempotent_enqueue;
    claim(LEASE) => cluster_claim;
    listing(LEASE) => cluster_listing;
    // The rest of the suite.
    status_only_moves_forward(LEASE) => cluster_status_only_moves_forward;
    results(LEASE) => cluster_results;
    null_results(LEASE) => cluster_null_results;
    many_tasks(LEASE) => cluster_many_tasks;
    bad_input(LEASE) => cluster_bad_input;
    cancel_finished_and_unknown(LEASE) => cluster_cancel_finished_and_unknown;
}

/// Every check of the suite is above.
#[test]
fn every_conformance_check_runs_on_the_cluster() {
    let source = include_str!("redis_cluster.rs");
    for check in conformance::CHECKS {
        assert!(source.contains(&format!("    {check}(")), "conformance check `{check}` does not run on the cluster");
    }
}

/// `AnyBackend` (so the CLI and `QTASKS_BROKER_URL`) takes the cluster URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_cluster_unreachable, ignore = "the Redis Cluster is not reachable; see the build warning")]
async fn any_backend_takes_a_cluster_url() {
    let url = support::redis_cluster_url();
    let backend = match qtasks::AnyBackend::connect(&url).await {
        Ok(backend) => backend.for_app(&format!("qtasks-cluster-any-{}", Uuid::new_v4())),
        Err(e) => return support::unreachable("any_backend_takes_a_cluster_url", &url, &e.to_string()),
    };
    assert_eq!(backend.kind(), "redis");
    let task = qtasks::TaskRecord::new(Uuid::new_v4(), qtasks::NewTask::new("echo", json!([1])));
    backend.enqueue(&task).await.unwrap();
    assert_eq!(backend.get(task.uuid).await.unwrap().map(|t| t.uuid), Some(task.uuid));
    backend.flush().await.unwrap();
    assert_eq!(backend.get(task.uuid).await.unwrap(), None);
}

/// The masters of the cluster: (address, slot ranges).
async fn masters(node: &str) -> Vec<(String, Vec<(u16, u16)>)> {
    let mut conn = redis::Client::open(node).unwrap().get_multiplexed_async_connection().await.unwrap();
    let slots: Vec<(u16, u16, (String, u16))> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async::<Vec<redis::Value>>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|range| {
            let redis::Value::Array(range) = range else { panic!("CLUSTER SLOTS: {range:?}") };
            let start: u16 = redis::from_redis_value_ref(&range[0]).unwrap();
            let end: u16 = redis::from_redis_value_ref(&range[1]).unwrap();
            let redis::Value::Array(master) = &range[2] else { panic!("CLUSTER SLOTS: {range:?}") };
            let host: String = redis::from_redis_value_ref(&master[0]).unwrap();
            let port: u16 = redis::from_redis_value_ref(&master[1]).unwrap();
            (start, end, (host, port))
        })
        .collect();
    let mut by_master: BTreeMap<String, Vec<(u16, u16)>> = BTreeMap::new();
    for (start, end, (host, port)) in slots {
        by_master.entry(format!("redis://{host}:{port}")).or_default().push((start, end));
    }
    by_master.into_iter().collect()
}

/// The first node of the cluster URL, as a `redis://` URL.
fn first_node() -> String {
    let url = support::redis_cluster_url();
    let rest = url.split_once("://").unwrap().1;
    format!("redis://{}", rest.split([',', '/', '?']).next().unwrap())
}

/// The prefix of queue `queue` of `app` (see "Redis Cluster" on `RedisBackend`).
fn queue_prefix(app: &str, queue: &str) -> String {
    format!("qtasks:{{{}:{app}:{queue}}}:", app.len())
}

/// The master serving the slot of `key`.
async fn master_of(masters: &[(String, Vec<(u16, u16)>)], key: &str) -> String {
    let mut conn = redis::Client::open(first_node()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut conn).await.unwrap();
    let (master, _) = masters
        .iter()
        .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
        .unwrap_or_else(|| panic!("no master serves slot {slot}"));
    master.clone()
}

/// Two queue names of `app` whose keys live on two different masters.
async fn queues_on_two_masters(app: &str) -> (String, String) {
    let masters = masters(&first_node()).await;
    assert!(masters.len() >= 2, "a cluster of one master: {masters:?}");
    let first = "alpha".to_owned();
    let at = master_of(&masters, &queue_prefix(app, &first)).await;
    for n in 0.. {
        let other = format!("beta{n}");
        if master_of(&masters, &queue_prefix(app, &other)).await != at {
            return (first, other);
        }
    }
    unreachable!()
}

/// Every key starting with `prefix` on the node at `node`.
async fn keys_on(node: &str, prefix: &str) -> Vec<String> {
    let mut conn = redis::Client::open(node).unwrap().get_multiplexed_async_connection().await.unwrap();
    let pattern = format!("{}*", prefix.replace('*', "\\*").replace('?', "\\?").replace('[', "\\["));
    let mut keys: Vec<String> = Vec::new();
    let mut iter: redis::AsyncIter<String> = conn.scan_match(&pattern).await.unwrap();
    while let Some(key) = iter.next_item().await {
        keys.push(key.unwrap());
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_cluster_unreachable, ignore = "the Redis Cluster is not reachable; see the build warning")]
async fn two_queues_live_on_two_masters() {
    let app = format!("qtasks-cluster-shards-{}", Uuid::new_v4());
    let Some(backend) = support::connect_redis_cluster("two_queues_live_on_two_masters", &app).await else { return };
    let (a, b) = queues_on_two_masters(&app).await;
    for queue in [&a, &b] {
        for n in 0..3 {
            let mut task = qtasks::TaskRecord::new(Uuid::new_v4(), qtasks::NewTask::new("echo", json!([n])));
            task.queue = queue.as_str().into();
            backend.enqueue(&task).await.unwrap();
        }
    }
    let masters = masters(&first_node()).await;
    // Each queue's keys (records, queue, sequence, index…) are on one
    // master, the master of its hash tag, and on no other.
    let mut homes = Vec::new();
    for queue in [&a, &b] {
        let prefix = queue_prefix(&app, queue);
        let mut found = Vec::new();
        for (node, _) in &masters {
            let keys = keys_on(node, &prefix).await;
            if !keys.is_empty() {
                found.push((node.clone(), keys));
            }
        }
        assert_eq!(found.len(), 1, "queue {queue}'s keys on {} masters: {found:?}", found.len());
        let (node, keys) = found.pop().unwrap();
        assert_eq!(node, master_of(&masters, &prefix).await);
        assert!(keys.iter().filter(|k| k.starts_with(&format!("{prefix}task:"))).count() == 3, "{keys:?}");
        homes.push(node);
    }
    assert_ne!(homes[0], homes[1], "queues {a} and {b} share a master");
    // Reads by uuid, stats and the queues' sizes merge the two.
    let queues = backend.queues(&[]).await.unwrap();
    let depth = |name: &str| queues.iter().find(|q| q.name == name).map(|q| q.depth);
    assert_eq!((depth(&a), depth(&b), depth("default")), (Some(3), Some(3), Some(0)), "{queues:?}");
    assert_eq!(backend.stats().await.unwrap().queued, 6);
    assert_eq!(backend.get_all().await.unwrap().len(), 6);
    // An app whose name starts with this app's name and queue keeps its
    // keys when this app is flushed.
    let other = backend.for_app(&format!("{app}:{a}"));
    let kept = qtasks::TaskRecord::new(Uuid::new_v4(), qtasks::NewTask::new("echo", json!([])));
    other.enqueue(&kept).await.unwrap();
    backend.flush().await.unwrap();
    assert!(other.get(kept.uuid).await.unwrap().is_some(), "flushing app {app} removed a task of app {app}:{a}");
    other.flush().await.unwrap();
    for (node, _) in &masters {
        let left = keys_on(node, &format!("qtasks:{{{}:{app}", app.len())).await;
        assert!(left.is_empty(), "left on {node} after flush: {left:?}");
    }
}

/// A worker that dies (its backend dropped, so its liveness stops being
/// renewed) loses its tasks to the next fetch of their queue after its
/// liveness, long before their lease: each queue's holders live with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_cluster_unreachable, ignore = "the Redis Cluster is not reachable; see the build warning")]
async fn a_dead_workers_tasks_go_back_to_their_queue_after_its_liveness() {
    let app = format!("qtasks-cluster-liveness-{}", Uuid::new_v4());
    let Some(backend) = support::connect_redis_cluster("a_dead_workers_tasks", &app).await else { return };
    let backend = backend.lease(Duration::from_secs(600)).liveness(Duration::from_millis(200));
    let (a, b) = queues_on_two_masters(&app).await;
    let from = qtasks::backend::Fetch::queues([a.as_str(), b.as_str()]);
    let mut ids = Vec::new();
    for queue in [&a, &b] {
        let mut task = qtasks::TaskRecord::new(Uuid::new_v4(), qtasks::NewTask::new("echo", json!([])));
        task.queue = queue.as_str().into();
        backend.enqueue(&task).await.unwrap();
        ids.push(task.uuid);
    }
    let dying = backend.for_app(&app);
    let mut taken = Vec::new();
    while taken.len() < 2 {
        tokio::time::timeout(HANG, dying.fetch(&from, 2, &mut taken)).await.expect("fetching the two tasks").unwrap();
    }
    drop(dying);
    // Another worker gets both back (the lease is ten minutes).
    let mut again = Vec::new();
    while again.len() < 2 {
        tokio::time::timeout(HANG, backend.fetch(&from, 2, &mut again)).await.expect("taking the tasks back").unwrap();
    }
    let mut got: Vec<Uuid> = again.iter().map(|m| m.uuid).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    backend.flush().await.unwrap();
}

#[task]
async fn double(n: i64) -> i64 {
    n * 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_cluster_unreachable, ignore = "the Redis Cluster is not reachable; see the build warning")]
async fn a_worker_runs_tasks_of_two_queues_on_two_masters() {
    let app_name = format!("qtasks-cluster-e2e-{}", Uuid::new_v4());
    let Some(backend) = support::connect_redis_cluster("a_worker_runs_tasks_of_two_queues", &app_name).await else {
        return;
    };
    let (a, b) = queues_on_two_masters(&app_name).await;
    let app = QueueTasks::builder(app_name.as_str())
        .tasks::<(Double,)>()
        .queue(Queue::new(a.as_str()))
        .queue(Queue::new(b.as_str()))
        .backend(backend.clone())
        .build()
        .unwrap();
    // The worker starts first: its fetch waits on both queues' nodes, and
    // each enqueue's wake-up reaches it.
    let worker = app.worker().max_tasks_process(4).queues([a.as_str(), b.as_str()]).start().await.unwrap();
    let mut handles = Vec::new();
    for n in 0..10 {
        let queue = if n % 2 == 0 { &a } else { &b };
        handles.push((n, app.enqueue(Double::call(n)).queue(queue.as_str()).await.unwrap()));
    }
    for (n, handle) in &handles {
        assert_eq!(handle.result(HANG).await.unwrap(), n * 2);
        let record = app.get(handle.uuid()).await.unwrap().unwrap();
        assert_eq!(record.queue, if n % 2 == 0 { a.as_str() } else { b.as_str() });
    }
    let stats = backend.stats().await.unwrap();
    assert_eq!(stats.tasks.get("double").map(|c| c.success), Some(10), "{stats:?}");
    worker.shutdown().await;
    app.flush_all().await.unwrap();
    let _ = backend.flush().await;
}
