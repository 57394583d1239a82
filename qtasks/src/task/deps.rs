//! Dependencies and state: values the worker gives tasks.
//!
//! A task declares what it needs as parameters, next to its JSON
//! arguments (which these parameters are not part of):
//!
//! - [`Dep<T>`]: a value made by a [`Provider`] given to
//!   [`Builder::provide`](crate::Builder::provide), either for each run of a
//!   task ([`Provider::per_task`]) or once per worker
//!   ([`Provider::per_worker`]), with an optional cleanup
//!   ([`Provider::on_close`]);
//! - [`State<T>`]: a typed value shared by every task of the app in this
//!   process, given to [`Builder::state`](crate::Builder::state), read and
//!   written through an async lock.
//!
//! ```
//! use qtasks::{Dep, Provider, QueueTasks, State, task};
//! use std::time::Duration;
//!
//! struct Db {
//!     answer: i64,
//! }
//!
//! #[derive(Default)]
//! struct Seen {
//!     calls: u32,
//! }
//!
//! #[task]
//! async fn ask(db: Dep<Db>, seen: State<Seen>, plus: i64) -> i64 {
//!     seen.write().await.calls += 1;
//!     db.answer + plus
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = QueueTasks::builder("deps")
//!     .task::<Ask>()
//!     .provide(
//!         Provider::per_task(|| async { Ok(Db { answer: 41 }) })
//!             .on_close(|db: Db| println!("closing the connection to {}", db.answer)),
//!     )
//!     .state(Seen::default())
//!     .build()?;
//! let worker = app.worker().start().await?;
//! assert_eq!(app.enqueue(Ask::call(1)).await?.result(Duration::from_secs(5)).await?, 42);
//! assert_eq!(app.state::<Seen>().unwrap().read().await.calls, 1);
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # When values are opened and closed
//!
//! A per-task value is opened when a run of a task that declares it starts
//! (before the task's body, within its time limit) and closed when the run
//! ends, before its final status is stored: after a success, an error, a
//! panic, the time limit or a cancellation alike. Each run, retries
//! included, gets its own value; concurrent runs never share one.
//!
//! A per-worker value is opened when a worker starts, before its plugins
//! (a failure is the start's error), shared by the tasks that worker runs,
//! and closed by [`Worker::shutdown`](crate::Worker::shutdown) once its
//! tasks have finished and its plugins have stopped, in the reverse order
//! of opening.
//!
//! A value is closed once nothing uses it: if a sync task past its time
//! limit still runs with it (threads cannot be stopped), or a task moved a
//! clone into work it spawned, the close runs when the last clone is
//! dropped.
//!
//! # How parameters are recognised
//!
//! `#[task]` recognises these parameters by the last path segment of their
//! type with one type argument, as it does `TaskContext`: `Dep<T>`,
//! `qtasks::Dep<T>`, `State<T>`, `qtasks::State<T>`. So a `Dep` or `State`
//! imported under another name is not recognised, and a type of yours
//! named `Dep` or `State` with one type argument cannot be a JSON argument
//! (give it an alias); one without a type argument can.

use super::info::DependencyKind;
use super::{TaskContext, TaskInfo};
use crate::error::BoxError;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, LazyLock, RwLock as StdRwLock};

type Erased = Arc<dyn Any + Send + Sync>;
/// Closes an erased value (`close_erased::<T>`).
type CloseErased = fn(Erased) -> BoxFuture<'static, ()>;

/// A value a scope opened, with how to close it.
struct Opened {
    id: TypeId,
    value: Erased,
    close: CloseErased,
}

// ---------------------------------------------------------------------------
// Dep
// ---------------------------------------------------------------------------

/// A value a [`Provider`] made for the task: declare a parameter
/// `db: Dep<Db>` and use it as a `&Db` (it derefs).
///
/// It is a cheap handle (an `Arc`); clones share the value, which is closed
/// once the run (or, for a per-worker value, the worker) has ended and no
/// clone is left.
pub struct Dep<T: Send + Sync + 'static>(Arc<Slot<T>>);

