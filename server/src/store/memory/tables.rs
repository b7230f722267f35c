//! The maps of the memory store: every gauge and counter with the time it was last written,
//! the idempotency keys applied, the write version, and how a batch is applied to them (all of
//! it or nothing, and never past [`MaxMetrics`] names per type) and metrics removed (deletes
//! and expiry). Knows nothing about files or durability.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use golectra_common::metric::{MetricKind, Update};

use super::keys::KeyTable;
use crate::store::snapshot::Restored;
use crate::store::{Batch, Cutoff, MaxMetrics, Reading, Removed, Selection, StoreError, Value};

/// A stored value and when it was last written, in Unix milliseconds (8 bytes, not the 16 of a
/// `SystemTime`: the maps hold up to `MAX_METRICS` of each).
pub(super) type Slot<T> = (T, u64);

/// `at` in Unix milliseconds (0 before the epoch).
pub(crate) fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64)
}

/// The time `ms` Unix milliseconds stand for.
pub(crate) fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Every metric of the store; kept behind the store's `RwLock`.
#[derive(Default)]
pub(super) struct Tables {
    pub(super) gauges: HashMap<String, Slot<f64>>,
    pub(super) counters: HashMap<String, Slot<i64>>,
    /// Number of writes applied since start; identifies what a snapshot contains.
    pub(super) version: u64,
    pub(super) updated_at: Option<SystemTime>,
    /// The idempotency keys of applied writes, captured by every snapshot with the metrics.
    pub(super) keys: KeyTable,
    /// The most gauges, and the most counters, held (`MAX_METRICS`).
    pub(super) max_metrics: MaxMetrics,
}

impl Tables {
    /// Empty tables holding at most `max_metrics` names per type.
    pub(super) fn new(keys: KeyTable, max_metrics: MaxMetrics) -> Self {
        Self {
            keys,
            max_metrics,
            ..Self::default()
        }
    }

    /// Tables holding `restored` (the contents of a snapshot file) and its keys, at version 0.
    /// A snapshot may hold more than `max_metrics` (the limit was lowered): all of it is kept,
    /// and new names are refused until the limit is raised again. An entry without its time
    /// (a file of the original's, or of an older Golectra) counts as written when the file was.
    pub(super) fn restored(restored: Restored, keys: KeyTable, max_metrics: MaxMetrics) -> Self {
        let mut tables = Self::new(keys, max_metrics);
        let file_time = restored
            .written
            .map_or_else(|| unix_ms(SystemTime::now()), unix_ms);
        for (update, written) in restored.metrics {
            let at = written.unwrap_or(file_time);
            match update {
                Update::Gauge { name, value } => {
                    tables.gauges.insert(name, (value, at));
                }
                Update::Counter { name, delta } => {
                    tables.counters.insert(name, (delta, at));
                }
            }
        }
        tables
    }

    /// Applies `batch` completely or, on a counter overflow or when it would add names past
    /// `MAX_METRICS`, not at all; bumps the version.
    pub(super) fn apply(&mut self, batch: &Batch) -> Result<(), StoreError> {
        // Check everything first so that a batch is applied completely or not at all.
        self.max_metrics.check(
            MetricKind::Gauge,
            self.gauges.len(),
            new_names(&self.gauges, &batch.gauges, self.max_metrics),
        )?;
        self.max_metrics.check(
            MetricKind::Counter,
            self.counters.len(),
            new_names(&self.counters, &batch.counters, self.max_metrics),
        )?;
        for (name, delta) in &batch.counters {
            let current = self.counters.get(name.as_str()).map_or(0, |c| c.0);
            if current.checked_add(*delta).is_none() {
                return Err(StoreError::Overflow { name: name.clone() });
            }
        }
        let now = SystemTime::now();
        let at = unix_ms(now);
        for (name, value) in &batch.gauges {
            match self.gauges.get_mut(name.as_str()) {
                Some(slot) => *slot = (*value, at),
                None => {
                    self.gauges.insert(name.clone(), (*value, at));
                }
            }
        }
        for (name, delta) in &batch.counters {
            match self.counters.get_mut(name.as_str()) {
                Some(slot) => *slot = (slot.0 + delta, at),
                None => {
                    self.counters.insert(name.clone(), (*delta, at));
                }
            }
        }
        self.version += 1;
        self.updated_at = Some(now);
        Ok(())
    }

    /// Removes the `gauges` and `counters` named (those stored), and bumps the version when
    /// any was; returns the names removed.
    pub(super) fn remove(&mut self, gauges: Vec<String>, counters: Vec<String>) -> Removed {
        let gauges: Vec<String> = gauges
            .into_iter()
            .filter(|n| self.gauges.remove(n.as_str()).is_some())
            .collect();
        let counters: Vec<String> = counters
            .into_iter()
            .filter(|n| self.counters.remove(n.as_str()).is_some())
            .collect();
        let removed = Removed { gauges, counters };
        if !removed.is_empty() {
            self.version += 1;
            self.updated_at = Some(SystemTime::now());
        }
        removed
    }

