//! The memory store's table of idempotency keys: which keyed writes were applied, with what
//! request and result, until their retention ends. Lives in [`Tables`](super::tables::Tables)
//! under the same lock as the metrics, so a keyed write checks, applies and records in one
//! step, and a snapshot captures metrics and keys at the same version.
//!
//! Memory: a held key costs one hash-map entry (16-byte digest, 16-byte fingerprint, the
//! stored value, the write's version and time: about 160 bytes with the map's slack and the
//! expiry queue), whatever the key's length. At most `max_keys` are held.

use std::collections::{HashMap, VecDeque};

use crate::store::idempotency::{Digest16, Fingerprint, Key, KeyOptions};
use crate::store::{StoreError, Value};

/// What the table remembers of one applied key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Held {
    /// The request the key was first used with.
    pub(crate) fingerprint: Fingerprint,
    /// What a single-metric write stored (its reply carries it); `None` for a batch.
    pub(crate) stored: Option<Value>,
    /// The tables' version after the write: which snapshot makes it durable. Keys restored
    /// from a file are at version 0 (durable).
    pub(crate) version: u64,
    /// When the write was applied, unix seconds: the retention counts from here.
    pub(crate) applied_at: u64,
}

/// The applied keys, and the order in which they expire.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    held: HashMap<Digest16, Held>,
    /// `(applied_at, digest)`, oldest first (times never decrease along it).
    expiry: VecDeque<(u64, Digest16)>,
    options: KeyOptions,
}

