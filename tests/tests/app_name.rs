//! The app is named once, by the builder: the backend serves that name, so
//! a client and a worker built with the same name share one queue, and an
//! app of another name on the same backend never sees its tasks.

mod support;

use qtasks::{Backend, MemoryBackend, QueueTasks, TaskStatus, WaitError, task};
use std::time::Duration;

#[task]
async fn double(n: i64) -> i64 {
    n * 2
}

async fn one_name_one_queue<B: Backend + Clone>(backend: B, name: &str) -> Result<(), String> {
    let client =
        QueueTasks::builder(name).task::<Double>().backend(backend.clone()).build().map_err(|e| e.to_string())?;
    let worker_app =
        QueueTasks::builder(name).task::<Double>().backend(backend.clone()).build().map_err(|e| e.to_string())?;
    let other_name = format!("{name}-other");
    let other = QueueTasks::builder(other_name.as_str())
        .task::<Double>()
        .backend(backend)
        .build()
        .map_err(|e| e.to_string())?;

    // A worker of another app on the same backend takes nothing of this one's.
    let other_worker = other.worker().start().await.map_err(|e| e.to_string())?;
    let handle = client.enqueue(Double::call(21)).await.map_err(|e| e.to_string())?;
    // The task is in this app's queue, not in the other app's, and the
    // other app cannot even read it.
    assert_eq!(client.queue_stats().await.map_err(|e| e.to_string())?.queued, 1);
    assert_eq!(other.queue_stats().await.map_err(|e| e.to_string())?.queued, 0);
    assert_eq!(other.get(handle.uuid()).await.map_err(|e| e.to_string())?, None);
    let seen_by_other = other.wait(handle.uuid(), Duration::ZERO).await;
    assert!(matches!(seen_by_other, Err(WaitError::Timeout)), "{seen_by_other:?}");
    other_worker.shutdown().await;
    assert_eq!(client.queue_stats().await.map_err(|e| e.to_string())?.queued, 1, "still queued for its own worker");

    // The worker of the same name takes it.
    let worker = worker_app.worker().start().await.map_err(|e| e.to_string())?;
    let result = handle.result(Duration::from_secs(30)).await.map_err(|e| e.to_string())?;
    worker.shutdown().await;
    assert_eq!(result, 42);
    let record = client.get(handle.uuid()).await.map_err(|e| e.to_string())?.ok_or("no record")?;
    assert_eq!(record.status, TaskStatus::Success);
    let _ = client.flush_all().await;
    let _ = other.flush_all().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_apps_on_one_backend_are_kept_apart_by_name() {
    one_name_one_queue(MemoryBackend::new(), "app-name").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn redis_apps_on_one_server_are_kept_apart_by_name() {
    let name = format!("app-name-{}", qtasks::Uuid::new_v4());
    // The name given here is replaced by the builders' own.
    let Some(backend) = support::connect_redis("redis apps kept apart", "ignored").await else { return };
    one_name_one_queue(backend, &name).await.unwrap();
}
