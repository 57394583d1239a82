//! Generates `impl Plugin` for a handler function or an impl block.

use super::attr::PluginOptions;
use crate::diag::{Errors, last_segment};
use crate::triggers::{self, TriggerDef};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemFn, ItemImpl, Signature, Type};

/// How a handler is called.
#[derive(Clone, Copy)]
enum Mode {
    Async,
    Sync,
    Blocking,
}

/// One trigger handler found in the input.
struct Handler {
    def: &'static TriggerDef,
    /// Span of the trigger name as the user wrote it.
    name_span: Span,
    /// The call of the user's function with `ctx`.
    call: TokenStream,
    /// For a blocking method: the call on a clone of the plugin
    /// (`__qtasks_plugin`), which the detached handler owns.
    detached_call: Option<TokenStream>,
    mode: Mode,
    span: Span,
}

fn plugin_clone_ident() -> syn::Ident {
    syn::Ident::new("__qtasks_plugin", Span::call_site())
}

// The generated method's `ctx` and `self`, made once with the macro's own
// span: the user's tokens may come from a `macro_rules!` whose hygiene would
// otherwise hide the method's parameters from the call.
fn ctx_ident() -> syn::Ident {
    syn::Ident::new("ctx", Span::call_site())
}

fn self_token() -> TokenStream {
    quote!(self)
}

