//! The Postgres backend (feature `postgres`): see [`PostgresBackend`] for
//! the schema, the round trips and the delivery guarantees.
//!
//! # Layout
//!
//! | file | holds |
//! | --- | --- |
//! | `mod.rs` | [`PostgresBackend`], [`PostgresOptions`] (connecting), settings, errors |
//! | `migrations/*.sql`, `migrate.rs` | the schema, as versioned migrations embedded in the crate |
//! | `sql.rs` | every statement, with the schema's name in it |
//! | `codec.rs` | records to and from rows |
//! | `listen.rs` | `LISTEN/NOTIFY`: waking fetchers, waiters and cancelled tasks |
//! | `backend.rs` | `impl Backend for PostgresBackend` |
//! | `finish.rs` | writing the ends of tasks in batches |

mod backend;
mod codec;
mod finish;
mod listen;
mod listing;
mod migrate;
mod sql;

pub use migrate::LATEST_VERSION;
/// The sqlx this backend is built with: name its types (a
/// `sqlx::Transaction<'_, sqlx::Postgres>` for
/// [`QueueTasks::add_task_in`](crate::QueueTasks::add_task_in)) from here
/// to be sure they are the same version.
pub use sqlx;

use self::listen::Hub;
use self::sql::Sql;
use super::{BackendError, BackendErrorKind, RunTable};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::task::JoinHandle;
use uuid::Uuid;

const KIND: &str = "postgres";

/// Default schema of the tables and functions.
pub const DEFAULT_SCHEMA: &str = "qtasks";
/// Default `application_name` of the backend's connections.
pub const DEFAULT_APPLICATION_NAME: &str = "qtasks";
/// Default most connections in the pool (the `LISTEN` connection is extra).
const DEFAULT_POOL_SIZE: u32 = 10;
/// Default lease of a taken task.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default time finished records are kept.
const DEFAULT_RETENTION: Duration = Duration::from_secs(86_400);
/// Default largest encoded record accepted by `enqueue`.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;
/// Time allowed to get a connection (open one, or wait for a free one).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// The fallback poll: a fetch with nothing to take, and a wait whose task
/// has not ended, look again after this long even without a notification.
/// Notifications wake them at once; this only bounds how long a
/// notification lost with a dropped connection can delay them.
pub const FALLBACK_POLL: Duration = Duration::from_secs(5);
/// Longest schema name accepted: the channel names add `_queued`.
const MAX_SCHEMA_LEN: usize = 40;
/// How often finished records past their retention are deleted, at most.
const PURGE_EVERY: Duration = Duration::from_secs(10);
/// Shortest period of [`PostgresOptions::vacuum_every`].
const MIN_VACUUM_EVERY: Duration = Duration::from_millis(100);
/// Rows deleted per retention statement: short transactions.
const PURGE_BATCH: i32 = 500;
/// How often a busy worker's fetch scans each queue from its start rather
/// than from its floor, and sweeps every expired lease rather than those
/// that expired since its last fetch (schema version 5): a task left
/// behind a floor waits this long at worst.
const FULL_FETCH_EVERY: Duration = Duration::from_secs(10);
/// How far before the previous fetch a fetch looks for expired leases.
const SWEEP_OVERLAP: Duration = Duration::from_secs(1);

