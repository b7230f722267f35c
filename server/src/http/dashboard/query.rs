//! What one dashboard request asks for, read from its query string, and the links that keep it:
//! the name filter (`?q=`), the host (`?host=`), tag matchers (`?match=`) and the page
//! (`?page=`).
//!
//! The host and the matchers *select* metrics: rows outside the selection are never sent, and
//! the counts of the tables are of the selection. The filter then narrows the selection as the
//! operator types (the page's script does it for a small selection, the server for a large
//! one). `?host=web1` selects the metrics tagged `host=web1`; `?host=` with an empty value
//! selects those without a `host` tag (as Prometheus's `{host=""}` does: an empty value is no
//! tag value); no `host` at all selects every host. `?match=key=value` (repeatable, every term
//! must hold) is the snapshot and history API's matcher ([`Matcher`]). A host no metric has is
//! an empty selection, not an error; a value that cannot be a tag value is a client error.

use golectra_common::tags::{Matcher, TaggedName};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::super::reply::ApiError;

/// The tag key the host selector reads.
pub const HOST_KEY: &str = "host";

/// Most `match` terms one request may give: each is checked against every stored name.
pub const MAX_MATCH_TERMS: usize = 16;

/// Which hosts a request selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostFilter {
    /// Every metric (no `host` parameter).
    Any,
    /// The metrics tagged `host=<value>`.
    Host(String),
    /// The metrics without a `host` tag (`host=` with an empty value).
    Untagged,
}

impl HostFilter {
    /// Whether a metric whose `host` tag is `host` (`None`: it has none) is selected.
    pub fn admits(&self, host: Option<&str>) -> bool {
        match self {
            Self::Any => true,
            Self::Host(want) => host == Some(want.as_str()),
            Self::Untagged => host.is_none(),
        }
    }
}

/// What a dashboard request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The filter as typed, trimmed (empty: no filter).
    pub filter: String,
    /// The filter in lower case, as names are matched.
    needle: String,
    /// The hosts selected.
    pub host: HostFilter,
    /// `;host=<value>` for a selected host: every name with that tag holds it, so a name that
    /// does not is rejected without parsing its tags (most names, when one host of many is
    /// selected).
    host_needle: Option<String>,
    /// The tag matchers (`match=`), as given.
    pub matcher: Matcher,
    /// The page asked for, from 1.
    pub page: usize,
}

