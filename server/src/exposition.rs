//! The Prometheus text exposition format (version 0.0.4) and the pieces of the server that feed
//! it.
//!
//! [`Exposition`] is the only place that knows the format: `# HELP` and `# TYPE` before the
//! samples, one group per family, escaping of help texts and label values, float spelling.
//! Everything that has numbers to show implements [`Exporter`] and writes families into it —
//! the HTTP statistics, the process, the history, the store (through [`crate::store::Store::export`])
//! and the audit trail — so a new source of self-metrics plugs in without touching the renderer.
//!
//! [`export_names`] maps stored metric names, which may be any UTF-8, to Prometheus names by the
//! rule documented in the README's Observability section; it never maps two different metrics
//! to one name.

use std::collections::HashSet;
use std::fmt::Write;

use golectra_common::metric::MetricKind;

/// Something that contributes families to `/metrics`.
pub trait Exporter: Send + Sync {
    /// Writes this source's families. Family names must be unique across all exporters and
    /// start with `golectra_` or `process_`.
    fn export(&self, out: &mut Exposition);
}

/// The type written on a family's `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyType {
    /// Only goes up, except when the process restarts.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl FamilyType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// A sample value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleValue {
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl From<i64> for SampleValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<u64> for SampleValue {
    fn from(v: u64) -> Self {
        Self::Uint(v)
    }
}
impl From<usize> for SampleValue {
    fn from(v: usize) -> Self {
        Self::Uint(v as u64)
    }
}
impl From<f64> for SampleValue {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

/// A `/metrics` body being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    families: HashSet<String>,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// A body with room for about `families` families.
    pub fn with_capacity(families: usize) -> Self {
        Self {
            out: String::with_capacity(families * 96),
            families: HashSet::with_capacity(families),
        }
    }

    /// Starts a family: writes its `# HELP` and `# TYPE` lines. Samples follow through the
    /// returned [`Family`]. A family name must be valid and used once; breaking that is a bug
    /// in the caller and panics (the panic becomes a 500 and the worker lives on).
    pub fn family(&mut self, name: &str, help: &str, kind: FamilyType) -> Family<'_> {
        assert!(is_valid_name(name), "invalid family name {name:?}");
        assert!(
            self.families.insert(name.to_owned()),
            "family {name:?} written twice"
        );
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(&mut self.out, help);
        self.out.push('\n');
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        Family {
            out: &mut self.out,
            name: name.to_owned(),
        }
    }

    /// Whether a family of that name was written.
    pub fn contains(&self, name: &str) -> bool {
        self.families.contains(name)
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

/// The samples of one family.
#[derive(Debug)]
pub struct Family<'a> {
    out: &'a mut String,
    name: String,
}

impl Family<'_> {
    /// Writes one sample. Label names must be valid label names; values are escaped.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<SampleValue>) -> &mut Self {
        self.out.push_str(&self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                debug_assert!(is_valid_name(label) && !label.starts_with("__"));
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                escape_label_value(self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        write_value(self.out, value.into());
        self.out.push('\n');
        self
    }
}

