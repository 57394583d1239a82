//! Dependencies and state (QTasks §5 `Depends` and `State`; behaviours E15
//! and E18), without QTasks's defects (§9.8): a per-worker value is made
//! once, each run gets its own per-task value, and every value is closed
//! exactly once, also when the task fails, panics, runs out of time or is
//! cancelled. On the memory backend, with one Redis smoke test.

mod support;

use qtasks::backend::CancelOutcome;
use qtasks::task::DependencyKind;
use qtasks::triggers::TaskExecutorAfterExecute;
use qtasks::{
    Backend, Dep, DependencyError, MemoryBackend, Provider, QueueTasks, State, TaskContext, TaskError, TaskStatus,
    json, plugin, task,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What happened to which value, in order.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<(u64, &'static str)>>,
    next: AtomicU64,
}

impl Log {
    fn push(&self, id: u64, what: &'static str) {
        self.events.lock().unwrap().push((id, what));
    }

    fn events(&self) -> Vec<(u64, &'static str)> {
        self.events.lock().unwrap().clone()
    }

    fn count(&self, what: &str) -> usize {
        self.events().iter().filter(|(_, w)| *w == what).count()
    }

    /// The events of one value, in order.
    fn of(&self, id: u64) -> Vec<&'static str> {
        self.events().into_iter().filter(|(i, _)| *i == id).map(|(_, w)| w).collect()
    }
}

/// A per-task dependency: a connection that records its life.
struct Conn {
    id: u64,
    value: i64,
    log: Arc<Log>,
}

/// A per-task provider of `Conn`, async open and async close (E15's
/// async-generator dependency).
fn conn_provider(log: &Arc<Log>) -> Provider<Conn> {
    let log = Arc::clone(log);
    Provider::per_task(move || {
        let log = Arc::clone(&log);
        async move {
            let id = log.next.fetch_add(1, Ordering::SeqCst);
            log.push(id, "open");
            Ok(Conn { id, value: 123, log })
        }
    })
    .on_close(|conn: Conn| async move {
        tokio::task::yield_now().await;
        conn.log.push(conn.id, "close");
    })
}

/// E15: uses the value between its open and its close.
#[task]
async fn e15(conn: Dep<Conn>) -> (u64, i64) {
    conn.log.push(conn.id, "use");
    tokio::time::sleep(Duration::from_millis(20)).await;
    (conn.id, conn.value)
}

/// E15 with many runs at once: as [`e15`], but keeps its value open until
/// another run has opened one too, so the runs overlap whatever the timing
/// (at most `WAIT`).
#[task]
async fn e15_together(conn: Dep<Conn>) -> (u64, i64) {
    conn.log.push(conn.id, "use");
    support::eventually(WAIT, || conn.log.count("open") >= 2).await;
    (conn.id, conn.value)
}

#[task]
async fn fails(conn: Dep<Conn>) -> Result<i64, TaskError> {
    conn.log.push(conn.id, "use");
    Err(TaskError::msg("boom"))
}

#[task]
async fn panics(conn: Dep<Conn>) -> i64 {
    conn.log.push(conn.id, "use");
    panic!("kaput")
}

#[task(max_time = 0.1)]
async fn too_slow(conn: Dep<Conn>) -> i64 {
    conn.log.push(conn.id, "use");
    tokio::time::sleep(Duration::from_secs(30)).await;
    conn.value
}

#[task]
async fn sleepy(conn: Dep<Conn>) -> i64 {
    conn.log.push(conn.id, "use");
    tokio::time::sleep(Duration::from_secs(30)).await;
    conn.value
}

/// Holds `blocking_slow` until its test has looked at the value.
static SLOW_GATE: support::Gate = support::Gate::new();

/// A sync task past its time limit goes on running detached with its value
/// (until the test opens [`SLOW_GATE`]).
#[task(max_time = 0.1)]
fn blocking_slow(conn: Dep<Conn>) -> i64 {
    conn.log.push(conn.id, "use");
    SLOW_GATE.wait();
    conn.log.push(conn.id, "end");
    conn.value
}

/// A sync task with a per-task value.
#[task]
fn blocking_ok(conn: Dep<Conn>, plus: i64) -> i64 {
    conn.log.push(conn.id, "use");
    conn.value + plus
}

/// A per-worker dependency.
struct Pool {
    id: u64,
    log: Arc<Log>,
}

