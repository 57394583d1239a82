//! Every statement the backend sends, with the schema's name in it: made
//! once per connect, then cloned (a reference count) for each use. sqlx
//! prepares each statement once per connection.

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

/// The columns a record is read from, in the order `codec::record` reads them.
pub(super) const RECORD_COLUMNS: &str = "uuid, task_name, queue, priority, args, status, created_at, updated_at, \
     result, error, attempt, extra, limit_key, unique_key, unique_window";

pub(super) struct Sql {
    pub(super) enqueue: SqlStr,
    pub(super) enqueue_many: SqlStr,
    pub(super) fetch: SqlStr,
    pub(super) finish_many: SqlStr,
    pub(super) update: SqlStr,
    pub(super) extend: SqlStr,
    pub(super) release: SqlStr,
    pub(super) cancel: SqlStr,
    pub(super) cancel_reason: SqlStr,
    pub(super) get: SqlStr,
    pub(super) get_all: SqlStr,
    pub(super) stats: SqlStr,
    pub(super) queues: SqlStr,
    pub(super) set_paused: SqlStr,
    pub(super) claim: SqlStr,
    pub(super) config_set: SqlStr,
    pub(super) config_get: SqlStr,
    pub(super) config_get_all: SqlStr,
    pub(super) config_delete: SqlStr,
    pub(super) flush: SqlStr,
    pub(super) purge: SqlStr,
    pub(super) minutes: SqlStr,
    pub(super) purge_minutes: SqlStr,
    /// Not prepared: `VACUUM` runs outside any transaction block.
    pub(super) vacuum: SqlStr,
}

fn s(sql: String) -> SqlStr {
    AssertSqlSafe(sql).into_sql_str()
}

impl Sql {
    /// The statements for `schema` (a name checked at connect: it holds no
    /// quote). `synchronous_finish: false` commits finishes asynchronously
    /// (see [`PostgresOptions::synchronous_finish`](super::PostgresOptions::synchronous_finish)).
    pub(super) fn new(schema: &str, synchronous_finish: bool) -> Self {
        // Read at commit, so setting it anywhere in the statement counts.
        let finish_commit = if synchronous_finish { "" } else { ", set_config('synchronous_commit', 'off', true)" };
        let q = format!("\"{schema}\"");
        let live = "(expires_at IS NULL OR expires_at > clock_timestamp())";
        Self {
            enqueue: s(format!("SELECT {q}.enqueue_task($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")),
            enqueue_many: s(format!(
                "SELECT {q}.enqueue_tasks($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            )),
            fetch: s(format!("SELECT * FROM {q}.fetch_tasks($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9)")),
            finish_many: s(format!(
                "SELECT {q}.finish_tasks($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)\
                 {finish_commit}"
            )),
            update: s(format!(
                "UPDATE {q}.tasks SET args = $3, updated_at = greatest(updated_at, $4), result = $5, error = $6, \
                 attempt = $7, extra = $8, lease_until = CASE WHEN status = 'process' \
                 THEN clock_timestamp() + $9 * interval '1 millisecond' ELSE lease_until END \
                 WHERE app = $1 AND uuid = $2 AND status IN ('new', 'process') AND ($10::bigint IS NULL OR run = $10)"
            )),
            extend: s(format!(
                "UPDATE {q}.tasks SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' \
                 WHERE app = $1 AND uuid = $2 AND status = 'process' AND run = $4 AND holder = $5 \
                 RETURNING cancel_reason"
            )),
            release: s(format!("SELECT {q}.release_task($1, $2, $3, $4, $5, $6)")),
            cancel: s(format!("SELECT {q}.cancel_task($1, $2, $3, $4)")),
            // Only for a reason too long for its notification: by id alone.
            cancel_reason: s(format!(
                "SELECT cancel_reason FROM {q}.tasks WHERE uuid = $1 AND cancel_reason IS NOT NULL LIMIT 1"
            )),
            get: s(format!("SELECT {RECORD_COLUMNS} FROM {q}.tasks WHERE app = $1 AND uuid = $2 AND {live}")),
            get_all: s(format!("SELECT {RECORD_COLUMNS} FROM {q}.tasks WHERE app = $1 AND {live} ORDER BY created_at")),
            stats: s(format!("SELECT * FROM {q}.app_stats($1)")),
            queues: s(format!("SELECT * FROM {q}.queue_infos($1, $2)")),
            set_paused: s(format!(
                "WITH flag AS (INSERT INTO {q}.queues AS pq (app, queue, paused) VALUES ($1, $2, $3) \
                 ON CONFLICT (app, queue) DO UPDATE SET paused = excluded.paused) \
                 SELECT {q}.notify_queued($1) WHERE NOT $3"
            )),
            claim: s(format!(
                "INSERT INTO {q}.claims AS c (app, key, until) \
                 VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond') \
                 ON CONFLICT (app, key) DO UPDATE SET until = excluded.until WHERE c.until <= clock_timestamp() \
                 RETURNING 1"
            )),
            config_set: s(format!(
                "INSERT INTO {q}.settings AS s (app, name, key, value, expires_at) \
                 VALUES ($1, $2, $3, $4, CASE WHEN $5::bigint IS NULL THEN NULL \
                 ELSE clock_timestamp() + $5 * interval '1 millisecond' END) \
                 ON CONFLICT (app, name, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
            )),
            config_get: s(format!(
                "SELECT value FROM {q}.settings WHERE app = $1 AND name = $2 AND key = $3 AND {live}"
            )),
            config_get_all: s(format!(
                "SELECT key, value FROM {q}.settings WHERE app = $1 AND name = $2 AND {live} ORDER BY key"
            )),
            config_delete: s(format!("DELETE FROM {q}.settings WHERE app = $1 AND name = $2 AND key = $3")),
            // `flush_app` (schema version 1) does not know the `minutes`
            // table (version 4): its rows go in the same statement, after
            // `counts` (the uncorrelated `EXISTS` runs `flush_app` first),
            // the order in which finishing transactions lock them.
            flush: s(format!(
                "WITH f AS (SELECT {q}.flush_app($1)) \
                 DELETE FROM {q}.minutes WHERE app = $1 AND EXISTS (SELECT 1 FROM f)"
            )),
            purge: s(format!("SELECT {q}.purge_expired($1)")),
            vacuum: s(format!("VACUUM (SKIP_LOCKED) {q}.tasks")),
            minutes: s(format!(
                "SELECT minute * 60, status, sum(n)::bigint FROM {q}.minutes WHERE app = $1 AND minute >= $2 \
                 GROUP BY minute, status ORDER BY minute"
            )),
            // Kept two hours: an hour is read, the rest is slack for clocks.
            purge_minutes: s(format!(
                "DELETE FROM {q}.minutes WHERE minute < floor(extract(epoch FROM clock_timestamp()) / 60)::bigint - 120"
            )),
        }
    }
}
