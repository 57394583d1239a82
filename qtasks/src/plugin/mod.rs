//! Plugins: handlers bound to triggers at compile time.
//!
//! - [`Plugin`] is the trait: one method per trigger, each a no-op by default.
//!   Write plugins with `#[plugin]` rather than by hand (see below).
//! - [`PluginChain`] is an ordered list of plugins as one concrete type; firing a
//!   trigger on it is a direct call, with no lookup, box or string compare.
//!
//! # Order
//!
//! Plugins run in registration order: the first plugin added to the app
//! builder is called first for every trigger, is started first and is
//! stopped last.
//!
//! # Replace semantics
//!
//! For replace and intercept triggers each handler sees the value left by
//! the previous plugin; `None` leaves it unchanged; the last `Some` wins.
//! A handler only ever replaces the one value its trigger carries, so a
//! plugin can never erase a field it did not return.
//!
//! # Failures
//!
//! A handler that returns `Err` counts as `None` and is reported through
//! `tracing` at error level with the plugin's name, the trigger and the task
//! id, and counted ([`PluginInfo::errors`]). A handler that panics is caught
//! the same way ([`PluginInfo::panics`]): it never takes down the task or the
//! worker, and an observer's failure never changes a task's outcome.
//!
//! # Writing a plugin by hand
//!
//! `#[plugin]` sets [`Plugin::LISTENS`] to exactly the triggers it
//! implements, which lets chains skip the others at compile time. A
//! hand-written impl keeps the default, [`TriggerSet::ALL`](crate::triggers::TriggerSet::ALL), so every method
//! it overrides is called; set `LISTENS` yourself only if you keep it in step
//! with the methods you override. A hand-written impl also names the tasks
//! the plugin contributes: `type Tasks = ();` for none.
//!
//! # Wrappers
//!
//! Built on the public [`Plugin`] API only:
//! - [`Managed`]: run-time switches, time budgets, task filters, error
//!   policies and metrics for one plugin;
//! - [`DynChain`]: plugins chosen at run time (the `dyn` escape hatch);
//! - [`Globals`]: one [`Wildcard`] handler for every trigger.

mod dynamic;
mod globals;
mod managed;

pub use crate::dispatch::{
    BoxError, HandlerPanicked, IntoOutcome, IntoStartResult, Member, Outcome, Plugin, PluginChain, PluginInfo,
    PluginStartError, TriggerStats, blocking_handler_limit, blocking_handlers_busy, set_blocking_handler_limit,
};
pub use dynamic::{DynChain, DynPlugin};
pub use globals::{Globals, TriggerEvent, Wildcard};
pub use managed::{Managed, OnError, TimedOut, UnknownTrigger};
