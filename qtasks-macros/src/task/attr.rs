//! Parses the options of `#[task(...)]`.

use crate::diag::Errors;
use syn::punctuated::Punctuated;
use syn::{Expr, Lit, Meta, Token, UnOp};

const OPTIONS: &[&str] =
    &["name", "priority", "max_time", "tags", "description", "retry", "retry_on", "backoff", "map", "map_item"];

/// The options a task may set; absent ones take the defaults.
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
    /// Where `map` / `map_item` were written, for errors on non-stream tasks.
    pub map_span: Option<proc_macro2::Span>,
}

pub(crate) fn parse(args: proc_macro2::TokenStream, errors: &mut Errors) -> TaskOptions {
    let mut options = TaskOptions::default();
    let metas = match syn::parse::Parser::parse2(Punctuated::<Meta, Token![,]>::parse_terminated, args) {
        Ok(m) => m,
        Err(e) => {
            errors.push(e);
            return options;
        }
    };
    let mut seen: Vec<String> = Vec::new();
    let mut needs_retry: Vec<(String, proc_macro2::Span)> = Vec::new();
    for meta in metas {
        let Some(key) = meta.path().get_ident().map(ToString::to_string) else {
            errors.spanned(meta.path(), "expected a task option such as `name = \"…\"`");
            continue;
        };
        if !OPTIONS.contains(&key.as_str()) {
            let mut msg = format!("unknown task option `{key}`");
            if let Some(best) = OPTIONS.iter().copied().find(|o| strsim::jaro_winkler(o, &key) > 0.8) {
                msg.push_str(&format!("; did you mean `{best}`?"));
            }
            msg.push_str(&format!("\nthe options are: {}", OPTIONS.join(", ")));
            errors.spanned(meta.path(), msg);
            continue;
        }
        if seen.contains(&key) {
            errors.spanned(meta.path(), format!("task option `{key}` is given twice"));
            continue;
        }
        seen.push(key.clone());
        if (key == "map" || key == "map_item") && options.map_span.is_none() {
            options.map_span = Some(syn::spanned::Spanned::span(meta.path()));
        }
        if key == "retry_on" || key == "backoff" {
            needs_retry.push((key.clone(), syn::spanned::Spanned::span(meta.path())));
        }
        let Meta::NameValue(nv) = &meta else {
            errors.spanned(&meta, format!("expected `{key} = …`"));
            continue;
        };
        let value = &nv.value;
        match key.as_str() {
            "name" => match str_lit(value) {
                Some(s) if !s.is_empty() => options.name = Some(s),
                _ => errors.spanned(value, "`name` must be a non-empty string literal, e.g. `name = \"send_email\"`"),
            },
            "plugin" => errors.spanned(
                &nv.path,
                "`plugin` is no longer a task option: a plugin labels the tasks it contributes itself, with `#[plugin(tasks(...))]`",
            ),
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
                Some(ms) if ms > 0 => options.max_time_ms = Some(ms),
                _ => errors.spanned(
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
                Some(ms) if ms > 0 => options.backoff_ms = Some(ms),
                _ => errors.spanned(
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
            _ => unreachable!("checked against OPTIONS"),
        }
    }
    if options.map.is_none() && options.map_item.take().is_some() {
        errors.at(
            options.map_span.unwrap_or_else(proc_macro2::Span::call_site),
            "`map_item` names what the `map` handler returns: it needs `map = handler`",
        );
    }
    if options.retry.is_none() {
        for (key, span) in needs_retry {
            let what = if key == "retry_on" { "nothing is retried" } else { "there is nothing to delay" };
            errors.at(span, format!("`{key}` needs `retry = N`: without retries {what}"));
        }
    }
    options
}

fn str_lit(e: &Expr) -> Option<String> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(s) => Some(s.value()),
            _ => None,
        },
        _ => None,
    }
}

fn int_lit(e: &Expr) -> Option<i64> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse().ok(),
            _ => None,
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => int_lit(&u.expr).map(|v| -v),
        _ => None,
    }
}

fn seconds_lit(e: &Expr) -> Option<u64> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse::<u64>().ok().map(|s| s * 1000),
            Lit::Float(f) => {
                f.base10_parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0).map(|s| (s * 1000.0).round() as u64)
            }
            _ => None,
        },
        _ => None,
    }
}
