//! The blocking-handler pool is bounded: with a limit of N, N+1 concurrent
//! blocking handlers never run more than N at once. (Its own test binary:
//! the limit is process-wide.)

use qtasks::triggers::TaskExecutorBeforeExecute;
use qtasks::{QueueTasks, TaskStatus, plugin, task};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn unit() {}

/// Holds a blocking-pool slot for 150 ms and records how many run at once;
/// it also sees its task's context.
#[plugin(on = "task_executor_before_execute", blocking)]
fn hold_slot(ctx: &TaskExecutorBeforeExecute<'_>) {
    assert_eq!(ctx.task.name, "unit");
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(150));
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn n_plus_one_blocking_handlers_with_a_pool_of_n_run_at_most_n_at_once() {
    qtasks::plugin::set_blocking_handler_limit(2);
    let app = QueueTasks::builder("pool").task::<unit>().plugin(HoldSlot).build().unwrap();
    let worker = app.worker().max_tasks_process(3).start().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.add_task("unit", ()).await.unwrap().uuid);
    }
    for id in ids {
        assert_eq!(app.wait(id, Duration::from_secs(10)).await.unwrap().unwrap().status, TaskStatus::Success);
    }
    worker.shutdown().await;
    assert_eq!(PEAK.load(Ordering::SeqCst), 2, "3 blocking handlers with a pool of 2 must peak at exactly 2");
    qtasks::plugin::set_blocking_handler_limit(64);
}
