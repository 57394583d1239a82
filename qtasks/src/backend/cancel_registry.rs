//! Which running task has which cancellation token, in one process.

use super::UuidMap;
use crate::task::CancelToken;
use std::collections::VecDeque;
use std::sync::Mutex;
use uuid::Uuid;

/// Locks, picked by task id, so workers registering different tasks rarely meet.
const SHARDS: usize = 16;

/// Requests that arrive for a task before its worker registered its token
/// are kept, this many per shard, so the late registration still sees them;
/// requests for tasks run by other processes age out.
const PENDING_KEPT: usize = 64;

/// The tokens of the tasks running in this process, by id.
#[derive(Default)]
pub(crate) struct CancelRegistry {
    shards: [Mutex<Inner>; SHARDS],
}

#[derive(Default)]
struct Inner {
    running: UuidMap<CancelToken>,
    pending: VecDeque<(Uuid, String)>,
}

impl CancelRegistry {
    fn lock(&self, uuid: &Uuid) -> std::sync::MutexGuard<'_, Inner> {
        let shard = &self.shards[(uuid.as_u128() as usize) % SHARDS];
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a task that starts running; fires its token at once if a
    /// request for it came first.
    pub(crate) fn watch(&self, uuid: Uuid, token: &CancelToken) {
        let mut inner = self.lock(&uuid);
        if let Some(i) = inner.pending.iter().position(|(id, _)| *id == uuid)
            && let Some((_, reason)) = inner.pending.remove(i)
        {
            token.cancel(reason);
        }
        inner.running.insert(uuid, token.clone());
    }

    /// Forgets a task that finished.
    pub(crate) fn unwatch(&self, uuid: Uuid) {
        self.lock(&uuid).running.remove(&uuid);
    }

    /// Fires the token of `uuid` if it runs here; otherwise keeps the request
    /// for a registration that may still come. Returns whether it ran here.
    pub(crate) fn signal(&self, uuid: Uuid, reason: &str) -> bool {
        let mut inner = self.lock(&uuid);
        if let Some(token) = inner.running.get(&uuid) {
            token.cancel(reason);
            return true;
        }
        if inner.pending.len() == PENDING_KEPT {
            inner.pending.pop_front();
        }
        inner.pending.push_back((uuid, reason.to_owned()));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_before_registration_is_not_lost() {
        let registry = CancelRegistry::default();
        let uuid = Uuid::new_v4();
        assert!(!registry.signal(uuid, "stop"));
        let token = CancelToken::new();
        registry.watch(uuid, &token);
        assert_eq!(token.reason(), Some("stop"));
    }

    #[test]
    fn a_running_task_is_signalled() {
        let registry = CancelRegistry::default();
        let uuid = Uuid::new_v4();
        let token = CancelToken::new();
        registry.watch(uuid, &token);
        assert!(registry.signal(uuid, "now"));
        assert!(token.is_cancelled());
        registry.unwatch(uuid);
        assert!(!registry.signal(uuid, "again"));
    }
}
