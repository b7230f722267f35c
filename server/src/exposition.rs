//! The Prometheus text exposition format (version 0.0.4) and the pieces of the server that feed
//! it.
//!
//! [`Exposition`] is the only place that knows the format: `# HELP` and `# TYPE` before the
//! samples, one group per family, escaping of help texts and label values, float spelling.
//! Everything that has numbers to show implements [`Exporter`] and writes families into it —
//! the HTTP statistics, the process, the history, the store (through [`crate::store::Store::export`])
//! and the audit trail — so a new source of self-metrics plugs in without touching the renderer.
//!
//! [`export_names`] maps stored base names, which may be any UTF-8, to Prometheus names by the
//! rule documented in docs/observability.md; it never maps two different names to one.
//! [`stored`] groups the stored metrics into those families, their tags as labels.

pub mod stored;

use std::collections::{HashMap, HashSet};
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
    /// A signed integer, written in decimal.
    Int(i64),
    /// An unsigned integer, written in decimal.
    Uint(u64),
    /// A float, written as the shortest round-trip form, or `NaN`, `+Inf`, `-Inf`.
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
    /// An empty body.
    pub fn new() -> Self {
        Self::default()
    }

    /// A body with room for about `families` families.
    pub fn with_capacity(families: usize) -> Self {
        Self::with_room(families, families * 96)
    }

    /// A body with room for about `families` families in `bytes`: a body grown by doubling
    /// would hold up to three times its size while it is copied (tens of megabytes for a large
    /// store).
    pub fn with_room(families: usize, bytes: usize) -> Self {
        Self {
            out: String::with_capacity(bytes),
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

    /// The finished body, in the Prometheus text format.
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
    /// The Prometheus family name the metric is exported under.
    pub name: String,
    /// The name differs from the stored one except by nothing: the original goes into a `name`
    /// label so queries can still find it.
    pub suffixed: bool,
}

/// Maps stored names — the base names of tagged ones, see [`stored`] — (each list sorted) to
/// distinct Prometheus names that `promtool check metrics` accepts without a lint complaint:
///
/// 1. case boundaries become `_` and everything is lower-cased (`HeapAlloc` → `heap_alloc`,
///    `PauseTotalNs` → `pause_total_ns`); every other character outside `[a-z0-9_]` becomes `_`
///    (a *lossy* change), and a leading digit gets a `_` in front;
/// 2. a `_`-separated part that the Prometheus linter rejects in a gauge's name — an abbreviated
///    unit (`ms`, `ns`, `s`, `kb`, …), a non-base unit (`minutes`, `milliseconds`, `kilobytes`,
///    …), a type name (`gauge`, `counter`, …), or a reserved last part (`total`, `count`, `sum`,
///    `bucket`, `created`, `info`) — is glued to its neighbour (`pause_total_ns` →
///    `pause_totalns`, `poll_count` → `pollcount`); runs of `_` collapse (lossy);
/// 3. a suffix `_` + 8 hex digits of FNV-1a-32 over `"<type>:<original name>"` is appended when
///    step 1 or 2 was lossy, when the result starts with `golectra_` or `process_` or ends like
///    such a hash suffix, for a counter whose name is also a stored gauge's, and when a renamed
///    result coincides with the result of another stored metric;
/// 4. should two names still coincide (a 32-bit hash collision), the later in the order
///    gauges-then-counters, each by name, gets `_2`, `_3`, … appended.
///
/// Every exported name that differs from the stored one carries the original in a `name` label
/// ([`stored::Layout::labels`]).
pub fn export_names(gauges: &[&str], counters: &[&str]) -> (Vec<ExportedName>, Vec<ExportedName>) {
    let gauge_set: HashSet<&str> = gauges.iter().copied().collect();
    let all = gauges
        .iter()
        .map(|n| (MetricKind::Gauge, *n))
        .chain(counters.iter().map(|n| (MetricKind::Counter, *n)));
    let candidates: Vec<(MetricKind, &str, Candidate)> = all
        .map(|(kind, name)| {
            let shared = kind == MetricKind::Counter && gauge_set.contains(name);
            (kind, name, candidate(name, shared))
        })
        .collect();
    let mut occurrences: HashMap<&str, usize> = HashMap::with_capacity(candidates.len());
    for (_, _, c) in &candidates {
        *occurrences.entry(c.base.as_str()).or_default() += 1;
    }
    let mut taken: HashSet<String> = HashSet::with_capacity(candidates.len());
    let mut exported = Vec::with_capacity(candidates.len());
    for (kind, name, c) in &candidates {
        let renamed = c.base != *name;
        let mut out = c.base.clone();
        if c.needs_hash || (renamed && occurrences[c.base.as_str()] > 1) {
            let _ = write!(out, "_{:08x}", fnv1a32(*kind, name));
        }
        if taken.contains(&out) {
            let base = out.clone();
            out = (2u64..)
                .map(|i| format!("{base}_{i}"))
                .find(|n| !taken.contains(n))
                .expect("an unbounded range has a free number");
        }
        taken.insert(out.clone());
        let suffixed = out != *name;
        exported.push(ExportedName {
            name: out,
            suffixed,
        });
    }
    let counters_out = exported.split_off(gauges.len());
    (exported, counters_out)
}

/// Steps 1 and 2 of [`export_names`] for one name, and whether step 3 needs a hash regardless of
/// the other names.
struct Candidate {
    base: String,
    needs_hash: bool,
}

/// Parts of a name the Prometheus linter rejects (abbreviated units and type names).
const LINTED_PARTS: [&str; 18] = [
    "s",
    "ms",
    "us",
    "ns",
    "sec",
    "b",
    "kb",
    "mb",
    "gb",
    "tb",
    "pb",
    "m",
    "h",
    "d",
    "gauge",
    "counter",
    "histogram",
    "summary",
];

/// Units the linter knows, with whether each is a base unit; any of them may carry an SI or IEC
/// prefix (`milli`, `kilo`, `kibi`, …), which makes it a non-base unit.
const UNITS: [(&str, bool); 21] = [
    ("amperes", true),
    ("bytes", true),
    ("celsius", true),
    ("grams", true),
    ("joules", true),
    ("kelvin", true),
    ("meters", true),
    ("metres", true),
    ("seconds", true),
    ("volts", true),
    ("metric", true),
    ("minutes", false),
    ("hours", false),
    ("days", false),
    ("weeks", false),
    ("kelvins", false),
    ("fahrenheit", false),
    ("rankine", false),
    ("bits", false),
    ("calories", false),
    ("pounds", false),
];
const UNIT_PREFIXES: [&str; 18] = [
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega",
    "mebi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
];
/// Last parts reserved for counters, histograms, summaries and info metrics.
const RESERVED_LAST_PARTS: [&str; 6] = ["total", "count", "sum", "bucket", "created", "info"];

/// Whether the linter rejects `part` as one `_`-separated part of a gauge's name.
fn linted_part(part: &str) -> bool {
    if LINTED_PARTS.contains(&part) || ["inches", "yards", "miles", "ounces"].contains(&part) {
        return true;
    }
    let unit = UNIT_PREFIXES
        .iter()
        .find_map(|p| {
            part.strip_prefix(p)
                .filter(|rest| UNITS.iter().any(|(u, _)| u == rest))
        })
        .map(|rest| (rest, false))
        .or_else(|| {
            UNITS
                .iter()
                .find(|(u, _)| *u == part)
                .map(|(u, base)| (*u, *base))
        });
    matches!(unit, Some((_, false)))
}

fn candidate(name: &str, shared_with_gauge: bool) -> Candidate {
    // Step 1: snake case, invalid characters, leading digit.
    let mut snake = String::with_capacity(name.len() + 8);
    let mut lossy = false;
    let mut prev_lower_or_digit = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower_or_digit {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '_' {
            snake.push(c);
        } else {
            snake.push('_');
            lossy = true;
        }
        prev_lower_or_digit = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    // Step 2: glue linted parts to a neighbour (the previous part, or the next for the first),
    // until no linted part is left; empty parts (`__`, a leading or trailing `_`) are dropped,
    // which is lossy.
    let leading = if snake.starts_with('_') { "_" } else { "" };
    let mut parts: Vec<String> = snake
        .split('_')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    lossy |= format!("{leading}{}", parts.join("_")) != snake;
    let linted_at = |parts: &[String], i: usize| {
        linted_part(&parts[i])
            || (i + 1 == parts.len() && i > 0 && RESERVED_LAST_PARTS.contains(&parts[i].as_str()))
    };
    while let Some(i) = (0..parts.len()).find(|&i| linted_at(&parts, i)) {
        match parts.len() {
            1 => parts[0].insert(0, 'v'),
            _ if i == 0 => {
                let next = parts.remove(1);
                parts[0].push_str(&next);
            }
            _ => {
                let part = parts.remove(i);
                parts[i - 1].push_str(&part);
            }
        }
    }
    let mut base = format!("{leading}{}", parts.join("_"));
    if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
        base.insert(0, '_');
    }
    let needs_hash = lossy
        || shared_with_gauge
        || RESERVED_PREFIXES.iter().any(|p| base.starts_with(p))
        || looks_suffixed(&base);
    Candidate { base, needs_hash }
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
    fn snake_case_names_stay_as_they_are() {
        let (g, c) = export_names(&["_x", "heap_bytes", "up"], &["requests"]);
        let names: Vec<_> = g.iter().chain(&c).map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["_x", "heap_bytes", "up", "requests"]);
        assert!(g.iter().chain(&c).all(|e| !e.suffixed));
    }

    #[test]
    fn agent_names_become_lint_free_snake_case() {
        let (g, c) = export_names(
            &[
                "Alloc",
                "CPUutilization1",
                "GCCPUFraction",
                "HeapAlloc",
                "PauseTotalNs",
                "TotalMemory",
            ],
            &["PollCount"],
        );
        let names: Vec<_> = g.iter().chain(&c).map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "alloc",
                "cpuutilization1",
                "gccpufraction",
                "heap_alloc",
                "pause_totalns",
                "total_memory",
                "pollcount"
            ]
        );
        assert!(
            g.iter().chain(&c).all(|e| e.suffixed),
            "renamed metrics carry a name label"
        );
    }

    #[test]
    fn linted_parts_are_glued() {
        let (g, _) = export_names(
            &[
                "latency_ms",
                "ms_latency",
                "s",
                "uptime_minutes",
                "x_k_b",
                "queue_gauge_size",
                "size_kilobytes",
                "requests_total",
            ],
            &[],
        );
        let names: Vec<_> = g.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "latencyms",
                "mslatency",
                "vs",
                "uptimeminutes",
                "xkb",
                "queuegauge_size",
                "sizekilobytes",
                "requeststotal"
            ]
        );
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
                "_9lives",
                "cpu_load_778a899c",
                "golectra_http_requeststotal_1be347f0",
                "x",
                "x_deadbeef_1bcb11ff",
                "_script_80f192dc",
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
    fn renamed_names_that_coincide_are_separated_by_hash() {
        let (g, _) = export_names(&["HeapAlloc", "heapAlloc", "heap_alloc"], &[]);
        let names: Vec<_> = g.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names[2], "heap_alloc",
            "the name that needs no change keeps it"
        );
        assert!(names[0].starts_with("heap_alloc_") && names[1].starts_with("heap_alloc_"));
        assert_ne!(names[0], names[1]);
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
            gauges in proptest::collection::btree_set("[a-zA-Z0-9_ .:<>é-]{1,12}|(ms|s|total|count|kb|gauge|minutes)(_[a-z]{1,3}){0,2}", 0..24),
            counters in proptest::collection::btree_set("[a-zA-Z0-9_ .:<>é-]{1,12}|[a-z]{1,4}_(ms|s|total|count|kb|gauge|minutes)", 0..24),
        ) {
            let gauges: Vec<&str> = gauges.iter().map(String::as_str).collect();
            let counters: Vec<&str> = counters.iter().map(String::as_str).collect();
            let (g, c) = export_names(&gauges, &counters);
            let mut seen = HashSet::new();
            for e in g.iter().chain(&c) {
                prop_assert!(is_valid_name(&e.name), "{}", e.name);
                prop_assert!(RESERVED_PREFIXES.iter().all(|p| !e.name.starts_with(p)) || e.suffixed);
                prop_assert!(seen.insert(e.name.clone()), "duplicate {}", e.name);
                let parts: Vec<&str> = e.name.split('_').collect();
                for (i, part) in parts.iter().enumerate() {
                    prop_assert!(!linted_part(part), "{} has linted part {part}", e.name);
                    prop_assert!(i == 0 || i + 1 < parts.len() || !RESERVED_LAST_PARTS.contains(part), "{}", e.name);
                }
                prop_assert!(!e.name.chars().any(|c| c.is_ascii_uppercase()), "{}", e.name);
            }
        }
    }
}
