//! The task listing (`Backend::list_tasks`): one keyset page of the
//! `tasks` table, newest first, read along the `tasks_listing` index
//! (migration 2). The filters are parameters of one statement (a `NULL`
//! parameter is no filter), so it is prepared once per connection.

use super::{PostgresBackend, codec, db_error};
use crate::backend::{BackendError, TaskCursor, TaskPage, TaskQuery};
use crate::model::TaskRecord;
use sqlx::{AssertSqlSafe, SqlSafeStr};

impl PostgresBackend {
    pub(super) async fn list_page(&self, query: &TaskQuery) -> Result<TaskPage, BackendError> {
        let q = format!("\"{}\"", self.shared.schema);
        let sql = format!(
            "SELECT {columns} FROM {q}.tasks \
             WHERE app = $1 AND (expires_at IS NULL OR expires_at > clock_timestamp()) \
             AND ($2::text IS NULL OR status = $2) \
             AND ($3::text IS NULL OR task_name = $3) \
             AND ($4::text IS NULL OR queue = $4) \
             AND ($5::float8 IS NULL OR created_at >= $5) \
             AND ($6::float8 IS NULL OR created_at < $6) \
             AND ($7::float8 IS NULL OR (created_at, uuid) < ($7, $8::uuid)) \
             ORDER BY created_at DESC, uuid DESC LIMIT $9",
            columns = super::sql::RECORD_COLUMNS,
        );
        let size = query.page_size();
        let pool = &self.shared.pool;
        let rows = self
            .retrying(|| async {
                sqlx::query(AssertSqlSafe(sql.clone()).into_sql_str())
                    .bind(&*self.app)
                    .bind(query.status.map(|s| s.as_str()))
                    .bind(query.task_name.as_deref())
                    .bind(query.queue.as_deref())
                    .bind(query.since)
                    .bind(query.until)
                    .bind(query.after.map(|c| c.created_at))
                    .bind(query.after.map(|c| c.uuid))
                    // One more than the page: whether another page follows.
                    .bind(i64::try_from(size + 1).unwrap_or(i64::MAX))
                    .fetch_all(pool)
                    .await
                    .map_err(db_error("listing the tasks"))
            })
            .await?;
        let tasks = rows
            .iter()
            .map(|row| codec::record(row).map(|(task, _)| task).map_err(db_error("decoding a task")))
            .collect::<Result<Vec<TaskRecord>, _>>()?;
        let page = TaskPage::cut(tasks, size);
        debug_assert!(page.next.is_none_or(|n: TaskCursor| n.created_at.is_finite()));
        Ok(page)
    }
}
