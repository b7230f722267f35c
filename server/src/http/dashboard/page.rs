//! Which rows one dashboard request shows: the selection (`?host=`, `?match=`, `query.rs`), the
//! filter (`?q=`) applied on the server, the order of the rows and the page of at most
//! [`PAGE_ROWS`] rows.
//!
//! Rows outside the selection are never sent. A selection of at most [`PAGE_ROWS`] metrics is
//! shown whole: every selected row is sent, those that do not match the filter marked `hidden`,
//! and the page's script filters again as the operator types. A larger one is *paged*: only the
//! rows that match the filter are counted, and only one page of them is sent — gauges first,
//! then counters — so the page stays a few hundred kilobytes whatever the store holds, and
//! typing asks the server again.
//!
//! Rows are in [`display_order`]: by base name, then by tags, so that a metric's hosts sit
//! together (`Alloc;host=a`, `Alloc;host=b`, then `Alloc2`, where plain byte order would put
//! `Alloc2` between `Alloc` and `Alloc;host=a`). The store's lists are sorted by name, which is
//! nearly this order, and the stable sort runs in about linear time over such input.

use std::cmp::Ordering;

use super::query::Query;

/// Most rows one page shows (gauges and counters together).
pub const PAGE_ROWS: usize = 500;

/// The rows of one table a page shows: `(index in the store's sorted list, shown)`; a row not
/// shown is sent `hidden` (only when the store is shown whole).
pub type Rows = Vec<(usize, bool)>;

/// What one request shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The gauge rows to send, in display order.
    pub gauges: Rows,
    /// The counter rows to send, in display order.
    pub counters: Rows,
    /// Gauges and counters in the selection (all of them without a host or matcher).
    pub selected: (usize, usize),
    /// Gauges and counters in the selection that match the filter.
    pub matched: (usize, usize),
    /// The page, when the selection is too large to be shown whole.
    pub paging: Option<Paging>,
}

/// Where a page sits among the matching rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// This page, from 1 (a page past the last is the last).
    pub page: usize,
    /// Pages of matching rows (at least 1).
    pub pages: usize,
    /// The first and last matching row on this page, from 1 (0 and 0 when nothing matches).
    pub rows: (usize, usize),
}

/// Plans the page `query` asks for over the store's `gauges` and `counters` names (each list
/// in the store's order; the plan's rows are indices into it).
pub fn plan<'a>(
    query: &Query,
    gauges: impl Iterator<Item = &'a str>,
    counters: impl Iterator<Item = &'a str>,
) -> Plan {
    let (gauges, counters) = (select(query, gauges), select(query, counters));
    let selected = (gauges.len(), counters.len());
    if selected.0 + selected.1 <= PAGE_ROWS {
        let mark = |rows: Vec<(usize, &str)>| -> Rows {
            rows.into_iter()
                .map(|(i, name)| (i, query.matches(name)))
                .collect()
        };
        let (gauges, counters) = (mark(gauges), mark(counters));
        let shown = |rows: &Rows| rows.iter().filter(|(_, shown)| *shown).count();
        return Plan {
            matched: (shown(&gauges), shown(&counters)),
            selected,
            gauges,
            counters,
            paging: None,
        };
    }
    let hits = |rows: Vec<(usize, &str)>| -> Vec<usize> {
        rows.into_iter()
            .filter(|(_, name)| query.matches(name))
            .map(|(i, _)| i)
            .collect()
    };
    let (gauge_hits, counter_hits) = (hits(gauges), hits(counters));
    let matched = gauge_hits.len() + counter_hits.len();
    let pages = matched.div_ceil(PAGE_ROWS).max(1);
    let page = query.page.min(pages);
    let start = (page - 1) * PAGE_ROWS;
    let end = (start + PAGE_ROWS).min(matched);
    // The window [start, end) over the gauge hits followed by the counter hits.
    let window = |hits: &[usize], offset: usize| -> Rows {
        let from = start.saturating_sub(offset).min(hits.len());
        let to = end.saturating_sub(offset).min(hits.len());
        hits[from..to].iter().map(|&i| (i, true)).collect()
    };
    Plan {
        gauges: window(&gauge_hits, 0),
        counters: window(&counter_hits, gauge_hits.len()),
        selected,
        matched: (gauge_hits.len(), counter_hits.len()),
        paging: Some(Paging {
            page,
            pages,
            rows: if matched == 0 {
                (0, 0)
            } else {
                (start + 1, end)
            },
        }),
    }
}

/// The selected names with their indices, in display order.
fn select<'a>(query: &Query, names: impl Iterator<Item = &'a str>) -> Vec<(usize, &'a str)> {
    let mut rows: Vec<(usize, &str)> = names
        .enumerate()
        .filter(|(_, name)| query.selects(name))
        .collect();
    rows.sort_by(|a, b| display_order(a.1, b.1));
    rows
}

