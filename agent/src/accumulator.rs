//! What the agent has observed but not yet delivered: the latest value of every gauge and the
//! sum of every counter's deltas since the last acknowledged report.
//!
//! Memory is bounded by the number of distinct metric names, never by time: gauges overwrite,
//! counter deltas add up, and the deltas of a report that could not be delivered are merged back
//! with [`Accumulator::restore`] instead of being queued as a separate batch.

use std::collections::BTreeMap;

/// Metric names are fixed at start-up (see `runtime` and `host`), so they are `'static`.
pub type Name = &'static str;

/// One poll's worth of readings from one collector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub gauges: Vec<(Name, f64)>,
    pub counters: Vec<(Name, i64)>,
}

/// One report: every gauge's latest value and the counter deltas accumulated since the last
/// delivered report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub gauges: Vec<(Name, f64)>,
    pub counters: Vec<(Name, i64)>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.gauges.len() + self.counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Latest gauges and pending counter deltas.
#[derive(Debug, Default)]
pub struct Accumulator {
    gauges: BTreeMap<Name, f64>,
    pending: BTreeMap<Name, i64>,
    /// Every delta ever recorded per counter (restores excluded), for the final log line.
    recorded: BTreeMap<Name, i64>,
}

impl Accumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a sample. Non-finite gauge readings are skipped (the server would reject the
    /// whole batch for one NaN); the previous value stays.
    pub fn record(&mut self, sample: Sample) {
        for (name, value) in sample.gauges {
            if value.is_finite() {
                self.gauges.insert(name, value);
            } else {
                log::debug!("skipping non-finite reading {value} of {name}");
            }
        }
        for (name, delta) in sample.counters {
            add(&mut self.pending, name, delta);
            add(&mut self.recorded, name, delta);
        }
    }

    /// Takes the next report: a copy of every gauge and all pending counter deltas (which are
    /// then no longer pending). `None` when there is nothing to say.
    pub fn take(&mut self) -> Option<Batch> {
        let batch = Batch {
            gauges: self.gauges.iter().map(|(n, v)| (*n, *v)).collect(),
            counters: std::mem::take(&mut self.pending).into_iter().collect(),
        };
        (!batch.is_empty()).then_some(batch)
    }

    /// Merges back the counter deltas of a report that was not delivered.
    pub fn restore(&mut self, counters: Vec<(Name, i64)>) {
        for (name, delta) in counters {
            add(&mut self.pending, name, delta);
        }
    }

    /// Sum of the deltas of counter `name` that are not delivered yet.
    #[cfg(test)]
    pub fn pending(&self, name: &str) -> i64 {
        self.pending.get(name).copied().unwrap_or(0)
    }

    /// Sum of every delta ever recorded for counter `name`.
    pub fn recorded(&self, name: &str) -> i64 {
        self.recorded.get(name).copied().unwrap_or(0)
    }

    /// Number of pending counter names (for log lines).
    pub fn pending_counters(&self) -> usize {
        self.pending.len()
    }
}

/// Adds a delta. An i64 counter cannot overflow in practice (2^63 polls); should it, saturating
/// keeps the batch valid for the server, which rejects overflowing totals anyway.
fn add(map: &mut BTreeMap<Name, i64>, name: Name, delta: i64) {
    let slot = map.entry(name).or_insert(0);
    *slot = slot.saturating_add(delta);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(value: f64) -> Sample {
        Sample {
            gauges: vec![("g", value)],
            counters: vec![("PollCount", 1)],
        }
    }

    #[test]
    fn latest_gauge_wins_and_deltas_add_up() {
        let mut acc = Accumulator::new();
        acc.record(poll(1.0));
        acc.record(poll(2.0));
        let batch = acc.take().unwrap();
        assert_eq!(batch.gauges, vec![("g", 2.0)]);
        assert_eq!(batch.counters, vec![("PollCount", 2)]);
        // Gauges are re-sent, counters only once.
        let again = acc.take().unwrap();
        assert_eq!(again.gauges, vec![("g", 2.0)]);
        assert!(again.counters.is_empty());
        assert!(Accumulator::new().take().is_none());
    }

    #[test]
    fn failed_deltas_are_merged_back_and_memory_stays_bounded() {
        let mut acc = Accumulator::new();
        let mut outstanding = Vec::new();
        for _ in 0..1000 {
            acc.record(poll(0.5));
            let batch = acc.take().unwrap();
            // Every report fails: its deltas come back.
            acc.restore(batch.counters.clone());
            outstanding = batch.counters;
        }
        assert_eq!(outstanding, vec![("PollCount", 1000)]);
        assert_eq!(acc.pending("PollCount"), 1000);
        assert_eq!(acc.pending_counters(), 1);
        assert_eq!(acc.recorded("PollCount"), 1000);
    }

    #[test]
    fn non_finite_gauges_are_skipped() {
        let mut acc = Accumulator::new();
        acc.record(poll(1.0));
        acc.record(poll(f64::NAN));
        acc.record(poll(f64::INFINITY));
        assert_eq!(acc.take().unwrap().gauges, vec![("g", 1.0)]);
    }
}
