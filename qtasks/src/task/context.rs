//! What a running task knows about itself.

use super::cancel::CancelToken;
use super::deps::{Dep, DependencyError, Resources, State};
use super::error::{Cancelled, PluginError};
use crate::model::TaskMessage;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;
use uuid::Uuid;

/// The context of one task run: its id, name, attempt, tracing span,
/// cancellation token, and the dependencies and states the app provides.
///
/// A task receives it by declaring a parameter of this type (by value or by
/// reference). Plugin handlers that run for a task get it from
/// [`TaskContext::current`], in async, sync and blocking handlers alike. It is
/// cheap to clone.
#[derive(Clone, Debug)]
pub struct TaskContext {
    uuid: Uuid,
    name: TaskName,
    attempt: u32,
    span: tracing::Span,
    cancel: CancelToken,
    deps: Resources,
    extra: Option<Arc<Map<String, Value>>>,
    /// The run's blocking-pool threads, for a worker's run of a sync task.
    threads: Option<Arc<Threads>>,
}

/// The blocking-pool threads a run started that are still running.
///
/// A thread cannot be stopped: a sync task past its time limit, or
/// cancelled, goes on until it returns, although its run has ended. The
/// worker keeps the run's slot until then (so `max_tasks_process` bounds
/// the threads really busy), and a retry is enqueued only once the old
/// attempt's thread has returned (so the two never run at once).
#[derive(Debug, Default)]
pub(crate) struct Threads {
    running: AtomicUsize,
    idle: Notify,
}

impl Threads {
    /// Counts a thread until the returned guard is dropped (also by a panic).
    pub(crate) fn enter(self: &Arc<Self>) -> ThreadGuard {
        self.running.fetch_add(1, Ordering::AcqRel);
        ThreadGuard(Arc::clone(self))
    }

    /// Whether none of the run's threads runs now.
    pub(crate) fn is_idle(&self) -> bool {
        self.running.load(Ordering::Acquire) == 0
    }

    /// Completes once no thread of the run is running.
    pub(crate) async fn idle(&self) {
        until_zero(&self.running, &self.idle).await;
    }
}

/// Completes once `count` is 0; whoever brings it to 0 notifies `zero`
/// (`notify_waiters`). Registered before each look, so no wake-up is lost.
pub(crate) async fn until_zero(count: &AtomicUsize, zero: &Notify) {
    loop {
        let notified = zero.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if count.load(Ordering::SeqCst) == 0 {
            return;
        }
        notified.await;
    }
}

