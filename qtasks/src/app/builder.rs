//! [`Builder`]: how an app is put together.

use super::Error;
use super::{AppInner, QueueTasks};
use crate::app::events::{Event, EventKind, Events};
use crate::backend::{Backend, MemoryBackend};
use crate::config::Config;
use crate::dispatch::{Append, Member, Plugin, PluginChain};
use crate::queue::Queue;
use crate::task::deps::{Provider, Registry};
use crate::task::{Task, TaskSet};
use std::marker::PhantomData;
use std::sync::Arc;

impl QueueTasks {
    /// Starts building an app with no task, no plugin and the in-memory backend.
    pub fn builder(name: impl Into<String>) -> Builder<(), (), MemoryBackend> {
        Builder {
            name: name.into(),
            chain: (),
            backend: MemoryBackend::new(),
            config: Config::default(),
            events: Events::default(),
            deps: Registry::default(),
            queues: Vec::new(),
            _tasks: PhantomData,
        }
    }
}

/// Builds a [`QueueTasks`].
///
/// ```
/// use qtasks::{AnyBackend, Config, QueueTasks, task};
///
/// #[task]
/// async fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// #[qtasks::plugin(on = "worker_start")]
/// fn announce(ctx: &qtasks::triggers::WorkerStart<'_>) {
///     println!("{} starts with {} slots", ctx.app, ctx.max_tasks_process);
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = QueueTasks::builder("demo")
///     .task::<Add>() // tasks, in any order
///     .plugin(Announce) // plugins, in the order they run
///     .config(Config::default().max_tasks_process(4))
///     .backend(AnyBackend::connect("memory://").await?) // the default is in memory; the app names it
///     .build()?;
/// assert_eq!(app.tasks()[0].name, "add");
/// # Ok(())
/// # }
/// ```
///
/// # Order
///
/// Plugins run in the order they are added: the first `.plugin(…)` is
/// called first for every trigger, started first and stopped last.
#[must_use = "call `.build()` to get the app"]
pub struct Builder<T, C, B> {
    name: String,
    chain: C,
    backend: B,
    config: Config,
    events: Events,
    deps: Registry,
    queues: Vec<Queue>,
    _tasks: PhantomData<fn() -> T>,
}

impl<T, C, B> Builder<T, C, B> {
    /// Adds a task (a type defined by `#[task]`).
    pub fn task<K: Task>(self) -> Builder<<T as Append<K>>::Output, C, B>
    where
        T: Append<K>,
    {
        Builder {
            name: self.name,
            chain: self.chain,
            backend: self.backend,
            config: self.config,
            events: self.events,
            deps: self.deps,
            queues: self.queues,
            _tasks: PhantomData,
        }
    }

    /// Adds a set of tasks at once, e.g. `.tasks::<(Add, mul)>()`.
    pub fn tasks<S: TaskSet>(self) -> Builder<<T as Append<S>>::Output, C, B>
    where
        T: Append<S>,
    {
        Builder {
            name: self.name,
            chain: self.chain,
            backend: self.backend,
            config: self.config,
            events: self.events,
            deps: self.deps,
            queues: self.queues,
            _tasks: PhantomData,
        }
    }

    /// Adds a plugin after the ones already added.
    pub fn plugin<P: Plugin>(self, plugin: P) -> Builder<T, <C as Append<Member<P>>>::Output, B>
    where
        C: Append<Member<P>>,
    {
        Builder {
            name: self.name,
            chain: self.chain.append(Member::new(plugin)),
            backend: self.backend,
            config: self.config,
            events: self.events,
            deps: self.deps,
            queues: self.queues,
            _tasks: PhantomData,
        }
    }

    /// Adds plugins chosen at run time (for example from a config file),
    /// after the ones already added: the `dyn` escape hatch, with the same
    /// semantics as static plugins at the cost of a box per async call.
    pub fn dyn_plugins(
        self,
        plugins: crate::plugin::DynChain,
    ) -> Builder<T, <C as Append<crate::plugin::DynChain>>::Output, B>
    where
        C: Append<crate::plugin::DynChain>,
    {
        Builder {
            name: self.name,
            chain: self.chain.append(plugins),
            backend: self.backend,
            config: self.config,
            events: self.events,
            deps: self.deps,
            queues: self.queues,
            _tasks: PhantomData,
        }
    }

