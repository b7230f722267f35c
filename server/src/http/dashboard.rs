//! The HTML dashboard at `GET /` (docs/observability.md): a page an operator keeps open.
//!
//! The server renders everything: a header with counts (hosts and stale metrics among them),
//! last write, uptime, version and store kind; the host selector (`hosts.rs`: every host of the
//! `host` tag with its metrics and stale ones); gauges and counters in two tables in name order
//! (`page.rs`) — the name as its base and a chip per tag, a value for people (exact on hover),
//! an inline SVG sparkline of the metric's history ([`crate::history`]), the age of its last
//! change and the age of its last write, marked stale past `STALE_AFTER` (`freshness.rs`).
//! The selection (`?host=`, `?match=`) and the filter (`?q=`, a case-insensitive substring of
//! the name) are applied by the server (`query.rs`), and a large selection is shown a page of
//! at most `PAGE_ROWS` (500) rows at a time (`?page=`), so the page stays small whatever the
//! store holds. A small inline script keeps the filter box, the selection and the page in the
//! URL (a reload or a shared link keeps them), filters a small selection as the operator types
//! (a large one is asked again), and refreshes the header, the host selector and the tables
//! every few seconds by fetching the page again and swapping them in. Without JavaScript the
//! page still works through links, the query string and a reload. No external assets: it
//! works offline. Every name and tag is escaped for HTML (which also covers the SVG `<title>`);
//! the script only reads names through attributes and never builds markup from them.

mod cells;
mod freshness;
mod hosts;
mod page;
mod query;

use std::fmt::Write;
use std::time::SystemTime;

use golectra_common::metric::format_gauge;

use super::reply::{ApiError, Reply};
use crate::app::App;
use crate::history::{Tables, unix_ms};
use cells::{Spark, age_cell, name_cell, sparkline};
use freshness::{Freshness, human_age};
use query::{HostFilter, Query};

/// Seconds between automatic refreshes of the page.
const REFRESH_SECS: u32 = 10;

/// The page's style sheet and script, inlined into every page (no external assets: the
/// dashboard must work offline). `REFRESH_SECS` in the script is replaced at render time.
const STYLE: &str = include_str!("dashboard/style.css");
const SCRIPT: &str = include_str!("dashboard/script.js");

