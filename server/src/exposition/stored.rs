//! How the stored metrics appear in `/metrics`: one family per type and **base name**, one
//! sample per stored metric, its tags as labels (docs/observability.md, "Tags become labels").
//!
//! `Alloc`, `Alloc;host=web1` and `Alloc;dc=eu;host=web2` are three samples of the gauge family
//! `alloc`. Family names are [`export_names`] of the base names, so the naming rule and its
//! promise — two bases of one type never share a family, a gauge and a counter never share one
//! — carry over. Tag keys become label names by [`label_names`], one-to-one over the keys of a
//! scrape; with tags kept in canonical form that makes every stored metric's (family, label
//! set) its own.
//!
//! A stored name in tagged form whose tags are not sorted by key — which only a database
//! written by a version without tags can hold — is exported as a plain name: its canonical twin
//! may be stored beside it, and the two would otherwise be one series.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::ops::Range;

use golectra_common::tags::TaggedName;

use super::{ExportedName, export_names, fnv1a32_bytes};

/// The label that carries the base name of a renamed family.
pub const NAME_LABEL: &str = "name";

/// What a tag key that could be taken for one of ours is prefixed with (`name` → `tag_name`).
pub const TAG_PREFIX: &str = "tag_";

/// The families of the stored metrics, in the order they are written.
#[derive(Debug)]
pub struct Layout<'a> {
    /// The gauge families, by base name.
    pub gauges: Families<'a>,
    /// The counter families, by base name.
    pub counters: Families<'a>,
    /// The label name of every tag key stored.
    labels: HashMap<&'a str, String>,
}

/// The families of one type.
#[derive(Debug)]
pub struct Families<'a> {
    /// The families, by base name.
    pub families: Vec<StoredFamily<'a>>,
    /// `(base name, position in the list given to Layout::new)` of every metric, sorted: each
    /// family is a run of it. Some 24 bytes a metric, where a map of lists would take three
    /// times as much on a large store.
    members: Vec<(&'a str, usize)>,
}

/// One family: the stored metrics of one type that share a base name.
#[derive(Debug)]
pub struct StoredFamily<'a> {
    /// The family name; `suffixed` when it differs from the base (then every sample carries
    /// the base in a `name` label).
    pub exported: ExportedName,
    /// The base name its metrics share.
    pub base: &'a str,
    /// Its run in the members of its [`Families`].
    members: Range<usize>,
}

impl Families<'_> {
    /// The metrics of `family` (one of these): their positions in the list given to
    /// [`Layout::new`], in order.
    pub fn members(&self, family: &StoredFamily) -> impl Iterator<Item = usize> + '_ {
        self.members[family.members.clone()].iter().map(|(_, i)| *i)
    }
}

impl<'a> Layout<'a> {
    /// Lays out stored gauge and counter names (each list sorted, as
    /// [`crate::store::Reading`] has them).
    pub fn new(gauges: &[&'a str], counters: &[&'a str]) -> Self {
        let gauge_members = by_base(gauges);
        let counter_members = by_base(counters);
        let gauge_runs = runs(&gauge_members);
        let counter_runs = runs(&counter_members);
        let bases = |members: &[(&'a str, usize)], runs: &[Range<usize>]| -> Vec<&'a str> {
            runs.iter().map(|r| members[r.start].0).collect()
        };
        let (gauge_names, counter_names) = export_names(
            &bases(&gauge_members, &gauge_runs),
            &bases(&counter_members, &counter_runs),
        );
        let mut keys: HashSet<&str> = HashSet::new();
        for name in gauges.iter().chain(counters) {
            if let Some(tagged) = tags_of(name) {
                keys.extend(tagged.tags.iter().map(|(key, _)| *key));
            }
        }
        let families = |members: Vec<(&'a str, usize)>, runs: Vec<Range<usize>>, names| {
            let families = runs
                .into_iter()
                .zip(names)
                .map(|(run, exported)| StoredFamily {
                    exported,
                    base: members[run.start].0,
                    members: run,
                })
                .collect();
            Families { families, members }
        };
        Self {
            gauges: families(gauge_members, gauge_runs, gauge_names),
            counters: families(counter_members, counter_runs, counter_names),
            labels: label_names(keys),
        }
    }

    /// Puts the labels of the stored metric `name` (one of those given to [`Layout::new`]) of
    /// `family` into `labels`, sorted by label name: each tag under its label name and, when
    /// the family is renamed, `name` = the base name. One buffer serves every sample.
    pub fn labels<'s>(
        &'s self,
        family: &'s StoredFamily<'a>,
        name: &'s str,
        labels: &mut Vec<(&'s str, &'s str)>,
    ) {
        labels.clear();
        if let Some(tagged) = tags_of(name) {
            for (key, value) in tagged.tags {
                let label = self.labels.get(key).expect("every stored key has a label");
                labels.push((label.as_str(), value));
            }
        }
        if family.exported.suffixed {
            labels.push((NAME_LABEL, family.base));
        }
        labels.sort_unstable_by_key(|(label, _)| *label);
    }
}

/// The tags of a stored name, if it is a tagged name in canonical form (tags sorted by key);
/// any other name is plain.
fn tags_of(name: &str) -> Option<TaggedName<'_>> {
    TaggedName::parse(name).filter(|t| t.tags.windows(2).all(|w| w[0].0 < w[1].0))
}