fn ctx_type(def: &TriggerDef) -> TokenStream {
    let ident = format_ident!("{}", def.context);
    quote!(::qtasks::__private::triggers::#ident)
}

/// Checks a handler's parameters: exactly one `ctx: &Context<'_>` after an optional receiver.
fn check_signature(sig: &Signature, def: &TriggerDef, method: bool, errors: &mut Errors) -> bool {
    let expected = def.expected_signature(&sig.ident.to_string(), method);
    let mut inputs = sig.inputs.iter();
    if method {
        match inputs.next() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
            _ => {
                errors.spanned(
                    &sig.inputs,
                    format!(
                        "a plugin handler takes `&self` and the trigger's context\nexpected signature: `{expected}`"
                    ),
                );
                return false;
            }
        }
    }
    let rest: Vec<_> = inputs.collect();
    let ok = match rest.as_slice() {
        [FnArg::Typed(pt)] => match &*pt.ty {
            Type::Reference(r) if r.mutability.is_none() => match last_segment(&r.elem) {
                Some(seg) if seg == def.context => true,
                // An alias or a path we cannot read: let rustc check the type.
                Some(seg) if triggers::TRIGGERS.iter().all(|t| t.context != seg) => true,
                _ => false,
            },
            _ => false,
        },
        _ => false,
    };
    if !ok {
        let target: TokenStream = if rest.is_empty() { quote!(#sig) } else { sig.inputs.to_token_stream_fallback() };
        errors.spanned(
            target,
            format!("this handler does not fit trigger `{}`\nexpected signature: `{expected}`", def.name),
        );
    }
    ok
}

trait FallbackTokens {
    fn to_token_stream_fallback(&self) -> TokenStream;
}
impl<T: quote::ToTokens, P: quote::ToTokens> FallbackTokens for syn::punctuated::Punctuated<T, P> {
    fn to_token_stream_fallback(&self) -> TokenStream {
        quote!(#self)
    }
}

fn mode_of(sig: &Signature, blocking: Option<Span>, errors: &mut Errors) -> Mode {
    match (sig.asyncness.is_some(), blocking) {
        (true, Some(span)) => {
            errors.at(span, "`blocking` is for sync handlers; an `async fn` handler already runs on the async runtime");
            Mode::Async
        }
        (true, None) => Mode::Async,
        (false, Some(_)) => Mode::Blocking,
        (false, None) => Mode::Sync,
    }
}

/// The `impl Plugin` methods for one handler: a sync handler gets the hidden
/// `<trigger>_sync` method chains call directly, plus the async form that
/// wraps it; an async or blocking handler gets the async form only.
fn handler_method(h: &Handler) -> TokenStream {
    let method = syn::Ident::new(h.def.name, h.name_span);
    let sync_method = syn::Ident::new(&format!("{}_sync", h.def.name), h.name_span);
    let ctx_ty = ctx_type(h.def);
    let call = &h.call;
    let (this, ctx) = (self_token(), ctx_ident());
    let out = quote!(<#ctx_ty<'static> as ::qtasks::__private::Trigger>::Output);
    let signature = quote! {
        #[inline(always)]
        #[allow(clippy::manual_async_fn)]
        fn #method(&#this, #ctx: &#ctx_ty<'_>) -> impl ::core::future::Future<Output = ::qtasks::__private::Outcome<#out>> + ::core::marker::Send
    };
    match h.mode {
        Mode::Sync => quote_spanned! {h.span=>
            #signature {
                ::qtasks::__private::ready(::qtasks::__private::Plugin::#sync_method(#this, #ctx))
            }

            #[inline(always)]
            fn #sync_method(&#this, #ctx: &#ctx_ty<'_>) -> ::qtasks::__private::Outcome<#out> {
                ::qtasks::__private::IntoOutcome::<#out>::into_outcome(#call)
            }
        },
        Mode::Async => quote_spanned! {h.span=>
            #signature {
                async move { ::qtasks::__private::IntoOutcome::<#out>::into_outcome(#call.await) }
            }
        },
        Mode::Blocking => {
            // The handler runs detached on the blocking pool with an owned
            // snapshot of the context (and, for a method, a clone of the
            // plugin), so a time budget can stop waiting for it.
            let module = syn::Ident::new(h.def.name, Span::call_site());
            let plugin = plugin_clone_ident();
            let (clone, call) = match &h.detached_call {
                // Spanned at the method: a plugin that is not `Clone` is reported there.
                Some(call) => (quote_spanned!(h.span=> let #plugin = ::core::clone::Clone::clone(#this);), call),
                None => (quote!(), call),
            };
            quote_spanned! {h.span=>
                #signature {
                    #clone
                    let __qtasks_snapshot = ::qtasks::__private::triggers::#module::take(#ctx);
                    ::qtasks::__private::blocking_detached(move || {
                        let #ctx = &::qtasks::__private::triggers::#module::view(&__qtasks_snapshot);
                        ::qtasks::__private::IntoOutcome::<#out>::into_outcome(#call)
                    })
                }
            }
        }
    }
}

/// The set of triggers `handlers` listen to, or of those with a sync handler.
fn trigger_set(handlers: &[Handler], only_sync: bool) -> TokenStream {
    let ids = handlers.iter().filter(|h| !only_sync || matches!(h.mode, Mode::Sync)).map(|h| {
        let ctx_ty = ctx_type(h.def);
        quote!(.with(<#ctx_ty<'static> as ::qtasks::__private::Trigger>::ID))
    });
    quote!(::qtasks::__private::TriggerSet::EMPTY #(#ids)*)
}

fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn tasks_tokens(options: &PluginOptions) -> TokenStream {
    let tasks = &options.tasks;
    quote!(type Tasks = (#(#tasks,)*);)
}

fn version_tokens(options: &PluginOptions) -> TokenStream {
    match &options.version {
        Some(v) => quote!(#v),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    }
}

pub(crate) fn expand_fn(func: ItemFn, options: PluginOptions, mut errors: Errors) -> TokenStream {
    let fn_name = &func.sig.ident;
    let vis = &func.vis;
    let struct_name = format_ident!("{}", camel_case(&fn_name.to_string()), span = fn_name.span());

    let mut handlers = Vec::new();
    match &options.on {
        None => errors.at(
            Span::call_site(),
            "a plugin function needs the trigger it handles: `#[plugin(on = \"trigger_name\")]`",
        ),
        Some(lit) => match triggers::find(&lit.value()) {
            None => errors.spanned(lit, triggers::unknown_trigger_message(&lit.value())),
            Some(def) => {
                if !func.sig.generics.params.is_empty() {
                    errors.spanned(&func.sig.generics, "a plugin handler cannot be generic");
                }
                let mode = mode_of(&func.sig, options.blocking, &mut errors);
                if check_signature(&func.sig, def, false, &mut errors) {
                    let span = func.sig.span();
                    let ctx = ctx_ident();
                    handlers.push(Handler {
                        def,
                        name_span: lit.span(),
                        call: quote_spanned!(span=> #fn_name(#ctx)),
                        detached_call: None,
                        mode,
                        span,
                    });
                }
            }
        },
    }

    let name = options.name.clone().unwrap_or_else(|| fn_name.to_string());
    let version = version_tokens(&options);
    let tasks = tasks_tokens(&options);
    let listens = trigger_set(&handlers, false);
    let sync = trigger_set(&handlers, true);
    let methods = handlers.iter().map(handler_method);
    let doc = format!("The plugin defined by the handler function [`{fn_name}`](fn@{fn_name}).");
    let errors = errors.to_compile_errors();
    quote! {
        #func

        #[doc = #doc]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #struct_name;

        impl ::qtasks::__private::Plugin for #struct_name {
            const LISTENS: ::qtasks::__private::TriggerSet = #listens;
            const SYNC: ::qtasks::__private::TriggerSet = #sync;
            fn name(&self) -> &str { #name }
            fn version(&self) -> &str { #version }
            #tasks
            #(#methods)*
        }

        #errors
    }
}

pub(crate) fn expand_impl(mut block: ItemImpl, options: PluginOptions, mut errors: Errors) -> TokenStream {
    if let Some(on) = &options.on {
        errors.spanned(on, "`on = …` is for plugin functions; in an impl block, name each method after its trigger");
    }
    if let Some(span) = options.blocking {
        errors.at(span, "mark blocking handlers one by one with `#[blocking]` on the method");
    }
    if let Some((_, path, _)) = &block.trait_ {
        errors.spanned(path, "#[plugin] goes on an inherent `impl Type { … }` block, not on a trait impl");
    }

    let self_ty = block.self_ty.clone();
    let mut handlers = Vec::new();
    let mut lifecycle = Vec::new();
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else { continue };
        let blocking = take_blocking_attr(method);
        let ident = method.sig.ident.clone();
        let name = ident.to_string();
        match name.as_str() {
            "start" | "stop" => {
                if blocking.is_some() {
                    errors.spanned(&ident, "`start` and `stop` cannot be `#[blocking]`");
                }
                lifecycle.push(lifecycle_method(&name, &method.sig, &self_ty, &mut errors));
            }
            _ => match triggers::find(&name) {
                None => errors.spanned(
                    &ident,
                    format!(
                        "{}\nin a `#[plugin]` impl block every method is a trigger handler, `start` or `stop`; put helpers in another impl block",
                        triggers::unknown_trigger_message(&name)
                    ),
                ),
                Some(def) => {
                    let mode = mode_of(&method.sig, blocking, &mut errors);
                    if check_signature(&method.sig, def, true, &mut errors) {
                        let span = method.sig.span();
                        handlers.push(Handler {
                            def,
                            name_span: ident.span(),
                            call: {
                                let (this, ctx) = (self_token(), ctx_ident());
                                quote_spanned!(span=> <#self_ty>::#ident(#this, #ctx))
                            },
                            detached_call: {
                                let (plugin, ctx) = (plugin_clone_ident(), ctx_ident());
                                Some(quote_spanned!(span=> <#self_ty>::#ident(&#plugin, #ctx)))
                            },
                            mode,
                            span,
                        });
                    }
                }
            },
        }
    }

    let type_name = match &*self_ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default(),
        other => quote!(#other).to_string(),
    };
    let name = options.name.clone().unwrap_or(type_name);
    let version = version_tokens(&options);
    let tasks = tasks_tokens(&options);
    let listens = trigger_set(&handlers, false);
    let sync = trigger_set(&handlers, true);
    let methods = handlers.iter().map(handler_method);
    let (impl_generics, _, where_clause) = block.generics.split_for_impl();
    let errors = errors.to_compile_errors();
    quote! {
        #block

        impl #impl_generics ::qtasks::__private::Plugin for #self_ty #where_clause {
            const LISTENS: ::qtasks::__private::TriggerSet = #listens;
            const SYNC: ::qtasks::__private::TriggerSet = #sync;
            fn name(&self) -> &str { #name }
            fn version(&self) -> &str { #version }
            #tasks
            #(#lifecycle)*
            #(#methods)*
        }

        #errors
    }
}

/// Removes a `#[blocking]` marker from a method and returns its span.
fn take_blocking_attr(method: &mut ImplItemFn) -> Option<Span> {
    let pos = method.attrs.iter().position(|a| a.path().is_ident("blocking"))?;
    let attr = method.attrs.remove(pos);
    Some(attr.span())
}

fn lifecycle_method(name: &str, sig: &Signature, self_ty: &Type, errors: &mut Errors) -> TokenStream {
    let ok_receiver =
        matches!(sig.inputs.first(), Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none());
    if !ok_receiver || sig.inputs.len() != 1 {
        errors.spanned(
            &sig.inputs,
            format!("`{name}` takes only `&self`: `fn {name}(&self)` or `async fn {name}(&self)`"),
        );
        return quote!();
    }
    let ident = &sig.ident;
    let span = sig.span();
    let this = self_token();
    let call = if sig.asyncness.is_some() {
        quote_spanned!(span=> <#self_ty>::#ident(#this).await)
    } else {
        quote_spanned!(span=> <#self_ty>::#ident(#this))
    };
    if name == "start" {
        quote_spanned! {span=>
            async fn start(&#this) -> ::core::result::Result<(), ::qtasks::__private::BoxError> {
                ::qtasks::__private::IntoStartResult::into_start_result(#call)
            }
        }
    } else {
        quote_spanned! {span=>
            async fn stop(&#this) {
                if let ::core::result::Result::Err(error) = ::qtasks::__private::IntoStartResult::into_start_result(#call) {
                    ::qtasks::__private::report_stop_error(::qtasks::__private::Plugin::name(#this), &*error);
                }
            }
        }
    }
}
