//! A backend chosen at run time from a URL.

use super::{Backend, BackendError, BackendErrorKind, MemoryBackend};
use crate::model::{TaskMessage, TaskRecord};
use serde_json::{Map, Value};
use std::time::Duration;
use uuid::Uuid;

/// One of the built-in backends, picked from a URL: `memory://`, with the
/// `redis` feature `redis://…` / `rediss://…` (a Redis Cluster:
/// `redis+cluster://host:port,host:port…`), with the `postgres` feature
/// `postgres://…` / `postgresql://…` (connected with
/// [`PostgresBackend::connect`](super::PostgresBackend::connect): schema
/// `qtasks`, migrations applied).
///
/// Each call is one `match` on the variant; use a concrete backend type
/// when the choice is known at compile time.
#[derive(Clone)]
#[non_exhaustive]
pub enum AnyBackend {
    /// The in-memory backend.
    Memory(MemoryBackend),
    /// The Redis backend.
    #[cfg(feature = "redis")]
    Redis(super::RedisBackend),
    /// The Postgres backend.
    #[cfg(feature = "postgres")]
    Postgres(super::PostgresBackend),
}

impl AnyBackend {
    /// Connects the backend named by `url`. The app builder scopes it to its
    /// app ([`for_app`](Backend::for_app)).
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        let scheme = url.split("://").next().unwrap_or_default();
        match scheme {
            "memory" => Ok(Self::Memory(MemoryBackend::new())),
            #[cfg(feature = "redis")]
            "redis" | "rediss" | "redis+unix" | "redis+cluster" | "rediss+cluster" => {
                Ok(Self::Redis(super::RedisBackend::connect(url).await?))
            }
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Ok(Self::Postgres(super::PostgresBackend::connect(url).await?)),
            _ => Err(BackendError::new(
                "any",
                BackendErrorKind::InvalidRequest,
                format!(
                    "unsupported backend URL scheme `{scheme}://`; expected memory://{}{}",
                    if cfg!(feature = "redis") {
                        ", redis://, rediss://, redis+cluster://"
                    } else {
                        " (build with feature `redis` for redis://)"
                    },
                    if cfg!(feature = "postgres") {
                        ", postgres://"
                    } else {
                        " (build with feature `postgres` for postgres://)"
                    }
                ),
            )),
        }
    }

    /// Connects the backend named by `url`, with the backend settings of
    /// `config`: for Redis and Postgres its
    /// [`lease`](crate::Config::lease), [`retention`](crate::Config::retention)
    /// and [`max_message_size`](crate::Config::max_message_size) (the
    /// in-memory backend has none). `config.broker_url` is not read: pass
    /// it as `url` unless a flag overrides it.
    pub async fn connect_with(url: &str, config: &crate::Config) -> Result<Self, BackendError> {
        Ok(match Self::connect(url).await? {
            #[cfg(feature = "redis")]
            Self::Redis(redis) => Self::Redis(
                redis.lease(config.lease).retention(config.retention).max_message_size(config.max_message_size),
            ),
            #[cfg(feature = "postgres")]
            Self::Postgres(postgres) => Self::Postgres(
                postgres.lease(config.lease).retention(config.retention).max_message_size(config.max_message_size),
            ),
            other => {
                let _ = config;
                other
            }
        })
    }
}

