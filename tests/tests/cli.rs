//! The command line apps get from `qtasks::cli`.

use clap::Parser;
use qtasks::cli::{Cli, banner, execute};
use qtasks::triggers::WorkerStart;
use qtasks::{AnyBackend, QueueTasks, plugin, task};
use std::process::ExitCode;

#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[plugin(on = "worker_start")]
fn announce(_ctx: &WorkerStart<'_>) {}

/// The app type the builder infers, named once for `build`.
type App = QueueTasks<(Add,), (qtasks::plugin::Member<Announce>,), AnyBackend>;

fn build(backend: AnyBackend) -> Result<App, qtasks::Error> {
    QueueTasks::builder("cli-test").task::<Add>().plugin(Announce).backend(backend).build()
}

async fn run(args: &[&str]) -> Result<ExitCode, String> {
    let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
    execute(cli, build).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_banner_lists_app_backend_concurrency_tasks_and_plugins_and_hides_passwords() {
    let app = build(AnyBackend::connect("memory://").await.unwrap()).unwrap();
    let text = banner(&app, "redis://:hunter2@db.internal:6379/0", 16);
    for expected in ["cli-test", "memory", "16", "add", "announce", "worker_start", "redis://***@db.internal:6379/0"] {
        assert!(text.contains(expected), "banner lacks {expected:?}:\n{text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn commands_answer_with_exit_codes_and_clear_errors() {
    assert_eq!(run(&["app", "--broker-url", "memory://", "inspect", "tasks", "--json"]).await, Ok(ExitCode::SUCCESS));
    assert_eq!(run(&["app", "--broker-url", "memory://", "inspect", "plugins"]).await, Ok(ExitCode::SUCCESS));
    assert_eq!(run(&["app", "--broker-url", "memory://", "inspect", "stats"]).await, Ok(ExitCode::SUCCESS));
    assert_eq!(run(&["app", "--broker-url", "memory://", "inspect", "stats", "--json"]).await, Ok(ExitCode::SUCCESS));
    // No worker runs in this process: ping fails, and so does a status lookup.
    assert_eq!(run(&["app", "--broker-url", "memory://", "ping"]).await, Ok(ExitCode::FAILURE));
    let missing = "00000000-0000-0000-0000-000000000000";
    assert_eq!(run(&["app", "--broker-url", "memory://", "status", missing]).await, Ok(ExitCode::FAILURE));
    // Enqueueing works; with no worker, waiting times out with exit code 2.
    assert_eq!(run(&["app", "--broker-url", "memory://", "add", "add", "[1, 2]"]).await, Ok(ExitCode::SUCCESS));
    assert_eq!(
        run(&["app", "--broker-url", "memory://", "add", "add", "[1, 2]", "--wait", "0.05"]).await,
        Ok(ExitCode::from(2))
    );

    let bad_json = run(&["app", "--broker-url", "memory://", "add", "add", "[1,"]).await.unwrap_err();
    assert!(bad_json.contains("not valid JSON"), "{bad_json}");
    let bad_url = run(&["app", "--broker-url", "kafka://x", "ping"]).await.unwrap_err();
    assert!(bad_url.contains("unsupported backend URL scheme `kafka://`"), "{bad_url}");
    let bad_command = run(&["app", "frobnicate"]).await.unwrap_err();
    assert!(bad_command.contains("unrecognized subcommand"), "{bad_command}");
}