fn write_value(out: &mut String, value: SampleValue) {
    let _ = match value {
        SampleValue::Int(v) => write!(out, "{v}"),
        SampleValue::Uint(v) => write!(out, "{v}"),
        SampleValue::Float(v) if v.is_nan() => write!(out, "NaN"),
        SampleValue::Float(v) if v == f64::INFINITY => write!(out, "+Inf"),
        SampleValue::Float(v) if v == f64::NEG_INFINITY => write!(out, "-Inf"),
        // `{:?}` is the shortest spelling that round-trips (`1.5`, `1e300`, `1e-7`), which Go's
        // ParseFloat — and so Prometheus — reads back bit-exactly.
        SampleValue::Float(v) => write!(out, "{v:?}"),
    };
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: the metric names this server writes (no colons: those are for
/// recording rules).
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn escape_help(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_label_value(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Name prefixes of the server's own families; stored metrics never get a bare name there.
pub const RESERVED_PREFIXES: [&str; 2] = ["golectra_", "process_"];

/// The Prometheus name of one stored metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedName {
    pub name: String,
    /// The name differs from the stored one except by nothing: the original goes into a `name`
    /// label so queries can still find it.
    pub suffixed: bool,
}

/// Maps stored names (each list sorted, as [`crate::store::Snapshot`] has them) to distinct
/// Prometheus names:
///
/// 1. every character outside `[A-Za-z0-9_]` becomes `_`, and a leading digit gets a `_` in
///    front;
/// 2. a suffix `_` + 8 hex digits of FNV-1a-32 over `"<type>:<original name>"` is appended when
///    step 1 changed anything, when the result starts with `golectra_` or `process_`, when it
///    already ends like such a suffix (`_` + 8 hex digits), or for a counter whose name is also a
///    stored gauge's;
/// 3. should two suffixed names still coincide (a 32-bit hash collision), the later in the order
///    gauges-then-counters, each by name, gets `_2`, `_3`, … appended.
///
/// Unsuffixed results are their stored names unchanged, hence distinct from each other; they
/// never end like a suffix, hence distinct from suffixed ones; step 3 separates the rest.
pub fn export_names(gauges: &[&str], counters: &[&str]) -> (Vec<ExportedName>, Vec<ExportedName>) {
    let gauge_set: HashSet<&str> = gauges.iter().copied().collect();
    let mut taken: HashSet<String> = HashSet::with_capacity(gauges.len() + counters.len());
    let mut map = |kind: MetricKind, name: &str| {
        let (mut exported, suffixed) = candidate(
            kind,
            name,
            kind == MetricKind::Counter && gauge_set.contains(name),
        );
        if taken.contains(&exported) {
            let base = exported.clone();
            exported = (2u64..)
                .map(|i| format!("{base}_{i}"))
                .find(|n| !taken.contains(n))
                .expect("an unbounded range has a free number");
        }
        taken.insert(exported.clone());
        ExportedName {
            name: exported,
            suffixed,
        }
    };
    let g = gauges.iter().map(|n| map(MetricKind::Gauge, n)).collect();
    let c = counters
        .iter()
        .map(|n| map(MetricKind::Counter, n))
        .collect();
    (g, c)
}

/// Steps 1 and 2 of [`export_names`].
fn candidate(kind: MetricKind, name: &str, shared_with_gauge: bool) -> (String, bool) {
    let mut out = String::with_capacity(name.len() + 10);
    let mut changed = false;
    for (i, c) in name.chars().enumerate() {
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
            changed = true;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            out.push('_');
            changed = true;
        }
    }
    let needs_suffix = changed
        || shared_with_gauge
        || RESERVED_PREFIXES.iter().any(|p| out.starts_with(p))
        || looks_suffixed(&out);
    if needs_suffix {
        let _ = write!(out, "_{:08x}", fnv1a32(kind, name));
    }
    (out, needs_suffix)
}

/// Ends with `_` and 8 lowercase hex digits, like a suffix of [`candidate`].
fn looks_suffixed(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 9
        && b[b.len() - 9] == b'_'
        && b[b.len() - 8..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// FNV-1a, 32 bits, over `"<type>:<name>"`: tiny, stable across versions and platforms.
fn fnv1a32(kind: MetricKind, name: &str) -> u32 {
    let kind = match kind {
        MetricKind::Gauge => "gauge",
        MetricKind::Counter => "counter",
    };
    fnv1a32_bytes(kind.bytes().chain([b':']).chain(name.bytes()))
}

fn fnv1a32_bytes(bytes: impl Iterator<Item = u8>) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn families_and_escaping() {
        let mut e = Exposition::new();
        e.family("golectra_x_total", "a \\ help\nline", FamilyType::Counter)
            .sample(&[("route", "/a\"b\\c\nd")], 3u64)
            .sample(&[], -2i64);
        e.family("g", "f", FamilyType::Gauge)
            .sample(&[], 1.5)
            .sample(&[("a", "1"), ("b", "2")], 1e300)
            .sample(&[], 0.1 + 0.2)
            .sample(&[], f64::NAN)
            .sample(&[], f64::NEG_INFINITY);
        assert_eq!(
            e.into_string(),
            "# HELP golectra_x_total a \\\\ help\\nline\n# TYPE golectra_x_total counter\n\
             golectra_x_total{route=\"/a\\\"b\\\\c\\nd\"} 3\ngolectra_x_total -2\n\
             # HELP g f\n# TYPE g gauge\ng 1.5\ng{a=\"1\",b=\"2\"} 1e300\ng 0.30000000000000004\ng NaN\ng -Inf\n"
        );
    }

    #[test]
    #[should_panic(expected = "written twice")]
    fn a_family_is_written_once() {
        let mut e = Exposition::new();
        e.family("a", "x", FamilyType::Gauge);
        e.family("a", "x", FamilyType::Gauge);
    }

    #[test]
    fn clean_names_stay_as_they_are() {
        let (g, c) = export_names(&["Alloc", "_x", "heap_bytes"], &["PollCount"]);
        let names: Vec<_> = g.iter().chain(&c).map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["Alloc", "_x", "heap_bytes", "PollCount"]);
        assert!(g.iter().chain(&c).all(|e| !e.suffixed));
    }

    #[test]
    fn sanitized_names_get_a_stable_suffix() {
        let (g, c) = export_names(
            &[
                "9lives",
                "cpu load",
                "golectra_http_requests_total",
                "x",
                "x_deadbeef",
            ],
            &["<script>", "process_open_fds", "x"],
        );
        let names: Vec<_> = g.iter().chain(&c).map(|e| e.name.as_str()).collect();
        // The suffixes are FNV-1a-32 of "<type>:<name>": fixed forever, so scrapes stay stable.
        assert_eq!(
            names,
            [
                "_9lives_d29c3e54",
                "cpu_load_778a899c",
                "golectra_http_requests_total_1be347f0",
                "x",
                "x_deadbeef_1bcb11ff",
                "_script__80f192dc",
                "process_open_fds_f86da9b9",
                "x_def0aa19",
            ]
        );
        assert!(
            g.iter()
                .chain(&c)
                .filter(|e| e.name != "x")
                .all(|e| e.suffixed)
        );
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a32_bytes(b"".iter().copied()), 0x811c9dc5);
        assert_eq!(fnv1a32_bytes(b"a".iter().copied()), 0xe40c292c);
        assert_eq!(fnv1a32_bytes(b"foobar".iter().copied()), 0xbf9cf968);
    }

    #[test]
    fn hash_collisions_are_separated() {
        // Force a coincidence: "a b" and "a-b" share step 1; pretend their hashes agree by
        // mapping the same metric twice (the rule must still give distinct names).
        let (g, _) = export_names(&["a b", "a b"], &[]);
        assert_ne!(g[0].name, g[1].name);
        assert_eq!(g[1].name, format!("{}_2", g[0].name));
    }

    proptest! {
        /// Any set of stored names maps to valid, pairwise distinct Prometheus names.
        #[test]
        fn names_are_valid_and_distinct(
            gauges in proptest::collection::btree_set("[a-z0-9_ .:<>é-]{1,12}", 0..24),
            counters in proptest::collection::btree_set("[a-z0-9_ .:<>é-]{1,12}", 0..24),
        ) {
            let gauges: Vec<&str> = gauges.iter().map(String::as_str).collect();
            let counters: Vec<&str> = counters.iter().map(String::as_str).collect();
            let (g, c) = export_names(&gauges, &counters);
            let mut seen = HashSet::new();
            for e in g.iter().chain(&c) {
                prop_assert!(is_valid_name(&e.name), "{}", e.name);
                prop_assert!(RESERVED_PREFIXES.iter().all(|p| !e.name.starts_with(p)) || e.suffixed);
                prop_assert!(seen.insert(e.name.clone()), "duplicate {}", e.name);
            }
        }
    }
}
