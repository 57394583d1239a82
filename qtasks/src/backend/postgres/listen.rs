//! `LISTEN/NOTIFY`: one connection per backend listens on the schema's
//! three channels and wakes, in this process, the idle fetchers of an app
//! (`{schema}_queued`), the waiters of a task (`{schema}_done`) and the
//! token of a running task whose cancel was requested (`{schema}_cancel`).
//!
//! The connection reconnects with backoff when it is lost; once it listens
//! again, every fetcher and waiter is woken to look again, as
//! notifications sent meanwhile are lost.

use super::{KIND, PostgresBackend, lock};
use crate::backend::CancelRegistry;
use sqlx::postgres::{PgListener, PgNotification, PgPoolOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

/// Longest a waiter or fetcher waits for the `LISTEN` connection before it
/// goes on without it (its fallback poll then covers).
const LISTEN_READY: Duration = Duration::from_secs(5);

/// What the `LISTEN` connection wakes.
pub(super) struct Hub {
    queued: String,
    done: String,
    cancel: String,
    /// Idle fetchers, by app.
    apps: Mutex<HashMap<String, Arc<Notify>>>,
    /// Waiters, by task, with how many wait.
    waiters: Mutex<HashMap<Uuid, (Arc<Notify>, usize)>>,
    /// Tokens of the tasks this process runs.
    pub(super) cancels: CancelRegistry,
    /// How many times the connection started listening (0: not yet).
    listening: watch::Sender<u64>,
}

impl Hub {
    pub(super) fn new(schema: &str) -> Self {
        Self {
            queued: format!("{schema}_queued"),
            done: format!("{schema}_done"),
            cancel: format!("{schema}_cancel"),
            apps: Mutex::default(),
            waiters: Mutex::default(),
            cancels: CancelRegistry::default(),
            listening: watch::channel(0).0,
        }
    }

    /// What wakes the idle fetchers of `app`.
    pub(super) fn app(&self, app: &str) -> Arc<Notify> {
        let mut apps = lock(&self.apps);
        match apps.get(app) {
            Some(notify) => Arc::clone(notify),
            None => Arc::clone(apps.entry(app.to_owned()).or_default()),
        }
    }

    /// Registers a waiter of `uuid` until the returned guard is dropped.
    pub(super) fn waiter(&self, uuid: Uuid) -> Waiter<'_> {
        let mut map = lock(&self.waiters);
        let (notify, count) = map.entry(uuid).or_insert_with(|| (Arc::default(), 0));
        *count += 1;
        Waiter { hub: self, uuid, notify: Arc::clone(notify) }
    }

    /// After a gap in listening: every fetcher and waiter looks again.
    fn wake_all(&self) {
        for notify in lock(&self.apps).values() {
            notify.notify_waiters();
        }
        for (notify, _) in lock(&self.waiters).values() {
            notify.notify_waiters();
        }
    }

    /// One notification; a cancel whose reason was too long for it gives
    /// its task's id, to read the reason with.
    fn dispatch(&self, notification: &PgNotification) -> Option<Uuid> {
        let (channel, payload) = (notification.channel(), notification.payload());
        if channel == self.queued {
            if let Some(notify) = lock(&self.apps).get(payload) {
                notify.notify_waiters();
            }
        } else if channel == self.done {
            // One id, or a batch's ids separated by commas.
            let waiters = lock(&self.waiters);
            for id in payload.split(',') {
                match Uuid::parse_str(id) {
                    Ok(uuid) => {
                        if let Some((notify, _)) = waiters.get(&uuid) {
                            notify.notify_waiters();
                        }
                    }
                    Err(_) => tracing::warn!(backend = KIND, %channel, "ignoring a malformed notification"),
                }
            }
        } else if channel == self.cancel {
            let (id, reason) = payload.split_once(' ').map_or((payload, None), |(id, reason)| (id, Some(reason)));
            match (Uuid::parse_str(id), reason) {
                (Ok(uuid), Some(reason)) => {
                    self.cancels.signal(uuid, reason);
                }
                (Ok(uuid), None) => return Some(uuid),
                (Err(_), _) => tracing::warn!(backend = KIND, %channel, "ignoring a malformed cancel request"),
            }
        }
        None
    }
}

/// A registered waiter; unregisters when dropped (also when cancelled).
pub(super) struct Waiter<'a> {
    hub: &'a Hub,
    uuid: Uuid,
    pub(super) notify: Arc<Notify>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.hub.waiters);
        if let Some((_, count)) = map.get_mut(&self.uuid) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.uuid);
            }
        }
    }
}

impl PostgresBackend {
    /// Starts the `LISTEN` connection if it is not running, and waits (a
    /// few seconds at most) until it listens: a caller that then reads the
    /// state and sleeps misses no notification sent after its read.
    pub(super) async fn listening(&self) {
        let mut ready = self.shared.hub.listening.subscribe();
        {
            let mut slot = lock(&self.shared.listener);
            if slot.as_ref().is_none_or(|task| task.is_finished()) {
                let hub = Arc::clone(&self.shared.hub);
                let (options, pool) = (self.shared.options.clone(), self.shared.pool.clone());
                let sql = self.shared.sql.cancel_reason.clone();
                *slot = Some(tokio::spawn(listen(hub, options, pool, sql)));
            }
        }
        if *ready.borrow_and_update() == 0 {
            let _ = tokio::time::timeout(LISTEN_READY, ready.wait_for(|n| *n > 0)).await;
        }
    }
}

/// Listens on the hub's channels for good, reconnecting with backoff.
async fn listen(hub: Arc<Hub>, options: sqlx::postgres::PgConnectOptions, pool: sqlx::PgPool, sql: sqlx::SqlStr) {
    // A pool of one for the listener: it reconnects through it.
    let listen_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(super::ACQUIRE_TIMEOUT)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options);
    let mut backoff = Duration::from_millis(50);
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&listen_pool).await?;
            listener.ignore_pool_close_event(true);
            listener.listen_all([hub.queued.as_str(), hub.done.as_str(), hub.cancel.as_str()]).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listener.await {
            Ok(mut listener) => {
                backoff = Duration::from_millis(50);
                hub.listening.send_modify(|n| *n += 1);
                hub.wake_all();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            if let Some(uuid) = hub.dispatch(&notification) {
                                read_reason(&hub, &pool, &sql, uuid).await;
                            }
                        }
                        // Lost, and already listening again on a new connection.
                        Ok(None) => {
                            tracing::warn!(backend = KIND, "the LISTEN connection was lost and reopened");
                            hub.listening.send_modify(|n| *n += 1);
                            hub.wake_all();
                        }
                        Err(e) => {
                            tracing::warn!(backend = KIND, error = %e, "the LISTEN connection failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(backend = KIND, error = %e, "could not LISTEN; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Reads the reason of a cancel request too long for its notification.
async fn read_reason(hub: &Hub, pool: &sqlx::PgPool, sql: &sqlx::SqlStr, uuid: Uuid) {
    match sqlx::query_scalar::<_, String>(sql.clone()).bind(uuid).fetch_optional(pool).await {
        Ok(Some(reason)) => {
            hub.cancels.signal(uuid, &reason);
        }
        Ok(None) => {}
        // The worker's next lease renewal reads it.
        Err(e) => tracing::warn!(backend = KIND, %uuid, error = %e, "could not read a cancel reason"),
    }
}
