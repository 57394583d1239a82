//! Events: what happens to workers and tasks, for handlers registered on
//! the app (QTasks's `app.events.on.<event>`).
//!
//! Plugins see every step of the pipeline through triggers; events are the
//! short list most apps need: the worker starting and stopping, and each
//! task starting and ending, with `task_success`, `task_error`,
//! `task_cancel` (which QTasks declares but never fires) and `task_retry`.
//!
//! ```
//! use qtasks::{Event, EventKind};
//! use qtasks::{QueueTasks, task};
//!
//! #[task]
//! async fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! let app = QueueTasks::builder("demo")
//!     .task::<Add>()
//!     .on(EventKind::TaskSuccess, |event: &Event| {
//!         println!("{} finished", event.task_name().unwrap_or("?"));
//!     })
//!     .on_async(EventKind::TaskError, |event: Event| async move {
//!         eprintln!("{:?} failed: {:?}", event.uuid(), event.record().and_then(|r| r.error.clone()));
//!     })
//!     .build()?;
//! # Ok::<(), qtasks::Error>(())
//! ```
//!
//! Handlers run in registration order, in the process where the event
//! happens (the worker's, for task events; the client's for a queued task
//! it cancels). A handler that panics is reported and the others still
//! run. Each kind costs one bit test when nobody listens to it.
//!
//! Handlers are awaited in line: a task event's handlers run in the task's
//! slot (the worker runs one task fewer meanwhile), and `shutdown` waits
//! for them. Keep them short; hand slow work (a webhook) to a spawned task
//! or a channel.

use crate::model::{TaskRecord, TaskStatus};
use futures::FutureExt;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use uuid::Uuid;

/// Which event happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A worker is starting, before its plugins start.
    Starting,
    /// A worker is stopping, before it waits for its running tasks.
    Stopping,
    /// A worker started and takes tasks.
    WorkerRunning,
    /// A worker's running tasks have finished; its plugins stop next.
    WorkerStopping,
    /// A task is about to run.
    TaskRunning,
    /// A task's run ended and its record was stored (any status).
    TaskStopping,
    /// A task ended `success`.
    TaskSuccess,
    /// A task ended `error`.
    TaskError,
    /// A task ended `cancel`, while running or (from the client that
    /// cancelled it) while queued.
    TaskCancel,
    /// A task's run failed and a new attempt was enqueued.
    TaskRetry,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 10] = [
        Self::Starting,
        Self::Stopping,
        Self::WorkerRunning,
        Self::WorkerStopping,
        Self::TaskRunning,
        Self::TaskStopping,
        Self::TaskSuccess,
        Self::TaskError,
        Self::TaskCancel,
        Self::TaskRetry,
    ];

    /// The QTasks name of the event (`"task_success"`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Stopping => "stopping",
            Self::WorkerRunning => "worker_running",
            Self::WorkerStopping => "worker_stopping",
            Self::TaskRunning => "task_running",
            Self::TaskStopping => "task_stopping",
            Self::TaskSuccess => "task_success",
            Self::TaskError => "task_error",
            Self::TaskCancel => "task_cancel",
            Self::TaskRetry => "task_retry",
        }
    }

    /// The event that a task ending with `status` fires, if any.
    pub const fn for_status(status: TaskStatus) -> Option<Self> {
        match status {
            TaskStatus::Success => Some(Self::TaskSuccess),
            TaskStatus::Error => Some(Self::TaskError),
            TaskStatus::Cancel => Some(Self::TaskCancel),
            TaskStatus::Retry => Some(Self::TaskRetry),
            TaskStatus::New | TaskStatus::Process => None,
        }
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One event, as handlers receive it.
#[derive(Clone, Debug)]
pub struct Event {
    kind: EventKind,
    app: String,
    task_name: Option<String>,
    uuid: Option<Uuid>,
    record: Option<TaskRecord>,
}

impl Event {
    pub(crate) fn worker(kind: EventKind, app: &str) -> Self {
        Self { kind, app: app.to_owned(), task_name: None, uuid: None, record: None }
    }

    pub(crate) fn task(kind: EventKind, app: &str, task_name: &str, uuid: Uuid) -> Self {
        Self { kind, app: app.to_owned(), task_name: Some(task_name.to_owned()), uuid: Some(uuid), record: None }
    }

    pub(crate) fn ended(kind: EventKind, app: &str, record: &TaskRecord) -> Self {
        Self {
            kind,
            app: app.to_owned(),
            task_name: Some(record.task_name.to_string()),
            uuid: Some(record.uuid),
            record: Some(record.clone()),
        }
    }

    /// Which event this is.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// The app's name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The task's name, for task events.
    pub fn task_name(&self) -> Option<&str> {
        self.task_name.as_deref()
    }

    /// The task's id, for task events.
    pub fn uuid(&self) -> Option<Uuid> {
        self.uuid
    }

    /// The stored record, for the events of a task that ended
    /// (`task_stopping`, `task_success`, `task_error`, `task_cancel`, `task_retry`).
    pub fn record(&self) -> Option<&TaskRecord> {
        self.record.as_ref()
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Clone)]
enum Handler {
    Sync(Arc<dyn Fn(&Event) + Send + Sync>),
    Async(Arc<dyn Fn(Event) -> BoxFuture + Send + Sync>),
}

/// The event handlers of an app. Build them with
/// [`Builder::on`](crate::Builder::on) and [`Builder::on_async`](crate::Builder::on_async).
#[derive(Clone, Default)]
pub struct Events {
    listening: u16,
    handlers: Vec<(EventKind, Handler)>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.handlers.iter().map(|(k, _)| k)).finish()
    }
}

impl Events {
    pub(crate) fn on(&mut self, kind: EventKind, handler: impl Fn(&Event) + Send + Sync + 'static) {
        self.listening |= kind.bit();
        self.handlers.push((kind, Handler::Sync(Arc::new(handler))));
    }

    pub(crate) fn on_async<F, Fut>(&mut self, kind: EventKind, handler: F)
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.listening |= kind.bit();
        self.handlers.push((kind, Handler::Async(Arc::new(move |e| Box::pin(handler(e))))));
    }

    /// `true` if a handler listens to `kind`.
    #[inline]
    pub fn listens(&self, kind: EventKind) -> bool {
        self.listening & kind.bit() != 0
    }

    /// `true` if a handler listens to any kind.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.listening != 0
    }

    /// Calls the handlers of `event`'s kind, in order; a panic is logged
    /// and the next handler still runs.
    pub(crate) async fn emit(&self, event: Event) {
        for (kind, handler) in &self.handlers {
            if *kind != event.kind {
                continue;
            }
            let panicked = match handler {
                Handler::Sync(h) => std::panic::catch_unwind(AssertUnwindSafe(|| h(&event))).err(),
                Handler::Async(h) => AssertUnwindSafe(h(event.clone())).catch_unwind().await.err(),
            };
            if let Some(payload) = panicked {
                let message = crate::error::panic_message(&*payload);
                tracing::error!(event = %event.kind, uuid = ?event.uuid, panic = %message, "event handler panicked");
            }
        }
    }
}

/// Emits an event if a handler listens to its kind; builds nothing otherwise.
macro_rules! emit {
    ($events:expr, $kind:expr, $event:expr) => {{
        let events = &$events;
        if events.listens($kind) {
            // Boxed: only apps that listen carry the handlers' future.
            Box::pin(events.emit($event)).await;
        }
    }};
}
pub(crate) use emit;
