//! A worker on Redis starts the next task while a finished run is still
//! busy after its store: see `support/handover.rs` (Postgres: `postgres.rs`).

mod support;

use qtasks::{Backend, Uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn redis() {
    let app = format!("qtasks-test-handover-{}", Uuid::new_v4());
    let Some(backend) = support::connect_redis("redis slot hand-over", &app).await else {
        return;
    };
    let result = support::handover::the_next_task_starts_while_a_run_finishes(backend.clone()).await;
    let _ = backend.flush().await;
    if let Err(e) = result {
        panic!("redis: {e}");
    }
}
