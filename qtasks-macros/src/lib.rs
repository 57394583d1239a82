//! The `#[task]` and `#[plugin]` attribute macros of
//! [qtasks](https://docs.rs/qtasks). Use them through `qtasks`, which
//! re-exports them. The generated code reaches the runtime only through
//! `::qtasks::__private`, and `qtasks` pins this crate to its own exact
//! version, so the two cannot mismatch.
//!
//! # How it reads
//!
//! Each macro is a pipeline, one file per stage (`task/`, `plugin/`):
//!
//! | stage | file | what it does |
//! | --- | --- | --- |
//! | parse | `attr.rs` | reads the options of the attribute, each on its own |
//! | model | `ast.rs` | reads the item into a typed model: a task's parameters by role and what it returns, a plugin's methods by trigger; it never fails |
//! | check | `valid.rs` | checks the model and the options together: each mistake is an error at its token, all of them collected (`diag::Errors`, serde's `Ctxt`) |
//! | generate | `expand.rs` | generates the code for an input that passed the checks, and nothing else |
//! | recover | `fallback.rs` | for an input that did not: the user's item as written, the errors, and the least code that keeps the rest of the crate from reporting errors of its own, so one mistake gives one error and IDEs keep working |
//!
//! `mod.rs` of each macro runs the stages in that order. Both share
//! `diag.rs` (the error collector and "did you mean"), `syntax.rs` (reading
//! types by their shape) and `triggers.rs` (the trigger names, checked
//! against the runtime's table by a test).

use proc_macro::TokenStream;

mod diag;
mod plugin;
mod syntax;
mod task;
mod triggers;

/// Turns a `fn` or `async fn` into a task.
///
/// The function stays callable as written (unit tests call it directly). The
/// macro adds a unit struct named after the function in CamelCase
/// (`fn send_email` → `struct SendEmail`) that implements `qtasks::Task`:
/// register it with `.task::<SendEmail>()` (or list it in `app!`) and
/// enqueue it with `app.enqueue(SendEmail::call(..))`, whose parameters are
/// the function's arguments.
///
/// # Options
///
/// All are optional: `#[task]`, or `#[task(name = "math.add", retry = 3)]`.
///
/// | option | what it sets | default |
/// | --- | --- | --- |
/// | `name = "…"` | the name clients enqueue the task by | the function's name |
/// | `priority = N` | an integer, lower runs first | the app's `task_default_priority` (its config), which defaults to 0 |
/// | `max_time = SECONDS` | a time limit (`30`, `0.5`): past it the task ends `error` | none |
/// | `retry = N` | how many times a failed run is retried | 0: never |
/// | `retry_on = [E, …]` | the error types that are retried (needs `retry`); `qtasks::task::Panicked` and `qtasks::task::TimeLimitExceeded` name a panic and a run past `max_time` | every error except arguments that do not decode and cancellation |
/// | `backoff = SECONDS` | the delay before the first retry, doubled for each later one, at most an hour (needs `retry`) | none: a retry is enqueued at once |
/// | `map = handler` | for a stream task, what each item goes through: the path of a sync `fn(T) -> U` or an `async fn(T) -> U`, or a closure | none |
/// | `map_item = U` | the type `map` returns, when it is not the item type (needs `map`) | the item type |
/// | `tags = ["…"]` | free-form tags, for listings | none |
/// | `description = "…"` | a description, for listings | the first line of the doc comment |
/// | `queue = "…"` | the queue the task goes to (an enqueue may send it elsewhere with `.queue(..)`) | `default` |
/// | `concurrency = N` | at most N runs of this task at once, across every worker (N ≥ 1) | no limit |
/// | `rate = "N/s"` | at most N starts per second (`/s`), minute (`/m`) or hour (`/h`), across every worker: a token bucket holding one period's worth | no limit |
/// | `concurrency_key = param` | the parameter whose value is the task's concurrency key | none |
/// | `key_concurrency = N` | at most N runs at once per value of `concurrency_key` (needs it) | 1 |
/// | `unique` | the whole arguments make a unique key: while a task with the key is queued or running (or within `unique_for`), an enqueue gives that task instead of a new one | not unique |
/// | `unique_key = [a, …]` | these parameters make the unique key (instead of `unique`) | not unique |
/// | `unique_for = SECONDS` | how long a unique key holds after its task ended (needs `unique` or `unique_key`) | 0: freed at the end |
///
/// Durations are literal numbers of seconds, at most 18446744073709551 (their
/// milliseconds fit in a `u64`). An unknown option is an error that names the
/// closest one. `plugin = "…"` is not an option any more: a plugin labels the
/// tasks it contributes itself, with `#[plugin(tasks(…))]`.
///
/// # Parameters
///
/// - A parameter of type `TaskContext` (or `&TaskContext`) receives the
///   task's context.
/// - `Dep<T>` and `State<T>`, by value, receive what the app provides
///   (`Provider`, `.state(…)`); the worker checks at start that it does.
/// - Every other parameter is an argument, decoded from JSON: a positional
///   array, or an object keyed by parameter name. A parameter is named after
///   its binding (`a` in `a: i64`); one written as a pattern
///   (`(low, high): (u32, u32)`) is named `arg{i}`, `i` its position among
///   all the parameters, from 0.
///
/// The macro sees tokens, not types: it recognises these by the last segment
/// of their type's path, so an alias of `TaskContext` is a JSON argument.
///
/// # Return value and where it runs
///
/// - A value `T` or a `Result<T, E>` (`E` any error type: an `Err` ends the
///   task `error`); `T` is serialized into the task's result.
/// - A sync function runs on the blocking pool, an `async fn` on the async
///   runtime.
/// - A stream task returns `impl Stream<Item = T>` (`fn` or `async fn`,
///   polled on the async runtime) or, from a sync `fn`, `impl Iterator<Item =
///   T>` (iterated on the blocking pool); its result is the `Vec` of its items
///   (`Result<T, E>` items: the first `Err` fails the task), each passed
///   through `map` if set.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task::task(args.into(), item.into()).into()
}

