//! Stream tasks (QTasks §4.7, behaviour E4): a function returning
//! `impl Stream<Item = T>` or (on the blocking pool) `impl Iterator<Item = T>`
//! whose items, each passed through the optional `map` handler, make the
//! task's result; `task_executor_run_task_gen` fires on that list. Every
//! check is a generic function over the backend, run as `memory::<check>`
//! and `redis::<check>`.

mod support;

use futures::StreamExt;
use qtasks::backend::CancelOutcome;
use qtasks::triggers::{TaskExecutorRunTask, TaskExecutorRunTaskGen};
use qtasks::{
    Backend, MemoryBackend, QueueTasks, Stream, TaskContext, TaskStatus, Value, WaitError, json, plugin, stream, task,
};
use std::collections::HashMap;
use std::num::ParseIntError;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What tasks saw, by the id of the run.
static SEEN: Mutex<Option<HashMap<Uuid, String>>> = Mutex::new(None);

fn saw(uuid: Uuid, what: impl Into<String>) {
    SEEN.lock().unwrap().get_or_insert_with(HashMap::new).insert(uuid, what.into());
}

fn seen(uuid: Uuid) -> Option<String> {
    SEEN.lock().unwrap().as_ref()?.get(&uuid).cloned()
}

/// Items produced by the endless tasks, by the key their arguments name.
static PRODUCED: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

fn produce(key: &str) {
    *PRODUCED.lock().unwrap().get_or_insert_with(HashMap::new).entry(key.to_owned()).or_insert(0) += 1;
}

fn produced(key: &str) -> u64 {
    PRODUCED.lock().unwrap().as_ref().and_then(|p| p.get(key).copied()).unwrap_or(0)
}

/// QTasks's `generate_handler` of E4.
fn add_two(x: u32) -> u32 {
    x + 2
}

/// E4: yields n+1 … n+5, each mapped by `add_two`; reads its own id.
#[task(map = add_two)]
async fn test_yield(ctx: TaskContext, n: u32) -> impl Stream<Item = u32> {
    saw(ctx.uuid(), "test_yield");
    stream::iter(1..=5).then(move |i| async move {
        tokio::task::yield_now().await;
        n + i
    })
}

/// An async handler that changes the item type.
async fn label(x: u32) -> String {
    tokio::time::sleep(Duration::from_millis(1)).await;
    format!("#{x}")
}

/// A sync `fn` returning a stream, with an async `map` to another type.
#[task(map = label, map_item = String)]
fn labels(n: u32) -> impl Stream<Item = u32> + Send {
    stream::iter(0..n)
}

/// A blocking iterator; sees its context through `TaskContext::current`.
#[task(map = |x: u64| x * 10)]
fn squares(n: u64) -> impl Iterator<Item = u64> {
    let current = TaskContext::current().expect("a context on the blocking pool");
    saw(current.uuid(), format!("squares on {:?}", std::thread::current().name()));
    (1..=n).map(|i| i * i)
}

/// Fallible items: the first `Err` ends the task `error`.
#[task]
fn parse_all(items: Vec<String>) -> impl Iterator<Item = Result<i64, ParseIntError>> {
    items.into_iter().map(|s| s.parse::<i64>())
}

/// Fallible items of a stream, through an async `map`.
#[task(map = halve)]
async fn parse_stream(items: Vec<String>) -> impl Stream<Item = Result<i64, ParseIntError>> {
    stream::iter(items).map(|s| s.parse::<i64>())
}

async fn halve(x: i64) -> i64 {
    x / 2
}

/// Never ends: an item every 10 ms.
#[task]
fn endless(key: String) -> impl Stream<Item = u64> {
    stream::unfold(0u64, move |i| {
        let key = key.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            produce(&key);
            Some((i, i + 1))
        }
    })
}

/// Never ends, on the blocking pool: an item every 5 ms.
#[task]
fn endless_blocking(key: String) -> impl Iterator<Item = u64> {
    (0u64..).inspect(move |_| {
        std::thread::sleep(Duration::from_millis(5));
        produce(&key);
    })
}

