//! Chains and groups on the in-memory backend, no server needed: QTasks's
//! E13 (a chain of `add` calls, each receiving the previous result) and E12
//! (a group of four `add` calls gathered in order).
//!
//! Run with `cargo run --example canvas`.

use qtasks::{QueueTasks, call, json, task};
use std::time::Duration;

/// Adds two numbers.
#[task]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = QueueTasks::builder("canvas").task::<Add>().build()?;
    let worker = app.worker().start().await?;
    let timeout = Duration::from_secs(10);

    // E13: chain(add(2, 2), add(4), add(8)); each result is appended as the
    // last positional argument of the next step.
    let chain = app.chain([Add::call(2, 2).untyped(), call("add", json!([4])), call("add", json!([8]))]);
    for (i, step) in chain.run(timeout).await?.iter().enumerate() {
        println!(
            "chain step {i}: {}{} = {} ({})",
            step.task_name,
            step.args,
            step.result.clone().unwrap_or_default(),
            step.status
        );
    }

    // E12: a group of four `add` calls, enqueued at once, results in the order given.
    let group = app.group([
        Add::call(2, 3).untyped(),
        Add::call(3, 4).untyped(),
        Add::call(4, 5).untyped(),
        Add::call(6, 7).untyped(),
    ]);
    let sums: Vec<i64> = group.results(timeout).await?;
    println!("group results: {sums:?}");

    worker.shutdown().await;
    Ok(())
}
