//! Settings from code and from `QTASKS_*` variables (`qtasks::Config`),
//! and where each one is read: the app, its workers, the Redis backend and
//! the CLI.

mod support;

use qtasks::{AnyBackend, Backend, Client, Config, ConfigError, QueueTasks, TaskHandle, TaskStatus, Value, task};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Declares no priority: gets the config's default.
#[task]
async fn plain() {}

/// Declares a priority, which the config does not change.
#[task(priority = 3)]
async fn declared() {}

#[test]
fn the_defaults_are_the_documented_ones() {
    let config = Config::default();
    assert_eq!(config.broker_url, "memory://");
    assert_eq!(config.max_tasks_process, 10);
    assert_eq!(config.task_default_priority, 0);
    assert_eq!(config.blocking_handler_limit, None, "the process-wide limit (64) is left alone");
    assert_eq!(config.lease, Duration::from_secs(30));
    assert_eq!(config.retention, Some(Duration::from_secs(86_400)));
    assert_eq!(config.max_message_size, 1_048_576);
    assert_eq!(config.result_timeout, Duration::from_secs(100));
    assert_eq!(config.log, "info");
    // No variable set: the defaults; other variables are not read.
    assert_eq!(Config::from_vars(Vec::<(String, String)>::new()).unwrap(), config);
    assert_eq!(Config::from_vars([("PATH", "/bin"), ("RUST_LOG", "debug")]).unwrap(), config);
    // An app is built with the defaults unless given a config: the
    // environment is not read implicitly.
    let app = QueueTasks::builder("defaults").build().unwrap();
    assert_eq!(app.config(), &config);
}

#[test]
fn every_variable_overrides_its_setting() {
    let config = Config::from_vars([
        ("QTASKS_BROKER_URL", "redis://127.0.0.1:6379/3"),
        ("QTASKS_MAX_TASKS_PROCESS", "4"),
        ("QTASKS_TASK_DEFAULT_PRIORITY", "-21"),
        ("QTASKS_BLOCKING_HANDLER_LIMIT", "8"),
        ("QTASKS_LEASE", "0.5"),
        ("QTASKS_RETENTION", "3600"),
        ("QTASKS_MAX_MESSAGE_SIZE", "2048"),
        ("QTASKS_RESULT_TIMEOUT", " 2.5 "),
        ("QTASKS_SHUTDOWN_TIMEOUT", "12"),
        ("QTASKS_LOG", "warn,qtasks=debug"),
    ])
    .unwrap();
    let expected = Config::default()
        .broker_url("redis://127.0.0.1:6379/3")
        .max_tasks_process(4)
        .task_default_priority(-21)
        .blocking_handler_limit(8)
        .lease(Duration::from_millis(500))
        .retention(Some(Duration::from_secs(3600)))
        .max_message_size(2048)
        .result_timeout(Duration::from_millis(2500))
        .shutdown_timeout(Duration::from_secs(12))
        .log("warn,qtasks=debug");
    assert_eq!(config, expected);
    assert_eq!(Config::variables().count(), 10);
}

#[test]
fn code_sets_defaults_and_only_the_variables_that_are_set_override_them() {
    let from_code = Config::default().max_tasks_process(2).task_default_priority(7).log("debug");
    let config = from_code.clone().with_vars([("QTASKS_TASK_DEFAULT_PRIORITY", "21")]).unwrap();
    assert_eq!(config, from_code.task_default_priority(21));
    // The last of a repeated variable wins.
    let config = Config::from_vars([("QTASKS_MAX_TASKS_PROCESS", "2"), ("QTASKS_MAX_TASKS_PROCESS", "5")]).unwrap();
    assert_eq!(config.max_tasks_process, 5);
}

#[test]
fn retention_of_zero_or_none_keeps_finished_records() {
    for keep in ["0", "none", "NONE", "None", "0.0"] {
        let config = Config::from_vars([("QTASKS_RETENTION", keep)]).unwrap();
        assert_eq!(config.retention, None, "QTASKS_RETENTION={keep}");
    }
    let config = Config::from_vars([("QTASKS_RETENTION", "90.5")]).unwrap();
    assert_eq!(config.retention, Some(Duration::from_secs_f64(90.5)));
}

