//! Checks of named queues, pausing, limits, unique keys and bulk enqueue.

use super::*;
use crate::model::Unique;
use crate::queue::{Limit, Limits, QueueInfo, Rate};

/// How long a fetch that must get nothing is given: long enough for a
/// backend that would wrongly give a task to give it.
const NOTHING: Duration = Duration::from_millis(300);

/// A `new` record of `square(n)` in `queue`.
fn in_queue(queue: &str, n: i64) -> TaskRecord {
    let mut task = new_task("square", json!([n]));
    task.queue = queue.into();
    task
}

/// Fetches up to `max` tasks from `from`, or none within `within`.
async fn fetch_from<B: Backend>(
    backend: &B,
    from: &Fetch,
    max: usize,
    within: Duration,
) -> Result<Vec<TaskMessage>, BackendError> {
    let mut out = Vec::new();
    if let Ok(result) = tokio::time::timeout(within, backend.fetch(from, max, &mut out)).await {
        result?;
    }
    Ok(out)
}

/// Ends a fetched task `success`.
async fn finish<B: Backend>(backend: &B, message: &TaskMessage) -> Result<(), BackendError> {
    backend.finish(&TaskRecord::from_message(message, TaskStatus::Success)).await
}

/// What the backend knows of one queue.
pub(super) async fn info<B: Backend>(backend: &B, queue: &str) -> Result<QueueInfo, BoxError> {
    let infos = backend.queues(&[queue.to_owned()]).await?;
    let found = infos.into_iter().find(|q| q.name == queue);
    Ok(found.unwrap_or_else(|| QueueInfo { name: queue.to_owned(), ..QueueInfo::default() }))
}

/// Fetch settings for the default queue holding one limit of task `square`.
fn square_limited(limit: Limit) -> Fetch {
    let mut limits = Limits::default();
    limits.tasks.insert("square".to_owned(), limit);
    Fetch::default_queue().with_limits(Arc::new(limits))
}

// ---------------------------------------------------------------------------
// Named queues
// ---------------------------------------------------------------------------

pub(super) async fn check_named_queues<B: Backend + Clone>(backend: B) -> Outcome {
    let a1 = in_queue("a", 1);
    let mut a2 = in_queue("a", 2);
    a2.priority = -1;
    let b1 = in_queue("b", 3);
    let d1 = in_queue(crate::DEFAULT_QUEUE, 4);
    for task in [&a1, &a2, &b1, &d1] {
        ensure!(backend.enqueue(task).await? == Enqueued::New, "enqueueing into queue `{}` failed", task.queue);
    }
    let a = info(&backend, "a").await?;
    ensure_eq!((a.depth, a.in_flight, a.paused), (2, 0, false), "queue a after two enqueues: {a:?}");
    ensure!(a.oldest_age.is_some(), "queue a has tasks but no oldest age: {a:?}");
    ensure_eq!(info(&backend, "b").await?.depth, 1);
    ensure_eq!(info(&backend, "never-used").await?.depth, 0);
    let all = backend.queues(&[]).await?;
    for name in ["a", "b"] {
        ensure!(all.iter().any(|q| q.name == name), "queues(&[]) does not list `{name}`: {all:?}");
    }

    // Only the queues asked for; within a queue, priority first.
    let got = fetch_from(&backend, &Fetch::queues(["b"]), 10, WAIT).await?;
    ensure_eq!(ids_of(&got), [b1.uuid], "a fetch from queue b");
    let got = fetch_from(&backend, &Fetch::queues(["a"]), 1, WAIT).await?;
    ensure_eq!(ids_of(&got), [a2.uuid], "queue a, the lower priority first");
    ensure_eq!(info(&backend, "a").await?.in_flight, 1, "queue a's in-flight count after a fetch");
    finish(&backend, &got[0]).await?;
    ensure_eq!(info(&backend, "a").await?.in_flight, 0, "queue a's in-flight count after the task finished");

    // Strict order: the first queue's tasks, then the next one's.
    let got = fetch_from(&backend, &Fetch::queues([crate::DEFAULT_QUEUE, "a"]), 10, WAIT).await?;
    ensure_eq!(ids_of(&got), [d1.uuid, a1.uuid], "a fetch from default then a");
    for message in &got {
        ensure_eq!(message.queue, backend.get(message.uuid).await?.ok_or("not stored")?.queue);
        finish(&backend, message).await?;
    }

    // A waiting fetch takes from its queues only.
    let b2 = in_queue("b", 5);
    let a3 = in_queue("a", 6);
    let only_a = Fetch::queues(["a"]);
    let (got, enqueued) = tokio::join!(fetch_from(&backend, &only_a, 10, WAIT), async {
        backend.enqueue(&b2).await?;
        backend.enqueue(&a3).await
    });
    enqueued?;
    ensure_eq!(ids_of(&got?), [a3.uuid], "what a fetch waiting on queue a got");
    ensure_eq!(info(&backend, "b").await?.depth, 1, "queue b after a fetch of queue a");

    // A delayed task waits in its queue, listed as delayed.
    let c1 = in_queue("c", 7);
    backend.enqueue_delayed(&c1, Duration::from_millis(200)).await?;
    let c = info(&backend, "c").await?;
    ensure_eq!((c.depth, c.delayed), (0, 1), "queue c with one delayed task: {c:?}");
    ensure!(
        fetch_from(&backend, &Fetch::queues(["a"]), 10, Duration::from_millis(400)).await?.is_empty(),
        "a delayed task of queue c came out of queue a"
    );
    let got = fetch_from(&backend, &Fetch::queues(["c"]), 10, WAIT).await?;
    ensure_eq!(ids_of(&got), [c1.uuid], "the delayed task of queue c");
    Ok(())
}

