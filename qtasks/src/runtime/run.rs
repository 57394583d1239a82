//! Running a task's body (its time limit, panic isolation, cancellation),
//! and renewing the task's lease while the worker holds it.

use crate::app::AppInner;
use crate::backend::Backend;
use crate::task::{Task, TaskContext, TaskError};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use uuid::Uuid;

/// Awaits `run`, renewing the lease of task `uuid` meanwhile on backends
/// that have leases, so a task held longer than its lease is not handed to
/// another worker while this one still holds it.
pub(super) async fn renewing_lease<T, C, B: Backend, F: std::future::Future>(
    app: &AppInner<T, C, B>,
    uuid: Uuid,
    run: F,
) -> F::Output {
    let Some(period) = app.backend.lease_renewal() else { return run.await };
    tokio::pin!(run);
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
    if K::INFO.blocking {
        return run_limited::<K>(ctx, args).await;
    }
    let token = ctx.cancellation().clone();
    tokio::select! {
        biased;
        () = token.cancelled() => Err(TaskError::Cancelled(crate::Cancelled::new(token.reason().unwrap_or("cancelled")))),
        outcome = run_limited::<K>(ctx, args) => outcome,
    }
}

async fn run_limited<K: Task>(ctx: TaskContext, args: K::Args) -> Result<K::Output, TaskError> {
    let limit = crate::task::time_limit(K::INFO.max_time, ctx.extra()).map_err(TaskError::Message)?;
    let run = AssertUnwindSafe(K::run(ctx, args)).catch_unwind();
    let outcome = match limit {
        // Dropping an async task's future at the limit stops it at its
        // current await; a sync task keeps running detached on the blocking
        // pool (threads cannot be killed) and its result is discarded.
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(outcome) => outcome,
            Err(_) => return Err(TaskError::TimeLimit(limit)),
        },
        None => run.await,
    };
    outcome.unwrap_or_else(|panic| Err(TaskError::from_panic(panic)))
}
