//! Checks a `#[task]` function and its options, each mistake an error at
//! its token.

use super::ast::{Output, Param, StreamKind, Task};
use crate::diag::Errors;
use syn::Type;

/// What may be generated after the checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The full `Task` impl: the signature is usable (an option may still
    /// be wrong; it then keeps its default).
    Expand,
    /// A stand-in impl only (`fallback.rs`): the signature cannot be called
    /// as a task, and an impl built on it would add errors of its own.
    StandIn,
}

pub(crate) fn check(task: &Task, errors: &mut Errors) -> Verdict {
    check_options(task, errors);
    let mut signature = Errors::default();
    check_signature(task, &mut signature);
    let verdict = if signature.is_empty() { Verdict::Expand } else { Verdict::StandIn };
    errors.append(signature);
    verdict
}

/// The options' relations to each other and to the function; what is wrong
/// here leaves an option at its default.
fn check_options(task: &Task, errors: &mut Errors) {
    let options = &task.options;
    if options.map.is_none()
        && let Some(at) = options.key_span("map_item")
    {
        errors.at(at, "`map_item` names what the `map` handler returns: it needs `map = handler`");
    }
    if options.retry.is_none() {
        for (key, what) in [("retry_on", "nothing is retried"), ("backoff", "there is nothing to delay")] {
            if let Some(at) = options.key_span(key) {
                errors.at(at, format!("`{key}` needs `retry = N`: without retries {what}"));
            }
        }
    }
    let params: Vec<&str> = task.args().map(|(name, _)| name).collect();
    let named = |ident: &syn::Ident, key: &str, errors: &mut Errors| {
        if !params.contains(&ident.to_string().as_str()) {
            errors.spanned(
                ident,
                format!("`{key}` names `{ident}`, which is not one of the task's arguments; they are {params:?}"),
            );
        }
    };
    if let Some(ident) = &options.concurrency_key {
        named(ident, "concurrency_key", errors);
    }
    for ident in &options.unique_key {
        named(ident, "unique_key", errors);
    }
    if options.concurrency_key.is_none()
        && let Some(at) = options.key_span("key_concurrency")
    {
        errors.at(at, "`key_concurrency` limits the runs per concurrency key: it needs `concurrency_key = param`");
    }
    if options.unique
        && !options.unique_key.is_empty()
        && let Some(at) = options.key_span("unique_key")
    {
        errors.at(at, "give `unique` (the whole arguments make the key) or `unique_key = [...]`, not both");
    }
    if !options.unique
        && options.unique_key.is_empty()
        && let Some(at) = options.key_span("unique_for")
    {
        errors.at(at, "`unique_for` is the window of a unique key: it needs `unique` or `unique_key = [...]`");
    }
    if !matches!(task.output, Output::Stream { .. })
        && let Some(at) = options.key_span("map").or(options.key_span("map_item"))
    {
        errors.at(
            at,
            "`map` is for stream tasks, whose function returns `impl Stream<Item = T>` or `impl Iterator<Item = T>`; this task returns one value",
        );
    }
}

/// The function's generics, parameters and return type.
fn check_signature(task: &Task, errors: &mut Errors) {
    let sig = &task.func.sig;
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            "a task cannot be generic: workers find it by name and decode its arguments into concrete types",
        );
    }
    for param in &task.params {
        match param {
            Param::Context { .. } | Param::Dep { .. } => {}
            Param::Receiver(r) => errors.spanned(r, "a task is a free function; `self` is not allowed"),
            Param::DepByRef { kind, ty } => errors.spanned(
                ty,
                format!("take `{}<T>` by value: it is a cheap handle (an `Arc`) the worker gives the task", kind.name()),
            ),
            Param::NestedDep(inner) => errors.spanned(
                inner,
                "`Dep<T>` and `State<T>` must be parameters of their own: the worker provides them, they are not decoded from JSON",
            ),
            Param::Arg { ty, .. } => match ty {
                Type::Reference(r) => errors.spanned(
                    r,
                    "task parameters must be owned types (they are decoded from JSON): use `String` for `&str`, `Vec<T>` for `&[T]`",
                ),
                Type::ImplTrait(t) => {
                    errors.spanned(t, "task parameters must be concrete types (they are decoded from JSON)")
                }
                _ => {}
            },
        }
    }
    match &task.output {
        Output::Stream { item: None, bound, .. } => {
            errors.spanned(bound, "name the item type: `impl Stream<Item = T>` or `impl Iterator<Item = T>`")
        }
        Output::Stream { kind: StreamKind::Blocking, bound, .. } if task.is_async() => errors.spanned(
            bound,
            "an `async fn` task cannot return an iterator: return `impl Stream<Item = T>`, or make it a sync `fn` (its iterator runs on the blocking pool)",
        ),
        _ => {}
    }
}
