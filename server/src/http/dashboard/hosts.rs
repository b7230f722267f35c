//! The dashboard's host selector: every stored metric counted by its `host` tag — metrics and
//! stale ones — in one pass over the store, and the list of links that selects a host
//! (`?host=web1`, keeping the filter and the matchers).
//!
//! The pass is linear in the metrics (one tag parse and one hash-map update each), and the list
//! is bounded: the [`HOSTS_LISTED`] hosts with the most metrics (picked in linear time, then
//! shown by name), plus the selected one wherever it ranks, with a note when some are left
//! out — any host can still be selected through the URL. Links work without JavaScript; the
//! page's script only keeps their filter up to date as the operator types.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::SystemTime;

use golectra_common::tags::TaggedName;

use super::escape_into;
use super::freshness::Freshness;
use super::query::{HOST_KEY, HostFilter, Query};

/// Most hosts the selector lists.
pub const HOSTS_LISTED: usize = 200;

/// Metrics of one host (or of all, or of none), and how many of them are stale.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Gauges and counters.
    pub metrics: usize,
    /// Those not written within `STALE_AFTER`.
    pub stale: usize,
}

impl Count {
    fn add(&mut self, stale: bool) {
        self.metrics += 1;
        self.stale += usize::from(stale);
    }
}

/// The store counted by host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts<'a> {
    /// The hosts listed, by name: the [`HOSTS_LISTED`] largest, and the selected host.
    pub listed: Vec<(&'a str, Count)>,
    /// Distinct hosts stored.
    pub hosts: usize,
    /// Every metric.
    pub all: Count,
    /// The metrics without a `host` tag.
    pub untagged: Count,
}

/// Counts `metrics` (name and last write) by host; `selected` is listed whatever its rank,
/// with no metrics if none has it.
pub fn count<'a>(
    metrics: impl Iterator<Item = (&'a str, SystemTime)>,
    fresh: &Freshness,
    selected: &'a HostFilter,
) -> Hosts<'a> {
    let mut by_host: HashMap<&'a str, Count> = HashMap::new();
    let (mut all, mut untagged) = (Count::default(), Count::default());
    for (name, written) in metrics {
        let stale = fresh.is_stale(written);
        all.add(stale);
        match TaggedName::parse(name).and_then(|t| t.tag(HOST_KEY)) {
            Some(host) => by_host.entry(host).or_default().add(stale),
            None => untagged.add(stale),
        }
    }
    let hosts = by_host.len();
    let selected = match selected {
        HostFilter::Host(host) => Some((
            host.as_str(),
            by_host.get(host.as_str()).copied().unwrap_or_default(),
        )),
        _ => None,
    };
    let mut listed: Vec<(&str, Count)> = by_host.into_iter().collect();
    if listed.len() > HOSTS_LISTED {
        // Most metrics first; names break ties, so the pick does not depend on hash order.
        listed.select_nth_unstable_by(HOSTS_LISTED - 1, |a, b| {
            b.1.metrics.cmp(&a.1.metrics).then(a.0.cmp(b.0))
        });
        listed.truncate(HOSTS_LISTED);
    }
    if let Some(selected) = selected
        && !listed.iter().any(|(host, _)| *host == selected.0)
    {
        listed.push(selected);
    }
    listed.sort_unstable_by(|a, b| a.0.cmp(b.0));
    Hosts {
        listed,
        hosts,
        all,
        untagged,
    }
}