/// A queue and record store in a PostgreSQL database (feature `postgres`).
///
/// Tasks are ordered by priority (lower first), then by enqueue order,
/// across every process using the same schema and app name. Delivery is at
/// least once: a task taken by a worker that dies goes back to the queue
/// when its lease expires. Clones share the connection pool.
///
/// What sets it apart from the other backends: a task can be enqueued
/// **inside the caller's transaction**, with the rows it is about
/// ([`QueueTasks::add_task_in`](crate::QueueTasks::add_task_in)). Workers
/// see it exactly when that transaction commits, and never if it rolls back.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use qtasks::{PostgresBackend, QueueTasks};
/// use std::time::Duration;
///
/// // Connects, and creates or upgrades the schema `qtasks` if needed.
/// let backend = PostgresBackend::connect("postgres://postgres@127.0.0.1/app").await?.lease(Duration::from_secs(120));
/// // Or with settings: another schema, a bigger pool, no migration on start.
/// let backend = PostgresBackend::options("postgres://postgres@127.0.0.1/app")
///     .schema("jobs")
///     .pool_size(32)
///     .migrate(false)
///     .connect()
///     .await?;
/// let app = QueueTasks::builder("my_app").backend(backend).build()?;
/// # Ok(())
/// # }
/// ```
///
/// # Schema
///
/// Everything lives in one schema (`qtasks` by default,
/// [`PostgresOptions::schema`]), created by versioned migrations embedded
/// in the crate (`migrations/*.sql`; their state is in the schema's
/// `_sqlx_migrations` table). Connecting applies the missing ones (under a
/// lock, so many processes may start at once), unless
/// [`PostgresOptions::migrate`] says not to: then connecting only checks
/// that the schema is at the version this build knows
/// ([`LATEST_VERSION`]), and [`PostgresOptions::apply_migrations`] (or the
/// CLI's `migrate` command) applies them. A schema **newer** than this build is
/// an error (upgrade qtasks), never a crash.
///
/// | table | holds |
/// | --- | --- |
/// | `tasks` | one row per task: the record as columns (arguments, result and extra fields as JSON text, stored as sent), and the queue's bookkeeping: place in line, due time, run (the fencing token), holder, lease deadline, requested cancel, slots held, expiry |
/// | `counts` | per task name and status, how many runs ended so (a few shards per counter) |
/// | `minutes` | the same per minute, for the last two hours: added by a trigger on `counts` ([`Backend::minute_counts`](crate::Backend::minute_counts)) |
/// | `queues` | every queue of an app, and whether it is paused |
/// | `slots`, `buckets` | running tasks per limited scope, and the token buckets of rates |
/// | `uniques` | unique keys: which task holds each, and until when |
/// | `claims`, `settings` | one-time claims; shared settings with their expiry |
///
/// Every row belongs to an app, so apps sharing a schema never see each
/// other's tasks. The work is done by PL/pgSQL functions of the schema, so
/// each operation is **one statement, one round trip**:
/// - `enqueue`: checks the id, claims the unique key (the check and the
///   claim are one step under a row lock: of 8 enqueuers racing on a key,
///   one wins), inserts the row, and `NOTIFY`s the app's fetchers.
///   [`enqueue_many`](crate::Backend::enqueue_many) sends a batch as arrays
///   in one call.
/// - `fetch`: moves due delayed tasks into their queue, takes back expired
///   leases, then per queue in order takes up to `max` rows with
///   `SELECT … ORDER BY priority, seq … FOR UPDATE SKIP LOCKED` (concurrent
///   fetches never wait on each other nor take the same task) and marks
///   them `process` with a new run and a lease. Paused queues are skipped.
///   Under limits, candidates are checked one by one against the `slots`
///   and `buckets` rows (under a per-app advisory lock, so limits hold
///   across every worker), and a task over a limit stays at its place.
/// - `finish`: writes the final record, releases the lease and the slots,
///   counts the run, starts the unique key's window and `NOTIFY`s the
///   waiters. Finishes are batched: the ends that arrive while a batch is
///   written go together in the next one (one statement and one commit
///   for up to 256, up to 4 batches at once), so a task that ends alone is
///   written at once and many that end together share the cost. The plain
///   ends of a batch are one `UPDATE` and one notification per 200 tasks.
///   Every commit waits for the disk; with
///   [`PostgresOptions::synchronous_finish(false)`](PostgresOptions::synchronous_finish)
///   the finishes do not (faster; a server crash can then lose the last
///   ends, whose tasks run again after their leases).
///
/// # Where a fetch looks
///
/// A fetch scans each queue from the queue's *floor*, a place in line
/// before which the queue holds no ready task, rather than from its start:
/// a taken task's index entry stays until vacuum removes it, and a fetch
/// that stepped over all of them got slower with every task taken (a third
/// of the rate by the end of a 1 M backlog). The last task a fetch took
/// becomes the floor a second later; a more urgent enqueue, a released
/// task, an expired lease or a due delayed task lowers it at once. A task
/// that got behind it anyway (its enqueueing transaction committed more
/// than a second after it drew its place) is found by the next fetch that
/// finds nothing from the floors, or by the full fetch that each worker
/// makes every 10 s, which scans every queue from its start. Likewise a
/// fetch looks for the leases that expired and the delayed tasks that came
/// due since the worker's previous fetch (and a second before), and the
/// full fetch for all of them.
///
/// # Waking, not polling
///
/// Each backend (with its clones) keeps one connection in `LISTEN` on
/// three channels named after the schema: `{schema}_queued` (an enqueue,
/// a freed slot, a resumed queue: idle fetchers of that app look again),
/// `{schema}_done` (a task ended: its waiters read it) and
/// `{schema}_cancel` (a running task's cancel was requested: its token
/// fires). A notification is sent at commit, so a task enqueued in a
/// caller's transaction wakes the workers exactly when it becomes visible.
/// An idle fetch also wakes when the next delayed task, lease expiry or
/// rate token is due. When the `LISTEN` connection is lost, it reconnects
/// with backoff and then wakes every fetcher and waiter to look again. As
/// a last resort, fetchers and waiters look again every
/// [`FALLBACK_POLL`] (5 s) without a notification: a slow fallback, not a
/// busy loop.
///
/// # Delivery: leases and fencing
///
/// A taken task holds a lease (30 s by default, see [`lease`](Self::lease));
/// the worker renews it ([`extend_lease`](crate::Backend::extend_lease),
/// every lease / 3) and `finish` ends it. A task whose lease expired (its
/// worker was killed, or lost the database for longer than the lease) goes
/// back to its place at the next fetch (or, when more than 1,000 leases
/// expired at once, by the next full fetch) and runs elsewhere; a concurrency
/// slot it held comes back with it.
///
/// Each take is a new *run* (the row's `run`, the fencing token); the
/// backend remembers the run of each task it took. A stale run (its lease
/// was taken back) cannot renew the lease, its `update` writes nothing,
/// and its `finish` never replaces a final record nor a record another run
/// holds (it only ends a task that waits in the queue again, unrun). Runs
/// after the first are counted as
/// [`duplicates`](crate::backend::TaskCounts::duplicates).
///
/// `fetch` is cancel-safe: its statement runs in a task of its own, and
/// tasks taken for a fetch that was dropped are put back at once.
///
/// # Lost connections
///
/// Connections come from a pool (10 by default,
/// [`PostgresOptions::pool_size`]) and carry the `application_name`
/// `qtasks` ([`PostgresOptions::application_name`]). A statement that
/// fails because its connection was lost (terminated, server restarting)
/// is retried with backoff for about 2 s when that is safe (reads, and
/// writes that are idempotent: enqueue with its id, finish, update,
/// cancel, settings); otherwise the error reaches the caller with
/// [`BackendErrorKind::Connection`], and a worker retries its fetch with
/// backoff.
///
/// # Rows that cannot run
///
/// A row whose arguments or extra fields are not valid JSON (written by
/// hand, or by another program) is taken like any other and ended `error`
/// with the reason (`undecodable record: …`); its arguments are kept as a
/// JSON string. The worker goes on with the next task.
///
/// # Retention
///
/// A finished record expires after the retention (a day by default,
/// [`retention`](Self::retention)): reads stop showing it at once, and a
/// background task of each backend that fetches deletes expired rows
/// every 10 s in batches of 500 (short transactions), along with expired
/// unique keys, claims and settings. The space of deleted and replaced rows
/// is reused once autovacuum has passed: `tasks` carries autovacuum
/// settings of its own (schema version 6: vacuumed at 1% dead rows,
/// without cost delay), but the server decides how often autovacuum runs
/// (`autovacuum_naptime`, a minute by default) and whether it runs at all
/// (`autovacuum`).
#[derive(Clone)]
pub struct PostgresBackend {
    shared: Arc<Shared>,
    app: Arc<str>,
    lease: Duration,
    retention: Option<Duration>,
    max_message_size: usize,
    fallback_poll: Duration,
}

