//! Generates the task type and its `Task` impl from a checked function.

use super::ast::{DepKind, Output, Param, StreamKind, Task};
use crate::syntax::{named, type_args};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Type;
use syn::spanned::Spanned;

/// The user's function, the type named after it in CamelCase, and its
/// `call` constructor. `typed` says whether the `Task` impl is the real one
/// (the call then carries the arguments; a stand-in's call does not).
pub(crate) fn item_and_type(task: &Task, typed: bool) -> TokenStream {
    let func = task.func;
    let (vis, fn_name) = (&func.vis, &func.sig.ident);
    let ty = task.type_ident();
    let doc = format!(
        "The task `{}`, defined by the function [`{fn_name}`](fn@{fn_name}): register it with \
         `.task::<{ty}>()`, enqueue it with `app.enqueue({ty}::call(..))`.",
        task.name()
    );
    let (names, types): (Vec<_>, Vec<_>) = task.args().map(|(name, ty)| (format_ident!("{}", name), ty)).unzip();
    let call_doc = format!(
        "A call of the task `{}` with these arguments, to enqueue (`app.enqueue({ty}::call(..))`) or to use as \
         a step of a chain or a member of a group; its handle's result has the function's output type.",
        task.name()
    );
    let signature = quote!(::qtasks::__private::Signature<<Self as ::qtasks::__private::Task>::Output>);
    let body = if typed {
        quote!(::qtasks::__private::Signature::of::<Self>((#(#names,)*)))
    } else {
        let name = task.name();
        quote!({
            let _ = (#(#names,)*);
            ::qtasks::__private::Signature::by_name(#name, ()).typed()
        })
    };
    quote! {
        #func

        #[doc = #doc]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #ty {}

        impl #ty {
            #[doc = #call_doc]
            #[allow(clippy::too_many_arguments, clippy::unused_unit)]
            #vis fn call(#(#names: #types),*) -> #signature {
                #body
            }
        }
    }
}

pub(crate) fn task(task: &Task) -> TokenStream {
    let sig = &task.func.sig;
    let fn_name = &sig.ident;
    let options = &task.options;
    let span = sig.span();

    let (arg_names, arg_types): (Vec<&str>, Vec<&Type>) = task.args().unzip();
    let arg_idents: Vec<_> = (0..arg_types.len()).map(|i| format_ident!("__qtasks_arg{}", i)).collect();
    let mut next_arg = arg_idents.iter();
    let call_args = task.params.iter().map(|p| match p {
        Param::Context { by_ref: true } => quote!(&__qtasks_ctx),
        Param::Context { by_ref: false } => quote!(__qtasks_ctx),
        Param::Dep { index, .. } => {
            let id = dep_ident(*index);
            quote!(#id)
        }
        Param::Arg { .. } => {
            let id = next_arg.next();
            quote!(#id)
        }
        Param::Receiver(_) | Param::DepByRef { .. } | Param::NestedDep(_) => {
            unreachable!("valid.rs sends such a task to the fallback")
        }
    });
    let call = quote_spanned!(span=> #fn_name(#(#call_args),*));
    let (output_ty, run_body) = match &task.output {
        Output::Stream { kind, item: Some(item), .. } => stream_run(*kind, item, task, &call, span),
        Output::Stream { item: None, .. } => unreachable!("valid.rs sends such a task to the fallback"),
        output => plain_run(output, task.is_async(), &call, span),
    };

    let priority = option(options.priority.map(|p| quote!(#p)));
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
    let millis = |ms: Option<u64>| option(ms.map(|ms| quote!(::core::time::Duration::from_millis(#ms))));
    let (backoff, max_time) = (millis(options.backoff_ms), millis(options.max_time_ms));
    let queue = options.queue.as_deref().unwrap_or("default");
    let concurrency = option(options.concurrency.map(|n| quote!(#n)));
    let rate = option(options.rate.map(|(count, per)| {
        quote!(::qtasks::__private::Rate { count: #count, per: ::core::time::Duration::from_secs(#per) })
    }));
    let per_key = option(match (&options.concurrency_key, options.key_concurrency) {
        (Some(_), Some(n)) => Some(quote!(#n)),
        (Some(_), None) => Some(quote!(1u32)),
        (None, _) => None,
    });
    let concurrency_key = option(options.concurrency_key.as_ref().map(|p| {
        let name = p.to_string();
        quote!(#name)
    }));
    let unique = if options.unique || !options.unique_key.is_empty() {
        let params: Vec<String> = options.unique_key.iter().map(ToString::to_string).collect();
        let window = options.unique_for_ms.unwrap_or(0);
        quote!(::core::option::Option::Some(::qtasks::__private::UniqueInfo {
            params: &[#(#params),*],
            window: ::core::time::Duration::from_millis(#window),
        }))
    } else {
        quote!(::core::option::Option::None)
    };
    let tags = &options.tags;
    let task_name = task.name();
    let description = option(task.description().map(|d| quote!(#d)));
    let blocking = match &task.output {
        Output::Stream { kind, .. } => *kind == StreamKind::Blocking,
        _ => !task.is_async(),
    };
    let is_stream = matches!(task.output, Output::Stream { .. });

    // `Dep<T>`/`State<T>` parameters are resolved from the context before the body runs.
    let mut dep_infos = Vec::new();
    let mut resolve = Vec::new();
    for p in &task.params {
        let Param::Dep { kind, ty, index } = p else { continue };
        let id = dep_ident(*index);
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
    let run_body = if resolve.is_empty() {
        run_body
    } else {
        quote_spanned!(span=> async move {
            #(#resolve)*
            (#run_body).await
        })
    };
    let ctx_unused = if task.params.iter().any(|p| matches!(p, Param::Context { .. })) {
        quote!()
    } else {
        quote!(let _ = __qtasks_ctx;)
    };

    let item_and_type = item_and_type(task, true);
    let ty = task.type_ident();
    quote! {
        #item_and_type

        impl ::qtasks::__private::Task for #ty {
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
                queue: #queue,
                limit: ::qtasks::__private::Limit { concurrency: #concurrency, rate: #rate, per_key: #per_key },
                concurrency_key: #concurrency_key,
                unique: #unique,
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
    }
}

fn dep_ident(index: usize) -> syn::Ident {
    format_ident!("__qtasks_dep{}", index)
}

/// `::core::option::Option::Some(value)` or `None`.
fn option(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

/// `Output` and the run body of a task that returns one value.
fn plain_run(output: &Output, is_async: bool, call: &TokenStream, span: Span) -> (TokenStream, TokenStream) {
    let (output_ty, fallible) = match output {
        Output::Unit => (quote!(()), false),
        // `Result<T, …>`: name `T` directly, so a bad error type is reported
        // at the call only, not again in the impl's types.
        Output::Result { ok: Some(ok), .. } => (quote!(#ok), true),
        Output::Result { ty, ok: None } => (quote!(<#ty as ::qtasks::__private::IntoTaskResult>::Ok), true),
        Output::Value(ty) => (quote!(#ty), false),
        Output::Stream { .. } => unreachable!("stream tasks run through `stream_run`"),
    };
    let convert = |value: TokenStream| {
        if fallible {
            quote_spanned!(span=> ::qtasks::__private::IntoTaskResult::into_task_result(#value))
        } else {
            quote_spanned!(span=> ::qtasks::__private::ok(#value))
        }
    };
    let body = if is_async {
        let done = convert(quote!(#call.await));
        quote_spanned!(span=> async move { #done })
    } else {
        let done = convert(call.clone());
        quote_spanned!(span=> ::qtasks::__private::run_blocking(move || #done))
    };
    (output_ty, body)
}

/// `Output` and the run body of a stream task (QTasks's generator tasks,
/// §4.7): collect the items (each checked if it is a `Result`, then passed
/// through `map`, QTasks's `generate_handler`) into a `Vec`.
fn stream_run(
    kind: StreamKind,
    item: &Type,
    task: &Task,
    call: &TokenStream,
    span: Span,
) -> (TokenStream, TokenStream) {
    let options = &task.options;
    let (ok_ty, value) = match named(item, "Result") {
        Some(result) => {
            let ok = match type_args(result).next() {
                Some(ok) => quote!(#ok),
                None => quote!(<#item as ::qtasks::__private::IntoTaskResult>::Ok),
            };
            (ok, quote_spanned!(item.span()=> ::qtasks::__private::IntoTaskResult::into_task_result(__qtasks_item)?))
        }
        None => (quote!(#item), quote!(__qtasks_item)),
    };
    // `map_item` without `map` is reported by valid.rs and ignored here.
    let out_item = match (&options.map, &options.map_item) {
        (Some(_), Some(ty)) => quote!(#ty),
        _ => ok_ty,
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
            let make = if task.is_async() { quote!(#call.await) } else { call.clone() };
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
