//! Parses the options of `#[task(...)]`, each on its own; what they mean
//! together is checked in `valid.rs`.

use crate::diag::{Errors, unknown_option};
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, Lit, Meta, UnOp};

const OPTIONS: &[&str] = &[
    "name",
    "priority",
    "max_time",
    "tags",
    "description",
    "retry",
    "retry_on",
    "backoff",
    "map",
    "map_item",
    "queue",
    "concurrency",
    "rate",
    "concurrency_key",
    "key_concurrency",
    "unique",
    "unique_key",
    "unique_for",
];

/// The options a task sets; absent ones take the defaults.
#[derive(Default)]
pub(crate) struct TaskOptions {
    pub name: Option<String>,
    pub priority: Option<i64>,
    pub max_time_ms: Option<u64>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub retry: Option<u32>,
    pub retry_on: Vec<syn::Path>,
    pub backoff_ms: Option<u64>,
    /// A stream task's per-item handler (a function path or a closure).
    pub map: Option<Expr>,
    /// The type the `map` handler returns, when not the item type.
    pub map_item: Option<syn::Type>,
    /// The queue the task goes to.
    pub queue: Option<String>,
    /// Most runs at once across every worker.
    pub concurrency: Option<u32>,
    /// Most starts per period: (count, seconds per period).
    pub rate: Option<(u32, u64)>,
    /// The parameter whose value is the concurrency key.
    pub concurrency_key: Option<syn::Ident>,
    /// Most runs at once per concurrency key.
    pub key_concurrency: Option<u32>,
    /// `unique`: the whole arguments make the key.
    pub unique: bool,
    /// `unique_key = [a, b]`: these parameters make the key.
    pub unique_key: Vec<syn::Ident>,
    /// How long a unique key holds after its task ended.
    pub unique_for_ms: Option<u64>,
    /// Each option given, at its key, for the checks that involve several.
    keys: Vec<(&'static str, Span)>,
}

impl TaskOptions {
    /// Where option `key` was written, if it was.
    pub(crate) fn key_span(&self, key: &str) -> Option<Span> {
        self.keys.iter().find(|(k, _)| *k == key).map(|(_, span)| *span)
    }
}

pub(crate) fn parse(args: proc_macro2::TokenStream, errors: &mut Errors) -> TaskOptions {
    let mut options = TaskOptions::default();
    for meta in crate::syntax::options(args, errors) {
        let Some(key) = meta.path().get_ident().map(ToString::to_string) else {
            errors.spanned(meta.path(), "expected a task option such as `name = \"…\"`");
            continue;
        };
        if key == "plugin" {
            errors.spanned(
                meta.path(),
                "`plugin` is not a task option any more: a plugin labels the tasks it contributes itself; list this task in the plugin's `#[plugin(tasks(...))]`",
            );
            continue;
        }
        let Some(key) = OPTIONS.iter().copied().find(|o| *o == key) else {
            errors.spanned(meta.path(), unknown_option("task", &key, OPTIONS));
            continue;
        };
        if options.key_span(key).is_some() {
            errors.spanned(meta.path(), format!("task option `{key}` is given twice"));
            continue;
        }
        options.keys.push((key, meta.path().span()));
        if key == "unique" {
            match &meta {
                Meta::Path(_) => options.unique = true,
                _ => errors.spanned(&meta, "`unique` takes no value: `#[task(unique)]` (the whole arguments make the key), or `unique_key = [param, ...]`"),
            }
            continue;
        }
        let Meta::NameValue(nv) = &meta else {
            errors.spanned(&meta, format!("expected `{key} = …`"));
            continue;
        };
        let value = &nv.value;
        match key {
            "name" => match str_lit(value) {
                Some(s) if !s.is_empty() => options.name = Some(s),
                _ => errors.spanned(value, "`name` must be a non-empty string literal, e.g. `name = \"send_email\"`"),
            },
            "description" => match str_lit(value) {
                Some(s) => options.description = Some(s),
                None => errors.spanned(value, "`description` must be a string literal"),
            },
            "priority" => match int_lit(value) {
                Some(p) => options.priority = Some(p),
                None => errors
                    .spanned(value, "`priority` must be an integer literal (lower runs first), e.g. `priority = 1`"),
            },
            "max_time" => match seconds_lit(value) {
                Seconds::Millis(ms) => options.max_time_ms = Some(ms),
                Seconds::TooLarge => errors.spanned(value, too_large(key)),
                Seconds::Invalid => errors.spanned(
                    value,
                    "`max_time` must be a positive number of seconds, e.g. `max_time = 30` or `max_time = 0.5`",
                ),
            },
            "tags" => match value {
                Expr::Array(arr) => {
                    for elem in &arr.elems {
                        match str_lit(elem) {
                            Some(s) => options.tags.push(s),
                            None => errors.spanned(elem, "each tag must be a string literal"),
                        }
                    }
                }
                _ => errors
                    .spanned(value, "`tags` must be an array of string literals, e.g. `tags = [\"mail\", \"slow\"]`"),
            },
            "retry" => match int_lit(value).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => options.retry = Some(n),
                None => errors.spanned(
                    value,
                    "`retry` must be a non-negative integer literal: how many times a failed run is retried, e.g. `retry = 3`",
                ),
            },
            "retry_on" => match value {
                Expr::Array(arr) if !arr.elems.is_empty() => {
                    for elem in &arr.elems {
                        match elem {
                            Expr::Path(p) if p.qself.is_none() => options.retry_on.push(p.path.clone()),
                            _ => errors.spanned(elem, "each entry of `retry_on` must be an error type, e.g. `std::io::Error`"),
                        }
                    }
                }
                _ => errors.spanned(
                    value,
                    "`retry_on` must be a non-empty array of error types, e.g. `retry_on = [std::io::Error, MyError]`",
                ),
            },
            "backoff" => match seconds_lit(value) {
                Seconds::Millis(ms) => options.backoff_ms = Some(ms),
                Seconds::TooLarge => errors.spanned(value, too_large(key)),
                Seconds::Invalid => errors.spanned(
                    value,
                    "`backoff` must be a positive number of seconds (the delay before the first retry, doubled for each later one), e.g. `backoff = 0.5`",
                ),
            },
            "map" => match value {
                Expr::Path(p) if p.qself.is_none() => options.map = Some(value.clone()),
                Expr::Closure(_) => options.map = Some(value.clone()),
                _ => errors.spanned(
                    value,
                    "`map` must be the path of a function that takes one item, e.g. `map = add_two` (a sync `fn(T) -> U` or an `async fn(T) -> U`), or a closure",
                ),
            },
            "map_item" => match value {
                Expr::Path(p) if p.qself.is_none() => {
                    options.map_item = Some(syn::Type::Path(syn::TypePath { qself: None, path: p.path.clone() }))
                }
                Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => match s.parse::<syn::Type>() {
                    Ok(ty) => options.map_item = Some(ty),
                    Err(e) => errors.spanned(value, format!("`map_item`: not a type: {e}")),
                },
                _ => errors.spanned(
                    value,
                    "`map_item` must be the type the `map` handler returns, e.g. `map_item = String` or `map_item = \"Vec<u8>\"`",
                ),
            },
            "queue" => match str_lit(value) {
                Some(s) if valid_queue_name(&s) => options.queue = Some(s),
                _ => errors.spanned(
                    value,
                    "`queue` must be a non-empty string literal of letters, digits, `_`, `-` and `.`, e.g. `queue = \"emails\"`",
                ),
            },
            "concurrency" | "key_concurrency" => match int_lit(value).and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0) {
                Some(n) if key == "concurrency" => options.concurrency = Some(n),
                Some(n) => options.key_concurrency = Some(n),
                None => errors.spanned(
                    value,
                    format!("`{key}` must be a whole number ≥ 1: how many may run at once across every worker, e.g. `{key} = 3`"),
                ),
            },
            "rate" => match str_lit(value).as_deref().and_then(parse_rate) {
                Some(rate) => options.rate = Some(rate),
                None => errors.spanned(
                    value,
                    "`rate` must be a string like \"100/s\", \"30/m\" or \"5/h\": at most that many starts per second, minute or hour across every worker",
                ),
            },
            "concurrency_key" => match value {
                Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
                    options.concurrency_key = p.path.get_ident().cloned()
                }
                _ => errors.spanned(
                    value,
                    "`concurrency_key` must name one of the task's parameters, e.g. `concurrency_key = user_id`",
                ),
            },
            "unique_key" => match value {
                Expr::Array(arr) if !arr.elems.is_empty() => {
                    for elem in &arr.elems {
                        match elem {
                            Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
                                options.unique_key.extend(p.path.get_ident().cloned())
                            }
                            _ => errors.spanned(elem, "each entry of `unique_key` must name one of the task's parameters"),
                        }
                    }
                }
                _ => errors.spanned(
                    value,
                    "`unique_key` must be a non-empty array of the task's parameters, e.g. `unique_key = [user_id]`",
                ),
            },
            "unique_for" => match seconds_lit(value) {
                Seconds::Millis(ms) => options.unique_for_ms = Some(ms),
                Seconds::TooLarge => errors.spanned(value, too_large(key)),
                Seconds::Invalid => errors.spanned(
                    value,
                    "`unique_for` must be a positive number of seconds: how long a unique key holds after its task ended, e.g. `unique_for = 60`",
                ),
            },
            _ => unreachable!("`key` is one of OPTIONS"),
        }
    }
    options
}