/// Writes the selector (`<nav id="hosts">`): "all hosts", each listed host, the metrics
/// without a host tag when there are any, each with its counts; the selected one marked. A
/// store without host tags gets an empty, hidden element (the script's refresh fills it in
/// once hosts appear).
pub fn render(html: &mut String, hosts: &Hosts, query: &Query, fresh: &Freshness) {
    if hosts.hosts == 0 && query.host == HostFilter::Any {
        html.push_str("<nav class=\"hosts\" id=\"hosts\" hidden></nav>\n");
        return;
    }
    html.push_str("<nav class=\"hosts\" id=\"hosts\" aria-label=\"Hosts\">");
    let stale_after = humantime::format_duration(fresh.stale_after).to_string();
    let chip = |html: &mut String, host: &HostFilter, label: &str, count: Count| {
        let class = match count.stale {
            0 => "",
            s if s == count.metrics => " gone",
            _ => " some-stale",
        };
        let _ = write!(html, "<a class=\"host{class}\" href=\"");
        escape_into(html, &query.host_link(host));
        html.push('"');
        if *host == query.host {
            html.push_str(" aria-current=\"page\"");
        }
        html.push('>');
        escape_into(html, label);
        let _ = write!(html, " <b>{}</b>", count.metrics);
        if count.stale > 0 {
            let _ = write!(
                html,
                "<span class=\"st\" title=\"{} of {} not written for more than {stale_after} (STALE_AFTER){}\">{} stale</span>",
                count.stale,
                count.metrics,
                if count.stale == count.metrics {
                    ": the host may have gone away"
                } else {
                    ""
                },
                count.stale
            );
        }
        html.push_str("</a>");
    };
    chip(html, &HostFilter::Any, "all hosts", hosts.all);
    for (name, count) in &hosts.listed {
        chip(html, &HostFilter::Host((*name).to_owned()), name, *count);
    }
    if hosts.untagged.metrics > 0 || query.host == HostFilter::Untagged {
        chip(html, &HostFilter::Untagged, "(no host)", hosts.untagged);
    }
    if hosts.hosts > HOSTS_LISTED {
        let _ = write!(
            html,
            "<span class=\"note\">{HOSTS_LISTED} of {} hosts listed (those with the most metrics); select any host by name: /?host=NAME</span>",
            hosts.hosts
        );
    }
    html.push_str("</nav>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fresh() -> Freshness {
        Freshness {
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(10_000),
            stale_after: Duration::from_secs(300),
        }
    }

    /// `(name, seconds before now)`.
    fn counted<'a>(metrics: &'a [(String, u64)], selected: &'a HostFilter) -> Hosts<'a> {
        let now = fresh().now;
        count(
            metrics
                .iter()
                .map(|(n, ago)| (n.as_str(), now - Duration::from_secs(*ago))),
            &fresh(),
            selected,
        )
    }

    fn metrics(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(n, a)| (n.to_string(), *a)).collect()
    }

    #[test]
    fn metrics_are_counted_by_host_with_the_stale_ones() {
        let m = metrics(&[
            ("Alloc;host=web1", 5),
            ("PollCount;host=web1", 900),
            ("Alloc;dc=eu;host=web2", 5),
            ("Alloc;host=gone", 4000),
            ("Alloc", 0),
            ("Alloc;dc=eu", 301),
            ("odd;host=", 0),
        ]);
        let hosts = counted(&m, &HostFilter::Any);
        let c = |metrics, stale| Count { metrics, stale };
        assert_eq!(
            hosts.listed,
            [("gone", c(1, 1)), ("web1", c(2, 1)), ("web2", c(1, 0))]
        );
        assert_eq!(
            (hosts.hosts, hosts.all, hosts.untagged),
            (3, c(7, 3), c(3, 1))
        );
    }

    #[test]
    fn the_list_is_capped_to_the_largest_hosts_and_keeps_the_selected_one() {
        // Host hNNN has NNN % 7 + 1 metrics.
        let m: Vec<(String, u64)> = (0..450)
            .flat_map(|h| (0..h % 7 + 1).map(move |i| (format!("m{i};host=h{h:03}"), 0)))
            .collect();
        let hosts = counted(&m, &HostFilter::Any);
        assert_eq!((hosts.hosts, hosts.listed.len()), (450, HOSTS_LISTED));
        // 450 / 7: 64 or 65 hosts of each size; the 200 largest are the 64 of 7, 64 of 6, 64
        // of 5 and the first 8 (by name) of size 4.
        let sizes: Vec<usize> = hosts.listed.iter().map(|(_, c)| c.metrics).collect();
        assert_eq!(sizes.iter().filter(|&&s| s < 4).count(), 0);
        assert_eq!(sizes.iter().filter(|&&s| s == 4).count(), 8);
        assert!(hosts.listed.windows(2).all(|w| w[0].0 < w[1].0), "by name");
        // A small host that is selected is listed too, and an unknown one with no metrics.
        let small = HostFilter::Host("h000".into());
        let hosts = counted(&m, &small);
        assert_eq!(hosts.listed.len(), HOSTS_LISTED + 1);
        assert_eq!(
            hosts.listed[0],
            (
                "h000",
                Count {
                    metrics: 1,
                    stale: 0
                }
            )
        );
        let unknown = HostFilter::Host("zz".into());
        let hosts = counted(&m, &unknown);
        assert_eq!(hosts.listed.last(), Some(&("zz", Count::default())));
        let mut html = String::new();
        render(
            &mut html,
            &hosts,
            &Query::parse("host=zz").unwrap(),
            &fresh(),
        );
        assert!(
            html.contains("<span class=\"note\">200 of 450 hosts listed"),
            "{html}"
        );
        assert!(
            html.contains(
                "<a class=\"host\" href=\"?host=zz\" aria-current=\"page\">zz <b>0</b></a>"
            ),
            "{html}"
        );
    }

    #[test]
    fn the_selector_marks_the_selection_and_escapes_host_names() {
        let m = metrics(&[
            ("Alloc;host=<b>\"&", 0),
            ("Alloc;host=web1", 0),
            ("Poll;host=web1", 400),
            ("gone;host=old", 400),
            ("Alloc", 0),
        ]);
        let query = Query::parse("q=a%26b&host=web1").unwrap();
        let hosts = counted(&m, &query.host);
        let mut html = String::new();
        render(&mut html, &hosts, &query, &fresh());
        let expected = [
            "<nav class=\"hosts\" id=\"hosts\" aria-label=\"Hosts\">",
            "<a class=\"host some-stale\" href=\"?q=a%26b\">all hosts <b>5</b><span class=\"st\" title=\"2 of 5 not written for more than 5m (STALE_AFTER)\">2 stale</span></a>",
            "<a class=\"host\" href=\"?q=a%26b&amp;host=%3Cb%3E%22%26\">&lt;b&gt;&quot;&amp; <b>1</b></a>",
            "<a class=\"host gone\" href=\"?q=a%26b&amp;host=old\">old <b>1</b><span class=\"st\" title=\"1 of 1 not written for more than 5m (STALE_AFTER): the host may have gone away\">1 stale</span></a>",
            "<a class=\"host some-stale\" href=\"?q=a%26b&amp;host=web1\" aria-current=\"page\">web1 <b>2</b><span class=\"st\" title=\"1 of 2 not written for more than 5m (STALE_AFTER)\">1 stale</span></a>",
            "<a class=\"host\" href=\"?q=a%26b&amp;host=\">(no host) <b>1</b></a>",
            "</nav>\n",
        ];
        assert_eq!(html, expected.concat());
        assert!(!html.contains("<b>\""), "no markup from a host name");
    }

    #[test]
    fn a_store_without_hosts_gets_an_empty_hidden_selector() {
        let m = metrics(&[("Alloc", 0), ("PollCount", 0)]);
        let hosts = counted(&m, &HostFilter::Any);
        let mut html = String::new();
        render(&mut html, &hosts, &Query::parse("").unwrap(), &fresh());
        assert_eq!(html, "<nav class=\"hosts\" id=\"hosts\" hidden></nav>\n");
        // Selecting "no host" still shows the way back to all hosts.
        let query = Query::parse("host=").unwrap();
        let hosts = counted(&m, &query.host);
        let mut html = String::new();
        render(&mut html, &hosts, &query, &fresh());
        assert!(
            html.contains("<a class=\"host\" href=\"/\">all hosts <b>2</b></a>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<a class=\"host\" href=\"?host=\" aria-current=\"page\">(no host) <b>2</b></a>"
            ),
            "{html}"
        );
    }
}
