//! The executor: one task's pipeline, with its triggers in QTasks's order.
//!
//! Receive: `broker_add_worker → storage_add_process → worker_add`.
//! Run: `worker_execute_before → broker_update → storage_update →
//! worker_run_task_before → task_executor_middlewares_execute(before) →
//! task_executor_args_replace → task_executor_before_execute → run →
//! task_executor_run_task (task_executor_run_task_gen for a stream task) |
//! task_executor_run_task_trigger_error →
//! task_executor_after_execute → task_executor_after_execute_result_replace →
//! task_executor_middlewares_execute(after) → task_executor_decode →
//! task_executor_task_close`.
//! Finish: `worker_remove_finished_task → broker_remove_finished_task →
//! (store) → storage_remove_finished_task → worker_execute_after`.

use super::run::{renewing_lease, run};
use crate::app::events::{Event, EventKind, emit};
use crate::app::{AllTasks, AppInner};
use crate::backend::{Backend, BackendError};
use crate::dispatch::fire_ctx as fire;
use crate::dispatch::fire_now;
use crate::dispatch::{PluginChain, awaited, listened};
use crate::model::{Name, TaskMessage, TaskRecord, TaskStatus, now};
use crate::task::context::{TaskName, Threads};
use crate::task::deps::{Resources, TaskDeps, WorkerDeps};
use crate::task::{CancelToken, Task, TaskContext, TaskError, TaskInfo, TaskSet, TaskVisitor};
use crate::triggers::*;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

/// Runs one message taken from the backend to its final status.
///
/// Every trigger fired for the task, from `broker_add_worker` to
/// `worker_execute_after`, runs with the task's context as
/// [`TaskContext::current`]: the receive triggers with the message as it
/// was taken, the rest with the message as the receive triggers left it.
///
/// `message` is the message as taken, owned by the spawned task and lent
/// here so the layers below do not move it; the receive triggers may
/// replace it in place.
///
/// `worker` is the id of the worker running it
/// ([`WorkerInfo::id`](crate::client::WorkerInfo::id)): the run's record
/// names it, with the time the run began.
///
/// The task's lease is renewed the whole time the worker holds it: from the
/// receive triggers, through the pipeline (plugin handlers, blocking ones
/// waiting for a slot included) and the closing of its dependencies, to the
/// final record stored; not only while its body runs.
pub(crate) async fn receive_and_run<T: TaskSet, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    deps: &Arc<WorkerDeps>,
    worker: &Arc<str>,
    message: &mut TaskMessage,
    slot: Option<Slot>,
) {
    let span = task_span(message);
    // Watched until the final record is stored, so a cancel that comes at
    // any point of the run is seen (see `store_final`).
    let token = CancelToken::new();
    let uuid = message.uuid;
    // `held`: the slot, or the place it was traded for (see `Slot`), kept
    // to the end of the run: through the triggers after the store and a
    // sync task's threads.
    let (threads, held) = {
        let (ctx, info, model, threads, held) =
            renewing_lease(app, uuid, hold(app, deps, worker, message, &span, &token, slot))
                .instrument(span.clone())
                .await;
        if after_store_listened(app, model.status) {
            let ctx = ctx.unwrap_or_else(|| context::<T, C>(message, &span, &token));
            if after_store_awaits(app, model.status) {
                // Boxed, the record and the context moved in: a run that
                // nothing awaits after its store holds neither across an await.
                let after = async move { after_store(app, info, &model).await };
                Box::pin(ctx.scope(after).instrument(span)).await;
            } else {
                TaskContext::sync_scope(Some(ctx), || span.in_scope(|| after_store_now(app, info, &model)));
            }
        }
        (threads, held)
    };
    app.backend.unwatch_cancel(uuid);
    // A sync task's thread left running past its time limit (or a cancel)
    // keeps the worker's slot until it returns.
    if let Some(threads) = threads {
        threads.idle().await;
    }
    drop(held);
}

/// The worker's slot a run holds, and the worker's places for runs that
/// are writing their final record.
///
/// A run holds its slot (of [`max_tasks_process`](crate::WorkerBuilder::max_tasks_process))
/// from the fetch until its task has ended and the final record is ready;
/// then, on a backend with leases (and if no thread of the task still
/// runs), it trades the slot for a place among the finishing runs
/// ([`hand_over`](Self::hand_over)), so the worker fetches the next task
/// while the record is written (a batched finish on Redis or Postgres
/// waits for its batch's commit). The place is held to the end of the
/// run (the triggers and events after the store). There are as many places
/// as slots: when records are written slower than tasks run, runs wait for
/// a place with their slot, and the worker stops fetching. So a worker
/// holds at most twice `max_tasks_process` tasks, of which at most
/// `max_tasks_process` run. A sync task whose thread still runs (past its
/// time limit, or cancelled) keeps its slot.
pub(crate) struct Slot {
    run: OwnedSemaphorePermit,
    finishing: Arc<Semaphore>,
}

