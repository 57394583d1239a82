//! Chains: an ordered list of plugins as one concrete type.
//!
//! A chain is `()` (no plugin), a [`Member`] (one plugin), or a tuple of up
//! to 16 chains. The app builder appends plugins into flat tuples of up to
//! 15 members; the 16th slot holds the rest of the list, so a chain of `n`
//! plugins nests only `n / 15` levels deep and compiles in near-linear time.
//!
//! Firing trigger `T` calls, in order, the members whose [`PluginChain::LISTENS`]
//! contains `T`. `LISTENS` is a constant, so members that do not listen are
//! compiled out, and a trigger that no member listens to is not fired at
//! all ([`listens`]). When every listening member's handler is a sync `fn`
//! ([`PluginChain::ASYNC`] does not contain `T`), the chain is fired with
//! [`PluginChain::fire_sync`]: plain inlined calls, no future at all. Otherwise
//! [`PluginChain::fire`] builds one future that awaits the async handlers and
//! calls the sync ones inline, still in order.
//!
//! That future is flat: a tuple awaits each member's handler future itself
//! (`PluginChain::call`) and applies its outcome (`PluginChain::settle`),
//! so the one future holds the chain and the context once and, at any
//! moment, the handler future in flight; no future per member.

use super::handler::Guarded;
use super::outcome::HandlerPanicked;
use super::{Outcome, Plugin, PluginInfo, PluginStartError, Trigger, TriggerContext, TriggerSet};
use crate::task::TaskSet;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};

/// An ordered list of plugins, fired as one.
///
/// Implemented for `()`, [`Member`] and tuples of chains; build one with the
/// app builder's `.plugin(…)` rather than by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a plugin chain",
    note = "add plugins with `QueueTasks::builder(..).plugin(p)`; a chain is `()`, `Member<P>` or a tuple of chains"
)]
pub trait PluginChain: Send + Sync + 'static {
    /// The union of the members' triggers.
    const LISTENS: TriggerSet;

    /// The triggers some member handles with an async handler.
    const ASYNC: TriggerSet;

    /// `true` if a member may stop the chain (see [`Outcome::Halt`]); when
    /// `false`, the checks for it compile away.
    const CAN_STOP: bool;

    /// The tasks the members contribute.
    type Tasks: TaskSet;

    /// Calls every member that listens to `T`, in order. Resolves to
    /// `false` if a member stopped the chain.
    fn fire<T: Trigger>(&self, ctx: &mut T::Context<'_>) -> impl Future<Output = bool> + Send;

    /// Calls every member that listens to `T`, in order, when all of them
    /// handle it with a sync `fn` (`!Self::ASYNC.contains(T::ID)`). Returns
    /// `false` if a member stopped the chain.
    fn fire_sync<T: Trigger>(&self, ctx: &mut T::Context<'_>) -> bool;

    /// The first half of [`fire`](PluginChain::fire), for a tuple that
    /// holds this chain: for a [`Member`], its async handler's future
    /// itself (panics caught), which the tuple awaits in its own future;
    /// for other chains, their `fire` (`Halt` if it stopped).
    #[doc(hidden)]
    fn call<T: Trigger>(&self, ctx: &mut T::Context<'_>) -> impl Future<Output = Outcome<T::Output>> + Send {
        async move { if self.fire::<T>(ctx).await { Outcome::Keep } else { Outcome::Halt(Box::new(Stopped)) } }
    }

    /// The second half of [`fire`](PluginChain::fire): applies what
    /// [`call`](PluginChain::call) gave; `false` if it stops the chain.
    #[doc(hidden)]
    fn settle<T: Trigger>(&self, ctx: &mut T::Context<'_>, outcome: Outcome<T::Output>) -> bool {
        let _ = ctx;
        !matches!(outcome, Outcome::Halt(_))
    }

    /// Starts every member in order. If one fails, the members started
    /// before it are stopped in reverse order and its error is returned.
    fn start(&self) -> impl Future<Output = Result<(), PluginStartError>> + Send;

    /// Stops every member in reverse order.
    fn stop(&self) -> impl Future<Output = ()> + Send;

    /// Appends each member's name and version, in order.
    fn describe(&self, out: &mut Vec<PluginInfo>);

    /// Switches the members called `name` on or off; returns how many were switched.
    fn set_enabled(&self, name: &str, on: bool) -> usize;
}

/// What a nested chain's [`PluginChain::call`] halts with when a member
/// stopped it; never reported (the member was).
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a plugin stopped the chain")
    }
}