/// One running thread of a run (see [`Threads`]).
pub(crate) struct ThreadGuard(Arc<Threads>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

tokio::task_local! {
    static CURRENT: TaskContext;
}

/// A task's name: the static one of a task this app defines, or a copy of
/// the message's for a task it does not (its run ends `error`, but the
/// handlers fired for it still see its context).
#[derive(Clone, Debug)]
pub(crate) enum TaskName {
    Static(&'static str),
    Unknown(Arc<str>),
}

impl TaskName {
    fn as_str(&self) -> &str {
        match self {
            Self::Static(name) => name,
            Self::Unknown(name) => name,
        }
    }

    fn as_static(&self) -> Option<&'static str> {
        match self {
            Self::Static(name) => Some(name),
            Self::Unknown(_) => None,
        }
    }
}

impl TaskContext {
    /// A context for a task run. The worker creates these; tests may too
    /// (such a context has no dependency and no state).
    pub fn new(uuid: Uuid, name: &'static str, attempt: u32) -> Self {
        let span = tracing::info_span!("task", task = name, %uuid, attempt);
        Self {
            uuid,
            name: TaskName::Static(name),
            attempt,
            span,
            cancel: CancelToken::new(),
            deps: Resources::none(),
            extra: None,
            threads: None,
        }
    }

    /// The context of a worker's run, with its span and cancellation token.
    pub(crate) fn for_run(message: &TaskMessage, name: TaskName, span: tracing::Span, cancel: CancelToken) -> Self {
        // The extra fields are shared, and copied only if there are some.
        let extra = (!message.extra.is_empty()).then(|| Arc::new(message.extra.clone()));
        Self {
            uuid: message.uuid,
            name,
            attempt: message.attempt,
            span,
            cancel,
            deps: Resources::none(),
            extra,
            threads: None,
        }
    }

    /// The extra fields the client attached when it enqueued the task
    /// ([`Enqueue::extra`](crate::Enqueue::extra)) or that plugins or a
    /// retry added (`retry`, `retry_parent_uuid`, …); empty in a context
    /// made with [`TaskContext::new`].
    pub fn extra(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        self.extra.as_deref().unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// The W3C traceparent the task was enqueued with (see
    /// [`trace`](crate::trace)), if any: the trace the task's span
    /// continues. `None` in a context made with [`TaskContext::new`].
    pub fn traceparent(&self) -> Option<&str> {
        crate::trace::traceparent(self.extra.as_deref()?)
    }

    /// The context with the thread count of a worker's run of a sync task.
    pub(crate) fn with_threads(mut self, threads: Option<Arc<Threads>>) -> Self {
        self.threads = threads;
        self
    }

    /// Counts a blocking-pool thread of this run, if a worker runs it.
    pub(crate) fn enter_thread(&self) -> Option<ThreadGuard> {
        self.threads.as_ref().map(Threads::enter)
    }

    /// The context with the dependencies and states of a worker's run.
    pub(crate) fn with_deps(mut self, deps: Resources) -> Self {
        self.deps = deps;
        self
    }

    /// The value of type `T` a [`Provider`](crate::Provider) makes, as a
    /// `Dep<T>` parameter gets it: the worker's value for a per-worker
    /// provider; for a per-task one, the run's value (opened by the first
    /// call in a run of a task that declares it, and shared by the task
    /// and the handlers of that run), or else a new value closed when
    /// dropped.
    pub async fn dep<T: Send + Sync + 'static>(&self) -> Result<Dep<T>, DependencyError> {
        self.deps.dep::<T>(self.name.as_static()).await
    }

    /// The app's shared [`State<T>`], as a `State<T>` parameter gets it.
    pub fn state<T: Send + Sync + 'static>(&self) -> Result<State<T>, DependencyError> {
        self.deps.state::<T>(self.name.as_static())
    }

    /// The context of the task being handled here, if any: inside a task,
    /// and inside every plugin handler (async, sync or blocking) of a
    /// trigger fired for a task on a worker, from `broker_add_worker`
    /// through `worker_execute_after`, also for a task the app does not
    /// define. `None` in client-side triggers (enqueue, get) and in the
    /// worker's start and stop triggers.
    pub fn current() -> Option<TaskContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// `true` if [`for_run`](Self::for_run) would make this context of
    /// `message` (its id, name, attempt and extra fields), so a run may keep
    /// it after plugins replaced the message.
    pub(crate) fn is_for(&self, message: &TaskMessage) -> bool {
        self.uuid == message.uuid
            && self.attempt == message.attempt
            && self.name.as_str() == message.task_name
            && match &self.extra {
                None => message.extra.is_empty(),
                Some(extra) => **extra == message.extra,
            }
    }

    /// Runs `future` with `self` as [`TaskContext::current`].
    ///
    /// A plain function: the future it gives holds `future` once (an
    /// `async fn` would hold it twice, as its argument and as the scope).
    pub(crate) fn scope<F: std::future::Future>(self, future: F) -> impl std::future::Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }

    /// Runs `f` with `ctx` as [`TaskContext::current`] (for blocking code).
    pub(crate) fn sync_scope<R>(ctx: Option<TaskContext>, f: impl FnOnce() -> R) -> R {
        match ctx {
            Some(ctx) => CURRENT.sync_scope(ctx, f),
            None => f(),
        }
    }

    /// The task's id.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The task's name (as enqueued, for a task the app does not define).
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// 1 for the first run.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The task's tracing span: events logged while the task runs are inside
    /// it already; use it to attach work the task spawns.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// `true` once a client asked to cancel this task (one atomic load).
    ///
    /// A blocking task should poll it and return; an async task is stopped
    /// at its next `.await` anyway. Either way the task ends `cancel`.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The task's cancellation token, to pass to code that runs on other
    /// threads or to `select!` on.
    pub fn cancellation(&self) -> &CancelToken {
        &self.cancel
    }

    /// Completes when a client cancels the task.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// An error that hands the task to `task_executor_run_task_trigger_error`
    /// handlers; return it. The task's id and name are attached as fields.
    ///
    /// ```
    /// # use qtasks::{PluginError, TaskContext};
    /// fn risky(ctx: &TaskContext) -> Result<i64, PluginError> {
    ///     Err(ctx.plugin_error("non-standard situation"))
    /// }
    /// ```
    pub fn plugin_error(&self, reason: impl Into<String>) -> PluginError {
        PluginError::new(reason).field("task_uuid", self.uuid.to_string()).field("task_name", self.name.as_str())
    }

    /// An error that ends the task `cancel` with the reason; return it.
    ///
    /// ```
    /// # use qtasks::{Cancelled, TaskContext};
    /// fn give_up(ctx: &TaskContext) -> Result<(), Cancelled> {
    ///     Err(ctx.cancel("nothing left to do"))
    /// }
    /// ```
    pub fn cancel(&self, reason: impl Into<String>) -> Cancelled {
        Cancelled::new(reason)
    }
}
