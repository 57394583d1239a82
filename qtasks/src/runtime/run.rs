//! Running a task's body (its time limit, panic isolation, cancellation),
//! and renewing the task's lease while the worker holds it.

use crate::app::AppInner;
use crate::backend::Backend;
use crate::task::{Task, TaskContext, TaskError};
use futures::FutureExt;
use futures::future::Either;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use uuid::Uuid;

/// Awaits `run`, renewing the lease of task `uuid` meanwhile on backends
/// that have leases, so a task held longer than its lease is not handed to
/// another worker while this one still holds it.
///
/// A plain function, not an `async fn`: on a backend without leases the
/// future it gives is `run` itself, not a state machine holding `run` (and
/// a timer it never sets) besides.
pub(super) fn renewing_lease<'a, T, C, B: Backend, F: Future + 'a>(
    app: &'a AppInner<T, C, B>,
    uuid: Uuid,
    run: F,
) -> impl Future<Output = F::Output> + 'a {
    match app.backend.lease_renewal() {
        None => Either::Left(run),
        // Boxed: only backends with leases pay for the timer and the renewal.
        Some(period) => Either::Right(Box::pin(renew_while(app, uuid, period, run))),
    }
}

async fn renew_while<T, C, B: Backend, F: Future>(
    app: &AppInner<T, C, B>,
    uuid: Uuid,
    period: std::time::Duration,
    run: F,
) -> F::Output {
    let mut run = std::pin::pin!(run);
    loop {
        tokio::select! {
            biased;
            output = &mut run => return output,
            _ = tokio::time::sleep(period) => {
                if let Err(error) = app.backend.extend_lease(uuid).await {
                    tracing::warn!(app = %app.name, %uuid, %error, "renewing the task's lease failed");
                }
            }
        }
    }
}

/// Runs the task function with its time limit, turning a panic into an
/// error. An async task is dropped at its current await when a client
/// cancels it; a blocking one cannot be, and sees its token instead.
pub(super) async fn run<K: Task>(ctx: TaskContext, args: K::Args) -> Result<K::Output, TaskError> {
    let limit = crate::task::time_limit(K::INFO.max_time, ctx.extra()).map_err(TaskError::Message)?;
    if K::INFO.blocking {
        return limited::<K>(ctx, args, limit).await;
    }
    let token = ctx.cancellation().clone();
    match token.unless_cancelled(limited::<K>(ctx, args, limit)).await {
        Some(outcome) => outcome,
        None => Err(TaskError::Cancelled(crate::Cancelled::new(token.reason().unwrap_or("cancelled")))),
    }
}

/// The task function within its time limit, a panic turned into an error.
/// A plain function (combinators, not an `async fn`), so the future holds
/// the task's future once.
fn limited<K: Task>(
    ctx: TaskContext,
    args: K::Args,
    limit: Option<std::time::Duration>,
) -> impl Future<Output = Result<K::Output, TaskError>> {
    let body = AssertUnwindSafe(K::run(ctx, args)).catch_unwind();
    let outcome = |caught: std::thread::Result<Result<K::Output, TaskError>>| {
        caught.unwrap_or_else(|panic| Err(TaskError::from_panic(panic)))
    };
    match limit {
        None => Either::Left(body.map(outcome)),
        // Dropping an async task's future at the limit stops it at its
        // current await; a sync task keeps running detached on the blocking
        // pool (threads cannot be killed) and its result is discarded.
        // Boxed: tasks without a limit do not carry its timer.
        Some(limit) => Either::Right(Box::pin(tokio::time::timeout(limit, body)).map(move |timed| match timed {
            Ok(caught) => outcome(caught),
            Err(_) => Err(TaskError::TimeLimit(limit)),
        })),
    }
}
