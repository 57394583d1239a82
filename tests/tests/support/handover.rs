//! A check shared by the Redis and Postgres tests: on a backend with
//! leases, a worker frees a task's slot once the task has ended and its
//! final record is ready, and keeps only a place among the runs writing
//! their records, so the next task starts while the first run is still
//! busy after its run (here: an async event handler after its store, which
//! waits for the next task to start). With the slot kept to the end of the
//! run, as before, one slot would never let the second task start, and the
//! handler would give up.

use super::HANG;
use qtasks::{Backend, EventKind, QueueTasks, TaskContext, TaskStatus, Uuid, task};
use std::sync::{Arc, Mutex};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The runs of `mark` that started, per app.
static STARTED: Mutex<Vec<(String, Uuid)>> = Mutex::new(Vec::new());

#[task]
async fn mark(app: String) -> u8 {
    let uuid = TaskContext::current().map(|ctx| ctx.uuid()).unwrap_or_default();
    STARTED.lock().unwrap().push((app, uuid));
    1
}

fn started(app: &str) -> usize {
    STARTED.lock().unwrap().iter().filter(|(a, _)| a == app).count()
}

/// With one slot, the first task's run waits after its store (in an async
/// `TaskSuccess` handler) until a second task has started: it can only if
/// the slot was freed. Both end `success`, and the handler saw the second
/// start.
pub async fn the_next_task_starts_while_a_run_finishes<B: Backend + Clone>(backend: B) -> TestResult {
    let name = super::app_name("handover", &backend);
    // Whether the first handler saw a second task start, once it is done.
    let saw: Arc<Mutex<Vec<bool>>> = Arc::default();
    let app = QueueTasks::builder(name.clone())
        .task::<Mark>()
        .backend(backend)
        .on_async(EventKind::TaskSuccess, {
            let (saw, name) = (Arc::clone(&saw), name.clone());
            move |_| {
                let (saw, name) = (Arc::clone(&saw), name.clone());
                async move {
                    if saw.lock().unwrap().is_empty() {
                        let second = super::eventually(HANG, || started(&name) >= 2).await;
                        saw.lock().unwrap().push(second);
                    }
                }
            }
        })
        .build()?;
    let first = app.enqueue(Mark::call(name.clone())).await?;
    let second = app.enqueue(Mark::call(name.clone())).await?;
    let worker = app.worker().max_tasks_process(1).start().await?;
    for handle in [&first, &second] {
        let record = handle.record(HANG).await?;
        assert_eq!((record.status, record.result), (TaskStatus::Success, Some(1.into())));
    }
    let report = worker.shutdown_timeout(HANG).await;
    assert!(report.released.is_empty(), "runs were still held at the shutdown: {:?}", report.released);
    assert!(super::eventually(HANG, || !saw.lock().unwrap().is_empty()).await, "the first handler never ended");
    assert_eq!(*saw.lock().unwrap(), [true], "the second task did not start while the first run finished");
    app.flush_all().await?;
    Ok(())
}
