//! The key layout of an app on a Redis server (documented on
//! [`RedisBackend`](super::RedisBackend)): the names of every key under
//! `qtasks:{app}:` (on a cluster, under each queue's prefix and the
//! app-wide one), the queue entry's priority prefix, the fields of the
//! `stats` hash, and the helpers that tell an app's keys from those of an
//! app whose name starts the same.

use crate::model::{DEFAULT_QUEUE, TaskStatus};
use uuid::Uuid;

/// The keys of one app (see the key layout on `RedisBackend`).
pub(super) struct Keys {
    pub(super) app: String,
    pub(super) prefix: String,
    pub(super) task_prefix: String,
    pub(super) queue: String,
    pub(super) seq: String,
    pub(super) inflight: String,
    pub(super) held: String,
    pub(super) wake: String,
    pub(super) dead: String,
    pub(super) delayed: String,
    pub(super) stats: String,
    pub(super) done: String,
    pub(super) cancel: String,
    pub(super) config_prefix: String,
    /// `configs:{len}:{name}`: the set of the setting names of group `name`.
    pub(super) configs_prefix: String,
    /// Sorted set: holder id → liveness deadline (ms, server clock).
    pub(super) holders: String,
    /// When a holder was last seen (ms, server clock).
    pub(super) alive: String,
    /// `holds:{holder}`: the set of uuids a holder has taken.
    pub(super) holds_prefix: String,
    /// `claim:{len}:{key}`: one-time claims ([`Keys::claim`]).
    pub(super) claim_prefix: String,
    /// Set: the names of the paused queues.
    pub(super) paused: String,
    /// Set: the names of the queues other than the default one that got a task.
    pub(super) queues: String,
    /// Sorted set: every task, scored by `created_at` (the listing's index).
    pub(super) index: String,
}

/// The families of keys named `{family}:{len}:…` (a length, then a name):
/// the keys of named queues ([`Keys::queue_keys`]), concurrency slot sets
/// and rate buckets (named in `lua/fetch.lua`), unique keys
/// ([`Keys::unique`]), settings, their indexes and claims.
pub(super) const LENGTH_PREFIXED: [&str; 10] =
    ["queue:", "delayed:", "wake:", "running:", "slots:", "bucket:", "unique:", "config:", "configs:", "claim:"];

/// The keys of one queue the client side names (see [`Keys::queue_keys`];
/// its `queue` and `delayed` sorted sets are named by the scripts only).
pub(super) struct QueueKeys {
    /// List: a wake-up token for its blocked fetchers.
    pub(super) wake: String,
    /// Set: the uuids of its tasks in flight.
    pub(super) running: String,
}

impl Keys {
    /// The keys of `app` on one server: `qtasks:{app}:…`.
    pub(super) fn new(app: &str) -> Self {
        Self::with_prefix(app, format!("qtasks:{app}:"))
    }

    /// The app-wide keys of `app` on a cluster (settings, claims, the set
    /// of its queues): `qtasks:{<len>:<app>}:…`, one hash tag.
    pub(super) fn cluster_app(app: &str) -> Self {
        Self::with_prefix(app, format!("qtasks:{{{}:{app}}}:", app.len()))
    }

    /// The keys of queue `queue` of `app` on a cluster: a whole layout of
    /// its own under `qtasks:{<len>:<app>:<queue>}:…`, one hash tag, so
    /// each queue's keys share one slot and the queues of an app spread
    /// over the cluster. The length of the app name keeps the prefix of
    /// app `a`'s queue `b` apart from the app-wide prefix of an app `a:b`.
    pub(super) fn cluster_queue(app: &str, queue: &str) -> Self {
        Self::with_prefix(app, format!("qtasks:{{{}:{app}:{queue}}}:", app.len()))
    }