/// What the clones of a backend and its `for_app` scopes share.
struct Shared {
    pool: PgPool,
    /// The options of `pool`, for the `LISTEN` connection.
    options: PgConnectOptions,
    schema: String,
    sql: Sql,
    hub: Arc<Hub>,
    /// This backend's id as a holder of tasks.
    holder: Uuid,
    /// The run of each task this backend took and has not finished or
    /// released: the fencing token its writes carry.
    runs: RunTable<i64>,
    /// The `LISTEN` task, started on first use.
    listener: Mutex<Option<JoinHandle<()>>>,
    /// The retention task, started by the first fetch.
    purger: Mutex<Option<JoinHandle<()>>>,
    /// How often the retention task vacuums `tasks`, if it does.
    vacuum_every: Option<Duration>,
    /// When the last fetch and the last full fetch of each app and list
    /// of queues began (see `FULL_FETCH_EVERY`): apps sweep their own
    /// leases, workers scan their own queues.
    fetched: Mutex<std::collections::HashMap<FetchedKey, Fetched>>,
    /// The queue of the task writing ends in batches, started by the first finish.
    finisher: crate::backend::batch::Batcher<finish::Pending>,
}

/// An app and the queues a worker of it fetches from.
type FetchedKey = (Arc<str>, Vec<String>);

