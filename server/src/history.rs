//! A short in-memory history of every stored metric, for the dashboard's sparklines and
//! `GET /api/v1/history/{type}/{name}`.
//!
//! A sampler thread reads [`Store::read_all`] every `HISTORY_INTERVAL` and appends each value to
//! that metric's ring of `HISTORY_POINTS` `(time, value)` points. Sampling instead of hooking the
//! write path keeps writes untouched (no extra lock, no allocation per write), costs the same
//! whatever the write rate is, and works for every store — PostgreSQL included, where other
//! servers write too. The price is resolution: a change shows up at the next tick.
//!
//! Memory is fixed per metric: a ring is allocated once at its full size (16 bytes a point:
//! unix milliseconds as `i64` and an `f64` or `i64` value) and never grows. Rings of metrics that
//! left the store are dropped at the next tick.
//!
//! Memory is bounded in total too (`HISTORY_MAX_BYTES`): each series is counted as
//! [`HistoryOptions::series_bytes`] (its ring, its name and [`SERIES_OVERHEAD`] of map entry and
//! allocations), and a metric whose series would pass the budget gets none. The eviction policy
//! is *first come, first kept*: a metric keeps its history for as long as it is stored, so a
//! flood of new names cannot push out the history of the metrics that were there before. Each
//! round first advances the existing series and drops those of metrics that left the store, then
//! gives new metrics a series while the budget allows — gauges before counters, in name order.
//! Metrics left without one are counted ([`Tables::untracked`]) and get a series at a later round
//! once room has freed up.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use golectra_common::metric::MetricKind;

use crate::exposition::{Exporter, Exposition, FamilyType};
use crate::store::{Reading, Store, Value};
use crate::ticker::{FirstRun, Ticker};

/// Bytes of one point: `i64` milliseconds + an 8-byte value.
pub const POINT_BYTES: usize = 16;

/// What a series costs besides its points and its name, as counted against
/// `HISTORY_MAX_BYTES`: the map slot (the name's `String` and the [`Series`], about 90 bytes,
/// times the map's slack) and the two heap allocations' headers.
pub const SERIES_OVERHEAD: usize = 192;

/// How much history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Time between samples (`HISTORY_INTERVAL`, default 5 s).
    pub interval: Duration,
    /// Points kept per metric (`HISTORY_POINTS`, default 60); 0 turns history off.
    pub points: usize,
    /// Most bytes all series together are counted as (`HISTORY_MAX_BYTES`, default 128 MiB).
    pub max_bytes: usize,
}

impl HistoryOptions {
    /// What the series of a metric named with `name_len` bytes is counted as.
    pub fn series_bytes(&self, name_len: usize) -> usize {
        self.points * POINT_BYTES + name_len + SERIES_OVERHEAD
    }
}

impl Default for HistoryOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            points: 60,
            max_bytes: 128 << 20,
        }
    }
}

/// A bounded ring of `(unix ms, value)` over a `VecDeque`; the oldest point goes when full.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    /// The points, oldest first; never more than `capacity`.
    points: VecDeque<(i64, T)>,
    capacity: usize,
}

impl<T: Copy> Ring<T> {
    /// A ring of `capacity` points, allocated at once.
    pub fn new(capacity: usize) -> Self {
        Self {
            points: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends a point, dropping the oldest when the ring is full.
    pub fn push(&mut self, at_ms: i64, value: T) {
        if self.capacity == 0 {
            return;
        }
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back((at_ms, value));
    }

    /// Points held now, at most [`Ring::capacity`].
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring holds no point yet.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Most points the ring holds before dropping the oldest.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The newest point `(unix ms, value)`, or `None` when the ring is empty.
    pub fn last(&self) -> Option<(i64, T)> {
        self.points.back().copied()
    }

    /// The points, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (i64, T)> + '_ {
        self.points.iter().copied()
    }
}

/// One metric's recent past.
#[derive(Debug, Clone)]
pub struct Series<T> {
    /// The sampled points, oldest first.
    pub ring: Ring<T>,
    /// When the sampler first saw the current value (unix ms); `None` when it has not changed
    /// since the server's first sample (restored or written before start-up finished).
    pub changed_at_ms: Option<i64>,
    /// The sampling round that last saw this metric.
    seen: u64,
}

/// Every metric's series.
#[derive(Debug, Default)]
pub struct Tables {
    /// The series of every gauge, by name.
    pub gauges: HashMap<String, Series<f64>>,
    /// The series of every counter, by name.
    pub counters: HashMap<String, Series<i64>>,
    /// Sampling rounds done.
    round: u64,
    /// Unix ms of the last round.
    pub last_sample_ms: Option<i64>,
    /// What the series held now are counted as ([`HistoryOptions::series_bytes`]).
    pub bytes: usize,
    /// Metrics of the last round left without a series because `HISTORY_MAX_BYTES` was
    /// reached.
    pub untracked: usize,
}

/// A copy of one series: points `(unix ms, value)` oldest first, and when it last changed.
pub type SeriesCopy = (Vec<(i64, Value)>, Option<i64>);

/// The history of every metric, shared by the sampler (writer) and handlers (readers).
#[derive(Debug)]
pub struct History {
    options: HistoryOptions,
    tables: RwLock<Tables>,
}

impl History {
    /// An empty history that keeps what `options` says.
    pub fn new(options: HistoryOptions) -> Self {
        Self {
            options,
            tables: RwLock::default(),
        }
    }

