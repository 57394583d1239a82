//! Unit-testing plugins: run one plugin's handler against a context you
//! build, without a broker, a worker or an app.
//!
//! [`fire`] (async) and [`fire_blocking`] (for a plain `#[test]`) call the
//! plugin the way a chain does: only if it listens to the trigger, sync or
//! async as it declares, with a panic caught; a replacement value is
//! written into the context. They return a [`Fired`] report instead of
//! logging. [`message`], [`record`] and [`task_info`] build the values
//! contexts borrow.
//!
//! A sync plugin, in a `#[test]`:
//!
//! ```
//! use qtasks::testing;
//! use qtasks::triggers::WorkerExecuteBefore;
//! use qtasks::{TaskRecord, TaskStatus, json};
//!
//! /// Tags every record it sees.
//! #[qtasks::plugin(on = "worker_execute_before")]
//! fn tag(ctx: &WorkerExecuteBefore<'_>) -> Option<TaskRecord> {
//!     let mut model = ctx.model.clone();
//!     model.extra.insert("tagged".into(), json!(true));
//!     Some(model)
//! }
//!
//! // #[test]
//! # fn main() {
//! let message = testing::message("add", json!([1, 2]));
//! let mut ctx = WorkerExecuteBefore {
//!     app: "test",
//!     task: testing::task_info("add"),
//!     message: &message,
//!     model: TaskRecord::from_message(&message, TaskStatus::Process),
//! };
//! let fired = testing::fire_blocking(&Tag, &mut ctx);
//! assert!(fired.called && fired.replaced && fired.error.is_none());
//! assert_eq!(ctx.model.extra["tagged"], json!(true));
//! # }
//! ```
//!
//! An async plugin, in a `#[tokio::test]`:
//!
//! ```
//! use qtasks::testing;
//! use qtasks::triggers::TaskExecutorRunTask;
//! use qtasks::{Value, json};
//! use std::time::Duration;
//!
//! /// Refuses to store results that are not objects.
//! #[qtasks::plugin(on = "task_executor_run_task")]
//! async fn only_objects(ctx: &TaskExecutorRunTask<'_>) -> Result<Option<Value>, std::io::Error> {
//!     tokio::time::sleep(Duration::from_millis(1)).await;
//!     if ctx.result.is_object() { Ok(None) } else { Err(std::io::Error::other("not an object")) }
//! }
//!
//! // #[tokio::test]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let message = testing::message("add", json!([1, 2]));
//! let task = testing::task_info("add");
//! let mut ctx = TaskExecutorRunTask { app: "test", task, message: &message, result: json!(3) };
//! let fired = testing::fire(&OnlyObjects, &mut ctx).await;
//! assert_eq!(fired.error.as_deref(), Some("not an object"));
//! assert_eq!(ctx.result, json!(3)); // a failure keeps the value
//! # }
//! ```

#[cfg(feature = "conformance")]
pub mod conformance;

use crate::model::{TaskMessage, TaskRecord, TaskStatus, now};
use crate::plugin::{HandlerPanicked, Outcome, Plugin};
use crate::task::TaskInfo;
use crate::triggers::{Trigger, TriggerContext};
use futures::FutureExt;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, OnceLock};
use uuid::Uuid;

/// What one handler call did, as [`fire`] reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fired {
    /// The plugin listens to the trigger, so its handler was called.
    pub called: bool,
    /// The handler returned a value, now in the context.
    pub replaced: bool,
    /// The handler failed (`Err`, a panic, or a managed plugin's own
    /// failure such as a time-out): the message. The context is unchanged.
    pub error: Option<String>,
    /// The failure was a panic.
    pub panicked: bool,
    /// The handler asked to stop the chain ([`Outcome::Halt`]).
    pub halted: bool,
}

impl Fired {
    fn settle<T: Trigger>(ctx: &mut T::Context<'_>, outcome: Outcome<T::Output>) -> Self {
        let mut fired = Self { called: true, ..Self::default() };
        match outcome {
            Outcome::Keep => {}
            Outcome::Replace(value) => {
                T::apply(ctx, value);
                fired.replaced = true;
            }
            Outcome::Failed(error) => fired.failed(&*error),
            Outcome::Halt(error) => {
                fired.failed(&*error);
                fired.halted = true;
            }
        }
        fired
    }

    fn failed(&mut self, error: &(dyn std::error::Error + Send + Sync + 'static)) {
        self.panicked = error.is::<HandlerPanicked>();
        self.error = Some(error.to_string());
    }
}

/// Calls `plugin`'s handler for the trigger of `ctx`, as a chain would,
/// and writes a returned value into `ctx`.
///
/// Nothing is called if the plugin does not listen to the trigger
/// ([`Fired::called`] is `false`). A panic is caught and reported.
pub async fn fire<'c, P: Plugin, X: TriggerContext<'c>>(plugin: &P, ctx: &mut X) -> Fired {
    if !P::LISTENS.contains(<X::Trigger as Trigger>::ID) {
        return Fired::default();
    }
    let outcome = if P::SYNC.contains(<X::Trigger as Trigger>::ID) {
        catch_unwind(AssertUnwindSafe(|| <X::Trigger as Trigger>::call_sync(plugin, ctx)))
    } else {
        AssertUnwindSafe(<X::Trigger as Trigger>::call(plugin, ctx)).catch_unwind().await
    };
    let outcome = outcome.unwrap_or_else(|payload| Outcome::Failed(Box::new(HandlerPanicked::from_payload(payload))));
    Fired::settle::<X::Trigger>(ctx, outcome)
}

/// [`fire`] for a plain `#[test]`: runs it on this thread with
/// `futures::executor::block_on`.
///
/// Async handlers that use Tokio (timers, I/O, `spawn`) need a Tokio
/// runtime: test them with [`fire`] in a `#[tokio::test]`.
pub fn fire_blocking<'c, P: Plugin, X: TriggerContext<'c>>(plugin: &P, ctx: &mut X) -> Fired {
    futures::executor::block_on(fire(plugin, ctx))
}

/// A queue message for `task_name` with a new id, priority 0, first attempt.
pub fn message(task_name: &str, args: Value) -> TaskMessage {
    TaskMessage {
        uuid: Uuid::new_v4(),
        task_name: task_name.into(),
        priority: 0,
        args,
        created_at: now(),
        attempt: 1,
        extra: Map::new(),
        queue: crate::model::Name::new_static(crate::queue::DEFAULT_QUEUE),
        limit_key: None,
    }
}

/// A task record with the given status for a new [`message`].
///
/// For a record that matches a message you already have, use
/// [`TaskRecord::from_message`].
pub fn record(task_name: &str, args: Value, status: TaskStatus) -> TaskRecord {
    TaskRecord::from_message(&message(task_name, args), status)
}

/// The definition of a task called `name`, with default options, for
/// contexts that borrow a `&'static TaskInfo`.
///
/// Leaked once per name and then reused, which is fine in tests.
pub fn task_info(name: &str) -> &'static TaskInfo {
    static INFOS: OnceLock<Mutex<HashMap<String, &'static TaskInfo>>> = OnceLock::new();
    let mut infos = INFOS.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    infos.entry(name.to_owned()).or_insert_with(|| {
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        Box::leak(Box::new(TaskInfo::new(name)))
    })
}