/// When a backend last fetched: what its next fetch sweeps and scans.
#[derive(Default)]
struct Fetched {
    last: Option<std::time::Instant>,
    last_full: Option<std::time::Instant>,
}

impl Fetched {
    /// The `p_full` and `p_sweep_ms` of a fetch beginning `now`: a full
    /// one first and every `FULL_FETCH_EVERY`; in between, the leases that
    /// expired since the previous fetch began, with `SWEEP_OVERLAP` to
    /// spare. Fetches of one backend cover every moment between them, so
    /// each expired lease falls in the window of one of them.
    fn next(&mut self, now: std::time::Instant) -> (bool, Option<i64>) {
        let last = self.last.replace(now);
        let full = self.last_full.is_none_or(|at| now.duration_since(at) >= FULL_FETCH_EVERY);
        if full {
            self.last_full = Some(now);
        }
        let sweep = last.map(|at| millis(now.duration_since(at) + SWEEP_OVERLAP));
        (full, if full { None } else { sweep })
    }
}

impl Shared {
    /// The run of `uuid` this backend holds, if it took the task.
    fn run_of(&self, uuid: &Uuid) -> Option<i64> {
        self.runs.get(uuid)
    }

    /// Forgets the run of `uuid` (finished or released).
    fn forget_run(&self, uuid: &Uuid) -> Option<i64> {
        self.runs.remove(uuid)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for slot in [&self.listener, &self.purger] {
            if let Some(task) = lock(slot).take() {
                task.abort();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single map update or handle swap.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`PostgresOptions::apply_migrations`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migrated {
    /// The schema migrated.
    pub schema: String,
    /// The version it was at before (0: it held no qtasks schema).
    pub from: i64,
    /// The version it is at now ([`LATEST_VERSION`]).
    pub to: i64,
}

/// How to connect a [`PostgresBackend`]: made by
/// [`PostgresBackend::options`], finished by [`connect`](Self::connect).
#[derive(Clone, Debug)]
#[must_use = "nothing connects until `connect` is awaited"]
pub struct PostgresOptions {
    url: String,
    schema: String,
    pool_size: u32,
    application_name: String,
    migrate: bool,
    synchronous_finish: bool,
    vacuum_every: Option<Duration>,
    /// A `qtasks_*` URL parameter that could not be read: connecting fails
    /// with it.
    url_problem: Option<String>,
}

impl PostgresOptions {
    /// The schema holding the tables and functions (`qtasks` by default):
    /// lowercase ASCII letters, digits and `_`, starting with a letter or
    /// `_`, at most 40 bytes. Created if missing (when migrating). Apps in
    /// different schemas of one database are fully apart; so are apps of
    /// different names in one schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Most connections the pool opens (10 by default, at least 1). A
    /// worker uses one per fetch and one per finishing task while the
    /// statement runs; the `LISTEN` connection comes on top.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// The `application_name` of every connection (`qtasks` by default):
    /// how `pg_stat_activity` shows them.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// Whether connecting applies the migrations the schema lacks (`true`
    /// by default). With `false`, connecting fails unless the schema is at
    /// [`LATEST_VERSION`] already; apply them with
    /// [`apply_migrations`](Self::apply_migrations) (a deploy step) or the
    /// CLI's `migrate` command.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Whether the end of a task is flushed to disk before the worker and
    /// the waiting clients learn of it (`true`, the default: an end once
    /// reported is never lost).
    ///
    /// With `false`, finishing commits asynchronously (Postgres's
    /// `synchronous_commit = off`, for those transactions only): a batch of
    /// ends no longer waits for the disk, nor holds the server's
    /// notification lock while it does, which makes a worker of short tasks
    /// several times faster (see BENCHMARKS.md). The price is on a server
    /// **crash** only (not a restart): the ends written in the last moments
    /// before it (up to three times `wal_writer_delay`, 600 ms by default)
    /// can be lost, and those tasks then run again when their leases
    /// expire, as after a worker crash; a client may have seen the lost end.
    /// Enqueues always wait for the disk: no task is ever lost.
    pub fn synchronous_finish(mut self, synchronous: bool) -> Self {
        self.synchronous_finish = synchronous;
        self
    }

    /// Whether the retention task also vacuums the schema's `tasks` table,
    /// and how often (`None`, the default: never; at least every 100 ms).
    ///
    /// Each run of a task leaves dead row versions in `tasks` (a take and
    /// an end each write a new version of the row, retention deletes it),
    /// and only a vacuum makes their space reusable. The table carries
    /// autovacuum settings of its own (schema version 6), which is enough
    /// where the server runs autovacuum. Where it does not (`autovacuum =
    /// off`, or it is too slow for the rate of tasks), set this: every
    /// `every`, the backend that runs retention (one per connected pool)
    /// runs `VACUUM (SKIP_LOCKED)` on the table, which skips it rather than
    /// wait for a lock. The role needs to own the table; a vacuum that
    /// fails is logged and tried again at the next period. A period under
    /// 10 s makes the retention task's deletes run at that period too.
    /// BENCHMARKS.md
    /// has the table's size after 1 M tasks with and without it.
    pub fn vacuum_every(mut self, every: Option<Duration>) -> Self {
        self.vacuum_every = every.map(|e| e.max(MIN_VACUUM_EVERY));
        self
    }

    /// Applies the migrations the schema lacks, creating it if needed, on
    /// one connection of its own (no pool, nothing kept open), and says
    /// which versions the schema went from and to. Concurrent callers apply
    /// each migration once (an advisory lock per schema). A schema at a
    /// version newer than this build knows is an error, and nothing is
    /// changed. This is what the CLI's `migrate` command runs.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), qtasks::BackendError> {
    /// let done = qtasks::PostgresBackend::options("postgres://postgres@127.0.0.1/app").apply_migrations().await?;
    /// println!("schema {}: version {} -> {}", done.schema, done.from, done.to);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn apply_migrations(&self) -> Result<Migrated, BackendError> {
        let (options, schema) = self.connect_options()?;
        let (from, to) = migrate::apply(&options, &schema).await?;
        Ok(Migrated { schema, from, to })
    }

    /// The migration version the schema is at (0: no qtasks schema there),
    /// read on one connection of its own; an error if it is newer than
    /// this build knows.
    pub async fn schema_version(&self) -> Result<i64, BackendError> {
        let (options, schema) = self.connect_options()?;
        migrate::version_at(&options, &schema).await
    }

    /// The driver's settings and the checked schema name.
    fn connect_options(&self) -> Result<(PgConnectOptions, String), BackendError> {
        if let Some(problem) = &self.url_problem {
            return Err(error(BackendErrorKind::InvalidRequest, problem.clone()));
        }
        let schema = checked_schema(&self.schema)?;
        let options = PgConnectOptions::from_str(&self.url)
            .map_err(|e| error(BackendErrorKind::InvalidRequest, "invalid Postgres URL").with_source(e))?
            .application_name(&self.application_name);
        Ok((options, schema))
    }

    /// Connects: opens the pool, then migrates or checks the schema (see
    /// [`migrate`](Self::migrate)). The `LISTEN` connection opens on first
    /// use.
    pub async fn connect(self) -> Result<PostgresBackend, BackendError> {
        let (options, schema) = self.connect_options()?;
        let pool = PgPoolOptions::new()
            .max_connections(self.pool_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A dropped connection fails its statement, which is retried
            // when safe: no extra round trip per statement to test it first.
            .test_before_acquire(false)
            .connect_lazy_with(options.clone());
        let backend = PostgresBackend {
            shared: Arc::new(Shared {
                pool,
                options,
                sql: Sql::new(&schema, self.synchronous_finish),
                hub: Arc::new(Hub::new(&schema)),
                schema,
                holder: Uuid::new_v4(),
                runs: Default::default(),
                listener: Mutex::new(None),
                purger: Mutex::new(None),
                vacuum_every: self.vacuum_every,
                fetched: Mutex::new(std::collections::HashMap::new()),
                finisher: Default::default(),
            }),
            app: "default".into(),
            lease: DEFAULT_LEASE,
            retention: Some(DEFAULT_RETENTION),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            fallback_poll: FALLBACK_POLL,
        };
        let version = if self.migrate { backend.migrate().await? } else { backend.schema_version().await? };
        if version != LATEST_VERSION {
            return Err(error(
                BackendErrorKind::InvalidRequest,
                format!(
                    "the schema `{}` is at migration version {version}, this qtasks needs version {LATEST_VERSION}: \
                     apply the migrations (PostgresBackend::migrate, the CLI's `migrate` command, or connect \
                     with PostgresOptions::migrate(true))",
                    backend.shared.schema
                ),
            ));
        }
        Ok(backend)
    }
}

/// The URL without its `qtasks_*` parameters (this backend's, not the
/// driver's), and those parameters as (name, value), in order.
fn take_qtasks_params(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), Vec::new()) };
    let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
    let mut ours = Vec::new();
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            if !pair.starts_with("qtasks_") {
                return !pair.is_empty();
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            ours.push((name.to_owned(), value.to_owned()));
            false
        })
        .collect();
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    (out, ours)
}

