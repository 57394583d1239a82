//! A command line for an app binary (feature `cli`): run a worker, enqueue,
//! read a task, pause and resume queues, inspect, ping.
//!
//! ```no_run
//! use qtasks::{QueueTasks, task};
//!
//! #[task]
//! async fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     qtasks::cli::main(|backend| QueueTasks::builder("demo").task::<Add>().backend(backend).build()).await
//! }
//! ```
//!
//! ```text
//! demo run --concurrency 16                     # a worker (QTASKS_BROKER_URL or --broker-url)
//! demo run --queues critical,default            # … taking from these queues, in strict order
//! demo run --queues critical=6,default=1        # … or weighted
//! demo run --inline -c 64                       # … polling its runs itself (short async tasks)
//! demo add add '[2, 3]' --wait 5                # enqueue, wait up to 5 s, print the record
//! demo add add '[2, 3]' --wait                  # … up to QTASKS_RESULT_TIMEOUT (100 s)
//! demo add add '[2, 3]' --queue critical --delay 60 --unique-key nightly
//! demo queue pause emails                       # no worker takes from `emails` …
//! demo queue resume emails                      # … until it is resumed
//! demo status 5f0c…                             # print a task's record
//! demo inspect tasks|plugins|workers|queues [--json]   # listings
//! demo inspect config [--json]                  # the settings in effect
//! demo inspect stats [--json]                   # live counters: queue, in flight, runs per task
//! demo ping                                     # exit 0 if a worker is alive
//! demo migrate                                  # Postgres: apply the schema's missing migrations
//! demo migrate --check                          # … or only say whether any are missing (exit 1)
//! demo dashboard --bind 127.0.0.1:8080          # the web dashboard (feature `web`)
//! demo dashboard --worker                       # … with a worker in the same process
//! ```
//!
//! `dashboard` (feature `web`, see [`crate::web`]) serves the dashboard of
//! the app on its backend, on 127.0.0.1:8080 unless `--bind` says
//! otherwise, until Ctrl-C. With `QTASKS_DASHBOARD_TOKEN` set (an
//! environment variable, never a flag, so `ps` does not show it) every page
//! and route needs that token; `--read-only` switches every action off.
//!
//! # Settings
//!
//! The CLI's settings are the app's [`Config`] overridden by the `QTASKS_*`
//! environment variables that are set (see [`crate::config`]); flags
//! override both. The backend is connected before the app is built, so
//! its settings (`QTASKS_BROKER_URL`, `QTASKS_LEASE`, `QTASKS_RETENTION`,
//! `QTASKS_MAX_MESSAGE_SIZE`) come from the environment and the defaults
//! only. A bad value is reported naming the variable, with exit code 2 (as
//! for a bad flag). The app itself (tasks enqueued from inside tasks) sees
//! only its own config: build it with `.config(…)` to change that.
//!
//! Logs go through `tracing`; the filter comes from `RUST_LOG`, else
//! `QTASKS_LOG` (default `info`).

use crate::app::Error;
use crate::app::QueueTasks;
use crate::backend::AnyBackend;
use crate::config::{Config, ConfigError, env_vars, warn_unknown};
use crate::dispatch::PluginChain;
use crate::queue::QueueOrder;
use crate::task::TaskSet;
use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;
use std::time::Duration;
use uuid::Uuid;

