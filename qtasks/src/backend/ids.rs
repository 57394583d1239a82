//! Maps keyed by task id, hashed cheaply.
//!
//! Task ids are random (version 4) uuids made by qtasks itself, so their
//! bits are already uniform: folding them is as good a hash as SipHash, at a
//! fraction of its cost (it ran five times per task in the memory backend).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use uuid::Uuid;

/// A `HashMap` keyed by task id.
pub(crate) type UuidMap<V> = HashMap<Uuid, V, BuildHasherDefault<UuidHasher>>;

/// Folds the bytes it is given into 64 bits (see the module docs).
#[derive(Default)]
pub(crate) struct UuidHasher(u64);

impl Hasher for UuidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // The length prefix of the id's bytes: always 16, nothing to mix in.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_over_buckets_and_stay_distinct() {
        let mut map: UuidMap<usize> = UuidMap::default();
        let ids: Vec<Uuid> = (0..10_000).map(|_| Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            map.insert(*id, i);
        }
        assert!(ids.iter().enumerate().all(|(i, id)| map[id] == i));
        // The top 7 bits pick hashbrown's control byte: they must vary too.
        let tops: std::collections::HashSet<u64> = ids
            .iter()
            .map(|id| {
                let mut h = UuidHasher::default();
                std::hash::Hash::hash(id, &mut h);
                h.finish() >> 57
            })
            .collect();
        assert_eq!(tops.len(), 128);
    }
}