impl KeyTable {
    pub(crate) fn new(options: KeyOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// A table holding `restored` keys (from the key log), minus those expired at `now`.
    pub(crate) fn restored(
        options: KeyOptions,
        mut restored: Vec<(Digest16, Held)>,
        now: u64,
    ) -> Self {
        restored.sort_by_key(|(_, held)| held.applied_at);
        let mut table = Self::new(options);
        for (digest, held) in restored {
            if !table.expired(held.applied_at, now) {
                table.insert(digest, Held { version: 0, ..held });
            }
        }
        table
    }

    /// Looks `key` up before its write: `Ok(None)` when it is new (the write may proceed),
    /// `Ok(Some)` when it was applied with the same request (a repeat), an error when it was
    /// applied with another request or when the table is full.
    pub(crate) fn check(&mut self, key: &Key, now: u64) -> Result<Option<Held>, StoreError> {
        self.expire(now);
        match self.held.get(&key.digest) {
            Some(held) if held.fingerprint == key.fingerprint => Ok(Some(*held)),
            Some(_) => Err(StoreError::KeyReused {
                key: key.text.clone(),
            }),
            None if self.held.len() >= self.options.max_keys => {
                Err(StoreError::Unavailable(format!(
                    "{} idempotency keys are held (IDEMPOTENCY_MAX_KEYS) and none is older than IDEMPOTENCY_RETENTION ({}): the write was not applied, retry later",
                    self.held.len(),
                    humantime::format_duration(self.options.retention)
                )))
            }
            None => Ok(None),
        }
    }

    /// Records a key whose write was just applied (after [`check`](Self::check) said it was new).
    pub(crate) fn record(&mut self, key: &Key, stored: Option<Value>, version: u64, now: u64) {
        self.insert(
            key.digest,
            Held {
                fingerprint: key.fingerprint,
                stored,
                version,
                applied_at: now,
            },
        );
    }

    fn insert(&mut self, digest: Digest16, held: Held) {
        // A clock that steps back must not break the queue's order.
        let at = self
            .expiry
            .back()
            .map_or(held.applied_at, |(last, _)| held.applied_at.max(*last));
        self.expiry.push_back((at, digest));
        self.held.insert(
            digest,
            Held {
                applied_at: at,
                ..held
            },
        );
    }

    fn expired(&self, applied_at: u64, now: u64) -> bool {
        now.saturating_sub(applied_at) >= self.options.retention.as_secs()
    }

    /// Forgets the keys whose retention ended.
    pub(crate) fn expire(&mut self, now: u64) {
        while let Some(&(at, digest)) = self.expiry.front() {
            if !self.expired(at, now) {
                break;
            }
            self.expiry.pop_front();
            self.held.remove(&digest);
        }
    }

    /// Number of keys held.
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// The keys recorded after the write that brought the tables to `version`, oldest first:
    /// what the next record of the key log holds. Costs the keys returned, not the table.
    pub(crate) fn since(&self, version: u64) -> Vec<(Digest16, Held)> {
        let mut out: Vec<(Digest16, Held)> = self
            .expiry
            .iter()
            .rev()
            .filter_map(|(_, digest)| self.held.get(digest).map(|held| (*digest, *held)))
            .take_while(|(_, held)| held.version > version)
            .collect();
        out.reverse();
        out
    }

    /// Every held key, oldest first: what a rewritten key log holds.
    pub(crate) fn entries(&self) -> Vec<(Digest16, Held)> {
        self.expiry
            .iter()
            .filter_map(|(_, digest)| self.held.get(digest).map(|held| (*digest, *held)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn options(retention_secs: u64, max_keys: usize) -> KeyOptions {
        KeyOptions {
            retention: Duration::from_secs(retention_secs),
            max_keys,
        }
    }

    fn key(text: &str, body: &[u8]) -> Key {
        Key::new(text, "updates", "/updates/", body)
    }

    #[test]
    fn a_key_is_new_then_a_repeat_then_reused_with_another_body() {
        let mut table = KeyTable::new(options(600, 10));
        let k = key("a:1", b"[1]");
        assert_eq!(table.check(&k, 100), Ok(None));
        table.record(&k, Some(Value::Counter(7)), 3, 100);
        let held = table.check(&k, 101).unwrap().unwrap();
        assert_eq!((held.stored, held.version), (Some(Value::Counter(7)), 3));
        assert_eq!(
            table.check(&key("a:1", b"[2]"), 102),
            Err(StoreError::KeyReused { key: "a:1".into() })
        );
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn keys_expire_after_the_retention_and_a_full_table_refuses() {
        let mut table = KeyTable::new(options(600, 2));
        table.record(&key("a", b""), None, 1, 1000);
        table.record(&key("b", b""), None, 2, 1100);
        let refused = table.check(&key("c", b""), 1500).unwrap_err();
        assert!(
            matches!(&refused, StoreError::Unavailable(why) if why.contains("IDEMPOTENCY_MAX_KEYS")),
            "{refused:?}"
        );
        // At 1600 the first key's 600 s are over: it is forgotten, room for a new one.
        assert_eq!(table.check(&key("c", b""), 1600), Ok(None));
        assert_eq!(table.len(), 1);
        assert!(table.check(&key("a", b""), 1600).unwrap().is_none());
        assert!(table.check(&key("b", b""), 1600).unwrap().is_some());
    }

    #[test]
    fn restored_keys_are_durable_and_expired_ones_are_dropped() {
        let mut table = KeyTable::new(options(600, 10));
        table.record(&key("old", b""), None, 5, 100);
        table.record(&key("new", b""), Some(Value::Gauge(1.5)), 6, 900);
        let mut again = KeyTable::restored(options(600, 10), table.entries(), 1000);
        assert_eq!(again.len(), 1);
        let held = again.check(&key("new", b""), 1000).unwrap().unwrap();
        assert_eq!((held.version, held.stored), (0, Some(Value::Gauge(1.5))));
    }

    #[test]
    fn a_clock_stepping_back_keeps_the_expiry_order() {
        let mut table = KeyTable::new(options(600, 10));
        table.record(&key("a", b""), None, 1, 1000);
        table.record(&key("b", b""), None, 2, 500);
        table.expire(1599);
        assert_eq!(table.len(), 2);
        table.expire(1600);
        assert_eq!(table.len(), 0);
    }
}
