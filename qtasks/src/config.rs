//! Settings, from code or from `QTASKS_*` environment variables (QTasks's
//! `QueueConfig`).
//!
//! Every setting has a default, a builder-style setter and an environment
//! variable: the field's name in upper case after `QTASKS_`.
//!
//! | Variable | Default | Accepted values |
//! |---|---|---|
//! | `QTASKS_BROKER_URL` | `memory://` | a backend URL: `memory://`, `redis://…`, `rediss://…`, `redis+cluster://…` |
//! | `QTASKS_MAX_TASKS_PROCESS` | `10` | a whole number ≥ 1: tasks a worker runs at once |
//! | `QTASKS_TASK_DEFAULT_PRIORITY` | `0` | a whole number: the priority of tasks that declare none |
//! | `QTASKS_BLOCKING_HANDLER_LIMIT` | `64` | a whole number ≥ 1: blocking plugin handlers at once, process-wide |
//! | `QTASKS_LEASE` | `30` | seconds > 0 (Redis): how long a taken task is held |
//! | `QTASKS_RETENTION` | `86400` | seconds > 0, or `0`/`none` to keep finished records (Redis) |
//! | `QTASKS_MAX_MESSAGE_SIZE` | `1048576` | bytes ≥ 1: largest task record accepted (Redis) |
//! | `QTASKS_RESULT_TIMEOUT` | `100` | seconds > 0: how long the CLI's `add --wait` waits by default |
//! | `QTASKS_LOG` | `info` | a `tracing` filter, e.g. `warn,qtasks=debug` (when `RUST_LOG` is unset) |
//!
//! Unlike QTasks, which ignores a value it cannot cast, a bad value is a
//! [`ConfigError`] naming the variable, the value and what is expected. An
//! unknown `QTASKS_*` variable (a typo?) is only logged as a warning.
//!
//! ```
//! use qtasks::Config;
//! use std::time::Duration;
//!
//! // Code sets defaults; the environment overrides what it sets.
//! let config = Config::default()
//!     .max_tasks_process(4)
//!     .lease(Duration::from_secs(60))
//!     .with_vars([("QTASKS_TASK_DEFAULT_PRIORITY", "21")])?;
//! assert_eq!((config.max_tasks_process, config.task_default_priority), (4, 21));
//!
//! let error = Config::from_vars([("QTASKS_MAX_TASKS_PROCESS", "zero")]).unwrap_err();
//! assert_eq!(error.to_string(), "QTASKS_MAX_TASKS_PROCESS=\"zero\" is invalid: expected a whole number ≥ 1");
//! # Ok::<(), qtasks::ConfigError>(())
//! ```

