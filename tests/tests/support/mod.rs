//! Helpers shared by the test binaries.
//!
//! A test that needs the Redis server of `QTASKS_REDIS_URL` carries
//! `#[cfg_attr(redis_unreachable, ignore = …)]`: `tests/build.rs` sets that
//! cfg when the server does not answer at build time (and `CI` is unset),
//! so the harness reports the test as ignored rather than passed. A server
//! that goes away between the build and the run is caught at run time by
//! [`connect_redis`] / [`unreachable`]: under CI the test fails; else it
//! says so loudly and returns.

#![allow(dead_code)] // each test binary uses a part

pub mod handover;
pub mod postgres;
pub mod procs;

use qtasks::{RedisBackend, TaskRecord, Uuid, WaitError};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Hang protection for the waits of the tests: long enough that a loaded
/// machine never reaches it, short enough that a hang is reported.
pub const HANG: Duration = Duration::from_secs(30);

/// `QTASKS_REDIS_URL`, or the local server.
pub fn redis_url() -> String {
    std::env::var("QTASKS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Reports a server that answered at build time but not now: panics under
/// CI, else prints a loud skip (the test then returns).
pub fn unreachable(what: &str, url: &str, error: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}: Redis not reachable at {url} (CI is set, so this fails): {error}");
    }
    // Straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {what}: Redis not reachable at {url}: {error} ***\n\
         *** it answered when the tests were built; this test is counted as passed ***\n"
    );
}

/// A backend for `app`, or `None` (skipped) when the server has gone away.
pub async fn connect_redis(what: &str, app: &str) -> Option<RedisBackend> {
    connect_redis_at(what, &redis_url(), app).await
}

/// A backend at `url` for `app`, or `None` (see [`unreachable`]).
async fn connect_redis_at(what: &str, url: &str, app: &str) -> Option<RedisBackend> {
    let error = match tokio::time::timeout(Duration::from_secs(15), RedisBackend::connect(url)).await {
        Ok(Ok(backend)) => return Some(backend.for_app(app)),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connecting timed out".to_owned(),
    };
    unreachable(what, url, &error);
    None
}

/// `QTASKS_REDIS_CLUSTER_URL`, or the local cluster of `scripts/redis-cluster`.
pub fn redis_cluster_url() -> String {
    std::env::var("QTASKS_REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis+cluster://127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003".to_owned())
}

/// A backend on the Redis Cluster for `app`, or `None` (skipped) when the
/// cluster has gone away.
pub async fn connect_redis_cluster(what: &str, app: &str) -> Option<RedisBackend> {
    connect_redis_at(what, &redis_cluster_url(), app).await
}

/// Runs a conformance `check` on `backend` in a task of its own, then
/// flushes the backend's app, also when the check failed or panicked; panics
/// with the check's error, naming `test`.
pub async fn check_then_flush<F, Fut>(test: &str, backend: RedisBackend, check: F)
where
    F: FnOnce(RedisBackend) -> Fut,
    Fut: std::future::Future<Output = Result<(), qtasks::testing::conformance::ConformanceError>> + Send + 'static,
{
    let started = Instant::now();
    let outcome = tokio::spawn(check(backend.clone())).await;
    let elapsed = started.elapsed();
    let flushed = qtasks::Backend::flush(&backend).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{test}: {e}"),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("{test}: {e}"),
    }
    flushed.expect("flushing the app's keys");
    eprintln!("{test}: passed in {elapsed:?}");
}

/// Waits until `cond` holds, checking every 10 ms, for at most `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A gate that threads wait at until the test opens it: a blocking task or
/// handler holds its slot exactly as long as the test needs.
pub struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    /// A closed gate.
    pub const fn new() -> Self {
        Self { open: Mutex::new(false), changed: Condvar::new() }
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }

    pub fn close(&self) {
        *self.open.lock().unwrap() = false;
    }

    /// Blocks until the gate is open, for at most [`HANG`]; whether it opened.
    pub fn wait(&self) -> bool {
        let open = self.open.lock().unwrap();
        let (open, _) = self.changed.wait_timeout_while(open, HANG, |open| !*open).unwrap();
        *open
    }
}

/// A plain connection to the test server, to look at keys directly.
pub async fn raw_redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap()
}

/// A reconnecting connection to the test server (logged in as the
/// default user: never one a test kills).
pub async fn reconnecting_redis() -> redis::aio::ConnectionManager {
    redis::Client::open(redis_url()).unwrap().get_connection_manager().await.unwrap()
}

