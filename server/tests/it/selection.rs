//! Selecting metrics by tag (docs/http-api.md, "Selecting by tag"): `?match=` on the snapshot
//! API, against every backend, and on the history API.

use std::time::Duration;

use golectra_server::history::HistoryOptions;
use golectra_testkit::{Client, eventually};
use serde_json::json;

use crate::harness::{Backend, TestServer, backends};

/// A small fleet: tagged and plain names of both types.
fn write_fleet(c: &Client) {
    let batch = json!([
        {"id": "Alloc", "type": "gauge", "value": 1.0},
        {"id": "Alloc;host=web1;dc=eu", "type": "gauge", "value": 2.0},
        {"id": "Alloc;host=web2;dc=eu", "type": "gauge", "value": 3.0},
        {"id": "Alloc;host=my box", "type": "gauge", "value": 3.5},
        {"id": "HeapAlloc;host=web1", "type": "gauge", "value": 4.0},
        {"id": "PollCount;host=web1", "type": "counter", "delta": 5},
        {"id": "PollCount;host=web2", "type": "counter", "delta": 6},
        {"id": "PollCount", "type": "counter", "delta": 7},
    ]);
    let r = c.post_json("/updates", &batch.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn snapshot_selects_by_tag() {
    for backend in backends() {
        let s = TestServer::start(backend);
        let c = s.client();
        write_fleet(&c);
        let web1 = json!({
            "gauges": {"Alloc;dc=eu;host=web1": 2.0, "HeapAlloc;host=web1": 4.0},
            "counters": {"PollCount;host=web1": 5},
        });
        for query in [
            "match=host=web1",
            "match=host%3Dweb1",
            "match=host%3dweb1&foo=bar",
            "page=2&match=host=web1",
        ] {
            for path in ["/api/v1/snapshot", "/api/v1/snapshot/"] {
                let r = c.get(&format!("{path}?{query}"));
                assert_eq!((r.status, r.json()), (200, web1.clone()), "{query}");
            }
        }
        let selected = |query: &str| {
            let r = c.get(&format!("/api/v1/snapshot?{query}"));
            assert_eq!(r.status, 200, "{query}: {}", r.text());
            r.json()
        };
        // Terms are ANDed; __name__ selects by base name, plain names included.
        assert_eq!(
            selected("match=host=web1&match=__name__=Alloc"),
            json!({"gauges": {"Alloc;dc=eu;host=web1": 2.0}, "counters": {}})
        );
        assert_eq!(
            selected("match=dc=eu&match=host%3Dweb2"),
            json!({"gauges": {"Alloc;dc=eu;host=web2": 3.0}, "counters": {}})
        );
        assert_eq!(
            selected("match=__name__%3DPollCount"),
            json!({"gauges": {}, "counters": {
                "PollCount": 7, "PollCount;host=web1": 5, "PollCount;host=web2": 6,
            }})
        );
        // '+' is a space, as in a form.
        assert_eq!(
            selected("match=host=my+box"),
            json!({"gauges": {"Alloc;host=my box": 3.5}, "counters": {}})
        );
        // Selecting nothing is an empty snapshot, not a 404.
        assert_eq!(
            selected("match=host=web9"),
            json!({"gauges": {}, "counters": {}})
        );
        assert_eq!(
            selected("match=host=web1&match=host=web2"),
            json!({"gauges": {}, "counters": {}})
        );
        // Other parameters are ignored: the whole store.
        assert_eq!(selected("foo=bar")["gauges"].as_object().unwrap().len(), 5);

        for (query, message) in [
            (
                "match=host",
                r#"match term "host" is not key=value (e.g. match=host=web1)"#,
            ),
            (
                "match=",
                r#"match term "" is not key=value (e.g. match=host=web1)"#,
            ),
            (
                "match=host=web1&match=ho-st%3Dweb1",
                r#"match key "ho-st" must be a tag key ([A-Za-z_][A-Za-z0-9_]*) or __name__"#,
            ),
            ("match=host%3D", r#"match term "host=" has an empty value"#),
            (
                "match=host=%C3",
                r#"query parameter "match" is not valid UTF-8 after percent-decoding"#,
            ),
        ] {
            let r = c.get(&format!("/api/v1/snapshot?{query}"));
            assert_eq!(
                (r.status, r.text()),
                (400, format!("{message}\n")),
                "{query}"
            );
        }
    }
}

/// The `id`s of a history selection's series.
fn ids(json: &serde_json::Value) -> Vec<&str> {
    json["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect()
}

#[test]
fn history_selects_the_series_of_a_base_name_by_tag() {
    let s = TestServer::start_with(Backend::Memory, |c| {
        c.history = HistoryOptions {
            interval: Duration::from_millis(20),
            points: 1000,
            ..c.history
        }
    });
    let c = s.client();
    write_fleet(&c);
    let path = "/api/v1/history/gauge/Alloc?match=dc=eu";
    // Poll until the sampler has seen both series.
    let json = eventually(Duration::from_secs(60), || {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{}", r.text());
        let json = r.json();
        let series = json["series"].as_array().unwrap();
        let sampled = series
            .iter()
            .all(|s| !s["points"].as_array().unwrap().is_empty());
        (series.len() == 2 && sampled).then_some(json)
    })
    .expect("the sampler sees every series");
    assert_eq!(json["type"], "gauge");
    assert_eq!(json["base"], "Alloc");
    assert_eq!(json["capacity"], 1000);
    assert_eq!(json["interval_seconds"], 0.02);
    assert_eq!(
        ids(&json),
        ["Alloc;dc=eu;host=web1", "Alloc;dc=eu;host=web2"]
    );
    for (series, value) in json["series"].as_array().unwrap().iter().zip([2.0, 3.0]) {
        assert_eq!(series["value"], value);
        let points = series["points"].as_array().unwrap();
        assert!(points.iter().all(|p| p[1] == value), "{series}");
        // First seen after the server's first sample: changed then, at its first point.
        assert_eq!(series["changed_at_ms"], points[0][0], "{series}");
    }

    let selected = |path: &str| {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    };
    assert_eq!(
        ids(&selected(
            "/api/v1/history/gauge/Alloc/?match=host%3Dweb1&match=dc=eu"
        )),
        ["Alloc;dc=eu;host=web1"]
    );
    // A __name__ term selects the plain name too; it must agree with the path.
    assert_eq!(
        ids(&selected(
            "/api/v1/history/gauge/Alloc?match=__name__=Alloc"
        )),
        [
            "Alloc",
            "Alloc;dc=eu;host=web1",
            "Alloc;dc=eu;host=web2",
            "Alloc;host=my box"
        ]
    );
    assert_eq!(
        ids(&selected(
            "/api/v1/history/gauge/Alloc?match=__name__=HeapAlloc"
        )),
        Vec::<&str>::new()
    );
    assert_eq!(
        ids(&selected(
            "/api/v1/history/counter/PollCount?match=host=web2"
        )),
        ["PollCount;host=web2"]
    );
    // Selecting nothing is an empty list, not a 404, whether or not the base is stored.
    for path in [
        "/api/v1/history/gauge/Alloc?match=host=web9",
        "/api/v1/history/counter/Alloc?match=host=web1",
        "/api/v1/history/gauge/Nothing?match=host=web1",
    ] {
        let json = selected(path);
        assert_eq!(json["series"], json!([]), "{path}");
    }

    // Without match the response is the one metric's, as before; a tagged name in the path is
    // canonicalised like any other.
    let one = selected("/api/v1/history/gauge/Alloc;host=web1;dc=eu");
    assert_eq!(one["id"], "Alloc;dc=eu;host=web1");
    assert_eq!(one["value"], 2.0);
    assert!(one.get("series").is_none());
    assert_eq!(c.get("/api/v1/history/gauge/Alloc;host=web9").status, 404);

    for (path, status, message) in [
        (
            "/api/v1/history/gauge/Alloc?match=host",
            400,
            r#"match term "host" is not key=value (e.g. match=host=web1)"#,
        ),
        (
            "/api/v1/history/gauge/Alloc;host=web1?match=dc=eu",
            400,
            r#"with match, the path names a base name without tags, not "Alloc;host=web1": put its tags in match terms"#,
        ),
        (
            "/api/v1/history/bogus/Alloc?match=dc=eu",
            400,
            r#"unknown metric type "bogus": expected gauge or counter"#,
        ),
    ] {
        let r = c.get(path);
        assert_eq!(
            (r.status, r.text()),
            (status, format!("{message}\n")),
            "{path}"
        );
    }
}
