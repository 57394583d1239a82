//! The dashboard (feature `web`): pages to see and steer an app's queue
//! from a browser, on a JSON API a script can call, as an axum [`Router`]
//! that a service mounts in its own axum app (or that the CLI's
//! `dashboard` command serves).
//!
//! ```no_run
//! use qtasks::web::Dashboard;
//! use qtasks::{QueueTasks, task};
//!
//! #[task]
//! async fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let app = QueueTasks::builder("demo").task::<Add>().build()?;
//! let dashboard = Dashboard::new().token("s3cret").router(&app);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, dashboard).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # How it is built
//!
//! Pages are rendered on the server as plain HTML with one small script
//! and one stylesheet, both compiled into the binary (`include_str!`): no
//! CDN, no Node step, no WASM toolchain, and every page works offline and
//! without the script (forms post, links navigate). The script only adds
//! live updates: it listens to `GET /api/events`, a stream of server-sent
//! events fed by **one** poller per router, which reads the backend once
//! per [`poll_interval`](Dashboard::poll_interval) however many browsers
//! are open (and not at all while none is), and patches the counters, the
//! rows of the task table and the status of the task shown.
//!
//! Every page is built from the same reads as the JSON API (the routes
//! are listed in [`API`]), and every action a page offers is a route of
//! that API too.
//!
//! # Who may do what
//!
//! - With a [`token`](Dashboard::token), every route but the login page and
//!   the assets needs it: `Authorization: Bearer <token>`, HTTP basic auth
//!   with the token as password (any user name), or the cookie the login
//!   page sets. Missing or wrong: `401`.
//! - [`read_only`](Dashboard::read_only) hides every action and refuses
//!   each with `403`.
//! - Actions are `POST`s. A form post must carry the page's CSRF token
//!   (field `csrf`); a JSON post must be `Content-Type: application/json`
//!   (which a cross-site form cannot send); either is refused with `403`
//!   when its `Origin` is another site.
//! - Bad input is `400` with a message (`{"error": "…"}`); nothing a client
//!   sends makes the server panic. Backend errors are `503`, with any
//!   password in a URL of the message replaced by `***`. The broker URL is
//!   never shown: the router is given the app, not its settings.

mod api;
mod auth;
mod live;
mod pages;
mod source;

use crate::app::QueueTasks;
use crate::backend::Backend;
use crate::dispatch::PluginChain;
use crate::task::TaskSet;
use axum::Router;
use source::Source;
use std::sync::Arc;
use std::time::Duration;

/// The JSON API's reference: every route, its parameters and answers.
pub const API: &str = include_str!("API.md");

/// How often the live-update poller reads the backend by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// The dashboard's settings; [`router`](Dashboard::router) builds it for an app.
#[derive(Clone, Debug)]
pub struct Dashboard {
    token: Option<String>,
    read_only: bool,
    poll: Duration,
    base: String,
}

impl Default for Dashboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Dashboard {
    /// No token, actions allowed, polling every [`DEFAULT_POLL`], mounted at `/`.
    pub fn new() -> Self {
        Self { token: None, read_only: false, poll: DEFAULT_POLL, base: String::new() }
    }

    /// Protects every page and route with `token` (see the module docs).
    /// An empty token is no token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Hides every action and refuses each with `403`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// How often the one live-update poller reads the backend while a
    /// browser listens (at least 50 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(50));
        self
    }

    /// The path the router is nested at in the service's app (as given to
    /// `Router::nest`), so the pages link to `{base}/tasks`; default none.
    pub fn base_path(mut self, base: impl Into<String>) -> Self {
        self.base = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// The dashboard of `app`: pages, JSON API and assets.
    ///
    /// The live-update poller is a tokio task started by the first
    /// browser that listens and stopped when the last one leaves, so the
    /// router must be served inside a tokio runtime.
    pub fn router<T: TaskSet, C: PluginChain, B: Backend>(self, app: &QueueTasks<T, C, B>) -> Router {
        let source: Arc<dyn Source> = Arc::new(app.clone());
        let state = Arc::new(State {
            live: live::Live::new(Arc::clone(&source), self.read_only, self.poll),
            source,
            csrf: uuid::Uuid::new_v4().simple().to_string(),
            options: self,
        });
        let routes = api::routes().merge(pages::routes());
        routes
            .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), auth::guard))
            .merge(pages::public_routes())
            .with_state(state)
    }
}

/// The dashboard of `app` with the default settings (no token, actions
/// allowed): `Dashboard::new().router(app)`.
pub fn router<T: TaskSet, C: PluginChain, B: Backend>(app: &QueueTasks<T, C, B>) -> Router {
    Dashboard::new().router(app)
}

/// Serves the dashboard of `app` on `bind` until `shutdown` completes.
pub async fn serve<T: TaskSet, C: PluginChain, B: Backend>(
    app: &QueueTasks<T, C, B>,
    dashboard: Dashboard,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, dashboard.router(app)).with_graceful_shutdown(shutdown).await
}

/// What every handler shares.
pub(crate) struct State {
    source: Arc<dyn Source>,
    options: Dashboard,
    /// The token form posts carry (one per router).
    csrf: String,
    live: live::Live,
}

type Shared = Arc<State>;

/// Replaces the password (all of the user info) of every URL in `text`
/// with `***`, so a backend error naming its server never shows it.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || matches!(c, '"' | '\'' | ')' | ','))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact("redis backend: connecting to redis://:hunter2@db:6379/0 failed"),
            "redis backend: connecting to redis://***@db:6379/0 failed"
        );
        assert_eq!(redact("postgres://u:p@h/d and rediss://x@y"), "postgres://***@h/d and rediss://***@y");
        assert_eq!(redact("no url here"), "no url here");
        assert_eq!(redact("memory://"), "memory://");
    }
}
