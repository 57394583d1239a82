//! Pub/sub: one subscription per channel and backend, on a connection of
//! its own, resubscribing with backoff when it is lost. `done` wakes the
//! [`Waiters`] of `wait` in this process; `cancel` fires the tokens of the
//! tasks this process runs (the [`CancelRegistry`]).
//!
//! On a cluster every queue publishes on channels of its own (under its
//! prefix), so a subscription is to a pattern matching those of every
//! queue of the app; it is made on one node (a message published on any
//! node reaches every node), the first of the URL that answers.

use super::keys::glob_escape;
use super::{CONNECT_TIMEOUT, KIND, RedisBackend, lock};
use crate::backend::CancelRegistry;
use futures::StreamExt;
use redis::{Client, RedisError, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// How often the pub/sub connection is pinged to detect a silent loss.
const PUBSUB_PING: Duration = Duration::from_secs(15);

impl RedisBackend {
    /// The readiness of the subscription to `done`, starting it on first use.
    pub(super) fn listener(&self) -> watch::Receiver<bool> {
        let shared = &self.shared;
        subscription(&shared.listener, &shared.conns.pubsub, &self.channel("done"), &shared.waiters)
    }

    /// Starts the subscription to `cancel` if it is not running.
    pub(super) fn cancel_listener(&self) {
        let shared = &self.shared;
        subscription(&shared.cancel_listener, &shared.conns.pubsub, &self.channel("cancel"), &shared.cancels);
    }

    /// What to subscribe to for channel `name` (`done` or `cancel`): the
    /// app's channel on a server; on a cluster, a pattern matching that
    /// channel of each of the app's queues (`Keys::cluster_queue`).
    fn channel(&self, name: &str) -> Channel {
        let keys = &self.shared.keys;
        if self.shared.conns.cluster.is_none() {
            return Channel::Name(format!("{}{name}", keys.prefix));
        }
        let app = &keys.app;
        Channel::Pattern(format!("{}*}}:{name}", glob_escape(&format!("qtasks:{{{}:{app}:", app.len()))))
    }
}

/// A channel subscribed to by name, or channels by a pattern.
#[derive(Clone, Debug)]
enum Channel {
    Name(String),
    Pattern(String),
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Name(name) | Channel::Pattern(name) => f.write_str(name),
        }
    }
}

/// Waiters of this process, by task.
#[derive(Default)]
pub(super) struct Waiters {
    map: Mutex<HashMap<Uuid, (Arc<Notify>, usize)>>,
}

impl Waiters {
    pub(super) fn register(&self, uuid: Uuid) -> Waiter<'_> {
        let mut map = lock(&self.map);
        let (notify, count) = map.entry(uuid).or_insert_with(|| (Arc::default(), 0));
        *count += 1;
        Waiter { waiters: self, uuid, notify: Arc::clone(notify) }
    }

    fn wake(&self, uuid: &Uuid) {
        if let Some((notify, _)) = lock(&self.map).get(uuid) {
            notify.notify_waiters();
        }
    }

    /// After a gap in the subscription: everyone looks again.
    fn wake_all(&self) {
        for (notify, _) in lock(&self.map).values() {
            notify.notify_waiters();
        }
    }
}

/// A registered waiter; unregisters when dropped (also when cancelled).
pub(super) struct Waiter<'a> {
    waiters: &'a Waiters,
    uuid: Uuid,
    pub(super) notify: Arc<Notify>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.waiters.map);
        if let Some((_, count)) = map.get_mut(&self.uuid) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.uuid);
            }
        }
    }
}

/// The task holding the pub/sub subscription of a backend.
pub(super) struct Listener {
    ready: watch::Receiver<bool>,
    pub(super) task: JoinHandle<()>,
}

/// What a subscription does with the messages of its channel.
trait Subscriber: Send + Sync + 'static {
    /// One message.
    fn message(&self, channel: &str, payload: &[u8]);
    /// Subscribed again after a gap, during which messages may have been lost.
    fn resubscribed(&self);
}

/// `done`: each payload is the uuid of a task whose waiters wake up.
impl Subscriber for Waiters {
    fn message(&self, channel: &str, payload: &[u8]) {
        match std::str::from_utf8(payload).ok().and_then(|p| Uuid::parse_str(p).ok()) {
            Some(uuid) => self.wake(&uuid),
            None => tracing::warn!(backend = KIND, %channel, "ignoring a malformed notification"),
        }
    }

    fn resubscribed(&self) {
        self.wake_all();
    }
}

/// `cancel`: each payload is `{uuid} {reason}`, a request for a running task.
impl Subscriber for CancelRegistry {
    fn message(&self, channel: &str, payload: &[u8]) {
        let payload = String::from_utf8_lossy(payload);
        match payload.split_once(' ').and_then(|(id, reason)| Some((Uuid::parse_str(id).ok()?, reason))) {
            Some((uuid, reason)) => {
                self.signal(uuid, reason);
            }
            None => tracing::warn!(backend = KIND, %channel, "ignoring a malformed cancel request"),
        }
    }

    fn resubscribed(&self) {
        // Requests lost meanwhile reach the worker with its next lease renewal.
    }
}

/// The readiness of the subscription in `slot`, starting it if it is not running.
fn subscription<S: Subscriber>(
    slot: &Mutex<Option<Listener>>,
    clients: &Arc<[Client]>,
    channel: &Channel,
    subscriber: &Arc<S>,
) -> watch::Receiver<bool> {
    let mut listener = lock(slot);
    if let Some(l) = listener.as_ref().filter(|l| !l.task.is_finished()) {
        return l.ready.clone();
    }
    let (tx, ready) = watch::channel(false);
    let task = tokio::spawn(listen(Arc::clone(clients), channel.clone(), Arc::clone(subscriber), tx));
    *listener = Some(Listener { ready: ready.clone(), task });
    ready
}

/// Subscribes to `channel` and hands each message to `subscriber`,
/// resubscribing with backoff when the connection is lost (through the
/// next of `clients` after a failed attempt).
async fn listen<S: Subscriber>(
    clients: Arc<[Client]>,
    channel: Channel,
    subscriber: Arc<S>,
    ready: watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut next = 0;
    loop {
        let client = &clients[next % clients.len()];
        let subscribed = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            match &channel {
                Channel::Name(name) => sink.subscribe(name).await?,
                Channel::Pattern(pattern) => sink.psubscribe(pattern).await?,
            }
            Ok::<_, RedisError>((sink, stream))
        })
        .await;
        if !matches!(subscribed, Ok(Ok(_))) {
            next += 1;
        }
        match subscribed {
            Ok(Ok((mut sink, mut stream))) => {
                backoff = Duration::from_millis(50);
                ready.send_replace(true);
                subscriber.resubscribed();
                let mut ping = tokio::time::interval_at(Instant::now() + PUBSUB_PING, PUBSUB_PING);
                loop {
                    tokio::select! {
                        message = stream.next() => match message {
                            Some(message) => subscriber.message(&channel.to_string(), message.get_payload_bytes()),
                            None => break,
                        },
                        _ = ping.tick() => {
                            if !matches!(tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<Value>()).await, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                ready.send_replace(false);
                tracing::warn!(backend = KIND, %channel, "pub/sub connection lost; resubscribing");
            }
            Ok(Err(e)) => tracing::warn!(backend = KIND, %channel, error = %e, "subscribing failed; retrying"),
            Err(_) => tracing::warn!(backend = KIND, %channel, "subscribing timed out; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
