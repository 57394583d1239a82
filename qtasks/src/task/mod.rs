//! Tasks: functions clients enqueue by name and workers run.
//!
//! `#[task]` implements [`Task`] for a function; a [`TaskSet`] is the list of
//! tasks an app knows, as one type (a tuple of tasks, nested for more than
//! 16). Looking a task up by the name in a message is a chain of string
//! compares generated for that type: no registry is filled at start-up.

pub(crate) mod args;
mod cancel;
pub(crate) mod context;
pub mod deps;
mod error;
mod info;
pub(crate) mod stream;

pub use cancel::CancelToken;
pub use context::TaskContext;
pub use deps::{Dep, DependencyError, Provider, State};
pub use error::{Cancelled, Panicked, PluginError, TaskError, TimeLimitExceeded};
pub use info::{DependencyInfo, DependencyKind, TaskInfo, UniqueInfo};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::future::Future;
use std::time::Duration;

/// The extra field holding a time limit set at enqueue (seconds, above
/// zero): it replaces the task's `#[task(max_time = …)]` for that task, as
/// [`Signature::max_time`](crate::Signature::max_time) sets it. A producer
/// in another language may write it too; the Celery backend maps a Celery
/// message's `time_limit` onto it (see [`backend`](crate::backend)).
pub const MAX_TIME: &str = "max_time";

/// The time limit of one run: the enqueue's [`MAX_TIME`] extra field if it
/// has one, else the task's own `max_time`. An extra field that is not a
/// number of seconds above 0 is an error naming it.
pub(crate) fn time_limit(declared: Option<Duration>, extra: &Map<String, Value>) -> Result<Option<Duration>, String> {
    let Some(value) = extra.get(MAX_TIME) else { return Ok(declared) };
    value
        .as_f64()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|limit| !limit.is_zero())
        .map(Some)
        .ok_or_else(|| format!("invalid extra field `{MAX_TIME}`: {value} (expected a number of seconds above 0)"))
}

/// A task: a function with typed arguments and result, run by name.
///
/// Implement it with `#[task]`, which keeps the function callable as
/// written and adds a type implementing this trait:
///
/// ```
/// use qtasks::{Task, TaskError, task};
///
/// /// Sends a greeting.
/// #[task(priority = 1, max_time = 30, retry = 2)]
/// async fn greet(name: String) -> Result<String, TaskError> {
///     Ok(format!("hello, {name}"))
/// }
///
/// assert_eq!(<Greet as Task>::INFO.name, "greet");
/// assert_eq!(<Greet as Task>::INFO.description, Some("Sends a greeting."));
/// assert_eq!(<Greet as Task>::INFO.retry, 2);
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(greet("ada".into()).await.unwrap(), "hello, ada"); // still a plain function
/// # });
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a qtasks task",
    label = "not a task",
    note = "put `#[qtasks::task]` on a `fn` or `async fn`; the macro defines a type with the function's name that implements `Task`"
)]
pub trait Task: Send + Sync + 'static {
    /// Name and options.
    const INFO: TaskInfo;
    /// The arguments as a tuple, in parameter order.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// The result.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Decodes JSON arguments. The default accepts what `serde_json`
    /// decodes into `Args`; `#[task]` also accepts an object keyed by
    /// parameter name, and `null` for a task without parameters.
    fn decode_args(args: &Value) -> Result<Self::Args, serde_json::Error> {
        serde::Deserialize::deserialize(args)
    }

    /// Whether a failed run with this error is retried (when retries are
    /// left). `#[task(retry_on = [io::Error, MyError])]` matches the error
    /// types; the default retries every error except invalid arguments and
    /// cancellation.
    fn retry_on(error: &TaskError) -> bool {
        error.is_retryable()
    }

    /// Runs the task. Sync tasks move to the blocking pool here.
    fn run(ctx: TaskContext, args: Self::Args) -> impl Future<Output = Result<Self::Output, TaskError>> + Send;
}

