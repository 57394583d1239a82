//! Running the real Python clients (the virtualenv of `scripts/python-env`)
//! from the Python interop tests.

#![allow(dead_code)] // each test binary uses a part

use qtasks::triggers::*;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// The virtualenv's python: `QTASKS_PYTHON`, or `target/python-env`.
pub fn python() -> PathBuf {
    match std::env::var_os("QTASKS_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/python-env/bin/python"),
    }
}

/// The path of a script of `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join(name)
}

/// Runs `script` with `args` to its end (at most `limit`, a hang guard),
/// and returns its stdout lines; panics with its stderr if it fails.
pub async fn run(script_name: &str, args: &[&str], limit: Duration) -> Vec<String> {
    let child = tokio::process::Command::new(python())
        .arg(script(script_name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} (run scripts/python-env): {e}", python().display()));
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script_name} did not finish within {limit:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{script_name} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout.lines().map(str::to_owned).collect()
}

/// Parses each line as JSON.
pub fn json_lines(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter(|l| l.starts_with('{') || l.starts_with('[') || *l == "null")
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A JSON route of the dashboard, called in process.
pub async fn get_json(router: &axum::Router, path: &str) -> serde_json::Value {
    use tower::ServiceExt;
    let request = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK, "{path}");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Records, per task, the worker-side triggers it fired (from its receipt
/// to `worker_execute_after`), and adds [`Witness::BONUS`] to every integer
/// result (a replace trigger), so a Python client sees that plugins ran.
#[derive(Clone, Default)]
pub struct Witness {
    fired: std::sync::Arc<std::sync::Mutex<Vec<(qtasks::Uuid, &'static str)>>>,
}

impl Witness {
    /// What `task_executor_after_execute_result_replace` adds to an integer result.
    pub const BONUS: i64 = 100;

    fn note(&self, trigger: &'static str) {
        let uuid = qtasks::TaskContext::current().map(|ctx| ctx.uuid()).expect("a trigger fired for a task");
        self.fired.lock().unwrap().push((uuid, trigger));
    }

    /// The triggers `uuid` fired, in order.
    pub fn fired(&self, uuid: qtasks::Uuid) -> Vec<&'static str> {
        self.fired.lock().unwrap().iter().filter(|(u, _)| *u == uuid).map(|(_, t)| *t).collect()
    }
}

#[qtasks::plugin]
impl Witness {
    fn broker_add_worker(&self, _: &BrokerAddWorker<'_>) -> Option<qtasks::TaskMessage> {
        self.note("broker_add_worker");
        None
    }
    fn storage_add_process(&self, _: &StorageAddProcess<'_>) -> Option<qtasks::TaskMessage> {
        self.note("storage_add_process");
        None
    }
    fn worker_add(&self, _: &WorkerAdd<'_>) -> Option<qtasks::TaskMessage> {
        self.note("worker_add");
        None
    }
    fn worker_execute_before(&self, _: &WorkerExecuteBefore<'_>) -> Option<qtasks::TaskRecord> {
        self.note("worker_execute_before");
        None
    }
    fn worker_run_task_before(&self, _: &WorkerRunTaskBefore<'_>) {
        self.note("worker_run_task_before");
    }
    fn task_executor_args_replace(&self, _: &TaskExecutorArgsReplace<'_>) -> Option<serde_json::Value> {
        self.note("task_executor_args_replace");
        None
    }
    fn task_executor_before_execute(&self, _: &TaskExecutorBeforeExecute<'_>) {
        self.note("task_executor_before_execute");
    }
    fn task_executor_after_execute(&self, _: &TaskExecutorAfterExecute<'_>) {
        self.note("task_executor_after_execute");
    }
    fn task_executor_after_execute_result_replace(
        &self,
        ctx: &TaskExecutorAfterExecuteResultReplace<'_>,
    ) -> Option<serde_json::Value> {
        self.note("task_executor_after_execute_result_replace");
        ctx.result.as_i64().map(|n| serde_json::Value::from(n + Self::BONUS))
    }
    fn task_executor_task_close(&self, _: &TaskExecutorTaskClose<'_>) {
        self.note("task_executor_task_close");
    }
    fn worker_remove_finished_task(&self, _: &WorkerRemoveFinishedTask<'_>) -> Option<qtasks::TaskRecord> {
        self.note("worker_remove_finished_task");
        None
    }
    fn broker_remove_finished_task(&self, _: &BrokerRemoveFinishedTask<'_>) -> Option<qtasks::TaskRecord> {
        self.note("broker_remove_finished_task");
        None
    }
    fn storage_remove_finished_task(&self, _: &StorageRemoveFinishedTask<'_>) {
        self.note("storage_remove_finished_task");
    }
    async fn worker_execute_after(&self, _: &WorkerExecuteAfter<'_>) {
        self.note("worker_execute_after");
    }
}