    fn with_prefix(app: &str, prefix: String) -> Self {
        let key = |name: &str| format!("{prefix}{name}");
        Self {
            app: app.to_owned(),
            task_prefix: key("task:"),
            queue: key("queue"),
            seq: key("seq"),
            inflight: key("inflight"),
            held: key("held"),
            wake: key("wake"),
            dead: key("dead"),
            delayed: key("delayed"),
            stats: key("stats"),
            done: key("done"),
            cancel: key("cancel"),
            config_prefix: key("config:"),
            configs_prefix: key("configs:"),
            holders: key("holders"),
            alive: key("alive"),
            holds_prefix: key("holds:"),
            claim_prefix: key("claim:"),
            paused: key("paused"),
            queues: key("queues"),
            index: key("index"),
            prefix,
        }
    }

    pub(super) fn task(&self, uuid: Uuid) -> String {
        format!("{}{}", self.task_prefix, uuid.hyphenated())
    }

    /// A shared setting: `config:{len(name)}:{name}:{key}`. The length keeps
    /// group `a` from matching the keys of a group `a:b`.
    pub(super) fn config_group(&self, name: &str) -> String {
        format!("{}{}:{name}:", self.config_prefix, name.len())
    }

    /// The index of a group of settings: `configs:{len(name)}:{name}`, the
    /// set of its setting names, so reading the group needs no `SCAN`.
    pub(super) fn config_index(&self, name: &str) -> String {
        format!("{}{}:{name}", self.configs_prefix, name.len())
    }

    /// The keys of queue `name`, as `queue_keys` in `lua/common.lua` names
    /// them: the default queue keeps `queue`, `delayed` and `wake`; another
    /// queue's keys go on with `:{len(name)}:{name}`.
    pub(super) fn queue_keys(&self, name: &str) -> QueueKeys {
        if name == DEFAULT_QUEUE {
            return QueueKeys { wake: self.wake.clone(), running: format!("{}running:7:default", self.prefix) };
        }
        let tail = format!("{}:{name}", name.len());
        let key = |family: &str| format!("{}{family}:{tail}", self.prefix);
        QueueKeys { wake: key("wake"), running: key("running") }
    }

    /// Sorted set: the tasks with `status`, scored by `created_at`.
    pub(super) fn status_index(&self, status: TaskStatus) -> String {
        format!("{}:{status}", self.index)
    }

    /// The listing's indexes: `index` and one per status.
    pub(super) fn index_keys(&self) -> Vec<String> {
        let mut out = vec![self.index.clone()];
        out.extend(STATUSES.iter().map(|s| self.status_index(*s)));
        out
    }

    /// The key holding the id of the task that holds unique key `key`.
    pub(super) fn unique(&self, key: &str) -> String {
        format!("{}unique:{}:{key}", self.prefix, key.len())
    }

    /// A claim: `claim:{len(key)}:{key}`. The digit after `claim:` tells
    /// it from the keys of an app named `{app}:claim`, whose names go on
    /// with a letter, so `flush` removes exactly this app's claims.
    pub(super) fn claim(&self, key: &str) -> String {
        format!("{}{}:{key}", self.claim_prefix, key.len())
    }
}

/// Every status, in the order of [`TaskStatus`].
pub(super) const STATUSES: [TaskStatus; 6] = [
    TaskStatus::New,
    TaskStatus::Process,
    TaskStatus::Success,
    TaskStatus::Error,
    TaskStatus::Cancel,
    TaskStatus::Retry,
];

/// The field of `P stats` counting the runs of `name` that ended `status`.
pub(super) const STATS_SEPARATOR: char = '\x1f';

/// The status part of the `P stats` field counting duplicate runs (the
/// fetch script writes `{name}\x1fduplicates`).
pub(super) const DUPLICATES: &str = "duplicates";

pub(super) fn stats_field(name: &str, status: TaskStatus) -> String {
    match status {
        TaskStatus::Success | TaskStatus::Error | TaskStatus::Retry | TaskStatus::Cancel => {
            format!("{name}{STATS_SEPARATOR}{status}")
        }
        TaskStatus::New | TaskStatus::Process => String::new(),
    }
}

