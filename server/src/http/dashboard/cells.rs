//! The cells of a dashboard row that show more than a value: the name as its base and a chip
//! per tag, the inline SVG sparkline of the metric's history, and the "changed" age the history
//! gives. Every name, base and tag is escaped here.

use std::fmt::Write;

use golectra_common::tags::TaggedName;

use super::freshness::human_age;
use super::{Row, escape_into, human_float};
use crate::history::{Series, Tables};

/// Sparkline size in CSS pixels.
const SPARK_W: f64 = 120.0;
const SPARK_H: f64 = 28.0;

/// A metric's history as the dashboard needs it: points as floats and the last change.
pub struct Spark {
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
pub struct SparkValue(f64);
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

/// The name cell: a plain name as it is; a tagged one as its base and a chip per tag, the
/// whole name on hover. Hidden `;` between the parts make a copied name the stored one.
pub fn name_cell(html: &mut String, name: &str) {
    let Some(tagged) = TaggedName::parse(name) else {
        html.push_str("<td class=\"n\">");
        escape_into(html, name);
        html.push_str("</td>");
        return;
    };
    html.push_str("<td class=\"n\" title=\"");
    escape_into(html, name);
    html.push_str("\">");
    escape_into(html, tagged.base);
    for (key, value) in &tagged.tags {
        html.push_str("<span class=\"tag\"><i>;</i>");
        escape_into(html, key);
        html.push_str("=<b>");
        escape_into(html, value);
        html.push_str("</b></span>");
    }
    html.push_str("</td>");
}

/// The "changed" cell: how long ago the sampler saw the value change.
pub fn age_cell(html: &mut String, row: &Row, now_ms: i64, history: &Tables) {
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
pub fn sparkline(html: &mut String, row: &Row, now_ms: i64) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_chips_and_every_part_is_escaped() {
        let mut html = String::new();
        name_cell(&mut html, "Alloc;dc=eu;host=<b>\"&x");
        assert_eq!(
            html,
            "<td class=\"n\" title=\"Alloc;dc=eu;host=&lt;b&gt;&quot;&amp;x\">Alloc\
             <span class=\"tag\"><i>;</i>dc=<b>eu</b></span>\
             <span class=\"tag\"><i>;</i>host=<b>&lt;b&gt;&quot;&amp;x</b></span></td>"
        );
        // A base with markup, and a name that is not tag syntax: shown whole, escaped.
        let mut html = String::new();
        name_cell(&mut html, "<i>;k=\"v\"");
        assert_eq!(
            html,
            "<td class=\"n\" title=\"&lt;i&gt;;k=&quot;v&quot;\">&lt;i&gt;\
             <span class=\"tag\"><i>;</i>k=<b>&quot;v&quot;</b></span></td>"
        );
        let mut html = String::new();
        name_cell(&mut html, "a<b;c");
        assert_eq!(html, "<td class=\"n\">a&lt;b;c</td>");
    }
}