use serde::{Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// The prefix of every variable.
const PREFIX: &str = "QTASKS_";

/// Settings of an app, its workers, its backend and the CLI.
///
/// Build one from [`Default`] and the setters, from the environment
/// ([`Config::from_env`]) or both ([`Config::with_env`]), and give it to the
/// app with [`Builder::config`](crate::Builder::config). Which component reads
/// which setting is said on each field.
///
/// `Debug` and `Serialize` hide the password of `broker_url`.
#[derive(Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Config {
    /// `QTASKS_BROKER_URL`, default `memory://`: the backend URL the CLI (and
    /// [`AnyBackend::connect_with`](crate::AnyBackend::connect_with)) connects to.
    #[serde(serialize_with = "serialize_url")]
    pub broker_url: String,
    /// `QTASKS_MAX_TASKS_PROCESS`, default 10, at least 1: how many tasks a
    /// worker runs at once unless
    /// [`WorkerBuilder::max_tasks_process`](crate::WorkerBuilder::max_tasks_process) says otherwise.
    pub max_tasks_process: usize,
    /// `QTASKS_TASK_DEFAULT_PRIORITY`, default 0: the priority of a task
    /// enqueued without one whose definition declares none (lower runs first).
    pub task_default_priority: i64,
    /// `QTASKS_BLOCKING_HANDLER_LIMIT`: how many blocking plugin handlers may
    /// run at once in this process. The limit is process-wide, so an app
    /// never applies it: the CLI ([`crate::cli::main`], which owns the
    /// process) does, and a program of your own calls
    /// [`set_blocking_handler_limit`](crate::plugin::set_blocking_handler_limit)
    /// with it. `None` (the default) leaves the limit as it is: 64 unless
    /// changed.
    pub blocking_handler_limit: Option<usize>,
    /// `QTASKS_LEASE`, default 30 s (Redis): how long a worker holds a task it
    /// took before the task goes back to the queue; see
    /// `RedisBackend::lease`.
    #[serde(serialize_with = "serialize_secs")]
    pub lease: Duration,
    /// `QTASKS_RETENTION`, default 1 day (Redis): how long records of finished
    /// tasks are kept; `None` keeps them. See
    /// `RedisBackend::retention`.
    #[serde(serialize_with = "crate::model::serialize_secs")]
    pub retention: Option<Duration>,
    /// `QTASKS_MAX_MESSAGE_SIZE`, default 1 MiB (Redis): the largest task
    /// record, as JSON bytes, that `enqueue` accepts; see
    /// `RedisBackend::max_message_size`.
    pub max_message_size: usize,
    /// `QTASKS_RESULT_TIMEOUT`, default 100 s: how long the CLI's
    /// `add --wait` (without a number) waits for the result.
    #[serde(serialize_with = "serialize_secs")]
    pub result_timeout: Duration,
    /// `QTASKS_SHUTDOWN_TIMEOUT`, default 30 s: how long the CLI's worker
    /// waits for its running tasks after the first SIGTERM or Ctrl-C before
    /// it stops them and puts them back in the queue (a second signal does
    /// that at once); see [`Worker::shutdown_timeout`](crate::Worker::shutdown_timeout).
    #[serde(serialize_with = "serialize_secs")]
    pub shutdown_timeout: Duration,
    /// `QTASKS_LOG`, default `info`: the `tracing` filter the CLI logs with
    /// when `RUST_LOG` is unset.
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            broker_url: "memory://".to_owned(),
            max_tasks_process: 10,
            task_default_priority: 0,
            blocking_handler_limit: None,
            lease: Duration::from_secs(30),
            retention: Some(Duration::from_secs(86_400)),
            max_message_size: 1024 * 1024,
            result_timeout: Duration::from_secs(100),
            shutdown_timeout: Duration::from_secs(30),
            log: "info".to_owned(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("broker_url", &redact_url(&self.broker_url))
            .field("max_tasks_process", &self.max_tasks_process)
            .field("task_default_priority", &self.task_default_priority)
            .field("blocking_handler_limit", &self.blocking_handler_limit)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .field("max_message_size", &self.max_message_size)
            .field("result_timeout", &self.result_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("log", &self.log)
            .finish()
    }
}

/// A variable's value was not of the expected form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is invalid: expected {expected}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The variable, e.g. `QTASKS_MAX_TASKS_PROCESS`.
    pub variable: &'static str,
    /// Its value (a password in a URL is hidden).
    pub value: String,
    /// What it should look like.
    pub expected: &'static str,
}

/// One setting: its variable, what its value looks like, and how it is
/// parsed into a config.
struct Setting {
    variable: &'static str,
    expected: &'static str,
    apply: fn(&mut Config, &str) -> Option<()>,
    show: fn(&Config) -> Option<String>,
}

/// Every setting, in the order errors are looked for.
const SETTINGS: &[Setting] = &[
    Setting {
        variable: "QTASKS_BROKER_URL",
        expected: "a backend URL such as memory:// or redis://host:6379",
        apply: |c, v| v.contains("://").then(|| c.broker_url = v.to_owned()),
        show: |c| Some(c.broker_url.clone()),
    },
    Setting {
        variable: "QTASKS_MAX_TASKS_PROCESS",
        expected: "a whole number ≥ 1",
        apply: |c, v| {
            c.max_tasks_process = at_least_one(v)?;
            Some(())
        },
        show: |c| Some(c.max_tasks_process.to_string()),
    },
    Setting {
        variable: "QTASKS_TASK_DEFAULT_PRIORITY",
        expected: "a whole number (lower runs first), e.g. 0 or -5",
        apply: |c, v| {
            c.task_default_priority = v.parse().ok()?;
            Some(())
        },
        show: |c| Some(c.task_default_priority.to_string()),
    },
    Setting {
        variable: "QTASKS_BLOCKING_HANDLER_LIMIT",
        expected: "a whole number ≥ 1",
        apply: |c, v| {
            c.blocking_handler_limit = Some(at_least_one(v)?);
            Some(())
        },
        show: |c| c.blocking_handler_limit.map(|n| n.to_string()),
    },
    Setting {
        variable: "QTASKS_LEASE",
        expected: "a number of seconds > 0, e.g. 30 or 0.5",
        apply: |c, v| {
            c.lease = seconds(v)?.max(Duration::from_millis(1));
            Some(())
        },
        show: |c| Some(c.lease.as_secs_f64().to_string()),
    },
    Setting {
        variable: "QTASKS_RETENTION",
        expected: "a number of seconds > 0, or 0 or none to keep finished tasks",
        apply: |c, v| {
            let forever = v.eq_ignore_ascii_case("none") || v.parse::<f64>() == Ok(0.0);
            c.retention = if forever { None } else { Some(seconds(v)?) };
            Some(())
        },
        show: |c| Some(c.retention.map_or_else(|| "none".to_owned(), |d| d.as_secs_f64().to_string())),
    },
    Setting {
        variable: "QTASKS_MAX_MESSAGE_SIZE",
        expected: "a number of bytes ≥ 1, e.g. 1048576",
        apply: |c, v| {
            c.max_message_size = at_least_one(v)?;
            Some(())
        },
        show: |c| Some(c.max_message_size.to_string()),
    },
    Setting {
        variable: "QTASKS_RESULT_TIMEOUT",
        expected: "a number of seconds > 0, e.g. 100 or 2.5",
        apply: |c, v| {
            c.result_timeout = seconds(v)?;
            Some(())
        },
        show: |c| Some(c.result_timeout.as_secs_f64().to_string()),
    },
    Setting {
        variable: "QTASKS_SHUTDOWN_TIMEOUT",
        expected: "a number of seconds > 0, e.g. 30 or 2.5",
        apply: |c, v| {
            c.shutdown_timeout = seconds(v)?;
            Some(())
        },
        show: |c| Some(c.shutdown_timeout.as_secs_f64().to_string()),
    },
    Setting {
        variable: "QTASKS_LOG",
        expected: "a tracing filter such as info or warn,qtasks=debug",
        apply: |c, v| {
            if !valid_filter(v) {
                return None;
            }
            c.log = v.to_owned();
            Some(())
        },
        show: |c| Some(c.log.clone()),
    },
];