pub(super) async fn check_pause<B: Backend + Clone>(backend: B) -> Outcome {
    let from = Fetch::queues(["p"]);
    backend.set_paused("p", true).await?;
    let task = in_queue("p", 1);
    ensure!(backend.enqueue(&task).await? == Enqueued::New, "enqueueing into a paused queue failed");
    let p = info(&backend, "p").await?;
    ensure_eq!((p.depth, p.paused), (1, true), "a paused queue with a task: {p:?}");
    ensure!(fetch_from(&backend, &from, 10, NOTHING).await?.is_empty(), "a paused queue gave a task");

    // The flag is the backend's: another handle of the app sees it, another
    // app does not.
    let same_app = backend.for_app(backend.app_name());
    ensure!(info(&same_app, "p").await?.paused, "another handle of the app does not see the pause");
    let other = backend.for_app(&format!("{}-other", backend.app_name()));
    let other_task = in_queue("p", 2);
    other.enqueue(&other_task).await?;
    let got = fetch_from(&other, &from, 10, WAIT).await;
    let flushed = other.flush().await;
    ensure_eq!(ids_of(&got?), [other_task.uuid], "another app's queue of the same name, not paused");
    flushed?;

    // Other queues of a fetch still give; a waiting fetch wakes on resume.
    let d = in_queue(crate::DEFAULT_QUEUE, 3);
    backend.enqueue(&d).await?;
    let both = Fetch::queues(["p", crate::DEFAULT_QUEUE]);
    ensure_eq!(ids_of(&fetch_from(&backend, &both, 10, WAIT).await?), [d.uuid], "past a paused queue");
    // `join!` polls the fetch first: it is waiting (or about to look) when
    // the queue resumes; either way it must get the task.
    let (got, resumed) = tokio::join!(fetch_from(&backend, &from, 10, WAIT), same_app.set_paused("p", false));
    resumed?;
    ensure_eq!(ids_of(&got?), [task.uuid], "what a fetch waiting on the paused queue got after resume");
    ensure!(!info(&backend, "p").await?.paused, "still paused after resume");

    // Pausing does not stop running tasks: a task taken before can finish.
    let running = in_queue("p", 4);
    backend.enqueue(&running).await?;
    let got = fetch_from(&backend, &from, 1, WAIT).await?;
    backend.set_paused("p", true).await?;
    finish(&backend, &got[0]).await?;
    ensure_eq!(backend.get(running.uuid).await?.ok_or("not stored")?.status, TaskStatus::Success);
    backend.set_paused("p", false).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

pub(super) async fn check_concurrency_limits<B: Backend + Clone>(backend: B) -> Outcome {
    let from = square_limited(Limit { concurrency: Some(2), ..Limit::default() });
    let mut tasks = Vec::new();
    for n in 0..5 {
        tasks.push(add(&backend, "square", json!([n])).await?);
    }
    let ids: Vec<Uuid> = tasks.iter().map(|t| t.uuid).collect();
    let first = fetch_from(&backend, &from, 10, WAIT).await?;
    ensure_eq!(ids_of(&first), ids[..2], "a fetch under a concurrency of 2");
    ensure!(fetch_from(&backend, &from, 10, NOTHING).await?.is_empty(), "a third task started under a limit of 2");
    let waiting = backend.get(ids[2]).await?.ok_or("not stored")?;
    ensure_eq!(waiting.status, TaskStatus::New, "a task over its limit is not queued: {waiting:?}");
    ensure_eq!(info(&backend, crate::DEFAULT_QUEUE).await?.depth, 3, "tasks over the limit stay queued");

    // A finished task frees its slot, and wakes a waiting fetch.
    let (got, finished) = tokio::join!(fetch_from(&backend, &from, 10, WAIT), finish(&backend, &first[0]));
    finished?;
    let got = got?;
    ensure_eq!(ids_of(&got), [ids[2]], "what a waiting fetch got when a slot freed");

    // A released task frees its slot and goes back to its place.
    ensure!(backend.release(ids[1]).await?, "releasing a held task returned false");
    let again = fetch_from(&backend, &from, 10, WAIT).await?;
    ensure_eq!(ids_of(&again), [ids[1]], "after a release, the released task at its old place");
    for message in got.iter().chain(&again) {
        finish(&backend, message).await?;
    }
    let rest = fetch_from(&backend, &from, 10, WAIT).await?;
    ensure_eq!(ids_of(&rest), ids[3..], "the last two once the slots are free");
    for message in &rest {
        finish(&backend, message).await?;
    }
    let counts = backend.stats().await?.tasks.get("square").copied().unwrap_or_default();
    ensure_eq!((counts.success, counts.retry), (5, 0), "a wait for a slot counts as nothing");

    // A queue's limit covers every task of the queue.
    let mut limits = Limits::default();
    limits.queues.insert("lq".to_owned(), Limit { concurrency: Some(1), ..Limit::default() });
    let from = Fetch::queues(["lq"]).with_limits(Arc::new(limits));
    let mut q1 = new_task("echo", json!([1]));
    q1.queue = "lq".into();
    let q2 = in_queue("lq", 2);
    backend.enqueue(&q1).await?;
    backend.enqueue(&q2).await?;
    let got = fetch_from(&backend, &from, 10, WAIT).await?;
    ensure_eq!(ids_of(&got), [q1.uuid], "a queue with a concurrency of 1");
    ensure!(fetch_from(&backend, &from, 10, NOTHING).await?.is_empty(), "a second task of a queue limited to 1");
    finish(&backend, &got[0]).await?;
    ensure_eq!(ids_of(&fetch_from(&backend, &from, 10, WAIT).await?), [q2.uuid]);

    // Per key: one running per key, the others of the key wait in order.
    let from = square_limited(Limit { per_key: Some(1), ..Limit::default() });
    let keyed = |key: &str, n: i64| {
        let mut task = new_task("square", json!([n]));
        task.limit_key = Some(key.to_owned());
        task
    };
    let (u1a, u1b, u2) = (keyed("u1", 1), keyed("u1", 2), keyed("u2", 3));
    for task in [&u1a, &u1b, &u2] {
        backend.enqueue(task).await?;
    }
    let got = fetch_from(&backend, &from, 10, WAIT).await?;
    ensure_eq!(ids_of(&got), [u1a.uuid, u2.uuid], "one task per key");
    ensure!(fetch_from(&backend, &from, 10, NOTHING).await?.is_empty(), "a second task of key u1 started");
    finish(&backend, &got[0]).await?;
    ensure_eq!(ids_of(&fetch_from(&backend, &from, 10, WAIT).await?), [u1b.uuid], "the next task of key u1");
    Ok(())
}

pub(super) async fn check_limits_and_leases<B: Backend + Clone>(backend: B) -> Outcome {
    if backend.lease_renewal().is_none() {
        // Without leases a task is held until it finishes: nothing to check.
        return Ok(());
    }
    let from = square_limited(Limit { concurrency: Some(1), ..Limit::default() });
    let abandoned = add(&backend, "square", json!([1])).await?;
    let next = add(&backend, "square", json!([2])).await?;
    let got = fetch_from(&backend, &from, 10, WAIT).await?;
    ensure_eq!(ids_of(&got), [abandoned.uuid]);
    // Its worker dies: the slot comes back with the task when the lease
    // expires, and the limit still holds (the task runs again, alone).
    let again = fetch_from(&backend, &from, 10, WAIT).await?;
    ensure_eq!(ids_of(&again), [abandoned.uuid], "after the lease expired, the abandoned task alone");
    finish(&backend, &again[0]).await?;
    ensure_eq!(ids_of(&fetch_from(&backend, &from, 10, WAIT).await?), [next.uuid]);
    Ok(())
}

pub(super) async fn check_rate_limits<B: Backend + Clone>(backend: B) -> Outcome {
    const RATE: u32 = 5;
    const TASKS: usize = 12;
    let from = square_limited(Limit { rate: Some(Rate::per_second(RATE)), ..Limit::default() });
    let mut ids = Vec::new();
    for n in 0..TASKS {
        ids.push(add(&backend, "square", json!([n])).await?.uuid);
    }
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < TASKS {
        let batch = fetch_from(&backend, &from, TASKS, WAIT).await?;
        ensure!(!batch.is_empty(), "no task within {WAIT:?} under a rate of {RATE}/s");
        // At most a full bucket at once, then one token per interval.
        let allowed = f64::from(RATE) + started.elapsed().as_secs_f64() * f64::from(RATE) + 1.0;
        ensure!(
            (got.len() + batch.len()) as f64 <= allowed,
            "{} tasks started within {:?} under a rate of {RATE}/s",
            got.len() + batch.len(),
            started.elapsed()
        );
        for message in &batch {
            finish(&backend, message).await?;
        }
        got.extend(ids_of(&batch));
    }
    ensure_eq!(got, ids, "rate-limited tasks in enqueue order");
    let least = Duration::from_secs_f64((TASKS as f64 - f64::from(RATE) - 1.0) / f64::from(RATE));
    ensure!(started.elapsed() + SLACK >= least, "{TASKS} tasks at {RATE}/s took only {:?}", started.elapsed());
    Ok(())
}

// ---------------------------------------------------------------------------
// Unique keys
// ---------------------------------------------------------------------------

/// A `square` task with a unique key.
fn unique(key: &str, window: f64) -> TaskRecord {
    let mut task = new_task("square", json!([1]));
    task.unique = Some(Unique { key: key.to_owned(), window });
    task
}

pub(super) async fn check_unique<B: Backend + Clone>(backend: B) -> Outcome {
    // Queued, then running: the first task's id.
    let first = unique("k", 0.0);
    ensure_eq!(backend.enqueue(&first).await?, Enqueued::New);
    let second = unique("k", 0.0);
    ensure_eq!(backend.enqueue(&second).await?, Enqueued::Existing(first.uuid), "a duplicate of a queued task");
    ensure_eq!(
        backend.enqueue_delayed(&second, Duration::from_millis(10)).await?,
        Enqueued::Existing(first.uuid),
        "a delayed duplicate of a queued task"
    );
    ensure!(backend.get(second.uuid).await?.is_none(), "a duplicate was stored");
    let got = fetch_within(&backend, 10, WAIT).await?;
    ensure_eq!(ids_of(&got), [first.uuid], "one task for two enqueues of a key");
    ensure_eq!(backend.enqueue(&second).await?, Enqueued::Existing(first.uuid), "a duplicate of a running task");
    // Finished with no window: the key is free.
    finish(&backend, &got[0]).await?;
    ensure_eq!(backend.enqueue(&second).await?, Enqueued::New, "the key after its task finished, no window");
    ensure_eq!(ids_of(&fetch_within(&backend, 10, WAIT).await?), [second.uuid]);

    // With a window, the key holds after the end too.
    let windowed = unique("w", 60.0);
    backend.enqueue(&windowed).await?;
    let got = fetch_within(&backend, 10, WAIT).await?;
    let done = got.iter().find(|m| m.uuid == windowed.uuid).ok_or("the windowed task was not fetched")?;
    finish(&backend, done).await?;
    ensure_eq!(
        backend.enqueue(&unique("w", 60.0)).await?,
        Enqueued::Existing(windowed.uuid),
        "a duplicate within the window after the end"
    );

    // A cancelled task frees its key (with no window).
    let cancelled = unique("c", 0.0);
    backend.enqueue(&cancelled).await?;
    ensure_eq!(backend.cancel(cancelled.uuid, "test").await?, CancelOutcome::Cancelled);
    ensure_eq!(backend.enqueue(&unique("c", 0.0)).await?, Enqueued::New, "the key of a cancelled task");

    // Keys are the app's.
    let other = backend.for_app(&format!("{}-other", backend.app_name()));
    let elsewhere = other.enqueue(&unique("k", 0.0)).await;
    let flushed = other.flush().await;
    ensure_eq!(elsewhere?, Enqueued::New, "another app's task with the same key");
    flushed?;

    // Eight clients at once: one task.
    let racers: Vec<TaskRecord> = (0..8).map(|_| unique("race", 0.0)).collect();
    let outcomes = futures::future::join_all(racers.iter().map(|task| {
        let backend = backend.for_app(backend.app_name());
        let task = task.clone();
        async move { backend.enqueue(&task).await }
    }))
    .await;
    let outcomes = outcomes.into_iter().collect::<Result<Vec<_>, _>>()?;
    let winners: Vec<Uuid> =
        racers.iter().zip(&outcomes).filter(|(_, o)| **o == Enqueued::New).map(|(t, _)| t.uuid).collect();
    ensure_eq!(winners.len(), 1, "new tasks among 8 enqueues of one key at once: {outcomes:?}");
    for outcome in &outcomes {
        ensure!(
            *outcome == Enqueued::New || *outcome == Enqueued::Existing(winners[0]),
            "a racing enqueue did not give the winner's id: {outcome:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Bulk enqueue
// ---------------------------------------------------------------------------

pub(super) async fn check_enqueue_many<B: Backend + Clone>(backend: B) -> Outcome {
    let existing = add(&backend, "square", json!([0])).await?;
    let mut batch: Vec<(TaskRecord, Option<Duration>)> = (1..=300).map(|n| (in_queue("bulk", n), None)).collect();
    batch.push((existing.clone(), None));
    let repeated = batch[5].0.clone();
    batch.push((repeated.clone(), None));
    let first_unique = unique("bulk-key", 0.0);
    batch.push((first_unique.clone(), None));
    batch.push((unique("bulk-key", 0.0), None));
    let delayed = in_queue("bulk", 301);
    batch.push((delayed.clone(), Some(Duration::from_millis(300))));
    let enqueued_at = Instant::now();
    let outcomes = backend.enqueue_many(&batch).await?;
    ensure_eq!(outcomes.len(), batch.len(), "one outcome per task");
    ensure!(outcomes[..300].iter().all(|o| *o == Enqueued::New), "the 300 new tasks were not all new");
    ensure_eq!(outcomes[300], Enqueued::Existing(existing.uuid), "a task that existed before the batch");
    ensure_eq!(outcomes[301], Enqueued::Existing(repeated.uuid), "a task given twice in the batch");
    ensure_eq!(outcomes[302], Enqueued::New, "the first task of a unique key");
    ensure_eq!(outcomes[303], Enqueued::Existing(first_unique.uuid), "the second task of a unique key in the batch");
    ensure_eq!(outcomes[304], Enqueued::New, "a delayed task in the batch");

    let q = info(&backend, "bulk").await?;
    ensure_eq!((q.depth, q.delayed), (300, 1), "queue bulk after the batch: {q:?}");
    let mut got = Vec::new();
    while got.len() < 300 {
        let batch = fetch_from(&backend, &Fetch::queues(["bulk"]), 64, WAIT).await?;
        ensure!(!batch.is_empty(), "the bulk queue stopped giving after {} tasks", got.len());
        got.extend(batch);
    }
    let want: Vec<Uuid> = batch[..300].iter().map(|(t, _)| t.uuid).collect();
    ensure_eq!(ids_of(&got), want, "bulk-enqueued tasks in batch order");
    for (message, (task, _)) in got.iter().zip(&batch) {
        ensure_eq!(message.args, task.args, "the arguments of a bulk-enqueued task");
    }
    let late = fetch_from(&backend, &Fetch::queues(["bulk"]), 10, WAIT).await?;
    ensure_eq!(ids_of(&late), [delayed.uuid], "the delayed task of the batch");
    ensure!(enqueued_at.elapsed() + SLACK >= Duration::from_millis(300), "the delayed task of a batch came early");
    ensure_eq!(backend.enqueue_many(&[]).await?, Vec::<Enqueued>::new(), "an empty batch");
    Ok(())
}
