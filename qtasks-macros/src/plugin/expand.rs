//! Generates `impl Plugin` for a checked handler function or impl block.

use super::ast::{Handler, Mode, PluginFn, PluginImpl, Returns, Role};
use super::attr::PluginOptions;
use crate::triggers::{Kind, TriggerDef};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Type;
use syn::spanned::Spanned;

// The generated methods' `ctx`, `self` and plugin clone, made once with the
// macro's own span: the user's tokens may come from a `macro_rules!` whose
// hygiene would otherwise hide the method's parameters from the call.
fn ctx_ident() -> syn::Ident {
    syn::Ident::new("ctx", Span::call_site())
}

fn self_token() -> TokenStream {
    quote!(self)
}

fn plugin_clone_ident() -> syn::Ident {
    syn::Ident::new("__qtasks_plugin", Span::call_site())
}

fn ctx_type(def: &TriggerDef) -> TokenStream {
    let ident = format_ident!("{}", def.context);
    quote!(::qtasks::__private::triggers::#ident)
}

/// The user's function and the unit struct named after it.
pub(crate) fn fn_item_and_type(plugin: &PluginFn) -> TokenStream {
    let func = &plugin.func;
    let (vis, fn_name, struct_name) = (&func.vis, &func.sig.ident, plugin.type_ident());
    let doc = format!("The plugin defined by the handler function [`{fn_name}`](fn@{fn_name}).");
    quote! {
        #func

        #[doc = #doc]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #struct_name;
    }
}

pub(crate) fn plugin_fn(plugin: &PluginFn) -> TokenStream {
    let handlers: Vec<_> = plugin.handler().into_iter().collect();
    let item_and_type = fn_item_and_type(plugin);
    let struct_name = plugin.type_ident();
    let body = plugin_body(&plugin.options, plugin.name(), &handlers, None, quote!());
    quote! {
        #item_and_type

        impl ::qtasks::__private::Plugin for #struct_name {
            #body
        }
    }
}

pub(crate) fn plugin_impl(plugin: &PluginImpl) -> TokenStream {
    let block = &plugin.block;
    let self_ty = &block.self_ty;
    // A trigger (or lifecycle method) defined twice is rustc's error on the
    // user's block; the plugin impl takes the first, not to add its own.
    let mut seen = Vec::new();
    let handlers: Vec<_> = plugin.handlers().filter(|h| first(&mut seen, &h.sig.ident)).collect();
    let lifecycle = plugin.methods.iter().filter(|m| matches!(m.role, Role::Lifecycle));
    let lifecycle = lifecycle.filter(|m| first(&mut seen, &m.sig.ident)).map(|m| lifecycle_method(&m.sig, self_ty));
    let body = plugin_body(&plugin.options, plugin.name(), &handlers, Some(self_ty), quote!(#(#lifecycle)*));
    let plugin_impl = impl_plugin_for(block, body);
    quote! {
        #block

        #plugin_impl
    }
}

/// `impl Plugin for` the block's type, with the block's generics.
pub(crate) fn impl_plugin_for(block: &syn::ItemImpl, body: TokenStream) -> TokenStream {
    let self_ty = &block.self_ty;
    let (impl_generics, _, where_clause) = block.generics.split_for_impl();
    quote! {
        impl #impl_generics ::qtasks::__private::Plugin for #self_ty #where_clause {
            #body
        }
    }
}

/// `true` the first time `ident` is seen.
fn first<'a>(seen: &mut Vec<&'a syn::Ident>, ident: &'a syn::Ident) -> bool {
    let new = !seen.contains(&ident);
    seen.push(ident);
    new
}

