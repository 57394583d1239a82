//! What a handler returns, and how it becomes an [`Outcome`].

use std::error::Error as StdError;
use std::fmt;

pub use crate::error::BoxError;

/// What one handler did with a trigger's value.
pub enum Outcome<T> {
    /// Leave the value as it is (observers always return this).
    Keep,
    /// Replace the value; the next plugin sees the new one.
    Replace(T),
    /// The handler failed: it counts as `Keep` and is reported.
    Failed(BoxError),
    /// The handler failed and the plugins after it are skipped for this
    /// firing (the `OnError::Stop` policy of [`Managed`](crate::plugin::Managed)).
    Halt(BoxError),
}

/// The error a handler that panicked is reported with.
#[derive(Debug)]
pub struct HandlerPanicked(pub String);

impl fmt::Display for HandlerPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "handler panicked: {}", self.0)
    }
}

impl StdError for HandlerPanicked {}

impl HandlerPanicked {
    pub(crate) fn from_payload(payload: Box<dyn std::any::Any + Send>) -> Self {
        Self(crate::error::panic_message(&*payload))
    }
}

impl<T> fmt::Debug for Outcome<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keep => f.write_str("Keep"),
            Self::Replace(_) => f.write_str("Replace(..)"),
            Self::Failed(e) => write!(f, "Failed({e})"),
            Self::Halt(e) => write!(f, "Halt({e})"),
        }
    }
}

/// A type a handler of a trigger with value `T` may return.
///
/// | trigger kind | handler may return |
/// | --- | --- |
/// | observe (`T = ()`) | `()` or `Result<(), E>` |
/// | replace, intercept | `Option<T>` or `Result<Option<T>, E>` |
///
/// `E` is any error type; an `Err` counts as "no value" and is reported
/// with the plugin's name, the trigger and the task id.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid return type for a handler of a trigger whose value is `{T}`",
    label = "handlers of this trigger return `Option<{T}>` (or `()` for observers)",
    note = "observe triggers: return `()` or `Result<(), E>`; replace and intercept triggers: return `Option<T>` or `Result<Option<T>, E>`"
)]
pub trait IntoOutcome<T> {
    /// Converts the handler's return value.
    fn into_outcome(self) -> Outcome<T>;
}

impl IntoOutcome<()> for () {
    #[inline(always)]
    fn into_outcome(self) -> Outcome<()> {
        Outcome::Keep
    }
}

impl<E: Into<BoxError>> IntoOutcome<()> for Result<(), E> {
    #[inline(always)]
    fn into_outcome(self) -> Outcome<()> {
        match self {
            Ok(()) => Outcome::Keep,
            Err(e) => Outcome::Failed(e.into()),
        }
    }
}

impl<T> IntoOutcome<T> for Option<T> {
    #[inline(always)]
    fn into_outcome(self) -> Outcome<T> {
        match self {
            Some(v) => Outcome::Replace(v),
            None => Outcome::Keep,
        }
    }
}

impl<T, E: Into<BoxError>> IntoOutcome<T> for Result<Option<T>, E> {
    #[inline(always)]
    fn into_outcome(self) -> Outcome<T> {
        match self {
            Ok(Some(v)) => Outcome::Replace(v),
            Ok(None) => Outcome::Keep,
            Err(e) => Outcome::Failed(e.into()),
        }
    }
}

impl<T> IntoOutcome<T> for Outcome<T> {
    #[inline(always)]
    fn into_outcome(self) -> Outcome<T> {
        self
    }
}

/// What a handler of an observe trigger may return: `()`, `Result<(), E>`
/// or `Outcome<()>`. `#[plugin]` converts an observer's return value through
/// [`observer_outcome`], so a wrong type is reported in an observer's terms.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid return type for the handler of an observe trigger",
    label = "an observer returns `()` or `Result<(), E>`",
    note = "observe triggers only watch: their handlers cannot replace a value"
)]
pub trait ObserverReturn: IntoOutcome<()> {}

impl ObserverReturn for () {}
impl<E: Into<BoxError>> ObserverReturn for Result<(), E> {}
impl ObserverReturn for Outcome<()> {}

/// What a handler of a replace or intercept trigger with value `T` may
/// return: `Option<T>`, `Result<Option<T>, E>` or `Outcome<T>`. `#[plugin]`
/// converts such a handler's return value through [`replacer_outcome`].
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid return type for a handler of a trigger whose value is `{T}`",
    label = "return `Option<{T}>` or `Result<Option<{T}>, E>`",
    note = "replace and intercept triggers: `None` keeps the value, `Some(value)` replaces it (for an intercept trigger, rescues the failed task with it)"
)]
pub trait ReplacerReturn<T>: IntoOutcome<T> {}

impl<T> ReplacerReturn<T> for Option<T> {}
impl<T, E: Into<BoxError>> ReplacerReturn<T> for Result<Option<T>, E> {}
impl<T> ReplacerReturn<T> for Outcome<T> {}

/// Converts an observer's return value (called by code `#[plugin]` generates).
#[doc(hidden)]
#[inline(always)]
pub fn observer_outcome<R: ObserverReturn>(value: R) -> Outcome<()> {
    value.into_outcome()
}

/// Converts a replace or intercept handler's return value (called by code
/// `#[plugin]` generates).
#[doc(hidden)]
#[inline(always)]
pub fn replacer_outcome<T, R: ReplacerReturn<T>>(value: R) -> Outcome<T> {
    value.into_outcome()
}

/// What a plugin's `start` may return: `()` or `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a valid return type for a plugin's `start` or `stop`",
    note = "return `()` or `Result<(), E>` with any error type `E`"
)]
pub trait IntoStartResult {
    /// Converts the return value.
    fn into_start_result(self) -> Result<(), BoxError>;
}

impl IntoStartResult for () {
    #[inline(always)]
    fn into_start_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> IntoStartResult for Result<(), E> {
    #[inline(always)]
    fn into_start_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

/// Reports a plugin `stop` that failed (called by code `#[plugin]` generates).
#[doc(hidden)]
#[cold]
pub fn report_stop_error(plugin: &str, error: &(dyn StdError + Send + Sync)) {
    tracing::error!(plugin, error = %error, "plugin stop failed");
}

/// A plugin's `start` failed; the worker did not start (see
/// [`PluginChain::start`](super::PluginChain::start)).
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}` failed to start: {source}")]
pub struct PluginStartError {
    /// The plugin's name.
    pub plugin: String,
    /// What its `start` returned.
    #[source]
    pub source: BoxError,
}
