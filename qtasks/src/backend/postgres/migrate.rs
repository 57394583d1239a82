//! The schema, as versioned migrations embedded in the crate, applied with
//! sqlx's migrator.
//!
//! Each migration is written without the schema's name: it runs on a
//! connection of its own whose `search_path` is the schema, so one
//! migration (and one checksum) serves every schema. The applied versions
//! are in the schema's `_sqlx_migrations` table.

use super::{BackendErrorKind, KIND, db_error, error};
use crate::backend::BackendError;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{AssertSqlSafe, Connection, Executor, SqlSafeStr};

/// The migrations, oldest first: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "tasks", include_str!("migrations/0001_tasks.sql")),
    (2, "batches", include_str!("migrations/0002_batches.sql")),
    (3, "listing", include_str!("migrations/0003_listing.sql")),
    (4, "minutes", include_str!("migrations/0004_minutes.sql")),
    (5, "floors", include_str!("migrations/0005_floors.sql")),
    (6, "autovacuum", include_str!("migrations/0006_autovacuum.sql")),
];

/// The schema version this build of qtasks creates and expects.
pub const LATEST_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The migrations table of `schema`, quoted.
fn table(schema: &str) -> String {
    format!("\"{schema}\"._sqlx_migrations")
}

/// The newest version applied to `schema` (0: none, or no such schema).
async fn applied(conn: &mut PgConnection, schema: &str) -> Result<i64, sqlx::Error> {
    // `to_regclass` takes the name as text: quoted for it, and the schema
    // name holds no quote (checked at connect).
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table(schema)).fetch_one(&mut *conn).await?;
    if !exists {
        return Ok(0);
    }
    let sql = format!("SELECT coalesce(max(version), 0)::bigint FROM {} WHERE success", table(schema));
    sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(&mut *conn).await
}

/// The version `schema` is at.
pub(super) async fn version(pool: &PgPool, schema: &str) -> Result<i64, BackendError> {
    let mut conn = pool.acquire().await.map_err(db_error("reading the schema version"))?;
    let v = applied(&mut conn, schema).await.map_err(db_error("reading the schema version"))?;
    newer_check(schema, v)?;
    Ok(v)
}

/// An error if `schema` is at a version this build does not know.
fn newer_check(schema: &str, version: i64) -> Result<(), BackendError> {
    if version > LATEST_VERSION {
        return Err(error(
            BackendErrorKind::InvalidRequest,
            format!(
                "the schema `{schema}` is at migration version {version}, newer than this qtasks knows \
                 ({LATEST_VERSION}): it was migrated by a newer qtasks. Upgrade qtasks, or use another schema"
            ),
        ));
    }
    Ok(())
}

/// The version `schema` is at, read on a connection of its own (no pool).
pub(super) async fn version_at(options: &PgConnectOptions, schema: &str) -> Result<i64, BackendError> {
    let mut conn =
        PgConnection::connect_with(options).await.map_err(db_error("connecting to read the schema version"))?;
    let v = applied(&mut conn, schema).await.map_err(db_error("reading the schema version"));
    let _ = conn.close().await;
    let v = v?;
    newer_check(schema, v)?;
    Ok(v)
}

/// Applies the missing migrations to `schema` on a connection of its own,
/// under an advisory lock, and returns the versions before and after.
pub(super) async fn apply(options: &PgConnectOptions, schema: &str) -> Result<(i64, i64), BackendError> {
    let mut conn = PgConnection::connect_with(options).await.map_err(db_error("connecting to migrate"))?;
    let outcome = apply_on(&mut conn, schema).await;
    // The session (and its locks) ends with the connection.
    let _ = conn.close().await;
    outcome
}

async fn apply_on(conn: &mut PgConnection, schema: &str) -> Result<(i64, i64), BackendError> {
    // One migrating connection per schema at a time (sqlx's own lock is
    // per database and taken after the schema is created).
    let key = format!("qtasks migrate {schema}");
    sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
        .bind(&key)
        .execute(&mut *conn)
        .await
        .map_err(db_error("locking the schema to migrate it"))?;
    let before = applied(&mut *conn, schema).await.map_err(db_error("reading the schema version"))?;
    newer_check(schema, before)?;
    if before < LATEST_VERSION {
        conn.execute(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\""
        )))
        .await
        .map_err(db_error("creating the schema"))?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(*version, (*description).into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(table(schema));
        migrator.run_direct(None, &mut *conn, false).await.map_err(|e| migrate_error(schema, e))?;
        tracing::info!(backend = KIND, schema, from = before, to = LATEST_VERSION, "migrated the qtasks schema");
    }
    let after = applied(&mut *conn, schema).await.map_err(db_error("reading the schema version"))?;
    Ok((before, after))
}

fn migrate_error(schema: &str, e: MigrateError) -> BackendError {
    let kind = match &e {
        MigrateError::Execute(inner) => super::kind_of(inner),
        _ => BackendErrorKind::Server,
    };
    error(kind, format!("migrating the schema `{schema}`")).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rise_and_the_latest_is_known() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(LATEST_VERSION, MIGRATIONS.last().unwrap().0);
        assert!(newer_check("s", LATEST_VERSION).is_ok());
        let e = newer_check("s", LATEST_VERSION + 1).unwrap_err();
        assert_eq!(e.kind(), BackendErrorKind::InvalidRequest);
        assert!(e.to_string().contains("newer than this qtasks knows"), "{e}");
    }

    #[test]
    fn migrations_never_name_a_schema() {
        // One migration serves every schema: it runs under `search_path`.
        for (_, _, sql) in MIGRATIONS {
            assert!(!sql.contains("qtasks."), "a migration names the schema");
        }
    }
}