fn pool_provider(log: &Arc<Log>) -> Provider<Pool> {
    let log = Arc::clone(log);
    // Sync open and sync close.
    Provider::per_worker(move || {
        let id = log.next.fetch_add(1, Ordering::SeqCst);
        log.push(id, "open");
        Ok(Pool { id, log: Arc::clone(&log) })
    })
    .on_close(|pool: Pool| pool.log.push(pool.id, "close"))
}

#[task]
async fn uses_pool(pool: Dep<Pool>, conn: Dep<Conn>) -> (u64, u64) {
    tokio::time::sleep(Duration::from_millis(10)).await;
    (pool.id, conn.id)
}

/// Never provided.
struct Missing;

#[task]
async fn needs_missing(_m: Dep<Missing>) {}

#[task]
async fn asks_missing(ctx: TaskContext) -> Result<(), TaskError> {
    ctx.dep::<Missing>().await?;
    Ok(())
}

type Tasks = (E15, E15Together, Fails, Panics, TooSlow, Sleepy, BlockingSlow, BlockingOk, UsesPool);

/// An app whose per-task values record into `log`, its per-worker ones into `pools`.
fn app<B: Backend>(name: &str, backend: B, log: &Arc<Log>, pools: &Arc<Log>) -> QueueTasks<(Tasks,), (), B> {
    QueueTasks::builder(support::app_name(name, &backend))
        .tasks::<Tasks>()
        .provide(conn_provider(log))
        .provide(pool_provider(pools))
        .backend(backend)
        .build()
        .unwrap()
}

/// Waits until `cond` holds, for at most `WAIT`.
async fn eventually(cond: impl FnMut() -> bool) -> bool {
    support::eventually(WAIT, cond).await
}

// ---------------------------------------------------------------------------
// Per-task dependencies
// ---------------------------------------------------------------------------

/// E15: 500 concurrent tasks; each opens its own value, sees 123 in it and
/// closes it, in that order; by the time every result is in, all 500 are
/// closed, none twice.
async fn e15_each_task_opens_uses_and_closes_its_own_value<B: Backend>(backend: B, n: usize) -> TestResult {
    let log = Arc::new(Log::default());
    let app = app("deps-e15", backend, &log, &Arc::default());
    let worker = app.worker().max_tasks_process(n).start().await?;
    let mut handles = Vec::new();
    for _ in 0..n {
        handles.push(app.enqueue(E15Together::call()).await?);
    }
    let mut ids = HashSet::new();
    for handle in handles {
        let (id, value) = handle.result(WAIT).await?;
        assert_eq!(value, 123);
        assert!(ids.insert(id), "value {id} was given to two runs");
    }
    // Closed before the results were stored.
    assert_eq!((log.count("open"), log.count("use"), log.count("close")), (n, n, n));
    for id in &ids {
        assert_eq!(log.of(*id), ["open", "use", "close"], "value {id}");
    }
    // The runs overlapped: values were open at the same time.
    let (mut open, mut most) = (0i64, 0i64);
    for (_, what) in log.events() {
        match what {
            "open" => open += 1,
            "close" => open -= 1,
            _ => {}
        }
        most = most.max(open);
    }
    assert!(most > 1, "at most {most} value open at once");
    worker.shutdown().await;
    Ok(())
}

/// The value `id` was opened, used and closed, once each; checked as soon
/// as the final status is visible, so closed before it was stored.
fn closed_once(log: &Log, id: u64) {
    assert_eq!(log.of(id), ["open", "use", "close"]);
}

/// A task that returns an error, one that panics, one past its time limit:
/// each ends `error` and its value is closed.
async fn closed_when_the_task_fails<B: Backend>(backend: B) -> TestResult {
    let log = Arc::new(Log::default());
    let app = app("deps-fail", backend, &log, &Arc::default());
    let worker = app.worker().start().await?;
    for (name, error) in
        [("fails", "boom"), ("panics", "task panicked: kaput"), ("too_slow", "time limit exceeded (0.100 s)")]
    {
        let before = log.next.load(Ordering::SeqCst);
        let done = app.add_task(name, json!([])).await?.record(WAIT).await?;
        assert_eq!((done.status, done.error.as_deref()), (TaskStatus::Error, Some(error)), "{name}");
        assert_eq!(log.next.load(Ordering::SeqCst), before + 1, "{name}: one value opened");
        closed_once(&log, before);
    }
    worker.shutdown().await;
    Ok(())
}

