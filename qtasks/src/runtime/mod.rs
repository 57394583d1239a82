//! The runtime: workers that take tasks from the backend and run them.
//!
//! - [`worker`](Worker): the loop that takes tasks, bounded by its slots;
//! - `executor`: one task's pipeline, with its triggers in QTasks's order;
//! - [`schedule`]: interval and cron schedules that enqueue tasks.

pub(crate) mod executor;
mod retry;
mod run;
pub mod schedule;
mod worker;

pub use worker::{ShutdownReport, Worker, WorkerBuilder};
