//! The cancellation token a running task checks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;

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
///
/// (One allocation per token and an atomic per clone: the worker makes one
/// for every run, so it is kept lighter than a general cancellation tree.)
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    reason: OnceLock<String>,
    fired: Notify,
}

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the token. The first reason given is kept; later calls do nothing.
    pub fn cancel(&self, reason: impl Into<String>) {
        // The reason is set before the flag, so whoever sees the flag sees a reason.
        if self.inner.reason.set(reason.into()).is_ok() {
            self.inner.cancelled.store(true, Ordering::Release);
            self.inner.fired.notify_waiters();
        }
    }

    /// `true` once the token fired.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Why the token fired, once it has.
    pub fn reason(&self) -> Option<&str> {
        if self.is_cancelled() { self.inner.reason.get().map(String::as_str) } else { None }
    }

    /// Completes when the token fires (at once if it has).
    pub async fn cancelled(&self) {
        loop {
            // Registered before the check, so a `cancel` in between is not missed.
            let fired = self.inner.fired.notified();
            let mut fired = std::pin::pin!(fired);
            fired.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            fired.await;
        }
    }

    /// `body`'s output, or `None` once the token has fired. The flag is
    /// read before every poll of `body`, so a cancelled body is not polled
    /// again; and `body` is polled before the token's waiter is registered,
    /// so a body that ends in its first poll costs no registration.
    pub(crate) async fn unless_cancelled<F: std::future::Future>(&self, body: F) -> Option<F::Output> {
        use std::task::Poll;
        let mut body = std::pin::pin!(body);
        // Not polled (so not registered) until `body` first waits.
        let mut fired = std::pin::pin!(self.cancelled());
        std::future::poll_fn(|cx| {
            if self.is_cancelled() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(output) = body.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            fired.as_mut().poll(cx).map(|()| None)
        })
        .await
    }

    /// Runs `future` unless the token fires first; then gives the reason
    /// back as a [`Cancelled`](super::Cancelled) error, which a task can
    /// return with `?` to end `cancel`.
    pub async fn run_until_cancelled<F: std::future::Future>(&self, future: F) -> Result<F::Output, super::Cancelled> {
        tokio::select! {
            biased;
            () = self.cancelled() => Err(super::Cancelled::new(self.reason().unwrap_or("cancelled"))),
            output = future => Ok(output),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_and_the_first_reason_wins() {
        let token = CancelToken::new();
        let waiter = tokio::spawn({
            let token = token.clone();
            async move { token.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!token.is_cancelled() && token.reason().is_none());
        token.cancel("first");
        token.cancel("second");
        waiter.await.unwrap();
        assert_eq!(token.reason(), Some("first"));
        token.cancelled().await; // at once once fired
    }
}
