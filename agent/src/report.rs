//! A report as it travels: one batch cut from the accumulator, given an idempotency key and
//! frozen as the JSON bytes it is sent as (docs/agent.md, "Delivery").
//!
//! Keys are `<instance id>:<sequence>`. The instance id is 128 random bits written as 32
//! lowercase hex characters, drawn at the first start and kept in the state file (without one,
//! drawn by every process); the sequence counts the instance's batches. A report keeps its key
//! and its body bytes until the server gives a definite answer, so a server that honours
//! `Idempotency-Key` applies it once however often it is re-sent. Only the gzip stream and the
//! signature are computed again for every attempt, from the same bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use golectra_common::Metric;

use crate::accumulator::Batch;
use crate::tagging::is_poll_count;

/// One keyed batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `<instance id>:<sequence>`, the `Idempotency-Key` of every attempt.
    pub key: String,
    /// The batch's number within its instance.
    pub sequence: u64,
    /// The uncompressed JSON array (gauges first, then counters), byte for byte what every
    /// attempt sends and signs.
    pub body: Vec<u8>,
    /// Number of metrics in `body` (for log lines).
    pub metrics: usize,
    /// The `PollCount` delta the batch carries (under whatever tags): the polls it accounts for.
    pub polls: i64,
    /// When the batch was cut and first sent, in Unix seconds.
    pub first_sent: u64,
}

impl Report {
    /// Rebuilds a report saved in the state file; `Err` says what is wrong with it.
    pub fn from_saved(
        key: String,
        sequence: u64,
        body: String,
        first_sent: u64,
        polls: i64,
    ) -> Result<Self, String> {
        let metrics: Vec<Metric<'_>> = serde_json::from_str(&body)
            .map_err(|e| format!("the body of report {key} is not a JSON array of metrics: {e}"))?;
        let carried: i64 = metrics
            .iter()
            .filter(|m| is_poll_count(&m.id) && m.kind == "counter")
            .filter_map(|m| m.delta)
            .sum();
        if carried != polls {
            return Err(format!(
                "report {key} says it carries {polls} polls, its body carries {carried}"
            ));
        }
        Ok(Self {
            metrics: metrics.len(),
            key,
            sequence,
            body: body.into_bytes(),
            polls,
            first_sent,
        })
    }

    /// How long the batch has been out (since its first attempt, restarts included).
    pub fn age(&self) -> Duration {
        Duration::from_secs(unix_now().saturating_sub(self.first_sent))
    }

    /// The key of metric `i` when the batch goes one by one to `/update/`.
    pub fn metric_key(&self, i: usize) -> String {
        format!("{}.{i}", self.key)
    }

    /// The batch's metrics as single JSON objects with their names, in the body's order, for
    /// servers without `/updates/`. Derived from the body, so every re-send carries the same
    /// bytes for metric `i` (also after a restart).
    pub fn single_bodies(&self) -> Vec<(String, Vec<u8>)> {
        // The body was written by `Keys::cut` or checked by `from_saved`: it parses.
        let metrics: Vec<Metric<'_>> = serde_json::from_slice(&self.body).unwrap_or_default();
        metrics
            .iter()
            .map(|m| {
                let json = serde_json::to_vec(m).expect("metrics always serialize");
                (m.id.to_string(), json)
            })
            .collect()
    }
}

/// Hands out keys: the instance id and the next sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    instance: String,
    next: u64,
}

impl Keys {
    /// Continues an instance (from the state file).
    pub fn new(instance: String, next: u64) -> Self {
        Self { instance, next }
    }

