//! Running the real Python clients (the virtualenv of `scripts/python-env`)
//! from the Python interop tests.

#![allow(dead_code)] // each test binary uses a part

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
