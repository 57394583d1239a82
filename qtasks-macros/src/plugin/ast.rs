//! The typed model of a `#[plugin]` input: a handler function, or an impl
//! block whose methods are handlers and lifecycle methods. Reading the input
//! never fails here; what does not fit is kept for `valid.rs` to report.

use super::attr::PluginOptions;
use crate::syntax::{is_unit, parse_with_raw_body, path_tail, type_args};
use crate::triggers::{self, TriggerDef};
use proc_macro2::{Span, TokenStream};
use syn::{FnArg, ImplItem, ItemFn, ItemImpl, ReturnType, Signature, Type};

/// What `#[plugin]` was put on.
pub(crate) enum Input {
    /// A function: `#[plugin(on = "…")] fn …`.
    Fn(PluginFn),
    /// An impl block: `#[plugin] impl Type { … }`.
    Impl(PluginImpl),
    /// A method (it takes `self`) of an impl block without `#[plugin]`.
    Method(ItemFn, PluginOptions),
    /// Anything else, as written.
    Other(TokenStream),
}

impl Input {
    pub(crate) fn from_syn(item: TokenStream, options: PluginOptions) -> Self {
        let parsed = syn::parse2::<syn::Item>(item.clone()).ok().or_else(|| parse_with_raw_body(&item));
        match parsed {
            Some(syn::Item::Fn(func)) if matches!(func.sig.inputs.first(), Some(FnArg::Receiver(_))) => {
                Self::Method(func, options)
            }
            Some(syn::Item::Fn(func)) => Self::Fn(PluginFn { func, options }),
            Some(syn::Item::Impl(block)) => Self::Impl(PluginImpl::from_syn(block, options)),
            _ => Self::Other(item),
        }
    }
}

/// `#[plugin(on = "…")]` on a function.
pub(crate) struct PluginFn {
    pub func: ItemFn,
    pub options: PluginOptions,
}

impl PluginFn {
    /// The trigger `on` names, if it names one.
    pub(crate) fn trigger(&self) -> Option<&'static TriggerDef> {
        triggers::find(&self.options.on.as_ref()?.value())
    }

    /// The function as a handler of its trigger, if `on` names one.
    pub(crate) fn handler(&self) -> Option<Handler<'_>> {
        let on = self.options.on.as_ref()?;
        Some(Handler {
            def: self.trigger()?,
            sig: &self.func.sig,
            method: false,
            name_span: on.span(),
            blocking: self.options.blocking.map(|span| quote::quote_spanned!(span=> blocking)),
        })
    }

    /// The generated plugin type: the function's name in CamelCase.
    pub(crate) fn type_ident(&self) -> syn::Ident {
        let name = &self.func.sig.ident;
        syn::Ident::new(&crate::syntax::camel_case(&name.to_string()), name.span())
    }

    /// The plugin's name in listings: the `name` option, else the function's.
    pub(crate) fn name(&self) -> String {
        self.options.name.clone().unwrap_or_else(|| self.func.sig.ident.to_string())
    }
}

/// `#[plugin]` on an impl block.
pub(crate) struct PluginImpl {
    /// The block as it is emitted again: without the `#[blocking]` and
    /// `#[plugin]` attributes of its methods, which the macro reads.
    pub block: ItemImpl,
    pub options: PluginOptions,
    /// The block's methods, in order.
    pub methods: Vec<Method>,
}

/// A method of a `#[plugin]` impl block.
pub(crate) struct Method {
    pub sig: Signature,
    pub role: Role,
    /// `#[blocking]` on the method.
    pub blocking: Option<syn::Attribute>,
    /// A `#[plugin(…)]` on the method, which an impl block's methods do not
    /// take: their name says the trigger.
    pub plugin_attr: Option<syn::Attribute>,
}

/// What a method's name makes it.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    /// A handler of the trigger it is named after.
    Handler(&'static TriggerDef),
    /// `start` or `stop`.
    Lifecycle,
    /// Neither: a misspelt trigger or a helper.
    Unknown,
}

