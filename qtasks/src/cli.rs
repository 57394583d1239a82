//! A command line for an app binary (feature `cli`): run a worker, enqueue,
//! read a task, inspect, ping.
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
//!     qtasks::cli::main("demo", |backend| QueueTasks::builder("demo").task::<add>().backend(backend).build()).await
//! }
//! ```
//!
//! ```text
//! demo run --concurrency 16                     # a worker (QTASKS_BROKER_URL or --broker-url)
//! demo add add '[2, 3]' --wait 5                # enqueue, wait up to 5 s, print the record
//! demo status 5f0c…                             # print a task's record
//! demo inspect tasks|plugins|workers [--json]   # listings
//! demo ping                                     # exit 0 if a worker is alive
//! ```
//!
//! Logs go through `tracing`; the level comes from `RUST_LOG` (default `info`).

use crate::app::QueueTasks;
use crate::backend::AnyBackend;
use crate::error::Error;
use crate::plugin::Chain;
use crate::task::TaskSet;
use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;
use std::time::Duration;
use uuid::Uuid;

/// The command line.
#[derive(Debug, Parser)]
#[command(about = "A qtasks app: run a worker or act as a client")]
pub struct Cli {
    /// Backend URL: `memory://` (this process only) or `redis://[:password@]host:port[/db]`
    /// (`rediss://` for TLS).
    #[arg(long, env = "QTASKS_BROKER_URL", default_value = "memory://", global = true)]
    pub broker_url: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a worker; stops gracefully on Ctrl-C or SIGTERM.
    Run {
        /// How many tasks run at once.
        #[arg(long, short = 'c', default_value_t = 10)]
        concurrency: usize,
    },
    /// Enqueue a task by name with JSON arguments.
    Add {
        /// The task's name.
        task: String,
        /// Arguments as JSON: an array (positional) or an object (by name).
        #[arg(default_value = "[]")]
        args: String,
        /// Wait up to this many seconds for the final record.
        #[arg(long)]
        wait: Option<f64>,
        /// Override the task's priority (lower runs first).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i64>,
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
}

/// Parses the command line, connects the backend, builds the app with
/// `build` and runs the command. Returns the process exit code.
pub async fn main<T, C, F>(app_name: &str, build: F) -> ExitCode
where
    T: TaskSet,
    C: Chain,
    F: FnOnce(AnyBackend) -> Result<QueueTasks<T, C, AnyBackend>, Error>,
{
    init_tracing();
    let cli = Cli::parse();
    match execute(app_name, cli, build).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Runs one parsed command.
pub async fn execute<T, C, F>(app_name: &str, cli: Cli, build: F) -> Result<ExitCode, Box<dyn std::error::Error>>
where
    T: TaskSet,
    C: Chain,
    F: FnOnce(AnyBackend) -> Result<QueueTasks<T, C, AnyBackend>, Error>,
{
    let backend = AnyBackend::connect(&cli.broker_url, app_name).await?;
    let app = build(backend)?;
    match cli.command {
        Command::Run { concurrency } => {
            print!("{}", banner(&app, &cli.broker_url, concurrency));
            let worker = app.worker().max_tasks_process(concurrency).start().await?;
            shutdown_signal().await;
            eprintln!("shutting down: waiting for running tasks");
            worker.shutdown().await;
        }
        Command::Add { task, args, wait, priority } => {
            let args: serde_json::Value =
                serde_json::from_str(&args).map_err(|e| format!("arguments are not valid JSON: {e}"))?;
            let mut add = app.add_task(task, args);
            if let Some(p) = priority {
                add = add.priority(p);
            }
            match wait {
                None => println!("{}", serde_json::to_string_pretty(&add.await?)?),
                Some(secs) => match add.wait(Duration::from_secs_f64(secs)).await? {
                    Some(task) => println!("{}", serde_json::to_string_pretty(&task)?),
                    None => {
                        eprintln!("the task did not finish within {secs} s; it is still queued or running");
                        return Ok(ExitCode::from(2));
                    }
                },
            }
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
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", text_listing(&value));
            }
        }
        Command::Ping => {
            let alive = app.ping().await;
            println!("{}", if alive { "alive" } else { "no worker alive" });
            return Ok(if alive { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The start-up banner: app, backend, concurrency, tasks and plugins.
pub fn banner<T: TaskSet, C: Chain, B: crate::Backend>(
    app: &QueueTasks<T, C, B>,
    url: &str,
    concurrency: usize,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "qtasks worker");
    let _ = writeln!(out, "  app:          {}", app.name());
    let _ = writeln!(out, "  backend:      {} ({})", app.backend().kind(), redact(url));
    let _ = writeln!(out, "  concurrency:  {concurrency}");
    let _ = writeln!(out, "  tasks:");
    for t in app.tasks() {
        let from = t.plugin.map(|p| format!(" (from plugin {p})")).unwrap_or_default();
        let _ = writeln!(out, "    . {}{from}", t.name);
    }
    let _ = writeln!(out, "  plugins:");
    for p in app.plugins() {
        let triggers = if p.triggers.is_empty() { "(lifecycle only)".to_owned() } else { p.triggers.join(", ") };
        let _ = writeln!(out, "    . {} {}: {triggers}", p.name, p.version);
    }
    out
}

/// Hides the password of a URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
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