    /// The names `selection` picks: `(gauges, counters)`.
    pub(super) fn selected(&self, selection: &Selection) -> (Vec<String>, Vec<String>) {
        if let Some((kind, name)) = selection.name() {
            let pick = |k: MetricKind, stored: bool| -> Vec<String> {
                let wanted = kind.is_none_or(|kind| kind == k);
                (wanted && stored)
                    .then(|| name.to_owned())
                    .into_iter()
                    .collect()
            };
            return (
                pick(MetricKind::Gauge, self.gauges.contains_key(name)),
                pick(MetricKind::Counter, self.counters.contains_key(name)),
            );
        }
        let pick = |kind, names: &mut dyn Iterator<Item = &String>| -> Vec<String> {
            names
                .filter(|name| selection.selects(kind, name))
                .cloned()
                .collect()
        };
        (
            pick(MetricKind::Gauge, &mut self.gauges.keys()),
            pick(MetricKind::Counter, &mut self.counters.keys()),
        )
    }

    /// At most `cutoff.limit` names last written before their type's cutoff: `(gauges,
    /// counters)`.
    pub(super) fn expired(&self, cutoff: &Cutoff) -> (Vec<String>, Vec<String>) {
        let gauges: Vec<String> = written_before(&self.gauges, cutoff.gauges)
            .take(cutoff.limit)
            .cloned()
            .collect();
        let counters = written_before(&self.counters, cutoff.counters)
            .take(cutoff.limit - gauges.len())
            .cloned()
            .collect();
        (gauges, counters)
    }

    /// Keeps of `names` those still last written before `before` (a write may have come
    /// between the expiry pass's look and its removal).
    pub(super) fn still_older<T>(
        map: &HashMap<String, Slot<T>>,
        names: Vec<String>,
        before: Option<SystemTime>,
    ) -> Vec<String> {
        let Some(before) = before.map(unix_ms) else {
            return Vec::new();
        };
        names
            .into_iter()
            .filter(|n| map.get(n.as_str()).is_some_and(|v| v.1 < before))
            .collect()
    }

    /// The value `update`, once applied, left stored (a counter's new total).
    pub(super) fn stored(&self, update: &Update) -> Value {
        match update {
            Update::Gauge { value, .. } => Value::Gauge(*value),
            Update::Counter { name, .. } => Value::Counter(self.counters[name.as_str()].0),
        }
    }

    pub(super) fn get(&self, kind: MetricKind, name: &str) -> Option<Value> {
        match kind {
            MetricKind::Gauge => self.gauges.get(name).map(|v| Value::Gauge(v.0)),
            MetricKind::Counter => self.counters.get(name).map(|v| Value::Counter(v.0)),
        }
    }

    /// Number of metrics (a gauge and a counter of the same name count twice).
    pub(super) fn len(&self) -> usize {
        self.gauges.len() + self.counters.len()
    }

    /// The contents in the snapshot file's format.
    pub(super) fn encode(&self) -> Vec<u8> {
        crate::store::snapshot::encode(
            self.gauges.iter().map(|(k, v)| (k.as_str(), v.0, v.1)),
            self.counters.iter().map(|(k, v)| (k.as_str(), v.0, v.1)),
            self.len(),
        )
    }

    /// Copies out every metric; the caller sorts (outside the lock).
    pub(super) fn read_all(&self) -> Reading {
        Reading {
            gauges: self
                .gauges
                .iter()
                .map(|(k, v)| (k.clone(), v.0, from_unix_ms(v.1)))
                .collect(),
            counters: self
                .counters
                .iter()
                .map(|(k, v)| (k.clone(), v.0, from_unix_ms(v.1)))
                .collect(),
            updated_at: self.updated_at,
        }
    }
}

/// How many of `items` are not in `map` yet; 0 without looking when even all of them would fit
/// under `limit` (the common case: no lookup beyond the write's own).
fn new_names<V, W>(map: &HashMap<String, V>, items: &[(String, W)], limit: MaxMetrics) -> usize {
    if map.len().saturating_add(items.len()) <= limit.0 {
        return 0;
    }
    items
        .iter()
        .filter(|(name, _)| !map.contains_key(name.as_str()))
        .count()
}

/// The names in `map` last written before `before` (none without a cutoff).
fn written_before<T>(
    map: &HashMap<String, Slot<T>>,
    before: Option<SystemTime>,
) -> Box<dyn Iterator<Item = &String> + '_> {
    match before.map(unix_ms) {
        None => Box::new(std::iter::empty()),
        Some(before) => Box::new(
            map.iter()
                .filter(move |(_, slot)| slot.1 < before)
                .map(|(name, _)| name),
        ),
    }
}
