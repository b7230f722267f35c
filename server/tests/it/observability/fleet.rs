//! The dashboard of a fleet, in headless Chromium: the host selector built from the `host` tags
//! with metrics and stale counts, the selection in the URL (`?host=`, `?match=`) applied by the
//! server and kept across the script's refresh, tag chips, and rows not written within
//! `STALE_AFTER` marked stale — made old by restoring a snapshot whose entries were written two
//! days ago, so no test waits for time to pass.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use golectra_server::config::Storage;

use super::{artifacts_dir, chromium, find_tool, rows};
use crate::harness::{Backend, TestServer};

/// Undoes the escaping of a serialized DOM.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// One link of the host selector: its label, metrics, stale metrics and whether it is the
/// selected one.
#[derive(Debug, PartialEq)]
struct Chip {
    label: String,
    metrics: usize,
    stale: usize,
    current: bool,
}

fn chip(label: &str, metrics: usize, stale: usize, current: bool) -> Chip {
    Chip {
        label: label.to_owned(),
        metrics,
        stale,
        current,
    }
}

/// The host selector of a page (`<nav id="hosts">`), link by link.
fn chips(dom: &str) -> Vec<Chip> {
    let start = dom.find("id=\"hosts\"").expect("a host selector");
    let nav = &dom[start..start + dom[start..].find("</nav>").unwrap()];
    nav.split("<a ")
        .skip(1)
        .map(|a| {
            let (attrs, rest) = a.split_once('>').unwrap();
            let (label, rest) = rest.split_once(" <b>").unwrap();
            let (metrics, rest) = rest.split_once("</b>").unwrap();
            let stale = rest
                .split_once("\">")
                .and_then(|(_, s)| s.split_once(" stale</span>"))
                .map_or(0, |(n, _)| n.parse().unwrap());
            Chip {
                label: unescape(label),
                metrics: metrics.parse().unwrap(),
                stale,
                current: attrs.contains("aria-current=\"page\""),
            }
        })
        .collect()
}

/// The names of the rows shown (not `hidden`), in page order, as stored.
fn shown(dom: &str) -> Vec<String> {
    rows(dom)
        .into_iter()
        .filter(|(_, row)| !row.contains(" hidden"))
        .map(|(name, _)| unescape(&name))
        .collect()
}

const HOSTILE: &str = "<i>\"&";

