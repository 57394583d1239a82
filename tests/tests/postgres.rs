//! The Postgres backend against a real server (`QTASKS_POSTGRES_URL`, or
//! the local `qtasks_test` database; see `support/postgres.rs`): enqueue in
//! the caller's transaction, migrations, retention, size limits, and the
//! faults: rows that cannot be decoded, connections terminated with
//! `pg_terminate_backend` while tasks flow, a worker process SIGKILLed.
//!
//! Without a reachable server the tests are ignored (see `tests/build.rs`),
//! except under CI (`CI` set), where they fail. Each test works in a
//! schema of its own, dropped at the end, and terminates only connections
//! of its own (found by their `application_name`).

mod support;

use qtasks::backend::postgres::sqlx::{self, Connection, Row};
use qtasks::backend::postgres::{LATEST_VERSION, PostgresBackend};
use qtasks::backend::{BackendErrorKind, Enqueued, Fetch};
use qtasks::{AnyBackend, Backend, MemoryBackend, NewTask, QueueTasks, TaskRecord, TaskStatus, call, json, task};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::HANG;
use support::postgres::{admin, drop_schema, fresh, terminate_connections};
use uuid::Uuid;

/// Set in the worker process of the SIGKILL test: the schema it works in.
const CHILD_SCHEMA: &str = "QTASKS_TEST_PG_CHILD_SCHEMA";

#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[task]
async fn square(n: i64) -> i64 {
    n * n
}

/// Squares after a short pause, so that tasks are running when connections drop.
#[task]
async fn slow_square(n: i64) -> i64 {
    tokio::time::sleep(Duration::from_millis(3)).await;
    n * n
}

/// Never ends in the worker process of the SIGKILL test; squares elsewhere.
#[task]
async fn held(n: i64) -> i64 {
    if std::env::var_os(CHILD_SCHEMA).is_some() {
        std::future::pending::<()>().await;
    }
    n * n
}

/// Runs `body` on a backend in a fresh schema, and drops the schema after
/// (also when `body` panics). Skipped when the server is gone.
async fn in_schema<F, Fut>(what: &str, body: F)
where
    F: FnOnce(PostgresBackend) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(base) = fresh(what).await else { return };
    let outcome = tokio::spawn(body(base.clone())).await;
    drop_schema(&base).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Fetches at most `max` tasks of the default queue, or none within `within`.
async fn fetch_within(backend: &PostgresBackend, max: usize, within: Duration) -> Vec<qtasks::TaskMessage> {
    let mut out = Vec::new();
    if let Ok(result) = tokio::time::timeout(within, backend.fetch(&Fetch::default_queue(), max, &mut out)).await {
        result.unwrap();
    }
    out
}