/// The command line.
#[derive(Debug, Parser)]
#[command(about = "A qtasks app: run a worker or act as a client")]
pub struct Cli {
    /// Backend URL: `memory://` (this process only), `redis://[:password@]host:port[/db]`
    /// (`rediss://` for TLS; `redis+cluster://host:port,host:port…` for a Redis Cluster),
    /// or `postgres://user@host/db[?qtasks_schema=…]` (feature
    /// `postgres`) [default: QTASKS_BROKER_URL, else memory://].
    #[arg(long, global = true)]
    pub broker_url: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a worker; stops gracefully on Ctrl-C or SIGTERM.
    Run {
        /// How many tasks run at once [default: QTASKS_MAX_TASKS_PROCESS, else 10].
        #[arg(long, short = 'c')]
        concurrency: Option<usize>,
        /// The queues to take from: `critical,default` in strict order, or
        /// `critical=6,default=1` weighted [default: every queue the app
        /// knows, in strict order].
        #[arg(long, short = 'Q', value_name = "LIST")]
        queues: Option<QueueOrder>,
        /// Poll the runs inside the worker's own task instead of spawning
        /// one per task: leaner for many short I/O-bound async tasks (see
        /// `WorkerBuilder::run_inline`).
        #[arg(long)]
        inline: bool,
    },
    /// Enqueue a task by name with JSON arguments.
    Add {
        /// The task's name.
        task: String,
        /// Arguments as JSON: an array (positional) or an object (by name).
        #[arg(default_value = "[]")]
        args: String,
        /// Wait up to this many seconds for the final record; without a
        /// number, QTASKS_RESULT_TIMEOUT (100 s).
        #[arg(long, value_name = "SECS", num_args = 0..=1)]
        wait: Option<Option<f64>>,
        /// Override the task's priority (lower runs first).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i64>,
        /// Send the task to this queue instead of its own.
        #[arg(long)]
        queue: Option<String>,
        /// Run it no sooner than this many seconds from now.
        #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
        delay: Option<f64>,
        /// Enqueue it only if no task with this unique key is queued,
        /// running, or finished within its window.
        #[arg(long, value_name = "KEY")]
        unique_key: Option<String>,
    },
    /// Pause or resume a queue for every worker.
    Queue {
        /// What to do.
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Print a task's record as JSON.
    Status {
        /// The task's id.
        uuid: Uuid,
    },
    /// List the app's tasks, plugins or live workers.
    Inspect {
        /// What to list.
        what: Inspect,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 if a worker of the app is alive, 1 otherwise.
    Ping,
    /// Apply the migrations the backend's schema lacks (Postgres; other
    /// backends have no schema and nothing to do). Other commands on a
    /// Postgres URL migrate when they connect; this is the deploy step for
    /// apps that connect with migrations off.
    Migrate {
        /// Change nothing: print the schema's version and exit 1 if
        /// migrations are missing.
        #[arg(long)]
        check: bool,
    },
    /// Serve the web dashboard and its JSON API until Ctrl-C or SIGTERM
    /// (token: QTASKS_DASHBOARD_TOKEN).
    #[cfg(feature = "web")]
    Dashboard {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: std::net::SocketAddr,
        /// Hide and refuse every action (cancel, retry, enqueue, pause).
        #[arg(long)]
        read_only: bool,
        /// Also run a worker in this process (for `memory://`, whose tasks
        /// live in this process only).
        #[arg(long)]
        worker: bool,
    },
}

/// What `queue` does.
#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Stop every worker taking tasks from the queue (enqueueing still
    /// works; running tasks finish).
    Pause {
        /// The queue.
        queue: String,
    },
    /// Let workers take from the queue again.
    Resume {
        /// The queue.
        queue: String,
    },
}

/// What `inspect` lists.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Inspect {
    /// The tasks this binary defines.
    Tasks,
    /// The plugins this binary registers.
    Plugins,
    /// The workers alive on the backend.
    Workers,
    /// The app's queues: depth, delayed, in flight, paused, limits, the
    /// age of the oldest waiting task.
    Queues,
    /// The settings in effect (the app's config overridden by the
    /// environment and the flags; passwords hidden).
    Config,
    /// Everything at once, with the live counters: queue depth, tasks in
    /// flight, and per task the runs that ended success, error, retry, cancel.
    Stats,
}