impl Slot {
    /// A run's slot `run`, and the worker's `finishing` places.
    pub(crate) fn new(run: OwnedSemaphorePermit, finishing: Arc<Semaphore>) -> Self {
        Self { run, finishing }
    }

    /// The slot itself, kept to the end of the run.
    fn keep(self) -> OwnedSemaphorePermit {
        self.run
    }

    /// Takes a place among the finishing runs if one is free, and frees
    /// the slot; gives the place, or the slot back if there is none.
    fn try_hand_over(self) -> Result<OwnedSemaphorePermit, Self> {
        match Arc::clone(&self.finishing).try_acquire_owned() {
            Ok(place) => Ok(place),
            Err(_) => Err(self),
        }
    }

    /// Waits for a place among the finishing runs, then frees the slot.
    /// Gives the place (or the slot itself, if the places were closed).
    async fn hand_over(self) -> OwnedSemaphorePermit {
        match self.finishing.acquire_owned().await {
            Ok(place) => place,
            Err(_) => self.run,
        }
    }
}

/// The task's `task` span. A task enqueued with a trace context (see
/// [`trace`](crate::trace)) has it as its `traceparent` field and, with the
/// `opentelemetry` feature, as its parent; one without costs a lookup in
/// its (usually empty) extra fields, no allocation.
fn task_span(message: &TaskMessage) -> tracing::Span {
    let span = tracing::info_span!(
        "task",
        task = message.task_name.as_str(),
        uuid = %message.uuid,
        attempt = message.attempt,
        traceparent = tracing::field::Empty,
    );
    if let Some(traceparent) = message.traceparent() {
        span.record("traceparent", traceparent);
        crate::trace::set_parent(&span, &message.extra);
    }
    span
}

/// The receive triggers, any of which may replace the message.
fn receive_listened<C: PluginChain>() -> bool {
    listened::<C, BrokerAddWorker<'static>>()
        || listened::<C, StorageAddProcess<'static>>()
        || listened::<C, WorkerAdd<'static>>()
}

/// Whether an async handler listens to a receive trigger.
fn receive_awaits<C: PluginChain>() -> bool {
    awaited::<C, BrokerAddWorker<'static>>()
        || awaited::<C, StorageAddProcess<'static>>()
        || awaited::<C, WorkerAdd<'static>>()
}

/// What the worker does while it holds the task: receive it, run it, store
/// its final record. Gives the context of the triggers after the store
/// (if one was made), and what they need.
async fn hold<T: TaskSet, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    deps: &Arc<WorkerDeps>,
    worker: &Arc<str>,
    message: &mut TaskMessage,
    span: &tracing::Span,
    token: &CancelToken,
    slot: Option<Slot>,
) -> (Option<TaskContext>, Option<&'static TaskInfo>, Box<TaskRecord>, Option<Arc<Threads>>, Option<OwnedSemaphorePermit>)
{
    // The task's context is current around the whole run (beyond the
    // pipeline's own scope) only where a plugin or event handler may look
    // at it; an app with neither (a constant, then a flag) skips that scope.
    let mut ctx = (!C::LISTENS.is_empty() || app.events.any()).then(|| context::<T, C>(message, span, token));
    if receive_listened::<C>() {
        // The receive triggers see the message as it was taken as the
        // task's context.
        let taken_ctx = ctx.get_or_insert_with(|| context::<T, C>(message, span, token)).clone();
        if receive_awaits::<C>() {
            // Boxed: only apps whose plugins wait carry these triggers' state.
            let taken = std::mem::replace(message, empty_message());
            *message = Box::pin(taken_ctx.scope(receive(app, taken))).await;
        } else {
            TaskContext::sync_scope(Some(taken_ctx), || receive_now(app, message));
        }
        if ctx.as_ref().is_some_and(|ctx| !ctx.is_for(message)) {
            ctx = Some(context::<T, C>(message, span, token));
        }
    }
    let message = &*message;
    // Boxed: the run's state is held by pointer here and in the futures
    // around (each kept small enough for the allocator's per-thread cache).
    let run = Box::pin(run_and_store(app, deps, worker, message, span, token, slot));
    let (info, model, threads, held) = match &ctx {
        Some(ctx) => ctx.clone().scope(run).await,
        None => run.await,
    };
    (ctx, info, model, threads, held)
}

/// The receive triggers, each of which may replace the message.
async fn receive<T, C: PluginChain, B>(app: &AppInner<T, C, B>, mut message: TaskMessage) -> TaskMessage {
    let name = app.name.as_str();
    if listened::<C, BrokerAddWorker<'static>>() {
        message = fire!(&app.chain, BrokerAddWorker { app: name, message }).message;
    }
    if listened::<C, StorageAddProcess<'static>>() {
        message = fire!(&app.chain, StorageAddProcess { app: name, message }).message;
    }
    if listened::<C, WorkerAdd<'static>>() {
        message = fire!(&app.chain, WorkerAdd { app: name, message }).message;
    }
    message
}