/// A schema name as given, if it is one this backend accepts.
fn checked_schema(schema: &str) -> Result<String, BackendError> {
    let mut chars = schema.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && schema.len() <= MAX_SCHEMA_LEN {
        Ok(schema.to_owned())
    } else {
        Err(error(
            BackendErrorKind::InvalidRequest,
            format!(
                "invalid schema name `{schema}`: expected lowercase ASCII letters, digits and `_`, starting with a \
                 letter or `_`, at most {MAX_SCHEMA_LEN} bytes"
            ),
        ))
    }
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database?sslmode=…`,
    /// TLS over rustls) with the default settings, applying the schema's
    /// missing migrations: the same as `PostgresBackend::options(url).connect()`.
    ///
    /// The app builder scopes it to its app
    /// ([`for_app`](crate::Backend::for_app)); used alone, it serves the
    /// app called `default` until you call `for_app` yourself.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Self::options(url).connect().await
    }

    /// Settings to connect to the database at `url` with (schema, pool
    /// size, application name, migrations); see [`PostgresOptions`].
    ///
    /// The URL may carry this backend's settings as parameters, which is
    /// how a URL alone ([`AnyBackend`](crate::AnyBackend), the CLI's
    /// `QTASKS_BROKER_URL`) sets them; they are taken out of the URL given
    /// to the driver:
    ///
    /// - `qtasks_schema=jobs`: [`schema`](PostgresOptions::schema);
    /// - `qtasks_synchronous_finish=false` (or `true`):
    ///   [`synchronous_finish`](PostgresOptions::synchronous_finish);
    /// - `qtasks_vacuum_every=30` (seconds; `0` for never):
    ///   [`vacuum_every`](PostgresOptions::vacuum_every).
    ///
    /// Another `qtasks_` parameter, or a value that is not one of these,
    /// makes connecting fail with an error naming it.
    pub fn options(url: &str) -> PostgresOptions {
        let (url, params) = take_qtasks_params(url);
        let mut options = PostgresOptions {
            url,
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            application_name: DEFAULT_APPLICATION_NAME.to_owned(),
            migrate: true,
            synchronous_finish: true,
            vacuum_every: None,
            url_problem: None,
        };
        for (name, value) in params {
            match (name.as_str(), value.as_str()) {
                ("qtasks_schema", _) => options.schema = value,
                ("qtasks_synchronous_finish", "true") => options.synchronous_finish = true,
                ("qtasks_synchronous_finish", "false") => options.synchronous_finish = false,
                ("qtasks_synchronous_finish", _) => {
                    options.url_problem =
                        Some(format!("invalid URL parameter qtasks_synchronous_finish={value}: expected true or false"))
                }
                ("qtasks_vacuum_every", _) => match value.parse::<f64>() {
                    Ok(0.0) => options.vacuum_every = None,
                    Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => {
                        options = options.vacuum_every(Some(Duration::from_secs_f64(secs)))
                    }
                    _ => {
                        options.url_problem = Some(format!(
                            "invalid URL parameter qtasks_vacuum_every={value}: expected seconds (a number > 0), or 0 for never"
                        ))
                    }
                },
                _ => {
                    options.url_problem = Some(format!(
                        "unknown URL parameter {name}: the qtasks_ parameters are qtasks_schema, \
                         qtasks_synchronous_finish and qtasks_vacuum_every"
                    ))
                }
            }
        }
        options
    }

    /// The same pool and settings, for the app called `app` (as
    /// [`Backend::for_app`](crate::Backend::for_app), without the trait in
    /// scope).
    pub fn for_app(&self, app: &str) -> Self {
        Self { app: app.into(), ..self.clone() }
    }

    /// How long a worker holds a task it took before the task goes back to
    /// the queue (30 s by default; at least 1 ms). Workers renew it every
    /// third of it while the task runs, so only a worker that died or lost
    /// the database loses its tasks.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(1));
        self
    }

    /// How long records of finished tasks are kept (1 day by default);
    /// `None` keeps them until [`flush`](crate::Backend::flush).
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// Largest task an enqueue accepts, as the bytes of its encoded name,
    /// queue, arguments and extra fields (1 MiB by default); larger ones
    /// are refused with [`BackendErrorKind::InvalidRequest`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long an idle fetch, or a wait whose task has not ended, sleeps
    /// at most without a notification before it looks again
    /// ([`FALLBACK_POLL`], 5 s, by default; at least 10 ms). Notifications
    /// wake them at once; this only bounds the delay a notification lost
    /// with a dropped connection can cause. Shorter costs a statement per
    /// idle worker per period.
    pub fn fallback_poll(mut self, every: Duration) -> Self {
        self.fallback_poll = every.max(Duration::from_millis(10));
        self
    }

    /// The schema of the tables and functions.
    pub fn schema(&self) -> &str {
        &self.shared.schema
    }

    /// The connection pool, for queries of your own next to the tasks (in
    /// a transaction with [`QueueTasks::add_task_in`](crate::QueueTasks::add_task_in),
    /// for instance).
    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// Applies the migrations the schema lacks (creating the schema if
    /// needed), under a lock so concurrent callers apply each once, and
    /// returns the version it is at. A schema at a version newer than this
    /// build knows is an error, and nothing is changed.
    pub async fn migrate(&self) -> Result<i64, BackendError> {
        Ok(migrate::apply(&self.shared.options, &self.shared.schema).await?.1)
    }

    /// The migration version the schema is at (0: no qtasks schema there).
    pub async fn schema_version(&self) -> Result<i64, BackendError> {
        migrate::version(&self.shared.pool, &self.shared.schema).await
    }

    /// The lease, in milliseconds, for statements.
    fn lease_ms(&self) -> i64 {
        millis(self.lease)
    }

    /// The retention, in milliseconds (`None`: kept), for statements.
    fn retention_ms(&self) -> Option<i64> {
        self.retention.map(millis)
    }
}

/// A backend that can enqueue in a caller's Postgres transaction: the
/// bound of [`QueueTasks::add_task_in`](crate::QueueTasks::add_task_in).
/// Implemented by [`PostgresBackend`], and by
/// [`AnyBackend`](crate::AnyBackend) (whose other variants give `None`).
pub trait AsPostgres {
    /// The Postgres backend, if this is one.
    fn as_postgres(&self) -> Option<&PostgresBackend>;
}

impl AsPostgres for PostgresBackend {
    fn as_postgres(&self) -> Option<&PostgresBackend> {
        Some(self)
    }
}

/// An error of this backend, without a source.
fn error(kind: BackendErrorKind, message: impl Into<String>) -> BackendError {
    BackendError::new(KIND, kind, message)
}

/// Maps a sqlx error met while doing `context` (kind from [`kind_of`]).
fn db_error(context: &str) -> impl FnOnce(sqlx::Error) -> BackendError + '_ {
    move |e| error(kind_of(&e), context).with_source(e)
}

/// Maps a JSON error met while encoding `what`: the value cannot be stored.
fn encode_error(what: &str) -> impl FnOnce(serde_json::Error) -> BackendError + '_ {
    move |e| error(BackendErrorKind::InvalidRequest, format!("encoding {what}")).with_source(e)
}

/// What kind of failure a sqlx error is.
fn kind_of(e: &sqlx::Error) -> BackendErrorKind {
    use sqlx::Error;
    match e {
        Error::Io(_) | Error::Tls(_) | Error::PoolTimedOut | Error::PoolClosed | Error::WorkerCrashed => {
            BackendErrorKind::Connection
        }
        // A server that went away mid-statement may answer with a broken message.
        Error::Protocol(_) => BackendErrorKind::Connection,
        Error::Database(db) => match db.code().as_deref() {
            // 08: connection exceptions; 57P01-03: the server is shutting
            // down, or terminated this connection (`pg_terminate_backend`),
            // or cannot take connections yet; 53300: too many connections.
            Some(code) if code.starts_with("08") || code.starts_with("57P") || code == "53300" => {
                BackendErrorKind::Connection
            }
            // 22: data exceptions (a value the column refuses).
            Some(code) if code.starts_with("22") => BackendErrorKind::InvalidRequest,
            _ => BackendErrorKind::Server,
        },
        Error::ColumnDecode { .. } | Error::Decode(_) | Error::ColumnNotFound(_) | Error::TypeNotFound { .. } => {
            BackendErrorKind::Decode
        }
        Error::Configuration(_) => BackendErrorKind::InvalidRequest,
        _ => BackendErrorKind::Other,
    }
}

/// A duration in whole milliseconds for a statement, at least 1 and at
/// most a century (so the server can add it to its clock).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).clamp(1, 100 * 365 * 86_400 * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_sweep_every_moment_between_them_and_go_full_at_intervals() {
        let start = std::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut fetched = Fetched::default();
        // The first fetch of a backend is a full one.
        assert_eq!(fetched.next(at(0)), (true, None));
        // Then each sweeps back to the previous one, and a second more.
        assert_eq!(fetched.next(at(5)), (false, Some(1_005)));
        assert_eq!(fetched.next(at(2_005)), (false, Some(3_000)));
        // A full one every `FULL_FETCH_EVERY`.
        let full = millis(FULL_FETCH_EVERY) as u64;
        assert_eq!(fetched.next(at(full)), (true, None));
        assert_eq!(fetched.next(at(full + 1)), (false, Some(1_001)));
    }

    #[test]
    fn schema_names_are_checked() {
        for good in ["qtasks", "_x", "jobs_2", &"a".repeat(MAX_SCHEMA_LEN)] {
            assert!(checked_schema(good).is_ok(), "{good}");
        }
        for bad in ["", "Jobs", "2jobs", "a-b", "a b", "\"x\"", "é", &"a".repeat(MAX_SCHEMA_LEN + 1)] {
            let e = checked_schema(bad).expect_err(bad);
            assert_eq!(e.kind(), BackendErrorKind::InvalidRequest);
        }
    }

    #[test]
    fn the_qtasks_parameters_are_taken_out_of_the_url() {
        let plain = "postgres://u:p@h:5/db";
        assert_eq!(take_qtasks_params(plain), (plain.to_owned(), vec![]));
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(
            take_qtasks_params("postgres://h/db?qtasks_schema=jobs"),
            ("postgres://h/db".to_owned(), vec![pair("qtasks_schema", "jobs")])
        );
        assert_eq!(
            take_qtasks_params(
                "postgres://h/db?sslmode=require&qtasks_schema=jobs&application_name=x&qtasks_synchronous_finish=false"
            ),
            (
                "postgres://h/db?sslmode=require&application_name=x".to_owned(),
                vec![pair("qtasks_schema", "jobs"), pair("qtasks_synchronous_finish", "false")]
            )
        );
        let options = PostgresBackend::options("postgres://h/db?qtasks_schema=jobs&qtasks_synchronous_finish=false");
        assert_eq!((options.schema.as_str(), options.synchronous_finish), ("jobs", false));
        assert!(PostgresBackend::options("postgres://h/db").synchronous_finish);
        let vacuum = |url: &str| PostgresBackend::options(url).vacuum_every;
        assert_eq!(vacuum("postgres://h/db"), None);
        assert_eq!(vacuum("postgres://h/db?qtasks_vacuum_every=30"), Some(Duration::from_secs(30)));
        assert_eq!(vacuum("postgres://h/db?qtasks_vacuum_every=0.01"), Some(MIN_VACUUM_EVERY));
        assert_eq!(vacuum("postgres://h/db?qtasks_vacuum_every=0"), None);
        for (url, says) in [
            ("postgres://h/db?qtasks_synchronous_finish=no", "qtasks_synchronous_finish=no"),
            ("postgres://h/db?qtasks_vacuum_every=soon", "qtasks_vacuum_every=soon"),
            ("postgres://h/db?qtasks_vacuum_every=-1", "qtasks_vacuum_every=-1"),
            ("postgres://h/db?qtasks_vacuum_every=inf", "qtasks_vacuum_every=inf"),
            ("postgres://h/db?qtasks_shema=jobs", "unknown URL parameter qtasks_shema"),
        ] {
            let e = PostgresBackend::options(url).connect_options().expect_err(url);
            assert_eq!(e.kind(), BackendErrorKind::InvalidRequest);
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn durations_fit_a_statement() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::MAX), 100 * 365 * 86_400 * 1000);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connection_error() {
        // Port 1: nothing listens there, so the connection is refused.
        let Err(e) = PostgresBackend::connect("postgres://postgres@127.0.0.1:1/x").await else {
            panic!("connected to port 1");
        };
        assert_eq!(e.kind(), BackendErrorKind::Connection, "{e}");
        assert_eq!(e.backend, "postgres");
    }

    #[tokio::test]
    async fn a_bad_url_is_an_invalid_request() {
        let Err(e) = PostgresBackend::connect("postgres://:bad:port:1/").await else {
            panic!("a bad URL was accepted");
        };
        assert_eq!(e.kind(), BackendErrorKind::InvalidRequest, "{e}");
    }
}