/// Receives the task found by [`TaskSet::dispatch`].
pub trait TaskVisitor: Send {
    /// What visiting produces.
    type Output: Send;
    /// Called with the task whose name matched.
    fn visit<T: Task>(self) -> impl Future<Output = Self::Output> + Send;
}

/// The tasks an app knows, as one type.
///
/// Implemented for every [`Task`], for `()` and for tuples of task sets up to
/// 16 long (nest tuples for more).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a set of qtasks tasks",
    note = "a task set is a `#[task]` type, `()`, or a tuple of task sets such as `(add, mul)`"
)]
pub trait TaskSet: Send + Sync + 'static {
    /// Every task name in the set, for the compile-time duplicate check.
    const NAMES: NameList;

    /// `true` if a task of the set has this name.
    fn contains(name: &str) -> bool;

    /// Runs `visitor` with the task called `name`, or gives it back.
    fn dispatch<V: TaskVisitor>(name: &str, visitor: V) -> impl Future<Output = Result<V::Output, V>> + Send;

    /// Appends every task's info, in order.
    fn describe(out: &mut Vec<&'static TaskInfo>);

    /// The info of the task called `name`, if the set has one (no allocation).
    fn info(name: &str) -> Option<&'static TaskInfo>;
}

/// A list of names built at compile time (up to [`NameList::CAPACITY`]).
#[derive(Clone, Copy, Debug)]
pub struct NameList {
    names: [&'static str; NameList::CAPACITY],
    len: usize,
}

impl NameList {
    /// How many names a list holds.
    pub const CAPACITY: usize = 512;
    /// No names.
    pub const EMPTY: Self = Self { names: [""; Self::CAPACITY], len: 0 };

    /// A list of one name.
    pub const fn one(name: &'static str) -> Self {
        Self::EMPTY.push(name)
    }

    /// The list with `name` added.
    pub const fn push(mut self, name: &'static str) -> Self {
        assert!(self.len < Self::CAPACITY, "too many tasks in one app (more than 512)");
        self.names[self.len] = name;
        self.len += 1;
        self
    }

    /// The list with every name of `other` added.
    pub const fn extend(mut self, other: &Self) -> Self {
        let mut i = 0;
        while i < other.len {
            self = self.push(other.names[i]);
            i += 1;
        }
        self
    }

    /// The first name that appears twice, if any.
    pub const fn duplicate(&self) -> Option<&'static str> {
        let mut i = 0;
        while i < self.len {
            let mut j = i + 1;
            while j < self.len {
                if str_eq(self.names[i], self.names[j]) {
                    return Some(self.names[i]);
                }
                j += 1;
            }
            i += 1;
        }
        None
    }

    /// Panics (at compile time, where it is evaluated in a constant) if a
    /// name appears twice, with a message naming it.
    pub const fn assert_unique(&self) {
        if let Some(name) = self.duplicate() {
            let message = DuplicateMessage::new(name);
            match message.as_str() {
                Some(text) => panic!("{}", text),
                None => panic!("a task name is registered twice in this app (among its tasks and its plugins' tasks)"),
            }
        }
    }
}

/// "task name `x` is registered twice …", built at compile time.
struct DuplicateMessage {
    bytes: [u8; DuplicateMessage::CAPACITY],
    len: usize,
}

impl DuplicateMessage {
    const CAPACITY: usize = 512;

    const fn new(name: &str) -> Self {
        let mut message = Self { bytes: [0; Self::CAPACITY], len: 0 };
        message = message.push("task name `");
        message = message.push(name);
        message = message.push(
            "` is registered twice in this app (among its own tasks and the tasks its plugins bring); \
             rename one with `#[task(name = \"…\")]`",
        );
        message
    }

    const fn push(mut self, text: &str) -> Self {
        let text = text.as_bytes();
        let mut i = 0;
        while i < text.len() && self.len < Self::CAPACITY {
            self.bytes[self.len] = text[i];
            self.len += 1;
            i += 1;
        }
        self
    }