    /// How much history this keeps (interval and points per metric).
    pub fn options(&self) -> HistoryOptions {
        self.options
    }

    /// Appends one sampling round taken at `at`: every metric of `snap` with a series gets a
    /// point, series of metrics missing from `snap` are dropped, then metrics without a series
    /// get one while `HISTORY_MAX_BYTES` allows.
    pub fn record(&self, snap: &Reading, at: SystemTime) {
        let options = self.options;
        if options.points == 0 {
            return;
        }
        let at_ms = unix_ms(at);
        let mut guard = self.tables.write().expect("poisoned");
        let tables = &mut *guard;
        tables.round += 1;
        let round = Round {
            number: tables.round,
            at_ms,
            first: tables.round == 1,
        };
        let new_gauges = advance(&mut tables.gauges, &snap.gauges, round);
        let new_counters = advance(&mut tables.counters, &snap.counters, round);
        let mut budget = Budget {
            options,
            bytes: tables.bytes,
            untracked: 0,
        };
        budget.drop_vanished(&mut tables.gauges, round);
        budget.drop_vanished(&mut tables.counters, round);
        budget.add(&mut tables.gauges, &snap.gauges, &new_gauges, round);
        budget.add(&mut tables.counters, &snap.counters, &new_counters, round);
        tables.bytes = budget.bytes;
        tables.untracked = budget.untracked;
        tables.last_sample_ms = Some(at_ms);
    }

    /// Reads the tables (the sampler waits meanwhile: keep `f` short).
    pub fn read<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        f(&self.tables.read().expect("poisoned"))
    }

    /// One metric's points (oldest first) and when it last changed, if it has a series.
    pub fn series(&self, kind: MetricKind, name: &str) -> Option<SeriesCopy> {
        self.read(|t| match kind {
            MetricKind::Gauge => t.gauges.get(name).map(|s| {
                let points = s.ring.iter().map(|(at, v)| (at, Value::Gauge(v)));
                (points.collect(), s.changed_at_ms)
            }),
            MetricKind::Counter => t.counters.get(name).map(|s| {
                let points = s.ring.iter().map(|(at, v)| (at, Value::Counter(v)));
                (points.collect(), s.changed_at_ms)
            }),
        })
    }

    /// Approximate bytes held by the rings (points, not map overhead).
    pub fn ring_bytes(&self) -> usize {
        self.read(|t| (t.gauges.len() + t.counters.len()) * self.options.points * POINT_BYTES)
    }
}

/// One sampling round.
#[derive(Debug, Clone, Copy)]
struct Round {
    number: u64,
    at_ms: i64,
    /// The server's first round: what it sees had not changed since start.
    first: bool,
}

/// Appends the round's point to every series of `values` that exists; returns the indices of
/// the values without a series.
fn advance<T: Copy + PartialEq>(
    series: &mut HashMap<String, Series<T>>,
    values: &[(String, T, SystemTime)],
    round: Round,
) -> Vec<usize> {
    let mut new = Vec::new();
    for (i, (name, value, _)) in values.iter().enumerate() {
        match series.get_mut(name.as_str()) {
            Some(s) => {
                if s.ring.last().is_none_or(|(_, last)| last != *value) {
                    s.changed_at_ms = Some(round.at_ms);
                }
                s.ring.push(round.at_ms, *value);
                s.seen = round.number;
            }
            None => new.push(i),
        }
    }
    new
}

/// `HISTORY_MAX_BYTES` during one round: what the series are counted as, and the metrics
/// left without one.
struct Budget {
    options: HistoryOptions,
    bytes: usize,
    untracked: usize,
}

impl Budget {
    /// Drops the series of metrics this round did not see (they left the store).
    fn drop_vanished<T>(&mut self, series: &mut HashMap<String, Series<T>>, round: Round) {
        series.retain(|name, s| {
            let keep = s.seen == round.number;
            if !keep {
                self.bytes -= self.options.series_bytes(name.len());
            }
            keep
        });
    }

