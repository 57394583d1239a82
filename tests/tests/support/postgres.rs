//! The Postgres server of the tests: `QTASKS_POSTGRES_URL`, or the local
//! server's `qtasks_test` database (created if missing).
//!
//! Each test gets a schema of its own, `qtasks_test_<random>`, created by
//! the backend's migrations and dropped at the end ([`drop_schema`]), so
//! tests running at once never share rows or notification channels. Its
//! connections carry the `application_name` `qtasks-test-<schema>`, so a
//! test can find (and terminate) exactly its own.

use qtasks::PostgresBackend;
use qtasks::backend::BackendErrorKind;
use qtasks::backend::postgres::sqlx::{self, Connection, Executor, PgConnection};
use std::io::Write;
use std::time::Duration;
use uuid::Uuid;

/// The database of the tests.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/qtasks_test";

/// `QTASKS_POSTGRES_URL`, or [`DEFAULT_URL`].
pub fn url() -> String {
    std::env::var("QTASKS_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Reports a server that answered at build time but not now: panics under
/// CI, else prints a loud skip (the test then returns).
pub fn unreachable(what: &str, error: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}: Postgres not reachable (CI is set, so this fails): {error}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {what}: Postgres not reachable: {error} ***\n\
         *** it answered when the tests were built; this test is counted as passed ***\n"
    );
}

/// Creates the URL's database if it does not exist (through the `postgres`
/// database of the same server).
async fn ensure_database(url: &str) -> Result<(), sqlx::Error> {
    match PgConnection::connect(url).await {
        Ok(conn) => conn.close().await,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let (base, rest) = url.rsplit_once('/').expect("a database in the URL");
            let name = rest.split('?').next().unwrap_or_default();
            let mut admin = PgConnection::connect(&format!("{base}/postgres")).await?;
            let created = admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await;
            admin.close().await?;
            match created {
                // Another test created it meanwhile (42P04; 23505 when both
                // creations ran at once).
                Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => Ok(()),
                other => other.map(drop),
            }
        }
        Err(e) => Err(e),
    }
}

/// A backend on a fresh schema of its own, or `None` (skipped) when the
/// server has gone away. Drop the schema with [`drop_schema`] at the end.
pub async fn fresh(what: &str) -> Option<PostgresBackend> {
    let url = url();
    let schema = format!("qtasks_test_{}", &Uuid::new_v4().simple().to_string()[..28]);
    let connect = async {
        if let Err(e) = ensure_database(&url).await {
            // Only a server that cannot be reached is a skip.
            if matches!(e, sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut) {
                return Err(e.to_string());
            }
            panic!("{what}: preparing the test database: {e}");
        }
        match PostgresBackend::options(&url)
            .schema(&schema)
            .application_name(format!("qtasks-test-{schema}"))
            .connect()
            .await
        {
            Ok(backend) => Ok(backend),
            Err(e) if e.kind() == BackendErrorKind::Connection => Err(e.to_string()),
            Err(e) => panic!("{what}: connecting the backend: {e}"),
        }
    };
    let error = match tokio::time::timeout(Duration::from_secs(60), connect).await {
        Ok(Ok(backend)) => return Some(backend),
        Ok(Err(e)) => e,
        Err(_) => "connecting timed out".to_owned(),
    };
    unreachable(what, &error);
    None
}

/// Drops the schema of a backend from [`fresh`], with everything in it.
pub async fn drop_schema(backend: &PostgresBackend) {
    let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", backend.schema());
    if let Err(e) = backend.pool().execute(sqlx::AssertSqlSafe(sql)).await {
        eprintln!("could not drop schema {}: {e}", backend.schema());
    }
}

/// A connection of the test's own (not one of the backend's), to look at
/// and change rows directly, and to terminate the backend's connections.
pub async fn admin() -> PgConnection {
    PgConnection::connect(&url()).await.expect("connecting to Postgres")
}

/// Terminates every connection of `backend` (found by its
/// `application_name`); returns how many.
pub async fn terminate_connections(admin: &mut PgConnection, backend: &PostgresBackend) -> i64 {
    let name = format!("qtasks-test-{}", backend.schema());
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()) AS t",
    )
    .bind(name)
    .fetch_one(admin)
    .await
    .expect("terminating connections")
}
