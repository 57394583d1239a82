//! Backends that speak the wire formats of Python task queues (feature
//! `python`), so Rust `#[task]` functions serve tasks the real, unmodified
//! Python clients enqueue, and those clients get their results as if a
//! Python worker had run them:
//!
//! - [`QtasksPyBackend`]: Python QTasks 1.7.3 on its default Redis broker
//!   and storage (`{name}:task_queue`, the `{name}:<uuid>` hashes).
//! - [`CeleryBackend`]: Celery's message protocol v2 on kombu's Redis
//!   transport, JSON bodies, with Celery's Redis result backend.
//!
//! # Layout
//!
//! | file | holds |
//! | --- | --- |
//! | `mod.rs` | connecting, errors, mapping Python `args`/`kwargs` onto qtasks arguments |
//! | `qtasks_py.rs`, `lua/qt_*.lua` | [`QtasksPyBackend`] and its scripts |
//! | `celery.rs`, `lua/cel_*.lua` | [`CeleryBackend`] and its scripts |
//!
//! # Arguments
//!
//! Python sends positional `args` (a JSON array) and keyword `kwargs` (a
//! JSON object). The task's [`TaskMessage::args`](crate::TaskMessage::args)
//! is the array when there are no keyword arguments, the object when there
//! are no positional ones, and otherwise an object holding both: the
//! positional ones under the keys `"0"`, `"1"`, … (which no Rust parameter
//! can be called) and the keyword ones under their names. `#[task]`
//! matches positions and names onto its parameters, and a call that does
//! not fit (an unknown name, a parameter given twice, one missing) ends
//! the task `error` with the reason.

mod celery;
mod qtasks_py;

pub use celery::CeleryBackend;
pub use qtasks_py::QtasksPyBackend;

use super::redis::glob_escape;
use super::redis::settings;
use super::{BackendError, BackendErrorKind};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError};
use serde_json::{Map, Value};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the server to answer a (non-blocking) command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a fetch blocks before it looks again (delayed tasks, dead holders).
const MAX_BLOCK: Duration = Duration::from_secs(5);
/// Idle blocking connections kept for later fetches.
const BLOCKING_POOL: usize = 4;
/// Dead letters kept per app (the newest).
const DEAD_LETTERS_KEPT: i64 = 10_000;

/// The connections of a Python-protocol backend: a shared, reconnecting
/// one for commands, and a pool of connections for blocking pops (a
/// blocking command would stall the shared one).
struct Conns {
    client: Client,
    manager: ConnectionManager,
    blocking: Mutex<Vec<MultiplexedConnection>>,
    /// The settings groups whose older settings were indexed.
    indexed: settings::Indexed,
}

impl Conns {
    async fn connect(kind: &'static str, url: &str) -> Result<Self, BackendError> {
        if url.starts_with("rediss") && rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // The URL may hold a password: errors do not repeat it.
        let client = Client::open(url).map_err(|e| {
            BackendError::new(kind, BackendErrorKind::InvalidRequest, "invalid Redis URL").with_source(e)
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let manager = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(redis_error(kind, "could not connect to Redis"))?;
        Ok(Self { client, manager, blocking: Mutex::new(Vec::new()), indexed: Default::default() })
    }

    fn conn(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// Runs a blocking command (its own timeout is `block`) on a pooled
    /// connection of its own.
    async fn blocking<T: redis::FromRedisValue>(
        &self,
        kind: &'static str,
        cmd: &redis::Cmd,
        block: Duration,
    ) -> Result<T, BackendError> {
        let idle = lock(&self.blocking).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(None);
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(redis_error(kind, "opening a blocking connection"))?
            }
        };
        match tokio::time::timeout(block + CONNECT_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(value)) => {
                let mut pool = lock(&self.blocking);
                if pool.len() < BLOCKING_POOL {
                    pool.push(conn);
                }
                Ok(value)
            }
            Ok(Err(e)) => Err(redis_error(kind, "waiting for tasks")(e)),
            Err(_) => Err(BackendError::new(
                kind,
                BackendErrorKind::Connection,
                "waiting for tasks: the server did not answer in time",
            )),
        }
    }
}

/// The index of the settings group whose keys start with `group` (which
/// ends in `:`): the prefix without its last `:`, a key no setting of any
/// group can have (each has a name after its group's `:`), under the same
/// prefix, so `flush` removes it with the settings.
fn settings_index(group: &str) -> String {
    group.strip_suffix(':').unwrap_or(group).to_owned()
}

impl Conns {
    /// Every key matching a `SCAN` pattern.
    async fn scan(&self, kind: &'static str, pattern: &str) -> Result<Vec<String>, BackendError> {
        super::redis::scan_all(&mut self.conn(), pattern).await.map_err(redis_error(kind, "listing keys"))
    }

    /// Deletes `keys`, 500 per `DEL`.
    async fn delete(&self, kind: &'static str, keys: &[String]) -> Result<(), BackendError> {
        let mut conn = self.conn();
        for chunk in keys.chunks(500) {
            let _: () =
                redis::cmd("DEL").arg(chunk).query_async(&mut conn).await.map_err(redis_error(kind, "flushing"))?;
        }
        Ok(())
    }

