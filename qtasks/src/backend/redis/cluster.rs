//! Redis Cluster (`redis+cluster://`): the connection that is either one
//! server's or a cluster's ([`Conn`]), the cluster URL, `SCAN` over every
//! master, and the wait for work on queues whose wake-up lists live on
//! different nodes ([`Wakers`]). The key layout in cluster mode is on
//! [`RedisBackend`](super::RedisBackend), "Redis Cluster".

use super::fetch::IDLE_RECHECK;
use super::{CONNECT_TIMEOUT, KIND, lock, redis_error};
use crate::backend::BackendError;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The shared connection: to one server (reconnecting by itself), or to a
/// cluster (routing each command to the node of its keys' slot, following
/// `MOVED`/`ASK`). Commands and scripts run on either unchanged.
#[derive(Clone)]
pub(super) enum Conn {
    /// One server (or a primary with replicas).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The nodes of a `redis+cluster://` or `rediss+cluster://` URL as plain
/// `redis://` (`rediss://`) URLs, one per `host:port` of its comma-separated
/// list, each with the URL's credentials, path and query; `None` for a URL
/// of another scheme.
pub(super) fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let plain = match scheme {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (format!("{user}@"), hosts),
        None => (String::new(), authority),
    };
    Some(hosts.split(',').filter(|h| !h.is_empty()).map(|host| format!("{plain}://{user}{host}{tail}")).collect())
}

/// The addresses of the masters serving slots now (`CLUSTER SLOTS`).
async fn masters(conn: &mut ClusterConnection) -> Result<Vec<(String, u16)>, BackendError> {
    let slots: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(conn)
        .await
        .map_err(redis_error("listing the masters of the cluster"))?;
    let mut out: Vec<(String, u16)> = Vec::new();
    for range in slots {
        // [start, end, [host, port, id, …], replicas…]
        let Value::Array(range) = range else { continue };
        let Some(Value::Array(master)) = range.get(2) else { continue };
        let host: Option<String> = master.first().and_then(|v| redis::from_redis_value_ref(v).ok());
        let port: Option<u16> = master.get(1).and_then(|v| redis::from_redis_value_ref(v).ok());
        if let (Some(host), Some(port)) = (host, port)
            && !out.iter().any(|(h, p)| *h == host && *p == port)
        {
            out.push((host, port));
        }
    }
    Ok(out)
}

/// Every key matching a `SCAN` pattern on every master of the cluster.
pub(super) async fn scan_masters(conn: &mut ClusterConnection, pattern: &str) -> Result<Vec<Vec<u8>>, BackendError> {
    let mut all = Vec::new();
    for (host, port) in masters(conn).await? {
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host: host.clone(), port });
            let reply = conn.route_command(scan, route).await.map_err(redis_error("scanning keys"))?;
            let (next, found): (u64, Vec<Vec<u8>>) =
                redis::from_redis_value(reply).map_err(|e| redis_error("scanning keys")(e.into()))?;
            all.extend(found);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    Ok(all)
}

/// The wait for work in cluster mode: a `BLPOP` cannot name wake-up lists
/// of several slots, so each wake-up list a fetcher of this backend waits
/// on gets a *watcher*, a task blocked in `BLPOP` on that list alone, on a
/// cluster connection of its own, that counts each token it takes in a
/// [`watch`] channel. A fetcher notes the counts of its queues before it
/// runs the fetch script and, finding nothing, sleeps until one changes:
/// a token taken between the two is not missed.
///
/// A watcher stops after a `BLPOP` when no fetcher looks at its list any
/// more; it holds at most one token no fetcher of this process needed
/// (taken while its last fetcher left), which the fetchers of other
/// processes then wait for until their next recheck ([`IDLE_RECHECK`]).
#[derive(Default)]
pub(super) struct Wakers {
    lists: Mutex<HashMap<String, Watcher>>,
}

/// A wake-up list's watcher: the channel it counts tokens in, and whether
/// its task runs.
struct Watcher {
    tokens: watch::Sender<u64>,
    running: bool,
}

impl Wakers {
    /// Subscribes to the tokens of wake-up list `wake`, starting its
    /// watcher on `client` if none runs.
    pub(super) fn watch(self: &Arc<Self>, client: &ClusterClient, wake: &str) -> watch::Receiver<u64> {
        let mut lists = lock(&self.lists);
        let watcher =
            lists.entry(wake.to_owned()).or_insert_with(|| Watcher { tokens: watch::channel(0).0, running: false });
        let rx = watcher.tokens.subscribe();
        if !watcher.running {
            watcher.running = true;
            tokio::spawn(Arc::clone(self).run(client.clone(), wake.to_owned()));
        }
        rx
    }

    /// A watcher's task: `BLPOP` on `wake` until no fetcher looks at it.
    async fn run(self: Arc<Self>, client: ClusterClient, wake: String) {
        let config = ClusterConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(IDLE_RECHECK + CONNECT_TIMEOUT);
        let mut conn = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            {
                let mut lists = lock(&self.lists);
                let Some(watcher) = lists.get_mut(&wake) else { return };
                if watcher.tokens.receiver_count() == 0 {
                    watcher.running = false;
                    return;
                }
            }
            if conn.is_none() {
                match client.get_async_connection_with_config(config.clone()).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        tracing::warn!(backend = KIND, error = %e, "opening a blocking cluster connection failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let popped: Result<Option<(String, String)>, _> =
                redis::cmd("BLPOP").arg(&wake).arg(IDLE_RECHECK.as_secs_f64()).query_async(c).await;
            match popped {
                Ok(Some(_)) => {
                    backoff = Duration::from_millis(50);
                    if let Some(watcher) = lock(&self.lists).get(&wake) {
                        watcher.tokens.send_modify(|n| *n += 1);
                    }
                }
                Ok(None) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(backend = KIND, error = %e, "waiting for tasks (BLPOP) failed; retrying");
                    conn = None;
                    // Fetchers look again: a token may have come meanwhile.
                    if let Some(watcher) = lock(&self.lists).get(&wake) {
                        watcher.tokens.send_modify(|n| *n += 1);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Waits until one of `marks` changed or `block` passed.
pub(super) async fn await_marks(marks: &mut [watch::Receiver<u64>], block: Duration) {
    let changed = futures::future::select_all(marks.iter_mut().map(|rx| Box::pin(rx.changed())));
    let _ = tokio::time::timeout(block, changed).await;
}

#[cfg(test)]
mod tests {
    use super::cluster_nodes;

    #[test]
    fn a_cluster_url_names_each_node_with_the_credentials() {
        assert_eq!(
            cluster_nodes("redis+cluster://127.0.0.1:7001,127.0.0.1:7002").unwrap(),
            ["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://u:p@a:1,b:2/?protocol=resp3").unwrap(),
            ["rediss://u:p@a:1/?protocol=resp3", "rediss://u:p@b:2/?protocol=resp3"]
        );
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379"), None);
    }
}