    /// Uses another backend.
    pub fn backend<B2: Backend>(self, backend: B2) -> Builder<T, C, B2> {
        Builder {
            name: self.name,
            chain: self.chain,
            backend,
            config: self.config,
            events: self.events,
            deps: self.deps,
            queues: self.queues,
            _tasks: PhantomData,
        }
    }

    /// Uses these settings (default: [`Config::default`]; the environment is
    /// read only if you ask, e.g. `.config(Config::from_env()?)`). The app
    /// reads `task_default_priority` and its workers `max_tasks_process`;
    /// `blocking_handler_limit` is process-wide and applied by the CLI, not
    /// by the app; backend
    /// settings are given when connecting, see
    /// [`AnyBackend::connect_with`](crate::AnyBackend::connect_with).
    pub fn config(self, config: Config) -> Self {
        Builder { config, ..self }
    }

    /// Declares a queue with its limits (see [`crate::queue`]); a queue
    /// declared twice keeps the last settings. Queues that tasks name need
    /// no declaration unless they have limits, or a worker should consume
    /// one no task of this app names.
    pub fn queue(mut self, queue: Queue) -> Self {
        self.queues.retain(|q| q.name() != queue.name());
        self.queues.push(queue);
        self
    }

    /// Provides the value of `Dep<T>` task parameters (QTasks's
    /// `Depends`): made for each run of a task that declares it
    /// ([`Provider::per_task`]) or once per worker
    /// ([`Provider::per_worker`]), and cleaned up when that scope ends; see
    /// [`crate::task::deps`]. A second provider of the same type replaces the first.
    pub fn provide<D: Send + Sync + 'static>(mut self, provider: Provider<D>) -> Self {
        self.deps.provide(provider);
        self
    }

    /// Shares `value` with every task of the app in this process as a
    /// `State<S>` parameter (QTasks's `State`), behind an async read-write
    /// lock; see [`State`](crate::State). A second state of the same type replaces the first.
    pub fn state<S: Send + Sync + 'static>(mut self, value: S) -> Self {
        self.deps.state(value);
        self
    }

    /// Calls `handler` on every event of `kind` (see [`crate::app::events`]), in
    /// the order handlers were added.
    pub fn on(mut self, kind: EventKind, handler: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.events.on(kind, handler);
        self
    }

    /// Awaits `handler` on every event of `kind` (see [`crate::app::events`]), in
    /// the order handlers were added.
    pub fn on_async<F, Fut>(mut self, kind: EventKind, handler: F) -> Self
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.events.on_async(kind, handler);
        self
    }
}

impl<T: TaskSet, C: PluginChain, B: Backend> Builder<T, C, B> {
    /// Builds the app. Its tasks are the ones added with `.task`/`.tasks`
    /// followed by those the plugins contribute.
    ///
    /// A task name that appears twice, among the app's tasks and its
    /// plugins', is a compile-time error (every task list is known at
    /// compile time). The `Result` leaves room for checks that need run
    /// time; none fails today.
    ///
    /// Building changes no process-wide state: in particular
    /// [`Config::blocking_handler_limit`] is not applied here (the limit is
    /// process-wide; see [`set_blocking_handler_limit`](crate::plugin::set_blocking_handler_limit)).
    pub fn build(self) -> Result<QueueTasks<T, C, B>, Error> {
        const { <(T, C::Tasks)>::NAMES.assert_unique() };
        // The app is named here only: its backend serves this name.
        let backend = self.backend.for_app(&self.name);
        Ok(QueueTasks {
            inner: Arc::new(AppInner {
                name: self.name,
                chain: self.chain,
                backend,
                config: self.config,
                events: self.events,
                deps: Arc::new(self.deps),
                queues: self.queues,
                _tasks: PhantomData,
            }),
        })
    }
}
