//! The maps of the memory store: every gauge and counter, the idempotency keys applied, the
//! write version, and how a batch is applied to them (all of it or nothing, and never past
//! [`MaxMetrics`] names per type). Knows nothing about files or durability.

use std::collections::HashMap;
use std::time::SystemTime;

use golectra_common::metric::{MetricKind, Update};

use super::keys::KeyTable;
use crate::store::{Batch, MaxMetrics, Reading, StoreError, Value};

/// Every metric of the store; kept behind the store's `RwLock`.
#[derive(Default)]
pub(super) struct Tables {
    pub(super) gauges: HashMap<String, f64>,
    pub(super) counters: HashMap<String, i64>,
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
    /// and new names are refused until the limit is raised again.
    pub(super) fn restored(restored: Vec<Update>, keys: KeyTable, max_metrics: MaxMetrics) -> Self {
        let mut tables = Self::new(keys, max_metrics);
        for update in restored {
            match update {
                Update::Gauge { name, value } => {
                    tables.gauges.insert(name, value);
                }
                Update::Counter { name, delta } => {
                    tables.counters.insert(name, delta);
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
            let current = self.counters.get(name.as_str()).copied().unwrap_or(0);
            if current.checked_add(*delta).is_none() {
                return Err(StoreError::Overflow { name: name.clone() });
            }
        }
        for (name, value) in &batch.gauges {
            match self.gauges.get_mut(name.as_str()) {
                Some(slot) => *slot = *value,
                None => {
                    self.gauges.insert(name.clone(), *value);
                }
            }
        }
        for (name, delta) in &batch.counters {
            match self.counters.get_mut(name.as_str()) {
                Some(total) => *total += delta,
                None => {
                    self.counters.insert(name.clone(), *delta);
                }
            }
        }
        self.version += 1;
        self.updated_at = Some(SystemTime::now());
        Ok(())
    }

    /// The value `update`, once applied, left stored (a counter's new total).
    pub(super) fn stored(&self, update: &Update) -> Value {
        match update {
            Update::Gauge { value, .. } => Value::Gauge(*value),
            Update::Counter { name, .. } => Value::Counter(self.counters[name.as_str()]),
        }
    }

    pub(super) fn get(&self, kind: MetricKind, name: &str) -> Option<Value> {
        match kind {
            MetricKind::Gauge => self.gauges.get(name).map(|v| Value::Gauge(*v)),
            MetricKind::Counter => self.counters.get(name).map(|v| Value::Counter(*v)),
        }
    }

    /// Number of metrics (a gauge and a counter of the same name count twice).
    pub(super) fn len(&self) -> usize {
        self.gauges.len() + self.counters.len()
    }

    /// The contents in the snapshot file's format.
    pub(super) fn encode(&self) -> Vec<u8> {
        crate::store::snapshot::encode(
            self.gauges.iter().map(|(k, v)| (k.as_str(), *v)),
            self.counters.iter().map(|(k, v)| (k.as_str(), *v)),
            self.len(),
        )
    }

    /// Copies out every metric; the caller sorts (outside the lock).
    pub(super) fn read_all(&self) -> Reading {
        Reading {
            gauges: self.gauges.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            counters: self.counters.iter().map(|(k, v)| (k.clone(), *v)).collect(),
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
