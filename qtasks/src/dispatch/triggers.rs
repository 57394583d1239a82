//! The 56 QTasks triggers: one context type each, plus what every trigger is.
//!
//! Each trigger is a context type named after it in CamelCase
//! (`worker_execute_before` → [`WorkerExecuteBefore`]), generated from the
//! trigger table together with its [`Trigger`] impl and its row in [`ALL`];
//! the same table generates one method per trigger of the
//! [`Plugin`] trait.
//!
//! Every context has an `app` field (the app's name). Replace and intercept
//! triggers carry the value handlers may replace as an owned field; the
//! other fields borrow from the component that fires the trigger. A field
//! named `task` is always the task's static [`TaskInfo`]; a stored record is
//! always `model` (or `models`), as QTasks names it.
//!
//! Which triggers fire on which path, and in which order, is listed in the
//! README ("Triggers"); `tests/tests/plugins.rs` keeps that list true.

pub use super::meta::{Component, Kind, Trigger, TriggerContext, TriggerInfo, TriggerSet};

use super::table::trigger_table;
use super::{Outcome, Plugin};
use crate::model::{NewTask, TaskMessage, TaskRecord, TaskStatus};
use crate::task::{PluginError, TaskInfo};
use serde_json::{Map, Value};
use std::future::Future;
use uuid::Uuid;

/// The executor phase a middleware trigger fires in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before the task runs.
    Before,
    /// After the task ran.
    After,
}

macro_rules! define_contexts {
    ($(
        $(#[doc = $doc:literal])*
        $id:literal $name:ident $sync:ident $Ctx:ident ($comp:ident, $kind:ident, $Out:ty)
            apply(|$ac:tt, $av:tt| $apply:expr) task_id(|$tc:tt| $tid:expr) task_name(|$nc:tt| $tname:expr) {
            $( $(#[doc = $fdoc:literal])* $field:ident : $fty:ty ),* $(,)?
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            #[doc = ""]
            #[doc = concat!("Context of the `", stringify!($name), "` trigger (", stringify!($kind), ", component `", stringify!($comp), "`).")]
            #[derive(Debug)]
            pub struct $Ctx<'a> {
                /// The app's name.
                pub app: &'a str,
                $( $(#[doc = $fdoc])* pub $field: $fty, )*
            }

            impl Trigger for $Ctx<'static> {
                const NAME: &'static str = stringify!($name);
                const ID: u8 = $id;
                const COMPONENT: Component = Component::$comp;
                const KIND: Kind = Kind::$kind;
                type Context<'a> = $Ctx<'a>;
                type Output = $Out;

                #[inline(always)]
                fn call<P: Plugin>(plugin: &P, ctx: &Self::Context<'_>) -> impl Future<Output = Outcome<$Out>> + Send {
                    plugin.$name(ctx)
                }

                #[inline(always)]
                fn call_sync<P: Plugin>(plugin: &P, ctx: &Self::Context<'_>) -> Outcome<$Out> {
                    plugin.$sync(ctx)
                }

                #[inline(always)]
                #[allow(clippy::unused_unit)]
                fn apply($ac: &mut Self::Context<'_>, $av: $Out) {
                    $apply
                }

                #[inline]
                fn task_id($tc: &Self::Context<'_>) -> Option<Uuid> {
                    $tid
                }

                #[inline]
                fn task_name<'x>($nc: &'x Self::Context<'_>) -> Option<&'x str> {
                    $tname
                }
            }

            impl<'a> TriggerContext<'a> for $Ctx<'a> {
                type Trigger = $Ctx<'static>;
            }

            /// Owned snapshots of this trigger's context, for detached handlers.
            #[doc(hidden)]
            pub mod $name {
                #[allow(unused_imports)]
                use super::*;

                /// An owned copy of the context (see `dispatch/snapshot.rs`).
                #[derive(Debug)]
                pub struct Snapshot<'a> {
                    pub(crate) app: String,
                    $( pub(crate) $field: <$fty as crate::dispatch::snapshot::Own<'a>>::Owned, )*
                    pub(crate) _lifetime: std::marker::PhantomData<&'a ()>,
                }

                /// Copies the context.
                pub fn take<'a>(ctx: &$Ctx<'a>) -> Snapshot<'static> {
                    Snapshot {
                        app: ctx.app.to_owned(),
                        $( $field: crate::dispatch::snapshot::Own::own(&ctx.$field), )*
                        _lifetime: std::marker::PhantomData,
                    }
                }

                /// Views the copy as the context.
                pub fn view<'a>(snapshot: &'a Snapshot<'static>) -> $Ctx<'a> {
                    $Ctx {
                        app: &snapshot.app,
                        $( $field: <$fty as crate::dispatch::snapshot::Own<'a>>::view(&snapshot.$field), )*
                    }
                }
            }
        )*

        /// Every trigger, in table order (`ALL[i].id == i`).
        pub const ALL: [TriggerInfo; 56] = [
            $( TriggerInfo {
                name: stringify!($name),
                id: $id,
                component: Component::$comp,
                kind: Kind::$kind,
                context: stringify!($Ctx),
                output: stringify!($Out),
            }, )*
        ];
    };
}

trigger_table!(define_contexts);

/// Looks a trigger up by name.
pub fn by_name(name: &str) -> Option<&'static TriggerInfo> {
    ALL.iter().find(|t| t.name == name)
}
