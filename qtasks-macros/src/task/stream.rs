//! Stream tasks (QTasks's generator tasks, §4.7): a function returning
//! `impl Stream<Item = T>` or `impl Iterator<Item = T>` whose items are
//! collected into the task's result, each passed through the optional
//! `map` handler (QTasks's `generate_handler`).

use super::attr::TaskOptions;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ReturnType, Type};

/// How a stream task produces its items.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamKind {
    /// `impl Stream<Item = T>`, polled on the async runtime.
    Async,
    /// `impl Iterator<Item = T>`, iterated on the blocking pool.
    Blocking,
}

/// A return type `impl Stream<Item = T>` / `impl Iterator<Item = T>` (by the
/// bound's last path segment): the kind, the item type if named, the bound.
pub(super) fn stream_item(output: &ReturnType) -> Option<(StreamKind, Option<&Type>, &syn::TraitBound)> {
    let ReturnType::Type(_, ty) = output else { return None };
    let Type::ImplTrait(imp) = &**ty else { return None };
    imp.bounds.iter().find_map(|b| {
        let syn::TypeParamBound::Trait(bound) = b else { return None };
        let last = bound.path.segments.last()?;
        let kind = match last.ident.to_string().as_str() {
            "Stream" => StreamKind::Async,
            "Iterator" => StreamKind::Blocking,
            _ => return None,
        };
        let item = match &last.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
                syn::GenericArgument::AssocType(at) if at.ident == "Item" => Some(&at.ty),
                _ => None,
            }),
            _ => None,
        };
        Some((kind, item, bound))
    })
}

/// `Output` and the run body of a stream task: collect the items (each
/// checked if it is a `Result`, then passed through `map`) into a `Vec`.
pub(super) fn stream_run(
    kind: StreamKind,
    item: &Type,
    options: &TaskOptions,
    call: &TokenStream,
    is_async: bool,
    span: proc_macro2::Span,
) -> (TokenStream, TokenStream) {
    let (ok_ty, value) = if let Some(ok) = result_ok(item) {
        let ok = match ok {
            Some(ok) => quote!(#ok),
            None => quote!(<#item as ::qtasks::__private::IntoTaskResult>::Ok),
        };
        (ok, quote_spanned!(item.span()=> ::qtasks::__private::IntoTaskResult::into_task_result(__qtasks_item)?))
    } else {
        (quote!(#item), quote!(__qtasks_item))
    };
    let out_item = match &options.map_item {
        Some(ty) => quote!(#ty),
        None => ok_ty,
    };
    let mapped = match &options.map {
        // Autoref specialization: a future (async handler) is awaited, a value taken as is.
        Some(map) => quote_spanned! {map.span()=> {
            #[allow(unused_imports)]
            use ::qtasks::__private::{MapFuture as _, MapValue as _};
            let __qtasks_map = #map;
            let __qtasks_pending = (&&::qtasks::__private::Mapped::new(__qtasks_map(__qtasks_value))).__qtasks_mapped();
            ::qtasks::__private::mapped_item::<#out_item, _>(__qtasks_pending.await)
        }},
        None => quote!(__qtasks_value),
    };
    let each = quote! {
        |__qtasks_item: #item| async move {
            let __qtasks_value = #value;
            let __qtasks_out: #out_item = #mapped;
            ::core::result::Result::<#out_item, ::qtasks::__private::TaskError>::Ok(__qtasks_out)
        }
    };
    let output = quote!(::std::vec::Vec<#out_item>);
    let body = match kind {
        StreamKind::Async => {
            let make = if is_async { quote!(#call.await) } else { call.clone() };
            quote_spanned! {span=> async move {
                let __qtasks_stream = #make;
                ::qtasks::__private::collect_stream(__qtasks_stream, #each).await
            }}
        }
        StreamKind::Blocking => quote_spanned! {span=>
            ::qtasks::__private::collect_blocking(
                __qtasks_ctx,
                move |__qtasks_ctx: ::qtasks::__private::TaskContext, __qtasks_sink| {
                    for __qtasks_item in #call {
                        if !__qtasks_sink.send(__qtasks_item) {
                            break;
                        }
                    }
                },
                #each,
            )
        },
    };
    (output, body)
}

/// `Result<T, E>` (by the last path segment): `Some(T)` if written out.
fn result_ok(ty: &Type) -> Option<Option<&Type>> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last().filter(|s| s.ident == "Result")?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return Some(None) };
    Some(args.args.iter().find_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    }))
}
