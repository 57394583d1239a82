//! The runs that ended per minute (`Backend::minute_counts`): the scripts
//! that count a run in `P stats` (finish, cancel, bury) also count it in
//! the hash of the current minute, `P stats:{minute}` (minutes since the
//! epoch, server clock; field: the status), which expires a little over
//! an hour later (`count_minute` in `lua/common.lua`). A read is one
//! pipeline of `HGETALL`s, one per minute asked for.

use super::{RedisBackend, redis_error};
use crate::backend::{BackendError, MINUTES_KEPT, MinuteCount};
use crate::model::{TaskStatus, Timestamp};
use std::collections::HashMap;
use std::ops::RangeInclusive;

/// Minutes read past both ends of the kept hour: the server's clock, which
/// names the hashes, may differ a little from this one.
const SLACK: i64 = 2;

impl RedisBackend {
    /// The key of the hash of minute `minute` (minutes since the epoch).
    fn minute_key(&self, minute: i64) -> String {
        format!("{}:{minute}", self.shared.keys.stats)
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
        let mut pipe = redis::pipe();
        for minute in minutes.clone() {
            pipe.cmd("HGETALL").arg(self.minute_key(minute));
        }
        let read: Vec<HashMap<String, u64>> =
            pipe.query_async(&mut self.conn()).await.map_err(redis_error("reading the counts per minute"))?;
        Ok(minutes
            .zip(read)
            .filter(|(_, fields)| !fields.is_empty())
            .map(|(minute, fields)| {
                let mut count = MinuteCount { at: minute * 60, ..MinuteCount::default() };
                for (status, n) in fields {
                    if let Some(status) = TaskStatus::parse(&status) {
                        count.add(status, n);
                    }
                }
                count
            })
            .collect())
    }

    /// Deletes the app's hashes of the minutes (on `flush`).
    pub(super) async fn forget_minutes(&self) -> Result<(), BackendError> {
        let keys: Vec<String> = Self::minutes_from(0.0).map(|m| self.minute_key(m)).collect();
        let _: i64 = redis::cmd("UNLINK")
            .arg(keys)
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error("flushing the counts per minute"))?;
        Ok(())
    }
}