    /// The message; `None` if a very long name was cut inside a character.
    const fn as_str(&self) -> Option<&str> {
        let (text, _) = self.bytes.split_at(self.len);
        match std::str::from_utf8(text) {
            Ok(text) => Some(text),
            Err(_) => None,
        }
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl<T: Task> TaskSet for T {
    const NAMES: NameList = NameList::one(T::INFO.name);

    #[inline]
    fn contains(name: &str) -> bool {
        name == T::INFO.name
    }

    async fn dispatch<V: TaskVisitor>(name: &str, visitor: V) -> Result<V::Output, V> {
        if Self::contains(name) { Ok(visitor.visit::<T>().await) } else { Err(visitor) }
    }

    fn describe(out: &mut Vec<&'static TaskInfo>) {
        out.push(&T::INFO);
    }

    #[inline]
    fn info(name: &str) -> Option<&'static TaskInfo> {
        (name == T::INFO.name).then_some(&T::INFO)
    }
}

impl TaskSet for () {
    const NAMES: NameList = NameList::EMPTY;

    fn contains(_name: &str) -> bool {
        false
    }

    fn dispatch<V: TaskVisitor>(_name: &str, visitor: V) -> impl Future<Output = Result<V::Output, V>> + Send {
        std::future::ready(Err(visitor))
    }

    fn describe(_out: &mut Vec<&'static TaskInfo>) {}

    fn info(_name: &str) -> Option<&'static TaskInfo> {
        None
    }
}

macro_rules! tuple_task_set {
    ($( ($($T:ident),+) )+) => {$(
        impl<$($T: TaskSet),+> TaskSet for ($($T,)+) {
            const NAMES: NameList = NameList::EMPTY $(.extend(&$T::NAMES))+;

            #[inline]
            fn contains(name: &str) -> bool {
                $( $T::contains(name) )||+
            }

            async fn dispatch<V: TaskVisitor>(name: &str, visitor: V) -> Result<V::Output, V> {
                $( if $T::contains(name) { return $T::dispatch(name, visitor).await; } )+
                Err(visitor)
            }

            fn describe(out: &mut Vec<&'static TaskInfo>) {
                $( $T::describe(out); )+
            }

            fn info(name: &str) -> Option<&'static TaskInfo> {
                $( if let Some(info) = $T::info(name) { return Some(info); } )+
                None
            }
        }
    )+};
}

tuple_task_set! {
    (A)
    (A, B)
    (A, B, C)
    (A, B, C, D)
    (A, B, C, D, E)
    (A, B, C, D, E, F)
    (A, B, C, D, E, F, G)
    (A, B, C, D, E, F, G, H)
    (A, B, C, D, E, F, G, H, I)
    (A, B, C, D, E, F, G, H, I, J)
    (A, B, C, D, E, F, G, H, I, J, K)
    (A, B, C, D, E, F, G, H, I, J, K, L)
    (A, B, C, D, E, F, G, H, I, J, K, L, M)
    (A, B, C, D, E, F, G, H, I, J, K, L, M, N)
    (A, B, C, D, E, F, G, H, I, J, K, L, M, N, O)
    (A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, P)
}

/// What a task function may return: a value, or `Result<value, E>`.
///
/// `#[task]` uses it on functions whose return type is written `Result<…>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by a task",
    note = "a task returns a serializable value, or `Result<T, E>` where `E` converts into `qtasks::TaskError` (any `std::error::Error + Send + Sync + 'static`)"
)]
pub trait IntoTaskResult {
    /// The value on success.
    type Ok;
    /// Converts the return value.
    fn into_task_result(self) -> Result<Self::Ok, TaskError>;
}

impl<T, E: Into<TaskError>> IntoTaskResult for Result<T, E> {
    type Ok = T;
    #[inline]
    fn into_task_result(self) -> Result<T, TaskError> {
        self.map_err(Into::into)
    }
}