/// A cancelled task's value is closed.
async fn closed_when_the_task_is_cancelled<B: Backend>(backend: B) -> TestResult {
    let log = Arc::new(Log::default());
    let app = app("deps-cancel", backend, &log, &Arc::default());
    let worker = app.worker().start().await?;
    let task = app.add_task("sleepy", json!([])).await?;
    assert!(eventually(|| log.count("use") == 1).await, "the task never started");
    assert_eq!(app.cancel(task.uuid(), "enough").await?, CancelOutcome::Requested);
    let done = app.wait(task.uuid(), WAIT).await?;
    assert_eq!((done.status, done.error.as_deref()), (TaskStatus::Cancel, Some("enough")));
    closed_once(&log, 0);
    worker.shutdown().await;
    Ok(())
}

/// A sync task past its time limit ends `error` at once but still runs with
/// its value: the value is closed when the task returns, not before.
async fn closed_after_a_detached_sync_task_returns<B: Backend>(backend: B) -> TestResult {
    let log = Arc::new(Log::default());
    let app = app("deps-detached", backend, &log, &Arc::default());
    let worker = app.worker().start().await?;
    let done = app.add_task("blocking_slow", json!([])).await?.record(WAIT).await?;
    assert_eq!(done.status, TaskStatus::Error);
    assert_eq!(log.of(0), ["open", "use"], "still in use: not closed yet");
    SLOW_GATE.open();
    assert!(eventually(|| log.count("close") == 1).await, "never closed");
    assert_eq!(log.of(0), ["open", "use", "end", "close"]);
    worker.shutdown().await;
    Ok(())
}

/// A sync task gets its value like an async one; JSON arguments come after.
async fn sync_tasks_get_values_too<B: Backend>(backend: B) -> TestResult {
    let log = Arc::new(Log::default());
    let app = app("deps-sync", backend, &log, &Arc::default());
    let worker = app.worker().start().await?;
    assert_eq!(app.enqueue(BlockingOk::call(1)).await?.result(WAIT).await?, 124);
    assert_eq!(app.add_task("blocking_ok", json!({"plus": 2})).await?.record(WAIT).await?.result, Some(json!(125)));
    assert_eq!((log.count("open"), log.count("close")), (2, 2));
    worker.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Per-worker dependencies
// ---------------------------------------------------------------------------

/// A per-worker value is opened once at start, shared by the tasks the
/// worker runs (next to their own per-task values), and closed at shutdown;
/// another worker has its own.
async fn per_worker_values_live_as_long_as_the_worker<B: Backend>(backend: B) -> TestResult {
    let (log, pools) = (Arc::new(Log::default()), Arc::new(Log::default()));
    let app = app("deps-worker", backend, &log, &pools);
    let worker = app.worker().max_tasks_process(4).start().await?;
    assert_eq!(pools.events(), [(0, "open")]);
    let mut handles = Vec::new();
    for _ in 0..8 {
        handles.push(app.enqueue(UsesPool::call()).await?);
    }
    let mut conns = HashSet::new();
    for handle in handles {
        let (pool, conn) = handle.result(WAIT).await?;
        assert_eq!(pool, 0, "every task of the worker shares its value");
        conns.insert(conn);
    }
    assert_eq!(conns.len(), 8, "each run has its own per-task value");
    assert_eq!((log.count("open"), log.count("close")), (8, 8));
    assert_eq!(pools.events(), [(0, "open")], "not closed while the worker runs");

    let second = app.worker().start().await?;
    assert_eq!(pools.of(1), ["open"], "another worker has its own");
    worker.shutdown().await;
    assert_eq!(pools.events(), [(0, "open"), (1, "open"), (0, "close")]);
    let (pool, _) = app.enqueue(UsesPool::call()).await?.result(WAIT).await?;
    assert_eq!(pool, 1);
    second.shutdown().await;
    assert_eq!(pools.of(1), ["open", "close"]);
    Ok(())
}

// ---------------------------------------------------------------------------
// Missing and failing dependencies
// ---------------------------------------------------------------------------

/// A task whose dependency or state is not provided keeps the worker from
/// starting, with a message that names the task, the type and the fix.
#[tokio::test]
async fn a_worker_does_not_start_without_a_declared_dependency() -> TestResult {
    let app = QueueTasks::builder("deps-missing").task::<NeedsMissing>().build()?;
    let error = match app.worker().start().await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the worker started without `Missing`"),
    };
    assert_eq!(
        error,
        "dependency `deps_state::Missing` is not provided (needed by task `needs_missing`); add it with \
         Builder::provide(Provider::per_task(…)) or Builder::provide(Provider::per_worker(…))"
    );

    let app = QueueTasks::builder("deps-missing-state").task::<Step2>().build()?;
    let error = app.worker().start().await.err().ok_or("started without the state")?;
    assert!(matches!(error, qtasks::Error::Dependency(DependencyError::StateNotProvided { .. })));
    assert_eq!(
        error.to_string(),
        "state `deps_state::Dialog` is not provided (needed by task `step2`); add it with Builder::state(…)"
    );
    Ok(())
}

