//! The check of `Backend::list_tasks`: keyset pages newest first, filters.

use super::*;
use crate::backend::{TaskCursor, TaskQuery};

/// Every page of `query`, following `next`; fails past `max_pages`.
async fn all_pages<B: Backend>(backend: &B, query: TaskQuery, max_pages: usize) -> Result<Vec<TaskRecord>, BoxError> {
    let mut out = Vec::new();
    let mut query = query;
    for _ in 0..max_pages {
        let page = backend.list_tasks(&query).await?;
        ensure!(page.tasks.len() <= query.page_size(), "a page of {} for a limit of {}", page.tasks.len(), query.limit);
        out.extend(page.tasks);
        match page.next {
            Some(next) => query = query.after(Some(next)),
            None => return Ok(out),
        }
    }
    Err(format!("more than {max_pages} pages").into())
}

fn uuids(tasks: &[TaskRecord]) -> Vec<Uuid> {
    tasks.iter().map(|t| t.uuid).collect()
}

pub(super) async fn check_listing<B: Backend>(backend: B) -> Outcome {
    // 30 tasks, enqueued one second apart in `created_at` (two share one
    // instant: the uuid breaks the tie), of two names in two queues.
    let base = crate::model::now() - 1000.0;
    let mut tasks = Vec::new();
    for i in 0..30u32 {
        let mut task = new_task(if i % 3 == 0 { "cube" } else { "square" }, json!([i]));
        task.created_at = base + f64::from(i.min(28));
        task.updated_at = task.created_at;
        if i % 2 == 0 {
            task.queue = "listing".into();
        }
        backend.enqueue(&task).await?;
        tasks.push(task);
    }
    let mut newest_first = tasks.clone();
    newest_first.sort_by(|a, b| TaskCursor::of(a).cmp_newest_first(&TaskCursor::of(b)));
    ensure_eq!(newest_first[0].created_at, newest_first[1].created_at, "two share an instant");

    // An app of another name sees none of them, and they see none of its.
    let other = backend.for_app(&format!("{}-listing-other", backend.app_name()));
    other.enqueue(&new_task("square", json!([99]))).await?;
    let outcome = async {
        ensure_eq!(other.list_tasks(&TaskQuery::newest(100)).await?.tasks.len(), 1);

        let listed = all_pages(&backend, TaskQuery::newest(7), 10).await?;
        ensure_eq!(uuids(&listed), uuids(&newest_first), "every task once, newest first, ties by uuid");
        let first = backend.list_tasks(&TaskQuery::newest(7)).await?;
        ensure_eq!(first.tasks.len(), 7);
        ensure_eq!(first.next, Some(TaskCursor::of(&newest_first[6])), "the cursor is the last task of the page");
        let whole = backend.list_tasks(&TaskQuery::newest(30)).await?;
        ensure!(whole.next.is_none(), "a page that holds every task has no next");

        let by_name = all_pages(&backend, TaskQuery::newest(4).task_name("cube"), 10).await?;
        let expected: Vec<Uuid> = newest_first.iter().filter(|t| t.task_name == "cube").map(|t| t.uuid).collect();
        ensure_eq!(uuids(&by_name), expected, "filtered by name");
        let by_queue = all_pages(&backend, TaskQuery::newest(5).queue("listing"), 10).await?;
        let expected: Vec<Uuid> = newest_first.iter().filter(|t| t.queue == "listing").map(|t| t.uuid).collect();
        ensure_eq!(uuids(&by_queue), expected, "filtered by queue");
        let window = backend.list_tasks(&TaskQuery::newest(100).created(Some(base + 10.0), Some(base + 20.0))).await?;
        let expected: Vec<Uuid> = newest_first
            .iter()
            .filter(|t| t.created_at >= base + 10.0 && t.created_at < base + 20.0)
            .map(|t| t.uuid)
            .collect();
        ensure_eq!(uuids(&window.tasks), expected, "filtered by enqueue time");

        // Statuses: take three from the default queue, finish one.
        let mut taken = Vec::new();
        backend.fetch(&Fetch::default_queue(), 3, &mut taken).await?;
        ensure_eq!(taken.len(), 3);
        backend.finish(&TaskRecord::from_message(&taken[0], TaskStatus::Success)).await?;
        let running = backend.list_tasks(&TaskQuery::newest(100).status(TaskStatus::Process)).await?;
        let mut expected: Vec<Uuid> = taken[1..].iter().map(|m| m.uuid).collect();
        let mut got = uuids(&running.tasks);
        expected.sort();
        got.sort();
        ensure_eq!(got, expected, "filtered by status process");
        let done = backend.list_tasks(&TaskQuery::newest(100).status(TaskStatus::Success)).await?;
        ensure_eq!(uuids(&done.tasks), vec![taken[0].uuid], "filtered by status success");
        let queued = all_pages(&backend, TaskQuery::newest(6).status(TaskStatus::New), 10).await?;
        ensure_eq!(queued.len(), 27, "the others are new");
        for message in &taken[1..] {
            backend.finish(&TaskRecord::from_message(message, TaskStatus::Success)).await?;
        }
        Ok::<(), BoxError>(())
    }
    .await;
    let flushed = other.flush().await;
    outcome?;
    flushed?;
    Ok(())
}
