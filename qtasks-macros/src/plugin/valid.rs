//! Checks a `#[plugin]` input, each mistake an error at its token.

use super::ast::{Handler, Method, PluginFn, PluginImpl, Returns, Role};
use super::attr::{self, PluginOptions};
use crate::diag::Errors;
use crate::syntax::path_tail_deref;
use crate::triggers::{self, Kind};
use proc_macro2::Span;
use syn::{FnArg, ItemFn, ReturnType, Type};

pub(crate) fn check_fn(plugin: &PluginFn, errors: &mut Errors) {
    match &plugin.options.on {
        None => errors.at(
            Span::call_site(),
            "a plugin function needs the trigger it handles: `#[plugin(on = \"trigger_name\")]`",
        ),
        Some(lit) if plugin.trigger().is_none() => errors.spanned(lit, triggers::unknown_trigger_message(&lit.value())),
        Some(_) => {}
    }
    if let Some(handler) = plugin.handler() {
        check_handler(&handler, errors);
    }
}

pub(crate) fn check_impl(plugin: &PluginImpl, errors: &mut Errors) {
    if let Some(on) = &plugin.options.on {
        errors.spanned(on, "`on = …` is for plugin functions; in an impl block, name each method after its trigger");
    }
    if let Some(span) = plugin.options.blocking {
        errors.at(span, "mark blocking handlers one by one with `#[blocking]` on the method");
    }
    if let Some((_, path, _)) = &plugin.block.trait_ {
        errors.spanned(path, "#[plugin] goes on an inherent `impl Type { … }` block, not on a trait impl");
    }
    for method in &plugin.methods {
        check_method(method, errors);
    }
    for handler in plugin.handlers() {
        check_handler(&handler, errors);
    }
}

/// `#[plugin]` on a method of an impl block that does not have it: the one
/// error says where the attribute goes.
pub(crate) fn check_method_outside_impl(func: &ItemFn, options: &PluginOptions, errors: &mut Errors) {
    errors.at(
        Span::call_site(),
        format!(
            "`#[plugin]` goes on a free function or an impl block, and `{}` is a method: put `#[plugin]` on its `impl` block instead, and name the method after the trigger it handles: {}",
            func.sig.ident,
            rename_hint(options)
        ),
    );
}

/// What a method that handles the trigger of `options.on` is written as.
fn rename_hint(options: &PluginOptions) -> String {
    match options.on.as_ref().and_then(|on| triggers::find(&on.value())) {
        Some(def) => format!("`{}`", def.expected_signature(def.name, true)),
        None => "e.g. `fn worker_start(&self, ctx: &qtasks::triggers::WorkerStart<'_>)`".to_owned(),
    }
}

/// What a method's name and attributes make it, apart from its signature
/// as a handler.
fn check_method(method: &Method, errors: &mut Errors) {
    let ident = &method.sig.ident;
    if let Some(attr) = &method.plugin_attr {
        // Its name is likely not a trigger either: this one error says both.
        let options = match &attr.meta {
            syn::Meta::List(list) => attr::parse(list.tokens.clone(), &mut Errors::default()),
            _ => PluginOptions::default(),
        };
        errors.spanned(
            attr,
            format!(
                "a method of a `#[plugin]` impl block takes no `#[plugin(…)]`: it handles the trigger it is named after; remove the attribute and rename `{ident}`: {}",
                rename_hint(&options)
            ),
        );
        return;
    }
    match method.role {
        Role::Handler(_) => {}
        Role::Unknown => errors.spanned(ident, triggers::unknown_method_message(&ident.to_string())),
        Role::Lifecycle => {
            if method.blocking.is_some() {
                errors.spanned(ident, "`start` and `stop` cannot be `#[blocking]`");
            }
            let sig = &method.sig;
            if !takes_self_only(sig) {
                errors.spanned(
                    &sig.inputs,
                    format!("`{ident}` takes only `&self`: `fn {ident}(&self)` or `async fn {ident}(&self)`"),
                );
            }
        }
    }
}

/// `&self` first (not `self` or `&mut self`).
fn by_ref_self(arg: Option<&FnArg>) -> bool {
    matches!(arg, Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none())
}

fn takes_self_only(sig: &syn::Signature) -> bool {
    sig.inputs.len() == 1 && by_ref_self(sig.inputs.first())
}

/// A handler's generics, parameters, return type and mode against its trigger.
fn check_handler(handler: &Handler, errors: &mut Errors) {
    let (sig, def) = (handler.sig, handler.def);
    if !sig.generics.params.is_empty() {
        errors.spanned(&sig.generics, "a plugin handler cannot be generic");
    }
    let expected = def.expected_signature(&sig.ident.to_string(), handler.method);
    let mut inputs = sig.inputs.iter();
    if handler.method && !by_ref_self(inputs.next()) {
        errors.spanned(
            &sig.inputs,
            format!("a plugin handler takes `&self` and the trigger's context\nexpected signature: `{expected}`"),
        );
        return;
    }
    let rest: Vec<_> = inputs.collect();
    let fits = match rest.as_slice() {
        [FnArg::Typed(pt)] => match &*pt.ty {
            Type::Reference(r) if r.mutability.is_none() => match path_tail_deref(&r.elem) {
                Some(seg) if seg.ident == def.context => true,
                // An alias or a path we cannot read: let rustc check the type.
                Some(seg) => triggers::TRIGGERS.iter().all(|t| seg.ident != t.context),
                None => false,
            },
            _ => false,
        },
        _ => false,
    };
    if !fits {
        let message = format!("this handler does not fit trigger `{}`\nexpected signature: `{expected}`", def.name);
        if rest.is_empty() {
            errors.spanned(sig, message)
        } else {
            errors.spanned(&sig.inputs, message)
        }
        return;
    }
    let wrong_kind = matches!(
        (def.kind(), handler.returns()),
        (Kind::Observe, Returns::Replacer(_))
            | (Kind::Replace | Kind::Intercept, Returns::Nothing | Returns::Observer(_))
    );
    if wrong_kind {
        let message = format!("{}\nexpected signature: `{expected}`", def.kind_rule());
        match &sig.output {
            ReturnType::Type(_, ty) => errors.spanned(ty, message),
            ReturnType::Default => errors.spanned(sig, message),
        }
    }
    if let (Some(blocking), true) = (&handler.blocking, sig.asyncness.is_some()) {
        errors.spanned(
            blocking,
            "`blocking` is for sync handlers; an `async fn` handler already runs on the async runtime",
        );
    }
}
