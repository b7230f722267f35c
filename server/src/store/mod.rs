//! Storage of metrics behind one [`Store`] trait, so the HTTP layer does not care whether the
//! metrics live in memory (with a JSON snapshot file) or in PostgreSQL.
//!
//! Writes arrive as a [`Batch`]: validated, de-duplicated and pre-aggregated (counter deltas
//! summed, the last gauge value wins), sorted by name so that every store touches rows in the
//! same order (no lock-order deadlocks between concurrent batches). A batch is applied
//! atomically: all of it or nothing.
//!
//! Every store holds at most [`MaxMetrics`] gauges and as many counters (`MAX_METRICS`): a
//! write that would add a name past it is refused whole ([`StoreError::Full`]), while writes
//! to stored names always pass. Every metric carries the time it was last written; metrics
//! leave a store only by a delete or an expiry pass ([`removal`]).

pub mod idempotency;
pub mod memory;
pub mod postgres;
pub mod removal;
pub mod snapshot;

pub use idempotency::{Key, KeyOptions};
pub use memory::Ticket;
pub use removal::{Cutoff, Removed, Selection};

use std::fmt;
use std::time::SystemTime;

use golectra_common::metric::{MetricKind, Update};

use crate::exposition::Exposition;

/// The stored value of one metric (serialized as a bare JSON number).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A gauge's last value; serialized as a JSON float.
    Gauge(f64),
    /// A counter's running total; serialized as a JSON integer.
    Counter(i64),
}

/// What went wrong in a store; each variant says what the HTTP layer answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Adding the delta would overflow the counter's `i64` total. Client error (400); nothing
    /// of the batch was applied.
    Overflow {
        /// The counter that would overflow.
        name: String,
    },
    /// The store cannot serve now (database down after retries, snapshot not writable in sync
    /// mode, idempotency-key table full). Answered 503 with the reason; nothing was applied
    /// unless the reason says so.
    Unavailable(String),
    /// The write's idempotency key was first used with another request. Answered 422; nothing
    /// was applied.
    KeyReused {
        /// The key as sent.
        key: String,
    },
    /// The write would add names of `kind` past [`MaxMetrics`]. Answered 409 (a definite
    /// refusal: the same write cannot succeed until an operator raises `MAX_METRICS`); nothing
    /// of the write was applied and its idempotency key was not recorded.
    Full {
        /// The type whose names would pass the limit.
        kind: MetricKind,
        /// The limit (`MAX_METRICS`).
        limit: usize,
        /// Names of that type stored when the write was refused.
        stored: usize,
        /// New names of that type the write would have added.
        adding: usize,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overflow { name } => {
                write!(
                    f,
                    "counter {name:?} would overflow: its total must stay within a 64-bit signed integer"
                )
            }
            Self::Unavailable(why) => write!(f, "store unavailable: {why}"),
            Self::KeyReused { key } => write!(
                f,
                "{} {key:?} was first used with another request: nothing was applied (use a new key for a new request)",
                idempotency::HEADER
            ),
            Self::Full {
                kind,
                limit,
                stored,
                adding,
            } => write!(
                f,
                "MAX_METRICS is {limit} {kind}s: {stored} are stored and this write would add {adding} new {kind} name{}; nothing was applied (writes to stored {kind}s still pass)",
                if *adding == 1 { "" } else { "s" }
            ),
        }
    }
}

/// The most gauges, and separately the most counters, a store holds (`MAX_METRICS`): a write
/// that would add a name past it is refused whole with [`StoreError::Full`]; writes to names
/// already stored always pass, also while more are stored than the limit (after it was
/// lowered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxMetrics(pub usize);

impl MaxMetrics {
    /// The default, per type.
    pub const DEFAULT: Self = Self(1_000_000);

    /// Refuses adding `adding` new names of `kind` to the `stored` ones when that passes the
    /// limit. Adding none always passes.
    pub fn check(self, kind: MetricKind, stored: usize, adding: usize) -> Result<(), StoreError> {
        if adding == 0 || stored.saturating_add(adding) <= self.0 {
            return Ok(());
        }
        Err(StoreError::Full {
            kind,
            limit: self.0,
            stored,
            adding,
        })
    }
}

impl Default for MaxMetrics {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::error::Error for StoreError {}

/// Every stored metric at one moment, sorted by name within each kind: what
/// [`Store::read_all`] returns. ("Snapshot" means only the memory store's file.)
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Every gauge as `(name, value, last written)`, sorted by name.
    pub gauges: Vec<(String, f64, SystemTime)>,
    /// Every counter as `(name, total, last written)`, sorted by name.
    pub counters: Vec<(String, i64, SystemTime)>,
    /// When the last write was applied, if known.
    pub updated_at: Option<SystemTime>,
}