/// [`receive`] where no async handler listens: in place.
fn receive_now<T, C: PluginChain, B>(app: &AppInner<T, C, B>, message: &mut TaskMessage) {
    let (name, chain) = (app.name.as_str(), &app.chain);
    let taken = std::mem::replace(message, empty_message());
    let ctx = fire_now!(chain, BrokerAddWorker { app: name, message: taken });
    let ctx = fire_now!(chain, StorageAddProcess { app: name, message: ctx.message });
    *message = fire_now!(chain, WorkerAdd { app: name, message: ctx.message }).message;
}

/// The task's context for the triggers around its run: no dependencies,
/// and the task's static name when the app defines it (no allocation).
fn context<T: TaskSet, C: PluginChain>(
    message: &TaskMessage,
    span: &tracing::Span,
    token: &CancelToken,
) -> TaskContext {
    let name = match <AllTasks<T, C>>::info(&message.task_name) {
        Some(info) => TaskName::Static(info.name),
        None => TaskName::Unknown(message.task_name.as_str().into()),
    };
    TaskContext::for_run(message, name, span.clone(), token.clone())
}

async fn run_and_store<T: TaskSet, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    deps: &Arc<WorkerDeps>,
    worker: &str,
    message: &TaskMessage,
    span: &tracing::Span,
    token: &CancelToken,
    slot: Option<Slot>,
) -> (Option<&'static TaskInfo>, Box<TaskRecord>, Option<Arc<Threads>>, Option<OwnedSemaphorePermit>) {
    app.backend.watch_cancel(message.uuid, token);
    let exec = Exec { app, deps, worker, message, token, span };
    let (info, mut model, threads) = match <AllTasks<T, C>>::dispatch(&message.task_name, exec).await {
        Ok(done) => done,
        Err(_) => (None, unknown_task(app.name.as_str(), worker, message), None),
    };
    let idle = threads.as_ref().is_none_or(|threads| threads.is_idle());
    let held = store_final(app, info, message, &mut model, token, (slot, idle)).await;
    (info, model, threads, held)
}

/// The final record of a task the app does not define.
#[cold]
fn unknown_task(app: &str, worker: &str, message: &TaskMessage) -> Box<TaskRecord> {
    tracing::warn!(app, task = %message.task_name, uuid = %message.uuid, "unknown task");
    let mut model = TaskRecord::from_message(message, TaskStatus::Error);
    model.worker = Some(worker.into());
    model.error =
        Some(format!("unknown task `{}`: no task of that name is registered in app `{app}`", message.task_name));
    Box::new(model)
}

/// Fires the triggers before the final record is stored, stores it, and
/// cancels the retry of a task cancelled meanwhile.
async fn store_final<T, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    task: Option<&'static TaskInfo>,
    message: &TaskMessage,
    model: &mut TaskRecord,
    token: &CancelToken,
    (slot, idle): (Option<Slot>, bool),
) -> Option<OwnedSemaphorePermit> {
    let name = app.name.as_str();
    // The run has ended. On a backend with leases (a server: each write a
    // round trip, often batched) its slot goes to the next task while the
    // record is written (see `Slot`), unless a thread of the task still
    // runs; elsewhere the write is done at once, and the run keeps its slot.
    // First: a cancel that comes while the run waits for a place is still
    // seen below.
    let held = match slot {
        Some(slot) if idle && app.backend.lease_renewal().is_some() => Some(match slot.try_hand_over() {
            Ok(place) => place,
            // Boxed: most runs find a place at once.
            Err(slot) => Box::pin(slot.hand_over()).await,
        }),
        other => other.map(Slot::keep),
    };
    // A client that cancelled the task was told it ends `cancel`: so it
    // does, also when the request came after the run's last look at it.
    if let Some(reason) = token.reason()
        && matches!(model.status, TaskStatus::Success | TaskStatus::Error)
    {
        model.status = TaskStatus::Cancel;
        model.result = None;
        model.error = Some(reason.to_owned());
    }
    model.updated_at = now();
    if listened::<C, WorkerRemoveFinishedTask<'static>>() || listened::<C, BrokerRemoveFinishedTask<'static>>() {
        if awaited::<C, WorkerRemoveFinishedTask<'static>>() || awaited::<C, BrokerRemoveFinishedTask<'static>>() {
            Box::pin(replace_final(app, task, message, model)).await;
        } else {
            replace_final_now(app, task, message, model);
        }
    }
    within_size_limit(model, app.config.max_message_size);
    if let Err(error) = app.backend.finish(model).await {
        // Boxed, as the cancel below: paths most runs never take do not
        // make every run's future larger.
        Box::pin(store_retrying(app, model, error)).await;
    }
    // Cancelled after its retry was enqueued: cancel the retry (a cancel
    // coming later finds the `retry` record and follows it by itself).
    if model.status == TaskStatus::Retry
        && let Some(reason) = token.reason()
        && let Some(child) = model.retry_child()
        && let Err(error) = Box::pin(app.backend.cancel(child, reason)).await
    {
        tracing::error!(app = name, uuid = %child, %error, "cancelling the retry of a cancelled task failed");
    }
    held
}

