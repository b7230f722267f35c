//! The metric data model and its JSON wire form (docs/http-api.md): a metric is identified by
//! `(kind, name)`; a gauge holds a finite `f64`, a counter an `i64` running total.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The 27 runtime gauges the original agent reports (Go's `runtime.MemStats` names), in the
/// original's order. The Golectra agent sends the same names.
pub const RUNTIME_GAUGES: [&str; 27] = [
    "Alloc",
    "BuckHashSys",
    "Frees",
    "GCCPUFraction",
    "GCSys",
    "HeapAlloc",
    "HeapIdle",
    "HeapInuse",
    "HeapObjects",
    "HeapReleased",
    "HeapSys",
    "LastGC",
    "Lookups",
    "MCacheInuse",
    "MCacheSys",
    "MSpanInuse",
    "MSpanSys",
    "Mallocs",
    "NextGC",
    "NumForcedGC",
    "NumGC",
    "OtherSys",
    "PauseTotalNs",
    "StackInuse",
    "StackSys",
    "Sys",
    "TotalAlloc",
];

/// Longest accepted metric name, in bytes, after trimming.
pub const MAX_NAME_BYTES: usize = 255;

/// The two kinds of metric. A gauge and a counter may share a name without colliding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// A last-value metric holding a finite `f64`; a write replaces the value.
    Gauge,
    /// A running-total metric holding an `i64`; a write adds its delta.
    Counter,
}

impl MetricKind {
    /// Parses the type segment of a URL or the `type` field of a JSON metric.
    pub fn parse(s: &str) -> Result<Self, InvalidMetric> {
        match s {
            "gauge" => Ok(Self::Gauge),
            "counter" => Ok(Self::Counter),
            other => Err(InvalidMetric::UnknownKind(other.to_owned())),
        }
    }

    /// The lowercase name used in URLs and JSON: `gauge` or `counter`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gauge => "gauge",
            Self::Counter => "counter",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a metric was rejected. Every variant is a client error (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidMetric {
    /// The type is neither `gauge` nor `counter`.
    UnknownKind(String),
    /// The name is empty after trimming.
    EmptyName,
    /// The name is longer than [`MAX_NAME_BYTES`] after trimming.
    NameTooLong(usize),
    /// The name contains a control character.
    ControlInName,
    /// A gauge value that is not a decimal number.
    BadGauge(String),
    /// A gauge value that is NaN or infinite.
    NonFiniteGauge(String),
    /// A counter delta that is not an integer in the `i64` range.
    BadCounter(String),
    /// A JSON gauge without `value`.
    MissingValue,
    /// A JSON counter without `delta`.
    MissingDelta,
}

impl fmt::Display for InvalidMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind(k) => {
                write!(f, "unknown metric type {k:?}: expected gauge or counter")
            }
            Self::EmptyName => f.write_str("metric name is empty"),
            Self::NameTooLong(n) => {
                write!(
                    f,
                    "metric name is {n} bytes long: at most {MAX_NAME_BYTES} allowed"
                )
            }
            Self::ControlInName => f.write_str("metric name contains a control character"),
            Self::BadGauge(v) => write!(f, "invalid gauge value {v:?}: expected a decimal number"),
            Self::NonFiniteGauge(v) => {
                write!(
                    f,
                    "invalid gauge value {v:?}: NaN and infinities are not accepted"
                )
            }
            Self::BadCounter(v) => {
                write!(
                    f,
                    "invalid counter delta {v:?}: expected a 64-bit signed integer"
                )
            }
            Self::MissingValue => f.write_str("gauge without \"value\""),
            Self::MissingDelta => f.write_str("counter without \"delta\""),
        }
    }
}

impl std::error::Error for InvalidMetric {}

/// Trims a name, checks it against the naming rules of docs/http-api.md and returns its
/// canonical form (a tagged name's tags sorted by key, [`crate::tags::canonical`]).
pub fn validate_name(raw: &str) -> Result<Cow<'_, str>, InvalidMetric> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(InvalidMetric::EmptyName);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(InvalidMetric::NameTooLong(name.len()));
    }
    if name.chars().any(char::is_control) {
        return Err(InvalidMetric::ControlInName);
    }
    Ok(crate::tags::canonical(name))
}

/// Parses a gauge value from text; rejects NaN and infinities.
pub fn parse_gauge(text: &str) -> Result<f64, InvalidMetric> {
    let value: f64 = text
        .parse()
        .map_err(|_| InvalidMetric::BadGauge(text.to_owned()))?;
    check_finite(value, text)
}

