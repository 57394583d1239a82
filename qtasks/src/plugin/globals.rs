//! [`Globals`]: one handler for every trigger (QTasks's "Globals" plugin).
//!
//! A [`Wildcard`] receives each firing as a [`TriggerEvent`]: the trigger's
//! static facts, the app, the task it is about (if any) and the context as
//! `&dyn Debug`. [`Globals`] turns a wildcard into a [`Plugin`] that listens
//! to all 56 triggers with sync handlers, so it costs one plain call per
//! firing and never a future.
//!
//! A wildcard only observes: it cannot replace a value, rescue a task or
//! stop the chain, whatever the trigger's kind. A plugin that changes values
//! names the triggers it changes, with `#[plugin]`.

use crate::dispatch::{Outcome, Plugin};
#[allow(unused_imports)]
use crate::model::{NewTask, TaskMessage, TaskRecord};
#[allow(unused_imports)]
use crate::triggers::*;
use crate::triggers::{Trigger, TriggerInfo, TriggerSet};
#[allow(unused_imports)]
use serde_json::{Map, Value};
use std::fmt;
use std::future::{Future, ready};
use uuid::Uuid;

/// One firing of one trigger, as a [`Wildcard`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct TriggerEvent<'a> {
    /// The trigger: name, id, component, kind.
    pub trigger: &'static TriggerInfo,
    /// The app's name.
    pub app: &'a str,
    /// The id of the task the firing is about, if any.
    pub task_id: Option<Uuid>,
    /// The name of the task the firing is about, if known.
    pub task_name: Option<&'a str>,
    /// The trigger's context (every context type implements `Debug`).
    pub context: &'a dyn fmt::Debug,
}

/// A handler for every trigger; wrap it in [`Globals`] to add it to an app.
///
/// Implemented for closures `Fn(&TriggerEvent<'_>)` too.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a wildcard handler",
    note = "implement `qtasks::plugin::Wildcard` (one `on_trigger` method) or pass a closure `|event: &TriggerEvent<'_>| ..`"
)]
pub trait Wildcard: Send + Sync + 'static {
    /// Called for every firing of every trigger, in the chain's order.
    ///
    /// It runs inline on the component's task, like any sync handler: keep
    /// it short. A panic is caught and counted like any handler's.
    fn on_trigger(&self, event: &TriggerEvent<'_>);

    /// The name of the [`Globals`] plugin in listings and error reports.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// The version of the [`Globals`] plugin in listings.
    fn version(&self) -> &str {
        ""
    }
}

impl<F> Wildcard for F
where
    F: Fn(&TriggerEvent<'_>) + Send + Sync + 'static,
{
    fn on_trigger(&self, event: &TriggerEvent<'_>) {
        self(event)
    }

    fn name(&self) -> &str {
        "globals"
    }
}

/// The plugin that hands every trigger to a [`Wildcard`].
///
/// It listens to all 56 triggers with sync handlers and always returns
/// [`Outcome::Keep`]: it observes values, it never replaces them. Like any
/// plugin it runs in registration order: add it first to see the values
/// before other plugins replace them, last to see the values they leave.
///
/// ```
/// use qtasks::plugin::{Globals, TriggerEvent, Wildcard};
/// use std::sync::Mutex;
///
/// /// Remembers the name of every trigger fired.
/// #[derive(Default)]
/// struct Seen(Mutex<Vec<&'static str>>);
///
/// impl Wildcard for Seen {
///     fn on_trigger(&self, event: &TriggerEvent<'_>) {
///         self.0.lock().unwrap().push(event.trigger.name);
///     }
/// }
///
/// // A closure is a wildcard too.
/// let log = Globals(|event: &TriggerEvent<'_>| {
///     tracing::debug!(trigger = event.trigger.name, task = ?event.task_id, "fired");
/// });
///
/// let app = qtasks::QueueTasks::builder("demo").plugin(Globals(Seen::default())).plugin(log).build().unwrap();
/// assert_eq!(app.plugins()[0].triggers.len(), 56);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Globals<W>(pub W);

impl<W: Wildcard> Globals<W> {
    /// Builds the event for one firing and hands it to the wildcard.
    #[inline]
    fn emit<T: Trigger>(&self, app: &str, ctx: &T::Context<'_>)
    where
        for<'x> T::Context<'x>: fmt::Debug,
    {
        self.0.on_trigger(&TriggerEvent {
            trigger: &crate::triggers::ALL[T::ID as usize],
            app,
            task_id: T::task_id(ctx),
            task_name: T::task_name(ctx),
            context: ctx,
        });
    }
}

macro_rules! globals_plugin {
    ($(
        $(#[doc = $doc:literal])*
        $id:literal $name:ident $sync:ident $Ctx:ident ($comp:ident, $kind:ident, $Out:ty)
            apply(|$ac:tt, $av:tt| $apply:expr) task_id(|$tc:tt| $tid:expr) task_name(|$nc:tt| $tname:expr) {
            $( $(#[doc = $fdoc:literal])* $field:ident : $fty:ty ),* $(,)?
        }
    )*) => {
        impl<W: Wildcard> Plugin for Globals<W> {
            const LISTENS: TriggerSet = TriggerSet::ALL;
            const SYNC: TriggerSet = TriggerSet::ALL;
            type Tasks = ();

            fn name(&self) -> &str {
                self.0.name()
            }

            fn version(&self) -> &str {
                self.0.version()
            }

            $(
                #[inline]
                fn $name(&self, ctx: &$Ctx<'_>) -> impl Future<Output = Outcome<$Out>> + Send {
                    ready(self.$sync(ctx))
                }

                #[inline]
                fn $sync(&self, ctx: &$Ctx<'_>) -> Outcome<$Out> {
                    self.emit::<$Ctx<'static>>(ctx.app, ctx);
                    Outcome::Keep
                }
            )*
        }
    };
}

crate::dispatch::trigger_table!(globals_plugin);