/// A task that asks its context for a dependency nobody provides ends
/// `error` with the same message.
#[tokio::test]
async fn asking_for_a_missing_dependency_fails_the_task() -> TestResult {
    let app = QueueTasks::builder("deps-ask").task::<AsksMissing>().build()?;
    let worker = app.worker().start().await?;
    let done = app.add_task("asks_missing", json!([])).await?.record(WAIT).await?;
    assert_eq!(done.status, TaskStatus::Error);
    assert!(
        done.error.as_deref().unwrap_or("").starts_with(
            "dependency `deps_state::Missing` is not provided (needed by task `asks_missing`); add it with Builder::provide("
        ),
        "{:?}",
        done.error
    );
    worker.shutdown().await;
    Ok(())
}

/// A per-task open that fails ends the run `error` naming the type; a
/// per-worker open that fails is the worker's start error, and the
/// per-worker values opened before it are closed.
#[tokio::test]
async fn failing_opens_name_the_dependency() -> TestResult {
    let log = Arc::new(Log::default());
    let app = QueueTasks::builder("deps-open-task")
        .task::<E15>()
        .provide(Provider::per_task(|| async { Err::<Conn, _>("connection refused".into()) }))
        .build()?;
    let worker = app.worker().start().await?;
    let done = app.add_task("e15", json!([])).await?.record(WAIT).await?;
    assert_eq!(done.status, TaskStatus::Error);
    assert_eq!(done.error.as_deref(), Some("dependency `deps_state::Conn` could not be opened: connection refused"));
    worker.shutdown().await;

    let app = QueueTasks::builder("deps-open-worker")
        .task::<UsesPool>()
        .provide(pool_provider(&log))
        .provide(Provider::per_worker(|| Err::<Conn, _>(std::io::Error::other("no database").into())))
        .build()?;
    let error = app.worker().start().await.err().ok_or("the worker started")?;
    assert_eq!(error.to_string(), "dependency `deps_state::Conn` could not be opened: no database");
    assert_eq!(log.events(), [(0, "open"), (0, "close")]);
    Ok(())
}

/// A close that fails or panics is logged; the task's result stands and
/// the worker goes on.
#[tokio::test]
async fn a_failing_close_does_not_change_the_result() -> TestResult {
    let app = QueueTasks::builder("deps-close-fails")
        .task::<BlockingOk>()
        .provide(
            Provider::per_task(|| Ok(Conn { id: 0, value: 1, log: Arc::default() }))
                .on_close(|_: Conn| Err::<(), _>("could not flush")),
        )
        .build()?;
    let worker = app.worker().start().await?;
    assert_eq!(app.enqueue(BlockingOk::call(1)).await?.result(WAIT).await?, 2);
    worker.shutdown().await;

    let app = QueueTasks::builder("deps-close-panics")
        .task::<BlockingOk>()
        .provide(
            Provider::per_task(|| Ok(Conn { id: 0, value: 1, log: Arc::default() }))
                .on_close(|conn: Conn| async move { assert_eq!(conn.value, 0, "close panicked") }),
        )
        .build()?;
    let worker = app.worker().start().await?;
    assert_eq!(app.enqueue(BlockingOk::call(1)).await?.result(WAIT).await?, 2);
    assert_eq!(app.enqueue(BlockingOk::call(2)).await?.result(WAIT).await?, 3);
    worker.shutdown().await;
    Ok(())
}

