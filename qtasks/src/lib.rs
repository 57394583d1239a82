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
//! use qtasks::{QueueTasks, task};
//! use std::time::Duration;
//!
//! #[task]
//! async fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = QueueTasks::builder("demo").task::<add>().build()?;
//! let worker = app.worker().start().await?;
//! let sum = app.enqueue::<add>((2, 3)).await?.result(Duration::from_secs(5)).await?;
//! assert_eq!(sum, 5);
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![doc = include_str!("../docs/plugins.md")]
#![warn(missing_docs)]

mod app;
pub mod backend;
pub mod canvas;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
pub mod config;
pub mod deps;
mod error;
pub mod events;
mod executor;
mod global_config;
pub mod inspect;
pub mod model;
pub mod plugin;
pub mod schedule;
#[doc(hidden)]
pub mod snapshot;
pub mod task;
pub mod testing;
pub mod trigger;
pub mod triggers;
mod worker;

pub use app::{Builder, QueueTasks};
#[cfg(feature = "redis")]
pub use backend::RedisBackend;
pub use backend::{AnyBackend, Backend, BackendError, MemoryBackend};
pub use canvas::{ChainError, GroupError, MemberError, Signature, TaskCall, TaskChain, TaskGroup, call};
pub use client::{AddTask, AddTaskWait, Enqueue, TaskHandle};
pub use config::{Config, ConfigError};
pub use deps::{Dep, DependencyError, Provider, State};
pub use error::{Error, WaitError};
pub use global_config::WorkerInfo;
pub use inspect::Inspection;
pub use model::{NewTask, Task as TaskRecord, TaskMessage, TaskStatus};
pub use plugin::{BoxError, Chain, Outcome, Plugin, PluginInfo};
pub use qtasks_macros::{plugin, task};
pub use schedule::{ScheduleError, ScheduleHandle, Scheduler};
pub use task::{CancelToken, Cancelled, PluginError, Task, TaskContext, TaskError, TaskInfo, TaskSet};
pub use trigger::{Component, Kind, Trigger, TriggerInfo, TriggerSet};
pub use worker::{Worker, WorkerBuilder};

/// Re-exported for stream tasks (`fn f() -> impl Stream<Item = T>`), so apps
/// need not add `futures` to write and build one.
pub use futures::{Stream, stream};
/// Re-exported so apps need not add these crates to build JSON arguments.
pub use serde_json::{Value, json};
/// Task ids.
pub use uuid::Uuid;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