/// The items of `impl Plugin`: the trigger sets, the listing, the tasks, the
/// lifecycle and the handlers (methods of `self_ty`, or free functions).
fn plugin_body(
    options: &PluginOptions,
    name: String,
    handlers: &[Handler],
    self_ty: Option<&Type>,
    lifecycle: TokenStream,
) -> TokenStream {
    let version = match &options.version {
        Some(v) => quote!(#v),
        None => quote!(::core::env!("CARGO_PKG_VERSION")),
    };
    let tasks = &options.tasks;
    let listens = trigger_set(handlers, false);
    let sync = trigger_set(handlers, true);
    let methods = handlers.iter().map(|h| handler_method(h, self_ty));
    quote! {
        const LISTENS: ::qtasks::__private::TriggerSet = #listens;
        const SYNC: ::qtasks::__private::TriggerSet = #sync;
        fn name(&self) -> &str { #name }
        fn version(&self) -> &str { #version }
        type Tasks = (#(#tasks,)*);
        #lifecycle
        #(#methods)*
    }
}

/// The set of triggers `handlers` listen to, or of those with a sync handler.
fn trigger_set(handlers: &[Handler], only_sync: bool) -> TokenStream {
    let ids = handlers.iter().filter(|h| !only_sync || h.mode() == Mode::Sync).map(|h| {
        let ctx_ty = ctx_type(h.def);
        quote!(.with(<#ctx_ty<'static> as ::qtasks::__private::Trigger>::ID))
    });
    quote!(::qtasks::__private::TriggerSet::EMPTY #(#ids)*)
}

/// The conversion of a handler's return value into an `Outcome`, through
/// the observer's or the replacer's helper. The user's return type is named
/// as the helper's type argument, so a wrong one is reported on it.
fn into_outcome(h: &Handler, out: &TokenStream, value: TokenStream) -> TokenStream {
    let returned = match h.returns() {
        Returns::Observer(ty) | Returns::Replacer(ty) | Returns::Other(ty) if !matches!(ty, Type::ImplTrait(_)) => {
            quote!(#ty)
        }
        _ => quote!(_),
    };
    match h.def.kind() {
        Kind::Observe => quote!(::qtasks::__private::observer_outcome::<#returned>(#value)),
        Kind::Replace | Kind::Intercept => {
            quote!(::qtasks::__private::replacer_outcome::<#out, #returned>(#value))
        }
    }
}

/// The call of a handler with `ctx`, and for a method its call on a clone of
/// the plugin (`__qtasks_plugin`), which a detached blocking handler owns.
fn calls(h: &Handler, self_ty: Option<&Type>) -> (TokenStream, Option<TokenStream>) {
    let (span, ident, ctx) = (h.sig.span(), &h.sig.ident, ctx_ident());
    match self_ty {
        None => (quote_spanned!(span=> #ident(#ctx)), None),
        Some(self_ty) => {
            let (this, plugin) = (self_token(), plugin_clone_ident());
            (
                quote_spanned!(span=> <#self_ty>::#ident(#this, #ctx)),
                Some(quote_spanned!(span=> <#self_ty>::#ident(&#plugin, #ctx))),
            )
        }
    }
}

/// The `impl Plugin` methods for one handler: a sync handler gets the hidden
/// `<trigger>_sync` method chains call directly, plus the async form that
/// wraps it; an async or blocking handler gets the async form only.
fn handler_method(h: &Handler, self_ty: Option<&Type>) -> TokenStream {
    let method = syn::Ident::new(h.def.name, h.name_span);
    let sync_method = syn::Ident::new(&format!("{}_sync", h.def.name), h.name_span);
    let ctx_ty = ctx_type(h.def);
    let span = h.sig.span();
    let (this, ctx) = (self_token(), ctx_ident());
    let (call, detached_call) = calls(h, self_ty);
    let out = quote!(<#ctx_ty<'static> as ::qtasks::__private::Trigger>::Output);
    let signature = quote! {
        #[inline(always)]
        #[allow(clippy::manual_async_fn)]
        fn #method(&#this, #ctx: &#ctx_ty<'_>) -> impl ::core::future::Future<Output = ::qtasks::__private::Outcome<#out>> + ::core::marker::Send
    };
    match h.mode() {
        Mode::Sync => {
            let outcome = into_outcome(h, &out, call.clone());
            quote_spanned! {span=>
                #signature {
                    ::qtasks::__private::ready(::qtasks::__private::Plugin::#sync_method(#this, #ctx))
                }

                #[inline(always)]
                fn #sync_method(&#this, #ctx: &#ctx_ty<'_>) -> ::qtasks::__private::Outcome<#out> {
                    #outcome
                }
            }
        }
        Mode::Async => {
            // The handler's own future, its output converted: no `async`
            // block around it, which would hold `ctx` a second time. The
            // conversion is a call in a closure (of size zero, as a function
            // item), so a wrong return type is one error, on the type.
            let value = syn::Ident::new("__qtasks_value", Span::call_site());
            let outcome = into_outcome(h, &out, quote!(#value));
            quote_spanned! {span=>
                #signature {
                    ::qtasks::__private::Converted::new(#call, |#value| #outcome)
                }
            }
        }
        Mode::Blocking => {
            // The handler runs detached on the blocking pool with an owned
            // snapshot of the context (and, for a method, a clone of the
            // plugin), so a time budget can stop waiting for it.
            let module = syn::Ident::new(h.def.name, Span::call_site());
            let plugin = plugin_clone_ident();
            let (clone, call) = match &detached_call {
                // Spanned at the method: a plugin that is not `Clone` is reported there.
                Some(call) => (quote_spanned!(span=> let #plugin = ::core::clone::Clone::clone(#this);), call),
                None => (quote!(), &call),
            };
            let outcome = into_outcome(h, &out, call.clone());
            quote_spanned! {span=>
                #signature {
                    #clone
                    let __qtasks_snapshot = ::qtasks::__private::triggers::#module::take(#ctx);
                    ::qtasks::__private::blocking_detached(move || {
                        let #ctx = &::qtasks::__private::triggers::#module::view(&__qtasks_snapshot);
                        #outcome
                    })
                }
            }
        }
    }
}

/// `start` or `stop`: the user's method, its result converted.
fn lifecycle_method(sig: &syn::Signature, self_ty: &Type) -> TokenStream {
    let ident = &sig.ident;
    let span = sig.span();
    let this = self_token();
    let call = if sig.asyncness.is_some() {
        quote_spanned!(span=> <#self_ty>::#ident(#this).await)
    } else {
        quote_spanned!(span=> <#self_ty>::#ident(#this))
    };
    if ident == "start" {
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
