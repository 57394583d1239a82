//! `#[plugin]`: a pipeline of one file per stage.
//!
//! `attr` parses the options → `ast` reads the item (a handler function or
//! an impl block) into a typed model → `valid` checks it against the
//! trigger table, each mistake an error at its token → `expand` generates
//! `impl Plugin`, or, after any error, `fallback` emits the item, a plugin
//! impl without handlers and the errors.

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;

use crate::diag::Errors;
use ast::Input;
use proc_macro2::TokenStream;

pub(crate) fn plugin(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = attr::parse(args, &mut errors);
    match Input::from_syn(item, options) {
        Input::Fn(plugin) => {
            valid::check_fn(&plugin, &mut errors);
            if errors.is_empty() { expand::plugin_fn(&plugin) } else { fallback::plugin_fn(&plugin, &errors) }
        }
        Input::Impl(plugin) => {
            valid::check_impl(&plugin, &mut errors);
            if errors.is_empty() { expand::plugin_impl(&plugin) } else { fallback::plugin_impl(&plugin, &errors) }
        }
        Input::Method(func, options) => {
            // The options' own mistakes would be a second error for one misplaced attribute.
            let mut errors = Errors::default();
            valid::check_method_outside_impl(&func, &options, &mut errors);
            fallback::method(&func, &errors)
        }
        Input::Other(item) => fallback::not_a_plugin(item, &mut errors),
    }
}