impl PluginImpl {
    fn from_syn(mut block: ItemImpl, options: PluginOptions) -> Self {
        let mut methods = Vec::new();
        for item in &mut block.items {
            let ImplItem::Fn(method) = item else { continue };
            let blocking = take_attr(&mut method.attrs, "blocking");
            let plugin_attr = take_attr(&mut method.attrs, "plugin");
            let name = method.sig.ident.to_string();
            let role = match triggers::find(&name) {
                Some(def) => Role::Handler(def),
                None if triggers::LIFECYCLE.contains(&name.as_str()) => Role::Lifecycle,
                None => Role::Unknown,
            };
            methods.push(Method { sig: method.sig.clone(), role, blocking, plugin_attr });
        }
        Self { block, options, methods }
    }

    /// The methods that handle a trigger.
    pub(crate) fn handlers(&self) -> impl Iterator<Item = Handler<'_>> {
        self.methods.iter().filter_map(|m| match m.role {
            Role::Handler(def) => Some(Handler {
                def,
                sig: &m.sig,
                method: true,
                name_span: m.sig.ident.span(),
                blocking: m.blocking.as_ref().map(quote::ToTokens::to_token_stream),
            }),
            _ => None,
        })
    }

    /// The plugin's name in listings: the `name` option, else the type's.
    pub(crate) fn name(&self) -> String {
        let type_name = match &*self.block.self_ty {
            Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default(),
            other => quote::quote!(#other).to_string(),
        };
        self.options.name.clone().unwrap_or(type_name)
    }
}

/// A function or method bound to one trigger.
pub(crate) struct Handler<'a> {
    pub def: &'static TriggerDef,
    pub sig: &'a Signature,
    /// A method, which takes `&self` first.
    pub method: bool,
    /// Where the trigger is named: the `on` string or the method's name.
    pub name_span: Span,
    /// `blocking` (on a function) or `#[blocking]` (on a method), as written.
    pub blocking: Option<TokenStream>,
}

/// How a handler is called.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// An `async fn`, awaited.
    Async,
    /// A `fn`, called inline.
    Sync,
    /// A `fn` marked blocking, run on the blocking pool.
    Blocking,
}

impl Handler<'_> {
    pub(crate) fn mode(&self) -> Mode {
        match (self.sig.asyncness.is_some(), self.blocking.is_some()) {
            (true, _) => Mode::Async,
            (false, true) => Mode::Blocking,
            (false, false) => Mode::Sync,
        }
    }

    /// What the handler returns, by shape.
    pub(crate) fn returns(&self) -> Returns<'_> {
        Returns::from_syn(&self.sig.output)
    }
}

/// A handler's return type, by shape (a macro cannot see through aliases).
pub(crate) enum Returns<'a> {
    /// None written: `()`.
    Nothing,
    /// An observer's: `()`, `Result<(), E>`, `Outcome<()>`.
    Observer(&'a Type),
    /// A replacer's: `Option<T>`, `Result<Option<T>, E>`, `Outcome<T>`.
    Replacer(&'a Type),
    /// Anything else: an alias, or a mistake rustc reports.
    Other(&'a Type),
}

impl<'a> Returns<'a> {
    fn from_syn(output: &'a ReturnType) -> Self {
        let ReturnType::Type(_, ty) = output else { return Self::Nothing };
        let shape = |inner: Option<&Type>| match inner {
            Some(t) if is_unit(t) => Self::Observer(ty),
            Some(t) if path_tail(t).is_some_and(|s| s.ident == "Option") => Self::Replacer(ty),
            _ => Self::Other(ty),
        };
        if is_unit(ty) {
            return Self::Observer(ty);
        }
        match path_tail(ty) {
            Some(s) if s.ident == "Option" => Self::Replacer(ty),
            Some(s) if s.ident == "Result" => shape(type_args(s).next()),
            Some(s) if s.ident == "Outcome" => match type_args(s).next() {
                Some(t) if is_unit(t) => Self::Observer(ty),
                Some(_) => Self::Replacer(ty),
                None => Self::Other(ty),
            },
            _ => Self::Other(ty),
        }
    }
}

/// Takes an attribute named `name` (last path segment, so `qtasks::plugin`
/// too) off a method.
fn take_attr(attrs: &mut Vec<syn::Attribute>, name: &str) -> Option<syn::Attribute> {
    let pos = attrs.iter().position(|a| a.path().segments.last().is_some_and(|s| s.ident == name))?;
    Some(attrs.remove(pos))
}