/// Never ends; stopped by its time limit.
#[task(max_time = 0.3)]
fn endless_limited() -> impl Iterator<Item = u64> {
    (0u64..).inspect(|_| std::thread::sleep(Duration::from_millis(5)))
}

/// Panics after two items.
#[task]
fn panicking() -> impl Iterator<Item = u32> {
    (0..5).inspect(|&i| assert!(i < 2, "item {i} is too many"))
}

/// A plain task, for the triggers' comparison.
#[task]
async fn plain(n: u32) -> u32 {
    n
}

type Tasks =
    (TestYield, Labels, Squares, ParseAll, ParseStream, Endless, EndlessBlocking, EndlessLimited, Panicking, Plain);

fn app<B: Backend>(name: &str, backend: B) -> QueueTasks<(Tasks,), (), B> {
    QueueTasks::builder(support::app_name(name, &backend)).tasks::<Tasks>().backend(backend).build().unwrap()
}

fn key(check: &str) -> String {
    format!("{check}-{}", Uuid::new_v4())
}

/// Waits until `cond` holds, for at most `WAIT`.
async fn eventually(cond: impl FnMut() -> bool) -> bool {
    support::eventually(WAIT, cond).await
}

/// E4: `test_yield(5)` gives `[8, 9, 10, 11, 12]`, by name and typed; the
/// task read its own id.
async fn e4_async_stream_with_map<B: Backend>(backend: B) -> TestResult {
    let app = app("streams-e4", backend);
    let worker = app.worker().start().await?;
    let done = app.add_task("test_yield", json!([5])).await?.record(WAIT).await?;
    assert_eq!(done.status, TaskStatus::Success, "{:?}", done.error);
    assert_eq!(done.result, Some(json!([8, 9, 10, 11, 12])));
    assert_eq!(seen(done.uuid).as_deref(), Some("test_yield"));

    let typed: Vec<u32> = app.enqueue(TestYield::call(0)).await?.result(WAIT).await?;
    assert_eq!(typed, [3, 4, 5, 6, 7]);
    worker.shutdown().await;
    Ok(())
}

/// A sync `fn` returning a stream, an async `map` that changes the item
/// type (`map_item`), and an empty stream.
async fn async_map_to_another_type<B: Backend>(backend: B) -> TestResult {
    let app = app("streams-async-map", backend);
    let worker = app.worker().start().await?;
    let typed: Vec<String> = app.enqueue(Labels::call(3)).await?.result(WAIT).await?;
    assert_eq!(typed, ["#0", "#1", "#2"]);
    let empty = app.add_task("labels", json!([0])).await?.record(WAIT).await?;
    assert_eq!((empty.status, empty.result), (TaskStatus::Success, Some(json!([]))));
    worker.shutdown().await;
    Ok(())
}

/// A blocking iterator runs off the async runtime's workers, sees its
/// context, and its items go through a closure `map`.
async fn blocking_iterator<B: Backend>(backend: B) -> TestResult {
    let app = app("streams-blocking", backend);
    let worker = app.worker().start().await?;
    let handle = app.enqueue(Squares::call(4)).await?;
    assert_eq!(handle.result(WAIT).await?, [10, 40, 90, 160]);
    let what = seen(handle.uuid()).ok_or("the iterator did not see its context")?;
    assert!(what.starts_with("squares on "), "{what}");
    worker.shutdown().await;
    Ok(())
}