/// A message with nothing in it (no allocation), to move a message out of
/// a place for a moment.
fn empty_message() -> TaskMessage {
    TaskMessage {
        uuid: uuid::Uuid::nil(),
        task_name: Name::default(),
        queue: Name::default(),
        priority: 0,
        args: Value::Null,
        created_at: 0.0,
        attempt: 0,
        extra: serde_json::Map::new(),
        limit_key: None,
    }
}

/// A record with nothing in it (no allocation), to move a record out of a
/// place for a moment.
fn empty_record() -> TaskRecord {
    TaskRecord {
        uuid: uuid::Uuid::nil(),
        task_name: Name::default(),
        priority: 0,
        args: Value::Null,
        status: TaskStatus::New,
        created_at: 0.0,
        updated_at: 0.0,
        result: None,
        error: None,
        attempt: 0,
        extra: serde_json::Map::new(),
        queue: Name::default(),
        limit_key: None,
        unique: None,
        worker: None,
        started_at: None,
    }
}

/// The triggers that may replace the final record before it is stored.
async fn replace_final<T, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    task: Option<&'static TaskInfo>,
    message: &TaskMessage,
    model: &mut TaskRecord,
) {
    let name = app.name.as_str();
    let mut owned = std::mem::replace(model, empty_record());
    owned = fire!(&app.chain, WorkerRemoveFinishedTask { app: name, task, message, model: owned }).model;
    owned = fire!(&app.chain, BrokerRemoveFinishedTask { app: name, model: owned }).model;
    *model = owned;
}

/// [`replace_final`] where no async handler listens: in place.
fn replace_final_now<T, C: PluginChain, B>(
    app: &AppInner<T, C, B>,
    task: Option<&'static TaskInfo>,
    message: &TaskMessage,
    model: &mut TaskRecord,
) {
    let (name, chain) = (app.name.as_str(), &app.chain);
    let taken = std::mem::replace(model, empty_record());
    let ctx = fire_now!(chain, WorkerRemoveFinishedTask { app: name, task, message, model: taken });
    *model = fire_now!(chain, BrokerRemoveFinishedTask { app: name, model: ctx.model }).model;
}

/// Stores the final record again after a first try failed with `error`,
/// retrying with backoff while this worker still holds the task (the lease
/// is renewed meanwhile): a connection that drops at that moment costs a
/// retry, not a second run after the lease. Gives up only once the lease is
/// lost (another worker then runs the task: the one case where it runs
/// twice) or, on a backend without leases, after a few tries.
async fn store_retrying<T, C, B: Backend>(app: &AppInner<T, C, B>, model: &TaskRecord, mut error: BackendError) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(20);
    const TRIES_WITHOUT_LEASE: u32 = 5;
    let name = app.name.as_str();
    let period = app.backend.lease_renewal();
    // A lease renewed `period` ago is good for about two more periods.
    let mut held_until = period.map(|p| Instant::now() + p * 2);
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1u32.. {
        let give_up = match period {
            None => attempt >= TRIES_WITHOUT_LEASE,
            Some(period) => match app.backend.extend_lease(model.uuid).await {
                Ok(true) => {
                    held_until = Some(Instant::now() + period * 2);
                    false
                }
                Ok(false) => {
                    tracing::error!(app = name, uuid = %model.uuid, %error, "storing the final status failed and the lease is lost: another worker will run the task");
                    return;
                }
                Err(_) => held_until.is_some_and(|until| Instant::now() >= until),
            },
        };
        if give_up {
            tracing::error!(app = name, uuid = %model.uuid, %error, attempt, "storing the final status failed; giving up");
            return;
        }
        tracing::warn!(app = name, uuid = %model.uuid, %error, attempt, "storing the final status failed; retrying");
        tokio::time::sleep(jitter(backoff)).await;
        backoff = (backoff * 2).min(period.unwrap_or(Duration::from_secs(1)));
        error = match app.backend.finish(model).await {
            Ok(()) => return,
            Err(error) => error,
        };
    }
}

