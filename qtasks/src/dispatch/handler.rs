//! The two hand-written futures of the dispatch core: the thin wrappers a
//! handler's own future is awaited in.
//!
//! - [`Guarded`] turns a panic while the handler's future is polled into a
//!   failed [`Outcome`], so a plugin's bug never reaches the task or the
//!   worker. Chains await it.
//! - [`Converted`] converts what a `#[plugin]` async handler returns into an
//!   [`Outcome`]. The macro returns it.
//!
//! Neither adds a field to the future it wraps (the conversion is a
//! function item, of size zero), nor a state of its own: awaiting a
//! handler through both costs what awaiting the handler's `async fn` by
//! hand does. The dispatch benchmark (`benches/callgrind.sh`) counts every
//! store into a chain's future on every trigger call, which is why these
//! are not `async` blocks: an `async move { convert(call.await) }` keeps
//! the captured context a second time, and its own state.

use super::Outcome;
use super::outcome::HandlerPanicked;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A handler's future whose panic becomes [`Outcome::Failed`] with a
/// [`HandlerPanicked`] error.
///
/// A future that panicked is not polled again: a chain awaits it once, to
/// its output.
pub(super) struct Guarded<F>(F);

impl<F> Guarded<F> {
    /// Wraps a handler's future.
    #[inline(always)]
    pub(super) fn new(future: F) -> Self {
        Self(future)
    }
}

impl<T, F: Future<Output = Outcome<T>>> Future for Guarded<F> {
    type Output = Outcome<T>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        // SAFETY: a structural projection: the inner future is never moved
        // out of the pinned wrapper.
        let future = unsafe { self.map_unchecked_mut(|this| &mut this.0) };
        // The landing pad costs nothing on the path that does not panic.
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(polled) => polled,
            Err(payload) => Poll::Ready(Outcome::Failed(Box::new(HandlerPanicked::from_payload(payload)))),
        }
    }
}

/// The future of a `#[plugin]` async handler: the handler's own future,
/// whose output `convert` makes an [`Outcome`] (called by the code the
/// macro generates).
#[doc(hidden)]
pub struct Converted<F, C> {
    future: F,
    convert: C,
}

impl<F, C> Converted<F, C> {
    /// Wraps `future`, converting its output with `convert`.
    #[inline(always)]
    pub fn new(future: F, convert: C) -> Self {
        Self { future, convert }
    }
}

impl<T, F: Future, C: Fn(F::Output) -> Outcome<T>> Future for Converted<F, C> {
    type Output = Outcome<T>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<T>> {
        // SAFETY: `future` is structurally pinned (never moved out), and
        // `convert` is only read, never pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        future.poll(cx).map(&this.convert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::triggers::{QtasksAddTaskBeforeBroker, WorkerStart};
    use crate::dispatch::{Member, Plugin, PluginChain, Trigger, TriggerSet};
    use crate::model::NewTask;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Waker;

    /// Pending `pending` times, then ready with `Keep`.
    struct Yields(AtomicUsize);

    impl Plugin for Yields {
        const LISTENS: TriggerSet = TriggerSet::ALL;
        type Tasks = ();

        async fn worker_start(&self, _ctx: &WorkerStart<'_>) -> Outcome<()> {
            let mut left = self.0.load(Ordering::Relaxed);
            std::future::poll_fn(|cx| {
                if left == 0 {
                    return Poll::Ready(());
                }
                left -= 1;
                cx.waker().wake_by_ref();
                Poll::Pending
            })
            .await;
            Outcome::Keep
        }

        async fn qtasks_add_task_before_broker(&self, ctx: &QtasksAddTaskBeforeBroker<'_>) -> Outcome<NewTask> {
            // Reads the context through the shared borrow, then replaces it.
            let mut request = ctx.request.clone();
            request.priority += 1;
            Outcome::Replace(request)
        }
    }

    struct Panics;

    impl Plugin for Panics {
        type Tasks = ();

        async fn worker_start(&self, _ctx: &WorkerStart<'_>) -> Outcome<()> {
            std::future::ready(()).await;
            panic!("handler failed while polled")
        }
    }

    struct SyncOnly(AtomicUsize);

    impl Plugin for SyncOnly {
        const LISTENS: TriggerSet = TriggerSet::EMPTY.with(<WorkerStart<'static> as Trigger>::ID);
        const SYNC: TriggerSet = Self::LISTENS;
        type Tasks = ();

        fn worker_start_sync(&self, _ctx: &WorkerStart<'_>) -> Outcome<()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Outcome::Keep
        }
    }

    fn poll_to_end<F: Future>(future: F) -> (F::Output, usize) {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        let mut pending = 0;
        loop {
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(out) => return (out, pending),
                Poll::Pending => pending += 1,
            }
        }
    }

    #[test]
    fn pending_then_ready() {
        let member = Member::new(Yields(AtomicUsize::new(3)));
        let mut ctx = WorkerStart { app: "a", max_tasks_process: 1 };
        let (go_on, pending) = poll_to_end(member.fire::<WorkerStart<'static>>(&mut ctx));
        assert!(go_on);
        assert_eq!(pending, 3);
    }

    #[test]
    fn ready_at_once() {
        let member = Member::new(Yields(AtomicUsize::new(0)));
        let mut ctx = WorkerStart { app: "a", max_tasks_process: 1 };
        let (go_on, pending) = poll_to_end(member.fire::<WorkerStart<'static>>(&mut ctx));
        assert!(go_on);
        assert_eq!(pending, 0);
    }

    #[test]
    fn a_replacement_is_written_after_the_handler_is_done() {
        let member = Member::new(Yields(AtomicUsize::new(0)));
        let request = NewTask { priority: 7, ..NewTask::new("t", serde_json::Value::Null) };
        let mut ctx = QtasksAddTaskBeforeBroker { app: "a", request };
        let (go_on, _) = poll_to_end(member.fire::<QtasksAddTaskBeforeBroker<'static>>(&mut ctx));
        assert!(go_on);
        assert_eq!(ctx.request.priority, 8);
    }

    #[test]
    fn a_panic_while_polled_is_counted_not_propagated() {
        let member = Member::new(Panics);
        let mut ctx = WorkerStart { app: "a", max_tasks_process: 1 };
        let (go_on, _) = poll_to_end(member.fire::<WorkerStart<'static>>(&mut ctx));
        assert!(go_on, "an observer's panic never stops the chain");
        let mut info = Vec::new();
        member.describe(&mut info);
        assert_eq!(info[0].panics, 1);
    }

    #[test]
    fn a_sync_member_runs_without_a_handler_future() {
        let member = Member::new(SyncOnly(AtomicUsize::new(0)));
        let mut ctx = WorkerStart { app: "a", max_tasks_process: 1 };
        let (go_on, pending) = poll_to_end(member.fire::<WorkerStart<'static>>(&mut ctx));
        assert!(go_on);
        assert_eq!(pending, 0);
        assert_eq!(member.plugin().0.load(Ordering::Relaxed), 1);
    }
}