fn at_least_one(v: &str) -> Option<usize> {
    v.parse().ok().filter(|&n| n >= 1)
}

fn seconds(v: &str) -> Option<Duration> {
    let secs: f64 = v.parse().ok()?;
    if !(secs.is_finite() && secs > 0.0) {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(feature = "cli")]
fn valid_filter(v: &str) -> bool {
    !v.is_empty() && tracing_subscriber::EnvFilter::try_new(v).is_ok()
}

#[cfg(not(feature = "cli"))]
fn valid_filter(v: &str) -> bool {
    !v.is_empty()
}

impl Config {
    /// The defaults overridden by the `QTASKS_*` variables of this process's
    /// environment; see the [module docs](self) for the variables.
    ///
    /// # Errors
    ///
    /// The first variable whose value is not of the expected form (a value
    /// that is not UTF-8 included).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::default().with_env()
    }

    /// The defaults overridden by the `QTASKS_*` pairs among `vars`; other
    /// keys are ignored, so `std::env::vars()` may be passed as is. Reads no
    /// environment, for tests.
    ///
    /// # Errors
    ///
    /// The first variable whose value is not of the expected form.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Self::default().with_vars(vars)
    }

    /// This config overridden by the `QTASKS_*` variables of the environment:
    /// code sets defaults, the deployment overrides them.
    ///
    /// # Errors
    ///
    /// As [`Config::from_env`].
    pub fn with_env(self) -> Result<Self, ConfigError> {
        self.with_vars(env_vars()?)
    }

    /// This config overridden by the `QTASKS_*` pairs among `vars` (the last
    /// of a repeated key wins). Unknown `QTASKS_*` keys are logged as a
    /// warning that lists the known ones.
    ///
    /// # Errors
    ///
    /// As [`Config::from_vars`].
    pub fn with_vars<K, V>(self, vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let (config, unknown) = self.overridden(vars)?;
        warn_unknown(&unknown);
        Ok(config)
    }

    /// This config overridden by `vars`, and the unknown `QTASKS_*` keys
    /// (not logged).
    pub(crate) fn overridden<K, V>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(Self, Vec<String>), ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut values: Vec<Option<String>> = vec![None; SETTINGS.len()];
        let mut unknown = Vec::new();
        for (key, value) in vars {
            let key = key.as_ref();
            if !key.starts_with(PREFIX) {
                continue;
            }
            match SETTINGS.iter().position(|s| s.variable == key) {
                Some(i) => values[i] = Some(value.as_ref().to_owned()),
                // Read by the CLI's `dashboard` itself, not a config setting.
                None if key == "QTASKS_DASHBOARD_TOKEN" => {}
                None if !unknown.iter().any(|u| u == key) => unknown.push(key.to_owned()),
                None => {}
            }
        }
        for (setting, value) in SETTINGS.iter().zip(values) {
            if let Some(value) = value {
                (setting.apply)(&mut self, value.trim()).ok_or_else(|| setting.error(&value))?;
            }
        }
        Ok((self, unknown))
    }

    /// Every setting as the variable that sets it and its value (a
    /// `blocking_handler_limit` of `None` is left out):
    /// `Config::from_vars(config.to_vars())` gives `config` back.
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        SETTINGS.iter().filter_map(|s| Some((s.variable, (s.show)(self)?))).collect()
    }

    /// The names of every variable read, e.g. `QTASKS_LEASE`.
    pub fn variables() -> impl Iterator<Item = &'static str> {
        SETTINGS.iter().map(|s| s.variable)
    }

    /// Sets [`broker_url`](Config::broker_url).
    pub fn broker_url(mut self, url: impl Into<String>) -> Self {
        self.broker_url = url.into();
        self
    }

    /// Sets [`max_tasks_process`](Config::max_tasks_process) (0 counts as 1).
    pub fn max_tasks_process(mut self, n: usize) -> Self {
        self.max_tasks_process = n.max(1);
        self
    }

    /// Sets [`task_default_priority`](Config::task_default_priority).
    pub fn task_default_priority(mut self, priority: i64) -> Self {
        self.task_default_priority = priority;
        self
    }

    /// Sets [`blocking_handler_limit`](Config::blocking_handler_limit) (0 counts as 1).
    pub fn blocking_handler_limit(mut self, n: usize) -> Self {
        self.blocking_handler_limit = Some(n.max(1));
        self
    }

    /// Sets [`lease`](Config::lease) (at least 1 ms).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(1));
        self
    }

    /// Sets [`retention`](Config::retention); `None` keeps finished records.
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Sets [`max_message_size`](Config::max_message_size), in bytes.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`result_timeout`](Config::result_timeout).
    pub fn result_timeout(mut self, timeout: Duration) -> Self {
        self.result_timeout = timeout;
        self
    }

    /// Sets [`shutdown_timeout`](Config::shutdown_timeout).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets [`log`](Config::log), a `tracing` filter such as `warn,qtasks=debug`.
    pub fn log(mut self, filter: impl Into<String>) -> Self {
        self.log = filter.into();
        self
    }
}

