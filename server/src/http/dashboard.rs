//! The HTML dashboard at `GET /` (SPEC §3.4): gauges and counters in two tables sorted by name,
//! values formatted for people (exact value on hover), counts, the time of the last update,
//! self-refreshing, no external assets. Every name is HTML-escaped.

use std::fmt::Write;
use std::time::SystemTime;

use golectra_common::metric::format_gauge;

use super::App;
use super::reply::{ApiError, Reply};

/// Seconds between automatic refreshes of the page.
const REFRESH_SECS: u32 = 10;

pub fn render(app: &App) -> Result<Reply, ApiError> {
    let snap = app.store.snapshot()?;
    let mut html = String::with_capacity(4096 + 160 * (snap.gauges.len() + snap.counters.len()));
    let updated = match snap.updated_at {
        Some(at) => {
            let ago = SystemTime::now()
                .duration_since(at)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            format!(
                "last update {} ({} ago)",
                humantime::format_rfc3339_seconds(at),
                human_age(ago)
            )
        }
        None => "no update since start".to_owned(),
    };
    let uptime = human_age(app.started.elapsed().as_secs());
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECS}">
<title>Golectra — {total} metrics</title>
<style>
:root{{color-scheme:light dark;--fg:#1d2330;--muted:#6b7280;--line:#e5e7eb;--bg:#fff;--head:#f3f4f6}}
@media (prefers-color-scheme:dark){{:root{{--fg:#e5e7eb;--muted:#9ca3af;--line:#374151;--bg:#111827;--head:#1f2937}}}}
body{{font:14px/1.4 system-ui,sans-serif;margin:0 auto;padding:1rem;max-width:72rem;color:var(--fg);background:var(--bg)}}
header{{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:baseline;border-bottom:1px solid var(--line);padding-bottom:.5rem}}
h1{{font-size:1.3rem;margin:0}} .muted{{color:var(--muted)}}
section{{margin-top:1.2rem;overflow-x:auto}} h2{{font-size:1.05rem;margin:.3rem 0}}
table{{border-collapse:collapse;width:100%}} th,td{{padding:.3rem .6rem;border-bottom:1px solid var(--line);text-align:left}}
th{{background:var(--head);font-weight:600}} td.v{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}
td.n{{word-break:break-all}}
</style></head><body>
<header><h1>Golectra</h1><span class="muted">{gauges} gauges · {counters} counters · {updated} · store {store} · up {uptime} · refreshes every {REFRESH_SECS}s</span></header>
"#,
        total = snap.gauges.len() + snap.counters.len(),
        gauges = snap.gauges.len(),
        counters = snap.counters.len(),
        store = app.store.kind(),
    );
    table(
        &mut html,
        "Gauges",
        snap.gauges
            .iter()
            .map(|(n, v)| (n.as_str(), human_float(*v), format_gauge(*v))),
    );
    table(
        &mut html,
        "Counters",
        snap.counters
            .iter()
            .map(|(n, v)| (n.as_str(), group_digits(&v.to_string()), v.to_string())),
    );
    html.push_str("</body></html>\n");
    Ok(Reply::html(html).with_header("Cache-Control", "no-store"))
}

fn table<'a>(
    html: &mut String,
    title: &str,
    rows: impl ExactSizeIterator<Item = (&'a str, String, String)>,
) {
    let _ = write!(
        html,
        "<section><h2>{title} <span class=\"muted\">({})</span></h2>",
        rows.len()
    );
    if rows.len() == 0 {
        html.push_str("<p class=\"muted\">none yet</p></section>\n");
        return;
    }
    html.push_str("<table><thead><tr><th>Name</th><th>Value</th></tr></thead><tbody>\n");
    for (name, shown, exact) in rows {
        html.push_str("<tr><td class=\"n\">");
        escape_into(html, name);
        let _ = writeln!(
            html,
            "</td><td class=\"v\" title=\"{exact}\">{shown}</td></tr>"
        );
    }
    html.push_str("</tbody></table></section>\n");
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
