//! Tags in a metric's name, in Graphite's tagged form — `Alloc;host=web1;dc=eu` — and the tag
//! matchers of the API (`?match=host=web1`).
//!
//! The wire format knows nothing of tags: a tagged name is a plain string to the original's
//! server and clients, so hosts stay apart there too. Golectra's server reads the tags out of
//! the name: it stores the **canonical** form (tags sorted by key, so `Alloc;host=a;dc=b` and
//! `Alloc;dc=b;host=a` are one metric), turns tags into Prometheus labels and selects metrics by
//! tag. The rules (docs/http-api.md, "Tags"):
//!
//! - a tagged name is `base;key=value;key=value…`: a non-empty base, then one or more tags;
//! - a key is `[A-Za-z_][A-Za-z0-9_]*`, a value is non-empty and holds no `;` (it may hold
//!   `=`: a tag splits at its first `=`); a key appears at most once;
//! - a name with `;` that breaks any of these rules is a plain name, stored as sent.

use std::borrow::Cow;
use std::fmt;

/// A name split into its base and tags. Borrowed from the name it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedName<'a> {
    /// The name before the first `;`.
    pub base: &'a str,
    /// The tags, in the order of the name (sorted by key in a canonical name).
    pub tags: Vec<(&'a str, &'a str)>,
}

impl<'a> TaggedName<'a> {
    /// Splits `name` if it is in tagged form; `None` for a plain name (no `;`, or `;` that is
    /// not valid tag syntax).
    pub fn parse(name: &'a str) -> Option<Self> {
        let (base, rest) = name.split_once(';')?;
        if base.is_empty() {
            return None;
        }
        let mut tags = Vec::new();
        for tag in rest.split(';') {
            let (key, value) = tag.split_once('=')?;
            if !is_tag_key(key) || value.is_empty() || tags.iter().any(|(k, _)| *k == key) {
                return None;
            }
            tags.push((key, value));
        }
        Some(Self { base, tags })
    }

    /// The value of tag `key`, if the name has it.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        self.tags.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// Whether the tags are sorted by key (the canonical order).
    fn is_sorted(&self) -> bool {
        self.tags.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

impl fmt::Display for TaggedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base)?;
        for (key, value) in &self.tags {
            write!(f, ";{key}={value}")?;
        }
        Ok(())
    }
}

/// Whether `key` is a valid tag key: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_tag_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The canonical form of a name: a tagged name with its tags sorted by key; any other name as
/// it is. Borrows unless the tags had to be reordered (a plain name costs one scan for `;`).
pub fn canonical(name: &str) -> Cow<'_, str> {
    if !name.contains(';') {
        return Cow::Borrowed(name);
    }
    match TaggedName::parse(name) {
        Some(mut tagged) if !tagged.is_sorted() => {
            tagged.tags.sort_unstable_by_key(|(key, _)| *key);
            Cow::Owned(tagged.to_string())
        }
        _ => Cow::Borrowed(name),
    }
}

/// `name` with `tags` added (the agent's `TAGS`), in canonical form. A tag the name already has
/// keeps the name's value. A name that is not valid with tags added (it ends in `;`, say) is
/// returned as it is.
pub fn with_tags(name: &str, tags: &[(String, String)]) -> String {
    if tags.is_empty() {
        return name.to_owned();
    }
    let own = TaggedName::parse(name);
    let base_len = own.as_ref().map_or(name.len(), |t| t.base.len());
    if base_len == 0 || name.contains(';') && own.is_none() {
        return name.to_owned();
    }
    let mut all: Vec<(&str, &str)> = own.map(|t| t.tags).unwrap_or_default();
    for (key, value) in tags {
        if !all.iter().any(|(k, _)| k == key) {
            all.push((key, value));
        }
    }
    all.sort_unstable_by_key(|(key, _)| *key);
    let tagged = TaggedName {
        base: &name[..base_len],
        tags: all,
    };
    tagged.to_string()
}

/// Parses a tag list as the agent's `TAGS` setting spells it: `host=web1,dc=eu` (spaces around
/// items are ignored; empty = no tags; keys starting with `__` are reserved). The error names
/// the first bad item.
pub fn parse_tag_list(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("tag {item:?} is not key=value"));
        };
        let (key, value) = (key.trim(), value.trim());
        if !is_tag_key(key) {
            return Err(format!("tag key {key:?} must match [A-Za-z_][A-Za-z0-9_]*"));
        }
        if key.starts_with("__") {
            return Err(format!(
                "tag key {key:?} starts with __, which is reserved ({NAME_KEY} matches the base name)"
            ));
        }
        if value.is_empty() || value.contains(';') || value.chars().any(char::is_control) {
            return Err(format!(
                "tag {key:?} needs a non-empty value without ';' or control characters"
            ));
        }
        if tags.iter().any(|(k, _)| k == key) {
            return Err(format!("tag key {key:?} appears twice"));
        }
        tags.push((key.to_owned(), value.to_owned()));
    }
    Ok(tags)
}

/// The pseudo tag key that matches a name's base (Prometheus spells the metric name so too).
pub const NAME_KEY: &str = "__name__";

/// One `key=value` term of a matcher: the tag `key` has `value`, or with [`NAME_KEY`], the
/// base name is `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The tag key, or [`NAME_KEY`].
    pub key: String,
    /// The value it must have.
    pub value: String,
}

/// Selects metrics by their tags: every term must hold (`?match=host=web1&match=dc=eu`). An
/// empty matcher selects every metric.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    /// The terms, all of which must hold.
    pub terms: Vec<Term>,
}