#[cfg(feature = "postgres")]
impl super::AsPostgres for AnyBackend {
    fn as_postgres(&self) -> Option<&super::PostgresBackend> {
        match self {
            Self::Postgres(b) => Some(b),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

macro_rules! each {
    ($self:ident, $b:ident => $e:expr) => {
        match $self {
            AnyBackend::Memory($b) => $e,
            #[cfg(feature = "redis")]
            AnyBackend::Redis($b) => $e,
            #[cfg(feature = "postgres")]
            AnyBackend::Postgres($b) => $e,
        }
    };
}

impl Backend for AnyBackend {
    fn kind(&self) -> &'static str {
        each!(self, b => b.kind())
    }

    fn app_name(&self) -> &str {
        each!(self, b => b.app_name())
    }

    fn for_app(&self, app: &str) -> Self {
        match self {
            Self::Memory(b) => Self::Memory(b.for_app(app)),
            #[cfg(feature = "redis")]
            Self::Redis(b) => Self::Redis(b.for_app(app)),
            #[cfg(feature = "postgres")]
            Self::Postgres(b) => Self::Postgres(b.for_app(app)),
        }
    }

    async fn enqueue(&self, task: &TaskRecord) -> Result<super::Enqueued, BackendError> {
        each!(self, b => b.enqueue(task).await)
    }

    async fn enqueue_delayed(&self, task: &TaskRecord, delay: Duration) -> Result<super::Enqueued, BackendError> {
        each!(self, b => b.enqueue_delayed(task, delay).await)
    }

    async fn enqueue_many(
        &self,
        tasks: &[(TaskRecord, Option<Duration>)],
    ) -> Result<Vec<super::Enqueued>, BackendError> {
        each!(self, b => b.enqueue_many(tasks).await)
    }

    async fn cancel(&self, uuid: Uuid, reason: &str) -> Result<super::CancelOutcome, BackendError> {
        each!(self, b => b.cancel(uuid, reason).await)
    }

    fn watch_cancel(&self, uuid: Uuid, token: &crate::task::CancelToken) {
        each!(self, b => b.watch_cancel(uuid, token))
    }

    fn unwatch_cancel(&self, uuid: Uuid) {
        each!(self, b => b.unwatch_cancel(uuid))
    }

    async fn stats(&self) -> Result<super::QueueStats, BackendError> {
        each!(self, b => b.stats().await)
    }

    async fn minute_counts(
        &self,
        since: crate::model::Timestamp,
    ) -> Result<Option<Vec<super::MinuteCount>>, BackendError> {
        each!(self, b => b.minute_counts(since).await)
    }

    async fn get(&self, uuid: Uuid) -> Result<Option<TaskRecord>, BackendError> {
        each!(self, b => b.get(uuid).await)
    }

    async fn get_all(&self) -> Result<Vec<TaskRecord>, BackendError> {
        each!(self, b => b.get_all().await)
    }

    async fn list_tasks(&self, query: &super::TaskQuery) -> Result<super::TaskPage, BackendError> {
        each!(self, b => b.list_tasks(query).await)
    }

    async fn wait(&self, uuid: Uuid, timeout: Duration) -> Result<Option<TaskRecord>, BackendError> {
        each!(self, b => b.wait(uuid, timeout).await)
    }

    async fn fetch(&self, from: &super::Fetch, max: usize, out: &mut Vec<TaskMessage>) -> Result<(), BackendError> {
        each!(self, b => b.fetch(from, max, out).await)
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), BackendError> {
        each!(self, b => b.set_paused(queue, paused).await)
    }

    async fn queues(&self, queues: &[String]) -> Result<Vec<crate::queue::QueueInfo>, BackendError> {
        each!(self, b => b.queues(queues).await)
    }

    async fn update(&self, task: &TaskRecord) -> Result<(), BackendError> {
        each!(self, b => b.update(task).await)
    }

    fn lease_renewal(&self) -> Option<Duration> {
        each!(self, b => b.lease_renewal())
    }

    fn fetch_gather(&self) -> Option<Duration> {
        each!(self, b => b.fetch_gather())
    }

    async fn extend_lease(&self, uuid: Uuid) -> Result<bool, BackendError> {
        each!(self, b => b.extend_lease(uuid).await)
    }

    async fn release(&self, uuid: Uuid) -> Result<bool, BackendError> {
        each!(self, b => b.release(uuid).await)
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, BackendError> {
        each!(self, b => b.claim(key, ttl).await)
    }

    async fn finish(&self, task: &TaskRecord) -> Result<(), BackendError> {
        each!(self, b => b.finish(task).await)
    }

    async fn flush(&self) -> Result<(), BackendError> {
        each!(self, b => b.flush().await)
    }

    async fn config_set(
        &self,
        name: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        each!(self, b => b.config_set(name, key, value, ttl).await)
    }

    async fn config_get(&self, name: &str, key: &str) -> Result<Option<Value>, BackendError> {
        each!(self, b => b.config_get(name, key).await)
    }

    async fn config_get_all(&self, name: &str) -> Result<Map<String, Value>, BackendError> {
        each!(self, b => b.config_get_all(name).await)
    }

    async fn config_delete(&self, name: &str, key: &str) -> Result<(), BackendError> {
        each!(self, b => b.config_delete(name, key).await)
    }
}