/// `d` plus up to a quarter more, so workers that failed together do not
/// retry together.
fn jitter(d: Duration) -> Duration {
    let spread = u64::try_from(d.as_nanos() / 4).unwrap_or(u64::MAX).max(1);
    d + Duration::from_nanos(uuid::Uuid::new_v4().as_u128() as u64 % spread)
}

/// Longest error text stored in a record: an error that quotes its input
/// (a decoding error naming a 10 MB argument) is cut.
const ERROR_TEXT_LIMIT: usize = 16 * 1024;

/// Keeps a final record within the message size limit: an error text over
/// [`ERROR_TEXT_LIMIT`] (or half the limit) is cut, and a result whose JSON
/// is larger than the limit makes the task end `error` saying so.
fn within_size_limit(model: &mut TaskRecord, limit: usize) {
    if let Some(result) = &model.result {
        let size = json_size(result);
        if size > limit {
            model.status = TaskStatus::Error;
            model.result = None;
            model.error = Some(format!(
                "the result is {size} bytes as JSON, more than the limit of {limit} bytes (max_message_size); it was not stored"
            ));
        }
    }
    let cap = ERROR_TEXT_LIMIT.min(limit / 2).max(256);
    if let Some(error) = &mut model.error
        && error.len() > cap
    {
        let mut cut = cap;
        while !error.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = error.len() - cut;
        error.truncate(cut);
        error.push_str(&format!("… ({dropped} more bytes cut)"));
    }
}

/// The length of `value` as JSON, without building the text.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Whether a plugin listens to the triggers after the final record is
/// stored (a constant) or a handler to the events (a bit test each).
fn after_store_listened<T, C: PluginChain, B>(app: &AppInner<T, C, B>, status: TaskStatus) -> bool {
    listened::<C, StorageRemoveFinishedTask<'static>>()
        || listened::<C, WorkerExecuteAfter<'static>>()
        || events_listened(app, status)
}

/// Whether what follows the final record's store may wait: an async
/// handler of its triggers (a constant), or a handler of its events.
fn after_store_awaits<T, C: PluginChain, B>(app: &AppInner<T, C, B>, status: TaskStatus) -> bool {
    awaited::<C, StorageRemoveFinishedTask<'static>>()
        || awaited::<C, WorkerExecuteAfter<'static>>()
        || events_listened(app, status)
}

/// Whether a handler listens to the events of a task that ended `status`.
fn events_listened<T, C, B>(app: &AppInner<T, C, B>, status: TaskStatus) -> bool {
    EventKind::for_status(status).is_some_and(|kind| app.events.listens(kind))
        || app.events.listens(EventKind::TaskStopping)
}

/// The triggers and events after the final record is stored.
async fn after_store<T, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    task: Option<&'static TaskInfo>,
    model: &TaskRecord,
) {
    let name = app.name.as_str();
    fire!(&app.chain, StorageRemoveFinishedTask { app: name, model });
    fire!(&app.chain, WorkerExecuteAfter { app: name, task, model });
    if let Some(kind) = EventKind::for_status(model.status) {
        emit!(app.events, kind, Event::ended(kind, name, model));
    }
    emit!(app.events, EventKind::TaskStopping, Event::ended(EventKind::TaskStopping, name, model));
}

/// [`after_store`] where no async handler listens and no handler to the
/// events: in place.
fn after_store_now<T, C: PluginChain, B>(app: &AppInner<T, C, B>, task: Option<&'static TaskInfo>, model: &TaskRecord) {
    let (name, chain) = (app.name.as_str(), &app.chain);
    fire_now!(chain, StorageRemoveFinishedTask { app: name, model });
    fire_now!(chain, WorkerExecuteAfter { app: name, task, model });
}

struct Exec<'a, T, C, B> {
    app: &'a AppInner<T, C, B>,
    message: &'a TaskMessage,
    deps: &'a Arc<WorkerDeps>,
    worker: &'a str,
    token: &'a CancelToken,
    span: &'a tracing::Span,
}