/// What `TaskContext::current()` gave to a close hook or an event handler.
type SeenIds = Arc<Mutex<Vec<(&'static str, Option<uuid::Uuid>)>>>;

/// A per-task value whose close hook notes the task it sees as current.
struct WatchedValue(SeenIds);

#[task]
async fn watched(value: Dep<WatchedValue>) -> usize {
    value.0.lock().unwrap().len()
}

/// In an app without plugins, the task's context is current in the close
/// hooks of its dependencies, and, once an event handler listens, in the
/// event handlers too (the worker skips the scope around the whole run
/// only where nobody can look).
#[tokio::test]
async fn close_hooks_and_event_handlers_see_the_tasks_context_without_plugins() -> TestResult {
    for with_events in [false, true] {
        let seen: SeenIds = Arc::default();
        let provider = {
            let seen = Arc::clone(&seen);
            Provider::per_task(move || {
                let seen = Arc::clone(&seen);
                async move { Ok(WatchedValue(seen)) }
            })
            .on_close(|value: WatchedValue| async move {
                value.0.lock().unwrap().push(("close", TaskContext::current().map(|c| c.uuid())));
            })
        };
        let mut builder = QueueTasks::builder("deps-current").task::<Watched>().provide(provider);
        if with_events {
            let seen = Arc::clone(&seen);
            builder = builder.on(qtasks::EventKind::TaskSuccess, move |_: &qtasks::Event| {
                seen.lock().unwrap().push(("event", TaskContext::current().map(|c| c.uuid())));
            });
        }
        let app = builder.build()?;
        let worker = app.worker().start().await?;
        let handle = app.enqueue(Watched::call()).await?;
        handle.result(WAIT).await?;
        let uuid = Some(handle.uuid());
        let want: &[(&str, _)] = if with_events { &[("close", uuid), ("event", uuid)] } else { &[("close", uuid)] };
        assert!(eventually(|| seen.lock().unwrap().len() == want.len()).await, "{:?}", seen.lock().unwrap());
        assert_eq!(*seen.lock().unwrap(), want, "with events: {with_events}");
        worker.shutdown().await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Handlers share the run's value
// ---------------------------------------------------------------------------

/// Records which `Conn` a handler got from the task's context.
#[derive(Clone, Default)]
struct SeesConn {
    seen: Arc<Mutex<Vec<u64>>>,
}

#[plugin]
impl SeesConn {
    async fn task_executor_after_execute(&self, _ctx: &TaskExecutorAfterExecute<'_>) {
        let ctx = TaskContext::current().expect("inside a task");
        let conn = ctx.dep::<Conn>().await.expect("the run's value");
        self.seen.lock().unwrap().push(conn.id);
    }
}

/// A handler that runs for a task gets the run's own per-task value from
/// `TaskContext::current()`, not a new one.
#[tokio::test]
async fn handlers_see_the_runs_value() -> TestResult {
    let log = Arc::new(Log::default());
    let plugin = SeesConn::default();
    let app = QueueTasks::builder("deps-handler")
        .task::<E15>()
        .provide(conn_provider(&log))
        .plugin(plugin.clone())
        .build()?;
    let worker = app.worker().start().await?;
    let (a, _) = app.enqueue(E15::call()).await?.result(WAIT).await?;
    let (b, _) = app.enqueue(E15::call()).await?.result(WAIT).await?;
    assert_eq!(*plugin.seen.lock().unwrap(), [a, b]);
    assert_eq!((log.count("open"), log.count("close")), (2, 2));
    worker.shutdown().await;
    Ok(())
}

/// A context made in a test has nothing provided.
#[tokio::test]
async fn a_test_context_has_no_dependency() {
    let ctx = TaskContext::new(qtasks::Uuid::new_v4(), "t", 1);
    assert!(matches!(ctx.dep::<Conn>().await, Err(DependencyError::NotProvided { task: Some("t"), .. })));
    assert!(matches!(ctx.state::<Dialog>(), Err(DependencyError::StateNotProvided { .. })));
}

// ---------------------------------------------------------------------------
// State (E18)
// ---------------------------------------------------------------------------

/// A conversation's state, shared by the tasks of the app.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Dialog {
    state: Option<String>,
    step: u32,
    prompt: Option<String>,
}

/// E18 step 1 (async): sets the state.
#[task]
async fn step1(state: State<Dialog>, prompt: String) {
    let mut dialog = state.write().await;
    dialog.state = Some("await_phone".into());
    dialog.step += 1;
    dialog.prompt = Some(prompt);
}

/// E18 step 2 (sync, on the blocking pool): reads the state, then clears it.
#[task]
fn step2(ctx: &TaskContext, state: State<Dialog>) -> (Dialog, String) {
    let mut dialog = state.blocking_write();
    let seen = std::mem::take(&mut *dialog);
    (seen, ctx.name().to_owned())
}

/// E18: step 1 fills the shared state, step 2 reads what step 1 wrote and
/// clears it; the app sees the state cleared.
async fn e18_state_flows_between_tasks<B: Backend>(backend: B) -> TestResult {
    let app = QueueTasks::builder(backend.app_name().to_owned())
        .tasks::<(Step1, Step2)>()
        .state(Dialog::default())
        .backend(backend)
        .build()?;
    let worker = app.worker().start().await?;
    app.enqueue(Step1::call("Send your phone number".to_owned())).await?.result(WAIT).await?;
    let (seen, name) = app.enqueue(Step2::call()).await?.result(WAIT).await?;
    assert_eq!(name, "step2");
    assert_eq!(
        serde_json::to_value(&seen)?,
        json!({"state": "await_phone", "step": 1, "prompt": "Send your phone number"})
    );
    let state = app.state::<Dialog>().ok_or("no state")?;
    assert_eq!(*state.read().await, Dialog::default(), "step 2 cleared it");
    worker.shutdown().await;
    Ok(())
}

/// Concurrent writers never lose an update.
#[task]
async fn bump(counter: State<HashMap<String, u64>>, key: String) {
    let mut map = counter.write().await;
    let n = map.entry(key).or_default();
    let before = *n;
    tokio::task::yield_now().await;
    *n = before + 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_updates_are_not_lost() -> TestResult {
    let app = QueueTasks::builder("state-bump").task::<Bump>().state(HashMap::<String, u64>::new()).build()?;
    let worker = app.worker().max_tasks_process(50).start().await?;
    let mut handles = Vec::new();
    for _ in 0..200 {
        handles.push(app.enqueue(Bump::call("k".to_owned())).await?);
    }
    for handle in handles {
        handle.result(WAIT).await?;
    }
    assert_eq!(app.state::<HashMap<String, u64>>().ok_or("no state")?.read().await["k"], 200);
    worker.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Declarations
// ---------------------------------------------------------------------------

/// `Dep`/`State` parameters are not JSON arguments: `params` leaves them
/// out and `deps` lists them, as written.
#[test]
fn task_info_lists_dependencies_apart_from_arguments() {
    use qtasks::Task;
    assert_eq!(Step1::INFO.params, ["prompt"]);
    let deps: Vec<_> = Step1::INFO.deps.iter().map(|d| (d.name(), d.kind())).collect();
    assert_eq!(deps, [("Dialog", DependencyKind::State)]);
    let deps: Vec<_> = UsesPool::INFO.deps.iter().map(|d| (d.name(), d.kind(), d.type_name())).collect();
    assert_eq!(
        deps,
        [("Pool", DependencyKind::Dep, "deps_state::Pool"), ("Conn", DependencyKind::Dep, "deps_state::Conn")]
    );
    assert!(UsesPool::INFO.params.is_empty());
    assert_eq!(
        serde_json::to_value(UsesPool::INFO.deps).unwrap(),
        json!([{"name": "Pool", "kind": "dep"}, {"name": "Conn", "kind": "dep"}])
    );
}

macro_rules! both {
    ($($check:ident($($arg:expr),*))*) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    if let Err(e) = super::$check(super::MemoryBackend::new() $(, $arg)*).await {
                        panic!("memory {}: {e}", stringify!($check));
                    }
                }
            )*
        }
    };
}

both! {
    e15_each_task_opens_uses_and_closes_its_own_value(500)
    closed_when_the_task_fails()
    closed_when_the_task_is_cancelled()
    closed_after_a_detached_sync_task_returns()
    sync_tasks_get_values_too()
    per_worker_values_live_as_long_as_the_worker()
    e18_state_flows_between_tasks()
}

/// On Redis: E15 with 50 tasks, a per-worker value, and E18.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(redis_unreachable, ignore = "Redis is not reachable; see the build warning")]
async fn redis_smoke() {
    for (check, n) in [("e15", 50), ("worker", 0), ("e18", 0)] {
        let app = format!("qtasks-deps-{check}-{}", qtasks::Uuid::new_v4());
        let Some(backend) = support::connect_redis("redis deps_state", &app).await else { return };
        let result = match check {
            "e15" => e15_each_task_opens_uses_and_closes_its_own_value(backend.clone(), n).await,
            "worker" => per_worker_values_live_as_long_as_the_worker(backend.clone()).await,
            _ => e18_state_flows_between_tasks(backend.clone()).await,
        };
        let _ = Backend::flush(&backend).await;
        if let Err(e) = result {
            panic!("redis {check}: {e}");
        }
    }
}
