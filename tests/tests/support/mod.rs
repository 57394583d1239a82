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
    let error = match tokio::time::timeout(Duration::from_secs(15), RedisBackend::connect(&url)).await {
        Ok(Ok(backend)) => return Some(backend.for_app(app)),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connecting timed out".to_owned(),
    };
    unreachable(what, &url, &error);
    None
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

/// Runs each check, a generic `async fn(B: Backend) -> TestResult` of the
/// invoking file, as a test on the in-memory backend (`memory::<check>`)
/// and one on Redis (`redis::<check>`, with an app name of its own, flushed
/// afterwards; skipped or failed as [`connect_redis`] says).
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
