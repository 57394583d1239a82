//! The dyn escape hatch: plugins chosen at run time.
//!
//! A [`PluginChain`] is a type fixed at compile time. When the list of plugins is
//! only known at run time (read from a config file, loaded per tenant),
//! box them as [`DynPlugin`]s and put them in a [`DynChain`], which is one
//! more member of the static chain.
//!
//! Every [`Plugin`] whose `Tasks` is `()` is a `DynPlugin`; you do not
//! implement it. The trait has one object-safe method per trigger, so a
//! boxed plugin keeps its handlers and their replace semantics: a
//! [`DynChain`] behaves exactly like the same plugins added one by one
//! (order, replace, failures and panics counted, [`Outcome::Halt`]).

use crate::dispatch::{BoxError, Member, Outcome, Plugin, PluginChain, PluginInfo};
#[allow(unused_imports)]
use crate::model::{NewTask, TaskMessage, TaskRecord};
#[allow(unused_imports)]
use crate::triggers::*;
use crate::triggers::{Trigger, TriggerSet};
use futures::future::BoxFuture;
#[allow(unused_imports)]
use serde_json::{Map, Value};
use std::fmt;
use std::future::Future;

/// A [`Plugin`] behind a pointer: `Box<dyn DynPlugin>`.
///
/// Implemented for every plugin whose `Tasks` is `()`; box one with
/// `Box::new(plugin) as Box<dyn DynPlugin>` and push it on a [`DynChain`].
/// Besides the methods below it has one hidden method per trigger. The
/// methods below share their names with [`Plugin`]'s: on a concrete plugin,
/// with both traits imported, call them as `Plugin::name(&p)`.
///
/// ```
/// use qtasks::plugin::DynPlugin;
/// use qtasks::triggers::{WorkerStart, by_name};
///
/// #[qtasks::plugin(on = "worker_start")]
/// fn hello(_ctx: &WorkerStart<'_>) {}
///
/// let boxed: Box<dyn DynPlugin> = Box::new(Hello);
/// assert_eq!(boxed.name(), "hello");
/// assert!(boxed.listens().contains(by_name("worker_start").unwrap().id));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be boxed as a `dyn DynPlugin`",
    label = "not a plugin without tasks",
    note = "every `qtasks::Plugin` whose `Tasks` is `()` is a `DynPlugin`: write it with `#[qtasks::plugin]`; plugins that contribute tasks must be added with the app builder's `.plugin(..)`"
)]
pub trait DynPlugin: DynHandlers + Send + Sync + 'static {
    /// [`Plugin::name`].
    fn name(&self) -> &str;

    /// [`Plugin::version`].
    fn version(&self) -> &str;

    /// [`Plugin::LISTENS`]: a [`DynChain`] calls no other handler.
    fn listens(&self) -> TriggerSet;

    /// [`Plugin::start`], boxed.
    fn start(&self) -> BoxFuture<'_, Result<(), BoxError>>;

    /// [`Plugin::stop`], boxed.
    fn stop(&self) -> BoxFuture<'_, ()>;
}

impl<P: Plugin<Tasks = ()>> DynPlugin for P {
    fn name(&self) -> &str {
        Plugin::name(self)
    }

    fn version(&self) -> &str {
        Plugin::version(self)
    }

    fn listens(&self) -> TriggerSet {
        P::LISTENS
    }

    fn start(&self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(Plugin::start(self))
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(Plugin::stop(self))
    }
}

/// A boxed plugin as a [`Plugin`], so [`Member`] runs it: the dyn chain
/// shares the static chain's outcome handling, reports and counters.
struct Boxed(Box<dyn DynPlugin>);