impl std::error::Error for Stopped {}

/// `true` if some member of `chain` listens to the trigger of `ctx`.
///
/// A constant once monomorphized: the runtime fires through
/// `if listens(..) { fire(..).await }`, so a trigger nobody listens to costs
/// nothing, not even a future.
#[doc(hidden)]
#[inline(always)]
pub fn listens<'c, C: PluginChain, X: TriggerContext<'c>>(_chain: &C, _ctx: &X) -> bool {
    C::LISTENS.contains(<X::Trigger as Trigger>::ID)
}

/// `true` if firing the trigger of `ctx` on `chain` needs an `.await`
/// (some listening member's handler is async). A constant too.
#[doc(hidden)]
#[inline(always)]
pub fn awaits<'c, C: PluginChain, X: TriggerContext<'c>>(_chain: &C, _ctx: &X) -> bool {
    C::ASYNC.contains(<X::Trigger as Trigger>::ID)
}

/// Fires the trigger of `ctx` on `chain` without a future; only for
/// triggers where [`awaits`] is `false`.
#[doc(hidden)]
#[inline(always)]
pub fn fire_sync<'c, C: PluginChain, X: TriggerContext<'c>>(chain: &C, ctx: &mut X) {
    chain.fire_sync::<X::Trigger>(ctx);
}

/// Fires the trigger of `ctx` on `chain` without a future, where no
/// listener is async; see [`fire_now!`](super::fire_now).
#[inline(always)]
pub(crate) fn fire_unawaited<'c, C: PluginChain, X: TriggerContext<'c>>(chain: &C, ctx: &mut X) {
    if listens(chain, ctx) {
        // A constant: the caller chose this path because it holds.
        assert!(!awaits(chain, ctx), "an async handler listens to {}", <X::Trigger as Trigger>::NAME);
        chain.fire_sync::<X::Trigger>(ctx);
    }
}

/// Fires the trigger of `ctx` on `chain`, the way the runtime does:
/// nothing if no plugin listens, plain calls if every listener is sync,
/// one awaited future otherwise.
///
/// ```
/// # use qtasks::triggers::WorkerStart;
/// # async fn demo<C: qtasks::PluginChain>(chain: &C) {
/// let mut ctx = WorkerStart { app: "demo", max_tasks_process: 4 };
/// qtasks::fire!(chain, &mut ctx);
/// # }
/// ```
#[macro_export]
macro_rules! fire {
    ($chain:expr, $ctx:expr) => {{
        let chain = $chain;
        let ctx = $ctx;
        if $crate::dispatch::listens(chain, &*ctx) {
            if $crate::dispatch::awaits(chain, &*ctx) {
                $crate::dispatch::fire(chain, ctx).await;
            } else {
                $crate::dispatch::fire_sync(chain, ctx);
            }
        }
    }};
}

/// Fires the trigger of `ctx` on `chain` (mixed sync and async members).
#[doc(hidden)]
#[inline(always)]
pub fn fire<'c, 'f, C: PluginChain, X: TriggerContext<'c>>(
    chain: &'f C,
    ctx: &'f mut X,
) -> impl Future<Output = bool> + Send + 'f
where
    'c: 'f,
{
    chain.fire::<X::Trigger>(ctx)
}

impl PluginChain for () {
    const LISTENS: TriggerSet = TriggerSet::EMPTY;
    const ASYNC: TriggerSet = TriggerSet::EMPTY;
    const CAN_STOP: bool = false;
    type Tasks = ();

    #[inline(always)]
    fn fire_sync<T: Trigger>(&self, _ctx: &mut T::Context<'_>) -> bool {
        true
    }