/// Binds handlers to triggers.
///
/// - On a function: `#[plugin(on = "trigger_name")]` defines a unit struct
///   named after the function in CamelCase (`fn audit` → `Audit`) that
///   implements `qtasks::Plugin` with that one handler. Add `blocking` to run
///   a sync handler on the blocking pool, with an owned snapshot of the
///   context.
/// - On an inherent `impl` block: `#[plugin]` makes each method named after a
///   trigger its handler; `start` and `stop` (sync or async, taking only
///   `&self`) form the lifecycle; `#[blocking]` on a method marks it blocking
///   (it runs on a clone of the plugin, which must be `Clone`).
/// - On either, `name = "…"` and `version = "…"` set the plugin's listing
///   (defaults: the function's or type's name, and the crate's version), and
///   `tasks(a, b)` names the `#[task]` types the plugin contributes: adding
///   the plugin to an app registers them.
///
/// # Handlers
///
/// A handler takes the trigger's context, `ctx: &qtasks::triggers::<Context>`
/// (after `&self` for a method), and returns what the trigger's kind asks:
///
/// | kind | the handler returns |
/// | --- | --- |
/// | observe | `()` or `Result<(), E>` |
/// | replace | `Option<T>` (`None` keeps the value, `Some` replaces it) or `Result<Option<T>, E>` |
/// | intercept | `Option<T>` (`Some` rescues the failed task with that result) or `Result<Option<T>, E>` |
///
/// `T` is the trigger's value, `E` any error type; a handler that fails is
/// reported and counts as `None`. A handler written for the wrong kind is an
/// error on its return type that names the kind and the type to return.
///
/// # Names
///
/// Names are checked at compile time. An unknown trigger is an error on the
/// string (or on the method's name) with the closest name and the list of
/// its component's triggers; in an impl block, `start` and `stop` are
/// candidates too, so `fn strat` is told `start`.
///
/// Every method of a `#[plugin]` impl block is a handler, `start` or `stop`:
/// any other method is an error, so a misspelt trigger is never silently a
/// helper that never runs. Keep helpers in a second impl block of the same
/// type, without `#[plugin]`:
///
/// ```text
/// #[plugin]
/// impl Audit {
///     fn worker_start(&self, ctx: &WorkerStart<'_>) { self.log("start") }
/// }
///
/// impl Audit {
///     fn log(&self, what: &str) { /* … */ }
/// }
/// ```
///
/// `#[plugin(on = "…")]` goes on free functions only: for a method, put
/// `#[plugin]` on its impl block and name the method after the trigger.
#[proc_macro_attribute]
pub fn plugin(args: TokenStream, item: TokenStream) -> TokenStream {
    plugin::plugin(args.into(), item.into()).into()
}

/// Expands to the trigger table the macros check names against, as
/// `[(name, context, output); 56]`. For the consistency test only.
#[doc(hidden)]
#[proc_macro]
pub fn __trigger_table(_input: TokenStream) -> TokenStream {
    let rows = triggers::TRIGGERS.iter().map(|t| {
        let (n, c, o) = (t.name, t.context, t.output);
        quote::quote!((#n, #c, #o))
    });
    quote::quote!([#(#rows),*]).into()
}
