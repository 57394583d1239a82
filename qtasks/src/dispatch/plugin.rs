//! The [`Plugin`] trait, generated from the trigger table: one method per
//! trigger, each a no-op by default, plus the lifecycle.

use super::table::trigger_table;
use super::triggers::*;
use super::{BoxError, Outcome};
#[allow(unused_imports)]
use crate::model::{NewTask, TaskMessage, TaskRecord};
use crate::task::TaskSet;
#[allow(unused_imports)]
use serde_json::{Map, Value};
use std::future::{Future, ready};
use std::time::Duration;

/// Name and version of a plugin, for listings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Names of the triggers it listens to (all 56 for hand-written impls).
    pub triggers: Vec<&'static str>,
    /// Names of the tasks it contributes to the app ([`Plugin::Tasks`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<&'static str>,
    /// Handler calls that returned an error so far.
    pub errors: u64,
    /// Handler calls that panicked so far.
    pub panics: u64,
    /// Whether it is switched on; `None` if it cannot be switched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Per-trigger metrics, for plugins that record them ([`Managed::metrics`](crate::plugin::Managed::metrics)).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stats: Vec<TriggerStats>,
    /// Why the plugin failed to start, for a plugin skipped after a failed
    /// start ([`Managed::skip_if_start_fails`](crate::plugin::Managed::skip_if_start_fails)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
}

/// Counts of one trigger of one [`Managed`](crate::plugin::Managed) plugin, with latency percentiles
/// (run time, without the wait for a blocking-pool slot, which is reported
/// apart). Percentiles are upper bounds of power-of-two buckets.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TriggerStats {
    /// The trigger.
    pub trigger: &'static str,
    /// Handler calls.
    pub calls: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Calls that panicked.
    pub panics: u64,
    /// Calls past the time budget.
    pub timeouts: u64,
    /// Contexts skipped by the task filter.
    pub skipped: u64,
    /// Median run time.
    #[serde(serialize_with = "crate::model::serialize_secs")]
    pub p50: Option<Duration>,
    /// 90th percentile run time.
    #[serde(serialize_with = "crate::model::serialize_secs")]
    pub p90: Option<Duration>,
    /// 99th percentile run time.
    #[serde(serialize_with = "crate::model::serialize_secs")]
    pub p99: Option<Duration>,
    /// Median wait for a blocking-pool slot (blocking handlers only).
    #[serde(serialize_with = "crate::model::serialize_secs")]
    pub queue_wait_p50: Option<Duration>,
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
        ///
        /// By hand it looks like this; set [`LISTENS`](Plugin::LISTENS) to the
        /// triggers you override, so chains skip the others at compile time
        /// (`#[plugin]` does that for you and cannot get it wrong):
        ///
        /// ```
        /// use qtasks::plugin::{Outcome, Plugin};
        /// use qtasks::triggers::{Trigger, TriggerSet, WorkerExecuteAfter};
        /// use std::sync::atomic::{AtomicU64, Ordering};
        ///
        /// /// Counts the tasks its workers finished.
        /// #[derive(Default)]
        /// struct Finished(AtomicU64);
        ///
        /// impl Plugin for Finished {
        ///     const LISTENS: TriggerSet = TriggerSet::EMPTY.with(<WorkerExecuteAfter<'static> as Trigger>::ID);
        ///     type Tasks = (); // it brings no task
        ///
        ///     fn name(&self) -> &str {
        ///         "finished"
        ///     }
        ///
        ///     async fn worker_execute_after(&self, _ctx: &WorkerExecuteAfter<'_>) -> Outcome<()> {
        ///         self.0.fetch_add(1, Ordering::Relaxed);
        ///         Outcome::Keep
        ///     }
        /// }
        ///
        /// let app = qtasks::QueueTasks::builder("demo").plugin(Finished::default()).build().unwrap();
        /// assert_eq!(app.plugins()[0].triggers, ["worker_execute_after"]);
        /// ```
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
            /// be switched (only [`Managed`](crate::plugin::Managed) plugins can).
            fn set_enabled(&self, on: bool) -> bool {
                let _ = on;
                false
            }

            /// Adds run-time facts to the plugin's listing (switch state,
            /// metrics); wrappers such as [`Managed`](crate::plugin::Managed) fill it in.
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

trigger_table!(define_plugin_trait);
