//! The HTML dashboard at `GET /` (docs/observability.md): a page an operator keeps open.
//!
//! The server renders everything: a header with counts, last write, uptime, version and store
//! kind; gauges and counters in two tables sorted by name with a value for people (exact on
//! hover), an inline SVG sparkline of the metric's history ([`crate::history`]) and the age of
//! its last change. The filter (`?q=`, a case-insensitive substring of the name) is applied by
//! the server, and a large store is shown a page of at most `PAGE_ROWS` (500) rows at a time
//! (`?page=`, `page.rs`), so the page stays small whatever the store holds. A small inline
//! script keeps the filter box and the page in the URL (a reload or a shared link keeps them),
//! filters a small store as the operator types (a large one is asked again), and refreshes the
//! tables every few seconds by fetching the page again and swapping them in. Without JavaScript
//! the page still works through the query string and reloads itself. No external assets: it
//! works offline. Every name is escaped for HTML (which also covers the SVG `<title>`); the
//! script only reads names through attributes and never builds markup from them.

mod page;

use std::fmt::Write;
use std::time::SystemTime;

use golectra_common::metric::format_gauge;

use super::reply::{ApiError, Reply};
use crate::app::App;
use crate::history::{Series, Tables, unix_ms};
use page::Query;

/// Seconds between automatic refreshes of the page.
const REFRESH_SECS: u32 = 10;

/// Sparkline size in CSS pixels.
const SPARK_W: f64 = 120.0;
const SPARK_H: f64 = 28.0;

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
    let now_ms = unix_ms(now);
    let total = snap.gauges.len() + snap.counters.len();
    let plan = page::plan(
        &query,
        snap.gauges.iter().map(|(name, ..)| name.as_str()),
        snap.counters.iter().map(|(name, ..)| name.as_str()),
    );
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
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="{REFRESH_SECS}"></noscript>
<title>Golectra · {total} metrics</title>
<style>{STYLE}</style></head><body><div class="wrap">
<header><h1>Golectra<small>v{version}</small></h1>
<ul class="facts" id="facts"><li><b>{gauges} gauges</b></li><li><b>{counters} counters</b></li>{last_write}<li>up <b>{uptime}</b></li><li>store <b>{store}</b></li></ul></header>
<form class="bar" method="get" action="/"><input id="filter" name="q" type="search" value="{filter}" placeholder="Filter by name…" aria-label="Filter metrics by name" autocomplete="off" spellcheck="false"><span id="status">refreshes every {REFRESH_SECS}s</span></form>
"#,
        gauges = snap.gauges.len(),
        counters = snap.counters.len(),
        uptime = human_age(app.started.elapsed().as_secs()),
        store = app.store.kind(),
        filter = escaped(&query.filter),
    );
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
                total,
            );
        }
        None => html.push_str("<main id=\"tables\">\n"),
    }
    app.history.read(|history| {
        let gauges = plan.gauges.iter().map(|&(i, visible)| {
            let (name, v, _) = &snap.gauges[i];
            Row {
                name,
                visible,
                shown: human_float(*v),
                exact: format_gauge(*v),
                current: *v,
                series: history.gauges.get(name.as_str()).map(Spark::from),
            }
        });
        let counts = Counts {
            matched: plan.matched.0,
            total: snap.gauges.len(),
            filtered: !query.filter.is_empty(),
        };
        table(
            &mut html, "gauges", "Gauges", gauges, counts, now_ms, history,
        );
        let counters = plan.counters.iter().map(|&(i, visible)| {
            let (name, v, _) = &snap.counters[i];
            Row {
                name,
                visible,
                shown: group_digits(&v.to_string()),
                exact: v.to_string(),
                current: *v as f64,
                series: history.counters.get(name.as_str()).map(Spark::from),
            }
        });
        let counts = Counts {
            matched: plan.matched.1,
            total: snap.counters.len(),
            filtered: counts.filtered,
        };
        table(
            &mut html, "counters", "Counters", counters, counts, now_ms, history,
        );
    });
    let interval = app.history.options().interval;
    let _ = write!(
        html,
        "</main>\n<footer>Sparklines: the last {} samples, one every {}. <a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/snapshot\">snapshot JSON</a></footer>\n</div><script>{}</script></body></html>\n",
        app.history.options().points,
        humantime::format_duration(interval),
        SCRIPT.replace("REFRESH_SECS", &REFRESH_SECS.to_string()),
    );
    Ok(Reply::html(html).with_header("Cache-Control", "no-store"))
}

/// A metric's history as the dashboard needs it: points as floats and the last change.
struct Spark {
    points: Vec<(i64, f64)>,
    changed_at_ms: Option<i64>,
}

impl<T: Copy + Default + Into<SparkValue>> From<&Series<T>> for Spark {
    fn from(s: &Series<T>) -> Self {
        Self {
            points: s.ring.iter().map(|(t, v)| (t, v.into().0)).collect(),
            changed_at_ms: s.changed_at_ms,
        }
    }
}

/// Gauges and counters as plotted (an `i64` past 2^53 loses digits here, not in the tables).
struct SparkValue(f64);
impl From<f64> for SparkValue {
    fn from(v: f64) -> Self {
        Self(v)
    }
}
impl From<i64> for SparkValue {
    fn from(v: i64) -> Self {
        Self(v as f64)
    }
}

struct Row<'a> {
    name: &'a str,
    /// Whether the row matches the filter (a row that does not is sent `hidden`).
    visible: bool,
    shown: String,
    exact: String,
    current: f64,
    series: Option<Spark>,
}

/// A table's heading count: the rows that match the filter, of all stored.
#[derive(Clone, Copy)]
struct Counts {
    matched: usize,
    total: usize,
    filtered: bool,
}

