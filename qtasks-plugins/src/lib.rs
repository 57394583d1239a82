//! Built-in plugins for qtasks, written only against its public
//! [`Plugin`](qtasks::Plugin) API (if one needed a private hook, the public
//! API would be missing something).
//!
//! - [`TaskLog`]: logs every task's start and end through `tracing`.
//! - [`TaskMetrics`]: counts finished tasks by name and status, and their
//!   run time, through the `metrics` crate facade.
//! - [`TestingTagger`]: QTasks's testing plugin: tasks enqueued with the
//!   extra field `test` get `is_testing` in their stored record.

mod log;
mod metrics_plugin;
mod testing;

pub use log::TaskLog;
pub use metrics_plugin::TaskMetrics;
pub use testing::TestingTagger;