/// `priority` as 16 hex digits whose byte order is the numeric order.
pub(super) fn priority_hex(priority: i64) -> String {
    format!("{:016x}", (priority as u64) ^ (1 << 63))
}

/// Escapes the glob characters of `SCAN … MATCH`.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `key` is the `holds:{holder}` set of one of this app's holders
/// (a holder id is 32 lowercase hex digits), not a key of an app whose name
/// starts the same.
pub(super) fn is_holds_key(keys: &Keys, key: &[u8]) -> bool {
    key.strip_prefix(keys.holds_prefix.as_bytes())
        .is_some_and(|id| id.len() == 32 && id.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)))
}

/// The uuid a record key ends with, if it is one of ours (`…task:{uuid}`).
pub(super) fn task_key_uuid<'a>(keys: &Keys, key: &'a [u8]) -> Option<&'a [u8]> {
    let rest = key.strip_prefix(keys.task_prefix.as_bytes())?;
    (rest.len() == 36 && Uuid::try_parse_ascii(rest).is_ok()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_prefixes_are_one_hash_tag_each() {
        assert_eq!(Keys::cluster_app("app").prefix, "qtasks:{3:app}:");
        let emails = Keys::cluster_queue("app", "emails");
        assert_eq!(emails.prefix, "qtasks:{3:app:emails}:");
        assert_eq!(emails.queue_keys("emails").wake, "qtasks:{3:app:emails}:wake:6:emails");
        // App `a`'s queue `b` and app `a:b` do not share a prefix.
        assert_ne!(Keys::cluster_queue("a", "b").prefix, Keys::cluster_app("a:b").prefix);
    }

    #[test]
    fn priority_hex_sorts_like_the_priority() {
        let ps = [i64::MIN, -1_000_000, -1, 0, 1, 2, 1 << 53, (1 << 53) + 1, i64::MAX];
        for w in ps.windows(2) {
            assert!(priority_hex(w[0]) < priority_hex(w[1]), "{} vs {}", w[0], w[1]);
        }
        assert_eq!(priority_hex(0).len(), 16);
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn only_task_uuid_keys_are_ours() {
        let keys = Keys::new("app");
        let uuid = Uuid::from_u128(7);
        assert!(task_key_uuid(&keys, keys.task(uuid).as_bytes()).is_some());
        assert!(task_key_uuid(&keys, b"qtasks:app:task:queue").is_none());
        assert!(task_key_uuid(&keys, b"qtasks:app:queue").is_none());
    }

    #[test]
    fn only_holder_sets_and_claims_are_ours() {
        let keys = Keys::new("app");
        let holder = Uuid::from_u128(7).simple().to_string();
        assert!(is_holds_key(&keys, format!("{}{holder}", keys.holds_prefix).as_bytes()));
        // Keys of an app called `app:holds`.
        assert!(!is_holds_key(&keys, b"qtasks:app:holds:queue"));
        assert!(!is_holds_key(&keys, b"qtasks:app:holds:task:0123456789abcdef0123456789abcdef"));
        assert_eq!(keys.claim("tick:1"), "qtasks:app:claim:6:tick:1");
    }

    #[test]
    fn the_default_queue_keeps_its_keys_and_others_are_length_prefixed() {
        let keys = Keys::new("app");
        let default = keys.queue_keys(DEFAULT_QUEUE);
        assert_eq!(
            (default.wake.as_str(), default.running.as_str()),
            ("qtasks:app:wake", "qtasks:app:running:7:default")
        );
        let emails = keys.queue_keys("emails");
        assert_eq!(
            (emails.wake.as_str(), emails.running.as_str()),
            ("qtasks:app:wake:6:emails", "qtasks:app:running:6:emails")
        );
        assert_eq!(keys.unique("square:[1]"), "qtasks:app:unique:10:square:[1]");
    }
}
