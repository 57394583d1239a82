//! Helpers shared by the test binaries that need a Redis server.
//!
//! Without a reachable server those tests are skipped with a loud message,
//! except under CI (`CI` set), where they fail.

#![allow(dead_code)] // each test binary uses a part

use qtasks::RedisBackend;
use std::io::Write;
use std::time::Duration;

/// `QTASKS_REDIS_URL`, or the local server.
pub fn redis_url() -> String {
    std::env::var("QTASKS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Reports an unreachable server: panics under CI, else prints a loud skip.
pub fn unreachable(what: &str, url: &str, error: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}: Redis not reachable at {url} (CI is set, so this fails): {error}");
    }
    // Straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {what}: Redis not reachable at {url}: {error} ***\n*** set QTASKS_REDIS_URL or start redis-server ***\n"
    );
}

/// A backend for `app`, or `None` (skipped) without a server.
pub async fn connect_redis(what: &str, app: &str) -> Option<RedisBackend> {
    let url = redis_url();
    let error = match tokio::time::timeout(Duration::from_secs(15), RedisBackend::connect(&url, app)).await {
        Ok(Ok(backend)) => return Some(backend),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connecting timed out".to_owned(),
    };
    unreachable(what, &url, &error);
    None
}
