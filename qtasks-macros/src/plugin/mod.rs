//! `#[plugin]`: on a function (one handler) or on an impl block (many).

mod attr;
mod expand;

use crate::diag::Errors;
use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn plugin(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = attr::parse(args, &mut errors);
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(func)) => expand::expand_fn(func, options, errors),
        Ok(syn::Item::Impl(block)) => expand::expand_impl(block, options, errors),
        _ => {
            let e = syn::Error::new_spanned(
                &item,
                "#[plugin] goes on a function (with `on = \"trigger_name\"`) or on an `impl` block whose methods are named after triggers",
            )
            .to_compile_error();
            quote! { #item #e }
        }
    }
}