impl<T: Send + Sync + 'static> Deref for Dep<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.0.value.as_ref().expect("a dependency is closed only once no `Dep` holds it")
    }
}

impl<T: Send + Sync + 'static> Clone for Dep<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Send + Sync + fmt::Debug + 'static> fmt::Debug for Dep<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Dep").field(&**self).finish()
    }
}

/// A value and its cleanup: the cleanup runs when the slot is taken apart
/// by the scope that opened it, or, if something still held it then, when
/// the last holder drops it.
struct Slot<T: Send + Sync + 'static> {
    value: Option<T>,
    close: Option<CloseFn<T>>,
    name: &'static str,
    runtime: Option<tokio::runtime::Handle>,
}

impl<T: Send + Sync + 'static> Slot<T> {
    /// The cleanup of the value, as a future that logs failures and panics.
    fn closing(&mut self) -> Option<BoxFuture<'static, ()>> {
        let (value, close) = (self.value.take()?, self.close.take()?);
        let name = self.name;
        Some(Box::pin(async move {
            match AssertUnwindSafe(async move { close(value).await }).catch_unwind().await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(dependency = name, %error, "closing a dependency failed"),
                Err(panic) => {
                    let message = crate::error::panic_message(&*panic);
                    tracing::error!(dependency = name, panic = %message, "closing a dependency panicked");
                }
            }
        }))
    }
}

impl<T: Send + Sync + 'static> Drop for Slot<T> {
    fn drop(&mut self) {
        // Reached only if the scope that opened the value ended while
        // something still held it, or was itself dropped before closing.
        let (Some(value), Some(close)) = (self.value.take(), self.close.take()) else { return };
        let name = self.name;
        let runtime = self.runtime.take().or_else(|| tokio::runtime::Handle::try_current().ok());
        match runtime {
            Some(runtime) => {
                let closing = AssertUnwindSafe(async move { close(value).await }).catch_unwind();
                runtime.spawn(async move {
                    match closing.await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => tracing::warn!(dependency = name, %error, "closing a dependency failed"),
                        Err(_) => tracing::error!(dependency = name, "closing a dependency panicked"),
                    }
                });
            }
            None => tracing::warn!(dependency = name, "no runtime left to close a dependency; it is dropped unclosed"),
        }
    }
}

/// Takes a slot apart and awaits its cleanup; if something still holds it,
/// the cleanup runs when the last holder drops it.
fn close_erased<T: Send + Sync + 'static>(slot: Erased) -> BoxFuture<'static, ()> {
    let Ok(slot) = slot.downcast::<Slot<T>>() else { return Box::pin(std::future::ready(())) };
    match Arc::try_unwrap(slot) {
        Ok(mut slot) => match slot.closing() {
            Some(closing) => closing,
            None => Box::pin(std::future::ready(())),
        },
        Err(held) => {
            tracing::debug!(dependency = held.name, "a dependency is still in use; it is closed when dropped");
            Box::pin(std::future::ready(()))
        }
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

/// A typed value shared by every task of an app in this process (QTasks's
/// `State`): give it with [`Builder::state`](crate::Builder::state),
/// declare a parameter `state: State<T>`, and read or write it through an
/// async read-write lock.
///
/// Async tasks use [`read`](State::read) and [`write`](State::write); sync
/// tasks (which run on the blocking pool) use
/// [`blocking_read`](State::blocking_read) and
/// [`blocking_write`](State::blocking_write). Do not hold a guard across a
/// long `.await`: other tasks wait for it. The value lives in memory and
/// is not persisted; workers in other processes have their own.
pub struct State<T: Send + Sync + 'static>(Arc<tokio::sync::RwLock<T>>);

impl<T: Send + Sync + 'static> State<T> {
    /// A shared value (apps make them with [`Builder::state`](crate::Builder::state)).
    pub fn new(value: T) -> Self {
        Self(Arc::new(tokio::sync::RwLock::new(value)))
    }

    /// Waits for shared access.
    pub async fn read(&self) -> tokio::sync::RwLockReadGuard<'_, T> {
        self.0.read().await
    }

    /// Waits for exclusive access.
    pub async fn write(&self) -> tokio::sync::RwLockWriteGuard<'_, T> {
        self.0.write().await
    }

    /// Shared access from sync code, blocking the thread until it is free.
    ///
    /// # Panics
    ///
    /// When called from async code (use [`read`](State::read) there).
    pub fn blocking_read(&self) -> tokio::sync::RwLockReadGuard<'_, T> {
        self.0.blocking_read()
    }

    /// Exclusive access from sync code, blocking the thread until it is free.
    ///
    /// # Panics
    ///
    /// When called from async code (use [`write`](State::write) there).
    pub fn blocking_write(&self) -> tokio::sync::RwLockWriteGuard<'_, T> {
        self.0.blocking_write()
    }
}