impl Matcher {
    /// Adds the term `key=value` as an API parameter spells it (already percent-decoded). The
    /// error is one line saying what is wrong.
    pub fn add(&mut self, term: &str) -> Result<(), String> {
        let Some((key, value)) = term.split_once('=') else {
            return Err(format!(
                "match term {term:?} is not key=value (e.g. match=host=web1)"
            ));
        };
        if key != NAME_KEY && !is_tag_key(key) {
            return Err(format!(
                "match key {key:?} must be a tag key ([A-Za-z_][A-Za-z0-9_]*) or {NAME_KEY}"
            ));
        }
        if value.is_empty() {
            return Err(format!("match term {term:?} has an empty value"));
        }
        self.terms.push(Term {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        Ok(())
    }

    /// Whether the matcher has no terms (selects everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the (canonical) name `name` is selected. A plain name has no tags: it is
    /// selected only by terms on [`NAME_KEY`].
    pub fn matches(&self, name: &str) -> bool {
        if self.terms.is_empty() {
            return true;
        }
        let tagged = TaggedName::parse(name);
        let base = tagged.as_ref().map_or(name, |t| t.base);
        self.terms.iter().all(|term| {
            if term.key == NAME_KEY {
                base == term.value
            } else {
                tagged.as_ref().and_then(|t| t.tag(&term.key)) == Some(term.value.as_str())
            }
        })
    }
}

impl fmt::Display for Matcher {
    /// `host=web1&dc=eu`: for logs and audit events.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, term) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            write!(f, "{}={}", term.key, term.value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_name_splits_into_base_and_tags() {
        let t = TaggedName::parse("Alloc;host=web1;dc=eu").unwrap();
        assert_eq!(t.base, "Alloc");
        assert_eq!(t.tags, [("host", "web1"), ("dc", "eu")]);
        assert_eq!(t.tag("dc"), Some("eu"));
        assert_eq!(t.tag("rack"), None);
        // A value may hold '=': the tag splits at its first.
        let t = TaggedName::parse("x;q=a=b").unwrap();
        assert_eq!(t.tags, [("q", "a=b")]);
    }

    #[test]
    fn a_name_that_breaks_the_tag_syntax_is_plain() {
        for name in [
            "Alloc",
            ";host=web1",
            "Alloc;",
            "Alloc;host",
            "Alloc;host=",
            "Alloc;=web1",
            "Alloc;1host=web1",
            "Alloc;ho-st=web1",
            "Alloc;host=a;host=b",
            "Alloc;host=a;;dc=b",
            "cpu load; really",
        ] {
            assert_eq!(TaggedName::parse(name), None, "{name}");
            assert_eq!(canonical(name), name, "{name}");
        }
    }

    #[test]
    fn canonical_names_sort_tags_by_key_and_borrow_when_they_can() {
        assert_eq!(canonical("Alloc;host=web1;dc=eu"), "Alloc;dc=eu;host=web1");
        assert!(matches!(
            canonical("Alloc;dc=eu;host=web1"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(canonical("Alloc"), Cow::Borrowed(_)));
        let c = canonical("m;z=1;_a=2;b=3");
        assert_eq!(c, "m;_a=2;b=3;z=1");
        assert_eq!(canonical(&c), c, "idempotent");
    }

    #[test]
    fn the_agents_tags_are_added_in_canonical_order() {
        let tags = parse_tag_list(" host=web1 , dc=eu,").unwrap();
        assert_eq!(
            tags,
            [("host".into(), "web1".into()), ("dc".into(), "eu".into())]
        );
        assert_eq!(with_tags("Alloc", &tags), "Alloc;dc=eu;host=web1");
        // The name's own tag wins; a name that is not valid with tags stays as it is.
        assert_eq!(with_tags("Alloc;host=db", &tags), "Alloc;dc=eu;host=db");
        assert_eq!(with_tags("odd;", &tags), "odd;");
        assert_eq!(with_tags("Alloc", &[]), "Alloc");
        assert_eq!(parse_tag_list("").unwrap(), []);
    }

    #[test]
    fn a_bad_tag_list_names_the_item() {
        for (list, says) in [
            ("host", "\"host\" is not key=value"),
            ("1h=x", "tag key \"1h\""),
            ("host=", "needs a non-empty value"),
            ("host=a;b", "without ';'"),
            ("host=a,host=b", "appears twice"),
            ("__name__=x", "reserved"),
        ] {
            let e = parse_tag_list(list).unwrap_err();
            assert!(e.contains(says), "{list}: {e}");
        }
    }

    #[test]
    fn a_matcher_needs_every_term() {
        let mut m = Matcher::default();
        assert!(m.matches("anything"));
        m.add("host=web1").unwrap();
        assert!(m.matches("Alloc;host=web1"));
        assert!(m.matches("Alloc;dc=eu;host=web1"));
        assert!(!m.matches("Alloc;host=web2"));
        assert!(!m.matches("Alloc"));
        assert!(!m.matches("Alloc;host=web1;"), "plain name");
        m.add("__name__=Alloc").unwrap();
        assert!(m.matches("Alloc;host=web1"));
        assert!(!m.matches("HeapAlloc;host=web1"));
        assert_eq!(m.to_string(), "host=web1&__name__=Alloc");
        let mut by_name = Matcher::default();
        by_name.add("__name__=PollCount").unwrap();
        assert!(by_name.matches("PollCount"));
        assert!(by_name.matches("PollCount;host=a"));
    }

    #[test]
    fn a_bad_match_term_says_what_is_wrong() {
        let mut m = Matcher::default();
        assert!(m.add("host").unwrap_err().contains("not key=value"));
        assert!(m.add("ho st=a").unwrap_err().contains("must be a tag key"));
        assert!(m.add("host=").unwrap_err().contains("empty value"));
        assert!(m.is_empty());
    }
}
