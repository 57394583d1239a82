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
    let text = banner(&app, "redis://:hunter2@db.internal:6379/0", 16, None);
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

/// `run --inline` asks for a worker that polls its runs itself; without the
/// flag runs are spawned.
#[test]
fn run_takes_the_inline_flag() {
    let inline = |args: &[&str]| match Cli::try_parse_from(args).map(|cli| cli.command) {
        Ok(qtasks::cli::Command::Run { inline, .. }) => inline,
        other => panic!("not a run command: {other:?}"),
    };
    assert!(inline(&["app", "run", "--inline", "-c", "64"]));
    assert!(!inline(&["app", "run"]));
}

/// Runs the `qtasks-test-cli` app binary (app `cli-test`: `add(a, b)` and
/// `urgent()` with priority -5, no plugins) on the memory backend, with no
/// `QTASKS_*` variable of the test's own: its exit code and stdout.
fn app_binary(args: &[&str]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_qtasks-test-cli"));
    for variable in qtasks::Config::variables() {
        command.env_remove(variable);
    }
    let out = command.env_remove("RUST_LOG").args(["--broker-url", "memory://"]).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `inspect` commands print what they are asked for, in text and JSON,
/// not only exit 0.
#[test]
fn inspect_commands_print_the_tasks_plugins_and_stats() {
    let json = |args: &[&str]| -> qtasks::Value {
        let (code, out) = app_binary(args);
        assert_eq!(code, Some(0), "{args:?}: {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    };
    let text = |args: &[&str]| -> String {
        let (code, out) = app_binary(args);
        assert_eq!(code, Some(0), "{args:?}: {out}");
        out
    };
    // A line's words, spacing aside.
    let has_line = |out: &str, words: &[&str]| out.lines().any(|l| l.split_whitespace().eq(words.iter().copied()));

    let tasks = json(&["inspect", "tasks", "--json"]);
    let listed: Vec<_> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].clone(), t["priority"].clone(), t["params"].clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (qtasks::json!("add"), qtasks::json!(null), qtasks::json!(["a", "b"])),
            (qtasks::json!("urgent"), qtasks::json!(-5), qtasks::json!([])),
            (qtasks::json!("hold"), qtasks::json!(null), qtasks::json!([]))
        ]
    );
    let out = text(&["inspect", "tasks"]);
    assert!(has_line(&out, &["add"]) && has_line(&out, &["urgent"]), "{out}");
    assert!(has_line(&out, &["priority", "-5"]) && has_line(&out, &["params", "[\"a\",\"b\"]"]), "{out}");

    assert_eq!(json(&["inspect", "plugins", "--json"]), qtasks::json!([]));
    assert_eq!(text(&["inspect", "plugins"]).trim(), "", "no plugins, nothing listed");

    let stats = json(&["inspect", "stats", "--json"]);
    assert_eq!(
        (&stats["app"]["name"], &stats["app"]["backend"], &stats["app"]["queued"], &stats["app"]["task_count"]),
        (&qtasks::json!("cli-test"), &qtasks::json!("memory"), &qtasks::json!(0), &qtasks::json!(3))
    );
    let names: Vec<_> = stats["tasks"].as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
    assert_eq!(names, [qtasks::json!("add"), qtasks::json!("urgent"), qtasks::json!("hold")]);
    let out = text(&["inspect", "stats"]);
    for line in [&["app", "cli-test"][..], &["backend", "memory"], &["queued", "0"], &["task", "urgent"]] {
        assert!(has_line(&out, line), "no line {line:?}:\n{out}");
    }
}

/// `queue pause|resume`, `inspect queues` and `run --queues` (in-process,
/// on the memory backend: each command has a backend of its own, so what
/// a pause holds for other processes is tested on Redis in queues_redis.rs).
#[tokio::test]
async fn queue_commands_pause_resume_and_list_and_refuse_unknown_queues() {
    let url = ["app", "--broker-url", "memory://"];
    let with = |args: &[&'static str]| [&url[..], args].concat();
    assert_eq!(run(&with(&["queue", "pause", "default"])).await, Ok(ExitCode::SUCCESS));
    assert_eq!(run(&with(&["queue", "resume", "default"])).await, Ok(ExitCode::SUCCESS));
    let unknown = run(&with(&["queue", "pause", "emails"])).await.unwrap_err();
    assert!(unknown.contains("unknown queue `emails`") && unknown.contains("default"), "{unknown}");
    assert_eq!(run(&with(&["inspect", "queues", "--json"])).await, Ok(ExitCode::SUCCESS));
    assert_eq!(run(&with(&["add", "add", "[1, 2]", "--queue", "bulk", "--delay", "30"])).await, Ok(ExitCode::SUCCESS));
    let bad_delay = run(&with(&["add", "add", "[1, 2]", "--delay", "-1"])).await.unwrap_err();
    assert!(bad_delay.contains("--delay"), "{bad_delay}");
    let bad_list = run(&with(&["run", "--queues", "critical=0"])).await.unwrap_err();
    assert!(bad_list.contains("invalid queue list `critical=0`"), "{bad_list}");
    let unknown_run = run(&with(&["run", "--queues", "default,emails"])).await.unwrap_err();
    assert!(unknown_run.contains("unknown queue `emails`"), "{unknown_run}");
}

/// `inspect queues` prints each queue with its depth and state, as text
/// and as JSON.
#[test]
fn inspect_queues_prints_each_queue() {
    let (code, out) = app_binary(&["inspect", "queues", "--json"]);
    assert_eq!(code, Some(0), "{out}");
    let queues: qtasks::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(queues[0]["name"], "default", "{out}");
    assert_eq!((&queues[0]["depth"], &queues[0]["paused"]), (&qtasks::json!(0), &qtasks::json!(false)), "{out}");
    let (code, out) = app_binary(&["inspect", "stats"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.lines().any(|l| l.split_whitespace().eq(["queue", "default"])), "{out}");
    assert!(out.lines().any(|l| l.split_whitespace().eq(["paused", "no"])), "{out}");
}