impl Query {
    /// Reads `q`, `host`, `match` and `page` from a raw query string (other parameters are
    /// ignored). A client error (400, one line) for a `page` that is not a whole number from 1,
    /// a `host` that cannot be a tag value or is given twice, a bad `match` term or more than
    /// [`MAX_MATCH_TERMS`] of them, and a value that is not UTF-8 once decoded.
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut filter = String::new();
        let mut page = 1;
        let mut host = HostFilter::Any;
        let mut matcher = Matcher::default();
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
                "host" => {
                    if host != HostFilter::Any {
                        return Err(ApiError::bad_request(
                            "host is given twice: select one host (or host= for metrics without one)",
                        ));
                    }
                    host = host_filter(value)?;
                }
                "match" => {
                    if matcher.terms.len() == MAX_MATCH_TERMS {
                        return Err(ApiError::bad_request(format!(
                            "more than {MAX_MATCH_TERMS} match terms"
                        )));
                    }
                    matcher.add(&value).map_err(ApiError::bad_request)?;
                }
                _ => {}
            }
        }
        Ok(Self {
            needle: filter.to_lowercase(),
            filter,
            host_needle: match &host {
                HostFilter::Host(value) => Some(format!(";{HOST_KEY}={value}")),
                _ => None,
            },
            host,
            matcher,
            page,
        })
    }

    /// Whether the metric `name` is in the selection (host and matchers), ignoring the filter.
    pub fn selects(&self, name: &str) -> bool {
        if self.host == HostFilter::Any && self.matcher.is_empty() {
            return true;
        }
        if let Some(needle) = &self.host_needle
            && !name.contains(needle.as_str())
        {
            return false;
        }
        let host = TaggedName::parse(name).and_then(|t| t.tag(HOST_KEY));
        self.host.admits(host) && self.matcher.matches(name)
    }

    /// Whether the metric `name` matches the filter (a case-insensitive substring of the whole
    /// name, tags included, as the page's script matches).
    pub fn matches(&self, name: &str) -> bool {
        self.needle.is_empty() || name.to_lowercase().contains(&self.needle)
    }

    /// The selection for people (`host web1, dc=eu`), `None` when everything is selected.
    pub fn scope(&self) -> Option<String> {
        let mut parts = Vec::new();
        match &self.host {
            HostFilter::Any => {}
            HostFilter::Host(host) => parts.push(format!("host {host}")),
            HostFilter::Untagged => parts.push("no host tag".to_owned()),
        }
        if !self.matcher.is_empty() {
            parts.push(
                self.matcher
                    .terms
                    .iter()
                    .map(|t| format!("{}={}", t.key, t.value))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// The link to page `page` of this query: `?q=…&host=…&match=…&page=…` (a link without
    /// parameters is `/`).
    pub fn link(&self, page: usize) -> String {
        self.href(&self.host, Some(page))
    }

    /// The link to this query with `host` selected instead, from its first page.
    pub fn host_link(&self, host: &HostFilter) -> String {
        self.href(host, None)
    }

    fn href(&self, host: &HostFilter, page: Option<usize>) -> String {
        let mut params: Vec<String> = Vec::new();
        let encode = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        if !self.filter.is_empty() {
            params.push(format!("q={}", encode(&self.filter)));
        }
        match host {
            HostFilter::Any => {}
            HostFilter::Host(h) => params.push(format!("host={}", encode(h))),
            HostFilter::Untagged => params.push("host=".to_owned()),
        }
        for term in &self.matcher.terms {
            params.push(format!(
                "match={}={}",
                encode(&term.key),
                encode(&term.value)
            ));
        }
        if let Some(page) = page {
            params.push(format!("page={page}"));
        }
        if params.is_empty() {
            "/".to_owned()
        } else {
            format!("?{}", params.join("&"))
        }
    }
}

/// The host selection `value` asks for: empty for metrics without a host tag, else a value a
/// `host` tag can have.
fn host_filter(value: String) -> Result<HostFilter, ApiError> {
    if value.is_empty() {
        return Ok(HostFilter::Untagged);
    }
    if value.contains(';') || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "host {value:?} cannot be a tag value (no ';' or control characters)"
        )));
    }
    Ok(HostFilter::Host(value))
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a space.
fn decode(value: &str) -> Option<String> {
    let spaced = value.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            Query::parse("page=2").unwrap().host_link(&HostFilter::Any),
            "/"
        );
    }

    #[test]
    fn host_is_read_raw_and_percent_encoded() {
        for raw in ["host=web1", "host=%77eb1", "host=%77%65%62%31"] {
            let q = Query::parse(raw).unwrap();
            assert_eq!(q.host, HostFilter::Host("web1".into()), "{raw}");
        }
        // A tag value may hold '=', spaces and any other character but ';'.
        let q = Query::parse("host=a%3Db+c%2F%C3%A9").unwrap();
        assert_eq!(q.host, HostFilter::Host("a=b c/é".into()));
        assert_eq!(Query::parse("host=").unwrap().host, HostFilter::Untagged);
        assert_eq!(Query::parse("host").unwrap().host, HostFilter::Untagged);
        assert_eq!(Query::parse("q=x").unwrap().host, HostFilter::Any);
    }

    #[test]
    fn the_selection_is_by_host_tag_and_matchers() {
        let web1 = Query::parse("host=web1").unwrap();
        assert!(web1.selects("Alloc;host=web1"));
        assert!(web1.selects("Alloc;dc=eu;host=web1"));
        assert!(!web1.selects("Alloc;host=web10"));
        assert!(!web1.selects("Alloc"));
        assert!(
            !web1.selects("Alloc;host=web1;"),
            "not tag syntax: a plain name"
        );
        // A host no metric has selects nothing, and is no error.
        let nope = Query::parse("host=nope").unwrap();
        assert!(!["Alloc", "Alloc;host=web1"].iter().any(|n| nope.selects(n)));
        let untagged = Query::parse("host=").unwrap();
        assert!(untagged.selects("Alloc") && untagged.selects("Alloc;dc=eu"));
        assert!(!untagged.selects("Alloc;host=web1"));
        let eu = Query::parse("match=dc%3Deu&match=__name__=Alloc").unwrap();
        assert!(eu.selects("Alloc;dc=eu;host=web1"));
        assert!(!eu.selects("Alloc;dc=us") && !eu.selects("HeapAlloc;dc=eu"));
        assert!(Query::parse("q=x").unwrap().selects("anything"));
        assert_eq!(
            Query::parse("host=web1&match=dc=eu")
                .unwrap()
                .scope()
                .as_deref(),
            Some("host web1, dc=eu")
        );
        assert_eq!(untagged.scope().as_deref(), Some("no host tag"));
        assert_eq!(Query::parse("q=x").unwrap().scope(), None);
    }

    #[test]
    fn links_keep_the_filter_host_and_matchers() {
        let q = Query::parse("q=a b&host=we%3Db1&match=dc=eu&page=3").unwrap();
        assert_eq!(q.link(2), "?q=a%20b&host=we%3Db1&match=dc=eu&page=2");
        assert_eq!(
            q.host_link(&HostFilter::Untagged),
            "?q=a%20b&host=&match=dc=eu"
        );
        assert_eq!(
            q.host_link(&HostFilter::Host("<\"&".into())),
            "?q=a%20b&host=%3C%22%26&match=dc=eu"
        );
        // A link reads back as the query it was made from.
        let back = Query::parse(q.link(3).trim_start_matches("?")).unwrap();
        assert_eq!(back, q);
        let untagged = Query::parse("host=").unwrap();
        assert_eq!(untagged.link(1), "?host=&page=1");
        assert_eq!(
            Query::parse(untagged.link(1).trim_start_matches("?"))
                .unwrap()
                .host,
            HostFilter::Untagged
        );
    }

    #[test]
    fn bad_selections_are_refused_with_a_reason() {
        for (bad, says) in [
            ("host=a%3Bb", "host \"a;b\" cannot be a tag value"),
            ("host=a%0Ab", "host \"a\\nb\" cannot be a tag value"),
            ("host=a&host=b", "host is given twice"),
            ("host=&host=", "host is given twice"),
            ("host=%FF", "\"host\" is not valid UTF-8"),
            ("match=host", "not key=value"),
            ("match=1x%3Dy", "must be a tag key"),
            ("match=host%3D", "empty value"),
        ] {
            let err = Query::parse(bad).unwrap_err();
            assert_eq!(err.status, 400, "{bad}");
            assert!(err.message.contains(says), "{bad}: {}", err.message);
            assert!(!err.message.contains('\n'), "{bad}: one line");
        }
        let many = vec!["match=a=b"; MAX_MATCH_TERMS + 1].join("&");
        let err = Query::parse(&many).unwrap_err();
        assert_eq!(err.message, "more than 16 match terms");
        let most = vec!["match=a=b"; MAX_MATCH_TERMS].join("&");
        assert_eq!(Query::parse(&most).unwrap().matcher.terms.len(), 16);
    }
}