    /// A new instance whose first batch is number 1.
    pub fn fresh() -> Self {
        Self::new(new_instance_id(), 1)
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The sequence number the next batch gets.
    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Freezes `batch` as the next report.
    pub fn cut(&mut self, batch: &Batch) -> Report {
        let sequence = self.next;
        self.next += 1;
        let metrics = to_metrics(batch);
        Report {
            key: format!("{}:{sequence}", self.instance),
            sequence,
            body: serde_json::to_vec(&metrics).expect("metrics always serialize"),
            metrics: metrics.len(),
            polls: batch
                .counters
                .iter()
                .filter(|(name, _)| is_poll_count(name))
                .map(|(_, delta)| delta)
                .sum(),
            first_sent: unix_now(),
        }
    }
}

/// Whether `text` is an instance id: 32 lowercase hex characters.
pub fn is_instance_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 128 random bits from the operating system as 32 lowercase hex characters.
pub fn new_instance_id() -> String {
    let mut bytes = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut bytes) {
        // Never seen on Linux; the fallback is still unique enough to tell instances apart.
        log::warn!("the system's random source failed ({e}); using a seeded generator");
        bytes = fastrand::u128(..).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the Unix epoch (0 for a clock before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The JSON metrics of a batch: gauges first, then counters.
fn to_metrics(batch: &Batch) -> Vec<Metric<'static>> {
    batch
        .gauges
        .iter()
        .map(|(name, value)| Metric::gauge(*name, *value))
        .chain(
            batch
                .counters
                .iter()
                .map(|(name, delta)| Metric::counter(*name, *delta)),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch {
            gauges: vec![("Alloc", 1.5)],
            counters: vec![("PollCount", 3)],
        }
    }

    #[test]
    fn batch_json_shape() {
        let report = Keys::new("ab".repeat(16), 7).cut(&batch());
        assert_eq!(
            String::from_utf8(report.body.clone()).unwrap(),
            r#"[{"id":"Alloc","type":"gauge","value":1.5},{"id":"PollCount","type":"counter","delta":3}]"#
        );
        assert_eq!(report.metrics, 2);
        assert_eq!(report.polls, 3);
    }

    #[test]
    fn keys_are_instance_and_sequence() {
        let mut keys = Keys::new("0123456789abcdef0123456789abcdef".into(), 41);
        let a = keys.cut(&batch());
        let b = keys.cut(&batch());
        assert_eq!(a.key, "0123456789abcdef0123456789abcdef:41");
        assert_eq!((a.sequence, b.sequence), (41, 42));
        assert_eq!(b.key, "0123456789abcdef0123456789abcdef:42");
        assert_eq!(keys.next_sequence(), 43);
        assert_eq!(a.metric_key(1), "0123456789abcdef0123456789abcdef:41.1");
    }

    #[test]
    fn instance_ids_are_128_random_bits_in_hex() {
        let a = new_instance_id();
        let b = new_instance_id();
        assert!(is_instance_id(&a) && is_instance_id(&b), "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(Keys::fresh().next_sequence(), 1);
        assert!(!is_instance_id("ABCDEF0123456789abcdef0123456789"));
        assert!(!is_instance_id("abc"));
    }

    #[test]
    fn single_bodies_follow_the_batch_and_do_not_change() {
        let report = Keys::fresh().cut(&batch());
        let singles = report.single_bodies();
        assert_eq!(
            singles,
            vec![
                (
                    "Alloc".to_owned(),
                    br#"{"id":"Alloc","type":"gauge","value":1.5}"#.to_vec()
                ),
                (
                    "PollCount".to_owned(),
                    br#"{"id":"PollCount","type":"counter","delta":3}"#.to_vec()
                ),
            ]
        );
        assert_eq!(report.single_bodies(), singles);
    }

    #[test]
    fn a_tagged_batch_counts_its_polls_and_comes_back_from_the_file() {
        let tagged = Batch {
            gauges: vec![("Alloc;host=a", 1.5)],
            counters: vec![("PollCount;host=a", 3), ("PollCount;host=old", 2)],
        };
        let report = Keys::fresh().cut(&tagged);
        assert_eq!(report.polls, 5, "PollCount under any tags");
        assert_eq!(
            String::from_utf8(report.body.clone()).unwrap(),
            r#"[{"id":"Alloc;host=a","type":"gauge","value":1.5},{"id":"PollCount;host=a","type":"counter","delta":3},{"id":"PollCount;host=old","type":"counter","delta":2}]"#
        );
        let body = String::from_utf8(report.body.clone()).unwrap();
        let back = Report::from_saved(report.key.clone(), 1, body, report.first_sent, 5);
        assert_eq!(back.unwrap().body, report.body);
    }

    #[test]
    fn a_saved_report_comes_back_identical_or_is_refused() {
        let report = Keys::fresh().cut(&batch());
        let body = String::from_utf8(report.body.clone()).unwrap();
        let back = Report::from_saved(
            report.key.clone(),
            report.sequence,
            body.clone(),
            report.first_sent,
            report.polls,
        )
        .unwrap();
        assert_eq!(back, report);
        assert!(Report::from_saved("k:1".into(), 1, body, 0, 4).is_err());
        assert!(Report::from_saved("k:1".into(), 1, "{".into(), 0, 0).is_err());
    }
}
