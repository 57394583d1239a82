//! The typed model of a `#[task]` function: its parameters sorted by role
//! and what it returns. Reading the input never fails here; shapes a task
//! cannot have are kept as they are for `valid.rs` to report.

use super::attr::TaskOptions;
use crate::syntax::{named, path_tail, path_tail_deref, type_args};
use syn::{FnArg, ItemFn, ReturnType, Type};

/// A function under `#[task]`.
pub(crate) struct Task<'a> {
    pub func: &'a ItemFn,
    pub options: TaskOptions,
    pub params: Vec<Param<'a>>,
    pub output: Output<'a>,
}

/// One parameter of a task function.
pub(crate) enum Param<'a> {
    /// The task context, by value or by reference.
    Context { by_ref: bool },
    /// A JSON-decoded argument, named after its pattern (`arg{i}` for a
    /// pattern that is not a plain name, `i` its position).
    Arg { name: String, ty: &'a Type },
    /// A `Dep<T>` or a `State<T>` the worker provides (`ty` is `T`), the
    /// `index`-th of the task.
    Dep { kind: DepKind, ty: &'a Type, index: usize },
    /// `self`: a task is a free function.
    Receiver(&'a syn::Receiver),
    /// `&Dep<T>` or `&State<T>`, which must be taken by value.
    DepByRef { kind: DepKind, ty: &'a syn::TypeReference },
    /// A `Dep<T>`/`State<T>` inside another type (`Option<Dep<T>>`).
    NestedDep(&'a Type),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum DepKind {
    Dep,
    State,
}

impl DepKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Dep => "Dep",
            Self::State => "State",
        }
    }
}

/// What a task function returns.
pub(crate) enum Output<'a> {
    /// Nothing: the result is `()`.
    Unit,
    /// `Result<T, E>`: `ok` is `T` when written out.
    Result { ty: &'a Type, ok: Option<&'a Type> },
    /// Any other type: the result itself.
    Value(&'a Type),
    /// `impl Stream<Item = T>` or `impl Iterator<Item = T>`: the result is
    /// the list of its items (`item` is `T` when written out).
    Stream { kind: StreamKind, item: Option<&'a Type>, bound: &'a syn::TraitBound },
}

/// How a stream task produces its items.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// `impl Stream<Item = T>`, polled on the async runtime.
    Async,
    /// `impl Iterator<Item = T>`, iterated on the blocking pool.
    Blocking,
}

impl<'a> Task<'a> {
    pub(crate) fn from_syn(func: &'a ItemFn, options: TaskOptions) -> Self {
        let mut params = Vec::new();
        let mut deps = 0;
        for (i, input) in func.sig.inputs.iter().enumerate() {
            let param = match input {
                FnArg::Receiver(r) => Param::Receiver(r),
                FnArg::Typed(pt) => Param::from_syn(i, &pt.pat, &pt.ty, &mut deps),
            };
            params.push(param);
        }
        Self { func, options, params, output: Output::from_syn(&func.sig.output) }
    }

    pub(crate) fn is_async(&self) -> bool {
        self.func.sig.asyncness.is_some()
    }

    /// The generated task type: the function's name in CamelCase, as for
    /// plugins (`fn send_email` → `SendEmail`).
    pub(crate) fn type_ident(&self) -> syn::Ident {
        let name = &self.func.sig.ident;
        syn::Ident::new(&crate::syntax::camel_case(&name.to_string()), name.span())
    }

    /// The task's name: the `name` option, else the function's.
    pub(crate) fn name(&self) -> String {
        self.options.name.clone().unwrap_or_else(|| self.func.sig.ident.to_string())
    }

    /// The `description` option, else the first line of the doc comment.
    pub(crate) fn description(&self) -> Option<String> {
        self.options.description.clone().or_else(|| first_doc_line(&self.func.attrs))
    }

    /// The JSON arguments, in order.
    pub(crate) fn args(&self) -> impl Iterator<Item = (&str, &'a Type)> {
        self.params.iter().filter_map(|p| match p {
            Param::Arg { name, ty } => Some((name.as_str(), *ty)),
            _ => None,
        })
    }
}

impl<'a> Param<'a> {
    fn from_syn(i: usize, pat: &syn::Pat, ty: &'a Type, deps: &mut usize) -> Self {
        if path_tail_deref(ty).is_some_and(|s| s.ident == "TaskContext") {
            return Self::Context { by_ref: matches!(ty, Type::Reference(_)) };
        }
        if let Some((kind, ty)) = dep_param(ty) {
            *deps += 1;
            return Self::Dep { kind, ty, index: *deps - 1 };
        }
        if let Type::Reference(r) = ty
            && let Some((kind, _)) = dep_param(&r.elem)
        {
            return Self::DepByRef { kind, ty: r };
        }
        if let Some(inner) = nested_dep(ty) {
            return Self::NestedDep(inner);
        }
        let name = match pat {
            syn::Pat::Ident(id) => id.ident.to_string(),
            _ => format!("arg{i}"),
        };
        Self::Arg { name, ty }
    }
}

impl<'a> Output<'a> {
    fn from_syn(output: &'a ReturnType) -> Self {
        let ReturnType::Type(_, ty) = output else { return Self::Unit };
        if let Some((kind, item, bound)) = stream_item(ty) {
            return Self::Stream { kind, item, bound };
        }
        match named(ty, "Result") {
            Some(result) => Self::Result { ty, ok: type_args(result).next() },
            None => Self::Value(ty),
        }
    }
}

/// `Dep<T>` or `State<T>` (with exactly one type argument): the kind and `T`.
fn dep_param(ty: &Type) -> Option<(DepKind, &Type)> {
    let last = path_tail(ty)?;
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
fn nested_dep(ty: &Type) -> Option<&Type> {
    let find = |t| if dep_param(t).is_some() { Some(t) } else { nested_dep(t) };
    match ty {
        Type::Path(p) => p.path.segments.iter().find_map(|s| type_args(s).find_map(find)),
        Type::Tuple(t) => t.elems.iter().find_map(find),
        Type::Array(a) => find(&a.elem),
        Type::Slice(a) => find(&a.elem),
        Type::Reference(r) => nested_dep(&r.elem),
        Type::Paren(p) => nested_dep(&p.elem),
        Type::Group(g) => nested_dep(&g.elem),
        _ => None,
    }
}

/// `impl Stream<Item = T>` / `impl Iterator<Item = T>` (by the bound's last
/// path segment): the kind, the item type if named, the bound.
fn stream_item(ty: &Type) -> Option<(StreamKind, Option<&Type>, &syn::TraitBound)> {
    let Type::ImplTrait(imp) = ty else { return None };
    imp.bounds.iter().find_map(|b| {
        let syn::TypeParamBound::Trait(bound) = b else { return None };
        let last = bound.path.segments.last()?;
        let kind = match last.ident.to_string().as_str() {
            "Stream" => StreamKind::Async,
            "Iterator" => StreamKind::Blocking,
            _ => return None,
        };
        let item = match &last.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
                syn::GenericArgument::AssocType(at) if at.ident == "Item" => Some(&at.ty),
                _ => None,
            }),
            _ => None,
        };
        Some((kind, item, bound))
    })
}

fn first_doc_line(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| {
        if !a.path().is_ident("doc") {
            return None;
        }
        match &a.meta {
            syn::Meta::NameValue(syn::MetaNameValue {
                value: syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }),
                ..
            }) => {
                let line = s.value().trim().to_owned();
                (!line.is_empty()).then_some(line)
            }
            _ => None,
        }
    })
}
