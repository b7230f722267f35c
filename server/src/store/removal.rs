//! What a store removes, and why: a delete (`DELETE /value/{type}/{name}`,
//! `DELETE /api/v1/series?match=…`) names a [`Selection`]; an expiry pass (`METRIC_TTL`) gives
//! each type a [`Cutoff`]. Both return the names [`Removed`], so that the history forgets them
//! and the audit trail records them.

use std::time::SystemTime;

use golectra_common::metric::MetricKind;
use golectra_common::tags::Matcher;

/// Which metrics a delete removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One metric, by type and canonical name.
    One(MetricKind, String),
    /// The gauge and the counter of this canonical name, those stored.
    Name(String),
    /// Every metric of `kinds` that `matcher` selects (never an empty matcher: the HTTP layer
    /// refuses a delete of everything).
    Matching {
        /// The terms every removed name satisfies.
        matcher: Matcher,
        /// The types removed: one, or both (`None`).
        kind: Option<MetricKind>,
    },
}

impl Selection {
    /// The one name selected, with the type if only one is, when the selection is by name.
    pub fn name(&self) -> Option<(Option<MetricKind>, &str)> {
        match self {
            Self::One(kind, name) => Some((Some(*kind), name)),
            Self::Name(name) => Some((None, name)),
            Self::Matching { .. } => None,
        }
    }

    /// Whether the metric `name` of `kind` is selected.
    pub fn selects(&self, kind: MetricKind, name: &str) -> bool {
        match self {
            Self::One(k, n) => *k == kind && n == name,
            Self::Name(n) => n == name,
            Self::Matching { matcher, kind: k } => {
                k.is_none_or(|k| k == kind) && matcher.matches(name)
            }
        }
    }
}

/// What an expiry pass removes: gauges, and counters if `EXPIRE_COUNTERS`, last written
/// before their cutoff; at most `limit` metrics per pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoff {
    /// Gauges last written before this time are removed.
    pub gauges: Option<SystemTime>,
    /// Counters last written before this time are removed.
    pub counters: Option<SystemTime>,
    /// The most metrics one pass removes (bounded work under the store's lock or in one
    /// statement).
    pub limit: usize,
}

impl Cutoff {
    /// The cutoff of `kind`, if that type expires.
    pub fn of(&self, kind: MetricKind) -> Option<SystemTime> {
        match kind {
            MetricKind::Gauge => self.gauges,
            MetricKind::Counter => self.counters,
        }
    }
}

/// The names a delete or an expiry pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// Gauges removed, sorted.
    pub gauges: Vec<String>,
    /// Counters removed, sorted.
    pub counters: Vec<String>,
}

impl Removed {
    /// How many metrics were removed.
    pub fn len(&self) -> usize {
        self.gauges.len() + self.counters.len()
    }

    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names removed, sorted and unique (a gauge and a counter of one name count once),
    /// as the audit trail lists them.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.gauges.iter().chain(&self.counters).cloned().collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Sorts both lists (stores collect them in any order).
    pub fn sorted(mut self) -> Self {
        self.gauges.sort_unstable();
        self.counters.sort_unstable();
        self
    }
}
