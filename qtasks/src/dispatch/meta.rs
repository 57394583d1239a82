//! What a trigger is: a name, a component, a kind and a typed context.
//!
//! The 56 triggers themselves are declared once, in [`super::table`], and
//! generated as context types in [`crate::triggers`].

use super::{Outcome, Plugin};
use std::fmt;
use std::future::Future;
use uuid::Uuid;

/// The part of the runtime that fires a trigger; the prefix of its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// The app and client (`qtasks_*`).
    Qtasks,
    /// The broker: the queue (`broker_*`).
    Broker,
    /// The storage: task records (`storage_*`).
    Storage,
    /// The shared configuration and worker registry (`global_config_*`).
    GlobalConfig,
    /// The worker: takes tasks and runs them (`worker_*`).
    Worker,
    /// The executor: one task's pipeline (`task_executor_*`).
    TaskExecutor,
    /// Start-up and shutdown (`starter_*`).
    Starter,
    /// Inspection (`stats_*`).
    Stats,
}

impl Component {
    /// The prefix trigger names of this component start with.
    pub const fn prefix(self) -> &'static str {
        match self {
            Self::Qtasks => "qtasks",
            Self::Broker => "broker",
            Self::Storage => "storage",
            Self::GlobalConfig => "global_config",
            Self::Worker => "worker",
            Self::TaskExecutor => "task_executor",
            Self::Starter => "starter",
            Self::Stats => "stats",
        }
    }
}

/// What handlers of a trigger may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A notification: handlers return nothing that changes the flow.
    Observe,
    /// Handlers may return a new value. `None` leaves the value unchanged,
    /// each plugin sees the previous plugin's value and the last `Some` wins.
    Replace,
    /// An error trigger: a handler that returns a value rescues the failed
    /// task, which then ends `success` with that value (last `Some` wins).
    Intercept,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Observe => "observe",
            Self::Replace => "replace",
            Self::Intercept => "intercept",
        })
    }
}

/// Static facts about one trigger, for listings and checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriggerInfo {
    /// The QTasks name, byte for byte.
    pub name: &'static str,
    /// Position in [`crate::triggers::ALL`]; also the bit in a [`TriggerSet`].
    pub id: u8,
    /// The component that fires it.
    pub component: Component,
    /// What handlers may do.
    pub kind: Kind,
    /// The context type's name, e.g. `WorkerExecuteBefore`.
    pub context: &'static str,
    /// The type a handler may return in `Some` (`()` for observers).
    pub output: &'static str,
}

/// A set of triggers as a bit mask, evaluated at compile time.
///
/// Every plugin declares the triggers it listens to as a `TriggerSet`
/// constant; chains skip members that do not listen without creating a
/// future, and a trigger no member listens to is not fired at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TriggerSet(u64);

impl TriggerSet {
    /// No trigger.
    pub const EMPTY: Self = Self(0);
    /// Every trigger. The default for hand-written [`Plugin`] impls, so a
    /// handler they override is never skipped.
    pub const ALL: Self = Self(u64::MAX);

    /// This set plus the trigger with the given id.
    pub const fn with(self, id: u8) -> Self {
        Self(self.0 | (1u64 << id))
    }

    /// The union of two sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The triggers of this set that are not in `other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// `true` if the trigger with the given id is in the set.
    #[inline(always)]
    pub const fn contains(self, id: u8) -> bool {
        self.0 & (1u64 << id) != 0
    }

    /// `true` if no trigger is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// One of the 56 triggers, implemented by its context type.
///
/// You do not implement this trait: [`crate::triggers`] does, once per
/// trigger, from the trigger table.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a qtasks trigger",
    note = "the 56 triggers are the context types in `qtasks::triggers`"
)]
pub trait Trigger: Sized + 'static {
    /// The QTasks name, byte for byte.
    const NAME: &'static str;
    /// Position in [`crate::triggers::ALL`].
    const ID: u8;
    /// The component that fires it.
    const COMPONENT: Component;
    /// What handlers may do.
    const KIND: Kind;
    /// The context handlers receive, borrowing from the component that fires it.
    type Context<'a>: Send + Sync;
    /// The value a handler may return in `Some`; `()` for observers.
    type Output: Send;

    /// Calls this trigger's method on one plugin.
    fn call<P: Plugin>(plugin: &P, ctx: &Self::Context<'_>) -> impl Future<Output = Outcome<Self::Output>> + Send;

    /// Calls the sync form of this trigger's method on one plugin (for
    /// plugins whose [`Plugin::SYNC`] lists the trigger).
    fn call_sync<P: Plugin>(plugin: &P, ctx: &Self::Context<'_>) -> Outcome<Self::Output>;

    /// Stores a handler's replacement value into the context, so the next
    /// plugin sees it. A no-op for observers.
    fn apply(ctx: &mut Self::Context<'_>, value: Self::Output);

    /// The id of the task the context is about, if any (for error reports).
    fn task_id(ctx: &Self::Context<'_>) -> Option<Uuid>;

    /// The name of the task the context is about, if any (for filters).
    fn task_name<'x>(ctx: &'x Self::Context<'_>) -> Option<&'x str>;
}

/// Maps a context type back to its trigger, so `fire(&chain, &mut ctx)`
/// needs no turbofish.
pub trait TriggerContext<'a>: Send + Sync {
    /// The trigger whose context this is.
    type Trigger: Trigger<Context<'a> = Self>;
}