fn check_finite(value: f64, shown: &str) -> Result<f64, InvalidMetric> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(InvalidMetric::NonFiniteGauge(shown.to_owned()))
    }
}

/// Parses a counter delta from text.
pub fn parse_counter(text: &str) -> Result<i64, InvalidMetric> {
    text.parse()
        .map_err(|_| InvalidMetric::BadCounter(text.to_owned()))
}

/// Formats a gauge the way the text API echoes it: the shortest decimal that parses back to the
/// same `f64`, never with an exponent and never with a needless `.0` (`1234`, `0.1`, `0.0000001`).
pub fn format_gauge(value: f64) -> String {
    // Rust's `Display` for f64 is exactly that: shortest round-trip digits, positional notation.
    value.to_string()
}

/// A validated write of one metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Set the gauge `name` to `value` (finite).
    Gauge {
        /// The gauge's name, trimmed and validated.
        name: String,
        /// The new value; never NaN or infinite.
        value: f64,
    },
    /// Add `delta` to the counter `name`.
    Counter {
        /// The counter's name, trimmed and validated.
        name: String,
        /// The increment, possibly negative, added to the running total.
        delta: i64,
    },
}

impl Update {
    /// Validates the three path segments of `POST /update/{type}/{name}/{value}`.
    pub fn from_text(kind: &str, name: &str, value: &str) -> Result<Self, InvalidMetric> {
        let kind = MetricKind::parse(kind)?;
        let name = validate_name(name)?.into_owned();
        Ok(match kind {
            MetricKind::Gauge => Self::Gauge {
                name,
                value: parse_gauge(value)?,
            },
            MetricKind::Counter => Self::Counter {
                name,
                delta: parse_counter(value)?,
            },
        })
    }

    /// The metric name the update writes, already trimmed and validated.
    pub fn name(&self) -> &str {
        match self {
            Self::Gauge { name, .. } | Self::Counter { name, .. } => name,
        }
    }

    /// Whether the update writes a gauge or a counter.
    pub fn kind(&self) -> MetricKind {
        match self {
            Self::Gauge { .. } => MetricKind::Gauge,
            Self::Counter { .. } => MetricKind::Counter,
        }
    }
}

/// The JSON form of a metric as it travels on the wire and in snapshot files:
/// `{"id":"Alloc","type":"gauge","value":1.5}` or `{"id":"PollCount","type":"counter","delta":7}`.
///
/// Unknown fields (the original's optional `hash`, say) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric<'a> {
    /// The metric name (`id` on the wire).
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The metric type as sent (`gauge` or `counter`); checked only by [`Metric::to_update`].
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The counter increment; `None` for a gauge and omitted from the JSON then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<i64>,
    /// The gauge value; `None` for a counter and omitted from the JSON then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

impl<'a> Metric<'a> {
    /// A gauge `id` with `value` set and no `delta`.
    pub fn gauge(id: impl Into<Cow<'a, str>>, value: f64) -> Self {
        Self {
            id: id.into(),
            kind: Cow::Borrowed("gauge"),
            delta: None,
            value: Some(value),
        }
    }

    /// A counter `id` with `delta` set and no `value`.
    pub fn counter(id: impl Into<Cow<'a, str>>, delta: i64) -> Self {
        Self {
            id: id.into(),
            kind: Cow::Borrowed("counter"),
            delta: Some(delta),
            value: None,
        }
    }

    /// Checks the metric and turns it into an [`Update`].
    pub fn to_update(&self) -> Result<Update, InvalidMetric> {
        let kind = MetricKind::parse(&self.kind)?;
        let name = validate_name(&self.id)?.into_owned();
        Ok(match kind {
            MetricKind::Gauge => {
                let value = self.value.ok_or(InvalidMetric::MissingValue)?;
                // Formatted only for the error message: the hot path never formats a float.
                if !value.is_finite() {
                    return Err(InvalidMetric::NonFiniteGauge(value.to_string()));
                }
                Update::Gauge { name, value }
            }
            MetricKind::Counter => Update::Counter {
                name,
                delta: self.delta.ok_or(InvalidMetric::MissingDelta)?,
            },
        })
    }
}