/// The line above the tables of a paged store: which rows this page shows, and links to the
/// others (keeping the filter).
fn pager(html: &mut String, query: &Query, paging: &page::Paging, matched: usize, total: usize) {
    let (first, last) = paging.rows;
    let _ = write!(
        html,
        "<nav class=\"pager\" id=\"pager\"><span>{total} metrics, {} a page: <b>rows {first}–{last} of {matched}</b>{}</span><span class=\"pages\">",
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
    now_ms: i64,
    history: &Tables,
) {
    let _ = write!(
        html,
        "<section id=\"{id}\"><h2>{title} <span class=\"count\">({}{})</span></h2>",
        if counts.filtered {
            format!("{} of ", counts.matched)
        } else {
            String::new()
        },
        counts.total
    );
    if rows.len() == 0 {
        let why = if counts.total == 0 {
            format!("No {id} yet: point an agent at this server or POST to /update.")
        } else if counts.matched == 0 {
            format!("No {id} match the filter.")
        } else {
            format!("No {id} on this page.")
        };
        let _ = writeln!(html, "<p class=\"empty\">{why}</p></section>");
        return;
    }
    html.push_str("<table><thead><tr><th>Name</th><th class=\"v\">Value</th><th>Recent</th><th class=\"v\">Changed</th></tr></thead><tbody>\n");
    for row in rows {
        html.push_str("<tr data-name=\"");
        escape_into(html, &row.name.to_lowercase());
        html.push_str(if row.visible { "\">" } else { "\" hidden>" });
        html.push_str("<td class=\"n\">");
        escape_into(html, row.name);
        let _ = write!(
            html,
            "</td><td class=\"v\" title=\"{}\">{}</td><td class=\"s\">",
            row.exact, row.shown
        );
        sparkline(html, &row, now_ms);
        html.push_str("</td><td class=\"a\"");
        age_cell(html, &row, now_ms, history);
        html.push_str("</td></tr>\n");
    }
    html.push_str("</tbody></table></section>\n");
}

/// The "changed" cell: how long ago the sampler saw the value change.
fn age_cell(html: &mut String, row: &Row, now_ms: i64, history: &Tables) {
    let last_sample_ms = history.last_sample_ms;
    let last_sampled = row
        .series
        .as_ref()
        .and_then(|s| s.points.last().map(|p| p.1));
    match (&row.series, last_sampled) {
        // The history is full: metrics without a series get none until room frees up.
        (None, _) if history.untracked > 0 => html
            .push_str(" title=\"no history kept for this metric: HISTORY_MAX_BYTES is reached\">—"),
        // Changed after the last sample, or not sampled yet.
        (None, _) => html.push_str(" title=\"written after the last history sample\">new"),
        (Some(_), Some(v)) if v != row.current => {
            let since = last_sample_ms.map_or(0, |t| (now_ms - t).max(0) as u64 / 1000);
            let _ = write!(
                html,
                " title=\"changed after the last history sample\">&lt; {}",
                human_age(since + 1)
            );
        }
        (Some(s), _) => match s.changed_at_ms {
            Some(at) => {
                let at_time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at as u64);
                let _ = write!(
                    html,
                    " title=\"{}\">{}",
                    humantime::format_rfc3339_seconds(at_time),
                    human_age(((now_ms - at).max(0) / 1000) as u64)
                );
            }
            None => html.push_str(" title=\"unchanged since the server started\">—"),
        },
    }
}

/// An inline SVG polyline of the recent values plus the current one, on a time axis.
fn sparkline(html: &mut String, row: &Row, now_ms: i64) {
    let mut points: Vec<(i64, f64)> = row
        .series
        .as_ref()
        .map(|s| s.points.clone())
        .unwrap_or_default();
    points.push((now_ms, row.current));
    let (min, max) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let t0 = points[0].0;
    let span = (now_ms - t0).max(1) as f64;
    let pad = 3.0;
    let xy = |(t, v): (i64, f64)| {
        let x = if points.len() == 1 {
            SPARK_W
        } else {
            (t - t0) as f64 / span * SPARK_W
        };
        let y = if max > min {
            SPARK_H - pad - (v - min) / (max - min) * (SPARK_H - 2.0 * pad)
        } else {
            SPARK_H / 2.0
        };
        (x.clamp(0.0, SPARK_W), y)
    };
    let mut line = String::with_capacity(points.len() * 12);
    if points.len() == 1 {
        let _ = write!(line, "0,{:.1} ", SPARK_H / 2.0);
    }
    for p in &points {
        let (x, y) = xy(*p);
        let _ = write!(line, "{x:.1},{y:.1} ");
    }
    let line = line.trim_end();
    let (lx, ly) = xy(*points.last().expect("at least the current value"));
    let _ = write!(
        html,
        "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\"><title>",
        w = SPARK_W,
        h = SPARK_H
    );
    escape_into(html, row.name);
    let _ = write!(
        html,
        ": {} samples, min {}, max {}</title>{area}<polyline points=\"{line}\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" stroke-linejoin=\"round\" stroke-linecap=\"round\"/><circle cx=\"{lx:.1}\" cy=\"{ly:.1}\" r=\"2.2\" fill=\"currentColor\"/></svg>",
        points.len(),
        human_float(min),
        human_float(max),
        // A flat line needs no area under it.
        area = if max > min {
            format!(
                "<polygon points=\"0,{h} {line} {lx:.1},{h}\" fill=\"currentColor\" fill-opacity=\".12\"/>",
                h = SPARK_H
            )
        } else {
            String::new()
        },
    );
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

fn human_age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
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
}
