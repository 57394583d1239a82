//! What `#[task]` emits when the input is wrong: the user's item as written
//! (so the function stays usable and IDEs keep working) and the errors, plus
//! whatever keeps the rest of the crate from reporting errors of its own.

use super::ast::Task;
use super::expand::item_and_type;
use crate::diag::Errors;
use proc_macro2::TokenStream;
use quote::quote;

/// `#[task]` on something that is not a function: the item, untouched.
pub(crate) fn not_a_function(item: TokenStream, error: &syn::Error) -> TokenStream {
    let e = syn::Error::new(error.span(), "#[task] goes on a `fn` or `async fn`").to_compile_error();
    quote! { #item #e }
}

/// A task whose signature cannot be expanded: the function, its type and a
/// stand-in `Task` impl, so registering and enqueueing it elsewhere in the
/// crate raises no error of its own.
pub(crate) fn stand_in(task: &Task, errors: &Errors) -> TokenStream {
    let item_and_type = item_and_type(task, false);
    let ty = task.type_ident();
    let task_name = task.name();
    let errors = errors.to_compile_errors();
    quote! {
        #item_and_type
        impl ::qtasks::__private::Task for #ty {
            const INFO: ::qtasks::__private::TaskInfo = ::qtasks::__private::TaskInfo::new(#task_name);
            type Args = ();
            type Output = ();
            async fn run(_: ::qtasks::__private::TaskContext, _: ()) -> ::core::result::Result<(), ::qtasks::__private::TaskError> {
                ::core::unreachable!()
            }
        }
        #errors
    }
}
