//! Staleness and expiry of metrics (docs/storage.md, "Staleness and expiry"): the options
//! (`STALE_AFTER`, `METRIC_TTL`, `EXPIRE_COUNTERS`) and the `expiry` thread, which removes
//! metrics not written within `METRIC_TTL` in passes of bounded work, logs what it removed and
//! counts it for `/metrics`.
//!
//! Counters are kept unless `EXPIRE_COUNTERS=true`: a counter's value is a running total that
//! exists nowhere else (an agent sends deltas), so removing one loses its history for good, and
//! an agent that comes back starts it again from its next delta. A gauge is re-sent whole by
//! its agent at the next report, so removing a stale one loses nothing that still exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::exposition::{Exposition, FamilyType};
use crate::store::{Cutoff, Removed, Store, StoreError};
use crate::ticker::{FirstRun, Ticker};

/// The most metrics one pass removes: bounded work under the memory store's lock or in one
/// statement; a pass that hit it is followed by another at the next tick.
pub const PASS_LIMIT: usize = 10_000;

/// How metrics age (docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryOptions {
    /// Age after which the dashboard marks a metric stale (`STALE_AFTER`, default 5 min).
    pub stale_after: Duration,
    /// Gauges not written within it are removed (`METRIC_TTL`, default `None`: never).
    pub ttl: Option<Duration>,
    /// Counters expire too (`EXPIRE_COUNTERS`, default false).
    pub counters: bool,
}

impl Default for ExpiryOptions {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(300),
            ttl: None,
            counters: false,
        }
    }
}

impl ExpiryOptions {
    /// Time between passes: a twentieth of the TTL, within 5 s and 60 s (so a metric outlives
    /// its TTL by at most a twentieth of it, or a minute).
    pub fn pass_interval(ttl: Duration) -> Duration {
        (ttl / 20).clamp(Duration::from_secs(5), Duration::from_secs(60))
    }

    /// What a pass at `now` removes, if anything expires.
    pub fn cutoff(&self, now: SystemTime) -> Option<Cutoff> {
        let before = now.checked_sub(self.ttl?)?;
        Some(Cutoff {
            gauges: Some(before),
            counters: self.counters.then_some(before),
            limit: PASS_LIMIT,
        })
    }
}

/// Metrics removed by expiry since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct ExpiryStats {
    gauges: AtomicU64,
    counters: AtomicU64,
    failed_passes: AtomicU64,
}

impl ExpiryStats {
    /// Writes `golectra_metrics_expired_total{type}` and `golectra_expiry_failures_total`.
    pub fn export(&self, out: &mut Exposition) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.family(
            "golectra_metrics_expired_total",
            "Metrics removed because they were not written within METRIC_TTL, by type.",
            FamilyType::Counter,
        )
        .sample(&[("type", "gauge")], load(&self.gauges))
        .sample(&[("type", "counter")], load(&self.counters));
        out.family(
            "golectra_expiry_failures_total",
            "Expiry passes that failed (the store could not serve); the next pass tries again.",
            FamilyType::Counter,
        )
        .sample(&[], load(&self.failed_passes));
    }
}

/// One expiry pass at `now`: removes what is older than the TTL, logs and counts it.
pub fn pass(
    store: &dyn Store,
    options: &ExpiryOptions,
    stats: &ExpiryStats,
    now: SystemTime,
) -> Result<Removed, StoreError> {
    let Some(cutoff) = options.cutoff(now) else {
        return Ok(Removed::default());
    };
    let removed = store.expire(&cutoff).and_then(|written| written.wait());
    let removed = match removed {
        Ok(removed) => removed,
        Err(e) => {
            stats.failed_passes.fetch_add(1, Ordering::Relaxed);
            log::warn!("expiry pass failed (tried again at the next pass): {e}");
            return Err(e);
        }
    };
    if removed.is_empty() {
        return Ok(removed);
    }
    stats
        .gauges
        .fetch_add(removed.gauges.len() as u64, Ordering::Relaxed);
    stats
        .counters
        .fetch_add(removed.counters.len() as u64, Ordering::Relaxed);
    let ttl = humantime::format_duration(options.ttl.unwrap_or_default());
    let sample: Vec<&str> = removed
        .gauges
        .iter()
        .chain(&removed.counters)
        .take(5)
        .map(String::as_str)
        .collect();
    let more = removed.len().saturating_sub(sample.len());
    log::info!(
        "expired {} gauges and {} counters not written for {ttl} (METRIC_TTL): {:?}{}",
        removed.gauges.len(),
        removed.counters.len(),
        sample,
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    Ok(removed)
}

/// Starts the `expiry` thread when `METRIC_TTL` is set: a pass at start, then every
/// [`ExpiryOptions::pass_interval`].
pub fn spawn(
    store: Arc<dyn Store>,
    options: ExpiryOptions,
    stats: Arc<ExpiryStats>,
) -> std::io::Result<Option<Ticker>> {
    let Some(ttl) = options.ttl else {
        return Ok(None);
    };
    let interval = ExpiryOptions::pass_interval(ttl);
    log::info!(
        "metrics not written for {} are removed ({}), checked every {}",
        humantime::format_duration(ttl),
        if options.counters {
            "gauges and counters: EXPIRE_COUNTERS=true"
        } else {
            "gauges only; counters are kept"
        },
        humantime::format_duration(interval)
    );
    Ticker::spawn("expiry", interval, FirstRun::Now, move || {
        let _ = pass(store.as_ref(), &options, &stats, SystemTime::now());
    })
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_come_every_twentieth_of_the_ttl_within_bounds() {
        let secs = Duration::from_secs;
        assert_eq!(ExpiryOptions::pass_interval(secs(60)), secs(5));
        assert_eq!(ExpiryOptions::pass_interval(secs(600)), secs(30));
        assert_eq!(ExpiryOptions::pass_interval(secs(86_400)), secs(60));
    }

    #[test]
    fn counters_are_cut_off_only_when_asked() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let mut options = ExpiryOptions {
            ttl: Some(Duration::from_secs(3600)),
            ..ExpiryOptions::default()
        };
        let before = SystemTime::UNIX_EPOCH + Duration::from_secs(6400);
        let cutoff = options.cutoff(now).unwrap();
        assert_eq!((cutoff.gauges, cutoff.counters), (Some(before), None));
        options.counters = true;
        assert_eq!(options.cutoff(now).unwrap().counters, Some(before));
        options.ttl = None;
        assert_eq!(options.cutoff(now), None);
    }
}
