//! Shared settings on Redis, for every backend that keeps them there (this
//! one and the Python-format ones): setting `name` of a group is the
//! string key `{group}{name}` (the group's key prefix, ending in `:`),
//! holding JSON, and the group's *index* is a set of its setting names, so
//! reading a whole group needs no `SCAN` of the keyspace (workers read the
//! plugin switches at every heartbeat). A setting and its index entry are
//! written and deleted together; names whose setting expired leave the
//! index as the group is read (`lua/configs.lua`). Settings written before
//! groups had indexes are added to it by [`index_found`], which the
//! owner calls once per group with the keys a `SCAN` found.

use super::scripts::CONFIGS;
use redis::RedisResult;
use redis::aio::ConnectionLike;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Mutex;

/// Writes setting `name` of group `group` (key prefix) and adds it to the
/// group's index, in one transaction.
pub(crate) async fn set(
    conn: &mut impl ConnectionLike,
    group: &str,
    index: &str,
    name: &str,
    json: String,
    ttl_ms: Option<u64>,
) -> RedisResult<()> {
    let mut set = redis::cmd("SET");
    set.arg(format!("{group}{name}")).arg(json);
    if let Some(ttl) = ttl_ms {
        set.arg("PX").arg(ttl);
    }
    redis::pipe().atomic().add_command(set).ignore().sadd(index, name).ignore().query_async(conn).await
}

/// Deletes setting `name` and its index entry, in one transaction.
pub(crate) async fn delete(conn: &mut impl ConnectionLike, group: &str, index: &str, name: &str) -> RedisResult<()> {
    redis::pipe().atomic().del(format!("{group}{name}")).ignore().srem(index, name).ignore().query_async(conn).await
}

/// Every live setting of the group, by name; one that is not JSON is
/// skipped with a warning.
pub(crate) async fn read_all(
    conn: &mut impl ConnectionLike,
    group: &str,
    index: &str,
) -> RedisResult<Map<String, Value>> {
    let pairs: Vec<(String, String)> = CONFIGS.key(index).arg(group).invoke_async(conn).await?;
    let mut out = Map::new();
    for (name, json) in pairs {
        match serde_json::from_str(&json) {
            Ok(value) => {
                out.insert(name, value);
            }
            Err(e) => tracing::warn!(key = %name, error = %e, "skipping an unreadable setting"),
        }
    }
    Ok(out)
}

/// Adds to the group's index the settings whose keys `found` holds (keys
/// starting with `group`, as a `SCAN` of `{group}*` lists them).
pub(crate) async fn index_found<K: AsRef<[u8]>>(
    conn: &mut impl ConnectionLike,
    group: &str,
    index: &str,
    found: &[K],
) -> RedisResult<()> {
    let names: Vec<&[u8]> = found.iter().filter_map(|k| k.as_ref().get(group.len()..)).collect();
    for chunk in names.chunks(1000) {
        let _: i64 = redis::cmd("SADD").arg(index).arg(chunk).query_async(conn).await?;
    }
    Ok(())
}

/// The groups whose older settings were indexed already (see
/// [`index_found`]), per backend.
#[derive(Default)]
pub(crate) struct Indexed(Mutex<HashSet<String>>);

impl Indexed {
    /// Whether `group` was indexed.
    pub(crate) fn contains(&self, group: &str) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).contains(group)
    }

    /// Notes that `group` was indexed.
    pub(crate) fn insert(&self, group: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(group.to_owned());
    }
}
