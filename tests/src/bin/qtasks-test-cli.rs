//! An app binary behind `qtasks::cli`, for the tests that need a real
//! process (its environment and exit code): `tests/tests/config.rs` reaches
//! it with `env!("CARGO_BIN_EXE_qtasks-test-cli")`.
//!
//! The app `cli-test` has two tasks: `add(a, b)` with no declared priority
//! and `urgent()` with priority -5.

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

#[tokio::main]
async fn main() -> ExitCode {
    qtasks::cli::main(|backend| {
        QueueTasks::builder("cli-test").tasks::<(Add, Urgent)>().backend(backend).build()
    })
    .await
}
