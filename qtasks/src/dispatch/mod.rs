//! The compile-time dispatch core: triggers, the [`Plugin`] trait, chains
//! and firing.
//!
//! Read it top to bottom, in this order:
//!
//! | file | what it holds |
//! | --- | --- |
//! | `table.rs` | the trigger table: 56 rows, the single source of truth |
//! | `meta.rs` | what a trigger is: [`Trigger`], [`Kind`], [`Component`], [`TriggerSet`] |
//! | `triggers.rs` | the 56 context types generated from the table ([`crate::triggers`]) |
//! | `plugin.rs` | the [`Plugin`] trait generated from the table |
//! | `outcome.rs` | what a handler returns ([`Outcome`]) and how return types convert |
//! | `chain.rs` | [`PluginChain`]: `()`, [`Member`] and flat tuples, and [`fire!`](crate::fire) |
//! | `handler.rs` | the two hand-written futures a handler's future is awaited in |
//! | `list.rs` | [`Append`]: flat type-level lists, shared with task sets |
//! | `blocking.rs` | the pool blocking handlers run on |
//! | `snapshot.rs` | owned copies of contexts for blocking handlers |
//!
//! Nothing outside this folder is needed to understand how a trigger call
//! reaches a handler; the walk-through below follows one call.
#![doc = include_str!("../../docs/dispatch.md")]

mod blocking;
mod chain;
mod handler;
mod list;
mod meta;
mod outcome;
mod plugin;
pub(crate) mod snapshot;
mod table;
pub mod triggers;

pub(crate) use blocking::BLOCKING_WAIT;
pub use blocking::{blocking_detached, blocking_handler_limit, blocking_handlers_busy, set_blocking_handler_limit};
pub(crate) use chain::fire_unawaited;
pub use chain::{Member, PluginChain};
#[doc(hidden)]
pub use chain::{awaits, fire, fire_sync, listens};
#[doc(hidden)]
pub use handler::Converted;
pub use list::Append;
pub use meta::{Component, Kind, Trigger, TriggerContext, TriggerInfo, TriggerSet};
pub use outcome::{BoxError, HandlerPanicked, IntoOutcome, IntoStartResult, Outcome, PluginStartError};
#[doc(hidden)]
pub use outcome::{ObserverReturn, ReplacerReturn, observer_outcome, replacer_outcome, report_stop_error};
pub use plugin::{Plugin, PluginInfo, TriggerStats};
pub(crate) use table::trigger_table;

/// Fires a trigger whose context is built in place and gives the context
/// back, so replaced values can be read from it:
/// `let model = fire_ctx!(&chain, StorageAdd { app, model }).model;`.
macro_rules! fire_ctx {
    ($chain:expr, $ctx:expr) => {{
        let mut ctx = $ctx;
        $crate::fire!($chain, &mut ctx);
        ctx
    }};
}
pub(crate) use fire_ctx;

/// [`fire_ctx!`] for a trigger no async handler listens to (checked, a
/// constant): plain calls in place, no future, so a caller that is not
/// `async` can fire it and its context stays on the stack.
macro_rules! fire_now {
    ($chain:expr, $ctx:expr) => {{
        let mut ctx = $ctx;
        $crate::dispatch::fire_unawaited($chain, &mut ctx);
        ctx
    }};
}
pub(crate) use fire_now;

/// `true` if a plugin of `C` listens to trigger `X`. A constant: a fire
/// site guarded by it builds no context (moves nothing) when none does.
#[inline(always)]
pub(crate) fn listened<C: PluginChain, X: Trigger>() -> bool {
    C::LISTENS.contains(X::ID)
}

/// `true` if a plugin of `C` handles trigger `X` with an async handler,
/// so firing it may wait. A constant: where no trigger of a step may wait,
/// the step runs in place, with [`fire_now!`], instead of in a boxed future.
#[inline(always)]
pub(crate) fn awaited<C: PluginChain, X: Trigger>() -> bool {
    C::ASYNC.contains(X::ID)
}