impl Setting {
    fn error(&self, value: &str) -> ConfigError {
        let value = if self.variable == "QTASKS_BROKER_URL" { redact_url(value) } else { value.to_owned() };
        ConfigError { variable: self.variable, value, expected: self.expected }
    }
}

/// The `QTASKS_*` variables of the environment.
pub(crate) fn env_vars() -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str().filter(|k| k.starts_with(PREFIX)) else { continue };
        match value.into_string() {
            Ok(value) => out.push((key.to_owned(), value)),
            Err(value) => match SETTINGS.iter().find(|s| s.variable == key) {
                Some(setting) => return Err(setting.error(&value.to_string_lossy())),
                // Unknown: kept, to be warned about with the others.
                None => out.push((key.to_owned(), String::new())),
            },
        }
    }
    Ok(out)
}

/// Logs unknown `QTASKS_*` variables, with the known ones.
pub(crate) fn warn_unknown(unknown: &[String]) {
    if unknown.is_empty() {
        return;
    }
    let known: Vec<&str> = Config::variables().collect();
    tracing::warn!(
        unknown = %unknown.join(", "),
        known = %known.join(", "),
        "unknown QTASKS_* environment variable(s), ignored"
    );
}

/// Hides the credentials of a URL: `redis://:secret@host` → `redis://***@host`
/// (and `user:secret@host` → `***@host`).
pub(crate) fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |scheme| scheme + 3);
    match url.rfind('@') {
        Some(at) if at >= start => format!("{}***@{}", &url[..start], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

fn serialize_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

fn serialize_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_round_trips_through_its_variable() {
        let config = Config::default()
            .broker_url("redis://:pw@host:6379/2")
            .max_tasks_process(3)
            .task_default_priority(-7)
            .blocking_handler_limit(5)
            .lease(Duration::from_millis(1500))
            .retention(None)
            .max_message_size(10)
            .result_timeout(Duration::from_secs(7))
            .log("warn,qtasks=debug");
        assert_eq!(Config::from_vars(config.to_vars()).unwrap(), config);
        assert_eq!(Config::from_vars(Config::default().to_vars()).unwrap(), Config::default());
    }

    #[test]
    fn passwords_are_hidden_in_debug_serialize_and_errors() {
        let config = Config::default().broker_url("redis://user:hunter2@host");
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&config).unwrap().contains("hunter2"));
        let error = Config::from_vars([("QTASKS_BROKER_URL", "user:hunter2@host")]).unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