/// `(base name, position)` of every name, sorted (a name list sorted by name is nearly so).
fn by_base<'a>(names: &[&'a str]) -> Vec<(&'a str, usize)> {
    let mut members: Vec<(&str, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (tags_of(name).map_or(*name, |t| t.base), i))
        .collect();
    members.sort_unstable();
    members
}

/// The runs of equal base names in sorted `members`.
fn runs(members: &[(&str, usize)]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    for (i, (base, _)) in members.iter().enumerate() {
        match runs.last_mut() {
            Some(run) if members[run.start].0 == *base => run.end = i + 1,
            _ => runs.push(i..i + 1),
        }
    }
    runs
}

/// Maps tag keys to distinct label names that `promtool check metrics` accepts and that can
/// never be taken for the `name` label or a label reserved by Prometheus:
///
/// 1. a key with a lower-case letter followed by an upper-case one (camelCase, which the
///    linter rejects in label names) is snake-cased: `_` at each such boundary, then
///    lower-cased (`hostName` → `host_name`); any other key is kept as it is (`Host`, `dc`);
/// 2. a result that is `name`, or starts with `__` (reserved by Prometheus) or `tag_`, gets
///    `tag_` in front (`name` → `tag_name`, `__meta` → `tag___meta`, `tag_x` → `tag_tag_x`), so
///    steps 1 and 2 are one-to-one on keys without camelCase;
/// 3. a snake-cased key whose result coincides with another key's gets `_` + 8 hex digits of
///    FNV-1a-32 over `"tag:<key>"`, and should that still coincide, `_2`, `_3`, … (keys kept as
///    they are keep their label).
pub fn label_names<'a>(keys: impl IntoIterator<Item = &'a str>) -> HashMap<&'a str, String> {
    let mut candidates: Vec<(&str, String, bool)> = keys
        .into_iter()
        .map(|key| {
            let (label, snaked) = label_candidate(key);
            (key, label, snaked)
        })
        .collect();
    // Keys kept as they are first, so they keep their label; then in key order.
    candidates.sort_unstable_by(|a, b| (a.2, a.0).cmp(&(b.2, b.0)));
    let mut occurrences: HashMap<&str, usize> = HashMap::with_capacity(candidates.len());
    for (_, label, _) in &candidates {
        *occurrences.entry(label.as_str()).or_default() += 1;
    }
    let mut taken: HashSet<String> = HashSet::with_capacity(candidates.len());
    let mut out = HashMap::with_capacity(candidates.len());
    for (key, label, snaked) in &candidates {
        let mut label = label.clone();
        if *snaked && occurrences[label.as_str()] > 1 {
            let hash = fnv1a32_bytes(b"tag:".iter().chain(key.as_bytes()).copied());
            let _ = write!(label, "_{hash:08x}");
        }
        if taken.contains(&label) {
            let base = label.clone();
            label = (2u64..)
                .map(|i| format!("{base}_{i}"))
                .find(|l| !taken.contains(l))
                .expect("an unbounded range has a free number");
        }
        taken.insert(label.clone());
        out.insert(*key, label);
    }
    out
}

