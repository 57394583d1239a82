//! The runs that ended per minute (`Backend::minute_counts`): the scripts
//! that count a run in `P stats` (finish, cancel, bury) also count it in
//! the hash of the current minute, `P stats:{minute}` (minutes since the
//! epoch, server clock; field: the status), which expires a little over
//! an hour later (`count_minute` in `lua/common.lua`). A read is one
//! pipeline of `HGETALL`s, one per minute asked for (on a cluster, one per
//! queue's home, summed).

use super::keys::Keys;
use super::{RedisBackend, redis_error};
use crate::backend::{BackendError, MINUTES_KEPT, MinuteCount};
use crate::model::{TaskStatus, Timestamp};
use std::collections::HashMap;
use std::ops::RangeInclusive;

/// Minutes read past both ends of the kept hour: the server's clock, which
/// names the hashes, may differ a little from this one.
const SLACK: i64 = 2;

impl RedisBackend {
    /// The key of the hash of minute `minute` (minutes since the epoch)
    /// next to the stats hash of `keys`.
    fn minute_key(keys: &Keys, minute: i64) -> String {
        format!("{}:{minute}", keys.stats)
    }

    /// The minutes (since the epoch) whose hashes may exist now, from the
    /// one holding `since` on.
    fn minutes_from(since: Timestamp) -> RangeInclusive<i64> {
        let now = MinuteCount::minute_of(crate::model::now()) / 60;
        let kept = (MINUTES_KEPT.as_secs() / 60) as i64;
        let first = (MinuteCount::minute_of(since) / 60).max(now - kept - SLACK);
        first..=now + SLACK
    }

    /// The runs that ended per minute since `since`, oldest first, quiet
    /// minutes left out.
    pub(super) async fn read_minutes(&self, since: Timestamp) -> Result<Vec<MinuteCount>, BackendError> {
        let minutes = Self::minutes_from(since);
        if minutes.is_empty() {
            return Ok(Vec::new());
        }
        let mut counts: Vec<MinuteCount> =
            minutes.clone().map(|minute| MinuteCount { at: minute * 60, ..MinuteCount::default() }).collect();
        let mut seen = vec![false; counts.len()];
        for keys in self.homes().await? {
            let mut pipe = redis::pipe();
            for minute in minutes.clone() {
                pipe.cmd("HGETALL").arg(Self::minute_key(&keys, minute));
            }
            let read: Vec<HashMap<String, u64>> =
                pipe.query_async(&mut self.conn()).await.map_err(redis_error("reading the counts per minute"))?;
            for ((count, seen), fields) in counts.iter_mut().zip(&mut seen).zip(read) {
                *seen |= !fields.is_empty();
                for (status, n) in fields {
                    if let Some(status) = TaskStatus::parse(&status) {
                        count.add(status, n);
                    }
                }
            }
        }
        Ok(counts.into_iter().zip(seen).filter(|(_, seen)| *seen).map(|(count, _)| count).collect())
    }

    /// Deletes the hashes of the minutes next to `keys` (on `flush`).
    pub(super) async fn forget_minutes(&self, keys: &Keys) -> Result<(), BackendError> {
        let keys: Vec<String> = Self::minutes_from(0.0).map(|m| Self::minute_key(keys, m)).collect();
        let _: i64 = redis::cmd("UNLINK")
            .arg(keys)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error("flushing the counts per minute"))?;
        Ok(())
    }
}
