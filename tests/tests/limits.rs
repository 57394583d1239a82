//! The message size limit holds for what workers store too, not only at
//! enqueue: an error text that quotes a huge input is cut, and a result
//! larger than the limit ends the task `error` saying so.

use qtasks::{Config, QueueTasks, TaskStatus, task};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// Returns `n` bytes of text.
#[task]
async fn big(n: usize) -> String {
    "x".repeat(n)
}

#[task]
async fn wants_a_number(n: u64) -> u64 {
    n
}

fn app() -> QueueTasks<(Big, WantsANumber)> {
    QueueTasks::builder("limits")
        .task::<Big>()
        .task::<WantsANumber>()
        .config(Config::default().max_message_size(64 * 1024))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_limit_ends_error_saying_so() {
    let app = app();
    let worker = app.worker().start().await.unwrap();
    let small = app.enqueue(Big::call(1000)).await.unwrap().result(WAIT).await.unwrap();
    assert_eq!(small.len(), 1000);
    let record = app.enqueue(Big::call(100_000)).await.unwrap().record(WAIT).await.unwrap();
    worker.shutdown().await;
    assert_eq!(record.status, TaskStatus::Error);
    assert_eq!(record.result, None);
    let error = record.error.unwrap();
    assert!(error.contains("more than the limit of 65536 bytes"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_that_quotes_a_huge_input_is_cut() {
    let app = app();
    let worker = app.worker().start().await.unwrap();
    // A 1 MB string where a number is expected: the decoding error quotes it.
    let huge = "y".repeat(1024 * 1024);
    let record = app.add_task("wants_a_number", [huge]).await.unwrap().record(WAIT).await.unwrap();
    worker.shutdown().await;
    assert_eq!(record.status, TaskStatus::Error);
    let error = record.error.unwrap();
    assert!(error.starts_with("invalid arguments"), "{}", &error[..200]);
    assert!(error.len() <= 16 * 1024 + 64, "the stored error is {} bytes", error.len());
    assert!(error.ends_with("more bytes cut)"), "{}", &error[error.len() - 100..]);
}