    /// Gives the values at `new` a series each, in order, while the budget allows.
    fn add<T: Copy>(
        &mut self,
        series: &mut HashMap<String, Series<T>>,
        values: &[(String, T, SystemTime)],
        new: &[usize],
        round: Round,
    ) {
        for &i in new {
            let (name, value, _) = &values[i];
            let cost = self.options.series_bytes(name.len());
            if self.bytes + cost > self.options.max_bytes {
                self.untracked += 1;
                continue;
            }
            self.bytes += cost;
            let mut ring = Ring::new(self.options.points);
            ring.push(round.at_ms, *value);
            series.insert(
                name.clone(),
                Series {
                    ring,
                    changed_at_ms: (!round.first).then_some(round.at_ms),
                    seen: round.number,
                },
            );
        }
    }
}

/// Unix milliseconds of `at` (0 before 1970).
pub fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Exporter for History {
    fn export(&self, out: &mut Exposition) {
        let (series, last, bytes, untracked) = self.read(|t| {
            let series = t.gauges.len() + t.counters.len();
            (series, t.last_sample_ms, t.bytes, t.untracked)
        });
        out.family(
            "golectra_history_series",
            "Metrics with an in-memory history ring.",
            FamilyType::Gauge,
        )
        .sample(&[], series);
        out.family(
            "golectra_history_ring_bytes",
            "Bytes held by the history rings' points (fixed per metric).",
            FamilyType::Gauge,
        )
        .sample(&[], series * self.options.points * POINT_BYTES);
        out.family(
            "golectra_history_bytes",
            "Memory the history is counted as: rings, names and bookkeeping (HISTORY_MAX_BYTES caps it).",
            FamilyType::Gauge,
        )
        .sample(&[], bytes);
        out.family(
            "golectra_history_max_bytes",
            "The history's memory cap (HISTORY_MAX_BYTES).",
            FamilyType::Gauge,
        )
        .sample(&[], self.options.max_bytes);
        out.family(
            "golectra_history_untracked_metrics",
            "Stored metrics without history at the last sample because HISTORY_MAX_BYTES was reached.",
            FamilyType::Gauge,
        )
        .sample(&[], untracked);
        if let Some(ms) = last {
            out.family(
                "golectra_history_last_sample_timestamp_seconds",
                "When the history sampler last read the store.",
                FamilyType::Gauge,
            )
            .sample(&[], ms as f64 / 1000.0);
        }
    }
}

/// The sampler thread; stopped by [`Sampler::stop`].
pub struct Sampler {
    ticker: Ticker,
}

impl Sampler {
    /// Samples once now, then every interval, until stopped. Returns `None` when history is off.
    pub fn spawn(history: Arc<History>, store: Arc<dyn Store>) -> std::io::Result<Option<Self>> {
        let options = history.options();
        if options.points == 0 {
            return Ok(None);
        }
        let ticker = Ticker::spawn(
            "history",
            options.interval,
            FirstRun::Now,
            move || match store.read_all() {
                Ok(snap) => history.record(&snap, SystemTime::now()),
                Err(e) => log::debug!("history: cannot read the store: {e}"),
            },
        )?;
        Ok(Some(Self { ticker }))
    }