/// Renders the dashboard page for the raw `query` string; fails (400) on a bad query and (503)
/// when the store cannot be read.
pub fn render(app: &App, query: &str) -> Result<Reply, ApiError> {
    let query = Query::parse(query)?;
    let snap = app.store.read_all()?;
    let now = SystemTime::now();
    let fresh = Freshness {
        now,
        stale_after: app.expiry.stale_after,
    };
    let now_ms = unix_ms(now);
    let hosts = hosts::count(
        snap.gauges
            .iter()
            .map(|(name, _, at)| (name.as_str(), *at))
            .chain(
                snap.counters
                    .iter()
                    .map(|(name, _, at)| (name.as_str(), *at)),
            ),
        &fresh,
        &query.host,
    );
    let plan = page::plan(
        &query,
        snap.gauges.iter().map(|(name, ..)| name.as_str()),
        snap.counters.iter().map(|(name, ..)| name.as_str()),
    );
    let scope = query.scope();
    let mut html = String::with_capacity(8192 + 900 * (plan.gauges.len() + plan.counters.len()));
    let version = golectra_common::version::VERSION;
    let last_write = match snap.updated_at {
        Some(at) => {
            let ago = now.duration_since(at).map(|d| d.as_secs()).unwrap_or(0);
            format!(
                "<li title=\"{}\">last write <b>{} ago</b></li>",
                humantime::format_rfc3339_seconds(at),
                human_age(ago)
            )
        }
        None => "<li>last write <b>none since start</b></li>".to_owned(),
    };
    let mut fleet = String::new();
    if hosts.hosts > 0 {
        let _ = write!(fleet, "<li><b>{} hosts</b></li>", hosts.hosts);
    }
    if hosts.all.stale > 0 {
        let _ = write!(
            fleet,
            "<li class=\"stale\" title=\"not written for more than {} (STALE_AFTER)\"><b>{} stale</b></li>",
            humantime::format_duration(fresh.stale_after),
            hosts.all.stale
        );
    }
    // The selection rides along when the filter box is submitted without the script.
    let mut keep = String::new();
    match &query.host {
        HostFilter::Any => {}
        HostFilter::Host(host) => {
            let _ = write!(
                keep,
                "<input type=\"hidden\" name=\"host\" value=\"{}\">",
                escaped(host)
            );
        }
        HostFilter::Untagged => keep.push_str("<input type=\"hidden\" name=\"host\" value=\"\">"),
    }
    for term in &query.matcher.terms {
        let _ = write!(
            keep,
            "<input type=\"hidden\" name=\"match\" value=\"{}={}\">",
            escaped(&term.key),
            escaped(&term.value)
        );
    }
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="{REFRESH_SECS}"></noscript>
<title>Golectra · {title}{selected} metrics</title>
<style>{STYLE}</style></head><body><div class="wrap">
<header><h1>Golectra<small>v{version}</small></h1>
<ul class="facts" id="facts"><li><b>{gauges} gauges</b></li><li><b>{counters} counters</b></li>{fleet}{last_write}<li>up <b>{uptime}</b></li><li>store <b>{store}</b></li></ul></header>
<form class="bar" method="get" action="/"><input id="filter" name="q" type="search" value="{filter}" placeholder="Filter by name…" aria-label="Filter metrics by name" autocomplete="off" spellcheck="false">{keep}<span id="status">refreshes every {REFRESH_SECS}s</span></form>
"#,
        title = scope
            .as_deref()
            .map(|s| format!("{} · ", escaped(s)))
            .unwrap_or_default(),
        selected = plan.selected.0 + plan.selected.1,
        gauges = snap.gauges.len(),
        counters = snap.counters.len(),
        uptime = human_age(app.started.elapsed().as_secs()),
        store = app.store.kind(),
        filter = escaped(&query.filter),
    );
    hosts::render(&mut html, &hosts, &query, &fresh);
    match &plan.paging {
        Some(paging) => {
            let _ = writeln!(
                html,
                "<main id=\"tables\" data-paged=\"\" data-page=\"{}\">",
                paging.page
            );
            pager(
                &mut html,
                &query,
                paging,
                plan.matched.0 + plan.matched.1,
                plan.selected.0 + plan.selected.1,
            );
        }
        None => html.push_str("<main id=\"tables\">\n"),
    }
    let view = View {
        fresh,
        now_ms,
        scope: scope.as_deref(),
    };
    app.history.read(|history| {
        let gauges = plan.gauges.iter().map(|&(i, visible)| {
            let (name, v, written) = &snap.gauges[i];
            Row {
                name,
                visible,
                shown: human_float(*v),
                exact: format_gauge(*v),
                current: *v,
                written: *written,
                series: history.gauges.get(name.as_str()).map(Spark::from),
            }
        });
        let counts = Counts {
            matched: plan.matched.0,
            selected: plan.selected.0,
            total: snap.gauges.len(),
            filtered: !query.filter.is_empty(),
        };
        table(
            &mut html, "gauges", "Gauges", gauges, counts, &view, history,
        );
        let counters = plan.counters.iter().map(|&(i, visible)| {
            let (name, v, written) = &snap.counters[i];
            Row {
                name,
                visible,
                shown: group_digits(&v.to_string()),
                exact: v.to_string(),
                current: *v as f64,
                written: *written,
                series: history.counters.get(name.as_str()).map(Spark::from),
            }
        });
        let counts = Counts {
            matched: plan.matched.1,
            selected: plan.selected.1,
            total: snap.counters.len(),
            filtered: counts.filtered,
        };
        table(
            &mut html, "counters", "Counters", counters, counts, &view, history,
        );
    });
    let interval = app.history.options().interval;
    let _ = write!(
        html,
        "</main>\n<footer>Sparklines: the last {} samples, one every {}. Stale: not written for more than {} (STALE_AFTER). <a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/snapshot\">snapshot JSON</a></footer>\n</div><script>{}</script></body></html>\n",
        app.history.options().points,
        humantime::format_duration(interval),
        humantime::format_duration(view.fresh.stale_after),
        SCRIPT.replace("REFRESH_SECS", &REFRESH_SECS.to_string()),
    );
    Ok(Reply::html(html).with_header("Cache-Control", "no-store"))
}

struct Row<'a> {
    name: &'a str,
    /// Whether the row matches the filter (a row that does not is sent `hidden`).
    visible: bool,
    shown: String,
    exact: String,
    current: f64,
    /// When the metric was last written (the store's time, not the history's).
    written: SystemTime,
    series: Option<Spark>,
}