impl<T: TaskSet, C: PluginChain, B: Backend> TaskVisitor for Exec<'_, T, C, B> {
    /// The final record is boxed: it is returned through every future up
    /// to the spawned one, and a pointer moves where 300 bytes were copied.
    type Output = (Option<&'static TaskInfo>, Box<TaskRecord>, Option<Arc<Threads>>);

    async fn visit<K: Task>(self) -> Self::Output {
        // Only sync tasks run threads that can outlive their run.
        let threads = K::INFO.blocking.then(Arc::default);
        // Boxed: the chain of `dispatch` futures over the task set, and
        // every future awaiting it up to the spawned one, then hold and
        // move a pointer instead of the run's whole state.
        let model = Box::pin(execute::<K, T, C, B>(
            self.app,
            self.deps,
            self.worker,
            self.message,
            self.token,
            self.span,
            &threads,
        ))
        .await;
        (Some(&K::INFO), model, threads)
    }
}

/// How the run step ended, before the result is stored.
enum Ended {
    Success(Value),
    /// The message, and whether a retry may help (`Task::retry_on`).
    Error(String, bool),
    Cancel(String),
}

/// Runs the pipeline inside the task's tracing span and with its context as
/// [`TaskContext::current`], so every handler (sync, async or blocking) and
/// the task itself log within it and see its id and cancellation token.
async fn execute<K: Task, T, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    deps: &Arc<WorkerDeps>,
    worker: &str,
    message: &TaskMessage,
    token: &CancelToken,
    span: &tracing::Span,
    threads: &Option<Arc<Threads>>,
) -> Box<TaskRecord> {
    let deps = Resources::for_run(deps, &K::INFO);
    let task_deps = deps.task_deps();
    let ctx = TaskContext::for_run(message, TaskName::Static(K::INFO.name), span.clone(), token.clone())
        .with_deps(deps)
        .with_threads(threads.clone());
    emit!(
        app.events,
        EventKind::TaskRunning,
        Event::task(EventKind::TaskRunning, &app.name, K::INFO.name, message.uuid)
    );
    let (model, retryable) =
        // Boxed once here: the wrappers around it (task-local scope, span)
        // and the futures awaiting it then move a pointer, not the whole
        // pipeline's state (kilobytes, copied at each move).
        ctx.clone().scope(Box::pin(pipeline::<K, T, C, B>(app, worker, message, token, ctx))).instrument(span.clone()).await;
    let retry = model.status == TaskStatus::Error && retryable && K::INFO.retry > 0;
    if task_deps.is_none() && (!retry || token.is_cancelled()) {
        return model;
    }
    // Boxed: paths most runs never take do not make every run's future
    // larger (nor hold the record across them). With the task's context
    // current: the close hooks of its dependencies may look at it.
    let ctx = TaskContext::for_run(message, TaskName::Static(K::INFO.name), span.clone(), token.clone());
    ctx.scope(Box::pin(after_run::<K, T, C, B>(app, message, token, span, threads, task_deps, model, retry))).await
}

/// After the pipeline: the run's own dependencies close (before its status
/// is stored, however it ended), then a failed run that may be retried is
/// (unless it was cancelled meanwhile).
#[allow(clippy::too_many_arguments)]
async fn after_run<K: Task, T, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    message: &TaskMessage,
    token: &CancelToken,
    span: &tracing::Span,
    threads: &Option<Arc<Threads>>,
    task_deps: Option<Arc<TaskDeps>>,
    model: Box<TaskRecord>,
    retry: bool,
) -> Box<TaskRecord> {
    if let Some(task_deps) = task_deps {
        task_deps.close().instrument(span.clone()).await;
    }
    if retry && !token.is_cancelled() {
        // The next attempt never runs next to this one's thread.
        if let Some(threads) = threads {
            threads.idle().await;
        }
        return Box::new(super::retry::retry::<K, T, C, B>(app, message, *model).instrument(span.clone()).await);
    }
    model
}

