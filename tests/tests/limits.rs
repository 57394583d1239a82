//! The message size limit holds for what workers store too, not only at
//! enqueue: an error text that quotes a huge input is cut, and a result
//! larger than the limit ends the task `error` saying so. On the memory
//! backend and on Redis (an app of its own per test, flushed afterwards;
//! ignored without a server at build time, failing under CI).

mod support;

use qtasks::{Backend, Config, MemoryBackend, NewTask, QueueTasks, TaskRecord, TaskStatus, Uuid, json, task};
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

/// An app on `backend` whose messages may hold 64 KiB.
fn app<B: Backend>(backend: B) -> QueueTasks<(Big, WantsANumber), (), B> {
    QueueTasks::builder(support::app_name("limits", &backend))
        .task::<Big>()
        .task::<WantsANumber>()
        .config(Config::default().max_message_size(64 * 1024))
        .backend(backend)
        .build()
        .unwrap()
}

async fn a_result_over_the_limit<B: Backend>(backend: B) {
    let app = app(backend);
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

/// A 512 KiB string where a number is expected, put in the queue through
/// the backend (as another producer would, past the app's own check): the
/// decoding error quotes it, and what the worker stores is cut.
async fn an_error_quoting_a_huge_input<B: Backend + Clone>(backend: B) {
    let app = app(backend.clone());
    let backend = backend.for_app(app.name());
    let worker = app.worker().start().await.unwrap();
    let huge = "y".repeat(512 * 1024);
    let task = TaskRecord::new(Uuid::new_v4(), NewTask::new("wants_a_number", json!([huge])));
    backend.enqueue(&task).await.unwrap();
    let record = app.wait(task.uuid, WAIT).await.unwrap();
    worker.shutdown().await;
    assert_eq!(record.status, TaskStatus::Error);
    let error = record.error.unwrap();
    assert!(error.starts_with("invalid arguments"), "{}", &error[..200]);
    assert!(error.len() <= 16 * 1024 + 64, "the stored error is {} bytes", error.len());
    assert!(error.ends_with("more bytes cut)"), "{}", &error[error.len() - 100..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_limit_ends_error_saying_so() {
    a_result_over_the_limit(MemoryBackend::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_that_quotes_a_huge_input_is_cut() {
    an_error_quoting_a_huge_input(MemoryBackend::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn redis_a_result_over_the_limit_ends_error_saying_so() {
    let app = format!("qtasks-limits-result-{}", Uuid::new_v4());
    let Some(backend) = support::connect_redis("redis_a_result_over_the_limit", &app).await else { return };
    a_result_over_the_limit(backend.clone()).await;
    backend.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn redis_an_error_that_quotes_a_huge_input_is_cut() {
    let app = format!("qtasks-limits-error-{}", Uuid::new_v4());
    let Some(backend) = support::connect_redis("redis_an_error_that_quotes_a_huge_input", &app).await else { return };
    an_error_quoting_a_huge_input(backend.clone()).await;
    backend.flush().await.unwrap();
}
