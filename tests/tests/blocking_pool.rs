//! The blocking-handler pool is bounded: with a limit of N, N+1 concurrent
//! blocking handlers never run more than N at once. (Its own test binary:
//! the limit is process-wide.)

mod support;

use qtasks::plugin::Managed;
use qtasks::triggers::{TaskExecutorAfterExecute, TaskExecutorBeforeExecute};
use qtasks::{EventKind, QueueTasks, TaskStatus, plugin, task};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::{Gate, HANG};

/// The pool is process-wide: these tests run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn unit() {}

/// Closed until the pool test has seen its handlers queue up.
static HOLD: Gate = Gate::new();

/// Holds a blocking-pool slot until [`HOLD`] opens and records how many run
/// at once; it also sees its task's context.
#[plugin(on = "task_executor_before_execute", blocking)]
fn hold_slot(ctx: &TaskExecutorBeforeExecute<'_>) {
    assert_eq!(ctx.task.name, "unit");
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    assert!(HOLD.wait(), "the test never opened the gate");
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn n_plus_one_blocking_handlers_with_a_pool_of_n_run_at_most_n_at_once() {
    let _serial = SERIAL.lock().await;
    qtasks::plugin::set_blocking_handler_limit(2);
    let started = std::sync::Arc::new(AtomicUsize::new(0));
    let app = QueueTasks::builder("pool")
        .task::<Unit>()
        .plugin(HoldSlot)
        .on(EventKind::TaskRunning, {
            let started = std::sync::Arc::clone(&started);
            move |_| {
                started.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let worker = app.worker().max_tasks_process(3).start().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.add_task("unit", ()).await.unwrap().uuid());
    }
    // Two handlers fill the pool and stay in it; the third task has started
    // too, so its handler is on its way to the pool, where it must wait.
    assert!(
        support::eventually(HANG, || RUNNING.load(Ordering::SeqCst) == 2).await,
        "two handlers never ran at once with a pool of 2"
    );
    assert!(support::eventually(HANG, || started.load(Ordering::SeqCst) == 3).await, "the third task never started");
    assert_eq!(qtasks::plugin::blocking_handlers_busy(), 2);
    assert_eq!(RUNNING.load(Ordering::SeqCst), 2, "a third handler got in");
    HOLD.open();
    for id in ids {
        assert_eq!(app.wait(id, HANG).await.unwrap().status, TaskStatus::Success);
    }
    worker.shutdown().await;
    assert_eq!(PEAK.load(Ordering::SeqCst), 2, "3 blocking handlers with a pool of 2 must peak at exactly 2");
    qtasks::plugin::set_blocking_handler_limit(64);
}

static SLOW_DONE: AtomicBool = AtomicBool::new(false);
/// Closed until the test has seen the task end without the handler.
static OVERRUN: Gate = Gate::new();

/// Blocks its thread until [`OVERRUN`] opens: past its 50 ms budget
/// whatever the machine's speed.
#[plugin(on = "task_executor_after_execute", blocking)]
fn overruns(ctx: &TaskExecutorAfterExecute<'_>) {
    assert_eq!(ctx.task.name, "unit");
    assert!(OVERRUN.wait(), "the test never opened the gate");
    SLOW_DONE.store(true, Ordering::SeqCst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_past_its_budget_is_reported_and_left_running_detached_holding_its_slot() {
    let _serial = SERIAL.lock().await;
    let app = QueueTasks::builder("detach")
        .task::<Unit>()
        .plugin(Managed::new(Overruns).budget(Duration::from_millis(50)).metrics())
        .build()
        .unwrap();
    let worker = app.worker().start().await.unwrap();
    // The handler cannot end before the gate opens: the task can finish
    // only by leaving it behind at its budget.
    let task = app.add_task("unit", ()).await.unwrap().record(HANG).await.unwrap();
    // The task finished while the handler still runs, detached, in its slot.
    assert_eq!(task.status, TaskStatus::Success);
    assert!(!SLOW_DONE.load(Ordering::SeqCst), "the chain waited for the blocking handler");
    assert_eq!(qtasks::plugin::blocking_handlers_busy(), 1, "the detached handler's slot is still busy");
    let stats = &app.plugins()[0].stats[0];
    assert_eq!((stats.calls, stats.timeouts), (1, 1));
    // It runs to its end (threads cannot be killed), then frees its slot.
    OVERRUN.open();
    assert!(
        support::eventually(HANG, || {
            SLOW_DONE.load(Ordering::SeqCst) && qtasks::plugin::blocking_handlers_busy() == 0
        })
        .await,
        "the detached handler never returned its slot"
    );
    assert_eq!(qtasks::plugin::blocking_handlers_busy(), 0);
    worker.shutdown().await;
}

/// Closed until a test opens it; blocking handlers wait on it in their slot.
static GATE: Gate = Gate::new();

#[plugin(on = "task_executor_before_execute", blocking)]
fn wait_at_gate(_ctx: &TaskExecutorBeforeExecute<'_>) {
    assert!(GATE.wait(), "the test never opened the gate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn building_an_app_leaves_the_process_wide_limit_alone() {
    let _serial = SERIAL.lock().await;
    let before = qtasks::plugin::blocking_handler_limit();
    let config = qtasks::Config::default().blocking_handler_limit(before + 7);
    let _a = QueueTasks::builder("a").task::<Unit>().config(config.clone()).build().unwrap();
    let _b = QueueTasks::builder("b").task::<Unit>().config(config).build().unwrap();
    assert_eq!(qtasks::plugin::blocking_handler_limit(), before, "build() must not change process-wide state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_limit_while_handlers_hold_slots_returns_at_once_and_takes_the_slots_back_later() {
    let _serial = SERIAL.lock().await;
    GATE.close();
    qtasks::plugin::set_blocking_handler_limit(2);
    let app = QueueTasks::builder("lower").task::<Unit>().plugin(WaitAtGate).build().unwrap();
    let worker = app.worker().max_tasks_process(2).start().await.unwrap();
    let ids = [app.add_task("unit", ()).await.unwrap().uuid(), app.add_task("unit", ()).await.unwrap().uuid()];
    assert!(
        support::eventually(HANG, || qtasks::plugin::blocking_handlers_busy() == 2).await,
        "both handlers hold a slot"
    );

    // Both slots are held: lowering the limit must not wait for them (it
    // used to spin under a lock until enough handlers returned).
    let lowered = tokio::task::spawn_blocking(|| qtasks::plugin::set_blocking_handler_limit(1));
    tokio::time::timeout(HANG, lowered).await.expect("lowering the limit blocked").unwrap();
    assert_eq!(qtasks::plugin::blocking_handler_limit(), 1);
    assert_eq!(qtasks::plugin::blocking_handlers_busy(), 2, "running handlers keep their slots");

    GATE.open();
    for id in ids {
        assert_eq!(app.wait(id, HANG).await.unwrap().status, TaskStatus::Success);
    }
    assert!(support::eventually(HANG, || qtasks::plugin::blocking_handlers_busy() == 0).await, "the slots came back");
    worker.shutdown().await;
    qtasks::plugin::set_blocking_handler_limit(64);
    assert_eq!(qtasks::plugin::blocking_handlers_busy(), 0);
}