#[test]
fn fleet_dashboard_in_headless_chromium() {
    let Some(browser) = find_tool(&["chromium", "chromium-browser"], "chromium") else {
        return;
    };
    // Written two days ago: web3 went away, web1 has one metric it no longer sends.
    let old = SystemTime::now() - Duration::from_secs(2 * 86400);
    let old_ms = old.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let snapshot = serde_json::json!([
        {"id": "Alloc;host=web3", "type": "gauge", "value": 1.5, "updated": old_ms},
        {"id": "Heap;host=web1", "type": "gauge", "value": 9, "updated": old_ms},
        {"id": "PollCount;host=web3", "type": "counter", "delta": 4, "updated": old_ms},
    ]);
    let s = TestServer::start_with(Backend::Memory, |c| {
        let Storage::Memory { path, restore, .. } = &mut c.storage else {
            unreachable!("a memory store")
        };
        std::fs::write(path, snapshot.to_string()).unwrap();
        *restore = true;
    });
    let c = s.client();
    let fresh = serde_json::json!([
        {"id": "Alloc;host=web1", "type": "gauge", "value": 10},
        {"id": "Alloc;host=web2", "type": "gauge", "value": 20},
        // Tags in any order: stored canonical, dc before host.
        {"id": "CPU;host=web2;dc=eu", "type": "gauge", "value": 0.5},
        {"id": "Alloc", "type": "gauge", "value": 1},
        {"id": format!("Alloc;host={HOSTILE}"), "type": "gauge", "value": 2},
        {"id": "PollCount;host=web1", "type": "counter", "delta": 5},
        {"id": "PollCount;host=web2", "type": "counter", "delta": 6},
    ]);
    assert_eq!(c.post_json("/updates/", &fresh.to_string()).status, 200);

    // Every host with its counts; web3 is all stale, web1 partly.
    let dom = chromium(&browser, &["--dump-dom"], &s.url("/"));
    assert_eq!(
        chips(&dom),
        [
            chip("all hosts", 10, 3, true),
            chip(HOSTILE, 1, 0, false),
            chip("web1", 3, 1, false),
            chip("web2", 3, 0, false),
            chip("web3", 2, 2, false),
            chip("(no host)", 1, 0, false),
        ],
        "{dom}"
    );
    assert!(dom.contains("<li><b>4 hosts</b></li>"), "{dom}");
    assert!(dom.contains("<b>3 stale</b>"), "{dom}");
    assert!(dom.contains("class=\"host gone\""), "web3 went away: {dom}");
    // By base name, then tags; gauges, then counters.
    let all = [
        "Alloc",
        "Alloc;host=<i>\"&",
        "Alloc;host=web1",
        "Alloc;host=web2",
        "Alloc;host=web3",
        "CPU;dc=eu;host=web2",
        "Heap;host=web1",
        "PollCount;host=web1",
        "PollCount;host=web2",
        "PollCount;host=web3",
    ]
    .map(str::to_lowercase);
    assert_eq!(shown(&dom), all, "{dom}");
    // Tag chips, escaped: the hostile value is text, not an element.
    assert!(
        dom.contains("CPU<span class=\"tag\"><i>;</i>dc=<b>eu</b></span><span class=\"tag\"><i>;</i>host=<b>web2</b></span>"),
        "{dom}"
    );
    assert!(dom.contains("host=<b>&lt;i&gt;\"&amp;</b>"), "{dom}");
    assert_eq!(dom.matches("<i>").count(), dom.matches("<i>;</i>").count());
    // Stale rows: the class and the marker saying why, on exactly the three old metrics.
    let marker =
        "<span class=\"mark\" title=\"not written for 2d 0h (STALE_AFTER 5m)\">stale</span>";
    for (name, row) in rows(&dom) {
        let old =
            ["heap;host=web1", "alloc;host=web3", "pollcount;host=web3"].contains(&name.as_str());
        assert_eq!(row.starts_with(" class=\"stale\""), old, "{name}: {row}");
        assert_eq!(row.contains(marker), old, "{name}: {row}");
    }

    // One host, given in the URL: only its rows, and the selection survives the refresh.
    let dom = chromium(
        &browser,
        &["--dump-dom", "--virtual-time-budget=25000"],
        &s.url("/?host=web1"),
    );
    assert!(
        dom.contains("<span id=\"status\">updated "),
        "the refresh ran: {dom}"
    );
    assert_eq!(
        shown(&dom),
        ["alloc;host=web1", "heap;host=web1", "pollcount;host=web1"],
        "{dom}"
    );
    assert_eq!(rows(&dom).len(), 3, "other hosts' rows are not sent");
    assert!(
        dom.contains(
            "Gauges <span class=\"scope\">host web1</span> <span class=\"count\">(2)</span>"
        ),
        "{dom}"
    );
    assert!(dom.contains(
        "Counters <span class=\"scope\">host web1</span> <span class=\"count\">(1)</span>"
    ));
    let current: Vec<String> = chips(&dom)
        .into_iter()
        .filter(|c| c.current)
        .map(|c| c.label)
        .collect();
    assert_eq!(current, ["web1"]);

    // The host links keep the filter the page was loaded with.
    let dom = chromium(&browser, &["--dump-dom"], &s.url("/?q=alloc&host=web2"));
    assert_eq!(shown(&dom), ["alloc;host=web2"], "{dom}");
    assert!(dom.contains("?q=alloc&amp;host=web1\""), "{dom}");

    // Without the script: the same selection from the server alone.
    for (query, expected) in [
        (
            "/?host=web1",
            &["alloc;host=web1", "heap;host=web1", "pollcount;host=web1"][..],
        ),
        (
            "/?host=%77eb2",
            &[
                "alloc;host=web2",
                "cpu;dc=eu;host=web2",
                "pollcount;host=web2",
            ],
        ),
        ("/?host=", &["alloc"]),
        ("/?host=%3Ci%3E%22%26", &["alloc;host=<i>\"&"]),
        ("/?match=dc=eu", &["cpu;dc=eu;host=web2"]),
        (
            "/?match=__name__%3DPollCount&host=web3",
            &["pollcount;host=web3"],
        ),
    ] {
        let r = c.get(query);
        assert_eq!(r.status, 200, "{query}");
        assert_eq!(shown(&r.text()), expected, "{query}");
    }
    let nope = c.get("/?host=nope");
    assert_eq!(nope.status, 200, "an unknown host is an empty selection");
    let html = nope.text();
    assert!(rows(&html).is_empty());
    assert!(html.contains("No gauges for host nope."), "{html}");
    for (query, reason) in [
        (
            "/?host=a%3Bb",
            "host \"a;b\" cannot be a tag value (no ';' or control characters)",
        ),
        ("/?host=web1&host=web2", "host is given twice"),
        ("/?match=dc", "match term \"dc\" is not key=value"),
    ] {
        let r = c.get(query);
        assert_eq!(r.status, 400, "{query}");
        assert!(r.text().contains(reason), "{query}: {}", r.text());
    }

    let path = artifacts_dir().join("dashboard-fleet.png");
    let _ = std::fs::remove_file(&path);
    chromium(
        &browser,
        &[
            "--window-size=1280,800",
            &format!("--screenshot={}", path.display()),
        ],
        &s.url("/"),
    );
    assert!(
        std::fs::read(&path)
            .expect("screenshot")
            .starts_with(b"\x89PNG")
    );
    eprintln!("screenshot: {}", path.display());
}
