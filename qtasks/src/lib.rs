//! qtasks: a task queue whose plugins are bound to triggers at compile time.
//!
//! - [`#[task]`](macro@task) turns a `fn` or `async fn` into a task clients enqueue
//!   by name and workers run.
//! - [`#[plugin]`](macro@plugin) binds handlers to the 56 QTasks
//!   [triggers](triggers). Each trigger is a monomorphized call chain: no
//!   lookup, no boxing, and nothing at all when no plugin listens.
//! - [`QueueTasks`] is the app: the client side (`add_task`, `get`, `wait`)
//!   and the worker side (`worker().start()`), on the in-memory backend by
//!   default.
//!
//! ```
//! use qtasks::{QueueTasks, Signature, task};
//! use std::time::Duration;
//!
//! #[task]
//! async fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = QueueTasks::builder("demo").task::<Add>().build()?;
//! let worker = app.worker().start().await?;
//! let sum = app.enqueue(Add::call(2, 3)).await?.result(Duration::from_secs(5)).await?;
//! assert_eq!(sum, 5);
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! The modules are the layers, each depending only on those above it:
//!
//! | module | layer |
//! | --- | --- |
//! | [`BoxError`], [`trace`], [`model`], [`queue`], [`config`] | leaves: boxed errors, trace context, the data on the wire, queues and limits, settings |
//! | [`task`](mod@task) | what a task is: the trait, its context, cancel token, errors, dependencies |
//! | [`dispatch`] | the compile-time core: trigger table, contexts, `Plugin`, chains, firing |
//! | [`plugin`](mod@plugin) | the plugin API and wrappers over it (`Managed`, `DynChain`, `Globals`) |
//! | [`backend`] | where queues and records live: the trait, memory, Redis, Postgres |
//! | [`app`](mod@app) | [`QueueTasks`], its [`Builder`], its events and errors, [`app!`] |
//! | [`client`] | enqueue, wait, cancel, chains and groups, shared settings, inspect |
//! | [`runtime`] | workers, the executor pipeline, events, schedules |
#![doc = include_str!("../docs/plugins.md")]
#![warn(missing_docs)]

// The conformance suite defines `#[task]`s in this crate, and `#[task]`
// expands to `::qtasks::…` paths.
#[cfg(feature = "conformance")]
extern crate self as qtasks;

pub mod app;
pub mod backend;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod config;
pub mod dispatch;
mod error;
pub mod model;
pub mod plugin;
pub mod queue;
pub mod runtime;
pub mod task;
pub mod testing;
pub mod trace;
#[cfg(feature = "web")]
pub mod web;

pub use app::events::{Event, EventKind};
pub use app::{Builder, Error, QueueTasks, WaitError};
#[cfg(feature = "postgres")]
pub use backend::PostgresBackend;
#[cfg(feature = "redis")]
pub use backend::RedisBackend;
pub use backend::{AnyBackend, Backend, BackendError, MemoryBackend};
pub use client::canvas::{ChainError, GroupError, MemberError, TaskChain, TaskGroup};
pub use client::inspect::Inspection;
pub use client::{Client, Enqueue, Signature, TaskHandle, WorkerInfo, call};
pub use config::{Config, ConfigError};
pub use dispatch::triggers;
pub use dispatch::{Member, Outcome, Plugin, PluginChain, PluginInfo};
pub use error::BoxError;
pub use model::{Name, NewTask, TaskMessage, TaskRecord, TaskStatus, Unique};
pub use qtasks_macros::{plugin, task};
pub use queue::{DEFAULT_QUEUE, Queue, QueueInfo, QueueOrder, Rate};
pub use runtime::schedule::{ScheduleEntry, ScheduleError, ScheduleHandle, Scheduler};
pub use runtime::{ShutdownReport, Worker, WorkerBuilder};
pub use task::{
    CancelToken, Cancelled, Dep, DependencyError, PluginError, Provider, State, Task, TaskContext, TaskError, TaskInfo,
    TaskSet,
};

/// Re-exported for stream tasks (`fn f() -> impl Stream<Item = T>`), so apps
/// need not add `futures` to write and build one.
pub use futures::{Stream, stream};
/// Re-exported so apps need not add these crates to build JSON arguments.
pub use serde_json::{Value, json};
/// Task ids.
pub use uuid::Uuid;

#[doc(hidden)]
pub mod __private;
