//! Tasks in PostgreSQL, enqueued in the same transaction as the rows they
//! are about: an order and the task that ships it are written together,
//! or not at all.
//!
//! ```sh
//! export QTASKS_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/qtasks_test   # the default
//! cargo run --example postgres
//! ```
//!
//! It works in the schema `qtasks_example` (created by the backend's
//! migrations, with the example's `orders` table beside the queue's tables)
//! and leaves it in place, so a second run finds the orders of the first.
//! The distributed example runs on Postgres too, by changing only its URL:
//! `QTASKS_BROKER_URL=postgres://… cargo run --example distributed_worker -- run`.

use qtasks::backend::postgres::sqlx;
use qtasks::{PostgresBackend, QueueTasks, TaskStatus, task};
use std::time::Duration;

/// Ships an order (here: says so).
#[task]
async fn ship_order(order_id: i64, item: String) -> String {
    format!("order {order_id} ({item}) shipped")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("QTASKS_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/qtasks_test".to_owned());
    // Creates (or upgrades) the schema on connect.
    let backend = PostgresBackend::options(&url).schema("qtasks_example").pool_size(4).connect().await?;
    let pool = backend.pool().clone();
    sqlx::query("CREATE TABLE IF NOT EXISTS qtasks_example.orders (id bigserial PRIMARY KEY, item text NOT NULL)")
        .execute(&pool)
        .await?;
    let app = QueueTasks::builder("shop").task::<ShipOrder>().backend(backend).build()?;
    let worker = app.worker().max_tasks_process(4).start().await?;

    // The order and its task in one transaction: the worker sees the task
    // when the order is there, and is woken by the commit.
    let mut tx = pool.begin().await?;
    let (id,): (i64,) = sqlx::query_as("INSERT INTO qtasks_example.orders (item) VALUES ($1) RETURNING id")
        .bind("a teapot")
        .fetch_one(&mut *tx)
        .await?;
    let shipped = app.enqueue_in(&mut tx, ShipOrder::call(id, "a teapot".to_owned())).await?;
    tx.commit().await?;
    println!("{}", shipped.result(Duration::from_secs(10)).await?);

    // An order that fails validation: rolled back, and its task with it.
    let mut tx = pool.begin().await?;
    let (id,): (i64,) = sqlx::query_as("INSERT INTO qtasks_example.orders (item) VALUES ($1) RETURNING id")
        .bind("a chocolate teapot")
        .fetch_one(&mut *tx)
        .await?;
    let never = app.add_task_in(&mut tx, "ship_order", (id, "a chocolate teapot")).await?;
    tx.rollback().await?;
    assert!(app.get(never.uuid()).await?.is_none());
    println!("order {id} rolled back: no task {} exists", never.uuid());

    let stats = app.queue_stats().await?;
    let ship = stats.tasks.get("ship_order").copied().unwrap_or_default();
    println!("ship_order: {} shipped so far, {} queued, {} running", ship.success, stats.queued, stats.in_flight);
    let record = shipped.record(Duration::from_secs(1)).await?;
    assert_eq!(record.status, TaskStatus::Success);
    worker.shutdown().await;
    Ok(())
}