/// Waits until `cond` (an expression that may `.await`) holds, looking
/// every 10 ms, for at most [`HANG`].
macro_rules! until {
    ($what:expr, $cond:expr) => {{
        let started = Instant::now();
        while !$cond {
            assert!(started.elapsed() < HANG, "{}: still not so after {HANG:?}", $what);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }};
}

async fn rows_of(conn: &mut sqlx::PgConnection, schema: &str, uuid: Uuid) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{schema}\".tasks WHERE uuid = $1")))
        .bind(uuid)
        .fetch_one(conn)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// Transactional enqueue
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn a_task_enqueued_in_a_transaction_appears_at_commit_and_wakes_a_waiting_worker() {
    in_schema("tx_commit", |base| async move {
        let schema = base.schema().to_owned();
        // Without a notification, an idle worker would not look again for an hour.
        let backend = base.for_app("tx").fallback_poll(Duration::from_secs(3600));
        let app = QueueTasks::builder("tx").task::<Add>().backend(backend.clone()).build().unwrap();
        let pool = backend.pool().clone();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE \"{schema}\".users (id bigserial PRIMARY KEY, name text)"
        )))
        .execute(&pool)
        .await
        .unwrap();

        // A worker that has run a task and is idle again, waiting.
        let worker = app.worker().start().await.unwrap();
        let warm = app.enqueue(Add::call(1, 1)).await.unwrap();
        assert_eq!(warm.result(HANG).await.unwrap(), 2);

        let mut tx = pool.begin().await.unwrap();
        let (id,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".users (name) VALUES ('ada') RETURNING id"
        )))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let by_name = app.add_task_in(&mut tx, "add", json!([id, 10])).await.unwrap();
        let typed = app.enqueue_in(&mut tx, Add::call(id, 20).priority(-1)).await.unwrap();

        // Before the commit no other connection sees them: no record, not
        // counted, not fetched.
        for uuid in [by_name.uuid(), typed.uuid()] {
            assert_eq!(backend.get(uuid).await.unwrap(), None, "a task visible before its commit");
        }
        let stats = backend.stats().await.unwrap();
        assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
        let other = base.for_app("tx");
        let early = fetch_within(&other, 10, Duration::from_millis(300)).await;
        assert!(early.is_empty(), "a fetch took a task before its commit: {early:?}");
        // Nor does the worker, which has been idle all along.
        assert_eq!(backend.stats().await.unwrap().tasks["add"].success, 1);

        tx.commit().await.unwrap();
        // The commit's notification wakes the waiting worker (its fallback
        // poll is an hour away): both run, the typed one with its result type.
        assert_eq!(typed.result(HANG).await.unwrap(), id + 20);
        let record = by_name.record(HANG).await.unwrap();
        assert_eq!((record.status, record.result), (TaskStatus::Success, Some(json!(id + 10))));
        worker.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn asynchronous_finishes_end_every_task_with_its_result() {
    in_schema("async_finish", |base| async move {
        // A second backend on the same schema, finishing asynchronously
        // (set by the URL, as AnyBackend and the CLI take it).
        let url = format!("{}?qtasks_synchronous_finish=false", support::postgres::url());
        let backend = PostgresBackend::options(&url)
            .schema(base.schema())
            .application_name(format!("qtasks-test-{}", base.schema()))
            .connect()
            .await
            .unwrap()
            .for_app("async_finish");
        let app = QueueTasks::builder("async_finish").task::<Add>().backend(backend.clone()).build().unwrap();
        let worker = app.worker().max_tasks_process(16).start().await.unwrap();
        // Plain tasks (finished set-wise) and keyed ones (one by one), with
        // a client waiting on each.
        let handles = futures::future::join_all((0..200i64).map(|i| {
            let app = app.clone();
            async move {
                let handle = if i % 10 == 0 {
                    app.enqueue(call("add", json!([i, 1])).unique_key(format!("k{i}"))).await.unwrap()
                } else {
                    app.add_task("add", json!([i, 1])).await.unwrap()
                };
                (i, handle.result(HANG).await.unwrap())
            }
        }))
        .await;
        for (i, result) in handles {
            assert_eq!(result, json!(i + 1));
        }
        worker.shutdown().await;
        let stats = backend.stats().await.unwrap();
        assert_eq!(stats.tasks["add"].success, 200, "{stats:?}");
        assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn a_rolled_back_enqueue_leaves_nothing() {
    in_schema("tx_rollback", |base| async move {
        let schema = base.schema().to_owned();
        let backend = base.for_app("rollback");
        let app = QueueTasks::builder("rollback").task::<Add>().backend(backend.clone()).build().unwrap();
        let mut tx = backend.pool().begin().await.unwrap();
        let plain = app.add_task_in(&mut tx, "add", json!([1, 2])).await.unwrap();
        let keyed = app.enqueue_in(&mut tx, call("add", json!([3, 4])).unique_key("once")).await.unwrap();
        let delayed = app.enqueue_in(&mut tx, Add::call(5, 6).delay(Duration::from_millis(10))).await.unwrap();
        tx.rollback().await.unwrap();

        let mut conn = admin().await;
        for uuid in [plain.uuid(), keyed.uuid(), delayed.uuid()] {
            assert_eq!(backend.get(uuid).await.unwrap(), None);
            assert_eq!(rows_of(&mut conn, &schema, uuid).await, 0, "a row of a rolled back task");
        }
        let leftovers: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT (SELECT count(*) FROM \"{schema}\".tasks) + (SELECT count(*) FROM \"{schema}\".uniques)"
        )))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(leftovers, 0, "rows left by a rolled back transaction");
        let stats = backend.stats().await.unwrap();
        assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
        // The unique key it took in the transaction is free.
        let again = app.enqueue(call("add", json!([3, 4])).unique_key("once")).await.unwrap();
        assert_ne!(again.uuid(), keyed.uuid());
        assert_eq!(backend.get(again.uuid()).await.unwrap().map(|t| t.status), Some(TaskStatus::New));
        // And nothing ever runs the rolled back tasks.
        let worker = app.worker().start().await.unwrap();
        again.record(HANG).await.unwrap();
        worker.shutdown().await;
        assert_eq!(backend.stats().await.unwrap().tasks["add"].success, 1);
        let _ = conn.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn transactional_enqueue_needs_the_postgres_backend_and_any_backend_takes_postgres_urls() {
    in_schema("tx_any", |base| async move {
        // Memory behind an AnyBackend: refused, nothing written.
        let app =
            QueueTasks::builder("any").task::<Add>().backend(AnyBackend::Memory(MemoryBackend::new())).build().unwrap();
        let mut conn = admin().await;
        let mut tx = conn.begin().await.unwrap();
        let refused = app.add_task_in(&mut tx, "add", json!([1, 2])).await.unwrap_err();
        match refused {
            qtasks::Error::Backend(e) => assert_eq!(e.kind(), BackendErrorKind::InvalidRequest, "{e}"),
            other => panic!("{other}"),
        }
        tx.rollback().await.unwrap();
        assert_eq!(app.queue_stats().await.unwrap().queued, 0);

        // A postgres:// URL, with the schema as a parameter.
        let url = format!("{}?qtasks_schema={}", support::postgres::url(), base.schema());
        let any = AnyBackend::connect(&url).await.unwrap();
        assert_eq!(any.kind(), "postgres");
        let app = QueueTasks::builder("any").task::<Add>().backend(any).build().unwrap();
        let worker = app.worker().start().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let handle = app.enqueue_in(&mut tx, Add::call(20, 22)).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(handle.result(HANG).await.unwrap(), 42);
        worker.shutdown().await;
        let _ = conn.close().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------

/// The app behind the CLI test.
fn cli_app(backend: AnyBackend) -> Result<QueueTasks<(Add,), (), AnyBackend>, qtasks::Error> {
    QueueTasks::builder("pg-cli").task::<Add>().backend(backend).build()
}

async fn cli(args: &[&str]) -> Result<std::process::ExitCode, String> {
    use clap::Parser;
    let cli = qtasks::cli::Cli::try_parse_from(args).map_err(|e| e.to_string())?;
    qtasks::cli::execute(cli, cli_app).await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn the_cli_migrate_command_checks_and_applies_the_schema() {
    use std::process::ExitCode;
    in_schema("cli_migrate", |base| async move {
        // A schema of the test's own that nothing has created yet.
        let schema = format!("{}_m", &base.schema()[..30]);
        let url = format!("{}?qtasks_schema={schema}", support::postgres::url());
        let options = PostgresBackend::options(&url);
        assert_eq!(options.schema_version().await.unwrap(), 0);
        assert_eq!(cli(&["app", "--broker-url", &url, "migrate", "--check"]).await, Ok(ExitCode::FAILURE));
        assert_eq!(options.schema_version().await.unwrap(), 0, "--check changes nothing");

        assert_eq!(cli(&["app", "--broker-url", &url, "migrate"]).await, Ok(ExitCode::SUCCESS));
        assert_eq!(options.schema_version().await.unwrap(), LATEST_VERSION);
        assert_eq!(cli(&["app", "--broker-url", &url, "migrate", "--check"]).await, Ok(ExitCode::SUCCESS));
        // Again: nothing to do, and the report says so.
        let again = options.apply_migrations().await.unwrap();
        assert_eq!((again.from, again.to), (LATEST_VERSION, LATEST_VERSION));
        // Connecting with migrations off now works, and the app runs on it.
        let backend = PostgresBackend::options(&url).migrate(false).connect().await.unwrap();
        let task = TaskRecord::new(Uuid::new_v4(), NewTask::new("add", json!([1, 2])));
        assert_eq!(backend.enqueue(&task).await.unwrap(), Enqueued::New);
        drop_schema(&backend).await;

        // Other backends keep no schema; a bad schema name is a clear error.
        assert_eq!(cli(&["app", "--broker-url", "memory://", "migrate"]).await, Ok(ExitCode::SUCCESS));
        let bad = format!("{}?qtasks_schema=Bad-Name", support::postgres::url());
        let error = cli(&["app", "--broker-url", &bad, "migrate"]).await.unwrap_err();
        assert!(error.contains("invalid schema name `Bad-Name`"), "{error}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn migrations_apply_once_under_concurrency_and_a_newer_schema_is_refused() {
    in_schema("migrations", |base| async move {
        let url = support::postgres::url();
        assert_eq!(base.schema_version().await.unwrap(), LATEST_VERSION);

        // A schema nobody created: refused without migrations, then four
        // processes starting at once create it, once.
        let schema = format!("{}_b", &base.schema()[..30]);
        let refused =
            PostgresBackend::options(&url).schema(&schema).migrate(false).connect().await.err().expect("connected");
        assert!(refused.to_string().contains("apply the migrations"), "{refused}");
        let racers = futures::future::join_all(
            (0..4).map(|_| PostgresBackend::options(&url).schema(&schema).pool_size(2).connect()),
        )
        .await;
        let racers: Vec<PostgresBackend> = racers.into_iter().map(Result::unwrap).collect();
        for racer in &racers {
            assert_eq!(racer.schema_version().await.unwrap(), LATEST_VERSION);
        }
        let mut conn = admin().await;
        let applied: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{schema}\"._sqlx_migrations")))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(applied, LATEST_VERSION, "each migration applied once");
        // Checked and usable without migrating.
        let checked = PostgresBackend::options(&url).schema(&schema).migrate(false).connect().await.unwrap();
        let task = TaskRecord::new(Uuid::new_v4(), NewTask::new("add", json!([1, 2])));
        assert_eq!(checked.enqueue(&task).await.unwrap(), Enqueued::New);
        drop_schema(&racers[0]).await;

        // A schema migrated by a newer qtasks: a clear error, nothing changed.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO \"{}\"._sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, 'from the future', true, '\\x00', 0)",
            base.schema()
        )))
        .bind(LATEST_VERSION + 1)
        .execute(&mut conn)
        .await
        .unwrap();
        for migrate in [true, false] {
            let e = PostgresBackend::options(&url).schema(base.schema()).migrate(migrate).connect().await.err();
            let e = e.expect("connected to a schema newer than the code");
            assert_eq!(e.kind(), BackendErrorKind::InvalidRequest, "{e}");
            assert!(e.to_string().contains("newer than this qtasks knows"), "{e}");
        }
        assert!(base.migrate().await.is_err(), "migrated a newer schema");
        let _ = conn.close().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Limits of the backend: size, retention
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn an_oversize_task_is_refused_at_enqueue() {
    in_schema("oversize", |base| async move {
        let backend = base.for_app("size").max_message_size(1024);
        let big = TaskRecord::new(Uuid::new_v4(), NewTask::new("add", json!(["x".repeat(2000)])));
        let e = backend.enqueue(&big).await.unwrap_err();
        assert_eq!(e.kind(), BackendErrorKind::InvalidRequest, "{e}");
        assert!(e.to_string().contains("max_message_size"), "{e}");
        let e = backend.enqueue_many(&[(big.clone(), None)]).await.unwrap_err();
        assert_eq!(e.kind(), BackendErrorKind::InvalidRequest, "{e}");
        assert_eq!(backend.get(big.uuid).await.unwrap(), None);
        let small = TaskRecord::new(Uuid::new_v4(), NewTask::new("add", json!([1, 2])));
        assert_eq!(backend.enqueue(&small).await.unwrap(), Enqueued::New);
    })
    .await;
}

/// Ends with large results finishing together: the finisher splits their
/// batch into statements of at most a few MiB, and every end is stored
/// with its result and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn large_ends_finishing_together_are_all_stored() {
    in_schema("large_ends", |base| async move {
        // 12 results of 1 MB: three statements' worth, finished at once.
        let backend = base.for_app("large");
        support::check_large_ends(&backend, 12, 1_000_000).await;
    })
    .await;
}

/// With one slot, the next task starts while a finished run is still busy
/// after its store: the slot was traded for a place among the finishing
/// runs (see `support/handover.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn the_next_task_starts_while_a_run_finishes() {
    in_schema("handover", |base| async move {
        let backend = base.for_app("handover");
        if let Err(e) = support::handover::the_next_task_starts_while_a_run_finishes(backend).await {
            panic!("postgres: {e}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn finished_records_expire_after_the_retention_and_are_deleted() {
    in_schema("retention", |base| async move {
        let schema = base.schema().to_owned();
        let backend = base.for_app("retention").retention(Some(Duration::from_secs(1)));
        let app = QueueTasks::builder("retention").task::<Square>().backend(backend.clone()).build().unwrap();
        let worker = app.worker().start().await.unwrap();
        // Before the enqueue: the record cannot expire sooner than 1 s after this.
        let enqueued = Instant::now();
        let handle = app.enqueue(Square::call(7)).await.unwrap();
        assert_eq!(handle.result(HANG).await.unwrap(), 49);
        let uuid = handle.uuid();
        until!("the finished record to expire", backend.get(uuid).await.unwrap().is_none());
        assert!(enqueued.elapsed() + Duration::from_millis(100) >= Duration::from_secs(1), "expired early");
        // Deleted by the worker's backend in the background (every 10 s).
        let mut conn = admin().await;
        until!("the expired row to be deleted", rows_of(&mut conn, &schema, uuid).await == 0);
        worker.shutdown().await;
        let _ = conn.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn the_tasks_table_of_the_schema_carries_its_autovacuum_settings() {
    in_schema("autovacuum", |base| async move {
        // Schema version 6: set on the `tasks` table of the backend's own
        // schema (the test's, not `qtasks`), read back from the catalog.
        let mut conn = admin().await;
        let options = |table: &'static str| {
            sqlx::query_scalar::<_, Option<Vec<String>>>(
                "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'",
            )
            .bind(base.schema().to_owned())
            .bind(table)
        };
        let tasks = options("tasks").fetch_one(&mut conn).await.unwrap().unwrap_or_default();
        for expected in [
            "autovacuum_vacuum_scale_factor=0.01",
            "autovacuum_vacuum_threshold=1000",
            "autovacuum_vacuum_insert_scale_factor=0.05",
            "autovacuum_vacuum_insert_threshold=1000",
            "autovacuum_vacuum_cost_delay=0",
            "autovacuum_analyze_scale_factor=0.02",
        ] {
            assert!(tasks.iter().any(|o| o == expected), "{expected} missing from {tasks:?}");
        }
        // The small tables keep the server's defaults.
        let queues = options("queues").fetch_one(&mut conn).await.unwrap();
        assert_eq!(queues, None);
        let _ = conn.close().await;
    })
    .await;
}

/// With `qtasks_vacuum_every`, the retention task vacuums `tasks` itself
/// (for servers whose autovacuum is off, as this machine's is): after the
/// tasks ran and retention deleted their rows, the table holds no dead row
/// versions, and the statistics count the vacuums.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn the_retention_task_vacuums_the_tasks_table_when_asked() {
    in_schema("vacuum", |base| async move {
        let url = format!("{}?qtasks_schema={}&qtasks_vacuum_every=0.2", support::postgres::url(), base.schema());
        let backend = PostgresBackend::connect(&url).await.unwrap().retention(Some(Duration::from_secs(3)));
        let app = QueueTasks::builder("vacuum").task::<Add>().backend(backend).build().unwrap();
        let worker = app.worker().max_tasks_process(16).start().await.unwrap();
        let handles = app.add_tasks((0..200).map(|i| Add::call(i, 1))).await.unwrap();
        for (i, handle) in (0..200).zip(handles) {
            assert_eq!(handle.result(HANG).await.unwrap(), i + 1);
        }
        let mut conn = admin().await;
        let stats = format!(
            "SELECT n_live_tup, n_dead_tup, vacuum_count FROM pg_stat_user_tables \
             WHERE schemaname = '{}' AND relname = 'tasks'",
            base.schema()
        );
        let rows = format!("SELECT count(*) FROM \"{}\".tasks", base.schema());
        until!("retention deleted every row and a vacuum removed their versions", {
            let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(rows.clone())).fetch_one(&mut conn).await.unwrap();
            let (_, dead, vacuums): (i64, i64, i64) =
                sqlx::query_as(sqlx::AssertSqlSafe(stats.clone())).fetch_one(&mut conn).await.unwrap();
            left == 0 && dead == 0 && vacuums > 0
        });
        worker.shutdown().await;
        let _ = conn.close().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Floors: where a fetch starts (schema version 5)
// ---------------------------------------------------------------------------

/// Runs `sql` with `{s}` replaced by the quoted schema.
async fn exec(conn: &mut sqlx::PgConnection, schema: &str, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.replace("{s}", &format!("\"{schema}\"")))).execute(conn).await.unwrap();
}

/// The floor of queue `default` of app `floors`: its place in line
/// (priority, seq), if it has one.
async fn floor_of(conn: &mut sqlx::PgConnection, schema: &str) -> Option<(i64, i64)> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT floor_priority, floor_seq FROM \"{schema}\".queues WHERE app = 'floors' AND queue = 'default'"
    )))
    .fetch_optional(conn)
    .await
    .unwrap()?;
    Some((row.get::<Option<i64>, _>(0)?, row.get::<Option<i64>, _>(1)?))
}

/// The place in line of task `uuid`: (priority, seq).
async fn place_of(conn: &mut sqlx::PgConnection, schema: &str, uuid: Uuid) -> (i64, i64) {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT priority, seq FROM \"{schema}\".tasks WHERE uuid = $1")))
        .bind(uuid)
        .fetch_one(conn)
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn ids(messages: &[qtasks::TaskMessage]) -> Vec<Uuid> {
    messages.iter().map(|m| m.uuid).collect()
}

/// A fetch scans a queue from its floor, not from its start, yet no task
/// behind the floor is lost: a more urgent task or a released one lowers
/// it, and a task that got behind it anyway (here: written by hand) is
/// found by the fetch that finds nothing from the floor, and by the next
/// full fetch while the queue is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn fetches_start_at_the_floor_and_still_find_every_task_behind_it() {
    in_schema("floors", |base| async move {
        let schema = base.schema().to_owned();
        let backend = base.for_app("floors");
        let app = QueueTasks::builder("floors").task::<Square>().backend(backend.clone()).build().unwrap();
        let mut conn = admin().await;
        let mut queued = Vec::new();
        for n in 0..12 {
            queued.push(app.enqueue(Square::call(n)).await.unwrap().uuid());
        }
        // The backend's first fetch is a full one; it proposes the last
        // task it took as the next floor.
        assert_eq!(ids(&fetch_within(&backend, 4, HANG).await), queued[..4]);
        assert_eq!(floor_of(&mut conn, &schema).await, None);
        // A proposal becomes the floor once it is a second old: aged here.
        exec(&mut conn, &schema, "UPDATE {s}.queues SET next_at = next_at - interval '2 seconds'").await;
        assert_eq!(ids(&fetch_within(&backend, 2, HANG).await), queued[4..6]);
        assert_eq!(floor_of(&mut conn, &schema).await, Some(place_of(&mut conn, &schema, queued[3]).await));

        // A more urgent task lowers the floor, and goes first.
        let urgent = app.enqueue(Square::call(100)).priority(-1).await.unwrap().uuid();
        assert_eq!(floor_of(&mut conn, &schema).await, Some(place_of(&mut conn, &schema, urgent).await));
        assert_eq!(ids(&fetch_within(&backend, 1, HANG).await), [urgent]);

        // A released task goes back to its place, and the floor with it.
        assert!(backend.release(urgent).await.unwrap());
        assert_eq!(floor_of(&mut conn, &schema).await, Some(place_of(&mut conn, &schema, urgent).await));
        assert_eq!(ids(&fetch_within(&backend, 1, HANG).await), [urgent]);

        // Tasks behind the floor that nothing lowered it for (as a
        // transaction that commits long after drawing its place leaves
        // them): a fetch that finds tasks from the floor takes those...
        let ninth = place_of(&mut conn, &schema, queued[9]).await;
        exec(
            &mut conn,
            &schema,
            &format!(
                "UPDATE {{s}}.queues SET floor_priority = {}, floor_seq = {}, next_priority = NULL, \
                 next_seq = NULL, next_at = NULL",
                ninth.0, ninth.1
            ),
        )
        .await;
        assert_eq!(ids(&fetch_within(&backend, 1, HANG).await), [queued[9]]);
        // ...and one that finds nothing from the floor looks from the start.
        exec(&mut conn, &schema, "UPDATE {s}.queues SET floor_seq = floor_seq + 1000000, next_at = NULL").await;
        let rest = ids(&fetch_within(&backend, 10, HANG).await);
        assert_eq!(rest, [queued[6], queued[7], queued[8], queued[10], queued[11]]);
        let _ = conn.close().await;
    })
    .await;
}

/// A transaction that enqueues a task and commits long after, while other
/// tasks flow through its queue: the floor passes the task's place before
/// it is visible, yet it runs (found by a full fetch), and so does every
/// other task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn a_task_committed_after_the_floor_passed_its_place_still_runs() {
    in_schema("late_commit", |base| async move {
        let schema = base.schema().to_owned();
        let backend = base.for_app("floors");
        let app = QueueTasks::builder("floors").task::<Square>().backend(backend.clone()).build().unwrap();
        let worker = app.worker().max_tasks_process(8).start().await.unwrap();
        let mut conn = admin().await;
        // The queue exists before the transaction (the first enqueue into
        // a queue adds its row, which others would wait on until commit).
        assert_eq!(app.enqueue(Square::call(2)).await.unwrap().result(HANG).await.unwrap(), 4);

        let mut tx = backend.pool().begin().await.unwrap();
        let late = app.enqueue_in(&mut tx, Square::call(-7)).await.unwrap();
        let (late_seq,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT seq FROM \"{schema}\".tasks WHERE uuid = $1")))
                .bind(late.uuid())
                .fetch_one(&mut *tx)
                .await
                .unwrap();

        // Other tasks flow until the late one has run.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let producer = tokio::spawn({
            let (app, stop) = (app.clone(), stop.clone());
            async move {
                let mut handles = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..20 {
                        handles.push((n, app.enqueue(Square::call(n)).await.unwrap()));
                        n += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                handles
            }
        });
        until!(
            "the floor to pass the uncommitted task",
            floor_of(&mut conn, &schema).await.is_some_and(|(_, seq)| seq > late_seq)
        );
        tx.commit().await.unwrap();
        assert_eq!(late.result(HANG).await.unwrap(), 49);
        stop.store(true, Ordering::Relaxed);
        let handles = producer.await.unwrap();
        assert!(!handles.is_empty());
        for (n, handle) in handles {
            assert_eq!(handle.result(HANG).await.unwrap(), n * n);
        }
        worker.shutdown().await;
        let _ = conn.close().await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn rows_that_cannot_be_decoded_end_error_and_the_worker_keeps_going() {
    in_schema("garbage", |base| async move {
        let schema = base.schema().to_owned();
        let backend = base.for_app("garbage");
        let app = QueueTasks::builder("garbage").task::<Square>().backend(backend.clone()).build().unwrap();
        let good_before = app.enqueue(Square::call(3)).await.unwrap();
        // Rows written by another program: arguments that are not JSON,
        // extra fields that are not an object.
        let (bad_args, bad_extra) = (Uuid::new_v4(), Uuid::new_v4());
        let mut conn = admin().await;
        for (uuid, args, extra) in [(bad_args, "{not json", None), (bad_extra, "[4]", Some("[1, 2]"))] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO \"{schema}\".tasks (app, uuid, task_name, queue, priority, args, status, created_at, \
                 updated_at, attempt, extra, seq, run_at) VALUES ('garbage', $1, 'square', 'default', 0, $2, 'new', \
                 {schema}.epoch_now(), {schema}.epoch_now(), 1, $3, nextval('\"{schema}\".task_seq'), now())"
            )))
            .bind(uuid)
            .bind(args)
            .bind(extra)
            .execute(&mut conn)
            .await
            .unwrap();
        }
        // Readable before they run, the bad arguments as a string.
        let queued = backend.get(bad_args).await.unwrap().expect("the bad row");
        assert_eq!((queued.status, queued.args), (TaskStatus::New, json!("{not json")));

        let worker = app.worker().start().await.unwrap();
        for (uuid, what) in [(bad_args, "arguments"), (bad_extra, "extra fields")] {
            let done = app.wait(uuid, HANG).await.unwrap();
            assert_eq!(done.status, TaskStatus::Error, "{done:?}");
            let error = done.error.unwrap_or_default();
            assert!(error.starts_with("undecodable record: ") && error.contains(what), "{error}");
        }
        assert_eq!(good_before.result(HANG).await.unwrap(), 9);
        let after = app.enqueue(Square::call(5)).await.unwrap();
        assert_eq!(after.result(HANG).await.unwrap(), 25, "the worker stopped after the bad rows");
        worker.shutdown().await;
        let counts = backend.stats().await.unwrap().tasks["square"];
        assert_eq!((counts.success, counts.error), (2, 2), "{counts:?}");
        let _ = conn.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn terminated_connections_lose_nothing_and_waiting_clients_get_their_results() {
    const TASKS: i64 = 400;
    const KILLS: i64 = 6;
    in_schema("terminate", |base| async move {
        let backend = base.for_app("terminate").lease(Duration::from_secs(5));
        let app = QueueTasks::builder("terminate").task::<SlowSquare>().backend(backend.clone()).build().unwrap();
        let worker = app.worker().max_tasks_process(8).start().await.unwrap();
        let client = app.client();
        let errors = Arc::new(AtomicUsize::new(0));

        // Enqueued under known ids, retried while the connection is lost (a
        // retry after a lost answer finds the task and adds none); a client
        // waits for each from the moment it is enqueued.
        let enqueuer = {
            let (client, errors) = (client.clone(), Arc::clone(&errors));
            tokio::spawn(async move {
                let mut waiters = Vec::new();
                for n in 0..TASKS {
                    let uuid = Uuid::new_v4();
                    support::enqueue(&client, "slow_square", json!([n]), uuid, &errors).await;
                    let (client, errors) = (client.clone(), Arc::clone(&errors));
                    waiters.push(tokio::spawn(async move {
                        let started = Instant::now();
                        loop {
                            match client.wait(uuid, HANG.saturating_sub(started.elapsed())).await {
                                Ok(record) => return (n, record),
                                // A read that failed over all its retries: ask again.
                                Err(qtasks::WaitError::Backend(_)) if started.elapsed() < HANG => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                                Err(e) => panic!("waiting for slow_square({n}): {e}"),
                            }
                        }
                    }));
                }
                waiters
            })
        };
        let mut conn = admin().await;
        let mut killed = 0;
        for k in 1..=KILLS {
            let target = (TASKS * k / (KILLS + 1)) as u64;
            until!(
                "tasks to flow",
                backend.stats().await.is_ok_and(|s| s.tasks.get("slow_square").is_some_and(|c| c.success >= target))
            );
            killed += terminate_connections(&mut conn, &base).await;
        }
        assert!(killed >= KILLS, "terminated only {killed} connections");
        for waiter in enqueuer.await.unwrap() {
            let (n, record) = waiter.await.unwrap();
            assert_eq!((record.status, record.result), (TaskStatus::Success, Some(json!(n * n))), "slow_square({n})");
        }
        let stats = backend.stats().await.unwrap();
        assert_eq!(stats.tasks["slow_square"].success, TASKS as u64, "{stats:?}");
        assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
        eprintln!(
            "{killed} connections terminated; {} errors retried by the clients; {} runs repeated",
            errors.load(Ordering::Relaxed),
            stats.tasks["slow_square"].duplicates
        );
        worker.shutdown().await;
        let _ = conn.close().await;
    })
    .await;
}

/// The worker process of [`a_sigkilled_workers_tasks_run_elsewhere_after_its_lease`]:
/// started by it with [`CHILD_SCHEMA`] set, it runs `held` tasks that never
/// end, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the worker process of a_sigkilled_workers_tasks_run_elsewhere_after_its_lease, started by it"]
async fn sigkilled_worker_process() {
    let Ok(schema) = std::env::var(CHILD_SCHEMA) else { return };
    let backend = PostgresBackend::options(&support::postgres::url())
        .schema(schema)
        .migrate(false)
        .connect()
        .await
        .unwrap()
        .lease(Duration::from_secs(2));
    let app = QueueTasks::builder("sigkill").task::<Held>().backend(backend).build().unwrap();
    let _worker = app.worker().max_tasks_process(16).start().await.unwrap();
    println!("READY");
    std::future::pending::<()>().await;
}

/// Kills the child process when dropped (a test that panics leaves none).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn a_sigkilled_workers_tasks_run_elsewhere_after_its_lease() {
    const TASKS: i64 = 8;
    in_schema("sigkill", |base| async move {
        let backend = base.for_app("sigkill");
        let app = QueueTasks::builder("sigkill").task::<Held>().backend(backend.clone()).build().unwrap();
        let mut uuids = Vec::new();
        for n in 0..TASKS {
            uuids.push(app.enqueue(Held::call(n)).await.unwrap().uuid());
        }
        // Another process takes every task; its runs never end.
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sigkilled_worker_process", "--ignored", "--nocapture"])
            .env(CHILD_SCHEMA, base.schema())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut child = Child(child);
        until!("the worker process to take every task", backend.stats().await.unwrap().in_flight == TASKS as u64);
        for &uuid in &uuids {
            assert_eq!(backend.get(uuid).await.unwrap().unwrap().status, TaskStatus::Process);
        }
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let killed = Instant::now();

        // A worker here gets them once their 2 s lease has expired.
        let worker = app.worker().start().await.unwrap();
        for (n, &uuid) in uuids.iter().enumerate() {
            let done = app.wait(uuid, HANG).await.unwrap();
            let n = n as i64;
            assert_eq!((done.status, done.result), (TaskStatus::Success, Some(json!(n * n))), "held({n})");
        }
        eprintln!("the SIGKILLed worker's tasks done {:.2?} after the kill (lease 2 s)", killed.elapsed());
        worker.shutdown().await;
        let stats = backend.stats().await.unwrap();
        let counts = stats.tasks["held"];
        assert_eq!((counts.success, counts.duplicates), (TASKS as u64, TASKS as u64), "{stats:?}");
        assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
    })
    .await;
}

/// Two processes (two connected backends, two holders): the first's lease
/// expires, the second takes the task (a second run, the fencing token),
/// and the first's late writes change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn a_run_whose_lease_was_taken_back_is_fenced() {
    in_schema("fencing", |base| async move {
        let schema = base.schema().to_owned();
        let stale = base.for_app("fencing").lease(Duration::from_millis(300));
        let other = PostgresBackend::options(&support::postgres::url()).schema(&schema).connect().await.unwrap();
        let fresh_one = other.for_app("fencing");
        let task = TaskRecord::new(Uuid::new_v4(), NewTask::new("square", json!([6])));
        stale.enqueue(&task).await.unwrap();
        let first = fetch_within(&stale, 1, HANG).await;
        assert_eq!(first.len(), 1);
        // Its lease expires; another backend takes the task: a second run.
        let second = fetch_within(&fresh_one, 1, HANG).await;
        assert_eq!(second.iter().map(|m| m.uuid).collect::<Vec<_>>(), [task.uuid]);
        let mut conn = admin().await;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT run FROM \"{schema}\".tasks WHERE uuid = $1")))
            .bind(task.uuid)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(row.get::<i64, _>("run"), 2);
        // The stale run can neither renew, nor release, nor end the task.
        assert!(!stale.extend_lease(task.uuid).await.unwrap(), "a stale run renewed its lease");
        let mut late = TaskRecord::from_message(&first[0], TaskStatus::Error);
        late.error = Some("stale".into());
        stale.finish(&late).await.unwrap();
        assert_eq!(stale.get(task.uuid).await.unwrap().unwrap().status, TaskStatus::Process);
        // The current run ends it.
        let mut done = TaskRecord::from_message(&second[0], TaskStatus::Success);
        done.result = Some(json!(36));
        fresh_one.finish(&done).await.unwrap();
        let stored = fresh_one.get(task.uuid).await.unwrap().unwrap();
        assert_eq!((stored.status, stored.result), (TaskStatus::Success, Some(json!(36))));
        assert_eq!(fresh_one.stats().await.unwrap().tasks["square"].duplicates, 1);
        let _ = conn.close().await;
    })
    .await;
}