/// Parses the command line, connects the backend, builds the app with
/// `build` (which names the app: the backend serves that name) and runs
/// the command. Returns the process exit code.
pub async fn main<T, C, F>(build: F) -> ExitCode
where
    T: TaskSet,
    C: PluginChain,
    F: FnOnce(AnyBackend) -> Result<QueueTasks<T, C, AnyBackend>, Error>,
{
    let cli = Cli::parse();
    let checked = env_vars().and_then(|vars| Ok((Config::default().overridden(pairs(&vars))?, vars)));
    let ((config, unknown), vars) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            // A usage error, like a bad flag.
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config.log);
    warn_unknown(&unknown);
    match execute_with_vars(cli, &vars, build).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            if error.is::<ConfigError>() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn pairs(vars: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Runs one parsed command, with the settings of the `QTASKS_*`
/// environment variables (a bad value is a [`ConfigError`]).
pub async fn execute<T, C, F>(cli: Cli, build: F) -> Result<ExitCode, Box<dyn std::error::Error>>
where
    T: TaskSet,
    C: PluginChain,
    F: FnOnce(AnyBackend) -> Result<QueueTasks<T, C, AnyBackend>, Error>,
{
    execute_with_vars(cli, &env_vars()?, build).await
}

/// Runs one parsed command with the settings of `vars` (`QTASKS_*` pairs)
/// instead of the environment's, for tests.
pub async fn execute_with_vars<T, C, F>(
    cli: Cli,
    vars: &[(String, String)],
    build: F,
) -> Result<ExitCode, Box<dyn std::error::Error>>
where
    T: TaskSet,
    C: PluginChain,
    F: FnOnce(AnyBackend) -> Result<QueueTasks<T, C, AnyBackend>, Error>,
{
    let (env, _) = Config::default().overridden(pairs(vars))?;
    let url = cli.broker_url.unwrap_or_else(|| env.broker_url.clone());
    if let Command::Migrate { check } = cli.command {
        // Before connecting: a connection would migrate on its own.
        return migrate(&url, check).await;
    }
    let backend = AnyBackend::connect_with(&url, &env).await?;
    let app = build(backend)?;
    // The app's settings, overridden by the environment's.
    let (mut config, _) = app.config().clone().overridden(pairs(vars))?;
    config.broker_url = url;
    (config.lease, config.retention, config.max_message_size) = (env.lease, env.retention, env.max_message_size);
    if let Some(limit) = config.blocking_handler_limit {
        crate::dispatch::set_blocking_handler_limit(limit);
    }
    match cli.command {
        Command::Run { concurrency, queues, inline } => {
            let concurrency = concurrency.unwrap_or(config.max_tasks_process).max(1);
            let mut worker = app.worker().max_tasks_process(concurrency).run_inline(inline);
            worker = match queues.clone() {
                Some(QueueOrder::Strict(names)) => worker.queues(names),
                Some(QueueOrder::Weighted(weights)) => worker.weighted_queues(weights),
                None => worker,
            };
            print!("{}", banner(&app, &config.broker_url, concurrency, queues.as_ref()));
            let mut signals = Signals::new();
            let worker = worker.start().await?;
            signals.next().await;
            let limit = config.shutdown_timeout;
            eprintln!(
                "shutting down: waiting up to {} s for running tasks (a second signal stops them now)",
                limit.as_secs_f64()
            );
            let force = async {
                tokio::select! {
                    () = tokio::time::sleep(limit) => {}
                    () = signals.next() => eprintln!("second signal: stopping the running tasks now"),
                }
            };
            let report = worker.shutdown_or(force).await;
            if !report.released.is_empty() {
                eprintln!("{} running task(s) stopped and put back in the queue", report.released.len());
            }
        }
        Command::Add { task, args, wait, priority, queue, delay, unique_key } => {
            let args: serde_json::Value =
                serde_json::from_str(&args).map_err(|e| format!("arguments are not valid JSON: {e}"))?;
            let declared = app.tasks().iter().find(|t| t.name == task).and_then(|t| t.priority);
            let priority = priority.or(declared).unwrap_or(config.task_default_priority);
            let mut enqueue = app.add_task(task, args).priority(priority);
            if let Some(queue) = queue {
                enqueue = enqueue.queue(queue);
            }
            if let Some(secs) = delay {
                let delay = Duration::try_from_secs_f64(secs)
                    .map_err(|_| format!("--delay: expected a number of seconds ≥ 0, got {secs}"))?;
                enqueue = enqueue.delay(delay);
            }
            if let Some(key) = unique_key {
                enqueue = enqueue.unique_key(key);
            }
            let handle = enqueue.await?;
            match wait {
                None => match app.get(handle.uuid()).await? {
                    Some(task) => println!("{}", serde_json::to_string_pretty(&task)?),
                    None => println!("{}", serde_json::json!({ "uuid": handle.uuid() })),
                },
                Some(secs) => {
                    let timeout = match secs {
                        None => config.result_timeout,
                        Some(secs) => Duration::try_from_secs_f64(secs)
                            .map_err(|_| format!("--wait: expected a number of seconds ≥ 0, got {secs}"))?,
                    };
                    match handle.record(timeout).await {
                        Ok(task) => println!("{}", serde_json::to_string_pretty(&task)?),
                        Err(crate::WaitError::Timeout) => {
                            let secs = timeout.as_secs_f64();
                            eprintln!("the task did not finish within {secs} s; it is still queued or running");
                            return Ok(ExitCode::from(2));
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            }
        }
        Command::Queue { action } => {
            let (queue, paused) = match &action {
                QueueAction::Pause { queue } => (queue, true),
                QueueAction::Resume { queue } => (queue, false),
            };
            if paused {
                app.pause_queue(queue).await?;
            } else {
                app.resume_queue(queue).await?;
            }
            println!("queue {queue} {}", if paused { "paused" } else { "resumed" });
        }
        Command::Status { uuid } => match app.get(uuid).await? {
            Some(task) => println!("{}", serde_json::to_string_pretty(&task)?),
            None => {
                eprintln!("no task {uuid}");
                return Ok(ExitCode::FAILURE);
            }
        },
        Command::Inspect { what, json } => {
            let value = match what {
                Inspect::Tasks => serde_json::to_value(app.tasks())?,
                Inspect::Plugins => serde_json::to_value(app.plugins())?,
                Inspect::Workers => serde_json::to_value(app.workers().await?)?,
                Inspect::Queues => serde_json::to_value(app.queues().await?)?,
                Inspect::Config => serde_json::to_value(&config)?,
                Inspect::Stats => {
                    let inspection = app.inspect().await?;
                    if !json {
                        print!("{inspection}");
                        return Ok(ExitCode::SUCCESS);
                    }
                    serde_json::to_value(&inspection)?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else if let Inspect::Config = what {
                // As variables, ready to paste into an environment.
                for (variable, value) in config.to_vars() {
                    let value = if variable == "QTASKS_BROKER_URL" { redact(&value) } else { value };
                    println!("{variable}={value}");
                }
            } else {
                print!("{}", text_listing(&value));
            }
        }
        Command::Ping => {
            let alive = app.ping().await;
            println!("{}", if alive { "alive" } else { "no worker alive" });
            return Ok(if alive { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Migrate { .. } => unreachable!("handled before connecting"),
        #[cfg(feature = "web")]
        Command::Dashboard { bind, read_only, worker } => {
            let token = vars.iter().find(|(k, _)| k == "QTASKS_DASHBOARD_TOKEN").map(|(_, v)| v.clone());
            if !bind.ip().is_loopback() && token.as_deref().is_none_or(str::is_empty) {
                eprintln!(
                    "warning: the dashboard listens on {bind}, beyond this host, without a token: \
                     anyone who reaches it can act on the queue (set QTASKS_DASHBOARD_TOKEN, or --read-only)"
                );
            }
            let dashboard = crate::web::Dashboard::new().read_only(read_only).token(token.unwrap_or_default());
            let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| format!("--bind {bind}: {e}"))?;
            let worker = match worker {
                true => Some(app.worker().max_tasks_process(config.max_tasks_process).start().await?),
                false => None,
            };
            // The address actually bound (port 0 picks one), for scripts to read.
            println!("dashboard of app {} on http://{}/", app.name(), listener.local_addr()?);
            let mut signals = Signals::new();
            crate::web::serve(&app, dashboard, listener, async move { signals.next().await }).await?;
            if let Some(worker) = worker {
                worker.shutdown().await;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `migrate` command.
async fn migrate(url: &str, check: bool) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    if !matches!(scheme, "postgres" | "postgresql") {
        // Checked like any other command's URL, then nothing to do.
        AnyBackend::connect(url).await?;
        println!("{scheme}:// keeps no schema: nothing to migrate");
        return Ok(ExitCode::SUCCESS);
    }
    #[cfg(feature = "postgres")]
    {
        use crate::backend::postgres::LATEST_VERSION;
        let options = crate::PostgresBackend::options(url);
        if check {
            let version = options.schema_version().await?;
            return Ok(if version == LATEST_VERSION {
                println!("schema at version {version}: up to date");
                ExitCode::SUCCESS
            } else {
                println!("schema at version {version}: migrations to version {LATEST_VERSION} are missing");
                ExitCode::FAILURE
            });
        }
        let done = options.apply_migrations().await?;
        if done.from == done.to {
            println!("schema {} at version {}: up to date", done.schema, done.to);
        } else {
            println!("schema {} migrated from version {} to {}", done.schema, done.from, done.to);
        }
        Ok(ExitCode::SUCCESS)
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = check;
        Err(format!("{scheme}:// needs qtasks built with feature `postgres`").into())
    }
}

/// The start-up banner: app, backend, concurrency, tasks and plugins.
pub fn banner<T: TaskSet, C: PluginChain, B: crate::Backend>(
    app: &QueueTasks<T, C, B>,
    url: &str,
    concurrency: usize,
    queues: Option<&QueueOrder>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "qtasks worker");
    let _ = writeln!(out, "  app:          {}", app.name());
    let _ = writeln!(out, "  backend:      {} ({})", app.backend().kind(), redact(url));
    let _ = writeln!(out, "  concurrency:  {concurrency}");
    match queues {
        Some(order @ QueueOrder::Strict(_)) => writeln!(out, "  queues:       {order} (strict order)"),
        Some(order @ QueueOrder::Weighted(_)) => writeln!(out, "  queues:       {order} (weighted)"),
        None => writeln!(out, "  queues:       {} (strict order)", app.inner.known_queues().join(", ")),
    }
    .expect("writing to a String cannot fail");
    let _ = writeln!(out, "  tasks:");
    let plugins = app.plugins();
    for t in app.tasks() {
        let from = crate::client::inspect::contributed_by(&plugins, t.name)
            .map(|p| format!(" (from plugin {p})"))
            .unwrap_or_default();
        let stream = if t.stream { " (stream)" } else { "" };
        let _ = writeln!(out, "    . {}{stream}{from}", t.name);
    }
    let _ = writeln!(out, "  plugins:");
    for p in &plugins {
        let triggers = if p.triggers.is_empty() { "(lifecycle only)".to_owned() } else { p.triggers.join(", ") };
        let _ = writeln!(out, "    . {} {}: {triggers}", p.name, p.version);
    }
    out
}

/// Hides the password of a URL.
fn redact(url: &str) -> String {
    crate::config::redact_url(url)
}

fn text_listing(value: &serde_json::Value) -> String {
    let mut out = String::new();
    for item in value.as_array().into_iter().flatten() {
        let name = item.get("name").or_else(|| item.get("id")).and_then(|v| v.as_str()).unwrap_or("?");
        out.push_str(name);
        out.push('\n');
        if let Some(map) = item.as_object() {
            for (k, v) in map {
                if k != "name" {
                    out.push_str(&format!("  {k:<14} {v}\n"));
                }
            }
        }
    }
    out
}

/// SIGTERM and Ctrl-C (SIGINT), listened to from the first call on, so a
/// second signal is never missed between two waits.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self { term: signal(SignalKind::terminate()).ok(), int: signal(SignalKind::interrupt()).ok() }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Completes at the next SIGTERM or Ctrl-C.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            let term = async {
                match &mut self.term {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending().await,
                }
            };
            let int = async {
                match &mut self.int {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = term => {}
                () = int => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn banners_never_show_passwords() {
        assert_eq!(redact("redis://:secret@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
