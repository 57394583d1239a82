//! The backend conformance suite (feature `conformance`): what every
//! [`Backend`] must do, as checks a backend crate runs in its own tests.
//!
//! Each check is a `pub async fn(backend) -> Result<(), ConformanceError>`
//! that drives the backend through its [`Backend`] methods and through the
//! workers of an app on it (the tasks are defined here). [`run_all`] runs
//! every check, each on a fresh backend that it flushes afterwards. The
//! checks assert behaviour, not timing: every deadline in them is hang
//! protection of seconds, and the only timed assertions are lower bounds
//! (a delayed task is not fetched before its delay, a lease is not taken
//! back before it expires). They need a multi-thread tokio runtime.
//!
//! To run the suite on a backend of your own, add qtasks with the feature
//! to its dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! qtasks = { version = "0.1", features = ["conformance"] }
//! ```
//!
//! and run every check in one test (here on the in-memory backend):
//!
//! ```no_run
//! use qtasks::MemoryBackend;
//! use qtasks::testing::conformance;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn conformance() {
//!     // `lease`: how long a taken task is held; a backend without leases ignores it.
//!     conformance::run_all(|_lease| async { MemoryBackend::new() }).await.unwrap();
//! }
//! # fn main() {}
//! ```
//!
//! or each check in a test of its own, which reports the failures one by one:
//!
//! ```no_run
//! # use qtasks::MemoryBackend;
//! # use qtasks::testing::conformance;
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn cancel_running() {
//!     conformance::cancel_running(MemoryBackend::new()).await.unwrap();
//! }
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn leases() {
//!     // A backend with leases is given one of `SHORT_LEASE` here.
//!     conformance::leases(MemoryBackend::new()).await.unwrap();
//! }
//! # fn main() {}
//! ```
//!
//! A backend that shares state between processes (a server) gives each
//! check its own namespace, as qtasks's tests do for Redis:
//! `RedisBackend::connect(url).await?.for_app(&format!("conformance-{}", Uuid::new_v4())).lease(lease)`.

use crate::backend::{Backend, BackendError, CancelOutcome, Enqueued, Fetch, QueueStats, TaskCounts};
use crate::model::{NewTask, TaskMessage, TaskRecord, TaskStatus};
use crate::task::{CancelToken, Cancelled, TaskContext, TaskSet};
use crate::{BoxError, QueueTasks, task};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use uuid::Uuid;

/// A check that failed: which one, and what differed or which error
/// stopped it.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed: {error}")]
#[non_exhaustive]
pub struct ConformanceError {
    /// The check's name: the name of its function in this module.
    pub check: &'static str,
    /// What differed from the contract, or the error (often a
    /// [`BackendError`]) that stopped the check.
    #[source]
    pub error: BoxError,
}

/// The lease [`run_all`] asks for in every check but [`leases`]: longer than
/// any check holds a task it took.
pub const LEASE: Duration = Duration::from_secs(30);

/// The lease the [`leases`] check needs (when the backend has leases), so
/// that it sees tasks come back within seconds.
pub const SHORT_LEASE: Duration = Duration::from_secs(1);

/// Hang protection: how long anything that should take milliseconds may take.
const WAIT: Duration = Duration::from_secs(10);
/// The timeout of a wait that must return long before it (at once, or when
/// woken), itself bounded by [`WAIT`]: only a wait that sleeps to its
/// timeout fails.
const LONG: Duration = Duration::from_secs(60);
/// Clocks (client and server, milliseconds) and timers: the slack of the
/// lower bounds.
const SLACK: Duration = Duration::from_millis(100);

/// The result of a check's body: any error, or a message of what differed.
type Outcome = Result<(), BoxError>;

/// Fails the check with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($message:tt)+) => {{
        let holds: bool = $cond;
        if !holds {
            return Err(format!($($message)+).into());
        }
    }};
}

/// Fails the check unless both sides are equal, showing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr) => {
        ensure_eq!($left, $right, "{}", stringify!($left == $right))
    };
    ($left:expr, $right:expr, $($message:tt)+) => {
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    return Err(format!("{}\n  left: {left:?}\n right: {right:?}", format_args!($($message)+)).into());
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------

/// Run order of `record` tasks, by key (one key per check run).
static RUNS: Mutex<BTreeMap<String, Vec<i64>>> = Mutex::new(BTreeMap::new());
/// How many times each `square` task ran.
static RUN_COUNT: Mutex<BTreeMap<Uuid, u32>> = Mutex::new(BTreeMap::new());
/// Gates `gated` tasks wait on, by name.
static GATES: Mutex<BTreeMap<String, Arc<Semaphore>>> = Mutex::new(BTreeMap::new());

fn gate(name: &str) -> Arc<Semaphore> {
    let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(gates.entry(name.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(0))))
}

fn runs(key: &str) -> Vec<i64> {
    RUNS.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned().unwrap_or_default()
}

fn run_count(uuid: Uuid) -> u32 {
    RUN_COUNT.lock().unwrap_or_else(|e| e.into_inner()).get(&uuid).copied().unwrap_or(0)
}

#[task]
async fn record(key: String, n: i64) {
    RUNS.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().push(n);
}

#[task]
async fn square(ctx: TaskContext, n: i64) -> i64 {
    *RUN_COUNT.lock().unwrap_or_else(|e| e.into_inner()).entry(ctx.uuid()).or_default() += 1;
    n * n
}

/// Runs until its gate is opened.
#[task]
async fn gated(gate_name: String) -> String {
    let _permit = gate(&gate_name).acquire_owned().await.expect("gates are never closed");
    format!("ворота {gate_name} открыты ✓")
}

#[task]
fn fails(message: String) -> Result<i64, std::io::Error> {
    Err(std::io::Error::other(message))
}

#[task]
async fn gives_up(ctx: TaskContext, why: String) -> Result<(), Cancelled> {
    Err(ctx.cancel(why))
}