/// The order of the rows: by name, with `;` and then `=` before every other character, which
/// is by base name, then tag by tag (key, then value) for canonical tagged names. Names hold no
/// control characters, so the two never tie with a real character.
pub fn display_order(a: &str, b: &str) -> Ordering {
    let rank = |c: u8| match c {
        b';' => 0,
        b'=' => 1,
        c => c,
    };
    a.bytes().map(rank).cmp(b.bytes().map(rank))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:05}")).collect()
    }

    fn run(query: &str, gauges: &[String], counters: &[String]) -> Plan {
        plan(
            &Query::parse(query).unwrap(),
            gauges.iter().map(String::as_str),
            counters.iter().map(String::as_str),
        )
    }

    #[test]
    fn a_small_store_is_shown_whole_with_the_filter_as_hidden_rows() {
        let plan = run(
            "q=LOAD",
            &["cpu_load".into(), "mem".into()],
            &["load".into()],
        );
        assert_eq!(plan.gauges, [(0, true), (1, false)]);
        assert_eq!(plan.counters, [(0, true)]);
        assert_eq!((plan.matched, plan.paging), ((1, 1), None));
        assert_eq!(plan.selected, (2, 1));
    }

    #[test]
    fn rows_outside_the_selection_are_not_sent() {
        let gauges: Vec<String> = [
            "Alloc",
            "Alloc;host=web1",
            "Alloc;host=web2",
            "Heap;host=web1",
        ]
        .map(String::from)
        .into();
        let counters: Vec<String> = ["PollCount;host=web2".into()].into();
        let plan = run("host=web1", &gauges, &counters);
        assert_eq!(plan.gauges, [(1, true), (3, true)]);
        assert!(plan.counters.is_empty());
        assert_eq!((plan.selected, plan.matched), ((2, 0), (2, 0)));
        // The filter narrows the selection; rows it does not match are sent hidden.
        let plan = run("host=web1&q=heap", &gauges, &counters);
        assert_eq!(plan.gauges, [(1, false), (3, true)]);
        assert_eq!((plan.selected, plan.matched), ((2, 0), (1, 0)));
        let plan = run("host=", &gauges, &counters);
        assert_eq!((plan.gauges, plan.selected), (vec![(0, true)], (1, 0)));
        let plan = run("host=nope", &gauges, &counters);
        assert!(plan.gauges.is_empty() && plan.counters.is_empty());
        assert_eq!((plan.selected, plan.paging), ((0, 0), None));
    }

    #[test]
    fn rows_are_by_base_name_then_tags() {
        // In the store's (byte) order.
        let mut gauges: Vec<String> = [
            "Alloc",
            "Alloc2",
            "Alloc;dc=eu2;host=a",
            "Alloc;dc=eu;host=b",
            "Alloc;host=a",
            "Alloc_x",
        ]
        .map(String::from)
        .into();
        let shown = |plan: &Plan, names: &[String]| -> Vec<String> {
            plan.gauges.iter().map(|&(i, _)| names[i].clone()).collect()
        };
        let expected = [
            "Alloc",
            "Alloc;dc=eu;host=b",
            "Alloc;dc=eu2;host=a",
            "Alloc;host=a",
            "Alloc2",
            "Alloc_x",
        ];
        assert_eq!(shown(&run("", &gauges, &[]), &gauges), expected);
        // The order does not depend on the order the names come in.
        gauges.reverse();
        assert_eq!(shown(&run("", &gauges, &[]), &gauges), expected);
        assert_eq!(display_order("a;k=v", "a;k=v"), Ordering::Equal);
        assert_eq!(display_order("a", "a;k=v"), Ordering::Less);
    }

    #[test]
    fn a_large_selection_is_paged_and_a_small_one_of_a_large_store_is_not() {
        let mut gauges = names("g", 600);
        gauges.extend((0..30).map(|i| format!("h{i:02};host=web1")));
        gauges.sort();
        let plan = run("host=web1", &gauges, &[]);
        assert_eq!((plan.paging, plan.gauges.len()), (None, 30));
        let plan = run("", &gauges, &[]);
        assert_eq!(plan.paging.map(|p| p.pages), Some(2));
        assert_eq!(plan.selected, (630, 0));
    }

    #[test]
    fn a_large_store_is_paged_over_the_matching_rows() {
        let gauges = names("g", 700);
        let counters = names("c", 400);
        let plan = run("", &gauges, &counters);
        assert_eq!(plan.gauges.len(), PAGE_ROWS);
        assert!(plan.counters.is_empty());
        assert_eq!(
            plan.paging,
            Some(Paging {
                page: 1,
                pages: 3,
                rows: (1, 500)
            })
        );
        // Page 2: the last 200 gauges, then the first 300 counters.
        let plan = run("page=2", &gauges, &counters);
        assert_eq!(plan.gauges.first(), Some(&(500, true)));
        assert_eq!(plan.gauges.len(), 200);
        assert_eq!(plan.counters.len(), 300);
        assert_eq!(plan.counters.last(), Some(&(299, true)));
        // Past the last page: the last page.
        let plan = run("page=99", &gauges, &counters);
        assert_eq!(plan.paging.unwrap().rows, (1001, 1100));
        assert_eq!((plan.gauges.len(), plan.counters.len()), (0, 100));
        // The filter is applied before paging: of g00000–g00699, g00100–g00199 contain "g001".
        let plan = run("q=G001", &gauges, &counters);
        assert_eq!(plan.matched, (100, 0));
        assert_eq!(plan.gauges.first(), Some(&(100, true)));
        assert_eq!(plan.gauges.len(), 100);
        assert_eq!(plan.paging.unwrap().pages, 1);
        let plan = run("q=nothing", &gauges, &counters);
        assert_eq!(plan.paging.unwrap().rows, (0, 0));
        assert!(plan.gauges.is_empty() && plan.counters.is_empty());
    }
}
