//! Shutdown can be forced: past its timeout (or at a second signal, in the
//! CLI) a worker stops its running tasks and puts them back in the queue,
//! so another worker runs them: nothing is lost, nothing waits for ever.

mod support;

use qtasks::{Backend, QueueTasks, TaskContext, TaskStatus, Uuid, task};
use std::sync::Mutex;
use std::time::Duration;
use support::{Gate, HANG};

type TestResult = Result<(), Box<dyn std::error::Error>>;

static GATE: Gate = Gate::new();

/// Runs until the gate opens.
#[task]
fn gated() -> u8 {
    if GATE.wait() { 1 } else { 0 }
}

/// The uuids of the `forever` runs that started.
static STARTED: Mutex<Vec<Uuid>> = Mutex::new(Vec::new());

#[task]
async fn forever() {
    if let Some(ctx) = TaskContext::current() {
        STARTED.lock().unwrap().push(ctx.uuid());
    }
    std::future::pending::<()>().await
}

#[task]
async fn quick() -> u8 {
    7
}

async fn a_forced_shutdown_puts_running_tasks_back<B: Backend + Clone>(backend: B) -> TestResult {
    let name = support::app_name("forced", &backend);
    let app = QueueTasks::builder(name).tasks::<(Forever, Quick)>().backend(backend).build()?;
    let worker = app.worker().start().await?;
    let done = app.enqueue(Quick::call()).await?;
    assert_eq!(done.result(HANG).await?, 7);
    let stuck = app.enqueue(Forever::call()).await?;
    // Running in the worker, not only taken (on Redis the record reads
    // `process` as soon as the fetch took it).
    let running = support::eventually(HANG, || STARTED.lock().unwrap().contains(&stuck.uuid())).await;
    assert!(running, "the task never started");
    let report = worker.shutdown_timeout(Duration::from_millis(100)).await;
    assert_eq!(report.released, [stuck.uuid()], "only the running task is released");
    let record = app.get(stuck.uuid()).await?.ok_or("no record")?;
    assert_eq!((record.status, record.attempt), (TaskStatus::New, 1), "back in the queue, same attempt");
    assert_eq!(app.queue_stats().await?.queued, 1);
    // A finished task is not touched.
    assert_eq!(app.get(done.uuid()).await?.ok_or("no record")?.status, TaskStatus::Success);
    app.flush_all().await?;
    Ok(())
}

support::on_both_backends!("qtasks-test-shutdown": a_forced_shutdown_puts_running_tasks_back);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_task_released_by_a_forced_shutdown_runs_again_on_another_worker() {
    GATE.close();
    let app = QueueTasks::builder("forced-sync").task::<Gated>().build().unwrap();
    let worker = app.worker().start().await.unwrap();
    let handle = app.enqueue(Gated::call()).await.unwrap();
    let deadline = tokio::time::Instant::now() + HANG;
    while app.get(handle.uuid()).await.unwrap().map(|r| r.status) != Some(TaskStatus::Process) {
        assert!(tokio::time::Instant::now() < deadline, "the task never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = worker.shutdown_timeout(Duration::from_millis(50)).await;
    assert_eq!(report.released, [handle.uuid()]);
    // The stopped thread still waits at the gate; a new worker runs the task
    // again in full once it opens.
    let again = app.worker().start().await.unwrap();
    GATE.open();
    assert_eq!(handle.result(HANG).await.unwrap(), 1);
    again.shutdown().await;
}

/// The CLI: the first SIGTERM starts a graceful shutdown, the second stops
/// the running task at once and puts it back.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn a_second_sigterm_stops_the_cli_worker_at_once_and_nothing_is_lost() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let name = format!("qtasks-test-sigterm-{}", qtasks::Uuid::new_v4());
    let Some(backend) = support::connect_redis("second sigterm", &name).await else { return };
    let app = QueueTasks::builder(name.as_str()).tasks::<(Forever, Quick)>().backend(backend).build().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qtasks-test-cli"))
        .args(["run", "--concurrency", "2"])
        .env("QTASKS_BROKER_URL", support::redis_url())
        .env("QTASKS_TEST_APP", &name)
        .env("QTASKS_SHUTDOWN_TIMEOUT", "3600")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let held = app.add_task("hold", ()).await.unwrap();
    let deadline = tokio::time::Instant::now() + HANG;
    while app.get(held.uuid()).await.unwrap().map(|r| r.status) != Some(TaskStatus::Process) {
        assert!(tokio::time::Instant::now() < deadline, "the worker process never started the task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.id().to_string();
    let signal = |pid: &str| Command::new("kill").args(["-TERM", pid]).status().unwrap();
    assert!(signal(&pid).success());
    // The second signal once the first is being handled (signals sent
    // together may be delivered as one).
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let waiting = tokio::task::spawn_blocking(move || {
        for line in lines.by_ref() {
            if line.unwrap().contains("shutting down") {
                return lines;
            }
        }
        panic!("the worker never said it was shutting down")
    })
    .await
    .unwrap();
    assert!(signal(&pid).success());
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let rest: Vec<String> = waiting.map_while(Result::ok).collect();
        (status, rest)
    });
    let (status, rest) = tokio::time::timeout(HANG, status).await.expect("the worker did not stop").unwrap();
    assert!(status.success(), "{status}: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("1 running task(s) stopped and put back")), "{rest:?}");
    let record = app.get(held.uuid()).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::New, "the task is back in the queue");
    assert_eq!(app.queue_stats().await.unwrap().queued, 1);
    app.flush_all().await.unwrap();
}
