//! Generates the `Task` impl for a function.

use super::attr::TaskOptions;
use super::stream::{StreamKind, stream_item, stream_run};
use crate::diag::{Errors, last_segment_is};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

enum Param<'a> {
    /// The task context, by value or by reference.
    Context { by_ref: bool },
    /// A JSON-decoded argument.
    Arg { name: String, ty: &'a Type },
    /// A `Dep<T>` or a `State<T>` the worker provides (`ty` is `T`), the
    /// `index`-th of the task.
    Dep { kind: DepKind, ty: &'a Type, index: usize },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DepKind {
    Dep,
    State,
}

pub(crate) fn expand(func: &ItemFn, options: TaskOptions, mut errors: Errors) -> TokenStream {
    let sig = &func.sig;
    let fn_name = &sig.ident;
    let vis = &func.vis;

    let mut signature_ok = true;
    if !sig.generics.params.is_empty() {
        signature_ok = false;
        errors.spanned(
            &sig.generics,
            "a task cannot be generic: workers find it by name and decode its arguments into concrete types",
        );
    }
    let mut params = Vec::new();
    for (i, input) in sig.inputs.iter().enumerate() {
        match input {
            FnArg::Receiver(r) => {
                signature_ok = false;
                errors.spanned(r, "a task is a free function; `self` is not allowed")
            }
            FnArg::Typed(pt) => {
                if last_segment_is(&pt.ty, "TaskContext") {
                    params.push(Param::Context { by_ref: matches!(&*pt.ty, Type::Reference(_)) });
                    continue;
                }
                if let Some((kind, ty)) = dep_param(&pt.ty) {
                    let index = params.iter().filter(|p| matches!(p, Param::Dep { .. })).count();
                    params.push(Param::Dep { kind, ty, index });
                    continue;
                }
                if let Type::Reference(r) = &*pt.ty
                    && let Some((kind, _)) = dep_param(&r.elem)
                {
                    signature_ok = false;
                    let name = if kind == DepKind::Dep { "Dep" } else { "State" };
                    errors.spanned(
                        r,
                        format!("take `{name}<T>` by value: it is a cheap handle (an `Arc`) the worker gives the task"),
                    );
                    continue;
                }
                if let Some(inner) = nested_dep(&pt.ty) {
                    signature_ok = false;
                    errors.spanned(
                        inner,
                        "`Dep<T>` and `State<T>` must be parameters of their own: the worker provides them, they are not decoded from JSON",
                    );
                    continue;
                }
                if let Type::Reference(r) = &*pt.ty {
                    signature_ok = false;
                    errors.spanned(r, "task parameters must be owned types (they are decoded from JSON): use `String` for `&str`, `Vec<T>` for `&[T]`");
                }
                if let Type::ImplTrait(t) = &*pt.ty {
                    signature_ok = false;
                    errors.spanned(t, "task parameters must be concrete types (they are decoded from JSON)");
                }
                let name = match &*pt.pat {
                    syn::Pat::Ident(id) => id.ident.to_string(),
                    _ => format!("arg{i}"),
                };
                params.push(Param::Arg { name, ty: &pt.ty });
            }
        }
    }

    let is_async = sig.asyncness.is_some();
    // A stream task: `impl Stream<Item = T>` (async) or `impl Iterator<Item = T>` (blocking pool).
    let stream = stream_item(&sig.output);
    match (&stream, &options.map_span) {
        (None, Some(at)) => errors.at(
            *at,
            "`map` is for stream tasks, whose function returns `impl Stream<Item = T>` or `impl Iterator<Item = T>`; this task returns one value",
        ),
        (Some((_, None, bound)), _) => {
            signature_ok = false;
            errors.spanned(bound, "name the item type: `impl Stream<Item = T>` or `impl Iterator<Item = T>`");
        }
        (Some((StreamKind::Blocking, _, bound)), _) if is_async => {
            signature_ok = false;
            errors.spanned(
                bound,
                "an `async fn` task cannot return an iterator: return `impl Stream<Item = T>`, or make it a sync `fn` (its iterator runs on the blocking pool)",
            );
        }
        _ => {}
    }
    let task_name = options.name.clone().unwrap_or_else(|| fn_name.to_string());
    let description = options.description.clone().or_else(|| first_doc_line(&func.attrs));

    let arg_types: Vec<&Type> = params
        .iter()
        .filter_map(|p| match p {
            Param::Arg { ty, .. } => Some(*ty),
            _ => None,
        })
        .collect();
    let arg_names: Vec<&str> = params
        .iter()
        .filter_map(|p| match p {
            Param::Arg { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let arg_idents: Vec<_> = (0..arg_types.len()).map(|i| format_ident!("__qtasks_arg{}", i)).collect();
    let mut next_arg = 0usize;
    let call_args: Vec<TokenStream> = params
        .iter()
        .map(|p| match p {
            Param::Context { by_ref: true } => quote!(&__qtasks_ctx),
            Param::Context { by_ref: false } => quote!(__qtasks_ctx),
            Param::Dep { index, .. } => {
                let id = format_ident!("__qtasks_dep{}", index);
                quote!(#id)
            }
            Param::Arg { .. } => {
                let id = &arg_idents[next_arg];
                next_arg += 1;
                quote!(#id)
            }
        })
        .collect();

    let (output_ty, fallible) = match &sig.output {
        ReturnType::Default => (quote!(()), false),
        // `Result<T, …>`: name `T` directly, so a bad error type is reported
        // at the call only, not again in the impl's types.
        ReturnType::Type(_, ty) if is_result(ty) => match first_type_arg(ty) {
            Some(ok) => (quote!(#ok), true),
            None => (quote!(<#ty as ::qtasks::__private::IntoTaskResult>::Ok), true),
        },
        ReturnType::Type(_, ty) => (quote!(#ty), false),
    };
    let span = sig.span();
    let call = quote_spanned!(span=> #fn_name(#(#call_args),*));
    let convert = |value: TokenStream| {
        if fallible {
            quote_spanned!(span=> ::qtasks::__private::IntoTaskResult::into_task_result(#value))
        } else {
            quote_spanned!(span=> ::qtasks::__private::ok(#value))
        }
    };
    let run_body = if is_async {
        let done = convert(quote!(#call.await));
        quote_spanned!(span=> async move { #done })
    } else {
        let done = convert(call.clone());
        quote_spanned!(span=> ::qtasks::__private::run_blocking(move || #done))
    };

    let (output_ty, run_body) = match &stream {
        Some((kind, Some(item), _)) => stream_run(*kind, item, &options, &call, is_async, span),
        _ => (output_ty, run_body),
    };
    let is_stream = stream.is_some();

    let priority = match options.priority {
        Some(p) => quote!(::core::option::Option::Some(#p)),
        None => quote!(::core::option::Option::None),
    };
    let retry = options.retry.unwrap_or(0);
    let retry_on_names: Vec<String> =
        options.retry_on.iter().map(|p| quote!(#p).to_string().replace(' ', "")).collect();
    let retry_on_fn = if options.retry_on.is_empty() {
        quote!()
    } else {
        let types = &options.retry_on;
        quote! {
            fn retry_on(error: &::qtasks::__private::TaskError) -> bool {
                false #(|| error.is::<#types>())*
            }
        }
    };
    let backoff = match options.backoff_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let max_time = match options.max_time_ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let tags = &options.tags;
    let description = match &description {
        Some(d) => quote!(::core::option::Option::Some(#d)),
        None => quote!(::core::option::Option::None),
    };
    let blocking = match &stream {
        Some((kind, ..)) => *kind == StreamKind::Blocking,
        None => !is_async,
    };
    let struct_doc = format!("The task `{task_name}`, defined by the function [`{fn_name}`](fn@{fn_name}).");
    let errors = errors.to_compile_errors();
    // `Dep<T>`/`State<T>` parameters are resolved from the context before the body runs.
    let mut dep_infos = Vec::new();
    let mut resolve = Vec::new();
    for p in &params {
        if let Param::Dep { kind, ty, index } = p {
            let id = format_ident!("__qtasks_dep{}", index);
            let written = quote!(#ty).to_string().replace(' ', "");
            let (info, get) = match kind {
                DepKind::Dep => (
                    quote!(::qtasks::__private::DependencyInfo::dep::<#ty>(#written)),
                    quote!(::qtasks::__private::resolve_dep::<#ty>(&__qtasks_ctx).await),
                ),
                DepKind::State => (
                    quote!(::qtasks::__private::DependencyInfo::state::<#ty>(#written)),
                    quote!(::qtasks::__private::resolve_state::<#ty>(&__qtasks_ctx)),
                ),
            };
            dep_infos.push(info);
            resolve.push(quote! {
                let #id = match #get {
                    ::core::result::Result::Ok(v) => v,
                    ::core::result::Result::Err(e) => return ::core::result::Result::Err(e),
                };
            });
        }
    }
    let run_body = if resolve.is_empty() {
        run_body
    } else {
        quote_spanned!(span=> async move {
            #(#resolve)*
            (#run_body).await
        })
    };
    let ctx_unused = if params.iter().any(|p| matches!(p, Param::Context { .. })) {
        quote!()
    } else {
        quote!(let _ = __qtasks_ctx;)
    };

    let task_type = quote! {
        #func

        #[doc = #struct_doc]
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #fn_name {}
    };

    if !signature_ok {
        // One mistake, one error: keep the item and a stand-in impl.
        return quote! {
            #task_type
            impl ::qtasks::__private::Task for #fn_name {
                const INFO: ::qtasks::__private::TaskInfo = ::qtasks::__private::TaskInfo::new(#task_name);
                type Args = ();
                type Output = ();
                async fn run(_: ::qtasks::__private::TaskContext, _: ()) -> ::core::result::Result<(), ::qtasks::__private::TaskError> {
                    ::core::unreachable!()
                }
            }
            #errors
        };
    }

    quote! {
        #task_type

        impl ::qtasks::__private::Task for #fn_name {
            const INFO: ::qtasks::__private::TaskInfo = ::qtasks::__private::TaskInfo {
                name: #task_name,
                priority: #priority,
                max_time: #max_time,
                tags: &[#(#tags),*],
                description: #description,
                blocking: #blocking,
                params: &[#(#arg_names),*],
                deps: &[#(#dep_infos),*],
                retry: #retry,
                retry_on: &[#(#retry_on_names),*],
                retry_backoff: #backoff,
                stream: #is_stream,
            };
            type Args = (#(#arg_types,)*);
            type Output = #output_ty;

            #retry_on_fn

            fn decode_args(args: &::qtasks::__private::serde_json::Value) -> ::core::result::Result<Self::Args, ::qtasks::__private::serde_json::Error> {
                ::qtasks::__private::decode_args(args, &[#(#arg_names),*])
            }

            #[allow(clippy::unused_unit)]
            fn run(
                __qtasks_ctx: ::qtasks::__private::TaskContext,
                args: Self::Args,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<Self::Output, ::qtasks::__private::TaskError>> + ::core::marker::Send {
                #ctx_unused
                let (#(#arg_idents,)*) = args;
                #run_body
            }
        }

        #errors
    }
}

/// `Dep<T>` or `State<T>` (by the last path segment, with one type argument): the kind and `T`.
fn dep_param(ty: &Type) -> Option<(DepKind, &Type)> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    let kind = match last.ident.to_string().as_str() {
        "Dep" => DepKind::Dep,
        "State" => DepKind::State,
        _ => return None,
    };
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match (args.args.len(), args.args.first()) {
        (1, Some(syn::GenericArgument::Type(t))) => Some((kind, t)),
        _ => None,
    }
}

/// A `Dep<T>`/`State<T>` inside another type (`Option<Dep<T>>`, a tuple…).
fn nested_dep<'a>(ty: &'a Type) -> Option<&'a Type> {
    let find = |t: &'a Type| if dep_param(t).is_some() { Some(t) } else { nested_dep(t) };
    match ty {
        Type::Path(p) => p.path.segments.iter().find_map(|s| match &s.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
                syn::GenericArgument::Type(t) => find(t),
                _ => None,
            }),
            _ => None,
        }),
        Type::Tuple(t) => t.elems.iter().find_map(find),
        Type::Array(a) => find(&a.elem),
        Type::Slice(a) => find(&a.elem),
        Type::Reference(r) => nested_dep(&r.elem),
        Type::Paren(p) => nested_dep(&p.elem),
        Type::Group(g) => nested_dep(&g.elem),
        _ => None,
    }
}

fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        _ => false,
    }
}

fn first_type_arg(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let syn::PathArguments::AngleBracketed(args) = &p.path.segments.last()?.arguments else { return None };
    args.args.iter().find_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

fn first_doc_line(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| {
        if !a.path().is_ident("doc") {
            return None;
        }
        match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => {
                    let line = s.value().trim().to_owned();
                    (!line.is_empty()).then_some(line)
                }
                _ => None,
            },
            _ => None,
        }
    })
}
