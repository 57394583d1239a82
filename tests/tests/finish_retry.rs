//! A final status whose write fails is written again while the worker
//! still holds the task, instead of being dropped and the task run a second
//! time after its lease. The failure is made by the server: the test's own
//! Redis user loses the right to run scripts just before the write, and
//! gets it back a moment later (a dropped connection is the same error to
//! the worker, but the shared multiplexed connection makes its timing
//! random).

mod support;

use qtasks::triggers::BrokerRemoveFinishedTask;
use qtasks::{QueueTasks, RedisBackend, TaskRecord, TaskStatus, plugin, task};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use support::{HANG, TestUser};

static RUNS: AtomicUsize = AtomicUsize::new(0);
static KILLS: AtomicUsize = AtomicUsize::new(0);
static USER: OnceLock<TestUser> = OnceLock::new();

#[task]
async fn counted() -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst) as u64
}

/// Sets the scripting rights of the test user (`+` or `-`).
async fn scripts(sign: char) {
    let user = USER.get().expect("the test user");
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user.name)
        .arg(format!("{sign}evalsha"))
        .arg(format!("{sign}eval"))
        .query_async(&mut support::raw_redis().await)
        .await
        .unwrap();
}

/// Fires just before the final record is written: the first time, takes
/// the worker's right to run scripts, so that write fails, and gives it
/// back 300 ms later.
#[plugin(on = "broker_remove_finished_task")]
async fn fail_the_write(_ctx: &BrokerRemoveFinishedTask<'_>) -> Option<TaskRecord> {
    if KILLS.fetch_add(1, Ordering::SeqCst) == 0 {
        scripts('-').await;
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            scripts('+').await;
        });
    }
    None
}

/// Captures the worker's log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_failed_final_write_is_retried_and_the_task_runs_once() {
    let logs = Logs::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).try_init();
    let user = USER
        .get_or_init(|| tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(TestUser::create())));
    let name = format!("qtasks-test-finish-{}", qtasks::Uuid::new_v4());
    // A short lease: without the retry, the task would run again within 2 s.
    let backend = RedisBackend::connect(user.url()).await.unwrap().lease(Duration::from_secs(2));
    let app =
        QueueTasks::builder(name.as_str()).task::<Counted>().plugin(FailTheWrite).backend(backend).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let handle = app.enqueue(Counted::call()).await.unwrap();
    let record = handle.record(HANG).await.unwrap();
    assert_eq!((record.status, record.result), (TaskStatus::Success, Some(0.into())));

    // The worker no longer holds it: nothing can hand it out again.
    let mut conn = support::raw_redis().await;
    let held: Option<f64> = redis::cmd("ZSCORE")
        .arg(format!("qtasks:{name}:inflight"))
        .arg(handle.uuid().to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(held, None, "the task is still leased after its final record was stored");
    worker.shutdown().await;
    app.flush_all().await.unwrap();
    // The user lives in a static, which is never dropped: delete it here.
    let _: i64 = redis::cmd("ACL").arg("DELUSER").arg(&user.name).query_async(&mut conn).await.unwrap();
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the task ran more than once");
    assert_eq!(KILLS.load(Ordering::SeqCst), 1);
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("storing the final status failed; retrying"),
        "the first write did not fail, so the retry was not exercised:\n{logs}"
    );
}
