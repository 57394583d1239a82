//! Reading the input by its shape: an attribute's options, items whose
//! body does not parse, and types as far as a macro can. It sees tokens, not
//! types, so `Result`, `Option` or `TaskContext` are recognised by the last
//! segment of their path (an alias is not seen through).

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use syn::punctuated::Punctuated;
use syn::{GenericArgument, Meta, PathArguments, PathSegment, Token, Type};

/// The comma-separated options of an attribute (`name = "…", blocking`);
/// none, with the error, if they do not parse.
pub(crate) fn options(args: TokenStream, errors: &mut crate::diag::Errors) -> Punctuated<Meta, Token![,]> {
    syn::parse::Parser::parse2(Punctuated::parse_terminated, args).unwrap_or_else(|e| {
        errors.push(e);
        Punctuated::new()
    })
}

/// The last segment of a path type (`std::result::Result<T, E>` →
/// `Result<T, E>`), through the parentheses and invisible groups a
/// `macro_rules!` may add.
pub(crate) fn path_tail(ty: &Type) -> Option<&PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Group(g) => path_tail(&g.elem),
        Type::Paren(p) => path_tail(&p.elem),
        _ => None,
    }
}

/// Like [`path_tail`], also through references (`&TaskContext`).
pub(crate) fn path_tail_deref(ty: &Type) -> Option<&PathSegment> {
    match ty {
        Type::Reference(r) => path_tail_deref(&r.elem),
        Type::Group(g) => path_tail_deref(&g.elem),
        Type::Paren(p) => path_tail_deref(&p.elem),
        _ => path_tail(ty),
    }
}

/// The last segment of a path type if its identifier is `name`.
pub(crate) fn named<'a>(ty: &'a Type, name: &str) -> Option<&'a PathSegment> {
    path_tail(ty).filter(|s| s.ident == name)
}

/// The type arguments written in a segment (`Result<T, E>` → `T`, `E`).
pub(crate) fn type_args(segment: &PathSegment) -> impl Iterator<Item = &Type> {
    let args = match &segment.arguments {
        PathArguments::AngleBracketed(args) => Some(args.args.iter()),
        _ => None,
    };
    args.into_iter().flatten().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

/// `()`, through parentheses and groups.
pub(crate) fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Group(g) => is_unit(&g.elem),
        Type::Paren(p) => is_unit(&p.elem),
        _ => false,
    }
}

/// Parses a function or an impl block whose body does not parse (the user
/// is typing in it): the item with that body kept as raw tokens, so the
/// macro still reads the signature and emits its code, while rustc reports
/// the body's own syntax error when it reads the item back.
pub(crate) fn parse_with_raw_body(item: &TokenStream) -> Option<syn::Item> {
    let mut tokens: Vec<TokenTree> = item.clone().into_iter().collect();
    let last = tokens.pop()?;
    let TokenTree::Group(body) = &last else { return None };
    if body.delimiter() != Delimiter::Brace {
        return None;
    }
    tokens.push(TokenTree::Group(Group::new(Delimiter::Brace, TokenStream::new())));
    let brace_token = syn::token::Brace(body.delim_span());
    match syn::parse2::<syn::Item>(tokens.into_iter().collect()).ok()? {
        syn::Item::Fn(mut func) => {
            // The body goes back as a block inside the new braces, its own
            // tokens untouched, so rustc reports its error where it reported
            // it on the item as written (and shows it once).
            let stmts = vec![syn::Stmt::Item(syn::Item::Verbatim(TokenTree::Group(body.clone()).into()))];
            func.block = Box::new(syn::Block { brace_token, stmts });
            Some(syn::Item::Fn(func))
        }
        syn::Item::Impl(mut block) => {
            block.brace_token = brace_token;
            block.items = vec![syn::ImplItem::Verbatim(body.stream())];
            Some(syn::Item::Impl(block))
        }
        _ => None,
    }
}

/// `send_email` → `SendEmail`: the name of the type `#[task]` and
/// `#[plugin]` generate for a function.
pub(crate) fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        })
        .collect()
}