/// Steps 1 and 2 of [`label_names`] for one key, and whether it was snake-cased.
fn label_candidate(key: &str) -> (String, bool) {
    let bytes = key.as_bytes();
    let camel = bytes
        .windows(2)
        .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
    let mut label = if camel {
        let mut snake = String::with_capacity(key.len() + 4);
        let mut prev_lower = false;
        for c in key.chars() {
            if c.is_ascii_uppercase() && prev_lower {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
            prev_lower = c.is_ascii_lowercase();
        }
        snake
    } else {
        key.to_owned()
    };
    if label == NAME_LABEL || label.starts_with("__") || label.starts_with(TAG_PREFIX) {
        label.insert_str(0, TAG_PREFIX);
    }
    (label, camel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every sample as `family{labels}` text, gauges then counters.
    fn samples(gauges: &[&str], counters: &[&str]) -> Vec<String> {
        let layout = Layout::new(gauges, counters);
        let mut out = Vec::new();
        for (names, families) in [(gauges, &layout.gauges), (counters, &layout.counters)] {
            for family in &families.families {
                for i in families.members(family) {
                    let mut labels = Vec::new();
                    layout.labels(family, names[i], &mut labels);
                    let labels: Vec<String> =
                        labels.iter().map(|(l, v)| format!("{l}={v:?}")).collect();
                    out.push(format!("{}{{{}}}", family.exported.name, labels.join(",")));
                }
            }
        }
        out
    }

    #[test]
    fn tagged_names_are_samples_of_their_base_family() {
        let gauges = [
            "Alloc",
            "Alloc2",
            "Alloc;dc=eu;host=web2",
            "Alloc;host=web1",
            "up;host=a",
        ];
        let layout = Layout::new(&gauges, &["Alloc;host=web1"]);
        // A counter sharing a gauge's base gets a family of its own, as for plain names: both
        // renamed names would be "alloc", so both get their hash.
        let names: Vec<(&str, &str, Vec<usize>)> = layout
            .gauges
            .families
            .iter()
            .map(|f| {
                let members = layout.gauges.members(f).collect();
                (f.exported.name.as_str(), f.base, members)
            })
            .collect();
        assert_eq!(
            names,
            [
                ("alloc_8966095f", "Alloc", vec![0, 2, 3]),
                ("alloc2", "Alloc2", vec![1]),
                ("up", "up", vec![4]),
            ]
        );
        assert_eq!(
            samples(&gauges, &["Alloc;host=web1"]),
            [
                r#"alloc_8966095f{name="Alloc"}"#,
                r#"alloc_8966095f{dc="eu",host="web2",name="Alloc"}"#,
                r#"alloc_8966095f{host="web1",name="Alloc"}"#,
                r#"alloc2{name="Alloc2"}"#,
                // A base that needs no renaming carries no name label.
                r#"up{host="a"}"#,
                r#"alloc_4bfa3260{host="web1",name="Alloc"}"#,
            ]
        );
    }

    #[test]
    fn keys_that_could_be_taken_for_our_labels_are_prefixed() {
        let labels = label_names([
            "name", "__meta", "__", "tag_x", "Name", "host", "Host", "_", "dc", "x_name",
        ]);
        let get = |k: &str| labels[k].as_str();
        assert_eq!(get("name"), "tag_name");
        assert_eq!(get("__meta"), "tag___meta");
        assert_eq!(get("__"), "tag___");
        assert_eq!(get("tag_x"), "tag_tag_x");
        for kept in ["Name", "host", "Host", "_", "dc", "x_name"] {
            assert_eq!(get(kept), kept);
        }
        assert_eq!(
            samples(&["x;__meta=a;name=x;tag_name=y"], &[]),
            [r#"x{tag___meta="a",tag_name="x",tag_tag_name="y"}"#]
        );
    }

    #[test]
    fn camel_case_keys_are_snake_cased_and_kept_apart() {
        let labels = label_names(["hostName", "dcName", "host_name", "a1B", "tagX", "nAme"]);
        let get = |k: &str| labels[k].as_str();
        assert_eq!(get("dcName"), "dc_name");
        assert_eq!(get("a1B"), "a1B", "no lint complaint: kept");
        assert_eq!(get("tagX"), "tag_tag_x");
        // "nAme" becomes "n_ame"; "hostName" meets "host_name", which keeps its label.
        assert_eq!(get("nAme"), "n_ame");
        assert_eq!(get("host_name"), "host_name");
        let hashed = format!(
            "host_name_{:08x}",
            fnv1a32_bytes(b"tag:hostName".iter().copied())
        );
        assert_eq!(get("hostName"), hashed);
        assert_eq!(
            samples(&["x;hostName=a", "x;host_name=a"], &[]),
            [
                format!(r#"x{{{hashed}="a"}}"#),
                r#"x{host_name="a"}"#.to_owned()
            ]
        );
    }

    #[test]
    fn names_that_are_not_canonical_or_not_tagged_are_plain() {
        assert_eq!(
            samples(&["Alloc;dc=eu;host=a", "Alloc;host=a;dc=eu", "Alloc;"], &[]),
            [
                // "Alloc;" would be "alloc" too: both renamed names get their hash.
                r#"alloc_8966095f{dc="eu",host="a",name="Alloc"}"#,
                r#"alloc_afa0c86c{name="Alloc;"}"#,
                r#"alloc_host_a_dc_eu_aa27a115{name="Alloc;host=a;dc=eu"}"#,
            ]
        );
    }

    proptest! {
        /// Whatever names are stored, no two metrics of one type share a family and label set,
        /// a gauge and a counter never share a family, and every label is valid, unique within
        /// its sample and lint-free.
        #[test]
        fn every_metric_is_its_own_series(
            gauges in proptest::collection::btree_set(
                "(Alloc|alloc|m|name|x_1|Name)(;(name|__n|tag_name|hostName|host_name|host|tag_host_name|Host|hOst)=[ab\"\\\\]{1,2}){0,4}", 0..40),
            counters in proptest::collection::btree_set(
                "(Alloc|m|x 1)(;(name|tag_name|hostName|host_name|host)=[ab]){0,3}", 0..12),
        ) {
            let gauges: Vec<&str> = gauges.iter().map(String::as_str).collect();
            let counters: Vec<&str> = counters.iter().map(String::as_str).collect();
            let layout = Layout::new(&gauges, &counters);
            let mut series = HashSet::new();
            let mut gauge_families = HashSet::new();
            let mut members = 0;
            for (kind, names, families) in [("gauge", &gauges, &layout.gauges), ("counter", &counters, &layout.counters)] {
                for family in &families.families {
                    prop_assert!(super::super::is_valid_name(&family.exported.name));
                    if kind == "gauge" {
                        gauge_families.insert(family.exported.name.clone());
                    } else {
                        prop_assert!(!gauge_families.contains(&family.exported.name));
                    }
                    for i in families.members(family) {
                        members += 1;
                        let mut labels = Vec::new();
                        layout.labels(family, names[i], &mut labels);
                        let mut names = HashSet::new();
                        for (label, _) in &labels {
                            prop_assert!(super::super::is_valid_name(label), "{label}");
                            prop_assert!(!label.starts_with("__"), "{label}");
                            prop_assert!(names.insert(*label), "label {label} twice");
                            prop_assert!(!label.as_bytes().windows(2).any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase()), "{label}");
                        }
                        let key = format!("{kind} {} {labels:?}", family.exported.name);
                        prop_assert!(series.insert(key.clone()), "duplicate series {key}");
                    }
                }
            }
            prop_assert_eq!(members, gauges.len() + counters.len());
        }
    }
}