/// The `{"id":…,"type":…}` body of `POST /value`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MetricId<'a> {
    /// The metric name asked for.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The metric type asked for, as sent (`gauge` or `counter`).
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn runtime_gauges_are_the_specs() {
        let spec = "Alloc BuckHashSys Frees GCCPUFraction GCSys HeapAlloc HeapIdle HeapInuse \
            HeapObjects HeapReleased HeapSys LastGC Lookups MCacheInuse MCacheSys MSpanInuse \
            MSpanSys Mallocs NextGC NumForcedGC NumGC OtherSys PauseTotalNs StackInuse StackSys \
            Sys TotalAlloc";
        assert_eq!(
            RUNTIME_GAUGES.to_vec(),
            spec.split_whitespace().collect::<Vec<_>>()
        );
    }

    #[test]
    fn gauge_text_is_shortest_positional() {
        assert_eq!(format_gauge(1234.0), "1234");
        assert_eq!(format_gauge(0.1), "0.1");
        assert_eq!(format_gauge(1e-7), "0.0000001");
        assert_eq!(format_gauge(-2.5), "-2.5");
        assert_eq!(format_gauge(1e21), "1000000000000000000000");
    }

    #[test]
    fn rejects_non_finite_and_garbage() {
        for bad in ["NaN", "inf", "-inf", "infinity", "1e400"] {
            assert!(
                matches!(parse_gauge(bad), Err(InvalidMetric::NonFiniteGauge(_))),
                "{bad}"
            );
        }
        for bad in ["", "abc", "1,5", " 1"] {
            assert!(
                matches!(parse_gauge(bad), Err(InvalidMetric::BadGauge(_))),
                "{bad}"
            );
        }
        assert!(parse_counter("1.0").is_err());
        assert!(parse_counter("9223372036854775808").is_err());
        assert_eq!(parse_counter("-9223372036854775808"), Ok(i64::MIN));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  cpu "), Ok("cpu".into()));
        assert_eq!(validate_name("   "), Err(InvalidMetric::EmptyName));
        assert_eq!(validate_name(&"a".repeat(255)).map(|n| n.len()), Ok(255));
        assert_eq!(
            validate_name(&"a".repeat(256)),
            Err(InvalidMetric::NameTooLong(256))
        );
        assert_eq!(validate_name("a\u{7}b"), Err(InvalidMetric::ControlInName));
    }

    #[test]
    fn json_metric_shapes() {
        let m: Metric =
            serde_json::from_str(r#"{"id":"c","type":"counter","delta":7,"hash":"x"}"#).unwrap();
        assert_eq!(
            m.to_update(),
            Ok(Update::Counter {
                name: "c".into(),
                delta: 7
            })
        );
        let m: Metric = serde_json::from_str(r#"{"id":"g","type":"gauge"}"#).unwrap();
        assert_eq!(m.to_update(), Err(InvalidMetric::MissingValue));
        assert!(
            serde_json::from_str::<Metric>(r#"{"id":"c","type":"counter","delta":7.5}"#).is_err()
        );
        assert_eq!(
            serde_json::to_string(&Metric::gauge("g", 1.5)).unwrap(),
            r#"{"id":"g","type":"gauge","value":1.5}"#
        );
    }

    proptest! {
        #[test]
        fn gauge_text_round_trips(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
            let text = format_gauge(v);
            prop_assert!(!text.contains('e'));
            prop_assert_eq!(parse_gauge(&text).unwrap().to_bits(), v.to_bits());
        }

        #[test]
        fn gauge_json_round_trips(v in any::<f64>().prop_filter("finite", |v| v.is_finite())) {
            let json = serde_json::to_string(&Metric::gauge("g", v)).unwrap();
            let back: Metric = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.value.unwrap().to_bits(), v.to_bits());
        }

        #[test]
        fn counter_text_round_trips(v in any::<i64>()) {
            prop_assert_eq!(parse_counter(&v.to_string()), Ok(v));
        }

        /// Any text: an accepted gauge is finite and its formatted form parses back to it.
        #[test]
        fn arbitrary_gauge_text_is_rejected_or_round_trips(text in "\\PC{0,24}|[-+0-9.eE]{1,24}") {
            if let Ok(v) = parse_gauge(&text) {
                prop_assert!(v.is_finite());
                prop_assert_eq!(parse_gauge(&format_gauge(v)).map(f64::to_bits), Ok(v.to_bits()));
            }
        }

        /// Any text: an accepted counter formats back to the same number.
        #[test]
        fn arbitrary_counter_text_is_rejected_or_round_trips(text in "\\PC{0,24}|[-+0-9]{1,24}") {
            if let Ok(v) = parse_counter(&text) {
                prop_assert_eq!(parse_counter(&v.to_string()), Ok(v));
            }
        }
    }
}
