//! What `#[plugin]` emits when the input is wrong: the user's item as
//! written (so it stays usable and IDEs keep working) and the errors, plus a
//! plugin impl without handlers wherever one is expected, so adding the
//! plugin to an app raises no error of its own.

use super::ast::{PluginFn, PluginImpl};
use super::expand::{fn_item_and_type, impl_plugin_for};
use crate::diag::Errors;
use proc_macro2::TokenStream;
use quote::quote;

/// `#[plugin]` on something that is neither a function nor an impl block.
pub(crate) fn not_a_plugin(item: TokenStream, errors: &mut Errors) -> TokenStream {
    errors.spanned(
        &item,
        "#[plugin] goes on a function (with `on = \"trigger_name\"`) or on an `impl` block whose methods are named after triggers",
    );
    let errors = errors.to_compile_errors();
    quote! { #item #errors }
}

/// `#[plugin]` on a method: the method alone, with the error that says
/// where the attribute goes (a plugin type here would be a struct inside an
/// impl block, an error of its own).
pub(crate) fn method(func: &syn::ItemFn, errors: &Errors) -> TokenStream {
    let errors = errors.to_compile_errors();
    quote! { #func #errors }
}

/// A handler function with a mistake: the function and its plugin type.
pub(crate) fn plugin_fn(plugin: &PluginFn, errors: &Errors) -> TokenStream {
    let item_and_type = fn_item_and_type(plugin);
    let struct_name = plugin.type_ident();
    let errors = errors.to_compile_errors();
    quote! {
        #item_and_type
        impl ::qtasks::__private::Plugin for #struct_name {
            type Tasks = ();
        }
        #errors
    }
}

/// An impl block with a mistake: the block, and a plugin impl for its type
/// unless the block is itself a trait impl (it may be `impl Plugin`).
pub(crate) fn plugin_impl(plugin: &PluginImpl, errors: &Errors) -> TokenStream {
    let block = &plugin.block;
    let errors = errors.to_compile_errors();
    if block.trait_.is_some() {
        return quote! { #block #errors };
    }
    let plugin_impl = impl_plugin_for(
        block,
        quote!(
            type Tasks = ();
        ),
    );
    quote! { #block #plugin_impl #errors }
}