    /// Stops the sampler thread and waits until it ended (after a round in progress).
    pub fn stop(self) {
        self.ticker.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(gauges: &[(&str, f64)], counters: &[(&str, i64)]) -> Reading {
        Reading {
            gauges: gauges
                .iter()
                .map(|(n, v)| (n.to_string(), *v, UNIX_EPOCH))
                .collect(),
            counters: counters
                .iter()
                .map(|(n, v)| (n.to_string(), *v, UNIX_EPOCH))
                .collect(),
            updated_at: None,
        }
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn ring_keeps_the_newest_points_in_order() {
        let mut ring = Ring::<i64>::new(3);
        assert_eq!(ring.iter().count(), 0);
        assert_eq!(ring.last(), None);
        for i in 0..10 {
            ring.push(i, i * 10);
        }
        assert_eq!(ring.iter().collect::<Vec<_>>(), [(7, 70), (8, 80), (9, 90)]);
        assert_eq!(ring.last(), Some((9, 90)));
        let mut empty = Ring::<f64>::new(0);
        empty.push(1, 1.0);
        assert!(empty.is_empty());
    }

    #[test]
    fn history_stays_bounded_under_many_updates() {
        let history = History::new(HistoryOptions {
            interval: Duration::from_secs(5),
            points: 60,
            ..HistoryOptions::default()
        });
        for round in 0..10_000u64 {
            history.record(
                &snap(
                    &[("a", round as f64), ("b", 1.0)],
                    &[("c", round as i64 * 3)],
                ),
                at(round * 5000),
            );
        }
        history.read(|t| {
            for s in t.gauges.values() {
                assert_eq!((s.ring.len(), s.ring.capacity()), (60, 60));
            }
            let c = &t.counters["c"];
            assert_eq!((c.ring.len(), c.ring.capacity()), (60, 60));
            assert_eq!(c.ring.last(), Some((9999 * 5000, 9999 * 3)));
            // "b" never changed after the first round, "a" changed at every round.
            assert_eq!(t.gauges["b"].changed_at_ms, None);
            assert_eq!(t.gauges["a"].changed_at_ms, Some(9999 * 5000));
        });
        let (points, _) = history.series(MetricKind::Gauge, "a").unwrap();
        let times: Vec<i64> = points.iter().map(|p| p.0).collect();
        assert_eq!(points.last(), Some(&(9999 * 5000, Value::Gauge(9999.0))));
        let expected: Vec<i64> = (9940..10_000).map(|r| r * 5000).collect();
        assert_eq!(times, expected);
        assert_eq!(history.ring_bytes(), 3 * 60 * POINT_BYTES);
    }

    #[test]
    fn vanished_metrics_are_dropped_and_kinds_are_separate() {
        let history = History::new(HistoryOptions {
            interval: Duration::from_secs(5),
            points: 60,
            ..HistoryOptions::default()
        });
        history.record(&snap(&[("x", 1.0), ("gone", 2.0)], &[("x", 5)]), at(0));
        history.record(&snap(&[("x", 1.5), ("new", 0.0)], &[("x", 5)]), at(5000));
        assert!(history.series(MetricKind::Gauge, "gone").is_none());
        let (points, changed) = history.series(MetricKind::Gauge, "x").unwrap();
        let expected = vec![(0, Value::Gauge(1.0)), (5000, Value::Gauge(1.5))];
        assert_eq!((points, changed), (expected, Some(5000)));
        let (points, changed) = history.series(MetricKind::Counter, "x").unwrap();
        let expected = vec![(0, Value::Counter(5)), (5000, Value::Counter(5))];
        assert_eq!((points, changed), (expected, None));
        // A metric first seen after the first round changed when it was first seen.
        assert_eq!(
            history.series(MetricKind::Gauge, "new").unwrap().1,
            Some(5000)
        );
    }

    #[test]
    fn zero_points_turns_history_off() {
        let history = History::new(HistoryOptions {
            interval: Duration::from_secs(1),
            points: 0,
            ..HistoryOptions::default()
        });
        history.record(&snap(&[("x", 1.0)], &[]), at(0));
        assert!(history.series(MetricKind::Gauge, "x").is_none());
    }

    /// The total cap holds whatever the store holds: metrics first seen once it is full get no
    /// series, the earlier ones keep theirs, and room freed by metrics that left goes to the
    /// untracked ones at the next round (gauges first, in name order).
    #[test]
    fn the_total_cap_keeps_the_first_metrics_and_reuses_freed_room() {
        let options = HistoryOptions {
            interval: Duration::from_secs(5),
            points: 4,
            max_bytes: 0,
        };
        // Room for exactly two series of two-byte names and one of a four-byte name.
        let options = HistoryOptions {
            max_bytes: 2 * options.series_bytes(2) + options.series_bytes(4),
            ..options
        };
        let history = History::new(options);
        history.record(&snap(&[("g1", 1.0), ("g2", 2.0)], &[]), at(0));
        // A flood of new names: only one more fits, the established ones keep their points.
        let flood: Vec<(String, f64)> = (0..1000).map(|i| (format!("f{i:03}"), 0.0)).collect();
        let mut gauges: Vec<(&str, f64)> = vec![("g1", 1.5), ("g2", 2.0)];
        gauges.extend(flood.iter().map(|(n, v)| (n.as_str(), *v)));
        gauges.sort_by(|a, b| a.0.cmp(b.0));
        history.record(&snap(&gauges, &[("c1", 7)]), at(5000));
        history.read(|t| {
            assert_eq!(t.bytes, options.max_bytes);
            assert_eq!(t.gauges.len() + t.counters.len(), 3);
            // "f000" took the last room (gauges first, in name order): no room for "c1".
            assert!(t.gauges.contains_key("f000") && !t.counters.contains_key("c1"));
            assert_eq!(t.untracked, 999 + 1);
            assert_eq!(t.gauges["g1"].ring.len(), 2);
        });
        assert!(history.series(MetricKind::Gauge, "f999").is_none());
        // The flood leaves the store: its room goes to the counter at once.
        history.record(&snap(&[("g1", 1.5), ("g2", 2.0)], &[("c1", 8)]), at(10_000));
        history.read(|t| {
            assert_eq!(t.untracked, 0);
            assert_eq!(t.bytes, 3 * options.series_bytes(2));
            assert!(!t.gauges.contains_key("f000"));
            assert_eq!(
                t.counters["c1"].ring.iter().collect::<Vec<_>>(),
                [(10_000, 8)]
            );
            assert_eq!(t.gauges["g1"].ring.len(), 3);
        });
    }
}