macro_rules! dyn_plugin {
    ($(
        $(#[doc = $doc:literal])*
        $id:literal $name:ident $sync:ident $Ctx:ident ($comp:ident, $kind:ident, $Out:ty)
            apply(|$ac:tt, $av:tt| $apply:expr) task_id(|$tc:tt| $tid:expr) task_name(|$nc:tt| $tname:expr) {
            $( $(#[doc = $fdoc:literal])* $field:ident : $fty:ty ),* $(,)?
        }
    )*) => {
        /// The object-safe handlers behind [`DynPlugin`]: one per trigger,
        /// async (boxed) and sync.
        ///
        /// A separate trait, unnamed outside this module, so that importing
        /// `DynPlugin` never makes `plugin.worker_start(..)` ambiguous with
        /// [`Plugin::worker_start`], and so that nobody implements it by hand.
        #[doc(hidden)]
        pub trait DynHandlers {
            /// [`Plugin::SYNC`].
            fn sync_triggers(&self) -> TriggerSet;

            /// [`Plugin::set_enabled`].
            fn set_enabled(&self, on: bool) -> bool;

            /// [`Plugin::describe`].
            fn describe(&self, info: &mut PluginInfo);

            $(
                /// The trigger's handler as a boxed future.
                fn $name<'a>(&'a self, ctx: &'a $Ctx<'_>) -> BoxFuture<'a, Outcome<$Out>>;

                /// The trigger's handler, called in place.
                fn $sync(&self, ctx: &$Ctx<'_>) -> Outcome<$Out>;
            )*
        }

        impl<P: Plugin<Tasks = ()>> DynHandlers for P {
            fn sync_triggers(&self) -> TriggerSet {
                P::SYNC
            }

            fn set_enabled(&self, on: bool) -> bool {
                Plugin::set_enabled(self, on)
            }

            fn describe(&self, info: &mut PluginInfo) {
                Plugin::describe(self, info)
            }

            $(
                fn $name<'a>(&'a self, ctx: &'a $Ctx<'_>) -> BoxFuture<'a, Outcome<$Out>> {
                    if P::SYNC.contains($id) {
                        // Lazy, so that a panic happens inside the caller's
                        // guarded poll rather than when the future is made.
                        Box::pin(async move { <P as Plugin>::$sync(self, ctx) })
                    } else {
                        Box::pin(<P as Plugin>::$name(self, ctx))
                    }
                }

                fn $sync(&self, ctx: &$Ctx<'_>) -> Outcome<$Out> {
                    if P::SYNC.contains($id) {
                        <P as Plugin>::$sync(self, ctx)
                    } else {
                        // Only `PluginChain::fire_sync` gets here, which the
                        // runtime never calls on a `DynChain` (see its docs).
                        futures::executor::block_on(<P as Plugin>::$name(self, ctx))
                    }
                }
            )*
        }

        impl Plugin for Boxed {
            // `DynChain` checks the boxed plugin's own sets before calling.
            const LISTENS: TriggerSet = TriggerSet::ALL;
            const SYNC: TriggerSet = TriggerSet::EMPTY;
            const CAN_STOP: bool = true;
            type Tasks = ();

            fn name(&self) -> &str {
                DynPlugin::name(&*self.0)
            }

            fn version(&self) -> &str {
                DynPlugin::version(&*self.0)
            }

            fn set_enabled(&self, on: bool) -> bool {
                DynHandlers::set_enabled(&*self.0, on)
            }

            fn describe(&self, info: &mut PluginInfo) {
                let listens = DynPlugin::listens(&*self.0);
                info.triggers = crate::triggers::ALL.iter().filter(|t| listens.contains(t.id)).map(|t| t.name).collect();
                DynHandlers::describe(&*self.0, info);
            }

            fn start(&self) -> impl Future<Output = Result<(), BoxError>> + Send {
                DynPlugin::start(&*self.0)
            }

            fn stop(&self) -> impl Future<Output = ()> + Send {
                DynPlugin::stop(&*self.0)
            }

            $(
                #[inline]
                fn $name(&self, ctx: &$Ctx<'_>) -> impl Future<Output = Outcome<$Out>> + Send {
                    // The box lives as long as the shorter of the two borrows,
                    // which the opaque type cannot name; the async block can.
                    async move { DynHandlers::$name(&*self.0, ctx).await }
                }

                #[inline]
                fn $sync(&self, ctx: &$Ctx<'_>) -> Outcome<$Out> {
                    DynHandlers::$sync(&*self.0, ctx)
                }
            )*
        }
    };
}

crate::dispatch::trigger_table!(dyn_plugin);

/// One boxed plugin of a [`DynChain`], with its trigger sets read once.
struct Entry {
    member: Member<Boxed>,
    listens: TriggerSet,
    sync: TriggerSet,
}

/// A list of [`DynPlugin`]s built at run time, fired as one [`PluginChain`].
///
/// Firing a trigger calls, in order, the plugins whose
/// [`DynPlugin::listens`] contains it, with the static chain's semantics:
/// each replace handler sees the previous plugin's value, `None` keeps it,
/// the last `Some` wins; an `Err` or a panic is reported through `tracing`
/// with the plugin's name, the trigger and the task id, counted (see
/// [`PluginChain::describe`]) and counts as `None`; [`Outcome::Halt`] (from a
/// boxed [`Managed`](super::Managed) plugin) skips the plugins after it,
/// in this chain and in the app's chain.
///
/// Plugins start in order and stop in reverse order; if one fails to
/// start, the ones started before it are stopped, last first.
///
/// [`PluginChain::ASYNC`] is every trigger, so the runtime always fires it with
/// [`PluginChain::fire`]; [`PluginChain::fire_sync`], if you call it yourself, drives
/// async handlers to completion with `futures::executor::block_on`.
///
/// # Cost
///
/// What the static chain compiles away, a `DynChain` pays at run time: each
/// firing of each trigger walks the list and checks each plugin's trigger
/// set; a listening plugin costs one virtual call, plus one boxed future
/// (an allocation) when its handler is async. Sync handlers are called
/// without a future, as in a static chain. The chain's own future is
/// created for every trigger, since no constant says which ones nobody
/// listens to.
///
/// # Tasks
///
/// A dyn plugin cannot contribute tasks: task types must be known at compile
/// time. A plugin with `#[plugin(tasks(..))]` does not coerce to
/// `Box<dyn DynPlugin>`; add it with the app builder's `.plugin(..)`.
///
/// ```
/// use qtasks::plugin::{DynChain, DynPlugin};
/// use qtasks::triggers::TaskExecutorArgsReplace;
/// use qtasks::{Value, json};
///
/// /// Adds one to the first argument.
/// #[qtasks::plugin(on = "task_executor_args_replace")]
/// fn plus_one(ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
///     Some(json!([ctx.args[0].as_i64()? + 1]))
/// }
///
/// /// Doubles the first argument.
/// #[qtasks::plugin(on = "task_executor_args_replace")]
/// async fn double(ctx: &TaskExecutorArgsReplace<'_>) -> Option<Value> {
///     Some(json!([ctx.args[0].as_i64()? * 2]))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // The list is chosen at run time.
/// let mut chain = DynChain::new();
/// for name in ["plus_one", "double"] {
///     let plugin: Box<dyn DynPlugin> = match name {
///         "plus_one" => Box::new(PlusOne),
///         _ => Box::new(Double),
///     };
///     chain.push(plugin);
/// }
///
/// let task = qtasks::testing::task_info("add");
/// let message = qtasks::testing::message("add", json!([1]));
/// let mut ctx = TaskExecutorArgsReplace { app: "demo", task, message: &message, args: json!([1]) };
/// qtasks::fire!(&chain, &mut ctx);
/// assert_eq!(ctx.args, json!([4]));
/// # }
/// ```
#[derive(Default)]
pub struct DynChain {
    plugins: Vec<Entry>,
}

impl DynChain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plugin after the ones already added.
    pub fn push(&mut self, plugin: Box<dyn DynPlugin>) {
        let listens = plugin.listens();
        let sync = plugin.sync_triggers();
        self.plugins.push(Entry { member: Member::new(Boxed(plugin)), listens, sync });
    }

    /// How many plugins the chain holds.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// `true` if the chain holds no plugin.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}

impl fmt::Debug for DynChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.plugins.iter().map(|e| Plugin::name(e.member.plugin()))).finish()
    }
}

