//! Enqueueing inside the caller's Postgres transaction (feature `postgres`).

use super::{Signature, TaskHandle, call};
use crate::app::{Error, QueueTasks};
use crate::backend::{AsPostgres, Backend, BackendError, BackendErrorKind};
use crate::dispatch::PluginChain;
use crate::task::TaskSet;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

impl<T: TaskSet, C: PluginChain, B: Backend + AsPostgres> QueueTasks<T, C, B> {
    /// Enqueues a task by name inside the caller's transaction (or on a
    /// connection of theirs): [`add_task`](Self::add_task), written with
    /// the caller's own rows. Pass `&mut tx` for a
    /// `sqlx::Transaction<'_, sqlx::Postgres>` (use
    /// [`qtasks::backend::postgres::sqlx`](crate::backend::postgres::sqlx)
    /// to be sure of the version), begun on the backend's
    /// [`pool`](crate::PostgresBackend::pool) or any pool of the same
    /// database.
    ///
    /// No worker sees the task before the transaction commits; after a
    /// rollback nothing of it exists. The notification that wakes idle
    /// workers is sent at commit, so a worker that is already waiting takes
    /// it at once. No outbox, no lost or phantom task.
    ///
    /// The enqueue triggers fire as for `add_task`; `broker_add_after` and
    /// `qtasks_add_task_after_broker` fire once the row is written in the
    /// transaction, before it commits. The handle can wait once it has
    /// committed (before, the task is invisible to the waiter's
    /// connection, and a wait ends as for an unknown task).
    ///
    /// ```no_run
    /// # use qtasks::{PostgresBackend, QueueTasks, json, task};
    /// # #[task]
    /// # async fn send_welcome(user_id: i64) {}
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = PostgresBackend::connect("postgres://postgres@127.0.0.1/app").await?;
    /// let pool = backend.pool().clone();
    /// let app = QueueTasks::builder("shop").task::<SendWelcome>().backend(backend).build()?;
    ///
    /// let mut tx = pool.begin().await?;
    /// let (id,): (i64,) = sqlx::query_as("INSERT INTO users (name) VALUES ($1) RETURNING id")
    ///     .bind("ada")
    ///     .fetch_one(&mut *tx)
    ///     .await?;
    /// app.add_task_in(&mut tx, "send_welcome", json!([id])).await?;
    /// tx.commit().await?; // the user and the task, or neither
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A backend that is not Postgres (an [`AnyBackend`](crate::AnyBackend)
    /// connected to another URL) gives [`Error::Backend`] with
    /// [`BackendErrorKind::InvalidRequest`], and nothing is written.
    pub async fn add_task_in(
        &self,
        conn: &mut PgConnection,
        task_name: impl Into<crate::model::Name>,
        args: impl Serialize,
    ) -> Result<TaskHandle<Value>, Error> {
        self.enqueue_in(conn, call(task_name, args)).await
    }

    /// Enqueues a call inside the caller's transaction: typed
    /// (`Add::call(2, 3)`, whose handle gives an `i64`) or by name, with
    /// its options (`Add::call(2, 3).priority(1).delay(d)`…). The same as
    /// [`add_task_in`](Self::add_task_in) otherwise.
    pub async fn enqueue_in<O>(&self, conn: &mut PgConnection, call: Signature<O>) -> Result<TaskHandle<O>, Error> {
        let inner = &self.inner;
        let Some(postgres) = inner.backend.as_postgres() else {
            return Err(Error::Backend(BackendError::new(
                inner.backend.kind(),
                BackendErrorKind::InvalidRequest,
                "enqueueing in a transaction needs the Postgres backend",
            )));
        };
        let submit = call.into_submit()?;
        let (mut model, delay) = inner.prepare(submit).await?;
        let stored = postgres.enqueue_in(conn, &model, delay).await?;
        inner.stored(&mut model, stored).await;
        Ok(TaskHandle::new(self.client(), model.uuid))
    }
}
