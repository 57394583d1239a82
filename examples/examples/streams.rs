//! Stream tasks on the in-memory backend, no server needed: QTasks's E4 (an
//! async generator whose items go through a `generate_handler` of +2) and a
//! blocking iterator with an async `map` that changes the item type.
//!
//! Run with `cargo run --example streams`.

use qtasks::{QueueTasks, Stream, TaskContext, json, stream, task};
use std::time::Duration;

/// The per-item handler (QTasks's `generate_handler`).
fn add_two(x: u32) -> u32 {
    x + 2
}

/// E4: yields n+1 … n+5; the result is the list of mapped items.
#[task(map = add_two)]
async fn test_yield(ctx: TaskContext, n: u32) -> impl Stream<Item = u32> {
    println!("test_yield runs as {}", ctx.uuid());
    stream::iter(n + 1..=n + 5)
}

/// An async handler that turns each line length into a label.
async fn describe(len: usize) -> String {
    format!("{len} chars")
}

/// Runs on the blocking pool and may poll `TaskContext::current()` between items.
#[task(map = describe, map_item = String)]
fn line_lengths(text: String) -> impl Iterator<Item = usize> {
    text.lines().map(str::len).collect::<Vec<_>>().into_iter()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = QueueTasks::builder("streams").task::<TestYield>().task::<LineLengths>().build()?;
    let worker = app.worker().start().await?;
    let timeout = Duration::from_secs(10);

    // By name: the stored result is the JSON list.
    let done = app.add_task("test_yield", json!([5])).await?.record(timeout).await?;
    println!("test_yield(5) -> {}", done.result.unwrap_or_default());

    // Typed: `Output` is `Vec<u32>`.
    let items: Vec<u32> = app.enqueue(TestYield::call(5)).await?.result(timeout).await?;
    assert_eq!(items, [8, 9, 10, 11, 12]);
    println!("typed: {items:?}");

    let labels: Vec<String> =
        app.enqueue(LineLengths::call("stream\ntasks\n!".to_owned())).await?.result(timeout).await?;
    println!("line_lengths -> {labels:?}");

    worker.shutdown().await;
    Ok(())
}
