//! The pool blocking handlers run on: `#[plugin(on = …, blocking)]` and
//! `#[blocking]` methods.
//!
//! A blocking handler runs on tokio's blocking pool with an owned snapshot
//! of its context (`super::snapshot`), once one of a bounded number of slots
//! is free. The bound is **process-wide**: every app in the process shares
//! it, and only [`set_blocking_handler_limit`] changes it (building an app
//! does not). A handler left running past its time budget keeps its slot
//! until it returns, so the bound is the number of threads really busy.

use super::{HandlerPanicked, Outcome};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const DEFAULT_LIMIT: usize = 64;

struct Pool {
    slots: Arc<Semaphore>,
    /// The limit as last set.
    limit: Mutex<usize>,
    /// Slots to take away once the handlers holding them return: lowering
    /// the limit while handlers run forgets those slots as they come back
    /// instead of waiting for them.
    debt: AtomicUsize,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool {
    slots: Arc::new(Semaphore::new(DEFAULT_LIMIT)),
    limit: Mutex::new(DEFAULT_LIMIT),
    debt: AtomicUsize::new(0),
});

/// Sets how many blocking handlers may run at once **in this process**, for
/// every app in it (default 64); further calls wait for a slot instead of
/// taking more threads. At least 1.
///
/// Lowering the limit returns at once: slots held by running handlers are
/// taken away as those handlers return. Building an app never changes the
/// limit; the CLI sets it from `QTASKS_BLOCKING_HANDLER_LIMIT`
/// ([`Config::blocking_handler_limit`](crate::Config::blocking_handler_limit)).
pub fn set_blocking_handler_limit(n: usize) {
    let n = n.max(1);
    let mut limit = POOL.limit.lock().unwrap_or_else(|e| e.into_inner());
    if n > *limit {
        let mut grow = n - *limit;
        // Cancel debt first: those slots are still out, and stay.
        let _ = POOL.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |debt| {
            let paid = debt.min(grow);
            grow -= paid;
            Some(debt - paid)
        });
        POOL.slots.add_permits(grow);
    } else {
        let shrink = *limit - n;
        let taken = POOL.slots.forget_permits(shrink);
        POOL.debt.fetch_add(shrink - taken, Ordering::AcqRel);
    }
    *limit = n;
}

/// The process-wide limit of blocking handlers, as last set (default 64).
pub fn blocking_handler_limit() -> usize {
    *POOL.limit.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many blocking handlers hold a slot right now, including those left
/// running detached past their time budget (a thread cannot be killed, so
/// its slot stays busy until the handler returns).
pub fn blocking_handlers_busy() -> usize {
    let limit = *POOL.limit.lock().unwrap_or_else(|e| e.into_inner());
    (limit + POOL.debt.load(Ordering::Acquire)).saturating_sub(POOL.slots.available_permits())
}

/// A held slot: given back when dropped (also when the handler panics), or
/// taken away if the limit was lowered meanwhile.
struct Slot(Option<OwnedSemaphorePermit>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(permit) = self.0.take()
            && POOL.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)).is_ok()
        {
            permit.forget();
        }
    }
}

tokio::task_local! {
    /// How long the current blocking handler waited for a slot, for the
    /// metrics of [`Managed`](crate::plugin::Managed) plugins.
    pub(crate) static BLOCKING_WAIT: Cell<Option<Duration>>;
}

/// Runs a blocking handler on the blocking pool, with an owned snapshot of
/// its context, once a slot is free. If the returned future is dropped
/// (its time budget passed), the handler goes on detached and keeps its
/// slot until it returns; its result is then discarded.
pub async fn blocking_detached<T: Send + 'static>(handler: impl FnOnce() -> Outcome<T> + Send + 'static) -> Outcome<T> {
    let asked = Instant::now();
    let slot = match Arc::clone(&POOL.slots).acquire_owned().await {
        Ok(permit) => Slot(Some(permit)),
        Err(e) => return Outcome::Failed(Box::new(e)),
    };
    let _ = BLOCKING_WAIT.try_with(|w| w.set(Some(asked.elapsed())));
    let span = tracing::Span::current();
    let task = crate::TaskContext::current();
    let running = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        crate::TaskContext::sync_scope(task, || span.in_scope(handler))
    });
    match running.await {
        Ok(outcome) => outcome,
        Err(e) if e.is_panic() => Outcome::Failed(Box::new(HandlerPanicked::from_payload(e.into_panic()))),
        Err(e) => Outcome::Failed(Box::new(e)),
    }
}