/// A storage backend. Implementations are shared by all worker threads.
///
/// A write says in what it returns when it is durable ([`Written`]): the caller acknowledges it
/// at once ([`Durable::Now`]) or hands the acknowledgement to the [`Ticket`] it got
/// ([`Durable::After`]).
///
/// A write may carry an idempotency [`Key`] (see [`idempotency`]): the store checks and records
/// it in the same atomic step as the write, so that a repeat applies nothing and returns what
/// the first application returned ([`Written::repeat`]).
pub trait Store: Send + Sync {
    /// Applies one write; returns the metric's value as now stored (a counter's new total) and
    /// when the write is durable. With a key already applied: the value stored back then.
    fn update(&self, update: &Update, key: Option<&Key>) -> Result<Written<Value>, StoreError>;
    /// Applies a batch atomically; says when it is durable. A keyed empty batch still records
    /// its key.
    fn apply(&self, batch: &Batch, key: Option<&Key>) -> Result<Written<()>, StoreError>;
    /// Removes the metrics `selection` names (a delete); returns their names and when the
    /// removal is durable, like a write.
    fn delete(&self, selection: &Selection) -> Result<Written<Removed>, StoreError>;
    /// Removes at most `cutoff.limit` metrics last written before their type's cutoff (an
    /// expiry pass); returns their names and when the removal is durable.
    fn expire(&self, cutoff: &Cutoff) -> Result<Written<Removed>, StoreError>;
    /// Reads one metric.
    fn get(&self, kind: MetricKind, name: &str) -> Result<Option<Value>, StoreError>;
    /// Reads every metric.
    fn read_all(&self) -> Result<Reading, StoreError>;
    /// How many gauges and counters are stored. The default counts a [`Reading`]; stores with a
    /// cheaper way override it.
    fn count(&self) -> Result<(usize, usize), StoreError> {
        self.read_all().map(|s| (s.gauges.len(), s.counters.len()))
    }
    /// Checks that the store can serve (for `/ping`).
    fn ping(&self) -> Result<(), StoreError>;
    /// Makes everything acknowledged durable; called once at shutdown.
    fn close(&self) -> Result<(), StoreError>;
    /// Which backend this is: for logs and the dashboard, and for callers that must know
    /// whether a call waits on the network.
    fn kind(&self) -> StoreKind;
    /// Adds the store's own metrics to `/metrics` (snapshot timings, database retries and
    /// errors…) under `golectra_`. The default exports nothing.
    fn export(&self, out: &mut Exposition) {
        let _ = out;
    }
}

/// The backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In memory, with a snapshot file: calls never wait on I/O (a sync-mode write returns a
    /// [`Ticket`] instead of waiting for its fsync).
    Memory,
    /// PostgreSQL: every call is a round trip to the database.
    Postgres,
}

impl StoreKind {
    /// `memory` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a write returns: the stored value, and when the write is durable — the moment the
/// caller may acknowledge it.
#[derive(Debug)]
#[must_use = "a write may be acknowledged only once durable: look at `durable`"]
pub struct Written<T> {
    /// What the write produced: the stored value, or `()` for a batch.
    pub value: T,
    /// When the caller may acknowledge the write.
    pub durable: Durable,
    /// The write's key had been applied before: nothing was applied now, `value` is what the
    /// first application returned, and `durable` is the first write's durability.
    pub repeat: bool,
}

/// When a write is durable.
#[derive(Debug)]
pub enum Durable {
    /// Already, as far as this store promises: committed (PostgreSQL), or in memory for the
    /// next periodic snapshot (memory store with `STORE_INTERVAL>0`, or without a file).
    Now,
    /// Once the snapshot covering it is on disk (memory store, `STORE_INTERVAL=0`): the
    /// caller hands its acknowledgement to the ticket.
    After(Ticket),
}

impl<T> Written<T> {
    /// A write durable on return.
    pub fn now(value: T) -> Self {
        Self {
            value,
            durable: Durable::Now,
            repeat: false,
        }
    }

    /// The same durability for another value (the reply built from the stored value).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Written<U> {
        Written {
            value: f(self.value),
            durable: self.durable,
            repeat: self.repeat,
        }
    }

    /// Blocks the calling thread until the write is durable, then returns the value; the
    /// error if the snapshot that should have covered it failed. For callers without a reply
    /// to hand over (tests, tools); the HTTP worker never waits.
    pub fn wait(self) -> Result<T, StoreError> {
        match self.durable {
            Durable::Now => Ok(self.value),
            Durable::After(ticket) => ticket.wait().map(|()| self.value),
        }
    }
}

/// A validated, pre-aggregated write of several metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Unique gauge names, sorted, with the last value written in the request.
    pub gauges: Vec<(String, f64)>,
    /// Unique counter names, sorted, with the sum of their deltas in the request.
    pub counters: Vec<(String, i64)>,
}

/// Why a list of updates could not be turned into a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOverflow {
    /// Index of the update whose delta made the in-batch sum overflow.
    pub index: usize,
    /// Name of the counter whose in-batch sum overflows.
    pub name: String,
}