#[test]
fn a_bad_value_is_an_error_naming_the_variable_the_value_and_the_expected_form() {
    let cases = [
        ("QTASKS_BROKER_URL", "localhost:6379", "backend URL"),
        ("QTASKS_BROKER_URL", "", "backend URL"),
        ("QTASKS_MAX_TASKS_PROCESS", "0", "whole number ≥ 1"),
        ("QTASKS_MAX_TASKS_PROCESS", "-3", "whole number ≥ 1"),
        ("QTASKS_MAX_TASKS_PROCESS", "ten", "whole number ≥ 1"),
        ("QTASKS_MAX_TASKS_PROCESS", "2.5", "whole number ≥ 1"),
        ("QTASKS_TASK_DEFAULT_PRIORITY", "high", "whole number"),
        ("QTASKS_TASK_DEFAULT_PRIORITY", "99999999999999999999", "whole number"),
        ("QTASKS_BLOCKING_HANDLER_LIMIT", "0", "whole number ≥ 1"),
        ("QTASKS_LEASE", "0", "seconds > 0"),
        ("QTASKS_LEASE", "-1", "seconds > 0"),
        ("QTASKS_LEASE", "30s", "seconds > 0"),
        ("QTASKS_LEASE", "inf", "seconds > 0"),
        ("QTASKS_LEASE", "NaN", "seconds > 0"),
        ("QTASKS_RETENTION", "forever", "0 or none"),
        ("QTASKS_RETENTION", "-5", "0 or none"),
        ("QTASKS_MAX_MESSAGE_SIZE", "1MiB", "bytes ≥ 1"),
        ("QTASKS_MAX_MESSAGE_SIZE", "0", "bytes ≥ 1"),
        ("QTASKS_RESULT_TIMEOUT", "soon", "seconds > 0"),
        ("QTASKS_LOG", "info,[", "tracing filter"),
        ("QTASKS_LOG", "", "tracing filter"),
    ];
    for (variable, value, expected) in cases {
        let error: ConfigError = Config::from_vars([(variable, value)]).unwrap_err();
        assert_eq!((error.variable, error.value.as_str()), (variable, value));
        assert!(error.expected.contains(expected), "{variable}={value:?}: {error}");
        let message = error.to_string();
        assert!(message.starts_with(&format!("{variable}={value:?} is invalid: expected ")), "{message}");
        // A good value of another variable does not hide the bad one.
        let error = Config::from_vars([("QTASKS_TASK_DEFAULT_PRIORITY", "1"), (variable, value)]).unwrap_err();
        assert_eq!(error.variable, variable);
    }
}

#[test]
fn a_bad_broker_url_is_reported_without_its_password() {
    let error = Config::from_vars([("QTASKS_BROKER_URL", ":hunter2@db.internal:6379")]).unwrap_err();
    assert_eq!(error.variable, "QTASKS_BROKER_URL");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert!(error.to_string().contains("db.internal:6379"), "{error}");
}

/// Collects what `tracing` writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_unknown_qtasks_variable_is_a_warning_listing_the_known_ones_not_an_error() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let config = tracing::subscriber::with_default(subscriber, || {
        Config::from_vars([("QTASKS_LEASEE", "5"), ("QTASKS_MAX_TASKS_PROCESS", "3")])
    })
    .unwrap();
    assert_eq!(config.max_tasks_process, 3);
    assert_eq!(config.lease, Duration::from_secs(30));
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("WARN") && log.contains("QTASKS_LEASEE"), "{log}");
    for known in Config::variables() {
        assert!(log.contains(known), "the warning does not list {known}: {log}");
    }
}