impl<T: Send + Sync + 'static> Clone for State<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Send + Sync + 'static> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&std::any::type_name::<T>()).finish()
    }
}

// ---------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------

/// When a provider's value is opened and closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// For each run of a task that declares it; closed when the run ends.
    Task,
    /// Once per worker, at its start; closed at its shutdown.
    Worker,
}

type OpenFn<T> = Arc<dyn Fn() -> BoxFuture<'static, Result<T, BoxError>> + Send + Sync>;
type CloseFn<T> = Arc<dyn Fn(T) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// How a worker makes the value of a [`Dep<T>`] parameter, and cleans it up
/// (QTasks's `Depends(func, scope=…)`). Give it to
/// [`Builder::provide`](crate::Builder::provide).
///
/// The open function takes no argument (capture what it needs, e.g. a URL)
/// and returns `Result<T, BoxError>`, or a future of it: write
/// `|| Ok(Client::new())` or `|| async { Ok(Pool::connect(&url).await?) }`.
/// If it fails, the run ends `error` (or the worker does not start, for a
/// per-worker value) with a message naming the type.
pub struct Provider<T> {
    scope: Scope,
    open: OpenFn<T>,
    close: Option<CloseFn<T>>,
}

impl<T: Send + Sync + 'static> Provider<T> {
    /// A value opened for each run of a task that declares it, and closed
    /// when that run ends, however it ends.
    pub fn per_task<R, M>(open: impl Fn() -> R + Send + Sync + 'static) -> Self
    where
        R: OpenOutput<T, M>,
    {
        Self { scope: Scope::Task, open: Arc::new(move || open().into_opened()), close: None }
    }

    /// A value opened once when a worker starts, shared by the tasks it
    /// runs, and closed at [`Worker::shutdown`](crate::Worker::shutdown).
    pub fn per_worker<R, M>(open: impl Fn() -> R + Send + Sync + 'static) -> Self
    where
        R: OpenOutput<T, M>,
    {
        Self { scope: Scope::Worker, open: Arc::new(move || open().into_opened()), close: None }
    }

    /// Cleans the value up when its scope ends; the function takes the
    /// value and returns `()`, `Result<(), E>` (an error is logged) or a
    /// future of either. A panic in it is logged too.
    pub fn on_close<R, M>(mut self, close: impl Fn(T) -> R + Send + Sync + 'static) -> Self
    where
        R: CloseOutput<M>,
    {
        self.close = Some(Arc::new(move |value| close(value).into_outcome()));
        self
    }

    /// When the value is opened and closed.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    pub(crate) fn erase(self) -> ErasedProvider {
        let name = std::any::type_name::<T>();
        let (open, close) = (self.open, self.close);
        ErasedProvider {
            id: TypeId::of::<T>(),
            name,
            scope: self.scope,
            open: Arc::new(move || {
                let opening = open();
                let close = close.clone();
                Box::pin(async move {
                    let value = opening.await?;
                    let runtime = tokio::runtime::Handle::try_current().ok();
                    Ok(Arc::new(Slot { value: Some(value), close, name, runtime }) as Erased)
                })
            }),
            close: close_erased::<T>,
        }
    }
}

impl<T> fmt::Debug for Provider<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("type", &std::any::type_name::<T>())
            .field("scope", &self.scope)
            .field("close", &self.close.is_some())
            .finish()
    }
}