/// What every row of one page is rendered against.
struct View<'a> {
    /// The clock and `STALE_AFTER`.
    fresh: Freshness,
    /// The same moment in Unix milliseconds (the history's time axis).
    now_ms: i64,
    /// The selection for people, if any ([`Query::scope`]).
    scope: Option<&'a str>,
}

/// A table's heading count: the rows that match the filter, of those selected, of all stored.
#[derive(Clone, Copy)]
struct Counts {
    matched: usize,
    selected: usize,
    total: usize,
    filtered: bool,
}

/// The line above the tables of a paged selection: which rows this page shows, and links to
/// the others (keeping the filter and the selection).
fn pager(html: &mut String, query: &Query, paging: &page::Paging, matched: usize, total: usize) {
    let (first, last) = paging.rows;
    let _ = write!(
        html,
        "<nav class=\"pager\" id=\"pager\"><span>{total} metrics"
    );
    if let Some(scope) = query.scope() {
        html.push_str(" of ");
        escape_into(html, &scope);
    }
    let _ = write!(
        html,
        ", {} a page: <b>rows {first}–{last} of {matched}</b>{}</span><span class=\"pages\">",
        page::PAGE_ROWS,
        if query.filter.is_empty() {
            ""
        } else {
            " matching"
        },
    );
    let link = |html: &mut String, page: usize, text: &str, enabled: bool| {
        if enabled {
            html.push_str("<a href=\"");
            escape_into(html, &query.link(page));
            let _ = write!(html, "\">{text}</a>");
        } else {
            let _ = write!(html, "<span class=\"off\">{text}</span>");
        }
    };
    let (page, pages) = (paging.page, paging.pages);
    link(html, 1, "« first", page > 1);
    link(html, page.saturating_sub(1).max(1), "‹ previous", page > 1);
    let _ = write!(html, "<span>page {page} of {pages}</span>");
    link(html, (page + 1).min(pages), "next ›", page < pages);
    link(html, pages, "last »", page < pages);
    html.push_str("</span></nav>\n");
}

fn table<'a>(
    html: &mut String,
    id: &str,
    title: &str,
    rows: impl ExactSizeIterator<Item = Row<'a>>,
    counts: Counts,
    view: &View,
    history: &Tables,
) {
    let _ = write!(html, "<section id=\"{id}\"><h2>{title}");
    if let Some(scope) = view.scope {
        html.push_str(" <span class=\"scope\">");
        escape_into(html, scope);
        html.push_str("</span>");
    }
    let _ = write!(
        html,
        " <span class=\"count\">({}{})</span></h2>",
        if counts.filtered {
            format!("{} of ", counts.matched)
        } else {
            String::new()
        },
        counts.selected
    );
    if rows.len() == 0 {
        let why = if counts.total == 0 {
            format!("No {id} yet: point an agent at this server or POST to /update.")
        } else if counts.selected == 0 {
            format!(
                "No {id} for {}.",
                escaped(view.scope.unwrap_or("the selection"))
            )
        } else if counts.matched == 0 {
            format!("No {id} match the filter.")
        } else {
            format!("No {id} on this page.")
        };
        let _ = writeln!(html, "<p class=\"empty\">{why}</p></section>");
        return;
    }
    html.push_str("<table><thead><tr><th>Name</th><th class=\"v\">Value</th><th>Recent</th><th class=\"v\" title=\"when the value last changed (history)\">Changed</th><th class=\"v\" title=\"when the metric was last written\">Written</th></tr></thead><tbody>\n");
    for row in rows {
        html.push_str("<tr data-name=\"");
        escape_into(html, &row.name.to_lowercase());
        html.push('"');
        if view.fresh.is_stale(row.written) {
            html.push_str(" class=\"stale\"");
        }
        html.push_str(if row.visible { ">" } else { " hidden>" });
        name_cell(html, row.name);
        let _ = write!(
            html,
            "<td class=\"v\" title=\"{}\">{}</td><td class=\"s\">",
            row.exact, row.shown
        );
        sparkline(html, &row, view.now_ms);
        html.push_str("</td><td class=\"a\"");
        age_cell(html, &row, view.now_ms, history);
        html.push_str("</td><td class=\"w\"");
        view.fresh.cell(html, row.written);
        html.push_str("</td></tr>\n");
    }
    html.push_str("</tbody></table></section>\n");
}

