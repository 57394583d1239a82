//! What both macros use to report mistakes: an accumulator of errors
//! (serde's `Ctxt`) and the "did you mean" suggestion.

use proc_macro2::{Span, TokenStream};
use std::fmt::Display;

/// An accumulator of `syn::Error`s, so one macro call reports all its
/// mistakes at once (serde's `Ctxt`, without the drop bomb: the pipeline
/// always reads it before it emits anything).
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(e) => e.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// An error on the tokens of `tokens` (first to last).
    pub(crate) fn spanned(&mut self, tokens: impl quote::ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// An error at one span.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Adds the errors of `other`, after these.
    pub(crate) fn append(&mut self, other: Errors) {
        if let Some(e) = other.0 {
            self.push(e);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The errors as `compile_error!` invocations (nothing if there are none).
    pub(crate) fn to_compile_errors(&self) -> TokenStream {
        self.0.as_ref().map(syn::Error::to_compile_error).unwrap_or_default()
    }
}

/// The candidate closest to `name`, if it is close enough to be what the
/// user meant.
pub(crate) fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `; did you mean `x`?` for the closest candidate, or nothing.
pub(crate) fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates).map(|c| format!("; did you mean `{c}`?")).unwrap_or_default()
}

/// The error for an option a macro does not know, with the closest one and
/// the list.
pub(crate) fn unknown_option(what: &str, key: &str, options: &[&str]) -> String {
    format!(
        "unknown {what} option `{key}`{}\nthe options are: {}",
        did_you_mean(key, options.iter().copied()),
        options.join(", ")
    )
}
