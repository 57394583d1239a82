//! Parses the options of `#[plugin(...)]`, each on its own; which ones fit
//! a function or an impl block is checked in `valid.rs`.

use crate::diag::{Errors, unknown_option};
use syn::punctuated::Punctuated;
use syn::{Expr, Lit, LitStr, Meta, Token};

/// Options of `#[plugin]`.
#[derive(Default)]
pub(crate) struct PluginOptions {
    /// `on = "trigger"`: required on functions, refused on impl blocks.
    pub on: Option<LitStr>,
    /// `blocking`: run a sync handler off the async worker threads.
    pub blocking: Option<proc_macro2::Span>,
    /// `name = "…"`: the plugin's name in listings.
    pub name: Option<String>,
    /// `version = "…"`: the plugin's version in listings.
    pub version: Option<String>,
    /// `tasks(a, b)`: the tasks the plugin contributes.
    pub tasks: Vec<syn::Path>,
}

const OPTIONS: &[&str] = &["on", "blocking", "name", "version", "tasks"];

pub(crate) fn parse(args: proc_macro2::TokenStream, errors: &mut Errors) -> PluginOptions {
    let mut options = PluginOptions::default();
    for meta in crate::syntax::options(args, errors) {
        let key = meta.path().get_ident().map(ToString::to_string).unwrap_or_default();
        match (key.as_str(), &meta) {
            ("blocking", Meta::Path(p)) => options.blocking = Some(syn::spanned::Spanned::span(p)),
            ("tasks", Meta::List(list)) => {
                match list.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated) {
                    Ok(paths) => options.tasks.extend(paths),
                    Err(e) => errors.push(e),
                }
            }
            ("tasks", _) => {
                errors.spanned(&meta, "expected `tasks(task_a, task_b)`: the `#[task]` types the plugin contributes")
            }
            ("on" | "name" | "version", Meta::NameValue(nv)) => {
                let Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) = &nv.value else {
                    errors.spanned(&nv.value, format!("`{key}` must be a string literal"));
                    continue;
                };
                match key.as_str() {
                    "on" => options.on = Some(s.clone()),
                    "name" => options.name = Some(s.value()),
                    _ => options.version = Some(s.value()),
                }
            }
            ("on" | "name" | "version", _) => errors.spanned(&meta, format!("expected `{key} = \"…\"`")),
            ("blocking", _) => errors.spanned(&meta, "`blocking` takes no value"),
            _ => errors.spanned(meta.path(), unknown_option("plugin", &key, OPTIONS)),
        }
    }
    options
}