/// Retries `op` while it fails, for up to 20 s: the connection may be
/// killed, by the test itself or by another test using the server.
pub async fn retry<T, E: std::fmt::Display>(what: &str, mut op: impl AsyncFnMut() -> Result<T, E>) -> T {
    let started = Instant::now();
    loop {
        match op().await {
            Ok(value) => return value,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                eprintln!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Runs a command (`args[0]` with the rest as its arguments), retrying
/// while the connection is lost ([`retry`]).
pub async fn query<T: redis::FromRedisValue>(conn: &mut (impl redis::aio::ConnectionLike + Send), args: &[&str]) -> T {
    retry(&args.join(" "), async || {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async::<T>(&mut *conn).await
    })
    .await
}

/// The dead letters of the app whose keys start with `prefix`, decoded.
pub async fn dead_letters(conn: &mut (impl redis::aio::ConnectionLike + Send), prefix: &str) -> Vec<serde_json::Value> {
    let letters: Vec<String> = query(conn, &["LRANGE", &format!("{prefix}dead"), "0", "-1"]).await;
    letters.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("dead letter {l:?}: {e}"))).collect()
}

/// Enqueues `task(args)` under the id `id`, retrying while the connection
/// is lost (each failure counted in `errors`): a retry after an enqueue
/// whose answer was lost finds the task stored and adds none.
pub async fn enqueue(client: &qtasks::Client, task: &str, args: serde_json::Value, id: Uuid, errors: &AtomicUsize) {
    let started = Instant::now();
    loop {
        match client.add_task(task, &args).id(id).await {
            Ok(handle) => return assert_eq!(handle.uuid(), id),
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(20), "enqueueing {task}({args}): {e}");
                errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Waits (notified) for a task until `deadline`, retrying while the
/// connection is lost (each failure counted in `errors`): its final record
/// and when it came, or `None` at the deadline.
pub fn wait(
    client: &qtasks::Client,
    uuid: Uuid,
    deadline: Instant,
    errors: &Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Option<(TaskRecord, Instant)>> {
    let (client, errors) = (client.clone(), Arc::clone(errors));
    tokio::spawn(async move {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match client.wait(uuid, left).await {
                Ok(task) => return Some((task, Instant::now())),
                Err(WaitError::Timeout) => return None,
                Err(_) if left.is_zero() => return None,
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    })
}

/// How many connections are subscribed to `channel` (`PUBSUB NUMSUB`): a
/// subscription counted here receives every message published from now on.
pub async fn subscribers(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
    let (_, n): (String, i64) = redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(conn).await.unwrap();
    n
}

/// Waits until at least `n` connections are subscribed to `channel`, for at
/// most [`HANG`].
pub async fn until_subscribed(channel: &str, n: i64) {
    let mut conn = raw_redis().await;
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let now = subscribers(&mut conn, channel).await;
        if now >= n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now} subscribers to {channel} after {HANG:?}, not {n}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A Redis ACL user of the test's own, with every right. Connections made
/// with [`TestUser::url`] show in `CLIENT LIST` as `user={name}`, and no
/// other connection does: a test can find, and kill, exactly its own
/// connections (`CLIENT KILL USER`), whoever else uses the server. Deleted
/// on drop, which also closes the connections still logged in as it.
pub struct TestUser {
    pub name: String,
    url: String,
}

impl TestUser {
    pub async fn create() -> Self {
        let name = format!("qtasks-test-{}", qtasks::Uuid::new_v4().simple());
        let password = format!("pw-{}", qtasks::Uuid::new_v4().simple());
        let mut conn = raw_redis().await;
        let () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&name)
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query_async(&mut conn)
            .await
            .unwrap();
        let base = redis_url();
        let (scheme, rest) = base.split_once("://").expect("QTASKS_REDIS_URL has a scheme");
        assert!(!scheme.contains("unix"), "a test user needs a TCP URL, not {base}");
        // Any user and password in the URL make way for the test user's.
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let host_start = rest[..authority_end].rfind('@').map_or(0, |at| at + 1);
        let url = format!("{scheme}://{name}:{password}@{}", &rest[host_start..]);
        Self { name, url }
    }

    /// The server's URL, logged in as this user.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `CLIENT LIST` lines of this user's connections.
    pub async fn connections(&self) -> Vec<String> {
        let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut raw_redis().await).await.unwrap();
        let field = format!("user={}", self.name);
        list.lines().filter(|line| line.split(' ').any(|f| f == field)).map(str::to_owned).collect()
    }

    /// Kills this user's connections of `kind` (`normal`, `pubsub`):
    /// `CLIENT KILL USER … TYPE …`. Returns how many.
    pub async fn kill(&self, kind: &str) -> i64 {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(&self.name)
            .arg("TYPE")
            .arg(kind)
            .query_async(&mut raw_redis().await)
            .await
            .unwrap()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Synchronous: drop cannot await. A failure leaves a user behind, no more.
        let deleted = redis::Client::open(redis_url())
            .and_then(|client| client.get_connection())
            .and_then(|mut conn| redis::cmd("ACL").arg("DELUSER").arg(&self.name).query::<i64>(&mut conn));
        if let Err(e) = deleted {
            eprintln!("could not delete the Redis user {}: {e}", self.name);
        }
    }
}

/// Runs each check, a generic `async fn(B: Backend) -> TestResult` of the
/// invoking file, as a test on the in-memory backend (`memory::<check>`)
/// and one on Redis (`redis::<check>`, with an app name of its own, flushed
/// afterwards; ignored without a server at build time, see the module doc).
#[allow(unused_macros)] // each test binary uses a part
macro_rules! on_both_backends {
    ($prefix:literal: $($check:ident)*) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    if let Err(e) = super::$check(::qtasks::MemoryBackend::new()).await {
                        panic!("memory {}: {e}", stringify!($check));
                    }
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
                async fn $check() {
                    let app = format!("{}-{}-{}", $prefix, stringify!($check), ::qtasks::Uuid::new_v4());
                    let Some(backend) = super::support::connect_redis(concat!("redis ", stringify!($check)), &app).await
                    else {
                        return;
                    };
                    let result = super::$check(backend.clone()).await;
                    let _ = ::qtasks::Backend::flush(&backend).await;
                    if let Err(e) = result {
                        panic!("redis {}: {e}", stringify!($check));
                    }
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both_backends;

/// The name to build a test's app with: `name` on the in-memory backend; on
/// a server, the backend's own app name (unique per test run, and the one
/// the test flushes afterwards), so runs never share keys.
pub fn app_name<B: qtasks::Backend>(name: &str, backend: &B) -> String {
    if backend.kind() == "memory" { name.to_owned() } else { backend.app_name().to_owned() }
}

/// The shared settings of `backend` (a fresh app) behave: a group reads
/// back what was written, apart from a group whose name starts the same;
/// a deleted setting and one whose ttl ran out are gone from the group;
/// `flush` empties it.
#[allow(dead_code)]
pub async fn check_settings<B: qtasks::Backend>(backend: &B) {
    use serde_json::json;
    backend.config_set("group", "a", &json!(1), None).await.unwrap();
    backend.config_set("group", "brief", &json!(2), Some(Duration::from_millis(1))).await.unwrap();
    backend.config_set("group", "gone", &json!(3), None).await.unwrap();
    backend.config_set("group2", "x", &json!(true), None).await.unwrap();
    backend.config_delete("group", "gone").await.unwrap();
    let deadline = Instant::now() + HANG;
    while backend.config_get("group", "brief").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the setting with a 1 ms ttl expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = backend.config_get_all("group").await.unwrap();
    assert_eq!(serde_json::Value::Object(all), json!({"a": 1}));
    assert_eq!(serde_json::Value::Object(backend.config_get_all("group2").await.unwrap()), json!({"x": true}));
    backend.flush().await.unwrap();
    assert!(backend.config_get_all("group").await.unwrap().is_empty());
}

/// Ends with large results finishing together, a batch the backend's
/// finisher splits by size: `tasks` tasks of name `large` are enqueued,
/// taken, and finished at once with results of about `result_bytes` each;
/// every end is stored whole, with its result, and counted once.
#[allow(dead_code)]
pub async fn check_large_ends<B: qtasks::Backend>(backend: &B, tasks: usize, result_bytes: usize) {
    use qtasks::backend::{Enqueued, Fetch};
    use qtasks::{NewTask, TaskStatus};
    use serde_json::json;
    for _ in 0..tasks {
        let task = TaskRecord::new(Uuid::new_v4(), NewTask::new("large", json!([])));
        assert_eq!(backend.enqueue(&task).await.unwrap(), Enqueued::New);
    }
    let (mut taken, from) = (Vec::new(), Fetch::default_queue());
    let started = Instant::now();
    while taken.len() < tasks {
        assert!(started.elapsed() < HANG, "took {} of {tasks} tasks in {HANG:?}", taken.len());
        let mut out = Vec::new();
        let fetch = backend.fetch(&from, tasks - taken.len(), &mut out);
        if let Ok(result) = tokio::time::timeout(Duration::from_secs(1), fetch).await {
            result.unwrap();
        }
        taken.extend(out);
    }
    let ends = taken.iter().enumerate().map(|(i, m)| {
        let mut end = TaskRecord::from_message(m, TaskStatus::Success);
        end.result = Some(json!(format!("{i}").repeat(result_bytes)));
        async move { backend.finish(&end).await.map(|()| end) }
    });
    for end in futures::future::join_all(ends).await {
        let end = end.unwrap();
        let stored = backend.get(end.uuid).await.unwrap().unwrap();
        assert_eq!(stored.status, TaskStatus::Success);
        assert_eq!(stored.result, end.result);
    }
    assert_eq!(backend.stats().await.unwrap().tasks["large"].success, tasks as u64);
}
