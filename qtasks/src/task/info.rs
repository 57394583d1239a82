//! What a worker knows about a task without running it: its options and
//! the dependencies it declares.

use crate::queue::{DEFAULT_QUEUE, Limit};
use serde::Serialize;
use std::any::TypeId;
use std::fmt;
use std::time::Duration;

/// What a worker knows about a task without running it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TaskInfo {
    /// The name clients enqueue it by.
    pub name: &'static str,
    /// The priority declared with `#[task(priority = …)]`; lower runs first.
    /// `None`: the app's default ([`Config::task_default_priority`](crate::Config)).
    pub priority: Option<i64>,
    /// Time limit; past it the task ends `error`.
    #[serde(serialize_with = "crate::model::serialize_secs")]
    pub max_time: Option<Duration>,
    /// Free-form tags, for listings.
    pub tags: &'static [&'static str],
    /// A description, for listings.
    pub description: Option<&'static str>,
    /// `true` for a sync function, which runs on the blocking pool.
    pub blocking: bool,
    /// The parameter names (without the context parameter).
    pub params: &'static [&'static str],
    /// The dependencies and states the task declares (its `Dep<T>` and
    /// `State<T>` parameters, which are not JSON arguments); a worker checks
    /// at start that the app provides each one.
    pub deps: &'static [DependencyInfo],
    /// How many times a failed run is retried (`#[task(retry = …)]`); 0: never.
    pub retry: u32,
    /// The error types that are retried (`#[task(retry_on = […])]`), as
    /// written; empty: every error except invalid arguments and cancellation.
    pub retry_on: &'static [&'static str],
    /// Delay before the first retry, doubled for each later one
    /// (`#[task(backoff = …)]`); `None`: retry at once.
    #[serde(serialize_with = "crate::model::serialize_secs")]
    pub retry_backoff: Option<Duration>,
    /// The queue it goes to unless an enqueue names another
    /// (`#[task(queue = …)]`; default [`DEFAULT_QUEUE`]).
    pub queue: &'static str,
    /// Its limits across every worker (`#[task(concurrency = …, rate = …,
    /// key_concurrency = …)]`).
    pub limit: Limit,
    /// The parameter whose value is its concurrency key
    /// (`#[task(concurrency_key = …)]`): at most `limit.per_key` (1 by
    /// default) tasks with the same value run at once.
    pub concurrency_key: Option<&'static str>,
    /// Whether and how it is unique (`#[task(unique)]`,
    /// `#[task(unique_key = [a, b], unique_for = SECS)]`).
    pub unique: Option<UniqueInfo>,
    /// `true` for a stream task: a function returning `impl Stream<Item = …>`
    /// or (run on the blocking pool) `impl Iterator<Item = …>`. Its result
    /// is the list of the items it yielded, and `task_executor_run_task_gen`
    /// fires on that list instead of `task_executor_run_task`.
    pub stream: bool,
}

impl TaskInfo {
    /// A task with default options.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            priority: None,
            max_time: None,
            tags: &[],
            description: None,
            blocking: false,
            params: &[],
            deps: &[],
            retry: 0,
            retry_on: &[],
            retry_backoff: None,
            queue: DEFAULT_QUEUE,
            limit: Limit { concurrency: None, rate: None, per_key: None },
            concurrency_key: None,
            unique: None,
            stream: false,
        }
    }

    /// The delay before retry number `n` (1 for the first retry): the
    /// backoff doubled for each retry before it, at most an hour.
    pub fn retry_delay(&self, n: u32) -> Option<Duration> {
        let base = self.retry_backoff?;
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        Some(base.saturating_mul(factor).min(Duration::from_secs(3600)))
    }
}

/// How a task is unique (see [`TaskInfo::unique`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct UniqueInfo {
    /// The parameters whose values make the key; empty: all the arguments.
    pub params: &'static [&'static str],
    /// How long after a task ended its key still holds.
    #[serde(serialize_with = "crate::model::serialize_secs_plain")]
    pub window: Duration,
}

/// Whether a task parameter is a [`Dep<T>`](super::Dep) or a [`State<T>`](super::State).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyKind {
    /// A [`Dep<T>`](super::Dep), made by a [`Provider`](super::Provider).
    Dep,
    /// A [`State<T>`](super::State), given with [`Builder::state`](crate::Builder::state).
    State,
}

/// A dependency a task declares (in [`TaskInfo::deps`]); `#[task]` writes
/// these. Workers check at start that each one is provided.
#[derive(Clone, Copy)]
pub struct DependencyInfo {
    name: &'static str,
    kind: DependencyKind,
    type_id: fn() -> TypeId,
    type_name: fn() -> &'static str,
}

impl DependencyInfo {
    /// A `Dep<T>` parameter; `name` is `T` as written.
    pub const fn dep<T: Send + Sync + 'static>(name: &'static str) -> Self {
        Self { name, kind: DependencyKind::Dep, type_id: TypeId::of::<T>, type_name: std::any::type_name::<T> }
    }

    /// A `State<T>` parameter; `name` is `T` as written.
    pub const fn state<T: Send + Sync + 'static>(name: &'static str) -> Self {
        Self { name, kind: DependencyKind::State, type_id: TypeId::of::<T>, type_name: std::any::type_name::<T> }
    }

    /// The type as written in the task's signature.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A `Dep` or a `State`.
    pub fn kind(&self) -> DependencyKind {
        self.kind
    }

    /// The type's id.
    pub fn type_id(&self) -> TypeId {
        (self.type_id)()
    }

    /// The type's full name (`std::any::type_name`).
    pub fn type_name(&self) -> &'static str {
        (self.type_name)()
    }
}

impl PartialEq for DependencyInfo {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.type_id() == other.type_id()
    }
}

impl Eq for DependencyInfo {}

impl fmt::Debug for DependencyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DependencyInfo").field("name", &self.name).field("kind", &self.kind).finish()
    }
}

impl Serialize for DependencyInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("DependencyInfo", 2)?;
        st.serialize_field("name", self.name)?;
        st.serialize_field("kind", &self.kind)?;
        st.end()
    }
}
