//! The `#[task]` and `#[plugin]` attribute macros of
//! [qtasks](https://docs.rs/qtasks). Use them through `qtasks`, which
//! re-exports them; the generated code refers to `::qtasks`.
//!
//! Each macro reads as a pipeline: `attr` parses the options, `expand`
//! checks the item and generates code; on a mistake it still emits the
//! user's item (and, where it can, the generated type), so one mistake gives
//! one error.

use proc_macro::TokenStream;

mod diag;
mod plugin;
mod task;
mod triggers;

/// Turns a `fn` or `async fn` into a task.
///
/// Options: `name = "…"` (default: the function's name), `priority = N`
/// (lower runs first, default 0), `max_time = SECONDS`, `tags = ["…"]`,
/// `description = "…"` (default: the first line of the doc comment).
///
/// The function stays callable as written. The macro adds a type with the
/// function's name (`struct add {}`) that implements `qtasks::Task`: register
/// it with `.task::<add>()` and enqueue it with `app.enqueue::<add>(args)`.
/// A parameter of type `TaskContext` (or `&TaskContext`) receives the task's
/// context; the other parameters are the task's arguments, decoded from JSON.
/// A sync function runs on the blocking pool.
///
/// A stream task returns `impl Stream<Item = T>` (`fn` or `async fn`,
/// polled on the async runtime) or, from a sync `fn`, `impl Iterator<Item =
/// T>` (iterated on the blocking pool); its result is the `Vec` of its items
/// (`Result<T, E>` items: the first `Err` fails the task). `map = handler`
/// passes each item through a sync `fn(T) -> U` or an `async fn(T) -> U`
/// (or a closure); `map_item = U` names `U` when it is not `T`.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    task::task(args.into(), item.into()).into()
}

/// Binds handlers to triggers.
///
/// - On a function: `#[plugin(on = "trigger_name")]` defines a unit struct
///   named after the function in CamelCase that implements `qtasks::Plugin`
///   with that one handler. Add `blocking` to run a sync handler on the
///   blocking pool, with an owned snapshot of the context.
/// - On an `impl` block: each method named after a trigger is a handler;
///   `start` and `stop` (sync or async) form the lifecycle; `#[blocking]` on
///   a method marks it blocking (it runs on a clone of the plugin, which must
///   be `Clone`). `name = "…"` and `version = "…"` set the
///   plugin's listing.
/// - On either, `tasks(a, b)` names the `#[task]` types the plugin
///   contributes: adding the plugin to an app registers them.
///
/// An unknown trigger name is an error on the string (or method name) with a
/// "did you mean" suggestion.
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
