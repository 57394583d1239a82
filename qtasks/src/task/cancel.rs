//! The cancellation token a running task checks.

use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// Tells a running task that it was asked to stop, and why.
///
/// The worker creates one per run and cancels it when a client calls
/// [`QueueTasks::cancel`](crate::QueueTasks::cancel) for the task. Checking it
/// is one atomic load, with no round trip to the backend. Clones share the
/// same state.
///
/// An async task is stopped at its next `.await` when the token fires (the
/// worker drops its future) and ends `cancel`. A blocking task cannot be
/// stopped from outside: it should poll [`is_cancelled`](Self::is_cancelled)
/// and return; whatever it returns once cancelled, it ends `cancel`.
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    token: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the token. The first reason given is kept; later calls do nothing.
    pub fn cancel(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
        self.token.cancel();
    }

    /// `true` once the token fired.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why the token fired, once it has.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Completes when the token fires (at once if it has).
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// Runs `future` unless the token fires first; then gives the reason
    /// back as a [`Cancelled`](super::Cancelled) error, which a task can
    /// return with `?` to end `cancel`.
    pub async fn run_until_cancelled<F: std::future::Future>(&self, future: F) -> Result<F::Output, super::Cancelled> {
        tokio::select! {
            biased;
            () = self.token.cancelled() => Err(super::Cancelled::new(self.reason().unwrap_or("cancelled"))),
            output = future => Ok(output),
        }
    }
}