impl Batch {
    /// Aggregates updates: counter deltas for the same name add up, the last gauge value wins.
    /// An in-batch overflow names the first update (in request order) whose delta overflows.
    pub fn aggregate(updates: impl IntoIterator<Item = Update>) -> Result<Self, BatchOverflow> {
        let mut gauges: Vec<(String, f64)> = Vec::new();
        let mut counters: Vec<(String, i64, usize)> = Vec::new();
        for (index, update) in updates.into_iter().enumerate() {
            match update {
                Update::Gauge { name, value } => gauges.push((name, value)),
                Update::Counter { name, delta } => counters.push((name, delta, index)),
            }
        }
        // Stable sorts keep the request order within a name: the last gauge write wins, and
        // deltas add up in the order they were sent.
        gauges.sort_by(|a, b| a.0.cmp(&b.0));
        gauges.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        counters.sort_by(|a, b| a.0.cmp(&b.0));
        let mut overflow: Option<BatchOverflow> = None;
        counters.dedup_by(|later, kept| {
            if later.0 != kept.0 {
                return false;
            }
            match kept.1.checked_add(later.1) {
                Some(sum) => kept.1 = sum,
                None if overflow.as_ref().is_none_or(|o| later.2 < o.index) => {
                    overflow = Some(BatchOverflow {
                        index: later.2,
                        name: later.0.clone(),
                    });
                }
                None => {}
            }
            true
        });
        if let Some(overflow) = overflow {
            return Err(overflow);
        }
        Ok(Self {
            gauges,
            counters: counters
                .into_iter()
                .map(|(name, sum, _)| (name, sum))
                .collect(),
        })
    }

    /// Number of distinct metrics in the batch.
    pub fn len(&self) -> usize {
        self.gauges.len() + self.counters.len()
    }

    /// Whether the batch writes no metric at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The distinct names written, sorted (a gauge and a counter of the same name count once).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .gauges
            .iter()
            .map(|(n, _)| n.clone())
            .chain(self.counters.iter().map(|(n, _)| n.clone()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

impl From<&Update> for Batch {
    fn from(update: &Update) -> Self {
        match update {
            Update::Gauge { name, value } => Self {
                gauges: vec![(name.clone(), *value)],
                counters: vec![],
            },
            Update::Counter { name, delta } => Self {
                gauges: vec![],
                counters: vec![(name.clone(), *delta)],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn g(name: &str, value: f64) -> Update {
        Update::Gauge {
            name: name.into(),
            value,
        }
    }
    fn c(name: &str, delta: i64) -> Update {
        Update::Counter {
            name: name.into(),
            delta,
        }
    }

    #[test]
    fn aggregates_and_sorts() {
        let batch = Batch::aggregate([
            c("b", 2),
            g("x", 1.0),
            c("a", 1),
            c("b", 3),
            g("x", 2.0),
            g("b", 7.0),
        ])
        .unwrap();
        assert_eq!(batch.counters, vec![("a".into(), 1), ("b".into(), 5)]);
        assert_eq!(batch.gauges, vec![("b".into(), 7.0), ("x".into(), 2.0)]);
        assert_eq!(batch.names(), vec!["a", "b", "x"]);
    }

    #[test]
    fn in_batch_overflow_names_the_index() {
        let err = Batch::aggregate([c("a", i64::MAX), g("x", 1.0), c("a", 1)]).unwrap_err();
        assert_eq!(
            err,
            BatchOverflow {
                index: 2,
                name: "a".into()
            }
        );
        // Two names overflow: the error names the first in request order, not in name order.
        let err = Batch::aggregate([c("b", i64::MAX), c("a", i64::MAX), c("b", 1), c("a", 1)])
            .unwrap_err();
        assert_eq!((err.index, err.name.as_str()), (2, "b"));
    }

    proptest! {
        /// Applying the aggregate equals applying the items one by one.
        #[test]
        fn aggregate_matches_sequential(items in proptest::collection::vec((0u8..4, any::<bool>(), -1000i64..1000), 0..64)) {
            let updates: Vec<Update> = items.iter().map(|&(n, gauge, v)| {
                let name = format!("m{n}");
                if gauge { g(&name, v as f64) } else { c(&name, v) }
            }).collect();
            let batch = Batch::aggregate(updates.clone()).unwrap();
            let mut gauges = BTreeMap::new();
            let mut counters = BTreeMap::new();
            for u in updates {
                match u {
                    Update::Gauge { name, value } => { gauges.insert(name, value); }
                    Update::Counter { name, delta } => { *counters.entry(name).or_insert(0) += delta; }
                }
            }
            prop_assert_eq!(batch.gauges, gauges.into_iter().collect::<Vec<_>>());
            prop_assert_eq!(batch.counters, counters.into_iter().collect::<Vec<_>>());
        }
    }
}