    #[inline(always)]
    fn fire<T: Trigger>(&self, _ctx: &mut T::Context<'_>) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }

    fn start(&self) -> impl Future<Output = Result<(), PluginStartError>> + Send {
        std::future::ready(Ok(()))
    }

    fn stop(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    fn describe(&self, _out: &mut Vec<PluginInfo>) {}

    fn set_enabled(&self, _name: &str, _on: bool) -> usize {
        0
    }
}

/// One plugin in a chain, with the count of its failures.
///
/// Every handler call is isolated: an `Err` or a panic is caught, reported
/// through `tracing` with the plugin's name, the trigger and the task id,
/// and counted; it never reaches the task or the worker.
#[derive(Debug, Default)]
pub struct Member<P> {
    plugin: P,
    errors: AtomicU64,
    panics: AtomicU64,
}

impl<P> Member<P> {
    /// Wraps a plugin.
    pub fn new(plugin: P) -> Self {
        Self { plugin, errors: AtomicU64::new(0), panics: AtomicU64::new(0) }
    }

    /// The plugin.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }
}

impl<P: Plugin> Member<P> {
    #[cold]
    #[inline(never)]
    fn failed(
        &self,
        trigger: &'static str,
        task: Option<uuid::Uuid>,
        error: &(dyn std::error::Error + Send + Sync + 'static),
    ) {
        let counter = if error.is::<HandlerPanicked>() { &self.panics } else { &self.errors };
        counter.fetch_add(1, Ordering::Relaxed);
        report(self.plugin.name(), trigger, task, error);
    }
}

impl<P: Plugin> PluginChain for Member<P> {
    const LISTENS: TriggerSet = P::LISTENS;
    const ASYNC: TriggerSet = P::LISTENS.difference(P::SYNC);
    const CAN_STOP: bool = P::CAN_STOP;
    type Tasks = P::Tasks;

    async fn fire<T: Trigger>(&self, ctx: &mut T::Context<'_>) -> bool {
        if P::SYNC.contains(T::ID) {
            return self.fire_sync::<T>(ctx);
        }
        let outcome = self.call::<T>(ctx).await;
        self.settle::<T>(ctx, outcome)
    }

    #[inline(always)]
    fn call<T: Trigger>(&self, ctx: &mut T::Context<'_>) -> impl Future<Output = Outcome<T::Output>> + Send {
        Guarded::new(T::call(&self.plugin, &*ctx))
    }

    #[inline(always)]
    fn settle<T: Trigger>(&self, ctx: &mut T::Context<'_>, outcome: Outcome<T::Output>) -> bool {
        match outcome {
            Outcome::Keep => true,
            Outcome::Replace(value) => {
                T::apply(ctx, value);
                true
            }
            Outcome::Failed(error) => {
                self.failed(T::NAME, T::task_id(ctx), &*error);
                true
            }
            Outcome::Halt(error) => {
                self.failed(T::NAME, T::task_id(ctx), &*error);
                false
            }
        }
    }

    #[inline(always)]
    fn fire_sync<T: Trigger>(&self, ctx: &mut T::Context<'_>) -> bool {
        // Free on the happy path (no landing pad is taken); a panic becomes
        // a reported failure of this plugin. The outcome is applied inside
        // the guarded call so it never crosses the unwind boundary.
        let task = T::task_id(ctx);
        match catch_unwind(AssertUnwindSafe(|| {
            let outcome = T::call_sync(&self.plugin, ctx);
            self.settle::<T>(ctx, outcome)
        })) {
            Ok(go_on) => go_on,
            Err(payload) => {
                self.failed(T::NAME, task, &HandlerPanicked::from_payload(payload));
                true
            }
        }
    }

    async fn start(&self) -> Result<(), PluginStartError> {
        self.plugin.start().await.map_err(|source| PluginStartError { plugin: self.plugin.name().to_owned(), source })
    }

    fn stop(&self) -> impl Future<Output = ()> + Send {
        self.plugin.stop()
    }

    fn describe(&self, out: &mut Vec<PluginInfo>) {
        let triggers = super::triggers::ALL.iter().filter(|t| P::LISTENS.contains(t.id)).map(|t| t.name).collect();
        let mut tasks = Vec::new();
        P::Tasks::describe(&mut tasks);
        out.push(PluginInfo {
            name: self.plugin.name().to_owned(),
            version: self.plugin.version().to_owned(),
            triggers,
            tasks: tasks.into_iter().map(|t| t.name).collect(),
            errors: self.errors.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            enabled: None,
            stats: Vec::new(),
            start_error: None,
        });
        if let Some(info) = out.last_mut() {
            self.plugin.describe(info);
        }
    }

    fn set_enabled(&self, name: &str, on: bool) -> usize {
        usize::from(self.plugin.name() == name && self.plugin.set_enabled(on))
    }
}

#[cold]
#[inline(never)]
fn report(
    plugin: &str,
    trigger: &'static str,
    task: Option<uuid::Uuid>,
    error: &(dyn std::error::Error + Send + Sync),
) {
    match task {
        Some(task) => tracing::error!(plugin, trigger, %task, error = %error, "plugin handler failed"),
        None => tracing::error!(plugin, trigger, error = %error, "plugin handler failed"),
    }
}

macro_rules! tuple_chain {
    ($( ($($T:ident $i:tt),+) )+) => {$(
        impl<$($T: PluginChain),+> PluginChain for ($($T,)+) {
            const LISTENS: TriggerSet = TriggerSet::EMPTY $(.union($T::LISTENS))+;
            const ASYNC: TriggerSet = TriggerSet::EMPTY $(.union($T::ASYNC))+;
            const CAN_STOP: bool = false $(|| $T::CAN_STOP)+;
            type Tasks = ($($T::Tasks,)+);

            #[inline(always)]
            fn fire<T: Trigger>(&self, ctx: &mut T::Context<'_>) -> impl Future<Output = bool> + Send {
                async move {
                    $(
                        if $T::ASYNC.contains(T::ID) {
                            // A member's handler future is held here, in
                            // place: one await per member, no future of its own.
                            let outcome = self.$i.call::<T>(ctx).await;
                            if !self.$i.settle::<T>(ctx, outcome) && $T::CAN_STOP {
                                return false;
                            }
                        } else if $T::LISTENS.contains(T::ID) && !self.$i.fire_sync::<T>(ctx) && $T::CAN_STOP {
                            return false;
                        }
                    )+
                    true
                }
            }

            #[inline(always)]
            fn fire_sync<T: Trigger>(&self, ctx: &mut T::Context<'_>) -> bool {
                $(
                    if $T::LISTENS.contains(T::ID) && !self.$i.fire_sync::<T>(ctx) && $T::CAN_STOP {
                        return false;
                    }
                )+
                true
            }

            async fn start(&self) -> Result<(), PluginStartError> {
                let mut started = 0usize;
                let mut failure = None;
                $(
                    if failure.is_none() {
                        match self.$i.start().await {
                            Ok(()) => started += 1,
                            Err(e) => failure = Some(e),
                        }
                    }
                )+
                match failure {
                    None => Ok(()),
                    Some(e) => {
                        tuple_chain!(@stop_reverse self started [$($i)+]);
                        Err(e)
                    }
                }
            }

            async fn stop(&self) {
                let all = usize::MAX;
                tuple_chain!(@stop_reverse self all [$($i)+]);
            }

            fn describe(&self, out: &mut Vec<PluginInfo>) {
                $( self.$i.describe(out); )+
            }

            fn set_enabled(&self, name: &str, on: bool) -> usize {
                0 $(+ self.$i.set_enabled(name, on))+
            }
        }
    )+};
    // Stops members with index < $n, last first.
    (@stop_reverse $s:ident $n:ident [$($i:tt)+]) => {
        tuple_chain!(@rev $s $n [] [$($i)+]);
    };
    (@rev $s:ident $n:ident [$($r:tt)*] [$first:tt $($rest:tt)*]) => {
        tuple_chain!(@rev $s $n [$first $($r)*] [$($rest)*]);
    };
    (@rev $s:ident $n:ident [$($r:tt)*] []) => {
        $( if $r < $n { $s.$r.stop().await; } )*
    };
}

tuple_chain! {
    (A 0)
    (A 0, B 1)
    (A 0, B 1, C 2)
    (A 0, B 1, C 2, D 3)
    (A 0, B 1, C 2, D 3, E 4)
    (A 0, B 1, C 2, D 3, E 4, F 5)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14)
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11, M 12, N 13, O 14, R 15)
}
