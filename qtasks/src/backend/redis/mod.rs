//! The Redis backend (feature `redis`): see [`RedisBackend`] for the key
//! layout, the scripts and the delivery guarantees.
//!
//! # Why the `redis` crate
//!
//! It gives what this design needs with nothing written by hand: a
//! multiplexed connection that pipelines concurrent commands on its own and
//! reconnects (`ConnectionManager`), `EVALSHA` with script caching
//! (`Script`), pub/sub on a dedicated connection, and `rediss://` over
//! rustls. What decides throughput here is round trips, not the client:
//! one script per enqueue, one per fetched batch (which also marks the
//! tasks `process`) and one per batch of tasks that finished together, measured with
//! `benches/src/bin/e2e_redis.rs` (see `BENCHMARKS.md`). `fred` offers the
//! same features; it was not measured against `redis` for this choice.
//!
//! # Layout
//!
//! | file | holds |
//! | --- | --- |
//! | `mod.rs` | [`RedisBackend`], `connect`, its settings, the error helpers |
//! | `keys.rs` | the key layout, queue entry and stats field formats |
//! | `scripts.rs`, `lua/*.lua` | the Lua scripts, one per operation |
//! | `codec.rs` | decoding records as stored |
//! | `fetch.rs` | taking tasks and waiting for work (`BLPOP`) |
//! | `finish.rs` | writing the ends of tasks in batches |
//! | `settings.rs` | shared settings and their per-group index (also used by the Python-format backends) |
//! | `pubsub.rs` | the `done` and `cancel` subscriptions |
//! | `cluster.rs` | Redis Cluster: the connection, the URL, `SCAN` on every master, the wait for work |
//! | `backend.rs` | `impl Backend for RedisBackend` |

mod backend;
mod cluster;
mod codec;
mod fetch;
mod finish;
mod keys;
mod listing;
mod minutes;
mod pubsub;
mod scripts;
pub(crate) mod settings;

