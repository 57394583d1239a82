//! What a running task knows about itself.

use super::error::{Cancelled, PluginError};
use uuid::Uuid;

/// The context of one task run: its id, name, attempt and tracing span.
///
/// A task receives it by declaring a parameter of this type (by value or by
/// reference). It is cheap to clone.
#[derive(Clone, Debug)]
pub struct TaskContext {
    uuid: Uuid,
    name: &'static str,
    attempt: u32,
    span: tracing::Span,
}

impl TaskContext {
    /// A context for a task run. The worker creates these; tests may too.
    pub fn new(uuid: Uuid, name: &'static str, attempt: u32) -> Self {
        let span = tracing::info_span!("task", task = name, %uuid, attempt);
        Self { uuid, name, attempt, span }
    }

    pub(crate) fn with_span(uuid: Uuid, name: &'static str, attempt: u32, span: tracing::Span) -> Self {
        Self { uuid, name, attempt, span }
    }

    /// The task's id.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The task's name.
    pub fn name(&self) -> &'static str {
        self.name
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
        PluginError::new(reason).field("task_uuid", self.uuid.to_string()).field("task_name", self.name)
    }

    /// An error that ends the task `cancel` with the reason; return it.
    pub fn cancel(&self, reason: impl Into<String>) -> Cancelled {
        Cancelled::new(reason)
    }
}
