//! `#[task]`: parse the options, check the function, generate the `Task` impl.

mod attr;
mod expand;
mod stream;

use crate::diag::Errors;
use proc_macro2::TokenStream;
use quote::quote;

pub(crate) fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = attr::parse(args, &mut errors);
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            // Not a function: give the item back untouched with the error.
            let e = syn::Error::new(e.span(), "#[task] goes on a `fn` or `async fn`").to_compile_error();
            return quote! { #item #e };
        }
    };
    expand::expand(&func, options, errors)
}
