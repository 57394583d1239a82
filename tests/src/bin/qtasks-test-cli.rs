//! An app binary behind `qtasks::cli`, for the tests that need a real
//! process (its environment and exit code): `tests/tests/config.rs` reaches
//! it with `env!("CARGO_BIN_EXE_qtasks-test-cli")`.
//!
//! The app `cli-test` (or `QTASKS_TEST_APP`) has three tasks: `add(a, b)`
//! with no declared priority, `urgent()` with priority -5, and `hold()`,
//! which never returns (for shutdown tests).

use qtasks::{QueueTasks, task};
use std::process::ExitCode;

/// Adds two numbers.
#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Does nothing, first.
#[task(priority = -5)]
async fn urgent() {}

/// Never returns: only a forced shutdown stops it.
#[task]
async fn hold() {
    std::future::pending::<()>().await
}

#[tokio::main]
async fn main() -> ExitCode {
    let name = std::env::var("QTASKS_TEST_APP").unwrap_or_else(|_| "cli-test".to_owned());
    qtasks::cli::main(|backend| QueueTasks::builder(name).tasks::<(Add, Urgent, Hold)>().backend(backend).build()).await
}