/// E16: `QTASKS_TASK_DEFAULT_PRIORITY=21` reaches tasks enqueued by name.
#[tokio::test]
async fn e16_the_default_priority_from_the_environment_applies_to_tasks_that_declare_none() {
    let config = Config::from_vars([("QTASKS_TASK_DEFAULT_PRIORITY", "21")]).unwrap();
    let app = QueueTasks::builder("e16").task::<Plain>().task::<Declared>().config(config).build().unwrap();
    assert_eq!(app.config().task_default_priority, 21);

    let client = app.client();
    assert_eq!(stored_priority(&client, app.add_task("plain", ()).await.unwrap()).await, 21);
    let typed = app.enqueue(Plain::call()).await.unwrap().uuid();
    assert_eq!(app.get(typed).await.unwrap().unwrap().priority, 21);
    // A declared priority wins over the default; an explicit one over both.
    assert_eq!(stored_priority(&client, app.add_task("declared", ()).await.unwrap()).await, 3);
    assert_eq!(stored_priority(&client, app.add_task("plain", ()).priority(-1).await.unwrap()).await, -1);
    // A task this app does not define (run by another app) gets the default too.
    assert_eq!(stored_priority(&client, app.add_task("elsewhere", ()).await.unwrap()).await, 21);

    // Without the config, the default is 0.
    let app = QueueTasks::builder("e16-default").task::<Plain>().build().unwrap();
    assert_eq!(stored_priority(&app.client(), app.add_task("plain", ()).await.unwrap()).await, 0);
}

