//! The one hand-written future of the dispatch core, alone in its file.
//!
//! [`MemberFire`] is what [`Member::fire`](super::Member) returns: it polls
//! one plugin's async handler *in place* inside the chain's future, then
//! applies the handler's outcome to the context. An `async fn` would do the
//! same, but its `poll` cannot be `#[inline(always)]`, and the dispatch
//! benchmark (`benches/callgrind.sh`) showed each nesting level of
//! out-of-line coroutines costing instructions on every trigger call.
//!
//! # Why it needs `unsafe`
//!
//! The handler's future borrows the context *shared* (`&Context`) while it
//! runs; once it is done, its outcome is written into the same context
//! (`&mut Context`). Safe Rust cannot express "a shared borrow for the
//! handler's life, then a unique one" inside one struct, so the future holds
//! the unique borrow as a raw pointer and hands out the two borrows at
//! moments that never overlap:
//!
//! 1. [`MemberFire::new`] reborrows the context shared for the handler's
//!    future. The unique borrow it came from is held (as the pointer) for as
//!    long as the `MemberFire` lives, so nobody else can touch the context.
//! 2. [`poll`](Future::poll) polls the handler's future until it is ready,
//!    then *drops* it (`self.call = None`) before turning the pointer back
//!    into `&mut` to settle the outcome. After that the future is never
//!    polled again by a correct caller; if it is, `call` is `None` and the
//!    sync path runs, which again takes the only live borrow.
//!
//! # How it is checked
//!
//! Miri would be the tool, but it needs a nightly toolchain, which this
//! project does not use. Instead:
//! - the tests below drive the future through every state: pending then
//!   ready, ready at once, a replacing outcome, a handler that panics while
//!   polled, and a sync member (no handler future at all);
//! - `.ci/run` runs these tests under valgrind's memcheck
//!   (`--error-exitcode=1`), which reports a read of freed or uninitialised
//!   memory, the failure a wrong borrow here would cause.

use super::outcome::HandlerPanicked;
use super::{Member, Outcome, Plugin, PluginChain, Trigger};
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The future of one plugin's handler for trigger `T` (see the module docs).
pub(super) struct MemberFire<'a, P, C, F, T> {
    member: &'a Member<P>,
    /// The unique borrow of the context, for as long as this future lives.
    ctx: *mut C,
    /// The handler's future; `None` for a sync handler, or once it finished.
    call: Option<F>,
    _trigger: PhantomData<fn() -> T>,
}

// SAFETY: the raw pointer is a `&mut C` in disguise (see the module docs),
// and `&mut C` is `Send` when `C: Send`; `&Member<P>` is `Send` when
// `P: Sync`.
unsafe impl<P: Sync, C: Send, F: Send, T> Send for MemberFire<'_, P, C, F, T> {}

/// Builds the future that fires trigger `T` on one member.
#[inline(always)]
pub(super) fn member_fire<'s, 'r, 'c, P: Plugin, T: Trigger>(
    member: &'s Member<P>,
    ctx: &'r mut T::Context<'c>,
) -> impl Future<Output = bool> + Send {
    let ctx: *mut T::Context<'c> = ctx;
    // SAFETY: `ctx` comes from a unique borrow that lives as long as the
    // returned future (`'r`). The shared reborrow below is only held by the
    // handler's future, which `poll` drops before it turns the pointer back
    // into `&mut`, so the shared and the unique use never overlap.
    let shared: &'r T::Context<'c> = unsafe { &*ctx };
    let call = if P::SYNC.contains(T::ID) { None } else { Some(T::call(member.plugin(), shared)) };
    MemberFire { member, ctx, call, _trigger: PhantomData::<fn() -> T> }
}

impl<'a, 'c, P, F, T> Future for MemberFire<'a, P, T::Context<'c>, F, T>
where
    P: Plugin,
    T: Trigger,
    F: Future<Output = Outcome<T::Output>>,
{
    type Output = bool;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        // SAFETY: nothing is moved out of `self`: `call` is only polled in
        // place (pinned projection below) or dropped in place.
        let this = unsafe { self.get_unchecked_mut() };
        let outcome = match &mut this.call {
            Some(call) => {
                // A panic in the handler's poll is caught here: the plugin's
                // failure is reported, the worker and the task carry on.
                // SAFETY: `call` lives inside the pinned `self` and is never
                // moved until it is dropped in place by `this.call = None`.
                let polled = catch_unwind(AssertUnwindSafe(|| unsafe { Pin::new_unchecked(call) }.poll(cx)));
                match polled {
                    Ok(Poll::Ready(outcome)) => outcome,
                    Ok(Poll::Pending) => return Poll::Pending,
                    Err(payload) => Outcome::Failed(Box::new(HandlerPanicked::from_payload(payload))),
                }
            }
            // A sync member (or a poll after completion): no handler future
            // holds a shared borrow, so this is the only live borrow.
            // SAFETY: see the module docs, step 2.
            None => return Poll::Ready(this.member.fire_sync::<T>(unsafe { &mut *this.ctx })),
        };
        // Drops the handler's future, and with it the shared reborrow.
        this.call = None;
        // SAFETY: the shared reborrow died with the handler's future just
        // above; the pointer is the unique borrow taken in `member_fire`.
        Poll::Ready(this.member.settle::<T>(unsafe { &mut *this.ctx }, outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::TriggerSet;
    use crate::dispatch::triggers::{QtasksAddTaskBeforeBroker, WorkerStart};
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
        let (go_on, pending) = poll_to_end(member_fire::<_, WorkerStart<'static>>(&member, &mut ctx));
        assert!(go_on);
        assert_eq!(pending, 3);
    }

    #[test]
    fn ready_at_once() {
        let member = Member::new(Yields(AtomicUsize::new(0)));
        let mut ctx = WorkerStart { app: "a", max_tasks_process: 1 };
        let (go_on, pending) = poll_to_end(member_fire::<_, WorkerStart<'static>>(&member, &mut ctx));
        assert!(go_on);
        assert_eq!(pending, 0);
    }

    #[test]
    fn a_replacement_is_written_after_the_handler_is_done() {
        let member = Member::new(Yields(AtomicUsize::new(0)));
        let request = NewTask { priority: 7, ..NewTask::new("t", serde_json::Value::Null) };
        let mut ctx = QtasksAddTaskBeforeBroker { app: "a", request };
        let (go_on, _) = poll_to_end(member_fire::<_, QtasksAddTaskBeforeBroker<'static>>(&member, &mut ctx));
        assert!(go_on);
        assert_eq!(ctx.request.priority, 8);
    }

    #[test]
    fn a_panic_while_polled_is_counted_not_propagated() {
        let member = Member::new(Panics);
        let mut ctx = WorkerStart { app: "a", max_tasks_process: 1 };
        let (go_on, _) = poll_to_end(member_fire::<_, WorkerStart<'static>>(&member, &mut ctx));
        assert!(go_on, "an observer's panic never stops the chain");
        let mut info = Vec::new();
        member.describe(&mut info);
        assert_eq!(info[0].panics, 1);
    }

    #[test]
    fn a_sync_member_runs_without_a_handler_future() {
        let member = Member::new(SyncOnly(AtomicUsize::new(0)));
        let mut ctx = WorkerStart { app: "a", max_tasks_process: 1 };
        let (go_on, pending) = poll_to_end(member_fire::<_, WorkerStart<'static>>(&member, &mut ctx));
        assert!(go_on);
        assert_eq!(pending, 0);
        assert_eq!(member.plugin().0.load(Ordering::Relaxed), 1);
    }
}
