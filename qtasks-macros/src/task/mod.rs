//! `#[task]`: a pipeline of one file per stage.
//!
//! `attr` parses the options → `ast` reads the function into a typed model →
//! `valid` checks both, each mistake an error at its token → `expand`
//! generates the `Task` impl, or `fallback` emits the item and a stand-in
//! when the signature cannot be expanded.

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;

use crate::diag::Errors;
use crate::syntax::parse_with_raw_body;
use proc_macro2::TokenStream;
use valid::Verdict;

pub(crate) fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = attr::parse(args, &mut errors);
    let func = match syn::parse2::<syn::ItemFn>(item.clone()) {
        Ok(f) => f,
        Err(e) => match parse_with_raw_body(&item) {
            Some(syn::Item::Fn(f)) => f,
            _ => return fallback::not_a_function(item, &e),
        },
    };
    let task = ast::Task::from_syn(&func, options);
    match valid::check(&task, &mut errors) {
        Verdict::Expand => {
            let expanded = expand::task(&task);
            // Option mistakes leave their option at its default: the impl is
            // whole, and the errors come with it.
            let errors = errors.to_compile_errors();
            quote::quote! { #expanded #errors }
        }
        Verdict::StandIn => fallback::stand_in(&task, &errors),
    }
}