/// A PostgreSQL server of the test's own, in a temporary directory on a
/// free port (`initdb` and `pg_ctl` run as the `postgres` user when the
/// test runs as root); stopped and removed when dropped.
struct OwnServer {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    port: u16,
}

impl OwnServer {
    /// Starts one, or says why it cannot.
    fn start() -> Result<Self, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .ok_or("no initdb under /usr/lib/postgresql")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?.local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("qtasks-pg-restart-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let server = Self { dir, bin, port };
        if is_root() {
            server.run(std::process::Command::new("chown").arg("postgres").arg(&server.dir))?;
        }
        let initdb = server.bin.join("initdb");
        server.pg(&initdb, &["-D", &server.path(), "--auth=trust", "-U", "postgres", "--no-sync"])?;
        server.pg_ctl("start")?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn path(&self) -> String {
        self.dir.display().to_string()
    }

    /// `pg_ctl {action}` on this server, waiting until it is done.
    fn pg_ctl(&self, action: &str) -> Result<(), String> {
        let options = format!("-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off", self.port, self.path());
        let (dir, log) = (self.path(), self.dir.join("log").display().to_string());
        let mut args = vec![action, "-D", dir.as_str(), "-l", log.as_str(), "-o", options.as_str(), "-w"];
        if action != "start" {
            args.extend(["-m", "fast"]);
        }
        self.pg(&self.bin.join("pg_ctl"), &args)
    }

    /// Runs a server program, as `postgres` when we are root.
    fn pg(&self, program: &std::path::Path, args: &[&str]) -> Result<(), String> {
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        };
        self.run(command.args(args))
    }

