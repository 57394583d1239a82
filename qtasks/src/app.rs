//! The app: its tasks, its plugins and its backend.

use crate::backend::{Backend, MemoryBackend};
use crate::config::Config;
use crate::deps::{Provider, Registry, State};
use crate::error::Error;
use crate::events::{Event, EventKind, Events};
use crate::plugin::{Append, Chain, Member, Plugin, PluginInfo};
use crate::task::{Task, TaskInfo, TaskSet};
use std::marker::PhantomData;
use std::sync::Arc;

/// An app: the tasks it knows, its plugin chain and its backend.
///
/// The same value is the client (enqueue, read, wait) and the factory of
/// workers ([`QueueTasks::worker`]). It is cheap to clone.
///
/// Type parameters: `T` the [`TaskSet`], `C` the plugin [`Chain`], `B` the
/// [`Backend`]; the builder infers them.
pub struct QueueTasks<T = (), C = (), B = MemoryBackend> {
    pub(crate) inner: Arc<AppInner<T, C, B>>,
}

impl<T, C, B> Clone for QueueTasks<T, C, B> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

/// The tasks an app runs: its own, then its plugins'.
pub(crate) type AllTasks<T, C> = (T, <C as Chain>::Tasks);

pub(crate) struct AppInner<T, C, B> {
    pub(crate) name: String,
    pub(crate) chain: C,
    pub(crate) backend: B,
    pub(crate) config: Config,
    pub(crate) deps: Arc<Registry>,
    pub(crate) events: Events,
    pub(crate) _tasks: PhantomData<fn() -> T>,
}

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
            _tasks: PhantomData,
        }
    }
}

/// Builds a [`QueueTasks`].
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
            _tasks: PhantomData,
        }
    }

    /// Adds a set of tasks at once, e.g. `.tasks::<(add, mul)>()`.
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
            _tasks: PhantomData,
        }
    }

    /// Uses these settings (default: [`Config::default`]; the environment is
    /// read only if you ask, e.g. `.config(Config::from_env()?)`). The app
    /// reads `task_default_priority`, its workers `max_tasks_process`, and
    /// [`build`](Builder::build) applies `blocking_handler_limit`; backend
    /// settings are given when connecting, see
    /// [`AnyBackend::connect_with`](crate::AnyBackend::connect_with).
    pub fn config(self, config: Config) -> Self {
        Builder { config, ..self }
    }

    /// Provides the value of `Dep<T>` task parameters (QTasks's
    /// `Depends`): made for each run of a task that declares it
    /// ([`Provider::per_task`]) or once per worker
    /// ([`Provider::per_worker`]), and cleaned up when that scope ends; see
    /// [`crate::deps`]. A second provider of the same type replaces the first.
    pub fn provide<D: Send + Sync + 'static>(mut self, provider: Provider<D>) -> Self {
        self.deps.provide(provider);
        self
    }

    /// Shares `value` with every task of the app in this process as a
    /// `State<S>` parameter (QTasks's `State`), behind an async read-write
    /// lock; see [`State`]. A second state of the same type replaces the first.
    pub fn state<S: Send + Sync + 'static>(mut self, value: S) -> Self {
        self.deps.state(value);
        self
    }

    /// Calls `handler` on every event of `kind` (see [`crate::events`]), in
    /// the order handlers were added.
    pub fn on(mut self, kind: EventKind, handler: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.events.on(kind, handler);
        self
    }

    /// Awaits `handler` on every event of `kind` (see [`crate::events`]), in
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

impl<T: TaskSet, C: Chain, B: Backend> Builder<T, C, B> {
    /// Builds the app. Its tasks are the ones added with `.task`/`.tasks`
    /// followed by those the plugins contribute.
    ///
    /// A task name that appears twice, among the app's tasks and its
    /// plugins', is a compile-time error (every task list is known at
    /// compile time). The `Result` leaves room for checks that need run
    /// time; none fails today.
    ///
    /// A [`Config::blocking_handler_limit`] that is set becomes the
    /// process-wide limit of blocking handlers.
    pub fn build(self) -> Result<QueueTasks<T, C, B>, Error> {
        const { <(T, C::Tasks)>::NAMES.assert_unique() };
        if let Some(limit) = self.config.blocking_handler_limit {
            crate::plugin::set_blocking_handler_limit(limit);
        }
        Ok(QueueTasks {
            inner: Arc::new(AppInner {
                name: self.name,
                chain: self.chain,
                backend: self.backend,
                config: self.config,
                events: self.events,
                deps: Arc::new(self.deps),
                _tasks: PhantomData,
            }),
        })
    }
}

impl<T: TaskSet, C: Chain, B: Backend> QueueTasks<T, C, B> {
    /// The app's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    /// The settings the app was built with ([`Builder::config`]).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The shared state of type `S` given with [`Builder::state`], if any:
    /// the value tasks see as a `State<S>` parameter.
    pub fn state<S: Send + Sync + 'static>(&self) -> Option<State<S>> {
        self.inner.deps.get_state::<S>()
    }

    /// The plugin chain.
    pub fn chain(&self) -> &C {
        &self.inner.chain
    }

    /// Every task of the app: those added with `.task`/`.tasks`, in
    /// registration order, then those the plugins contribute.
    pub fn tasks(&self) -> Vec<&'static TaskInfo> {
        let mut out = Vec::new();
        <AllTasks<T, C>>::describe(&mut out);
        out
    }

    /// Every plugin of the app, in registration order.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let mut out = Vec::new();
        self.inner.chain.describe(&mut out);
        out
    }

    /// Switches the plugins called `name` on or off at run time, without a
    /// rebuild; returns how many were switched. Only [`Managed`](crate::plugin::Managed)
    /// plugins can be switched; a switched-off plugin's handlers are skipped
    /// (one atomic load per call).
    pub fn set_plugin_enabled(&self, name: &str, on: bool) -> usize {
        self.inner.chain.set_enabled(name, on)
    }

    /// The priority a task declares, else the config's `task_default_priority`
    /// (also for a task this app does not define).
    pub(crate) fn default_priority(&self, name: &str) -> i64 {
        let declared = <AllTasks<T, C>>::info(name).and_then(|t| t.priority);
        declared.unwrap_or(self.inner.config.task_default_priority)
    }
}