impl FromIterator<Box<dyn DynPlugin>> for DynChain {
    fn from_iter<I: IntoIterator<Item = Box<dyn DynPlugin>>>(iter: I) -> Self {
        let mut chain = Self::new();
        chain.extend(iter);
        chain
    }
}

impl Extend<Box<dyn DynPlugin>> for DynChain {
    fn extend<I: IntoIterator<Item = Box<dyn DynPlugin>>>(&mut self, iter: I) {
        for plugin in iter {
            self.push(plugin);
        }
    }
}

impl PluginChain for DynChain {
    const LISTENS: TriggerSet = TriggerSet::ALL;
    const ASYNC: TriggerSet = TriggerSet::ALL;
    const CAN_STOP: bool = true;
    type Tasks = ();

    async fn fire<T: Trigger>(&self, ctx: &mut T::Context<'_>) -> bool {
        for entry in &self.plugins {
            if !entry.listens.contains(T::ID) {
                continue;
            }
            let go_on = if entry.sync.contains(T::ID) {
                entry.member.fire_sync::<T>(ctx)
            } else {
                entry.member.fire::<T>(ctx).await
            };
            if !go_on {
                return false;
            }
        }
        true
    }

    fn fire_sync<T: Trigger>(&self, ctx: &mut T::Context<'_>) -> bool {
        self.plugins.iter().filter(|e| e.listens.contains(T::ID)).all(|e| e.member.fire_sync::<T>(ctx))
    }

    async fn start(&self) -> Result<(), crate::dispatch::PluginStartError> {
        for (started, entry) in self.plugins.iter().enumerate() {
            if let Err(error) = entry.member.start().await {
                for entry in self.plugins[..started].iter().rev() {
                    entry.member.stop().await;
                }
                return Err(error);
            }
        }
        Ok(())
    }

    async fn stop(&self) {
        for entry in self.plugins.iter().rev() {
            entry.member.stop().await;
        }
    }

    fn describe(&self, out: &mut Vec<PluginInfo>) {
        for entry in &self.plugins {
            entry.member.describe(out);
        }
    }

    fn set_enabled(&self, name: &str, on: bool) -> usize {
        self.plugins.iter().map(|e| e.member.set_enabled(name, on)).sum()
    }
}