    fn run(&self, command: &mut std::process::Command) -> Result<(), String> {
        let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{command:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(postgres_unreachable, ignore = "Postgres is not reachable; see the build warning")]
async fn a_restarted_server_loses_nothing_and_workers_resume() {
    const TASKS: i64 = 200;
    let server = match OwnServer::start() {
        Ok(server) => server,
        Err(why) if std::env::var_os("CI").is_none() => {
            support::postgres::unreachable("a_restarted_server_loses_nothing_and_workers_resume", &why);
            return;
        }
        Err(why) => panic!("starting a PostgreSQL server of the test's own: {why}"),
    };
    let url = server.url();
    let backend = PostgresBackend::connect(&url).await.unwrap().for_app("restart").lease(Duration::from_secs(5));
    let app = QueueTasks::builder("restart").task::<SlowSquare>().backend(backend.clone()).build().unwrap();
    let worker = app.worker().max_tasks_process(8).start().await.unwrap();
    let client = app.client();
    let errors = Arc::new(AtomicUsize::new(0));
    let enqueuer = {
        let (client, errors) = (client.clone(), Arc::clone(&errors));
        tokio::spawn(async move {
            let mut waiters = Vec::new();
            for n in 0..TASKS {
                let uuid = Uuid::new_v4();
                support::enqueue(&client, "slow_square", json!([n]), uuid, &errors).await;
                let client = client.clone();
                waiters.push(tokio::spawn(async move {
                    let started = Instant::now();
                    loop {
                        match client.wait(uuid, HANG.saturating_sub(started.elapsed())).await {
                            Ok(record) => return (n, record),
                            Err(qtasks::WaitError::Backend(_)) if started.elapsed() < HANG => {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(e) => panic!("waiting for slow_square({n}): {e}"),
                        }
                    }
                }));
            }
            waiters
        })
    };
    // Restarted twice while tasks flow.
    for k in 1..=2u64 {
        let target = TASKS as u64 * k / 3;
        until!(
            "tasks to flow",
            backend.stats().await.is_ok_and(|s| s.tasks.get("slow_square").is_some_and(|c| c.success >= target))
        );
        tokio::task::block_in_place(|| server.pg_ctl("restart")).unwrap();
    }
    for waiter in enqueuer.await.unwrap() {
        let (n, record) = waiter.await.unwrap();
        assert_eq!((record.status, record.result), (TaskStatus::Success, Some(json!(n * n))), "slow_square({n})");
    }
    let stats = backend.stats().await.unwrap();
    assert_eq!(stats.tasks["slow_square"].success, TASKS as u64, "{stats:?}");
    assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
    eprintln!(
        "2 restarts; {} enqueue errors retried; {} runs repeated",
        errors.load(Ordering::Relaxed),
        stats.tasks["slow_square"].duplicates
    );
    worker.shutdown().await;
}
