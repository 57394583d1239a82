//! The check of `Backend::minute_counts`: runs that ended, per minute and
//! status.

use super::*;
use crate::backend::MinuteCount;

/// The counts of `minutes`, summed.
fn total(minutes: &[MinuteCount]) -> MinuteCount {
    let mut sum = MinuteCount::default();
    for m in minutes {
        sum.success += m.success;
        sum.error += m.error;
        sum.retry += m.retry;
        sum.cancel += m.cancel;
    }
    sum
}

pub(super) async fn check_minute_counts<B: Backend>(backend: B) -> Outcome {
    // Two minutes back: the backend's clock, which dates the counts, may
    // differ a little from this one, and the runs may end either side of
    // a minute's turn.
    let since = crate::model::now() - 120.0;
    let Some(before) = backend.minute_counts(since).await? else {
        return Ok(()); // Not counted per minute: nothing to check.
    };
    ensure_eq!(before, Vec::<MinuteCount>::new(), "a new app has ended no run");

    let tasks = [
        add(&backend, "square", json!([1])).await?,
        add(&backend, "square", json!([2])).await?,
        add(&backend, "fails", json!(["x"])).await?,
    ];
    let queued = add(&backend, "square", json!([3])).await?;
    let taken = take_three(&backend).await?;
    ensure_eq!(ids_of(&taken), tasks.iter().map(|t| t.uuid).collect::<Vec<_>>());
    end_success_error_retry(&backend, &taken).await?;
    ensure_eq!(backend.cancel(queued.uuid, "no").await?, CancelOutcome::Cancelled);

    let until = MinuteCount::minute_of(crate::model::now() + 120.0);
    let minutes = backend.minute_counts(since).await?.ok_or("counted per minute, then not")?;
    let sum = total(&minutes);
    ensure_eq!(
        (sum.success, sum.error, sum.retry, sum.cancel),
        (1, 1, 1, 1),
        "each run counted once, by status: {minutes:?}"
    );
    ensure!(minutes.windows(2).all(|w| w[0].at < w[1].at), "one entry per minute, oldest first: {minutes:?}");
    ensure!(
        minutes.iter().all(|m| m.at % 60 == 0 && m.at >= MinuteCount::minute_of(since) && m.at <= until),
        "minute starts from the minute of `since` to now: {minutes:?}"
    );
    // A `since` after these minutes gives none of them.
    let later = backend.minute_counts(crate::model::now() + 180.0).await?.ok_or("counted per minute, then not")?;
    ensure_eq!(total(&later), MinuteCount::default(), "{later:?}");

    // An app of another name counts its own runs only.
    let other = backend.for_app(&format!("{}-minutes-other", backend.app_name()));
    let outcome: Outcome = async {
        let counted = other.minute_counts(since).await?.ok_or("counted per minute for one app, not another")?;
        ensure_eq!(total(&counted), MinuteCount::default(), "another app sees none: {counted:?}");
        Ok(())
    }
    .await;
    other.flush().await?;
    outcome?;

    // `flush` removes them with the app's other counters.
    backend.flush().await?;
    let flushed = backend.minute_counts(since).await?.ok_or("counted per minute, then not")?;
    ensure_eq!(total(&flushed), MinuteCount::default(), "flushed: {flushed:?}");
    Ok(())
}