/// What a provider's open function returns: `Result<T, BoxError>`, or a
/// future of it. `M` tells the two apart; it is inferred.
pub trait OpenOutput<T, M>: Send + 'static {
    /// The value, once opened.
    fn into_opened(self) -> BoxFuture<'static, Result<T, BoxError>>;
}

impl<T: Send + 'static> OpenOutput<T, ()> for Result<T, BoxError> {
    fn into_opened(self) -> BoxFuture<'static, Result<T, BoxError>> {
        Box::pin(std::future::ready(self))
    }
}

/// Marks an async open or close function.
#[doc(hidden)]
pub struct Async<M>(std::marker::PhantomData<M>);

impl<T, F> OpenOutput<T, Async<()>> for F
where
    F: Future<Output = Result<T, BoxError>> + Send + 'static,
{
    fn into_opened(self) -> BoxFuture<'static, Result<T, BoxError>> {
        Box::pin(self)
    }
}

/// What a close function returns: `()`, `Result<(), E>` with a displayable
/// error, or a future of either. `M` tells them apart; it is inferred.
pub trait CloseOutput<M>: Send + 'static {
    /// The outcome of the cleanup, as a message on failure.
    fn into_outcome(self) -> BoxFuture<'static, Result<(), String>>;
}

impl CloseOutput<()> for () {
    fn into_outcome(self) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

impl<E: fmt::Display + Send + 'static> CloseOutput<Result<(), E>> for Result<(), E> {
    fn into_outcome(self) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(std::future::ready(self.map_err(|e| e.to_string())))
    }
}

impl<F, M> CloseOutput<Async<M>> for F
where
    F: Future + Send + 'static,
    F::Output: CloseOutput<M>,
{
    fn into_outcome(self) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async move { self.await.into_outcome().await })
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a task or a worker did not get a dependency or a state.
///
/// A task whose dependency fails ends `error` with this message; it can be
/// matched with `#[task(retry_on = [qtasks::DependencyError])]`.
#[derive(Debug)]
#[non_exhaustive]
pub enum DependencyError {
    /// No provider of this type was given to the app.
    NotProvided {
        /// The type's full name.
        type_name: &'static str,
        /// The task that declares it, if known.
        task: Option<&'static str>,
    },
    /// No state of this type was given to the app.
    StateNotProvided {
        /// The type's full name.
        type_name: &'static str,
        /// The task that declares it, if known.
        task: Option<&'static str>,
    },
    /// The per-worker value is gone: its worker has shut down.
    Closed {
        /// The type's full name.
        type_name: &'static str,
    },
    /// The provider's open function failed.
    Open {
        /// The type's full name.
        type_name: &'static str,
        /// What the open function returned.
        source: BoxError,
    },
}

impl fmt::Display for DependencyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let needed_by = |task: &Option<&str>| task.map(|t| format!(" (needed by task `{t}`)")).unwrap_or_default();
        match self {
            Self::NotProvided { type_name, task } => write!(
                f,
                "dependency `{type_name}` is not provided{}; add it with Builder::provide(Provider::per_task(…)) or Builder::provide(Provider::per_worker(…))",
                needed_by(task)
            ),
            Self::StateNotProvided { type_name, task } => {
                write!(f, "state `{type_name}` is not provided{}; add it with Builder::state(…)", needed_by(task))
            }
            Self::Closed { type_name } => {
                write!(f, "dependency `{type_name}` is no longer available: its worker has shut down")
            }
            Self::Open { type_name, source } => write!(f, "dependency `{type_name}` could not be opened: {source}"),
        }
    }
}

impl std::error::Error for DependencyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// The app's registry, a worker's values, a run's values
// ---------------------------------------------------------------------------