async fn pipeline<K: Task, T, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    worker: &str,
    message: &TaskMessage,
    token: &CancelToken,
    ctx: TaskContext,
) -> (Box<TaskRecord>, bool) {
    let name = app.name.as_str();
    let chain = &app.chain;
    let task = &K::INFO;

    // The run's record names its worker and start from here on: the
    // `process` record a plugin may have rewritten, and the final one.
    let started_at = now();
    // `fetch` marked the record `process`. A plugin that may replace that
    // record gets it now, and its version is the one that ends; otherwise
    // (a constant) the record is made after the run, so nothing of it is
    // held across the run.
    let replaceable = listened::<C, WorkerExecuteBefore<'static>>()
        || listened::<C, BrokerUpdate<'static>>()
        || listened::<C, StorageUpdate<'static>>();
    let rewritten =
        if replaceable { Some(process_record::<K, T, C, B>(app, worker, message, started_at).await) } else { None };
    fire!(chain, WorkerRunTaskBefore { app: name, task, message });
    fire!(chain, TaskExecutorMiddlewaresExecute { app: name, task, message, phase: Phase::Before });

    // Arguments are decoded straight from the message unless a plugin may
    // replace them (in a block: a replaced value is not held across the run).
    let decoded = {
        let replaced;
        let args: &Value = if listened::<C, TaskExecutorArgsReplace<'static>>() {
            replaced =
                fire!(chain, TaskExecutorArgsReplace { app: name, task, message, args: message.args.clone() }).args;
            &replaced
        } else {
            &message.args
        };
        fire!(chain, TaskExecutorBeforeExecute { app: name, task, message });
        K::decode_args(args)
    };

    let ended = match decoded {
        // Cancelled between being taken and starting: it does not start.
        _ if token.is_cancelled() => Ended::Cancel(token.reason().unwrap_or("cancelled").to_owned()),
        Err(e) => Ended::Error(TaskError::InvalidArguments(format!("task `{}`: {e}", task.name)).to_string(), false),
        // Boxed: two allocations small enough for the allocator's
        // per-thread cache cost less than one too large for it.
        Ok(args) => match Box::pin(run::<K>(ctx, args)).await {
            Ok(output) => match serde_json::to_value(output) {
                // A stream task's list of items (a constant test: other tasks pay nothing).
                Ok(result) if K::INFO.stream => {
                    let results = match result {
                        Value::Array(items) => items,
                        other => vec![other],
                    };
                    let results = fire!(chain, TaskExecutorRunTaskGen { app: name, task, message, results }).results;
                    Ended::Success(Value::Array(results))
                }
                Ok(result) => {
                    Ended::Success(fire!(chain, TaskExecutorRunTask { app: name, task, message, result }).result)
                }
                Err(e) => Ended::Error(format!("could not encode the result as JSON: {e}"), false),
            },
            Err(TaskError::Plugin(error)) => {
                let rescued = fire!(
                    chain,
                    TaskExecutorRunTaskTriggerError { app: name, task, message, error: &error, result: None }
                )
                .result;
                match rescued {
                    Some(result) => Ended::Success(result),
                    None => {
                        let reason = error.reason().to_owned();
                        Ended::Error(reason, K::retry_on(&TaskError::Plugin(error)))
                    }
                }
            }
            Err(TaskError::Cancelled(c)) => Ended::Cancel(c.reason().to_owned()),
            Err(error) => Ended::Error(error.to_string(), K::retry_on(&error)),
        },
    };
    // A task that returns after a client cancelled it ends `cancel`, whatever it returned.
    let ended = match token.reason() {
        Some(reason) if !matches!(ended, Ended::Cancel(_)) => Ended::Cancel(reason.to_owned()),
        _ => ended,
    };

    fire!(chain, TaskExecutorAfterExecute { app: name, task, message });
    let ended = match ended {
        Ended::Success(result) => {
            let result =
                fire!(chain, TaskExecutorAfterExecuteResultReplace { app: name, task, message, result }).result;
            Ended::Success(result)
        }
        other => other,
    };
    fire!(chain, TaskExecutorMiddlewaresExecute { app: name, task, message, phase: Phase::After });
    let ended = match ended {
        Ended::Success(result) => {
            Ended::Success(fire!(chain, TaskExecutorDecode { app: name, task, message, result }).result)
        }
        other => other,
    };
    let (status, retryable) = match &ended {
        Ended::Success(_) => (TaskStatus::Success, false),
        Ended::Error(_, retry) => (TaskStatus::Error, *retry),
        Ended::Cancel(_) => (TaskStatus::Cancel, false),
    };
    fire!(chain, TaskExecutorTaskClose { app: name, task, message, status });
    // Made (or taken back) only now: no await below holds it.
    let mut model = match rewritten {
        Some(model) => model,
        None => Box::new(run_record(message, worker, started_at)),
    };
    match ended {
        Ended::Success(result) => model.result = Some(result),
        Ended::Error(error, _) | Ended::Cancel(error) => model.error = Some(error),
    }
    model.status = status;
    (model, retryable)
}

/// The record of a run: `process` since `started_at`, naming its worker.
/// (The final record's `updated_at` is set again when it is stored.)
fn run_record(message: &TaskMessage, worker: &str, started_at: f64) -> TaskRecord {
    let mut model = TaskRecord::from_message_at(message, TaskStatus::Process, started_at);
    model.worker = Some(worker.into());
    model.started_at = Some(started_at);
    model
}

