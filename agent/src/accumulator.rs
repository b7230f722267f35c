//! What the agent has observed but not yet delivered: the latest value of every gauge and the
//! sum of every counter's deltas since the last acknowledged report.
//!
//! Memory is bounded by the number of distinct metric names, never by time: gauges overwrite and
//! counter deltas add up while every sender is busy. Deltas that have left in a report never
//! come back here: a report whose outcome is unknown stays in doubt with its key
//! (`crate::in_doubt`), since merging it back would count it twice whenever the server had
//! applied it. Only the pending deltas saved in the state file come back, at start
//! ([`Accumulator::add_pending`]).
//!
//! This is where a sample's names become the names the agent sends: [`Accumulator::record`]
//! gives each one the agent's `TAGS` ([`crate::tagging`]), so every total here is kept under
//! its tagged name.

use std::collections::BTreeMap;

use crate::tagging::Tagger;

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

/// Latest gauges and pending counter deltas, by the names they are sent as.
#[derive(Debug, Default)]
pub struct Accumulator {
    /// Turns a collector's name into the name it is sent as.
    tagger: Tagger,
    gauges: BTreeMap<Name, f64>,
    pending: BTreeMap<Name, i64>,
    /// Every delta ever recorded per counter (restores excluded), for the final log line.
    recorded: BTreeMap<Name, i64>,
}

impl Accumulator {
    /// Plain names (no `TAGS`).
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps every sample's names with `tagger`'s tags.
    pub fn with_tagger(tagger: Tagger) -> Self {
        Self {
            tagger,
            ..Self::default()
        }
    }

    /// The name a collector's `base` is kept and sent as (its tagged form).
    pub fn name(&mut self, base: Name) -> Name {
        self.tagger.name(base)
    }

    /// Records a sample under the tagged names. Non-finite gauge readings are skipped (the
    /// server would reject the whole batch for one NaN); the previous value stays.
    pub fn record(&mut self, sample: Sample) {
        for (name, value) in sample.gauges {
            if value.is_finite() {
                let name = self.tagger.name(name);
                self.gauges.insert(name, value);
            } else {
                log::debug!("skipping non-finite reading {value} of {name}");
            }
        }
        for (name, delta) in sample.counters {
            let name = self.tagger.name(name);
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

    /// Adds counter deltas that were pending in an earlier process (from the state file), under
    /// the names they were recorded with (an earlier run's `TAGS`). They are not counted as
    /// recorded by this one.
    pub fn add_pending(&mut self, counters: impl IntoIterator<Item = (Name, i64)>) {
        for (name, delta) in counters {
            add(&mut self.pending, name, delta);
        }
    }

    /// Sum of the pending deltas of counter `name` (not in any report yet).
    #[cfg(test)]
    pub fn pending(&self, name: &str) -> i64 {
        self.pending.get(name).copied().unwrap_or(0)
    }

    /// Every pending counter delta, by name.
    pub fn pending_counters_iter(&self) -> impl Iterator<Item = (Name, i64)> + '_ {
        self.pending.iter().map(|(name, delta)| (*name, *delta))
    }

    /// Sum of every delta recorded for counter `name` by this process.
    pub fn recorded(&self, name: &str) -> i64 {
        self.recorded.get(name).copied().unwrap_or(0)
    }

    /// Number of pending counter names.
    #[cfg(test)]
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
    fn pending_deltas_stay_bounded_by_names_while_nothing_is_taken() {
        let mut acc = Accumulator::new();
        for _ in 0..1000 {
            acc.record(poll(0.5));
        }
        assert_eq!(acc.pending("PollCount"), 1000);
        assert_eq!(acc.pending_counters(), 1);
        assert_eq!(acc.recorded("PollCount"), 1000);
    }

    #[test]
    fn saved_pending_deltas_add_up_but_are_not_recorded_by_this_process() {
        let mut acc = Accumulator::new();
        acc.add_pending([("PollCount", 7)]);
        acc.record(poll(1.0));
        assert_eq!(acc.pending("PollCount"), 8);
        assert_eq!(acc.recorded("PollCount"), 1);
        assert_eq!(
            acc.pending_counters_iter().collect::<Vec<_>>(),
            vec![("PollCount", 8)]
        );
        assert_eq!(acc.take().unwrap().counters, vec![("PollCount", 8)]);
    }

    #[test]
    fn samples_are_kept_under_their_tagged_names() {
        let tags = golectra_common::tags::parse_tag_list("host=a").unwrap();
        let mut acc = Accumulator::with_tagger(Tagger::new(tags));
        acc.add_pending([("PollCount;host=old", 2)]);
        acc.record(poll(1.0));
        acc.record(poll(2.0));
        let polls = acc.name("PollCount");
        assert_eq!(polls, "PollCount;host=a");
        assert_eq!((acc.pending(polls), acc.recorded(polls)), (2, 2));
        assert_eq!(acc.recorded("PollCount"), 0, "nothing under the plain name");
        let batch = acc.take().unwrap();
        assert_eq!(batch.gauges, vec![("g;host=a", 2.0)]);
        // An earlier run's delta leaves once, under the name it was recorded with.
        assert_eq!(
            batch.counters,
            vec![("PollCount;host=a", 2), ("PollCount;host=old", 2)]
        );
        assert!(acc.take().unwrap().counters.is_empty());
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