/// A provider with its type erased.
pub(crate) struct ErasedProvider {
    id: TypeId,
    name: &'static str,
    scope: Scope,
    open: Arc<dyn Fn() -> BoxFuture<'static, Result<Erased, BoxError>> + Send + Sync>,
    close: CloseErased,
}

/// What an app provides: its providers (in the order given) and its states.
#[derive(Default)]
pub(crate) struct Registry {
    providers: Vec<ErasedProvider>,
    states: Vec<(TypeId, Erased)>,
}

impl Registry {
    /// Adds a provider, replacing one of the same type.
    pub(crate) fn provide<T: Send + Sync + 'static>(&mut self, provider: Provider<T>) {
        let provider = provider.erase();
        match self.providers.iter_mut().find(|p| p.id == provider.id) {
            Some(slot) => *slot = provider,
            None => self.providers.push(provider),
        }
    }

    /// Adds a state, replacing one of the same type.
    pub(crate) fn state<T: Send + Sync + 'static>(&mut self, value: T) {
        let state: Erased = Arc::new(State::new(value));
        let id = TypeId::of::<T>();
        match self.states.iter_mut().find(|(t, _)| *t == id) {
            Some(slot) => slot.1 = state,
            None => self.states.push((id, state)),
        }
    }

    fn provider(&self, id: TypeId) -> Option<&ErasedProvider> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// The state of type `T`, if the app has one.
    pub(crate) fn get_state<T: Send + Sync + 'static>(&self) -> Option<State<T>> {
        let id = TypeId::of::<T>();
        let (_, state) = self.states.iter().find(|(t, _)| *t == id)?;
        state.downcast_ref::<State<T>>().cloned()
    }

    /// Checks that every dependency and state the tasks declare is provided.
    pub(crate) fn check(&self, tasks: &[&'static TaskInfo]) -> Result<(), DependencyError> {
        for task in tasks {
            for dep in task.deps {
                let id = dep.type_id();
                let (type_name, task) = (dep.type_name(), Some(task.name));
                match dep.kind() {
                    DependencyKind::Dep if self.provider(id).is_none() => {
                        return Err(DependencyError::NotProvided { type_name, task });
                    }
                    DependencyKind::State if !self.states.iter().any(|(t, _)| *t == id) => {
                        return Err(DependencyError::StateNotProvided { type_name, task });
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// A worker's per-worker values, in the order they were opened.
pub(crate) struct WorkerDeps {
    registry: Arc<Registry>,
    values: StdRwLock<Vec<Opened>>,
}

static NO_DEPS: LazyLock<Arc<WorkerDeps>> = LazyLock::new(|| Arc::new(WorkerDeps::none(Arc::default())));

impl WorkerDeps {
    fn none(registry: Arc<Registry>) -> Self {
        Self { registry, values: StdRwLock::new(Vec::new()) }
    }

    /// No per-worker values, for unit tests of the runtime.
    #[cfg(test)]
    pub(crate) fn none_for_tests() -> Self {
        Self::none(Arc::default())
    }

    /// Opens the per-worker values in the order their providers were
    /// given. On a failure the values opened so far are closed, in reverse.
    pub(crate) async fn open(registry: Arc<Registry>) -> Result<Self, DependencyError> {
        let deps = Self::none(Arc::clone(&registry));
        for provider in registry.providers.iter().filter(|p| p.scope == Scope::Worker) {
            match (provider.open)().await {
                Ok(value) => deps.values.write().unwrap_or_else(|e| e.into_inner()).push(Opened {
                    id: provider.id,
                    value,
                    close: provider.close,
                }),
                Err(source) => {
                    deps.close().await;
                    return Err(DependencyError::Open { type_name: provider.name, source });
                }
            }
        }
        Ok(deps)
    }

    /// Closes the per-worker values, in the reverse order of opening.
    pub(crate) async fn close(&self) {
        let values = std::mem::take(&mut *self.values.write().unwrap_or_else(|e| e.into_inner()));
        for opened in values.into_iter().rev() {
            (opened.close)(opened.value).await;
        }
    }

    fn get(&self, id: TypeId) -> Option<Erased> {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        values.iter().find(|o| o.id == id).map(|o| Arc::clone(&o.value))
    }
}

/// The per-task values one run opened, closed when the run ends.
#[derive(Default)]
pub(crate) struct TaskDeps {
    opened: tokio::sync::Mutex<Vec<Opened>>,
}

impl TaskDeps {
    /// Closes the run's values, in the reverse order of opening.
    pub(crate) async fn close(&self) {
        let opened = std::mem::take(&mut *self.opened.lock().await);
        for opened in opened.into_iter().rev() {
            (opened.close)(opened.value).await;
        }
    }
}

/// What a task context reaches: the app's registry through its worker,
/// and the run's own values.
#[derive(Clone)]
pub(crate) struct Resources {
    worker: Arc<WorkerDeps>,
    task: Option<Arc<TaskDeps>>,
}

impl Resources {
    /// Nothing provided (contexts made by [`TaskContext::new`]).
    pub(crate) fn none() -> Self {
        Self { worker: Arc::clone(&NO_DEPS), task: None }
    }

    /// For one run of `task` on a worker; a run keeps its own per-task
    /// values only if the task declares dependencies.
    pub(crate) fn for_run(worker: &Arc<WorkerDeps>, task: &TaskInfo) -> Self {
        let task = (!task.deps.is_empty()).then(Arc::default);
        Self { worker: Arc::clone(worker), task }
    }

    /// The run's per-task values, to close when it ends.
    pub(crate) fn task_deps(&self) -> Option<Arc<TaskDeps>> {
        self.task.clone()
    }

    pub(crate) async fn dep<T: Send + Sync + 'static>(
        &self,
        task: Option<&'static str>,
    ) -> Result<Dep<T>, DependencyError> {
        let id = TypeId::of::<T>();
        let type_name = std::any::type_name::<T>();
        let Some(provider) = self.worker.registry.provider(id) else {
            return Err(DependencyError::NotProvided { type_name, task });
        };
        let erased = match provider.scope {
            Scope::Worker => self.worker.get(id).ok_or(DependencyError::Closed { type_name })?,
            Scope::Task => match &self.task {
                Some(scope) => {
                    let mut opened = scope.opened.lock().await;
                    match opened.iter().find(|o| o.id == id) {
                        Some(o) => Arc::clone(&o.value),
                        None => {
                            let value = (provider.open)()
                                .await
                                .map_err(|source| DependencyError::Open { type_name, source })?;
                            opened.push(Opened { id, value: Arc::clone(&value), close: provider.close });
                            value
                        }
                    }
                }
                // A run that declares no dependency: the value is closed
                // when the last `Dep` is dropped.
                None => (provider.open)().await.map_err(|source| DependencyError::Open { type_name, source })?,
            },
        };
        let slot = erased.downcast::<Slot<T>>().map_err(|_| DependencyError::NotProvided { type_name, task: None })?;
        Ok(Dep(slot))
    }

    pub(crate) fn state<T: Send + Sync + 'static>(
        &self,
        task: Option<&'static str>,
    ) -> Result<State<T>, DependencyError> {
        self.worker
            .registry
            .get_state::<T>()
            .ok_or(DependencyError::StateNotProvided { type_name: std::any::type_name::<T>(), task })
    }
}

impl fmt::Debug for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resources")
            .field("providers", &self.worker.registry.providers.len())
            .field("states", &self.worker.registry.states.len())
            .finish()
    }
}

// Helpers for `#[task]`.

/// Resolves a `Dep<T>` parameter.
#[doc(hidden)]
pub async fn resolve_dep<T: Send + Sync + 'static>(ctx: &TaskContext) -> Result<Dep<T>, crate::TaskError> {
    ctx.dep::<T>().await.map_err(Into::into)
}

/// Resolves a `State<T>` parameter.
#[doc(hidden)]
pub fn resolve_state<T: Send + Sync + 'static>(ctx: &TaskContext) -> Result<State<T>, crate::TaskError> {
    ctx.state::<T>().map_err(Into::into)
}