/// The `process` record through the triggers that may replace it, stored
/// again if a plugin changed it. Boxed: the pipeline holds it by pointer
/// across the run.
async fn process_record<K: Task, T, C: PluginChain, B: Backend>(
    app: &AppInner<T, C, B>,
    worker: &str,
    message: &TaskMessage,
    started_at: f64,
) -> Box<TaskRecord> {
    let made = run_record(message, worker, started_at);
    let updated_at = made.updated_at;
    let model = Box::new(if process_awaits::<C>() {
        Box::pin(replace_process::<K, T, C, B>(app, message, made)).await
    } else {
        replace_process_now::<K, T, C, B>(app, message, made)
    });
    if !is_run_record(&model, message, worker, started_at, updated_at)
        && let Err(error) = Box::pin(app.backend.update(&model)).await
    {
        tracing::error!(app = app.name.as_str(), uuid = %message.uuid, %error, "storing the process status failed");
    }
    model
}

/// Whether an async handler listens to a trigger that may replace the
/// `process` record.
fn process_awaits<C: PluginChain>() -> bool {
    awaited::<C, WorkerExecuteBefore<'static>>()
        || awaited::<C, BrokerUpdate<'static>>()
        || awaited::<C, StorageUpdate<'static>>()
}

/// The triggers that may replace the `process` record.
async fn replace_process<K: Task, T, C: PluginChain, B>(
    app: &AppInner<T, C, B>,
    message: &TaskMessage,
    model: TaskRecord,
) -> TaskRecord {
    let (name, chain, task) = (app.name.as_str(), &app.chain, &K::INFO);
    let model = fire!(chain, WorkerExecuteBefore { app: name, task, message, model }).model;
    let model = fire!(chain, BrokerUpdate { app: name, model }).model;
    fire!(chain, StorageUpdate { app: name, model }).model
}

/// [`replace_process`] where no async handler listens: in place.
fn replace_process_now<K: Task, T, C: PluginChain, B>(
    app: &AppInner<T, C, B>,
    message: &TaskMessage,
    model: TaskRecord,
) -> TaskRecord {
    let (name, chain, task) = (app.name.as_str(), &app.chain, &K::INFO);
    let ctx = fire_now!(chain, WorkerExecuteBefore { app: name, task, message, model });
    let ctx = fire_now!(chain, BrokerUpdate { app: name, model: ctx.model });
    fire_now!(chain, StorageUpdate { app: name, model: ctx.model }).model
}

/// `true` if `model` is the record [`run_record`] made (made at
/// `updated_at`): no plugin changed it, so it need not be stored again.
/// Every field is named, so a field added to the record is compared too.
fn is_run_record(model: &TaskRecord, message: &TaskMessage, worker: &str, started: f64, updated: f64) -> bool {
    let TaskRecord {
        uuid,
        task_name,
        priority,
        args,
        status,
        created_at,
        updated_at,
        result,
        error,
        attempt,
        extra,
        queue,
        limit_key,
        unique,
        worker: by,
        started_at,
    } = model;
    *uuid == message.uuid
        && *task_name == message.task_name
        && *priority == message.priority
        && *args == message.args
        && *status == TaskStatus::Process
        && *created_at == message.created_at
        && *updated_at == updated
        && result.is_none()
        && error.is_none()
        && *attempt == message.attempt
        && *extra == message.extra
        && *queue == message.queue
        && *limit_key == message.limit_key
        && unique.is_none()
        && by.as_deref() == Some(worker)
        && *started_at == Some(started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueueTasks;
    use crate::model::NewTask;

    /// A task written by hand (the crate cannot use `#[task]` on itself).
    struct Noop;

    impl Task for Noop {
        const INFO: TaskInfo = TaskInfo::new("noop");
        type Args = ();
        type Output = ();

        async fn run(_ctx: TaskContext, _args: ()) -> Result<(), TaskError> {
            Ok(())
        }
    }

    /// The future a worker spawns for each task is moved (so copied whole)
    /// several times per task: when it grew to 18.6 KB, a no-op task cost
    /// 74,125 instructions, 81 % of them `memcpy` (BENCHMARKS.md). Its size
    /// is a property of the code, not a timing: this pins it under 8 KiB
    /// (2,976 bytes when written), so such growth shows here.
    #[test]
    fn the_future_run_for_each_task_stays_small() {
        let app = QueueTasks::builder("sizes").task::<Noop>().build().unwrap();
        let deps = Arc::new(WorkerDeps::none_for_tests());
        let mut message = TaskRecord::new(uuid::Uuid::new_v4(), NewTask::new("noop", serde_json::json!([]))).message();
        let worker: Arc<str> = Arc::from("worker");
        let future = receive_and_run(&app.inner, &deps, &worker, &mut message, None);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 8 * 1024, "the per-task future is {size} bytes");
    }
}
