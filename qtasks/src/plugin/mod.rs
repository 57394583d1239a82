//! Plugins: handlers bound to triggers at compile time.
//!
//! - [`Plugin`] is the trait: one method per trigger, each a no-op by default.
//!   Write plugins with `#[plugin]` rather than by hand (see below).
//! - [`Chain`] is an ordered list of plugins as one concrete type; firing a
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
//! hand-written impl keeps the default, [`TriggerSet::ALL`], so every method
//! it overrides is called; set `LISTENS` yourself only if you keep it in step
//! with the methods you override. A hand-written impl also names the tasks
//! the plugin contributes: `type Tasks = ();` for none.

mod chain;
mod dynamic;
mod globals;
mod managed;
mod outcome;

pub use chain::{Append, Chain, Member, awaits, fire, fire_sync, listens};
pub use dynamic::{DynChain, DynPlugin};
pub use globals::{Globals, TriggerEvent, Wildcard};
pub use managed::{Managed, OnError, TimedOut, TriggerStats};
pub use outcome::{BoxError, HandlerPanicked, IntoOutcome, IntoStartResult, Outcome};

#[allow(unused_imports)]
use crate::model::{NewTask, Task, TaskMessage};
use crate::task::TaskSet;
use crate::trigger::TriggerSet;
use crate::triggers::*;
use serde_json::{Map, Value};
use std::future::{Future, ready};

/// Sets how many blocking handlers (`#[plugin(.., blocking)]`) may run at
/// once in this process; further calls wait for a slot instead of taking
/// more threads. The default is 64. Lowering it waits until enough running
/// handlers have finished.
pub fn set_blocking_handler_limit(n: usize) {
    crate::__private::set_blocking_limit(n);
}

/// How many blocking handlers hold a pool slot right now, including those
/// left running detached past their time budget (a thread cannot be
/// killed, so its slot stays busy until the handler returns).
pub fn blocking_handlers_busy() -> usize {
    crate::__private::blocking_busy()
}

/// Name and version of a plugin, for listings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Names of the triggers it listens to (all 56 for hand-written impls).
    pub triggers: Vec<&'static str>,
    /// Handler calls that returned an error so far.
    pub errors: u64,
    /// Handler calls that panicked so far.
    pub panics: u64,
    /// Whether it is switched on; `None` if it cannot be switched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Per-trigger metrics, for plugins that record them ([`Managed::metrics`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stats: Vec<TriggerStats>,
    /// Why the plugin failed to start, for a plugin skipped after a failed
    /// start ([`Managed::skip_if_start_fails`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
}

macro_rules! define_plugin_trait {
    ($(
        $(#[doc = $doc:literal])*
        $id:literal $name:ident $sync:ident $Ctx:ident ($comp:ident, $kind:ident, $Out:ty)
            apply(|$ac:tt, $av:tt| $apply:expr) task_id(|$tc:tt| $tid:expr) task_name(|$nc:tt| $tname:expr) {
            $( $(#[doc = $fdoc:literal])* $field:ident : $fty:ty ),* $(,)?
        }
    )*) => {
        /// A set of handlers bound to triggers, with a start/stop lifecycle.
        ///
        /// There is one method per trigger, named after it; each defaults to
        /// a no-op. Implement it with `#[plugin]` on an `impl` block (method
        /// names are trigger names) or `#[plugin(on = "…")]` on a function.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` is not a qtasks plugin",
            label = "not a plugin",
            note = "put `#[qtasks::plugin]` on an `impl` block of `{Self}` whose methods are named after triggers, or `#[qtasks::plugin(on = \"trigger_name\")]` on a function"
        )]
        pub trait Plugin: Send + Sync + 'static {
            /// The triggers this plugin listens to. Chains do not call the
            /// others. `#[plugin]` sets it; hand-written impls default to all.
            const LISTENS: TriggerSet = TriggerSet::ALL;

            /// The triggers whose handler is the hidden sync method
            /// (`<trigger>_sync`), which chains call directly, without a
            /// future. `#[plugin]` sets it for `fn` handlers.
            const SYNC: TriggerSet = TriggerSet::EMPTY;

            /// `true` if a handler may return [`Outcome::Halt`] to stop the
            /// chain for one firing. Only wrappers such as
            /// [`Managed`](crate::plugin::Managed) set it.
            const CAN_STOP: bool = false;

            /// The tasks this plugin contributes (Girder Worker's
            /// `task_imports`): adding the plugin to an app registers them.
            /// `()` for none; `#[plugin(tasks(a, b))]` sets it.
            type Tasks: TaskSet;

            /// The plugin's name in listings and error reports.
            fn name(&self) -> &str {
                std::any::type_name::<Self>()
            }

            /// The plugin's version in listings.
            fn version(&self) -> &str {
                ""
            }

            /// Switches the plugin on or off at run time; `false` if it cannot
            /// be switched (only [`Managed`] plugins can).
            fn set_enabled(&self, on: bool) -> bool {
                let _ = on;
                false
            }

            /// Adds run-time facts to the plugin's listing (switch state,
            /// metrics); wrappers such as [`Managed`] fill it in.
            fn describe(&self, info: &mut PluginInfo) {
                let _ = info;
            }

            /// Called once, in registration order, before the worker takes tasks.
            ///
            /// An error stops start-up: the plugins already started are stopped
            /// in reverse order and the worker does not start.
            fn start(&self) -> impl Future<Output = Result<(), BoxError>> + Send {
                ready(Ok(()))
            }

            /// Called once, in reverse registration order, at shutdown.
            fn stop(&self) -> impl Future<Output = ()> + Send {
                ready(())
            }

            $(
                $(#[doc = $doc])*
                #[doc = ""]
                #[doc = concat!("Trigger `", stringify!($name), "` (", stringify!($kind), "). The default does nothing.")]
                #[allow(unused_variables)]
                fn $name(&self, ctx: &$Ctx<'_>) -> impl Future<Output = Outcome<$Out>> + Send {
                    ready(Outcome::Keep)
                }

                #[doc(hidden)]
                #[doc = concat!("The sync form of [`Plugin::", stringify!($name), "`], used when [`Plugin::SYNC`] lists the trigger.")]
                #[allow(unused_variables)]
                #[inline(always)]
                fn $sync(&self, ctx: &$Ctx<'_>) -> Outcome<$Out> {
                    Outcome::Keep
                }
            )*
        }
    };
}

crate::triggers::trigger_table!(define_plugin_trait);
