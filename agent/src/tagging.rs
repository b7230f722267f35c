//! The agent's `TAGS` on metric names (docs/agent.md, "Tags and fleets"): every name a
//! collector makes is turned into its tagged form once, where samples enter the books
//! ([`crate::accumulator::Accumulator::record`]) — `Alloc` becomes `Alloc;dc=eu;host=web1`,
//! in canonical order ([`golectra_common::tags::with_tags`]). Everything downstream (pending
//! deltas, reports and their bodies, the state file) sees only the tagged names, so a name's
//! identity in the agent's books is the name the server gets.
//!
//! Names saved by an earlier process keep the tags they were recorded with: a pending delta or
//! a report in doubt from a run with other `TAGS` is delivered once, under its old name. The
//! polls a report carries are therefore found by the base name `PollCount` whatever its tags
//! ([`is_poll_count`]).

use std::collections::HashMap;

use golectra_common::tags::{TaggedName, with_tags};

use crate::accumulator::Name;
use crate::runtime::POLL_COUNT;

/// Maps the collectors' names onto their tagged forms, each made (and leaked) once: the set of
/// names is fixed at start-up, so this holds one string per metric for the process's life.
#[derive(Debug, Default)]
pub struct Tagger {
    tags: Vec<(String, String)>,
    names: HashMap<Name, Name>,
}

impl Tagger {
    /// A tagger adding `tags` (already checked, as `TAGS` is); none = names stay plain.
    pub fn new(tags: Vec<(String, String)>) -> Self {
        Self {
            tags,
            names: HashMap::new(),
        }
    }

    /// The name `base` is sent as.
    pub fn name(&mut self, base: Name) -> Name {
        if self.tags.is_empty() {
            return base;
        }
        if let Some(name) = self.names.get(base) {
            return name;
        }
        let name: Name = Box::leak(with_tags(base, &self.tags).into_boxed_str());
        self.names.insert(base, name);
        name
    }
}

/// Whether `name` is the poll counter: `PollCount`, with any tags (this run's or an earlier
/// run's).
pub fn is_poll_count(name: &str) -> bool {
    name == POLL_COUNT || TaggedName::parse(name).is_some_and(|t| t.base == POLL_COUNT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use golectra_common::tags::parse_tag_list;

    #[test]
    fn names_get_the_tags_in_canonical_order_once() {
        let mut tagger = Tagger::new(parse_tag_list("host=web1,dc=eu").unwrap());
        let alloc = tagger.name("Alloc");
        assert_eq!(alloc, "Alloc;dc=eu;host=web1");
        assert!(
            std::ptr::eq(alloc, tagger.name("Alloc")),
            "made once, then reused"
        );
        assert_eq!(tagger.name(POLL_COUNT), "PollCount;dc=eu;host=web1");
        assert_eq!(tagger.names.len(), 2);
    }

    #[test]
    fn without_tags_names_stay_plain_and_nothing_is_made() {
        let mut tagger = Tagger::new(Vec::new());
        assert!(std::ptr::eq(tagger.name("Alloc"), "Alloc"));
        assert!(tagger.names.is_empty());
        assert_eq!(Tagger::default().name(POLL_COUNT), "PollCount");
    }

    #[test]
    fn the_poll_counter_is_found_under_any_tags() {
        for name in ["PollCount", "PollCount;host=a", "PollCount;dc=eu;host=b"] {
            assert!(is_poll_count(name), "{name}");
        }
        for name in [
            "Alloc",
            "Alloc;host=a",
            "PollCounts;host=a",
            "PollCount;",
            "x;PollCount=1",
        ] {
            assert!(!is_poll_count(name), "{name}");
        }
    }
}