/// `100/s`, `30/m`, `5/h` (also `/sec`, `/min`, `/hour`): (count, seconds).
fn parse_rate(text: &str) -> Option<(u32, u64)> {
    let (count, unit) = text.split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return None,
    };
    Some((count, per))
}

/// A queue name: what keeps it a plain part of a backend key.
fn valid_queue_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn str_lit(e: &Expr) -> Option<String> {
    match e {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Some(s.value()),
        _ => None,
    }
}

fn int_lit(e: &Expr) -> Option<i64> {
    match e {
        Expr::Lit(syn::ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse().ok(),
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => int_lit(&u.expr).map(|v| -v),
        _ => None,
    }
}

/// A duration option read from a literal number of seconds.
enum Seconds {
    /// A positive number of whole milliseconds.
    Millis(u64),
    /// A number of seconds whose milliseconds do not fit in a `u64`.
    TooLarge,
    /// Not a literal number, or not positive once rounded to milliseconds.
    Invalid,
}

/// The most seconds a duration option may be: its milliseconds fit in a `u64`.
const MAX_SECONDS: u64 = u64::MAX / 1000;

fn seconds_lit(e: &Expr) -> Seconds {
    let millis = match e {
        // An integer literal's digits only fail to parse by overflowing.
        Expr::Lit(syn::ExprLit { lit: Lit::Int(i), .. }) => match i.base10_parse::<u128>() {
            Ok(s) => s.saturating_mul(1000),
            Err(_) => return Seconds::TooLarge,
        },
        Expr::Lit(syn::ExprLit { lit: Lit::Float(f), .. }) => match f.base10_parse::<f64>() {
            // An `f64` to `u128` cast saturates; `u64::MAX` milliseconds is
            // far below `u128::MAX`, so saturation still reads as too large.
            Ok(s) if s.is_finite() && s > 0.0 => (s * 1000.0).round() as u128,
            _ => return Seconds::Invalid,
        },
        _ => return Seconds::Invalid,
    };
    match u64::try_from(millis) {
        Ok(0) => Seconds::Invalid,
        Ok(ms) => Seconds::Millis(ms),
        Err(_) => Seconds::TooLarge,
    }
}

fn too_large(key: &str) -> String {
    format!("`{key}` is too large: at most {MAX_SECONDS} seconds")
}
