//! How a task ends when it does not return a value.

use serde_json::{Map, Value};
use std::error::Error as StdError;
use std::fmt;

/// The error a task returns to hand itself to `task_executor_run_task_trigger_error`
/// (QTasks's `TaskPluginTriggerError`).
///
/// If a plugin handler of that trigger returns a value, the task ends
/// `success` with it; otherwise it ends `error` with [`PluginError::reason`].
/// Create one with [`TaskContext::plugin_error`](crate::TaskContext::plugin_error)
/// or [`PluginError::new`], and return it.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginError {
    reason: String,
    fields: Map<String, Value>,
}

impl PluginError {
    /// A plugin error with a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), fields: Map::new() }
    }

    /// Adds a field handlers can read (QTasks's keyword arguments).
    pub fn field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// Why the task raised it.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The fields attached with [`PluginError::field`].
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl StdError for PluginError {}

/// The error a task returns to end itself `cancel` with a reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancelled {
    reason: String,
}

impl Cancelled {
    /// A cancellation with a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into() }
    }

    /// Why the task was cancelled.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cancelled: {}", self.reason)
    }
}

impl StdError for Cancelled {}

/// Names a panic in `#[task(retry_on = [qtasks::task::Panicked])]`: a task
/// that panicked is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Panicked;

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task panicked")
    }
}

impl StdError for Panicked {}

/// Names a run past `max_time` in
/// `#[task(retry_on = [qtasks::task::TimeLimitExceeded])]`: a task that hit
/// its time limit is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeLimitExceeded;

impl fmt::Display for TimeLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("time limit exceeded")
    }
}

impl StdError for TimeLimitExceeded {}

/// Why a task did not produce a value.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into it with `?`;
/// a [`PluginError`] or [`Cancelled`] keeps its meaning through the
/// conversion. Like `anyhow::Error`, `TaskError` itself does not implement
/// `std::error::Error`, which is what makes that blanket conversion possible.
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskError {
    /// The task failed; the task ends `error`.
    Failed(Box<dyn StdError + Send + Sync + 'static>),
    /// The task failed with a message; the task ends `error`.
    Message(String),
    /// The task handed itself to the plugins (see [`PluginError`]).
    Plugin(PluginError),
    /// The task cancelled itself; the task ends `cancel`.
    Cancelled(Cancelled),
    /// The arguments could not be decoded into the task's parameters.
    InvalidArguments(String),
    /// The task panicked.
    Panicked(String),
    /// The task ran past its `max_time`.
    TimeLimit(std::time::Duration),
}

impl TaskError {
    /// A failure with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::Message(message.into())
    }

    /// `true` if the task failed with an error of type `E` (returned with
    /// `?` or `Err(e.into())`); `#[task(retry_on = …)]` matches errors this
    /// way. A panic matches [`Panicked`], a run past `max_time` matches
    /// [`TimeLimitExceeded`].
    pub fn is<E: StdError + 'static>(&self) -> bool {
        use std::any::TypeId;
        match self {
            Self::Failed(e) => e.is::<E>(),
            Self::Plugin(e) => (e as &dyn StdError).is::<E>(),
            Self::Cancelled(c) => (c as &dyn StdError).is::<E>(),
            Self::Panicked(_) => TypeId::of::<E>() == TypeId::of::<Panicked>(),
            Self::TimeLimit(_) => TypeId::of::<E>() == TypeId::of::<TimeLimitExceeded>(),
            Self::Message(_) | Self::InvalidArguments(_) => false,
        }
    }

    /// `false` for errors a retry cannot fix: arguments that do not decode,
    /// and cancellation.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::InvalidArguments(_) | Self::Cancelled(_))
    }

    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        Self::Panicked(crate::error::panic_message(&*payload))
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        let boxed: Box<dyn StdError + Send + Sync> = Box::new(error);
        let boxed = match boxed.downcast::<PluginError>() {
            Ok(p) => return Self::Plugin(*p),
            Err(other) => other,
        };
        match boxed.downcast::<Cancelled>() {
            Ok(c) => Self::Cancelled(*c),
            Err(other) => Self::Failed(other),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => fmt::Display::fmt(e, f),
            Self::Message(m) => f.write_str(m),
            Self::Plugin(e) => fmt::Display::fmt(e, f),
            Self::Cancelled(c) => f.write_str(c.reason()),
            Self::InvalidArguments(m) => write!(f, "invalid arguments: {m}"),
            Self::Panicked(m) => write!(f, "task panicked: {m}"),
            Self::TimeLimit(d) => write!(f, "time limit exceeded ({:.3} s)", d.as_secs_f64()),
        }
    }
}