/// The priority a task was stored with when it was enqueued.
async fn stored_priority(client: &Client, handle: TaskHandle<Value>) -> i64 {
    client.get(handle.uuid()).await.unwrap().expect("stored").priority
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Records how many of its runs overlap.
#[task]
async fn counted() {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_runs_as_many_tasks_at_once_as_the_config_says() {
    let config = Config::from_vars([("QTASKS_MAX_TASKS_PROCESS", "1")]).unwrap();
    let app = QueueTasks::builder("one-at-a-time").task::<Counted>().config(config).build().unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(app.add_task("counted", ()).await.unwrap().uuid());
    }
    let worker = app.worker().start().await.unwrap();
    assert_eq!(app.workers().await.unwrap()[0].concurrency, 1);
    for id in ids {
        assert_eq!(app.wait(id, Duration::from_secs(30)).await.unwrap().status, TaskStatus::Success);
    }
    worker.shutdown().await;
    assert_eq!(PEAK.load(Ordering::SeqCst), 1, "max_tasks_process=1 ran tasks concurrently");

    // The builder's own setting still wins over the config.
    let app = QueueTasks::builder("seven").config(Config::default().max_tasks_process(3)).build().unwrap();
    let worker = app.worker().start().await.unwrap();
    assert_eq!(app.workers().await.unwrap()[0].concurrency, 3);
    worker.shutdown().await;
    let worker = app.worker().max_tasks_process(7).start().await.unwrap();
    assert_eq!(app.workers().await.unwrap()[0].concurrency, 7);
    worker.shutdown().await;
}

static MET: LazyLock<tokio::sync::Barrier> = LazyLock::new(|| tokio::sync::Barrier::new(3));

/// Finishes only once three runs are in it at the same time.
#[task]
async fn meet() {
    MET.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_with_a_config_of_three_runs_three_tasks_at_once() {
    let app = QueueTasks::builder("three-at-once")
        .task::<Meet>()
        .config(Config::default().max_tasks_process(3))
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.add_task("meet", ()).await.unwrap().uuid());
    }
    for id in ids {
        let status = app.wait(id, Duration::from_secs(30)).await.map(|t| t.status);
        assert!(matches!(status, Ok(TaskStatus::Success)), "three tasks did not run at once: {status:?}");
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn connect_with_a_memory_url_gives_a_memory_backend() {
    let memory = AnyBackend::connect_with("memory://", &Config::default()).await.unwrap();
    assert_eq!(memory.kind(), "memory");
}

#[tokio::test]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn connect_with_gives_the_redis_settings_to_the_backend() {
    let url = support::redis_url();
    let config = Config::from_vars([("QTASKS_LEASE", "9"), ("QTASKS_MAX_MESSAGE_SIZE", "300")]).unwrap();
    let app_name = format!("cfg-{}", qtasks::Uuid::new_v4().simple());
    let backend = match AnyBackend::connect_with(&url, &config).await {
        Ok(backend) => backend,
        Err(error) => return support::unreachable("config", &url, &error.to_string()),
    };
    assert_eq!(backend.lease_renewal(), Some(Duration::from_secs(3)), "a lease of 9 s is renewed every 3 s");
    let app = QueueTasks::builder(app_name).task::<Plain>().backend(backend).build().unwrap();
    assert!(app.add_task("plain", ()).await.is_ok());
    let too_big = app.add_task("plain", qtasks::json!({ "padding": "x".repeat(400) })).await.unwrap_err();
    assert!(too_big.to_string().contains("limit of 300 bytes"), "{too_big}");
    app.backend().flush().await.unwrap();
}

/// Runs the `qtasks-test-cli` app binary with `vars` added to its
/// environment (any `QTASKS_*` of the test's own removed).
fn cli(args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qtasks-test-cli"));
    for variable in Config::variables() {
        command.env_remove(variable);
    }
    command.env_remove("RUST_LOG").args(args).envs(vars.iter().copied());
    let out = command.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_exits_2_naming_the_variable_with_a_bad_value() {
    let (code, stdout, stderr) = cli(&["inspect", "tasks"], &[("QTASKS_MAX_TASKS_PROCESS", "0")]);
    assert_eq!(code, Some(2), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("QTASKS_MAX_TASKS_PROCESS=\"0\""), "{stderr}");
    assert!(stderr.contains("whole number ≥ 1"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

#[test]
fn the_cli_reads_its_settings_from_the_environment() {
    let vars =
        [("QTASKS_TASK_DEFAULT_PRIORITY", "21"), ("QTASKS_MAX_TASKS_PROCESS", "3"), ("QTASKS_RESULT_TIMEOUT", "4")];
    let (code, stdout, stderr) = cli(&["inspect", "config", "--json"], &vars);
    assert_eq!(code, Some(0), "{stderr}");
    let shown: qtasks::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["task_default_priority"], 21);
    assert_eq!(shown["max_tasks_process"], 3);
    assert_eq!(shown["result_timeout"], 4.0);
    assert_eq!(shown["broker_url"], "memory://");

    // Text form: one variable per line, as in an environment file.
    let (code, stdout, _) = cli(&["inspect", "config"], &vars);
    assert_eq!(code, Some(0));
    assert!(stdout.lines().any(|l| l == "QTASKS_TASK_DEFAULT_PRIORITY=21"), "{stdout}");

    // E16 through the CLI: `add` without --priority uses the default, unless
    // the task declares one.
    let (code, stdout, stderr) = cli(&["add", "add", "[1, 2]"], &vars);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(serde_json::from_str::<qtasks::Value>(&stdout).unwrap()["priority"], 21);
    let (_, stdout, _) = cli(&["add", "urgent"], &vars);
    assert_eq!(serde_json::from_str::<qtasks::Value>(&stdout).unwrap()["priority"], -5);

    // The broker URL comes from QTASKS_BROKER_URL unless --broker-url is given.
    let bad_url = [("QTASKS_BROKER_URL", "kafka://x")];
    let (code, _, stderr) = cli(&["inspect", "tasks"], &bad_url);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unsupported backend URL scheme `kafka://`"), "{stderr}");
    let (code, _, stderr) = cli(&["--broker-url", "memory://", "inspect", "tasks"], &bad_url);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn the_cli_warns_about_an_unknown_variable_and_goes_on() {
    let (code, _, stderr) = cli(&["inspect", "tasks"], &[("QTASKS_MAX_TASK_PROCESS", "3")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("QTASKS_MAX_TASK_PROCESS") && stderr.contains("QTASKS_MAX_TASKS_PROCESS"), "{stderr}");
}
