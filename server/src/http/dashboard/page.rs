//! Which rows one dashboard request shows: its query (`?q=` filter, `?page=`), the filter
//! applied on the server, and the page of at most [`PAGE_ROWS`] rows.
//!
//! A store of at most [`PAGE_ROWS`] metrics is shown whole: every row is sent, those that do not
//! match the filter marked `hidden`, and the page's script filters again as the operator types.
//! A larger store is *paged*: only the rows that match the filter are counted, and only one page
//! of them is sent — gauges first, then counters, each in name order — so the page stays a few
//! hundred kilobytes whatever the store holds, and typing asks the server again.

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::super::reply::ApiError;

/// Most rows one page shows (gauges and counters together).
pub const PAGE_ROWS: usize = 500;

/// What a dashboard request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The filter as typed, trimmed (empty: no filter).
    pub filter: String,
    /// The filter in lower case, as names are matched.
    needle: String,
    /// The page asked for, from 1.
    pub page: usize,
}

impl Query {
    /// Reads `q` and `page` from a raw query string (other parameters are ignored); a `page`
    /// that is not a whole number from 1 is a client error.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut filter = String::new();
        let mut page = 1;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "query parameter {name:?} is not valid UTF-8 after percent-decoding"
                ))
            })?;
            match name {
                "q" => filter = value.trim().to_owned(),
                "page" => {
                    page = value
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|p| *p >= 1)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "page {value:?} is not a whole number from 1"
                            ))
                        })?;
                }
                _ => {}
            }
        }
        Ok(Self {
            needle: filter.to_lowercase(),
            filter,
            page,
        })
    }

    /// Whether the metric `name` matches the filter (a case-insensitive substring, as the
    /// page's script matches).
    pub fn matches(&self, name: &str) -> bool {
        self.needle.is_empty() || name.to_lowercase().contains(&self.needle)
    }

    /// The query string of page `page` of this filter, for a link (`?q=…&page=…`).
    pub fn link(&self, page: usize) -> String {
        let mut out = String::from("?");
        if !self.filter.is_empty() {
            out.push_str("q=");
            out.extend(utf8_percent_encode(&self.filter, NON_ALPHANUMERIC));
            out.push('&');
        }
        out.push_str(&format!("page={page}"));
        out
    }
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space.
fn decode(value: &str) -> Option<String> {
    let spaced = value.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The rows of one table a page shows: `(index in the store's sorted list, shown)`; a row not
/// shown is sent `hidden` (only when the store is shown whole).
pub type Rows = Vec<(usize, bool)>;

/// What one request shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The gauge rows to send.
    pub gauges: Rows,
    /// The counter rows to send.
    pub counters: Rows,
    /// Gauges and counters that match the filter (all of them without one).
    pub matched: (usize, usize),
    /// The page, when the store is too large to be shown whole.
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

/// Plans the page `query` asks for over the store's sorted `gauges` and `counters` names.
pub fn plan<'a>(
    query: &Query,
    gauges: impl ExactSizeIterator<Item = &'a str>,
    counters: impl ExactSizeIterator<Item = &'a str>,
) -> Plan {
    if gauges.len() + counters.len() <= PAGE_ROWS {
        let (gauges, counters) = (mark(query, gauges), mark(query, counters));
        let shown = |rows: &Rows| rows.iter().filter(|(_, shown)| *shown).count();
        return Plan {
            matched: (shown(&gauges), shown(&counters)),
            gauges,
            counters,
            paging: None,
        };
    }
    let (gauge_hits, counter_hits) = (hits(query, gauges), hits(query, counters));
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

/// Every row, shown when it matches.
fn mark<'a>(query: &Query, names: impl Iterator<Item = &'a str>) -> Rows {
    names
        .enumerate()
        .map(|(i, name)| (i, query.matches(name)))
        .collect()
}

/// The indices of the names that match.
fn hits<'a>(query: &Query, names: impl Iterator<Item = &'a str>) -> Vec<usize> {
    names
        .enumerate()
        .filter(|(_, name)| query.matches(name))
        .map(|(i, _)| i)
        .collect()
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
    fn queries_are_decoded_and_checked() {
        let q = Query::parse("q=CPU+load%21&page=3&x=1").unwrap();
        assert_eq!((q.filter.as_str(), q.page), ("CPU load!", 3));
        assert!(!q.matches("my_cpu_load!") && q.matches("my cpu load!"));
        assert_eq!(Query::parse("").unwrap().page, 1);
        assert_eq!(Query::parse("q=%20%20").unwrap().filter, "");
        for bad in ["page=0", "page=x", "page=-1", "page="] {
            let err = Query::parse(bad).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
            assert!(err.message.contains("page"), "{bad}: {}", err.message);
        }
        assert_eq!(Query::parse("q=%FF").unwrap_err().status, 400);
        assert_eq!(q.link(4), "?q=CPU%20load%21&page=4");
        assert_eq!(Query::parse("").unwrap().link(2), "?page=2");
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
