//! The task listing (`Backend::list_tasks`): a keyset page read along the
//! indexes `P index` / `P index:{status}` (sorted sets scored by
//! `created_at`, kept by the scripts), newest first, never a scan of the
//! keyspace. Members of equal score come in reverse uuid order, which is
//! the listing's tie order (a hyphenated uuid sorts as its bytes).
//!
//! The index gives candidates in order; their records are read in one
//! pipeline per batch and filtered by name and queue here. A filter that
//! matches few tasks could make a page read the whole index, so one call
//! reads at most [`BUDGET`] index entries: past it the page ends short,
//! with a cursor to go on from.

use super::codec::{RECORD_FIELDS, RecordFields, decode_record};
use super::keys::{Keys, STATUSES};
use super::{KIND, RedisBackend, redis_error};
use crate::backend::{BackendError, TaskCursor, TaskPage, TaskQuery};
use uuid::Uuid;

/// How many index entries one page reads at most.
pub(super) const BUDGET: usize = 10_000;

/// A score bound of `ZREVRANGEBYSCORE`: inclusive, or exclusive (`(x`).
fn bound(score: f64, inclusive: bool) -> String {
    if inclusive { format!("{score:?}") } else { format!("({score:?}") }
}

impl RedisBackend {
    pub(super) async fn list_page(&self, query: &TaskQuery) -> Result<TaskPage, BackendError> {
        if self.shared.conns.cluster.is_none() {
            return self.list_page_at(&self.shared.keys, query).await;
        }
        // On a cluster: each queue's page, merged. A queue's page that
        // ends with a cursor knows nothing past it: the merged page stops
        // there too.
        let (mut all, mut stop) = (Vec::new(), None::<TaskCursor>);
        for keys in self.homes().await? {
            let page = self.list_page_at(&keys, query).await?;
            all.extend(page.tasks);
            if let Some(next) = page.next
                && stop.as_ref().is_none_or(|s| next.is_before(s))
            {
                stop = Some(next);
            }
        }
        all.sort_by(|a, b| TaskCursor::of(a).cmp_newest_first(&TaskCursor::of(b)));
        if let Some(stop) = stop {
            all.retain(|t| !stop.is_before(&TaskCursor::of(t)));
        }
        let mut page = TaskPage::cut(all, query.page_size());
        if page.next.is_none() {
            page.next = stop;
        }
        Ok(page)
    }

    /// A page of the tasks under `keys`.
    async fn list_page_at(&self, keys: &Keys, query: &TaskQuery) -> Result<TaskPage, BackendError> {
        let index = match query.status {
            Some(status) => keys.status_index(status),
            None => keys.index.clone(),
        };
        let size = query.page_size();
        let batch = (size + 1).clamp(50, 1000);
        let min = query.since.map_or_else(|| "-inf".to_owned(), |s| bound(s, true));
        // The upper bound: the cursor's score (inclusive: ties are sorted
        // out by uuid below) or `until` (exclusive), the lower of the two.
        let (mut max_score, mut inclusive) = (f64::INFINITY, true);
        if let Some(until) = query.until {
            (max_score, inclusive) = (until, false);
        }
        if let Some(after) = query.after
            && after.created_at <= max_score
        {
            (max_score, inclusive) = (after.created_at, true);
        }
        let mut offset = 0usize;
        let mut read = 0usize;
        let mut tasks = Vec::with_capacity(size + 1);
        let mut last_seen: Option<TaskCursor> = None;
        let mut conn = self.conn();
        loop {
            let max = if max_score == f64::INFINITY { "+inf".to_owned() } else { bound(max_score, inclusive) };
            let entries: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(&index)
                .arg(&max)
                .arg(&min)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(offset)
                .arg(batch)
                .query_async(&mut conn)
                .await
                .map_err(redis_error("listing tasks"))?;
            read += entries.len();
            let candidates: Vec<(Uuid, f64)> = entries
                .iter()
                .filter_map(|(id, score)| Some((id.parse::<Uuid>().ok()?, *score)))
                .filter(|(uuid, score)| {
                    query.after.is_none_or(|c| c.is_before(&TaskCursor { created_at: *score, uuid: *uuid }))
                })
                .collect();
            if !candidates.is_empty() {
                let mut pipe = redis::pipe();
                for (uuid, _) in &candidates {
                    pipe.cmd("HMGET").arg(keys.task(*uuid)).arg(&RECORD_FIELDS[..]);
                }
                let records: Vec<RecordFields> =
                    pipe.query_async(&mut conn).await.map_err(redis_error("reading tasks"))?;
                let mut gone = Vec::new();
                for ((uuid, score), (data, status, started)) in candidates.iter().zip(records) {
                    last_seen = Some(TaskCursor { created_at: *score, uuid: *uuid });
                    let Some(data) = data else {
                        gone.push(*uuid);
                        continue;
                    };
                    match decode_record(&data, status.as_deref(), started) {
                        Ok(task) if query.matches(&task) => {
                            tasks.push(task);
                            if tasks.len() > size {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(backend = KIND, %uuid, error = %e, "skipping an undecodable task record")
                        }
                    }
                }
                if !gone.is_empty() {
                    self.forget(keys, &gone).await?;
                }
            }
            if tasks.len() > size {
                return Ok(TaskPage::cut(tasks, size));
            }
            if entries.len() < batch {
                return Ok(TaskPage::cut(tasks, size));
            }
            if read >= BUDGET {
                // The page ends short; the next one goes on from here.
                let mut page = TaskPage::cut(tasks, size);
                page.next = last_seen.or(page.next);
                return Ok(page);
            }
            // The next batch: from the last score read, past the entries
            // of that score already read.
            let last = entries[entries.len() - 1].1;
            let same = entries.iter().rev().take_while(|(_, s)| *s == last).count();
            if last == max_score && inclusive {
                offset += same;
            } else {
                (max_score, inclusive, offset) = (last, true, same);
            }
        }
    }

    /// Drops tasks whose record is gone (expired, flushed) or holds no
    /// data from the listing's indexes. A record that is left loses its
    /// `at` field (its score in the indexes), so a later status change
    /// does not put it back in one.
    async fn forget(&self, keys: &Keys, uuids: &[Uuid]) -> Result<(), BackendError> {
        let ids: Vec<String> = uuids.iter().map(|u| u.hyphenated().to_string()).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM").arg(&keys.index).arg(&ids).ignore();
        for status in STATUSES {
            pipe.cmd("ZREM").arg(keys.status_index(status)).arg(&ids).ignore();
        }
        for uuid in uuids {
            // `HDEL` creates no key where the record is gone.
            pipe.cmd("HDEL").arg(keys.task(*uuid)).arg("at").ignore();
        }
        let () = pipe.query_async(&mut self.conn()).await.map_err(redis_error("trimming the task index"))?;
        Ok(())
    }
}