/// `Result` items: all `Ok` gives the list; the first `Err` ends the task
/// `error` with its message, on the blocking pool and in a stream.
async fn result_items<B: Backend>(backend: B) -> TestResult {
    let app = app("streams-results", backend);
    let worker = app.worker().start().await?;
    let ok: Vec<i64> = app.enqueue(ParseAll::call(vec!["1".into(), "-2".into()])).await?.result(WAIT).await?;
    assert_eq!(ok, [1, -2]);
    for name in ["parse_all", "parse_stream"] {
        let bad = app.add_task(name, json!([["4", "x", "6"]])).await?.record(WAIT).await?;
        assert_eq!(bad.status, TaskStatus::Error, "{name}");
        assert_eq!(bad.error.as_deref(), Some("invalid digit found in string"), "{name}");
        assert_eq!(bad.result, None);
    }
    let halved: Vec<i64> = app.enqueue(ParseStream::call(vec!["4".into(), "10".into()])).await?.result(WAIT).await?;
    assert_eq!(halved, [2, 5]);
    worker.shutdown().await;
    Ok(())
}

/// A client cancels a stream that never ends: it stops and ends `cancel`
/// with the reason, async and blocking alike, and produces no more items.
async fn cancelling_an_endless_stream<B: Backend>(backend: B) -> TestResult {
    let app = app("streams-cancel", backend);
    let worker = app.worker().start().await?;
    for name in ["endless", "endless_blocking"] {
        let k = key(name);
        let task = app.add_task(name, json!([k])).await?;
        assert!(eventually(|| produced(&k) >= 3).await, "{name} never produced");
        assert_eq!(app.cancel(task.uuid(), "enough items").await?, CancelOutcome::Requested);
        let done = app.wait(task.uuid(), WAIT).await?;
        assert_eq!((done.status, done.error.as_deref()), (TaskStatus::Cancel, Some("enough items")), "{name}");
        assert_eq!(done.result, None);
        // At most the item in flight comes after the cancel.
        let after = produced(&k);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(produced(&k) <= after + 1, "{name} kept producing: {after} then {}", produced(&k));
    }
    worker.shutdown().await;
    Ok(())
}

/// `max_time` stops a blocking iterator that never ends: `error`.
async fn time_limit_stops_an_endless_iterator<B: Backend>(backend: B) -> TestResult {
    let app = app("streams-time-limit", backend);
    let worker = app.worker().start().await?;
    match app.enqueue(EndlessLimited::call()).await?.result(WAIT).await {
        Err(WaitError::Failed(e)) => assert!(e.contains("time limit"), "{e}"),
        other => panic!("expected a time limit error, got {other:?}"),
    }
    worker.shutdown().await;
    Ok(())
}

/// A panic in a blocking iterator ends the task `error`.
async fn a_panicking_iterator_fails<B: Backend>(backend: B) -> TestResult {
    let app = app("streams-panic", backend);
    let worker = app.worker().start().await?;
    let done = app.add_task("panicking", json!([])).await?.record(WAIT).await?;
    assert_eq!(done.status, TaskStatus::Error);
    assert!(done.error.as_deref().unwrap_or("").contains("item 2 is too many"), "{:?}", done.error);
    worker.shutdown().await;
    Ok(())
}

/// Reverses a stream task's items; records which result trigger fired for which task.
struct Reverse {
    log: std::sync::Arc<Mutex<Vec<String>>>,
}

#[plugin]
impl Reverse {
    fn task_executor_run_task_gen(&self, ctx: &TaskExecutorRunTaskGen<'_>) -> Option<Vec<Value>> {
        self.log.lock().unwrap().push(format!("gen {} {}", ctx.task.name, Value::Array(ctx.results.clone())));
        Some(ctx.results.iter().rev().cloned().collect())
    }

    fn task_executor_run_task(&self, ctx: &TaskExecutorRunTask<'_>) -> Option<Value> {
        self.log.lock().unwrap().push(format!("run {} {}", ctx.task.name, ctx.result));
        None
    }
}

