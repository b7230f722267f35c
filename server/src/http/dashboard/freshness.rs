//! How long ago a metric was last written, and whether that makes it stale (`STALE_AFTER`,
//! docs/observability.md): the "Written" cell of a dashboard row, and the stale counts of the
//! header and the host selector.
//!
//! The age is the store's last-write time ([`crate::store::Reading`]), not the history's last
//! change: a gauge an agent re-sends unchanged every few seconds is fresh, one whose agent went
//! away is stale however recently its value changed before. A metric is stale once its age is
//! *more than* `STALE_AFTER`; a write time in the future (another host's clock) is age zero.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::escape_into;

/// The clock and the threshold one page is rendered with (a test passes a fixed `now`).
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// The moment the page is rendered.
    pub now: SystemTime,
    /// `STALE_AFTER`.
    pub stale_after: Duration,
}

impl Freshness {
    /// How long ago `written` was (zero for a time after `now`).
    pub fn age(&self, written: SystemTime) -> Duration {
        self.now.duration_since(written).unwrap_or_default()
    }

    /// Whether a metric last written at `written` is stale.
    pub fn is_stale(&self, written: SystemTime) -> bool {
        self.age(written) > self.stale_after
    }

    /// Writes the attributes and content of a row's "Written" cell (after `<td class="w"`):
    /// the age, the time on hover, and for a stale metric a visible marker saying why.
    pub fn cell(&self, html: &mut String, written: SystemTime) {
        let age = human_age(self.age(written).as_secs());
        let _ = write!(
            html,
            " title=\"written {}\">{age}",
            humantime::format_rfc3339_seconds(written)
        );
        if self.is_stale(written) {
            html.push_str(" <span class=\"mark\" title=\"");
            escape_into(html, &self.why_stale(written));
            html.push_str("\">stale</span>");
        }
    }

    /// `not written for 12m 5s (STALE_AFTER 5m)`.
    pub fn why_stale(&self, written: SystemTime) -> String {
        format!(
            "not written for {} (STALE_AFTER {})",
            human_age(self.age(written).as_secs()),
            humantime::format_duration(self.stale_after)
        )
    }
}

/// A duration for people at two units at most: `45s`, `12m 5s`, `3h 7m`, `2d 4h`.
pub fn human_age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_764_547_200; // 2025-12-01T00:00:00Z

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn fresh() -> Freshness {
        Freshness {
            now: at(NOW),
            stale_after: Duration::from_secs(300),
        }
    }

    #[test]
    fn stale_is_older_than_stale_after() {
        let f = fresh();
        assert!(!f.is_stale(at(NOW)));
        assert!(
            !f.is_stale(at(NOW - 300)),
            "exactly STALE_AFTER is not yet stale"
        );
        assert!(f.is_stale(at(NOW - 301)));
        assert!(
            !f.is_stale(at(NOW + 3600)),
            "a write from the future is age zero"
        );
        assert_eq!(f.age(at(NOW + 3600)), Duration::ZERO);
    }

    #[test]
    fn the_cell_shows_the_age_and_marks_a_stale_metric() {
        let f = fresh();
        let mut html = String::new();
        f.cell(&mut html, at(NOW - 42));
        assert_eq!(html, " title=\"written 2025-11-30T23:59:18Z\">42s");
        let mut html = String::new();
        f.cell(&mut html, at(NOW - 725));
        assert_eq!(
            html,
            " title=\"written 2025-11-30T23:47:55Z\">12m 5s <span class=\"mark\" \
             title=\"not written for 12m 5s (STALE_AFTER 5m)\">stale</span>"
        );
        let short = Freshness {
            stale_after: Duration::from_millis(1500),
            ..f
        };
        assert_eq!(
            short.why_stale(at(NOW - 2 * 86400 - 3 * 3600)),
            "not written for 2d 3h (STALE_AFTER 1s 500ms)"
        );
    }

    #[test]
    fn ages_for_people() {
        assert_eq!(human_age(0), "0s");
        assert_eq!(human_age(59), "59s");
        assert_eq!(human_age(60), "1m 0s");
        assert_eq!(human_age(3 * 3600 + 7 * 60 + 5), "3h 7m");
        assert_eq!(human_age(2 * 86400 + 4 * 3600), "2d 4h");
    }
}