/// `text` escaped for HTML.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// A gauge for people: thousands grouped, at most 4 decimals, scientific for extremes.
fn human_float(v: f64) -> String {
    let magnitude = v.abs();
    if magnitude != 0.0 && !(1e-4..1e15).contains(&magnitude) {
        return format!("{v:.4e}");
    }
    let fixed = format!("{v:.4}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    let (int, frac) = trimmed
        .split_once('.')
        .map_or((trimmed, None), |(i, f)| (i, Some(f)));
    let mut out = group_digits(int);
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    if out == "-0" { "0".to_owned() } else { out }
}

/// `-1234567` → `-1 234 567` (thin spaces, unambiguous in every locale).
fn group_digits(int: &str) -> String {
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut out = String::with_capacity(int.len() + int.len() / 3 * 3);
    out.push_str(sign);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(human_float(1234567.891), "1\u{202f}234\u{202f}567.891");
        assert_eq!(human_float(0.5), "0.5");
        assert_eq!(human_float(42.0), "42");
        assert_eq!(human_float(-0.00001), "-1.0000e-5");
        assert_eq!(group_digits("-1234"), "-1\u{202f}234");
        assert_eq!(group_digits("123"), "123");
    }

    #[test]
    fn escapes_markup() {
        let mut out = String::new();
        escape_into(&mut out, "<script>alert('x')</script>&\"");
        assert_eq!(
            out,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    fn row<'a>(name: &'a str, written: SystemTime) -> Row<'a> {
        Row {
            name,
            visible: true,
            shown: "1".into(),
            exact: "1".into(),
            current: 1.0,
            written,
            series: None,
        }
    }

    fn view(now: SystemTime) -> View<'static> {
        View {
            fresh: Freshness {
                now,
                stale_after: std::time::Duration::from_secs(300),
            },
            now_ms: unix_ms(now),
            scope: None,
        }
    }

    fn counts(n: usize) -> Counts {
        Counts {
            matched: n,
            selected: n,
            total: n,
            filtered: false,
        }
    }

    #[test]
    fn rows_older_than_stale_after_are_marked_with_a_fixed_clock() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_547_200);
        let ago = |s| now - std::time::Duration::from_secs(s);
        let rows = vec![
            row("fresh;host=web1", ago(300)),
            row("old;host=<web2>", ago(725)),
        ];
        let mut html = String::new();
        table(
            &mut html,
            "gauges",
            "Gauges",
            rows.into_iter(),
            counts(2),
            &view(now),
            &Tables::default(),
        );
        let trs: Vec<&str> = html.split("<tr data-name=").skip(1).collect();
        assert_eq!(trs.len(), 2, "{html}");
        assert!(trs[0].starts_with("\"fresh;host=web1\"><td"), "{}", trs[0]);
        assert!(!trs[0].contains("stale"), "{}", trs[0]);
        assert!(
            trs[0].contains("<td class=\"w\" title=\"written 2025-11-30T23:55:00Z\">5m 0s</td>"),
            "{}",
            trs[0]
        );
        assert!(
            trs[1].starts_with("\"old;host=&lt;web2&gt;\" class=\"stale\"><td"),
            "{}",
            trs[1]
        );
        assert!(
            trs[1].contains(
                "<td class=\"w\" title=\"written 2025-11-30T23:47:55Z\">12m 5s <span class=\"mark\" \
                 title=\"not written for 12m 5s (STALE_AFTER 5m)\">stale</span></td>"
            ),
            "{}",
            trs[1]
        );
    }

    #[test]
    fn headings_show_the_selection_and_an_empty_one_says_so() {
        let now = std::time::UNIX_EPOCH;
        let mut v = view(now);
        v.scope = Some("host <web9>");
        let mut html = String::new();
        let c = Counts {
            matched: 0,
            selected: 0,
            total: 7,
            filtered: false,
        };
        table(
            &mut html,
            "gauges",
            "Gauges",
            Vec::<Row>::new().into_iter(),
            c,
            &v,
            &Tables::default(),
        );
        assert_eq!(
            html,
            "<section id=\"gauges\"><h2>Gauges <span class=\"scope\">host &lt;web9&gt;</span> \
             <span class=\"count\">(0)</span></h2><p class=\"empty\">No gauges for host \
             &lt;web9&gt;.</p></section>\n"
        );
    }
}