use self::cluster::{Conn, Wakers};
use self::keys::Keys;
#[cfg(feature = "python")]
pub(crate) use self::keys::glob_escape;
use self::pubsub::{Listener, Waiters};
use super::{BackendError, BackendErrorKind, CancelRegistry, RunTable};
use redis::aio::{ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::{Client, RedisError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinHandle;
use uuid::Uuid;

const KIND: &str = "redis";

/// Default lease of a taken task.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default liveness of a holder: how long after its last sign of life a
/// backend that took tasks counts as gone, and its tasks are taken back.
const DEFAULT_LIVENESS: Duration = Duration::from_secs(5);
/// A holder renews its liveness this many times per liveness period.
const HEARTBEATS_PER_LIVENESS: u32 = 5;
/// Default time finished records are kept.
const DEFAULT_RETENTION: Duration = Duration::from_secs(86_400);
/// Default largest serialized record accepted by `enqueue`.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the server to answer a (non-blocking) command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A queue and record store in a Redis server (feature `redis`).
///
/// Tasks are ordered by priority (lower first), then by enqueue order,
/// across every process using the same server and app name. Delivery is
/// at least once: a task taken by a worker that dies goes back to the
/// queue when its lease expires. Clones share the connections.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use qtasks::{QueueTasks, RedisBackend};
/// use std::time::Duration;
///
/// let backend = RedisBackend::connect("redis://127.0.0.1:6379").await?.lease(Duration::from_secs(120));
/// let app = QueueTasks::builder("my_app").backend(backend).build()?; // keys under `qtasks:my_app:`
/// # Ok(())
/// # }
/// ```
///
/// # Key layout
///
/// Every key of an app starts with `qtasks:{app}:` (`P` below), so apps
/// sharing a server never collide, and [`flush`](crate::Backend::flush) deletes
/// exactly the keys below (never those of an app named `{app}:…`):
///
/// | key | type | holds |
/// | --- | --- | --- |
/// | `P task:{uuid}` | hash | `status` (`"new"`, `"process"`, …) and `data`, the [`TaskRecord`](crate::TaskRecord) as JSON; `started` (µs, set by `fetch`); `entry`, the task's queue entry; `cancel`, the reason of a cancel requested while it ran; `run`, how many times it was taken (the fencing token of the current run); `holder`, the holder running it; `queue`, its queue unless `default`; `slots`, the slot sets it holds (one per line) while it runs; `ukey`/`uwin`, its unique key and window (ms); `at`, its score in the listing's indexes (empty: left out of them) |
/// | `P queue` | sorted set | queued tasks of the default queue, see below |
/// | `P delayed` | sorted set | queue entries of the default queue's delayed tasks, scored by when they are due (ms since the epoch, server clock) |
/// | `P queue:{len}:{name}`, `P delayed:{len}:{name}`, `P wake:{len}:{name}` | as above | the same for queue `name` |
/// | `P running:{len}:{name}` | set | uuids of queue `name`'s tasks in flight (`default` included) |
/// | `P queues` | set | names of the queues other than `default` that got a task |
/// | `P paused` | set | names of the paused queues |
/// | `P slots:{len}:{scope}` | set | uuids of the running tasks holding a concurrency slot of `scope`: `t:{task}`, `q:{queue}` or `k:{task}\x1f{key}` |
/// | `P bucket:{len}:{scope}` | hash | a rate's token bucket: `tokens` and `at` (ms, server clock); expires when idle for its period |
/// | `P unique:{len}:{key}` | string | the uuid of the task holding unique key `key`; expires after its window once the task ended |
/// | `P index` | sorted set | every task, scored by its `created_at` (seconds): the task listing (`Backend::list_tasks`), newest first |
/// | `P index:{status}` | sorted set | the tasks with that status, scored the same; each script that changes a status moves the task, and a finish drops the oldest entries whose record expired |
/// | `P seq` | string | counter giving each enqueued task its place in line |
/// | `P inflight` | sorted set | uuids of taken tasks, scored by lease deadline (ms since the epoch, server clock) |
/// | `P held` | hash | uuid → queue entry of each taken task, to requeue it at its old place |
/// | `P holders` | sorted set | ids of the backends that took tasks (holders), scored by liveness deadline (ms, server clock) |
/// | `P alive` | string | when a holder was last seen (ms, server clock) |
/// | `P holds:{holder}` | set | uuids of the tasks a holder took and has not finished or released |
/// | `P config:{len}:{name}:{key}` | string | shared setting `key` of group `name` (JSON), expiring with its ttl if it has one |
/// | `P configs:{len}:{name}` | set | the names of the settings of group `name`, so reading the group needs no `SCAN` (names whose setting expired are dropped as the group is read) |
/// | `P claim:{len}:{key}` | string | a [`claim`](crate::Backend::claim), expiring with its ttl |
/// | `P wake` | list | at most one wake-up token for fetchers of the default queue blocked in `BLPOP` |
/// | `P dead` | list | dead letters, as JSON (the newest 10 000; see "Dead letters") |
/// | `P stats` | hash | `{task name}\x1f{status}` → how many runs ended so (`success`, `error`, `retry`, `cancel`); `{task name}\x1fduplicates` → runs that started after another run had held the task |
/// | `P stats:{minute}` | hash | the runs that ended in that minute (minutes since the epoch, server clock): status → how many; expires 65 minutes later (`Backend::minute_counts`) |
/// | `P done` | pub/sub channel | uuid of each task that reached a final status or `retry` |
/// | `P cancel` | pub/sub channel | `{uuid} {reason}` for each cancel request of a running task |
///
/// # Queue order
///
/// Every queue entry has score 0, so Redis orders the set by member, byte
/// by byte. A member is `{priority:016x}{seq:016x}{uuid}`: the priority as
/// offset binary (`priority ^ 2^63`, so negative priorities sort first),
/// then the enqueue counter, both as fixed-width lowercase hex, then the
/// uuid. The byte order of such strings is the numeric order of
/// (priority, seq): exact for every `i64` priority and every counter
/// value, which a float score combining both could not be (an `f64` has a
/// 53-bit mantissa). The front of the set (`ZRANGE 0 n-1`) is therefore the
/// lowest priority, then the oldest task.
///
/// # Redis Cluster
///
/// `redis+cluster://host:port[,host:port…]` (`rediss+cluster://` for
/// TLS; credentials as in `redis://`, for every node) connects to a Redis
/// Cluster through any of the nodes named. A script may only touch keys of
/// one slot, so on a cluster each queue gets a whole layout of its own,
/// the table above under the prefix `qtasks:{<len>:<app>:<queue>}:` (one
/// hash tag; `len` is the length of the app name, so app `shop`'s queue
/// `emails` is under `qtasks:{4:shop:emails}:`), holding that queue's
/// tasks, records, lease and holder sets, slot sets, buckets, unique keys,
/// stats and dead letters. The queues of an app therefore spread over the
/// masters, and every script runs on the master of one queue, unchanged.
/// App-wide keys live under `qtasks:{<len>:<app>}:`: settings
/// (`config:…`), [`claim`](crate::Backend::claim)s and `queues`, the set of
/// every queue that got a task or was paused. [`flush`](crate::Backend::flush)
/// deletes every key under both kinds of prefix (found by `SCAN` on every
/// master), as the length in the tag tells an app's keys from another's.
///
/// | operation | on a cluster |
/// | --- | --- |
/// | `enqueue`, `enqueue_many` | one script per queue of the batch, on its master, and one `SADD` of the queues to `queues`, all at once; a batch over several queues is atomic per queue only |
/// | `fetch` | one script per queue, in the order given, until `max` tasks are taken; idle, it waits on the queues' `wake` lists at once: a task per list blocked in `BLPOP` on a cluster connection of its own, shared by the fetchers of the backend, no polling |
/// | `update`, `finish`, `release`, `extend_lease` | on the master of the task's queue (known from the record, or from the run this backend took) |
/// | `get`, `wait`, `cancel` | read the record on the master of every queue at once (the id alone does not name a queue) |
/// | `stats`, `queues`, `get_all`, `list_tasks` | each queue in turn, merged; `SCAN` (`get_all`, `flush`, and the first `config_get_all` of a group, which indexes settings written before groups had indexes) runs on every master |
/// | `claim`, `config_*` | the app-wide keys, on one master |
///
/// **Limits on a cluster.** A queue's limits ([`Queue`](crate::Queue)
/// concurrency and rate) hold exactly, as everything of a queue is in its
/// slot. Limits keyed by task name (concurrency, rate, per concurrency
/// key) and unique keys are kept *per queue*: a limit of N for a task
/// lets up to N of its runs start in each queue it is enqueued to, and a
/// unique key only keeps out a duplicate sent to the same queue. When
/// each task name goes to one queue (as with `#[task(queue = …)]`), they
/// hold exactly; a task sent to several queues gets its limit in each.
/// Holders are per queue too: a dead worker's tasks go back to each
/// queue at the first fetch from that queue after its liveness.
///
/// **Pub/sub.** A script publishes `done` and `cancel` on its queue's
/// channels; a backend subscribes to them by pattern on one node, the
/// first of the URL that answers (a `PUBLISH` on any node reaches every
/// node of the cluster). If that node fails, the subscription moves to the
/// next node of the URL; messages published meanwhile are lost, as on one
/// server after a reconnect (waiters look at their record again, lease
/// renewals catch cancel requests). A URL that names only nodes that are
/// gone leaves `wait` to its timeout.
///
/// **Cost.** A fetch over `n` idle queues is `n` scripts before it
/// sleeps, and a read by id is a read on every queue's master: keep the
/// number of queues per app modest (tens, not thousands).
///
/// # Scripts and round trips
///
/// Each operation is one atomic Lua script, so one round trip:
/// - `enqueue`: checks the unique key and the id, writes the record, adds
///   the queue entry, pushes a wake-up. `enqueue_delayed` adds the entry to
///   the queue's `delayed` set instead, due at the server's time plus the
///   delay. `enqueue_many` is the same script over a batch, in one call.
/// - `fetch`: marks its holder alive, moves due delayed entries into their
///   queues, takes back expired leases and the tasks of dead holders, takes
///   up to `max` entries from the queues in the order given (skipping
///   paused ones; with limits, looking at entries in place and leaving
///   those over a concurrency slot or a rate token where they are), moves each into `inflight`/`held` under its
///   holder with a new run, returns the records; bad entries go to the
///   dead letters instead (see "Dead letters"; a record that cannot run
///   costs one more round trip to end). When nothing is queued, the fetch
///   blocks in `BLPOP` on the `wake` lists of its queues, on a connection of its own (a
///   blocking command would stall the shared multiplexed one), until an
///   enqueue, a resume or a freed slot wakes it, the next lease or holder
///   liveness expires, the next delayed task or rate token is due, or 5 s
///   pass; then it runs the script again.
/// - `update`: writes the status unless the record is already final (a
///   status only moves forward) or another run holds it, and renews the lease.
/// - `finish`: writes the final (or `retry`) record and its expiry (the
///   retention) unless the record is done already (the first end stays),
///   releases the lease, the hold and any requeued copy, counts the run
///   in `stats` (once per task), publishes the uuid on `done`. Tasks that
///   end together are finished in one script call (one per queue on a
///   cluster), up to 256 per call and 4 calls in flight: a task that ends
///   alone is written at once; under load the batches grow while earlier
///   ones are written. The script finishes each task on its own (a task
///   whose keys cannot be written fails alone) and updates the counters
///   once per batch.
/// - `wait`: one subscription to `done` per backend, shared by the
///   waiters of the process; a waiter reads the record once subscribed,
///   then sleeps until its uuid is published or the timeout passes.
/// - `stats`: one `MULTI` reading the sizes of `queue`, `delayed` and
///   `inflight` and the `stats` hash.
///
/// # Cancellation
///
/// [`cancel`](crate::Backend::cancel) reads the record, then runs a script that
/// decides on the status the record has at that moment:
/// - `new`: the record becomes the `cancel` record built from the one read
///   (if it is unchanged; else it reads again), its queue or delayed entry
///   is removed, it is counted and published on `done`. No worker can take
///   it any more, whenever it starts.
/// - `process`: the request is stored in the record's `cancel` field and
///   published on `cancel`. Each backend that runs tasks subscribes to that
///   channel (a connection of its own, started by the first `fetch`) and
///   fires the task's [`CancelToken`](crate::CancelToken). A message lost while the
///   subscription was down is caught by the lease renewal
///   ([`extend_lease`](crate::Backend::extend_lease), every lease / 3), which also
///   reads the field. If the worker is gone, `fetch` finds the request when
///   the lease expires (or when it pops a requeued copy) and ends the task
///   `cancel` instead of handing it out again.
/// - anything else: already ended, nothing changes.
///
/// # Delivery: leases, holders, at least once
///
/// A taken task holds a lease (30 s by default, see [`lease`](Self::lease));
/// the worker renews it ([`extend_lease`](crate::Backend::extend_lease),
/// every lease / 3) and `finish` ends it. Each backend that takes tasks is
/// also a *holder*: it has an id, registered in `P holders` by each fetch,
/// and renews its liveness there every liveness / 5 (a background task
/// started by the first fetch; lease renewals renew it too). Before taking
/// tasks, `fetch` puts back into the queue, at their old place:
/// - the tasks of holders whose liveness expired (5 s by default, see
///   [`liveness`](Self::liveness)): a process that was killed or lost its
///   connection. Its tasks run elsewhere 4–5 s after it died (measured in
///   `tests/tests/faults_redis.rs`), not after the whole lease;
/// - the tasks whose lease expired: a process that is alive but stopped
///   renewing a task.
///
/// Idle fetchers wake when the next liveness or lease expires, so a
/// waiting worker picks the tasks up at once.
///
/// Liveness is judged on the server's clock, so a server that was down or
/// unreachable would see every holder as dead when it comes back. To tell
/// that from deaths, `P alive` holds when a holder was last seen: after a
/// gap of more than half the liveness with none seen, every holder gets a
/// fresh liveness, and only those that stay silent through it are taken
/// for dead. (Leases have no such rule: an outage longer than the lease
/// puts the running tasks back, as before.)
///
/// **Fencing.** Each take of a task is a new *run*, numbered in the
/// record's `run` field (the fencing token); the backend remembers the run
/// of each task it took. When a run's lease was taken back, that run is
/// stale: its [`extend_lease`](crate::Backend::extend_lease) returns
/// `false`, its `update` writes nothing, and its `finish` never replaces a
/// final record another run stored, nor a record another run holds (it
/// only ends a task that waits in the queue again, unrun, which then does
/// not run twice). A stale finish is logged with both runs.
///
/// **What can run twice.** Only a task whose run lost its lease: its
/// holder died or was cut off from the server for longer than its liveness,
/// or it held the task past the lease without renewing it; and a task put
/// back by [`release`](crate::Backend::release) after it started. Each
/// such run counts in [`TaskCounts::duplicates`](crate::backend::TaskCounts::duplicates)
/// when it starts (a run that started while another run of the task held
/// it or had held it). A task put back by a cancelled fetch, which never
/// ran, does not count.
///
/// A backend tells its runs apart by task: if one process takes a task
/// again after its own lease on it was taken back (it held it past the
/// lease without renewing), its older run is taken for the newer one.
///
/// `fetch` is cancel-safe: dropped while blocked, it loses only a wake-up
/// token; dropped while its script runs, the tasks it took are put back
/// at once by the task that ran the script.
///
/// # Dead letters
///
/// `P dead` holds one JSON object per entry or record given up on:
/// `uuid` (`null` if the entry names none), `reason`, `at` (seconds since
/// the epoch, server clock), and when known `entry` (the queue entry) and
/// `record` (the record as it was stored). `fetch` checks each queue entry
/// and its record before it touches them, so a bad one never costs
/// another task:
/// - an entry that names no task, whose record is missing or is not a hash
///   (a key of another type written over it), or that is a stale or
///   duplicate copy of a task's entry: dead-lettered; the record, if any,
///   is left alone;
/// - a record that cannot run (its JSON does not decode, it holds another
///   task's uuid, it has no `data` field, or its own queue entry is
///   malformed): dead-lettered, and the record ends `error` with the reason
///   and the retention expiry, counted, and its waiters are woken.
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
    lease: Duration,
    liveness: Duration,
    retention: Option<Duration>,
    max_message_size: usize,
    listing: bool,
}

/// The connections a backend and its [`for_app`](RedisBackend::for_app)
/// copies share.
#[derive(Clone)]
struct Connections {
    /// The server's client (on a cluster: the first node's), for the
    /// blocking connections of a single server.
    client: Client,
    /// The multiplexed connection every command goes through.
    manager: Conn,
    /// The clients pub/sub subscribes through, tried in turn: the server,
    /// or each node of a cluster URL.
    pubsub: Arc<[Client]>,
    /// The cluster's client, for the blocking connections of the watchers.
    cluster: Option<ClusterClient>,
}

/// A run this backend holds: its number and the keys it lives under.
type Held = (u64, Arc<Keys>);

struct Shared {
    conns: Connections,
    /// The app's keys on one server; on a cluster its app-wide keys.
    keys: Arc<Keys>,
    /// On a cluster: the keys of each queue seen (see [`RedisBackend::home`]).
    homes: Mutex<HashMap<String, Arc<Keys>>>,
    /// The keys this holder renews its liveness under: each queue's on a
    /// cluster, once it fetched from it.
    beats: Mutex<Vec<Arc<Keys>>>,
    /// On a cluster: the watchers of the wake-up lists.
    wakers: Arc<Wakers>,
    /// Idle connections for `BLPOP`, one per concurrent blocked fetch.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    waiters: Arc<Waiters>,
    /// The subscription to `done`, serving `wait`.
    listener: Mutex<Option<Listener>>,
    /// Tokens of the tasks this process runs.
    cancels: Arc<CancelRegistry>,
    /// The subscription to `cancel`, firing those tokens.
    cancel_listener: Mutex<Option<Listener>>,
    /// This backend's id as a holder of tasks (32 hex digits).
    holder: String,
    /// The run of each task this backend took and has not finished or
    /// released: the fencing token its writes carry.
    runs: RunTable<Held>,
    /// The task renewing this holder's liveness, started by the first fetch.
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    /// The task writing ends in batches, started by the first finish.
    finisher: super::batch::Batcher<finish::End>,
    /// The settings groups whose older settings were indexed.
    indexed: settings::Indexed,
}

impl Shared {
    fn new(conns: Connections, app: &str) -> Arc<Self> {
        let keys = Arc::new(if conns.cluster.is_some() { Keys::cluster_app(app) } else { Keys::new(app) });
        Arc::new(Self {
            conns,
            beats: Mutex::new(Vec::new()),
            homes: Mutex::default(),
            wakers: Arc::default(),
            keys,
            blocking: Mutex::new(Vec::new()),
            waiters: Arc::default(),
            listener: Mutex::new(None),
            cancels: Arc::default(),
            cancel_listener: Mutex::new(None),
            holder: Uuid::new_v4().simple().to_string(),
            runs: Default::default(),
            heartbeat: Mutex::new(None),
            finisher: Default::default(),
            indexed: Default::default(),
        })
    }

    /// The run of `uuid` this backend holds, if it took the task.
    fn run_of(&self, uuid: &Uuid) -> Option<u64> {
        self.runs.get(uuid).map(|(run, _)| run)
    }

    /// The run of `uuid` this backend holds and the keys of its queue.
    fn held(&self, uuid: &Uuid) -> Option<Held> {
        self.runs.get(uuid)
    }

    /// Forgets the run of `uuid` (finished or released).
    fn forget_run(&self, uuid: &Uuid) -> Option<u64> {
        self.runs.remove(uuid).map(|(run, _)| run)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for slot in [&self.listener, &self.cancel_listener] {
            if let Some(listener) = lock(slot).take() {
                listener.task.abort();
            }
        }
        if let Some(task) = lock(&self.heartbeat).take() {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single push, pop or map update.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An error of this backend, without a source.
fn error(kind: BackendErrorKind, message: impl Into<String>) -> BackendError {
    BackendError::new(KIND, kind, message)
}

/// Maps a Redis error met while doing `context` (kind from [`kind_of`]).
fn redis_error(context: &str) -> impl FnOnce(RedisError) -> BackendError + '_ {
    move |e| error(kind_of(&e), context).with_source(e)
}

/// Maps a JSON error met while encoding `what`: the value cannot be stored.
fn encode_error(what: &str) -> impl FnOnce(serde_json::Error) -> BackendError + '_ {
    move |e| error(BackendErrorKind::InvalidRequest, format!("encoding {what}")).with_source(e)
}

/// Maps a JSON error met while decoding `what`, as stored.
fn decode_error(what: impl std::fmt::Display) -> impl FnOnce(serde_json::Error) -> BackendError {
    move |e| error(BackendErrorKind::Decode, format!("decoding {what}")).with_source(e)
}

/// What kind of failure a Redis error is.
fn kind_of(e: &RedisError) -> BackendErrorKind {
    use redis::ErrorKind;
    match e.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => BackendErrorKind::Connection,
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => BackendErrorKind::Decode,
        ErrorKind::InvalidClientConfig | ErrorKind::Client => BackendErrorKind::InvalidRequest,
        ErrorKind::Server(_)
        | ErrorKind::Extension
        | ErrorKind::AuthenticationFailed
        | ErrorKind::RESP3NotSupported => BackendErrorKind::Server,
        _ => BackendErrorKind::Other,
    }
}

/// Opens the connection to one server at `url`.
async fn connect_single(url: &str) -> Result<Connections, BackendError> {
    // The URL may hold a password: errors do not repeat it.
    let client =
        Client::open(url).map_err(|e| error(BackendErrorKind::InvalidRequest, "invalid Redis URL").with_source(e))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(3)
        .set_max_delay(Duration::from_secs(2));
    let manager =
        client.get_connection_manager_with_config(config).await.map_err(redis_error("could not connect to Redis"))?;
    Ok(Connections { pubsub: Arc::from([client.clone()]), client, manager: Conn::Single(manager), cluster: None })
}

/// Opens the connection to the cluster whose nodes (some of them at
/// least) are `nodes`, as `redis://` URLs.
async fn connect_cluster(nodes: &[String]) -> Result<Connections, BackendError> {
    let invalid = |e| error(BackendErrorKind::InvalidRequest, "invalid Redis Cluster URL").with_source(e);
    let pubsub: Vec<Client> =
        nodes.iter().map(|n| Client::open(n.as_str())).collect::<Result<_, _>>().map_err(invalid)?;
    let client = pubsub
        .first()
        .cloned()
        .ok_or_else(|| error(BackendErrorKind::InvalidRequest, "invalid Redis Cluster URL: no node named"))?;
    let cluster = ClusterClient::builder(nodes.iter().map(String::as_str))
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .build()
        .map_err(invalid)?;
    let manager =
        cluster.get_async_connection().await.map_err(redis_error("could not connect to the Redis Cluster"))?;
    Ok(Connections { client, manager: Conn::Cluster(manager), pubsub: Arc::from(pubsub), cluster: Some(cluster) })
}

/// Every key of one server (or node) that matches a `SCAN … MATCH`
/// pattern, 1,000 per round trip (the Python protocols' backends use it too).
pub(crate) async fn scan_all<K: redis::FromRedisValue>(
    conn: &mut impl redis::aio::ConnectionLike,
    pattern: &str,
) -> Result<Vec<K>, RedisError> {
    let mut cursor = 0u64;
    let mut all = Vec::new();
    loop {
        let (next, found): (u64, Vec<K>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000).query_async(conn).await?;
        all.extend(found);
        if next == 0 {
            return Ok(all);
        }
        cursor = next;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A ttl for `PX`/`PEXPIRE`, in ms: at most a century, which Redis accepts
/// (it refuses an expiry time that overflows when added to its clock).
fn expire_millis(d: Duration) -> u64 {
    millis(d).min(100 * 365 * 86_400 * 1000)
}

/// The run of a task as the scripts take it: empty when not known (the
/// write is not fenced).
fn run_arg(run: Option<u64>) -> String {
    run.map(|r| r.to_string()).unwrap_or_default()
}

impl RedisBackend {
    /// Connects to the server at `url` (`redis://`, `rediss://` for TLS,
    /// `redis+unix://`), or to the Redis Cluster of a
    /// `redis+cluster://host:port[,host:port…]` URL (`rediss+cluster://`
    /// for TLS; see "Redis Cluster" above). The app builder scopes it to its app
    /// ([`for_app`](crate::Backend::for_app)); used alone, it serves the
    /// app called `default` until you call `for_app` yourself.
    ///
    /// The shared connection reconnects by itself when it is lost; commands
    /// sent meanwhile fail with a [`BackendError`] (the worker retries with
    /// backoff).
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        if url.starts_with("rediss") && rustls::crypto::CryptoProvider::get_default().is_none() {
            // Another thread may install one first: either is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let conns = match cluster::cluster_nodes(url) {
            Some(nodes) => connect_cluster(&nodes).await?,
            None => connect_single(url).await?,
        };
        // Load the scripts, so the first calls need not retry after
        // NOSCRIPT: in one round trip on a server; on a cluster each load
        // goes to every node (a node that joins later, or restarts, loads
        // a script on its first NOSCRIPT).
        let mut load = redis::pipe();
        for code in scripts::ALL {
            load.cmd("SCRIPT").arg("LOAD").arg(code);
        }
        let single = conns.cluster.is_none();
        // A connection dropped right after it opened reconnects: retried.
        super::retry_while_lost(
            CONNECT_TIMEOUT,
            |e: &BackendError| e.kind() == BackendErrorKind::Connection,
            || {
                let (load, mut conn) = (&load, conns.manager.clone());
                async move {
                    if single {
                        let _: Vec<String> =
                            load.query_async(&mut conn).await.map_err(redis_error("loading the Lua scripts"))?;
                    } else {
                        for cmd in load.cmd_iter() {
                            let _: redis::Value =
                                cmd.query_async(&mut conn).await.map_err(redis_error("loading the Lua scripts"))?;
                        }
                    }
                    Ok(())
                }
            },
        )
        .await?;
        Ok(Self {
            shared: Shared::new(conns, "default"),
            lease: DEFAULT_LEASE,
            liveness: DEFAULT_LIVENESS,
            retention: Some(DEFAULT_RETENTION),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            listing: true,
        })
    }

    /// The same connections and settings, for the app called `app` (as
    /// [`Backend::for_app`](crate::Backend::for_app), without the trait in
    /// scope).
    pub fn for_app(&self, app: &str) -> Self {
        let shared = Shared::new(self.shared.conns.clone(), app);
        Self { shared, ..self.clone() }
    }

    /// How long a worker holds a task it took before the task goes back to
    /// the queue (30 s by default; at least 1 ms). A task that runs longer
    /// may run again elsewhere: delivery is at least once.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(1));
        self
    }

    /// How long after its last sign of life a backend that took tasks
    /// counts as gone (5 s by default; at least 5 ms): then any fetch takes
    /// its tasks back and they run elsewhere, without waiting for their
    /// lease. It renews its liveness every fifth of this (1 s by default),
    /// in a background task, and at every fetch and lease renewal.
    ///
    /// Shorter recovers sooner from a crash; longer tolerates longer
    /// stalls (a process or a network pause of more than this makes its
    /// running tasks run again elsewhere: see "Delivery" above). Use the
    /// same value in every process of an app.
    pub fn liveness(mut self, liveness: Duration) -> Self {
        self.liveness = liveness.max(Duration::from_millis(5));
        self
    }

    /// How long records of finished tasks are kept (1 day by default);
    /// `None` keeps them until [`flush`](crate::Backend::flush).
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Largest task record, as JSON bytes, that [`enqueue`](crate::Backend::enqueue)
    /// accepts (1 MiB by default); larger ones are refused with an error.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Whether the tasks this backend enqueues go into the task listing's
    /// indexes (`P index`, `P index:{status}`; on by default), which
    /// [`list_tasks`](crate::Backend::list_tasks) and the dashboard read.
    ///
    /// Off is the lean mode: a task enqueued so is never in the indexes,
    /// so every later status change skips them too, and the Redis server
    /// spends about a quarter less CPU per task (9 of 32–36 µs measured;
    /// BENCHMARKS.md, "Batched finishes"). The task's record, statuses,
    /// counters and everything else are kept. `list_tasks` on a backend
    /// with listing off is refused with an error, and a backend with it
    /// on lists only the tasks enqueued with it on: turn it off in every
    /// process that enqueues to the app, or in none.
    pub fn listing(mut self, on: bool) -> Self {
        self.listing = on;
        self
    }

    /// The prefix of every key of this app: `qtasks:{app}:`. On a cluster,
    /// the prefix of its app-wide keys, `qtasks:{<len>:<app>}:` (each queue
    /// has a prefix of its own: see "Redis Cluster" above).
    pub fn key_prefix(&self) -> &str {
        &self.shared.keys.prefix
    }

    /// Renews the leases of tasks this process holds, as a heartbeat for
    /// tasks that run longer than the lease. Returns how many leases were
    /// renewed: tasks already finished or requeued are not in flight any more.
    ///
    /// A cancel requested for one of these tasks (see
    /// [`cancel`](crate::Backend::cancel)) fires its token if it runs here, also
    /// when the pub/sub message of that request was lost.
    ///
    /// Only the runs this backend took are renewed: a task whose lease was
    /// taken back (and maybe taken by another run) is not.
    pub async fn extend_leases(&self, uuids: &[Uuid]) -> Result<usize, BackendError> {
        if uuids.is_empty() {
            return Ok(0);
        }
        if self.shared.conns.cluster.is_none() {
            return self.extend_at(&self.shared.keys, uuids).await;
        }
        // On a cluster, by queue; a task this backend does not hold is not
        // renewed (as on a server), so it need not be looked for.
        let mut by_home: Vec<(Arc<Keys>, Vec<Uuid>)> = Vec::new();
        for uuid in uuids {
            let Some((_, home)) = self.shared.held(uuid) else { continue };
            match by_home.iter_mut().find(|(h, _)| Arc::ptr_eq(h, &home)) {
                Some((_, some)) => some.push(*uuid),
                None => by_home.push((home, vec![*uuid])),
            }
        }
        let mut renewed = 0;
        for (home, some) in &by_home {
            renewed += self.extend_at(home, some).await?;
        }
        Ok(renewed)
    }

    /// `extend_leases` for tasks under `keys`.
    async fn extend_at(&self, keys: &Keys, uuids: &[Uuid]) -> Result<usize, BackendError> {
        let mut call = scripts::EXTEND.key(&keys.inflight);
        call.key(&keys.holders)
            .key(&keys.alive)
            .arg(millis(self.lease))
            .arg(&keys.task_prefix)
            .arg(&self.shared.holder)
            .arg(millis(self.liveness));
        for uuid in uuids {
            call.arg(uuid.hyphenated().to_string()).arg(run_arg(self.shared.run_of(uuid)));
        }
        let (renewed, cancels): (Vec<String>, Vec<(String, String)>) =
            call.invoke_async(&mut self.conn()).await.map_err(redis_error("extending leases"))?;
        for (uuid, reason) in cancels {
            if let Ok(uuid) = Uuid::parse_str(&uuid) {
                self.shared.cancels.signal(uuid, &reason);
            }
        }
        Ok(renewed.len())
    }

    /// The keys queue `queue` lives under: the app's on a server; on a
    /// cluster, the queue's own (`Keys::cluster_queue`).
    fn home(&self, queue: &str) -> Arc<Keys> {
        if self.shared.conns.cluster.is_none() {
            return Arc::clone(&self.shared.keys);
        }
        let mut homes = lock(&self.shared.homes);
        let home = homes
            .entry(queue.to_owned())
            .or_insert_with(|| Arc::new(Keys::cluster_queue(&self.shared.keys.app, queue)));
        Arc::clone(home)
    }

    /// Every set of keys the app's tasks live under: the app's on a
    /// server; on a cluster, those of each queue in the app's set of
    /// queues (every queue that got a task or was paused), `default` first.
    async fn homes(&self) -> Result<Vec<Arc<Keys>>, BackendError> {
        Ok(self.queue_names().await?.iter().map(|q| self.home(q)).collect())
    }

    /// On a cluster, the names of the app's queues (see [`homes`](Self::homes));
    /// on a server, `default` alone.
    async fn queue_names(&self) -> Result<Vec<String>, BackendError> {
        let mut names = vec![crate::model::DEFAULT_QUEUE.to_owned()];
        if self.shared.conns.cluster.is_some() {
            let mut known: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&self.shared.keys.queues)
                .query_async(&mut self.conn())
                .await
                .map_err(redis_error("reading the queues"))?;
            known.sort();
            names.extend(known.into_iter().filter(|q| q != crate::model::DEFAULT_QUEUE));
        }
        Ok(names)
    }

    /// On a cluster, adds `queues` to the app's set of queues (before
    /// anything is written under their keys, so that a reader fanning out
    /// over the queues finds it); on a server, nothing.
    async fn register(&self, queues: &[&str]) -> Result<(), BackendError> {
        if self.shared.conns.cluster.is_none() || queues.is_empty() {
            return Ok(());
        }
        let _: i64 = redis::cmd("SADD")
            .arg(&self.shared.keys.queues)
            .arg(queues)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error("registering a queue"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::codec::decode_record;
    use super::*;
    use std::error::Error as _;

    #[tokio::test]
    async fn a_refused_connection_is_a_connection_error() {
        // Port 1: nothing listens there, so the connection is refused.
        let Err(e) = RedisBackend::connect("redis://127.0.0.1:1").await else {
            panic!("connected to port 1");
        };
        assert_eq!(e.kind(), BackendErrorKind::Connection, "{e}");
        assert_eq!(e.backend, "redis");
        let source = e.source().and_then(|s| s.downcast_ref::<RedisError>()).expect("a RedisError source");
        assert!(source.is_io_error(), "{source:?}");
        assert!(e.to_string().starts_with("redis backend: could not connect to Redis: "), "{e}");
    }

    #[tokio::test]
    async fn a_bad_url_is_an_invalid_request() {
        let Err(e) = RedisBackend::connect("redis://:bad:port:1/").await else {
            panic!("a bad URL was accepted");
        };
        assert_eq!(e.kind(), BackendErrorKind::InvalidRequest, "{e}");
        assert!(e.source().and_then(|s| s.downcast_ref::<RedisError>()).is_some(), "{e:?}");
    }

    #[test]
    fn an_undecodable_record_is_a_decode_error_not_a_connection_error() {
        // What `read` (so `get`, `wait`, `cancel`) returns for a record that is not a task.
        let uuid = Uuid::from_u128(7);
        let e = decode_record(b"{\"not\": \"a task\"}", Some("new"), None)
            .map_err(decode_error(format_args!("the record of task {uuid}")))
            .expect_err("decoded a record that is not a task");
        assert_eq!(e.kind(), BackendErrorKind::Decode, "{e}");
        assert_ne!(e.kind(), BackendErrorKind::Connection);
        assert!(e.source().and_then(|s| s.downcast_ref::<serde_json::Error>()).is_some(), "{e:?}");
        assert!(e.source().and_then(|s| s.downcast_ref::<RedisError>()).is_none());
        assert_eq!(e.message, format!("decoding the record of task {uuid}"));
    }

    #[test]
    fn redis_errors_are_classified_by_kind() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(kind_of(&io), BackendErrorKind::Connection);
        let parse = RedisError::from((redis::ErrorKind::UnexpectedReturnType, "not an integer"));
        assert_eq!(kind_of(&parse), BackendErrorKind::Decode);
        let config = RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad"));
        assert_eq!(kind_of(&config), BackendErrorKind::InvalidRequest);
    }
}