    /// A claim: `{prefix}{len(key)}:{key}`, set if absent, for `ttl`.
    async fn claim(&self, kind: &'static str, prefix: &str, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        let claimed: Option<String> = redis::cmd("SET")
            .arg(format!("{prefix}{}:{key}", key.len()))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error(kind, "claiming"))?;
        Ok(claimed.is_some())
    }

    /// Writes setting `name` of the group whose keys start with `group`
    /// (ending in `:`), indexed (see `backend::redis::settings`).
    async fn config_set(
        &self,
        kind: &'static str,
        group: &str,
        name: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        settings::set(&mut self.conn(), group, &settings_index(group), name, value.to_string(), ttl.map(millis))
            .await
            .map_err(redis_error(kind, "writing a setting"))
    }

    async fn config_get(&self, kind: &'static str, key: &str) -> Result<Option<Value>, BackendError> {
        let text: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error(kind, "reading a setting"))?;
        text.map(|t| serde_json::from_str(&t)).transpose().map_err(|e| {
            BackendError::new(kind, BackendErrorKind::Decode, format!("decoding setting {key}")).with_source(e)
        })
    }

    /// Every live setting of the group whose keys start with `group`, by
    /// name: through the group's index; the settings an older qtasks wrote
    /// are indexed once per group and process (one `SCAN`).
    async fn config_get_all(&self, kind: &'static str, group: &str) -> Result<Map<String, Value>, BackendError> {
        let index = settings_index(group);
        if !self.indexed.contains(group) {
            let found = self.scan(kind, &format!("{}*", glob_escape(group))).await?;
            settings::index_found(&mut self.conn(), group, &index, &found)
                .await
                .map_err(redis_error(kind, "indexing settings"))?;
            self.indexed.insert(group);
        }
        settings::read_all(&mut self.conn(), group, &index).await.map_err(redis_error(kind, "reading settings"))
    }

    /// Deletes setting `name` of the group whose keys start with `group`.
    async fn config_delete(&self, kind: &'static str, group: &str, name: &str) -> Result<(), BackendError> {
        settings::delete(&mut self.conn(), group, &settings_index(group), name)
            .await
            .map_err(redis_error(kind, "deleting a setting"))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single push, pop or map update.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Maps a Redis error met while doing `context`.
fn redis_error<'a>(kind: &'static str, context: &'a str) -> impl FnOnce(RedisError) -> BackendError + 'a {
    move |e| BackendError::new(kind, kind_of(&e), context).with_source(e)
}

/// What kind of failure a Redis error is.
fn kind_of(e: &RedisError) -> BackendErrorKind {
    use redis::ErrorKind;
    match e.kind() {
        ErrorKind::Io => BackendErrorKind::Connection,
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => BackendErrorKind::Decode,
        ErrorKind::InvalidClientConfig | ErrorKind::Client => BackendErrorKind::InvalidRequest,
        ErrorKind::Server(_) => BackendErrorKind::Server,
        _ => BackendErrorKind::Other,
    }
}

/// Adds the counters of a stats hash (`{task}\x1f{status}` → n, as both
/// protocols' backends keep them) to `stats`; other fields are skipped.
fn add_counts(stats: &mut super::QueueStats, fields: std::collections::HashMap<String, u64>) {
    for (field, n) in fields {
        let Some((name, status)) = field.rsplit_once('\x1f') else { continue };
        let entry = stats.tasks.entry(name.to_owned()).or_default();
        match status {
            "success" => entry.success += n,
            "error" => entry.error += n,
            "retry" => entry.retry += n,
            "cancel" => entry.cancel += n,
            _ => {}
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Joins Python's positional and keyword arguments into one qtasks
/// argument value (see "Arguments" above).
pub(crate) fn join_args(args: Vec<Value>, kwargs: Map<String, Value>) -> Value {
    if kwargs.is_empty() {
        return Value::Array(args);
    }
    let mut joined = Map::with_capacity(args.len() + kwargs.len());
    for (i, arg) in args.into_iter().enumerate() {
        joined.insert(i.to_string(), arg);
    }
    for (name, arg) in kwargs {
        // A keyword named like a position (only possible with `**{"0": …}`)
        // must not replace the positional argument: `decode_args` reports it.
        if name.parse::<usize>().is_ok() {
            joined.insert(format!("{name}\u{0}"), arg);
        } else {
            joined.insert(name, arg);
        }
    }
    Value::Object(joined)
}

/// Splits a qtasks argument value into Python's `args` and `kwargs`: an
/// array is positional, an object keyword (its `"0"`, `"1"`… keys
/// positional, in order), anything else one positional argument, `null`
/// none.
pub(crate) fn split_args(args: &Value) -> (Vec<Value>, Map<String, Value>) {
    match args {
        Value::Null => (Vec::new(), Map::new()),
        Value::Array(a) => (a.clone(), Map::new()),
        Value::Object(m) => {
            let mut positional: Vec<(usize, Value)> = Vec::new();
            let mut named = Map::new();
            for (k, v) in m {
                match k.parse::<usize>() {
                    Ok(i) => positional.push((i, v.clone())),
                    Err(_) => {
                        named.insert(k.clone(), v.clone());
                    }
                }
            }
            positional.sort_by_key(|(i, _)| *i);
            (positional.into_iter().map(|(_, v)| v).collect(), named)
        }
        other => (vec![other.clone()], Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn positional_only_stays_an_array_and_keyword_only_an_object() {
        assert_eq!(join_args(vec![json!(2), json!(3)], Map::new()), json!([2, 3]));
        assert_eq!(join_args(vec![], map(json!({"a": 2}))), json!({"a": 2}));
        assert_eq!(join_args(vec![json!(2)], map(json!({"b": 3}))), json!({"0": 2, "b": 3}));
    }

    #[test]
    fn splitting_undoes_joining() {
        for (args, kwargs) in [
            (vec![json!(1), json!("x")], map(json!({}))),
            (vec![], map(json!({"a": 1}))),
            (vec![json!(1), json!(2), json!(3)], map(json!({"z": null}))),
        ] {
            assert_eq!(split_args(&join_args(args.clone(), kwargs.clone())), (args, kwargs));
        }
        assert_eq!(split_args(&json!(5)), (vec![json!(5)], Map::new()));
        assert_eq!(split_args(&Value::Null), (vec![], Map::new()));
    }
}