#[task]
async fn echo(value: Value) -> Value {
    value
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Shape {
    name: String,
    points: Vec<(i64, f64)>,
    tags: BTreeMap<String, Option<Vec<String>>>,
    inner: Option<Box<Shape>>,
}

impl Shape {
    /// Name and points reversed, recursively: proves the task really ran.
    fn mirrored(mut self) -> Self {
        self.name = self.name.chars().rev().collect();
        self.points.reverse();
        self.inner = self.inner.map(|s| Box::new(s.mirrored()));
        self
    }
}

#[task]
async fn mirror(shape: Shape) -> Shape {
    shape.mirrored()
}

#[task]
async fn sleep_ms(ms: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    ms
}

/// An app with every task of this suite on `backend`.
fn app<B: Backend>(backend: B) -> Result<QueueTasks<impl TaskSet, (), B>, crate::Error> {
    // The app the backend serves, so workers take what the checks enqueue
    // through the backend itself.
    QueueTasks::builder(backend.app_name().to_owned())
        .task::<Record>()
        .task::<Square>()
        .task::<Gated>()
        .task::<Fails>()
        .task::<GivesUp>()
        .task::<Echo>()
        .task::<Mirror>()
        .task::<SleepMs>()
        .backend(backend)
        .build()
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A `new` record of task `name` with `args` (a JSON array of positional
/// arguments, an object of named ones, or a bare value for a task of one
/// parameter).
fn new_task(name: &str, args: Value) -> TaskRecord {
    TaskRecord::new(Uuid::new_v4(), NewTask::new(name, args))
}

/// Enqueues a new task; returns its record as enqueued.
async fn add<B: Backend>(backend: &B, name: &str, args: Value) -> Result<TaskRecord, BackendError> {
    let task = new_task(name, args);
    backend.enqueue(&task).await?;
    Ok(task)
}

/// Enqueues a new task and waits for its final record.
async fn run<B: Backend>(backend: &B, name: &str, args: Value) -> Result<TaskRecord, BoxError> {
    let task = add(backend, name, args).await?;
    let done = backend.wait(task.uuid, WAIT).await?;
    done.ok_or_else(|| format!("{name}{} did not finish within {WAIT:?}", task.args).into())
}

/// `future`, or an error if it takes longer than [`WAIT`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> Result<T, BoxError> {
    tokio::time::timeout(WAIT, future).await.map_err(|_| format!("{what}: still waiting after {WAIT:?}").into())
}

/// Fetches up to `max` tasks directly from the backend, or none if nothing
/// comes within `within`.
async fn fetch_within<B: Backend>(backend: &B, max: usize, within: Duration) -> Result<Vec<TaskMessage>, BackendError> {
    let mut out = Vec::new();
    if let Ok(result) = tokio::time::timeout(within, backend.fetch(&Fetch::default_queue(), max, &mut out)).await {
        result?;
    }
    Ok(out)
}

/// The ids of fetched tasks, in order.
fn ids_of(messages: &[TaskMessage]) -> Vec<Uuid> {
    messages.iter().map(|m| m.uuid).collect()
}

/// Polls a record until `done` holds for it (for intermediate statuses,
/// which nothing notifies).
async fn poll_record<B: Backend>(
    backend: &B,
    uuid: Uuid,
    done: impl Fn(&TaskRecord) -> bool,
) -> Result<TaskRecord, BoxError> {
    let started = Instant::now();
    loop {
        let task = backend.get(uuid).await?.ok_or("record vanished")?;
        if done(&task) {
            return Ok(task);
        }
        ensure!(started.elapsed() < WAIT, "record stuck at {:?} for {WAIT:?}: {task:?}", task.status);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Timestamps of one record read back at different times: the same
/// `created_at`, within float noise (records travel as JSON).
fn same_instant(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// Checks a final record: its status, `created_at <= updated_at`, no error
/// on success and no result otherwise.
fn expect_final(task: &TaskRecord, status: TaskStatus) -> Outcome {
    ensure_eq!(task.status, status, "the status of {task:?}");
    ensure!(task.created_at <= task.updated_at, "created after its last update: {task:?}");
    match status {
        TaskStatus::Success => ensure!(task.error.is_none(), "a successful task has an error: {task:?}"),
        _ => ensure!(task.result.is_none(), "a failed task has a result: {task:?}"),
    }
    Ok(())
}

mod listing;
mod minutes;
mod queues;
use listing::*;
use minutes::*;
use queues::*;

// ---------------------------------------------------------------------------
// 1. Order
// ---------------------------------------------------------------------------

async fn check_order<B: Backend + Clone>(backend: B) -> Outcome {
    let app = app(backend.clone())?;
    // Random-ish, with repeats (FIFO) and the extremes.
    let priorities: Vec<i64> = (0..20i64)
        .map(|i| match i {
            5 => i64::MIN,
            12 => i64::MAX,
            _ => (i * 37 + 11) % 7 - 3,
        })
        .collect();
    let mut expected: Vec<usize> = (0..priorities.len()).collect();
    expected.sort_by_key(|&i| priorities[i]); // stable: FIFO within a priority
    let enqueue_all = async |key: &str| -> Result<Vec<Uuid>, BackendError> {
        let mut uuids = Vec::new();
        for (i, &priority) in priorities.iter().enumerate() {
            let mut task = new_task("record", json!([key, i]));
            task.priority = priority;
            backend.enqueue(&task).await?;
            uuids.push(task.uuid);
        }
        Ok(uuids)
    };

    // Directly: nothing runs, the queue is read in batches of 3.
    let uuids = enqueue_all(&Uuid::new_v4().to_string()).await?;
    let mut fetched = Vec::new();
    while fetched.len() < uuids.len() {
        let batch = fetch_within(&backend, 3, WAIT).await?;
        ensure!((1..=3).contains(&batch.len()), "a fetch of at most 3 gave {} tasks", batch.len());
        for m in &batch {
            ensure_eq!(m.task_name, "record");
            let i = uuids.iter().position(|u| *u == m.uuid).ok_or("fetched an unknown task")?;
            ensure_eq!(m.priority, priorities[i], "the priority of task {i}");
        }
        fetched.extend(ids_of(&batch));
    }
    let expected_uuids: Vec<Uuid> = expected.iter().map(|&i| uuids[i]).collect();
    ensure_eq!(fetched, expected_uuids, "fetch order (priorities {priorities:?})");
    let left = fetch_within(&backend, 3, Duration::from_millis(200)).await?;
    ensure!(left.is_empty(), "tasks left after all 20 were fetched: {left:?}");
    backend.flush().await?;

    // Through a worker: started after everything is queued, one task at a time.
    let key = Uuid::new_v4().to_string();
    let uuids = enqueue_all(&key).await?;
    let worker = app.worker().max_tasks_process(1).start().await?;
    for &uuid in &uuids {
        expect_final(&backend.wait(uuid, WAIT).await?.ok_or("not finished")?, TaskStatus::Success)?;
    }
    worker.shutdown().await;
    let ran: Vec<usize> = runs(&key).into_iter().map(|n| n as usize).collect();
    ensure_eq!(ran, expected, "run order (priorities {priorities:?})");
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Statuses
// ---------------------------------------------------------------------------

async fn check_statuses<B: Backend + Clone>(backend: B) -> Outcome {
    let app = app(backend.clone())?;
    let gate_name = Uuid::new_v4().to_string();

    let new = add(&backend, "gated", json!([gate_name])).await?;
    ensure_eq!(new.status, TaskStatus::New);
    ensure!(new.created_at <= new.updated_at, "{new:?}");
    ensure!(new.result.is_none() && new.error.is_none(), "{new:?}");
    let stored = backend.get(new.uuid).await?.ok_or("the new record is not stored")?;
    ensure_eq!(stored.status, TaskStatus::New);
    ensure_eq!((&stored.task_name, &stored.args, stored.priority), (&new.task_name, &new.args, new.priority));
    ensure!(same_instant(stored.created_at, new.created_at), "{stored:?} vs {new:?}");

    let worker = app.worker().start().await?;
    let process = poll_record(&backend, new.uuid, |t| t.status != TaskStatus::New).await?;
    ensure_eq!(process.status, TaskStatus::Process, "{process:?}");
    ensure!(same_instant(process.created_at, new.created_at), "created_at changed: {process:?} vs {new:?}");
    ensure!(process.created_at <= process.updated_at, "{process:?}");
    ensure!(process.updated_at >= stored.updated_at, "updated_at went back: {process:?} after {stored:?}");
    ensure!(process.result.is_none() && process.error.is_none(), "{process:?}");
    // Not final yet (its gate is closed): a short wait times out.
    let early = backend.wait(new.uuid, Duration::from_millis(100)).await?;
    ensure!(early.is_none(), "a wait on a running task gave {early:?}");

    gate(&gate_name).add_permits(1);
    let done = backend.wait(new.uuid, WAIT).await?.ok_or("not finished")?;
    expect_final(&done, TaskStatus::Success)?;
    ensure_eq!(done.result, Some(json!(format!("ворота {gate_name} открыты ✓"))));
    ensure!(same_instant(done.created_at, new.created_at), "created_at changed: {done:?} vs {new:?}");
    ensure!(done.updated_at >= process.updated_at, "updated_at went back: {done:?} after {process:?}");
    ensure_eq!(backend.get(new.uuid).await?.as_ref(), Some(&done), "get and wait disagree");

    let message = "диск полон: disk full \"/tmp\"";
    let failed = run(&backend, "fails", json!([message])).await?;
    expect_final(&failed, TaskStatus::Error)?;
    ensure_eq!(failed.error.as_deref(), Some(message));
    ensure_eq!(backend.get(failed.uuid).await?.as_ref(), Some(&failed));

    let cancelled = run(&backend, "gives_up", json!(["no longer needed"])).await?;
    expect_final(&cancelled, TaskStatus::Cancel)?;
    ensure_eq!(cancelled.error.as_deref(), Some("no longer needed"));
    ensure_eq!(backend.get(cancelled.uuid).await?.as_ref(), Some(&cancelled));

    worker.shutdown().await;
    Ok(())
}

async fn check_status_only_moves_forward<B: Backend + Clone>(backend: B) -> Outcome {
    let task = add(&backend, "square", json!([4])).await?;
    let taken = fetch_within(&backend, 1, WAIT).await?;
    ensure_eq!(ids_of(&taken), [task.uuid]);
    let process = TaskRecord::from_message(&taken[0], TaskStatus::Process);
    backend.update(&process).await?;
    ensure_eq!(backend.get(task.uuid).await?.ok_or("not stored")?.status, TaskStatus::Process);
    let mut done = TaskRecord::from_message(&taken[0], TaskStatus::Success);
    done.result = Some(json!(16));
    backend.finish(&done).await?;

    backend.update(&process).await?;
    let stored = backend.get(task.uuid).await?.ok_or("not stored")?;
    ensure_eq!(stored.status, TaskStatus::Success, "a late update(process) undid the final status: {stored:?}");
    ensure_eq!(stored.result, Some(json!(16)));
    let waited = within("wait on a finished task", backend.wait(task.uuid, LONG)).await??;
    ensure_eq!(waited.map(|t| t.status), Some(TaskStatus::Success), "wait no longer sees the task as finished");
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. Results
// ---------------------------------------------------------------------------

async fn check_results<B: Backend + Clone>(backend: B) -> Outcome {
    let app = app(backend.clone())?;
    let worker = app.worker().start().await?;

    let mut deep = json!("bottom");
    for i in 0..60 {
        deep = json!({ format!("level{i}"): [deep, i] });
    }
    // `null` has a check of its own: `null_results`.
    let values = [
        json!(true),
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(0.1),
        json!(-2.5e-300),
        json!(1.7976931348623157e308),
        json!(""),
        json!("Пользователь 5 записан — 日本語 — emoji 🦀👩‍👩‍👧 — zero-width \u{200b}"),
        json!("quotes \" backslash \\ slash / control \u{0} \u{1f} \n\r\t"),
        json!("x".repeat(64 * 1024)),
        json!([]),
        json!({}),
        json!({"": "", "ключ": {"ネスト": [1, [2, [3, {"four": null}]]]}, "a b": [true, false, null, 1.5]}),
        deep,
    ];
    for value in values {
        let short = value.to_string().chars().take(80).collect::<String>();
        let done = run(&backend, "echo", json!([value])).await?;
        expect_final(&done, TaskStatus::Success)?;
        ensure_eq!(done.args, json!([value]), "arguments changed: {short}");
        ensure_eq!(done.result.as_ref(), Some(&value), "result changed: {short}");
        // By parameter name.
        let done = run(&backend, "echo", json!({ "value": value })).await?;
        ensure_eq!(done.result.as_ref(), Some(&value), "result changed (named argument): {short}");
    }

    let shape = Shape {
        name: "треугольник △".to_owned(),
        points: vec![(0, 0.0), (-3, 1.25), (i64::MAX, -0.5)],
        tags: BTreeMap::from([
            ("цвет".to_owned(), Some(vec!["красный".to_owned(), "🟥".to_owned()])),
            ("none".to_owned(), None),
            ("empty".to_owned(), Some(vec![])),
        ]),
        inner: Some(Box::new(Shape {
            name: "inner".to_owned(),
            points: vec![(1, 2.0), (3, 4.0)],
            tags: BTreeMap::new(),
            inner: None,
        })),
    };
    let mirrored = run(&backend, "mirror", json!([shape])).await?;
    let mirrored: Shape = mirrored.result_as().ok_or("mirror gave no result")??;
    ensure_eq!(mirrored, shape.mirrored());
    let squared = run(&backend, "square", json!([-12])).await?;
    ensure_eq!(squared.result, Some(json!(144)));

    worker.shutdown().await;
    Ok(())
}

async fn check_null_results<B: Backend + Clone>(backend: B) -> Outcome {
    let app = app(backend.clone())?;
    let worker = app.worker().start().await?;
    let echoed = run(&backend, "echo", json!([null])).await?;
    expect_final(&echoed, TaskStatus::Success)?;
    ensure_eq!(echoed.args, json!([null]));
    let unit = run(&backend, "record", json!([Uuid::new_v4().to_string(), 1])).await?;
    expect_final(&unit, TaskStatus::Success)?;
    worker.shutdown().await;
    for task in [&echoed, &unit] {
        let stored = backend.get(task.uuid).await?.ok_or("not stored")?;
        ensure_eq!(stored.result, Some(Value::Null), "the stored result of {}", task.task_name);
        ensure!(matches!(stored.result_as::<()>(), Some(Ok(()))), "result_as of {}", task.task_name);
        ensure_eq!(task.result, Some(Value::Null), "the waited result of {}", task.task_name);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. Waiting
// ---------------------------------------------------------------------------

async fn check_waiting<B: Backend + Clone>(backend: B) -> Outcome {
    let app = app(backend.clone())?;
    let worker = app.worker().start().await?;

    // Finished: returned as it is, without waiting for the timeout.
    let finished = run(&backend, "sleep_ms", json!([0])).await?;
    let again = within("wait on a finished task", backend.wait(finished.uuid, LONG)).await??;
    ensure_eq!(again.as_ref(), Some(&finished));

    // Running: woken when it ends, not at the timeout.
    let gate_name = Uuid::new_v4().to_string();
    let running = add(&backend, "gated", json!([gate_name])).await?;
    let (done, opened) = tokio::join!(within("wait on a running task", backend.wait(running.uuid, LONG)), async {
        poll_record(&backend, running.uuid, |t| t.status == TaskStatus::Process).await?;
        gate(&gate_name).add_permits(1);
        Ok::<_, BoxError>(())
    });
    opened?;
    let done = done??.ok_or("a wait on a task that finished gave no record")?;
    expect_final(&done, TaskStatus::Success)?;
    ensure_eq!(done.result, Some(json!(format!("ворота {gate_name} открыты ✓"))));

    // Several waiters on one task, one of them with a timeout that passes
    // while the task cannot end (its gate opens only after that timeout).
    let gate_name = Uuid::new_v4().to_string();
    let slow = add(&backend, "gated", json!([gate_name])).await?;
    let (short, long_a, long_b) = tokio::join!(
        async {
            let short = backend.wait(slow.uuid, Duration::from_millis(50)).await;
            gate(&gate_name).add_permits(1);
            short
        },
        within("the first of two waiters", backend.wait(slow.uuid, LONG)),
        within("the second of two waiters", backend.wait(slow.uuid, LONG)),
    );
    let short = short?;
    ensure!(short.is_none(), "a 50 ms wait on a task that could not end gave {short:?}");
    for done in [long_a??, long_b??] {
        let done = done.ok_or("a waiter got no record")?;
        expect_final(&done, TaskStatus::Success)?;
        ensure_eq!(done.result, Some(json!(format!("ворота {gate_name} открыты ✓"))));
    }

    // A timeout that passes: `None`, not before the timeout, and the task
    // still finishes later.
    let gate_name = Uuid::new_v4().to_string();
    let late = add(&backend, "gated", json!([gate_name])).await?;
    let started = Instant::now();
    let timed_out = backend.wait(late.uuid, Duration::from_millis(50)).await?;
    let took = started.elapsed();
    ensure!(timed_out.is_none(), "a 50 ms wait on a task that could not end gave {timed_out:?}");
    ensure!(took >= Duration::from_millis(50), "the 50 ms timeout passed after {took:?}");
    ensure!(backend.get(late.uuid).await?.is_some(), "the timed-out task is not stored");
    gate(&gate_name).add_permits(1);
    let late = backend.wait(late.uuid, WAIT).await?.ok_or("the timed-out task never finished")?;
    expect_final(&late, TaskStatus::Success)?;

    // Unknown: `None`, without waiting for the timeout.
    let unknown = within("wait on an unknown task", backend.wait(Uuid::new_v4(), LONG)).await??;
    ensure!(unknown.is_none(), "a wait on an unknown task gave {unknown:?}");

    worker.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. Leases and redelivery
// ---------------------------------------------------------------------------

async fn check_leases<B: Backend + Clone>(backend: B) -> Outcome {
    let lease = SHORT_LEASE;
    let app = app(backend.clone())?;
    let task = add(&backend, "square", json!([7])).await?;

    // Before the first fetch: its lease starts after this instant.
    let first_taken = Instant::now();
    let first = fetch_within(&backend, 10, WAIT).await?;
    ensure_eq!(ids_of(&first), [task.uuid]);

    if backend.lease_renewal().is_none() {
        // No leases, no redelivery: nothing comes back; the fetch marked the
        // record `process`, and it stays so (the task is held).
        let again = fetch_within(&backend, 10, lease + Duration::from_millis(500)).await?;
        ensure!(again.is_empty(), "redelivered without leases: {again:?}");
        let record = backend.get(task.uuid).await?.ok_or("the record vanished")?;
        ensure_eq!(record.status, TaskStatus::Process, "{record:?}");
        let waited = backend.wait(task.uuid, Duration::from_millis(100)).await?;
        ensure!(waited.is_none(), "a held task that never finished is done: {waited:?}");
        return Ok(());
    }

    // The "dead worker" never finishes: the next fetch gets the task back
    // once the lease has expired, not before.
    let again = fetch_within(&backend, 10, WAIT).await?;
    let redelivered_after = first_taken.elapsed();
    ensure_eq!(ids_of(&again), [task.uuid], "not redelivered");
    ensure!(
        redelivered_after + SLACK >= lease,
        "redelivered after {redelivered_after:?}, before its {lease:?} lease expired"
    );
    ensure_eq!(backend.get(task.uuid).await?.ok_or("the record vanished")?.status, TaskStatus::Process);

    // That fetcher dies too; a worker gets the task when this second lease
    // expires, and completes it, once.
    let worker = app.worker().max_tasks_process(1).start().await?;
    let done = backend.wait(task.uuid, WAIT).await?.ok_or("never completed after redelivery")?;
    let completed_after = first_taken.elapsed();
    expect_final(&done, TaskStatus::Success)?;
    ensure_eq!(done.result, Some(json!(49)));
    ensure!(
        completed_after + SLACK >= 2 * lease,
        "completed after {completed_after:?}, before the second {lease:?} lease expired"
    );
    worker.shutdown().await;
    // Finished: never handed out again, even after another lease.
    let late = fetch_within(&backend, 10, lease + Duration::from_millis(500)).await?;
    ensure!(late.is_empty(), "a finished task was handed out again: {late:?}");
    ensure_eq!(run_count(task.uuid), 1, "how many times the task ran");
    ensure_eq!(backend.get(task.uuid).await?.ok_or("the record vanished")?.status, TaskStatus::Success);
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. Many tasks
// ---------------------------------------------------------------------------

async fn check_many_tasks<B: Backend + Clone>(backend: B) -> Outcome {
    const N: i64 = 2_000;
    let app = app(backend.clone())?;
    let worker = app.worker().max_tasks_process(32).start().await?;
    let started = Instant::now();
    let mut uuids = BTreeMap::new();
    for n in 0..N {
        uuids.insert(add(&backend, "square", json!([n])).await?.uuid, n);
    }
    let enqueued = started.elapsed();
    for (&uuid, &n) in &uuids {
        let done = backend.wait(uuid, WAIT).await?.ok_or_else(|| format!("square({n}) never finished"))?;
        expect_final(&done, TaskStatus::Success)?;
        ensure_eq!(done.result, Some(json!(n * n)), "square({n})");
    }
    let finished = started.elapsed();
    worker.shutdown().await;

    let all = backend.get_all().await?;
    ensure_eq!(all.len(), N as usize, "get_all lists {} records for {N} tasks", all.len());
    let listed: BTreeSet<Uuid> = all.iter().map(|t| t.uuid).collect();
    ensure_eq!(listed.len(), all.len(), "get_all lists a task twice");
    ensure!(listed.iter().eq(uuids.keys()), "get_all lists other tasks than those enqueued");
    for task in &all {
        let n = *uuids.get(&task.uuid).ok_or("get_all lists an unknown task")?;
        expect_final(task, TaskStatus::Success)?;
        ensure_eq!(task.args, json!([n]));
        ensure_eq!(task.result, Some(json!(n * n)), "square({n})");
        ensure_eq!(run_count(task.uuid), 1, "how many times square({n}) ran");
    }
    tracing::info!(backend = backend.kind(), tasks = N, ?enqueued, ?finished, "conformance: many tasks");
    Ok(())
}

// ---------------------------------------------------------------------------
// 7. Retention: not here. The memory backend has none, and for Redis
// `tests/tests/redis_backend.rs` checks the TTL of a finished record.
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// 8. Bad input
// ---------------------------------------------------------------------------

async fn check_bad_input<B: Backend + Clone>(backend: B) -> Outcome {
    let app = app(backend.clone())?;
    // Queued before the worker starts, between good tasks.
    let good_before = add(&backend, "square", json!([3])).await?.uuid;
    let unknown = add(&backend, "no_such_task", json!([1, 2])).await?.uuid;
    let wrong_type = add(&backend, "square", json!(["seven"])).await?.uuid;
    let wrong_count = add(&backend, "square", json!([1, 2])).await?.uuid;
    let unknown_arg = add(&backend, "square", json!({ "m": 1 })).await?.uuid;
    // A bare value is the argument of a one-parameter task: of the wrong type here.
    let bare_wrong_type = add(&backend, "square", json!("7")).await?.uuid;
    let worker = app.worker().start().await?;

    let expect_error = async |uuid, contains: &str| -> Outcome {
        let task = backend.wait(uuid, WAIT).await?.ok_or("not finished")?;
        expect_final(&task, TaskStatus::Error)?;
        let error = task.error.unwrap_or_default();
        ensure!(
            error.contains(contains),
            "{:?} with {}: error {error:?} lacks {contains:?}",
            task.task_name,
            task.args
        );
        Ok(())
    };
    expect_error(unknown, "unknown task `no_such_task`").await?;
    expect_error(wrong_type, "invalid arguments").await?;
    expect_error(wrong_count, "invalid arguments").await?;
    expect_error(unknown_arg, "unknown argument `m`").await?;
    expect_error(bare_wrong_type, "invalid arguments").await?;

    let before = backend.wait(good_before, WAIT).await?.ok_or("not finished")?;
    ensure_eq!(before.result, Some(json!(9)));
    let after = run(&backend, "square", json!([9])).await?;
    expect_final(&after, TaskStatus::Success)?;
    ensure_eq!(after.result, Some(json!(81)));
    worker.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// 9. Cancellation
// ---------------------------------------------------------------------------

async fn check_cancel_queued<B: Backend + Clone>(backend: B) -> Outcome {
    let app = app(backend.clone())?;
    let task = add(&backend, "square", json!([5])).await?;
    // `join!` polls the waiter first: it is waiting (or, on a backend that
    // subscribes first, about to read the record) when the cancel runs.
    // Either way it must return the `cancel` record, long before its timeout.
    let (woken, outcome) = tokio::join!(
        within("a waiter on a cancelled task", backend.wait(task.uuid, LONG)),
        backend.cancel(task.uuid, "plus nécessaire"),
    );
    ensure_eq!(outcome?, CancelOutcome::Cancelled);
    let woken = woken??.ok_or("the waiter got no record")?;
    expect_final(&woken, TaskStatus::Cancel)?;
    ensure_eq!(woken.error.as_deref(), Some("plus nécessaire"));
    ensure_eq!((&woken.args, woken.attempt), (&task.args, task.attempt));
    ensure!(same_instant(woken.created_at, task.created_at), "{woken:?} vs {task:?}");
    ensure!(woken.updated_at >= task.updated_at, "{woken:?}");
    ensure_eq!(backend.get(task.uuid).await?.as_ref(), Some(&woken));

    // Idempotent: the first decision stays.
    ensure_eq!(backend.cancel(task.uuid, "again").await?, CancelOutcome::Finished(TaskStatus::Cancel));
    ensure_eq!(backend.get(task.uuid).await?.as_ref(), Some(&woken), "a second cancel changed the record");

    // A worker started afterwards runs what follows, never the cancelled task.
    let worker = app.worker().start().await?;
    let next = run(&backend, "square", json!([6])).await?;
    expect_final(&next, TaskStatus::Success)?;
    worker.shutdown().await;
    ensure_eq!(run_count(task.uuid), 0, "how many times the cancelled task ran");
    ensure_eq!(backend.get(task.uuid).await?.as_ref(), Some(&woken));
    Ok(())
}

async fn check_cancel_finished_and_unknown<B: Backend + Clone>(backend: B) -> Outcome {
    let app = app(backend.clone())?;
    let worker = app.worker().start().await?;
    let ok = run(&backend, "square", json!([3])).await?;
    let failed = run(&backend, "fails", json!(["boom"])).await?;
    worker.shutdown().await;
    for (task, status) in [(&ok, TaskStatus::Success), (&failed, TaskStatus::Error)] {
        ensure_eq!(backend.cancel(task.uuid, "too late").await?, CancelOutcome::Finished(status));
        ensure_eq!(backend.get(task.uuid).await?.as_ref(), Some(task), "cancel changed a finished record");
    }
    ensure_eq!(run_count(ok.uuid), 1);
    ensure_eq!(backend.cancel(Uuid::new_v4(), "who?").await?, CancelOutcome::NotFound);
    Ok(())
}

async fn check_cancel_running<B: Backend + Clone>(backend: B) -> Outcome {
    let task = add(&backend, "square", json!([2])).await?;
    let taken = fetch_within(&backend, 1, WAIT).await?;
    ensure_eq!(ids_of(&taken), [task.uuid]);
    let token = CancelToken::new();
    backend.watch_cancel(task.uuid, &token);

    ensure_eq!(backend.cancel(task.uuid, "stop").await?, CancelOutcome::Requested);
    within("the watched token", token.cancelled()).await?;
    ensure_eq!(token.reason(), Some("stop"));
    ensure_eq!(backend.get(task.uuid).await?.ok_or("not stored")?.status, TaskStatus::Process);
    let waited = backend.wait(task.uuid, Duration::from_millis(100)).await?;
    ensure!(waited.is_none(), "a running task whose cancel was only requested is done: {waited:?}");
    // Idempotent while it runs.
    ensure_eq!(backend.cancel(task.uuid, "stop!").await?, CancelOutcome::Requested);

    // The worker stops it.
    backend.unwatch_cancel(task.uuid);
    let mut ended = TaskRecord::from_message(&taken[0], TaskStatus::Cancel);
    ended.error = token.reason().map(str::to_owned);
    backend.finish(&ended).await?;
    let done = backend.wait(task.uuid, WAIT).await?.ok_or("not finished")?;
    expect_final(&done, TaskStatus::Cancel)?;
    ensure_eq!(done.error.as_deref(), Some("stop"));
    ensure_eq!(backend.cancel(task.uuid, "again").await?, CancelOutcome::Finished(TaskStatus::Cancel));
    let stats = backend.stats().await?;
    ensure_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
    ensure_eq!(stats.tasks.get("square").map(|c| c.cancel), Some(1), "{stats:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// 10. Delayed tasks
// ---------------------------------------------------------------------------

async fn check_delayed<B: Backend + Clone>(backend: B) -> Outcome {
    const DELAY: Duration = Duration::from_millis(300);
    // Measured before each enqueue, so `elapsed() + SLACK >= DELAY` holds
    // however slow the machine is, unless the task came early.
    let task = new_task("square", json!([8]));
    let enqueued = Instant::now();
    backend.enqueue_delayed(&task, DELAY).await?;
    ensure_eq!(backend.get(task.uuid).await?.ok_or("not stored")?.status, TaskStatus::New);
    ensure_eq!(backend.stats().await?.queued, 1);
    let due = fetch_within(&backend, 10, WAIT).await?;
    let after = enqueued.elapsed();
    ensure_eq!(ids_of(&due), [task.uuid]);
    ensure!(after + SLACK >= DELAY, "fetched after {after:?}, before its {DELAY:?} delay");
    backend.finish(&TaskRecord::from_message(&due[0], TaskStatus::Success)).await?;

    // A fetch already waiting when the delayed task is enqueued (`join!`
    // polls the fetch first).
    let task = new_task("square", json!([9]));
    let enqueued = Instant::now();
    let (due, queued) = tokio::join!(fetch_within(&backend, 10, WAIT), backend.enqueue_delayed(&task, DELAY));
    queued?;
    let due = due?;
    let after = enqueued.elapsed();
    ensure_eq!(ids_of(&due), [task.uuid], "what the waiting fetch got");
    ensure!(after + SLACK >= DELAY, "fetched after {after:?}, before its {DELAY:?} delay");
    backend.finish(&TaskRecord::from_message(&due[0], TaskStatus::Success)).await?;

    // A cancelled delayed task leaves the counts when it is cancelled, and
    // is not counted again when it comes due.
    let (cancelled, kept) = (new_task("square", json!([5])), new_task("square", json!([6])));
    backend.enqueue_delayed(&cancelled, DELAY).await?;
    backend.enqueue_delayed(&kept, DELAY).await?;
    ensure_eq!(backend.cancel(cancelled.uuid, "not needed").await?, CancelOutcome::Cancelled);
    let q = info(&backend, crate::DEFAULT_QUEUE).await?;
    ensure_eq!((q.depth, q.delayed, q.in_flight), (0, 1, 0), "after cancelling one of two delayed tasks: {q:?}");
    let due = fetch_within(&backend, 10, WAIT).await?;
    ensure_eq!(ids_of(&due), [kept.uuid], "what came due");
    let q = info(&backend, crate::DEFAULT_QUEUE).await?;
    ensure_eq!((q.depth, q.delayed, q.in_flight), (0, 0, 1), "once the delayed tasks came due: {q:?}");
    backend.finish(&TaskRecord::from_message(&due[0], TaskStatus::Success)).await?;
    let q = info(&backend, crate::DEFAULT_QUEUE).await?;
    ensure_eq!((q.depth, q.delayed, q.in_flight), (0, 0, 0), "after the finish: {q:?}");
    ensure_eq!(backend.stats().await?.queued, 0);

    // Through a worker.
    let app = app(backend.clone())?;
    let worker = app.worker().start().await?;
    let task = new_task("square", json!([4]));
    let enqueued = Instant::now();
    backend.enqueue_delayed(&task, DELAY).await?;
    let done = backend.wait(task.uuid, WAIT).await?.ok_or("not finished")?;
    let after = enqueued.elapsed();
    expect_final(&done, TaskStatus::Success)?;
    ensure_eq!(done.result, Some(json!(16)));
    ensure!(after + SLACK >= DELAY, "ran after {after:?}, before its {DELAY:?} delay");
    worker.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// 11. Stats
// ---------------------------------------------------------------------------

/// Takes three queued tasks (in as many fetches as it needs).
async fn take_three<B: Backend>(backend: &B) -> Result<Vec<TaskMessage>, BoxError> {
    let mut taken = Vec::new();
    while taken.len() < 3 {
        let batch = fetch_within(backend, 3 - taken.len(), WAIT).await?;
        ensure!(!batch.is_empty(), "the queued tasks were not fetched");
        taken.extend(batch);
    }
    Ok(taken)
}

/// Ends three taken tasks `success` (result 1), `error` and `retry`, then
/// finishes the failed one again, as a redelivered task would be: a count
/// must see it once.
async fn end_success_error_retry<B: Backend>(backend: &B, taken: &[TaskMessage]) -> Outcome {
    let mut ok = TaskRecord::from_message(&taken[0], TaskStatus::Success);
    ok.result = Some(json!(1));
    backend.finish(&ok).await?;
    let mut failed = TaskRecord::from_message(&taken[1], TaskStatus::Error);
    failed.error = Some("bad".to_owned());
    backend.finish(&failed).await?;
    let mut retried = TaskRecord::from_message(&taken[2], TaskStatus::Retry);
    retried.error = Some("again".to_owned());
    backend.finish(&retried).await?;
    backend.finish(&failed).await?;
    Ok(())
}

async fn check_stats<B: Backend + Clone>(backend: B) -> Outcome {
    let counts = |success, error, retry, cancel| TaskCounts { success, error, retry, cancel, duplicates: 0 };
    let app = app(backend.clone())?;
    ensure_eq!(backend.stats().await?, QueueStats::default());

    let a = add(&backend, "square", json!([1])).await?.uuid;
    let b = add(&backend, "square", json!([2])).await?.uuid;
    let c = add(&backend, "fails", json!(["x"])).await?.uuid;
    let delayed = new_task("square", json!([3]));
    backend.enqueue_delayed(&delayed, Duration::from_millis(300)).await?;
    let stats = backend.stats().await?;
    ensure_eq!((stats.queued, stats.in_flight), (4, 0), "{stats:?}");
    ensure!(stats.tasks.is_empty(), "{stats:?}");

    let taken = take_three(&backend).await?;
    ensure_eq!(ids_of(&taken), [a, b, c]);
    let stats = backend.stats().await?;
    ensure_eq!((stats.queued, stats.in_flight), (1, 3), "{stats:?}");
    end_success_error_retry(&backend, &taken).await?;
    // `retry` is done: waiting returns without waiting for the timeout.
    let waited = within("wait on a retry record", backend.wait(c, LONG)).await??.ok_or("no record")?;
    ensure_eq!(waited.status, TaskStatus::Retry);
    // A `retry` does not replace an end.
    backend.finish(&TaskRecord::from_message(&taken[0], TaskStatus::Retry)).await?;
    ensure_eq!(backend.get(a).await?.ok_or("not stored")?.status, TaskStatus::Success);

    let stats = backend.stats().await?;
    ensure_eq!((stats.queued, stats.in_flight), (1, 0), "{stats:?}");
    let expected =
        BTreeMap::from([("square".to_owned(), counts(1, 1, 0, 0)), ("fails".to_owned(), counts(0, 0, 1, 0))]);
    ensure_eq!(stats.tasks, expected);

    // Cancelled while delayed: counted, and never handed out.
    ensure_eq!(backend.cancel(delayed.uuid, "no").await?, CancelOutcome::Cancelled);
    let late = fetch_within(&backend, 10, Duration::from_millis(600)).await?;
    ensure!(late.is_empty(), "a cancelled delayed task was fetched: {late:?}");

    // Through a worker: a success and a task that cancels itself.
    let worker = app.worker().start().await?;
    run(&backend, "square", json!([4])).await?;
    run(&backend, "gives_up", json!(["enough"])).await?;
    worker.shutdown().await;
    let stats = backend.stats().await?;
    ensure_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
    let expected = BTreeMap::from([
        ("square".to_owned(), counts(2, 1, 0, 1)),
        ("fails".to_owned(), counts(0, 0, 1, 0)),
        ("gives_up".to_owned(), counts(0, 0, 0, 1)),
    ]);
    ensure_eq!(stats.tasks, expected);
    Ok(())
}

// ---------------------------------------------------------------------------
// 12. Idempotent enqueue
// ---------------------------------------------------------------------------

async fn check_idempotent_enqueue<B: Backend + Clone>(backend: B) -> Outcome {
    let task = new_task("square", json!([3]));
    ensure!(backend.enqueue(&task).await? == Enqueued::New, "the first enqueue of a task was not new");
    // The same id again, with other contents: a no-op, queued or delayed.
    let mut again = task.clone();
    again.args = json!([4]);
    again.priority = -5;
    ensure!(
        backend.enqueue(&again).await? == Enqueued::Existing(task.uuid),
        "a second enqueue with the same id did not give the existing task"
    );
    ensure!(
        backend.enqueue_delayed(&again, Duration::from_millis(10)).await? != Enqueued::New,
        "a delayed enqueue with the id of a queued task returned true"
    );
    let stored = backend.get(task.uuid).await?.ok_or("not stored")?;
    ensure_eq!((&stored.args, stored.priority), (&task.args, task.priority), "a second enqueue changed the record");
    ensure_eq!(backend.stats().await?.queued, 1, "tasks queued after enqueueing one id three times");

    // One task: fetched once, and nothing else comes (the delayed copy
    // would be due long before the end of this fetch).
    let taken = fetch_within(&backend, 10, WAIT).await?;
    ensure_eq!(ids_of(&taken), [task.uuid]);
    ensure_eq!(taken[0].args, task.args);
    let more = fetch_within(&backend, 10, Duration::from_millis(300)).await?;
    ensure!(more.is_empty(), "a second copy of the task was queued: {more:?}");

    // Held, then finished: still a no-op, and the end stays.
    ensure!(
        backend.enqueue(&again).await? != Enqueued::New,
        "an enqueue with the id of a running task made a new task"
    );
    let mut done = TaskRecord::from_message(&taken[0], TaskStatus::Success);
    done.result = Some(json!(9));
    backend.finish(&done).await?;
    ensure!(
        backend.enqueue(&again).await? != Enqueued::New,
        "an enqueue with the id of a finished task made a new task"
    );
    let stored = backend.get(task.uuid).await?.ok_or("not stored")?;
    ensure_eq!((stored.status, stored.result), (TaskStatus::Success, Some(json!(9))));
    let more = fetch_within(&backend, 10, Duration::from_millis(100)).await?;
    ensure!(more.is_empty(), "a finished task was queued again: {more:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// 13. Release
// ---------------------------------------------------------------------------

async fn check_release<B: Backend + Clone>(backend: B) -> Outcome {
    let first = add(&backend, "square", json!([5])).await?;
    let second = add(&backend, "square", json!([6])).await?;
    // Not held: queued, or unknown.
    ensure!(!backend.release(first.uuid).await?, "released a queued task");
    ensure!(!backend.release(Uuid::new_v4()).await?, "released an unknown task");

    let taken = fetch_within(&backend, 1, WAIT).await?;
    ensure_eq!(ids_of(&taken), [first.uuid]);
    ensure!(backend.release(first.uuid).await?, "releasing a held task returned false");
    let record = backend.get(first.uuid).await?.ok_or("the released record vanished")?;
    ensure_eq!(record.status, TaskStatus::New, "a released task's record: {record:?}");
    ensure_eq!(record.attempt, first.attempt);
    ensure!(!backend.release(first.uuid).await?, "released a task twice");
    ensure_eq!(backend.stats().await?.in_flight, 0, "a released task is still in flight");

    // Back at its old place, ahead of the task queued after it, same attempt.
    let again = fetch_within(&backend, 2, WAIT).await?;
    ensure_eq!(ids_of(&again), [first.uuid, second.uuid], "fetched after the release");
    ensure_eq!((&again[0].args, again[0].attempt), (&taken[0].args, taken[0].attempt));

    // A fetch that waits while a task is released gets it.
    let (woken, released) = tokio::join!(fetch_within(&backend, 1, WAIT), backend.release(second.uuid));
    ensure!(released?, "releasing a held task returned false");
    ensure_eq!(ids_of(&woken?), [second.uuid], "what a waiting fetch got");

    // Finished: not held any more.
    for message in [&again[0], &again[1]] {
        backend.finish(&TaskRecord::from_message(message, TaskStatus::Success)).await?;
        ensure!(!backend.release(message.uuid).await?, "released a finished task");
        ensure_eq!(backend.get(message.uuid).await?.ok_or("not stored")?.status, TaskStatus::Success);
    }
    let more = fetch_within(&backend, 10, Duration::from_millis(100)).await?;
    ensure!(more.is_empty(), "a finished task was queued again: {more:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// 14. Claims
// ---------------------------------------------------------------------------

async fn check_claim<B: Backend + Clone>(backend: B) -> Outcome {
    const SHORT: Duration = Duration::from_millis(300);
    let key = format!("tick:{}", Uuid::new_v4());
    ensure!(backend.claim(&key, LONG).await?, "the first claim of a key returned false");
    ensure!(!backend.claim(&key, LONG).await?, "a second claim within the ttl returned true");
    ensure!(!backend.claim(&key, SHORT).await?, "a claim with another ttl returned true");

    // Another key, another app: claims of their own.
    let other_key = format!("{key}:other");
    ensure!(backend.claim(&other_key, LONG).await?, "claiming a second key returned false");
    let other_app = backend.for_app(&format!("{}-other", backend.app_name()));
    let claimed_elsewhere = other_app.claim(&key, LONG).await;
    let flushed = other_app.flush().await;
    ensure!(claimed_elsewhere?, "a key claimed by one app could not be claimed by another");
    flushed?;

    // A claim whose ttl passed can be claimed again, not before.
    let short_key = format!("{key}:short");
    let claimed_at = Instant::now();
    ensure!(backend.claim(&short_key, SHORT).await?, "the first claim of a key returned false");
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if backend.claim(&short_key, SHORT).await? {
            let after = claimed_at.elapsed();
            ensure!(after + SLACK >= SHORT, "claimed again after {after:?}, within its {SHORT:?} ttl");
            break;
        }
        ensure!(claimed_at.elapsed() < WAIT, "a claim with a {SHORT:?} ttl still held after {WAIT:?}");
    }

    // Flushing the app removes its claims.
    backend.flush().await?;
    ensure!(backend.claim(&key, LONG).await?, "a claim survived flushing its app");
    Ok(())
}

// ---------------------------------------------------------------------------
// 15. Lease renewal
// ---------------------------------------------------------------------------

async fn check_extend_lease<B: Backend + Clone>(backend: B) -> Outcome {
    let task = add(&backend, "square", json!([7])).await?;
    let queued = add(&backend, "square", json!([8])).await?;
    let taken = fetch_within(&backend, 1, WAIT).await?;
    ensure_eq!(ids_of(&taken), [task.uuid]);
    ensure!(backend.extend_lease(task.uuid).await?, "extend_lease is false for a task this worker holds");
    ensure!(backend.extend_lease(task.uuid).await?, "extend_lease is false when renewed twice in a row");
    ensure!(!backend.extend_lease(queued.uuid).await?, "extend_lease is true for a queued task");
    ensure!(!backend.extend_lease(Uuid::new_v4()).await?, "extend_lease is true for an unknown task");

    let mut done = TaskRecord::from_message(&taken[0], TaskStatus::Success);
    done.result = Some(json!(49));
    backend.finish(&done).await?;
    ensure!(!backend.extend_lease(task.uuid).await?, "extend_lease is true for a finished task");
    ensure_eq!(backend.get(task.uuid).await?.ok_or("not stored")?.status, TaskStatus::Success);
    Ok(())
}

// ---------------------------------------------------------------------------
// The public checks
// ---------------------------------------------------------------------------

/// `name(lease) => body;`: a public check `name` running `body`, and
/// [`run_all`] running each on `make(lease)`.
macro_rules! checks {
    ($($(#[doc = $doc:literal])* $name:ident($lease:ident) => $body:ident;)*) => {
        $(
            $(#[doc = $doc])*
            pub async fn $name<B: Backend + Clone>(backend: B) -> Result<(), ConformanceError> {
                $body(backend).await.map_err(|error| ConformanceError { check: stringify!($name), error })
            }
        )*

        /// The name of every check, in the order [`run_all`] runs them.
        pub const CHECKS: &[&str] = &[$(stringify!($name)),*];

        /// Runs every check, in the order of [`CHECKS`], each on a fresh
        /// backend from `make(lease)` that is flushed afterwards; stops at
        /// the first failure.
        ///
        /// `lease` is how long a taken task may be held before it goes
        /// back to the queue, for a backend with leases (see
        /// [`Backend::lease_renewal`]): [`SHORT_LEASE`] for [`leases`],
        /// [`LEASE`] for the others. A backend without leases ignores it.
        pub async fn run_all<B, F, Fut>(mut make: F) -> Result<(), ConformanceError>
        where
            B: Backend + Clone,
            F: FnMut(Duration) -> Fut,
            Fut: Future<Output = B>,
        {
            $(
                let backend = make($lease).await;
                let outcome = $name(backend.clone()).await;
                let flushed = backend.flush().await;
                outcome?;
                flushed.map_err(|e| ConformanceError { check: stringify!($name), error: e.into() })?;
            )*
            Ok(())
        }
    };
}

checks! {
    /// Lower priority first, FIFO within a priority, across the whole
    /// queue: directly through `fetch` in small batches, then through a
    /// worker running one task at a time.
    order(LEASE) => check_order;
    /// `new → process → success` with timestamps moving forward and the
    /// result stored; the error path stores the error text; the cancel path
    /// stores status `cancel` and the reason.
    statuses(LEASE) => check_statuses;
    /// A record's status only moves forward: a late `update(process)` from
    /// a worker whose task was already finished (by itself or by another
    /// worker after a redelivery) does not undo the end.
    status_only_moves_forward(LEASE) => check_status_only_moves_forward;
    /// JSON arguments and results survive the backend unchanged, by
    /// position and by name, including a nested struct.
    results(LEASE) => check_results;
    /// A task whose result is JSON `null` (a `()` or `None` return) ends
    /// `success` with `result: Some(null)`: a result, not the absence of one.
    null_results(LEASE) => check_null_results;
    /// `wait`: returns a finished task's record at once, is woken when a
    /// running task ends, gives `None` when its timeout passes first (the
    /// task still finishes), serves several waiters of one task, and
    /// returns `None` at once for an unknown task.
    waiting(LEASE) => check_waiting;
    /// A task taken by a worker that dies (fetched, never finished). A
    /// backend with leases (give it one of [`SHORT_LEASE`]) hands it to the
    /// next fetch once the lease expires, not before, and a worker then
    /// completes it, once. A backend without leases keeps it `process` and
    /// never hands it out again.
    leases(SHORT_LEASE) => check_leases;
    /// 2,000 tasks through a worker running 32 at once: each ends `success`
    /// with its own result, runs once, and is listed once by `get_all`.
    many_tasks(LEASE) => check_many_tasks;
    /// Unknown task names and arguments that do not fit end `error` with a
    /// message; the worker keeps going.
    bad_input(LEASE) => check_bad_input;
    /// A queued task cancelled: `cancel` at once with the reason, its
    /// waiters wake, a second cancel changes nothing, and a worker started
    /// afterwards never runs it.
    cancel_queued(LEASE) => check_cancel_queued;
    /// Cancelling a task that ended changes nothing; an unknown task is
    /// `NotFound`.
    cancel_finished_and_unknown(LEASE) => check_cancel_finished_and_unknown;
    /// A running task (taken by `fetch`): `cancel` asks its worker, whose
    /// watched token fires; the record stays `process` until the worker
    /// ends it `cancel`.
    cancel_running(LEASE) => check_cancel_running;
    /// A delayed task is not fetched before its delay and is fetched after
    /// it, also by a fetch that was already waiting; a worker runs it.
    delayed(LEASE) => check_delayed;
    /// `stats`: queued (delayed included) and in-flight tasks, and per task
    /// name how many runs ended `success`, `error`, `retry` and `cancel`,
    /// each task counted once.
    stats(LEASE) => check_stats;
    /// Enqueueing an id that exists (queued, running or finished), directly
    /// or delayed, returns `false` and changes nothing: one task, fetched
    /// once, its record as first enqueued.
    idempotent_enqueue(LEASE) => check_idempotent_enqueue;
    /// `release`: a fetched task released is `new` again, fetched again
    /// at its old place with the same attempt, also by a fetch that was
    /// waiting; releasing a task that is queued, unknown, released already
    /// or finished returns `false`.
    release(LEASE) => check_release;
    /// `claim`: the first claim of a key is `true`, every other within its
    /// ttl `false`, and `true` again once the ttl passed (not before);
    /// keys and apps claim independently; `flush` removes the claims.
    claim(LEASE) => check_claim;
    /// `extend_lease` is `true` for a task this worker holds, `false` once
    /// it finished, and for a queued or unknown task.
    extend_lease(LEASE) => check_extend_lease;
    /// Named queues: a fetch takes from the queues it names only, in the
    /// order it names them (a later queue only when the earlier ones have
    /// nothing to give), by priority then FIFO within each; a waiting fetch
    /// ignores tasks of other queues; `queues` reports depth, delayed and
    /// in-flight tasks and the oldest waiting task per queue.
    named_queues(LEASE) => check_named_queues;
    /// Pausing a queue: enqueueing still works, no fetch takes from it
    /// (other queues of the same fetch still give), every handle of the
    /// app sees the flag and other apps do not; resuming wakes a waiting
    /// fetch; a task taken before the pause can still finish.
    pause(LEASE) => check_pause;
    /// Concurrency limits per task name, per queue and per key: a task
    /// over a limit stays queued (status `new`, at its place, not counted
    /// as anything); a finished or released task frees its slot and wakes
    /// a waiting fetch.
    concurrency_limits(LEASE) => check_concurrency_limits;
    /// On a backend with leases, the slot of a task whose worker died comes
    /// back with the task when its lease expires, and the limit still
    /// holds. Nothing to check without leases.
    limits_and_leases(SHORT_LEASE) => check_limits_and_leases;
    /// A rate of 5/s: at most a full bucket (5) at once, then one task per
    /// token, in enqueue order, a waiting fetch waking when a token is due.
    rate_limits(LEASE) => check_rate_limits;
    /// Unique keys: a duplicate of a task queued, running, or finished
    /// within its window gives the existing task's id and stores nothing;
    /// the key is free after the window (or at once with none), also after
    /// a cancel; keys are per app; of 8 enqueues of one key at once exactly
    /// one is new.
    unique(LEASE) => check_unique;
    /// `enqueue_many`: 300 tasks in one call come out in batch order with
    /// their arguments; an id or unique key that exists, or repeats within
    /// the batch, gives the existing id; a delayed task waits its delay.
    enqueue_many(LEASE) => check_enqueue_many;
    /// `list_tasks`: keyset pages newest first (ties by uuid), each task
    /// once, the cursor at the page's last task; filters by name, queue,
    /// status and enqueue time; an app lists only its own tasks.
    listing(LEASE) => check_listing;
    /// `minute_counts`: runs ended by `finish` and `cancel` show up in the
    /// minutes around now, by status, each once, one entry per minute,
    /// oldest first; a `since` after them gives none; an app counts only
    /// its own runs; `flush` removes them. A backend that does not count
    /// per minute (`None`) passes.
    minute_counts(LEASE) => check_minute_counts;
}
