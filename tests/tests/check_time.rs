//! A duplicate task name in an app declared with `qtasks::app!` is reported
//! by `cargo check`, which generates no code (so rust-analyzer shows it
//! too), with the name in the message and the span on the user's code.
//! trybuild builds its cases, so this runs `cargo check` itself, on the
//! `tests/check-fixture` crate (a workspace member outside the default
//! members, since it does not compile on purpose).

use std::path::Path;
use std::process::Command;

#[test]
fn cargo_check_reports_a_duplicate_task_name_at_the_app_macro() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // A target directory of its own: the outer `cargo test` holds the lock
    // of the workspace's.
    let target = workspace.join("target").join("check-fixture");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args(["check", "--quiet", "--offline", "-p", "qtasks-check-fixture", "--message-format", "short"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the fixture must not pass `cargo check`:\n{stderr}");
    assert!(
        stderr.contains("task name `add` is registered twice in this app"),
        "the error names the duplicate:\n{stderr}"
    );
    assert!(stderr.contains("tests/check-fixture/src/main.rs:"), "the error points at the user's code:\n{stderr}");
}