/// `task_executor_run_task_gen` fires on a stream task's mapped list (and
/// `task_executor_run_task` does not); the list it returns is the result.
async fn a_plugin_replaces_the_list<B: Backend>(backend: B) -> TestResult {
    let log = std::sync::Arc::default();
    let app = QueueTasks::builder(backend.app_name().to_owned())
        .tasks::<Tasks>()
        .plugin(Reverse { log: std::sync::Arc::clone(&log) })
        .backend(backend)
        .build()?;
    let worker = app.worker().start().await?;
    let reversed: Vec<u32> = app.enqueue(TestYield::call(5)).await?.result(WAIT).await?;
    assert_eq!(reversed, [12, 11, 10, 9, 8]);
    assert_eq!(app.enqueue(Plain::call(7)).await?.result(WAIT).await?, 7);
    assert_eq!(*log.lock().unwrap(), ["gen test_yield [8,9,10,11,12]", "run plain 7"]);
    worker.shutdown().await;
    Ok(())
}

support::on_both_backends! {
    "qtasks-streams":
    e4_async_stream_with_map
    async_map_to_another_type
    blocking_iterator
    result_items
    cancelling_an_endless_stream
    time_limit_stops_an_endless_iterator
    a_panicking_iterator_fails
    a_plugin_replaces_the_list
}

/// Listings say which tasks are streams; an iterator task is blocking, a
/// stream task is not, even when its function is a sync `fn`.
#[test]
fn task_info_marks_stream_tasks() {
    let info = |name: &str| *app("streams-info", MemoryBackend::new()).tasks().iter().find(|t| t.name == name).unwrap();
    let flags = |name| {
        let i = info(name);
        (i.stream, i.blocking)
    };
    assert_eq!(flags("test_yield"), (true, false));
    assert_eq!(flags("labels"), (true, false));
    assert_eq!(flags("squares"), (true, true));
    assert_eq!(flags("plain"), (false, false));
    assert_eq!(info("test_yield").params, ["n"]);
    let listed = serde_json::to_value(info("squares")).unwrap();
    assert_eq!(listed["stream"], json!(true));
}

/// A stream task's `Output` is the `Vec` of its (mapped) items.
#[test]
fn the_typed_result_is_a_vec() {
    fn output_of<K: qtasks::Task>() -> std::marker::PhantomData<K::Output> {
        std::marker::PhantomData
    }
    let _: std::marker::PhantomData<Vec<u32>> = output_of::<TestYield>();
    let _: std::marker::PhantomData<Vec<String>> = output_of::<Labels>();
    let _: std::marker::PhantomData<Vec<i64>> = output_of::<ParseAll>();
}

/// The worker's start-up banner marks stream tasks.
#[test]
fn the_worker_banner_marks_stream_tasks() {
    let text = qtasks::cli::banner(&app("streams-banner", MemoryBackend::new()), "memory://", 1, None);
    assert!(text.contains("    . test_yield (stream)\n"), "{text}");
    assert!(text.contains("    . plain\n"), "{text}");
}

/// An offset kept in the app's state.
struct Offset(u32);

/// A stream task with a `State<T>` parameter, read between items.
#[task(map = add_two)]
async fn offset_stream(offset: qtasks::State<Offset>, n: u32) -> impl Stream<Item = u32> {
    stream::iter(0..n).then(move |i| {
        let offset = offset.clone();
        async move { i + offset.read().await.0 }
    })
}

/// The blocking form, with `blocking_read`.
#[task]
fn offset_iter(offset: qtasks::State<Offset>, n: u32) -> impl Iterator<Item = u32> {
    (0..n).map(move |i| i + offset.blocking_read().0)
}

/// Stream tasks take `State<T>` (and `Dep<T>`) parameters like other tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_tasks_take_state() -> TestResult {
    let app =
        QueueTasks::builder("streams-state").task::<OffsetStream>().task::<OffsetIter>().state(Offset(100)).build()?;
    let worker = app.worker().start().await?;
    assert_eq!(app.enqueue(OffsetStream::call(3)).await?.result(WAIT).await?, [102, 103, 104]);
    assert_eq!(app.enqueue(OffsetIter::call(3)).await?.result(WAIT).await?, [100, 101, 102]);
    assert_eq!(app.tasks()[0].params, ["n"]);
    worker.shutdown().await;
    Ok(())
}
