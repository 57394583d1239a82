//! The app: its tasks, its plugins and its backend ([`QueueTasks`], built
//! by a [`Builder`]); the events it emits ([`events`]); and the errors of
//! its client and worker sides ([`Error`], [`WaitError`]).

mod builder;
mod declare;
mod error;
pub mod events;

pub use builder::Builder;
pub use error::{Error, WaitError};

use crate::app::events::Events;
use crate::backend::{Backend, MemoryBackend};
use crate::config::Config;
use crate::dispatch::{PluginChain, PluginInfo};
use crate::queue::{DEFAULT_QUEUE, Limits, Queue};
use crate::task::deps::{Registry, State};
use crate::task::{TaskInfo, TaskSet};
use std::marker::PhantomData;
use std::sync::Arc;

/// An app: the tasks it knows, its plugin chain and its backend.
///
/// The same value is the client (enqueue, read, wait) and the factory of
/// workers ([`QueueTasks::worker`]). It is cheap to clone.
///
/// Type parameters: `T` the [`TaskSet`], `C` the plugin [`PluginChain`], `B` the
/// [`Backend`]; the builder infers them. To name the type, declare it with
/// [`app!`](crate::app!); code that only enqueues and waits takes a
/// [`Client`](crate::Client) instead, which has none.
///
/// ```
/// use qtasks::{QueueTasks, task};
/// use std::time::Duration;
///
/// #[task]
/// async fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = QueueTasks::builder("demo").task::<Add>().build()?;
/// let worker = app.worker().start().await?; // the worker side
/// let handle = app.add_task("add", (2, 3)).await?; // the client side
/// assert_eq!(handle.result(Duration::from_secs(5)).await?, 5);
/// worker.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct QueueTasks<T = (), C = (), B = MemoryBackend> {
    pub(crate) inner: Arc<AppInner<T, C, B>>,
}

impl<T, C, B> Clone for QueueTasks<T, C, B> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

/// The tasks an app runs: its own, then its plugins'.
pub(crate) type AllTasks<T, C> = (T, <C as PluginChain>::Tasks);

pub(crate) struct AppInner<T, C, B> {
    pub(crate) name: String,
    pub(crate) chain: C,
    pub(crate) backend: B,
    pub(crate) config: Config,
    pub(crate) deps: Arc<Registry>,
    pub(crate) events: Events,
    /// The queues the app declares ([`Builder::queue`]), with their limits.
    pub(crate) queues: Vec<Queue>,
    pub(crate) _tasks: PhantomData<fn() -> T>,
}

impl<T: TaskSet, C: PluginChain, B: Backend> QueueTasks<T, C, B> {
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

    /// The plugin chain (not a chain of tasks: that is [`QueueTasks::chain`]).
    pub fn plugin_chain(&self) -> &C {
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
}

impl<T: TaskSet, C: PluginChain, B> AppInner<T, C, B> {
    /// Every queue the app knows, in order: the default queue, the queues
    /// its tasks name, then the ones it declares.
    pub(crate) fn known_queues(&self) -> Vec<String> {
        let mut names = vec![DEFAULT_QUEUE.to_owned()];
        let mut tasks = Vec::new();
        <AllTasks<T, C>>::describe(&mut tasks);
        for name in tasks.iter().map(|t| t.queue).chain(self.queues.iter().map(Queue::name)) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        names
    }

    /// The limits the app's tasks and queues declare.
    pub(crate) fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        let mut tasks = Vec::new();
        <AllTasks<T, C>>::describe(&mut tasks);
        for task in tasks {
            let mut limit = task.limit;
            if task.concurrency_key.is_some() && limit.per_key.is_none() {
                limit.per_key = Some(1);
            }
            if !limit.is_none() {
                limits.tasks.insert(task.name.to_owned(), limit);
            }
        }
        for queue in &self.queues {
            if !queue.limit().is_none() {
                limits.queues.insert(queue.name().to_owned(), queue.limit());
            }
        }
        limits
    }
}
