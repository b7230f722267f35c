//! The maps of the memory store: every gauge and counter, the idempotency keys applied, the
//! write version, and how a batch is applied to them (all of it or nothing). Knows nothing
//! about files or durability.

use std::collections::HashMap;
use std::time::SystemTime;

use golectra_common::metric::{MetricKind, Update};

use super::keys::KeyTable;
use crate::store::{Batch, Reading, StoreError, Value};

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
}

impl Tables {
    /// Tables holding `restored` (the contents of a snapshot file) and its keys, at version 0.
    pub(super) fn restored(restored: Vec<Update>, keys: KeyTable) -> Self {
        let mut tables = Self {
            keys,
            ..Self::default()
        };
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

    /// Applies `batch` completely or, on a counter overflow, not at all; bumps the version.
    pub(super) fn apply(&mut self, batch: &Batch) -> Result<(), StoreError> {
        // Check every counter first so that a batch is applied completely or not at all.
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
