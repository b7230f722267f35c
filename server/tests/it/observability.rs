//! Observability (docs/observability.md): `/metrics` checked by `promtool` and read back by a strict
//! parser of the text format, self-metrics that follow known traffic, the history API, and the
//! dashboard rendered by a headless Chromium (a fleet's hosts and stale rows in `fleet.rs`).
//!
//! `promtool` (Debian `prometheus`) and `chromium` are external tools: a test that needs one
//! fails when `CI=true` and the tool is missing, and is skipped with a loud note otherwise.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use golectra_server::history::HistoryOptions;

use golectra_testkit::{
    Client, ServerProcess, eventually, require, require_root, require_tool, wait_exit,
};

use crate::harness::{Backend, TestServer, gunzip};

// ---------------------------------------------------------------------------------------------
// A strict parser of the Prometheus text format 0.0.4, as far as this server uses it.

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: String,
    samples: Vec<(BTreeMap<String, String>, f64)>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses an exposition; panics on anything the format does not allow: a sample before its
/// `# HELP` and `# TYPE`, a family twice, a bad name, a bad escape, a bad value.
fn parse_exposition(text: &str) -> Vec<Family> {
    assert!(text.ends_with('\n'), "the body ends with a newline");
    let mut families: Vec<Family> = Vec::new();
    let mut seen = HashSet::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let help = line
            .strip_prefix("# HELP ")
            .unwrap_or_else(|| panic!("expected # HELP, got {line:?}"));
        let (name, help) = help.split_once(' ').expect("HELP has a name and a text");
        assert!(valid_name(name), "family name {name:?}");
        assert!(seen.insert(name.to_owned()), "family {name} appears twice");
        let help = unescape(help, false);
        let type_line = lines.next().expect("TYPE after HELP");
        let kind = type_line
            .strip_prefix(&format!("# TYPE {name} "))
            .unwrap_or_else(|| panic!("expected # TYPE {name}, got {type_line:?}"));
        assert!(
            ["counter", "gauge", "untyped"].contains(&kind),
            "type {kind}"
        );
        let mut family = Family {
            name: name.to_owned(),
            help,
            kind: kind.to_owned(),
            samples: Vec::new(),
        };
        while let Some(line) = lines.next_if(|l| !l.starts_with('#')) {
            let rest = line
                .strip_prefix(name)
                .unwrap_or_else(|| panic!("sample {line:?} outside family {name}"));
            let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
                parse_labels(rest)
            } else {
                (
                    BTreeMap::new(),
                    rest.strip_prefix(' ').expect("space before value"),
                )
            };
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("value {v:?} in {line:?}")),
            };
            family.samples.push((labels, value));
        }
        families.push(family);
    }
    families
}

/// Parses `k="v",…} value` (after the `{`); returns the labels and the value text.
fn parse_labels(mut rest: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(after) = rest.strip_prefix("} ") {
            return (labels, after);
        }
        let (key, after) = rest.split_once("=\"").expect("label =\"");
        assert!(valid_name(key), "label name {key:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("escape").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => panic!("bad escape \\{c}"),
                },
                (_, '\n') => panic!("raw newline in a label value"),
                (_, c) => value.push(c),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "label {key} twice"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn unescape(text: &str, quotes: bool) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('"') if quotes => out.push('"'),
                other => panic!("bad escape {other:?} in {text:?}"),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The samples of a scrape by family name.
struct Scrape(Vec<Family>);

impl Scrape {
    fn get(client: &Client) -> Self {
        let r = client.get("/metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        Self(parse_exposition(&r.text()))
    }

    fn family(&self, name: &str) -> Option<&Family> {
        self.0.iter().find(|f| f.name == name)
    }

    /// The value of the sample of `family` with exactly these labels; 0 when absent (counters
    /// start at zero).
    fn value(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.family(family)
            .and_then(|f| f.samples.iter().find(|(l, _)| *l == want))
            .map_or(0.0, |(_, v)| *v)
    }
}

// ---------------------------------------------------------------------------------------------
// External tools.

/// Finds an external tool under any of `names`. Missing: a failure when `CI=true`, a loud skip
/// otherwise (the test kit's [`require`]).
fn find_tool(names: &[&str], package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    let hint = format!("install the Debian package {package}");
    require(&format!("{names:?}"), found.is_some(), &hint);
    found
}

/// Runs `promtool check metrics` on `text`; returns the exit code and everything it printed.
fn promtool_check(promtool: &Path, text: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("promtool output");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// /metrics

/// Stored names that need every part of the sanitizing rule.
const AWKWARD: &[(&str, &str)] = &[
    ("gauge", "cpu load"),
    ("gauge", "<script>alert(1)</script>"),
    ("gauge", "9lives"),
    ("gauge", "temp.°c"),
    ("gauge", "shared"),
    ("counter", "shared"),
    ("counter", "process_cpu_seconds_total"),
    ("gauge", "golectra_http_requests_total"),
    ("gauge", "back\\slash\"quote"),
    ("gauge", "heap_bytes"),
    ("counter", "requests"),
    ("counter", "x_deadbeef"),
];

fn write_awkward(c: &Client) -> Vec<(String, String, f64)> {
    let mut written = Vec::new();
    for (i, (kind, name)) in AWKWARD.iter().enumerate() {
        let value = match *kind {
            "gauge" => i as f64 * 1.25 - 3.0,
            _ => i as f64 * 1000.0 - 2000.0,
        };
        let body = if *kind == "gauge" {
            serde_json::json!({"id": name, "type": kind, "value": value})
        } else {
            serde_json::json!({"id": name, "type": kind, "delta": value as i64})
        };
        assert_eq!(c.post_json("/update", &body.to_string()).status, 200);
        written.push((kind.to_string(), name.to_string(), value));
    }
    written
}

#[test]
fn metrics_endpoint_content_type_gzip_and_methods() {
    let s = TestServer::start(Backend::Memory);
    let c = s.client();
    c.post("/update/gauge/heap_bytes/1", b"");
    for path in ["/metrics", "/metrics/"] {
        let r = c.get(path);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert!(r.text().contains("\nheap_bytes 1.0\n"), "{}", r.text());
    }
    let plain = c.get("/metrics").text();
    let zipped = c.request("GET", "/metrics", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    let unzipped = String::from_utf8(gunzip(&zipped.body)).unwrap();
    parse_exposition(&unzipped);
    assert!(unzipped.contains("\nheap_bytes 1.0\n"));
    assert_eq!(
        plain.lines().filter(|l| l.starts_with("# TYPE")).count(),
        unzipped.lines().filter(|l| l.starts_with("# TYPE")).count()
    );
    let r = c.post("/metrics", b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
}

#[test]
fn promtool_accepts_metrics_with_sanitized_names_and_values_read_back() {
    let s = TestServer::start(Backend::Memory);
    let c = s.client();
    let written = write_awkward(&c);
    let body = c.get("/metrics").text();
    let scrape = Scrape(parse_exposition(&body));

    // Every stored metric is one family of its own, found by its name or its `name` label,
    // with the value written.
    let mut exported = HashSet::new();
    for (kind, name, value) in &written {
        let family = scrape
            .0
            .iter()
            .find(|f| {
                f.help.starts_with(&format!("Golectra {kind} "))
                    && (f.name == *name || f.samples[0].0.get("name") == Some(name))
            })
            .unwrap_or_else(|| panic!("{kind} {name:?} missing in\n{body}"));
        assert!(valid_name(&family.name));
        assert_eq!(family.kind, "gauge", "stored metrics are typed gauge");
        assert_eq!(family.samples.len(), 1);
        assert_eq!(family.samples[0].1, *value, "{kind} {name:?}");
        assert!(
            exported.insert(family.name.clone()),
            "{} twice",
            family.name
        );
        let renamed = !valid_name(name)
            || name.starts_with("golectra_")
            || name.starts_with("process_")
            || (kind == "counter" && name == "shared")
            || name == "x_deadbeef";
        if renamed {
            assert_ne!(&family.name, name);
        } else {
            assert_eq!(&family.name, name, "clean names stay as they are");
        }
    }
    // The server's own families are still there, unshadowed.
    assert_eq!(
        scrape.family("golectra_http_requests_total").unwrap().kind,
        "counter"
    );
    assert!(scrape.value("process_cpu_seconds_total", &[]) >= 0.0);

    let Some(promtool) = find_tool(&["promtool"], "prometheus") else {
        return;
    };
    let (code, out) = promtool_check(&promtool, &body);
    assert_eq!((code, out.as_str()), (0, ""), "promtool on\n{body}");
}

#[test]
fn promtool_accepts_agent_names_and_lint_traps_without_a_complaint() {
    let Some(promtool) = find_tool(&["promtool"], "prometheus") else {
        return;
    };
    let s = TestServer::start(Backend::Memory);
    let c = s.client();
    // Every name the agent sends, plus names that trip each of promtool's lint rules.
    let mut items: Vec<String> = golectra_common::metric::RUNTIME_GAUGES
        .iter()
        .chain(&[
            "RandomValue",
            "TotalMemory",
            "FreeMemory",
            "CPUutilization1",
            "CPUutilization2",
            "latency_ms",
            "uptime_minutes",
            "requests_total",
            "queue_count",
            "size_kilobytes",
            "my_gauge",
            "s",
        ])
        .map(|n| format!(r#"{{"id":"{n}","type":"gauge","value":1.5}}"#))
        .collect();
    items.push(r#"{"id":"PollCount","type":"counter","delta":2}"#.into());
    items.push(r#"{"id":"HeapAlloc","type":"counter","delta":3}"#.into());
    assert_eq!(
        c.post_json("/updates", &format!("[{}]", items.join(",")))
            .status,
        200
    );
    let body = c.get("/metrics").text();
    let (code, out) = promtool_check(&promtool, &body);
    assert_eq!((code, out.as_str()), (0, ""), "promtool complained");
    // Renamed families keep the stored name in a label.
    assert!(
        body.contains("\ntotal_memory{name=\"TotalMemory\"} 1.5\n"),
        "{body}"
    );
    assert!(
        body.contains("\npollcount{name=\"PollCount\"} 2\n"),
        "{body}"
    );
    // The gauge and the counter named HeapAlloc would coincide: both get a hash suffix.
    let heap: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("heap_alloc_") && l.contains(r#"{name="HeapAlloc"}"#))
        .collect();
    assert_eq!(heap.len(), 2, "{body}");
}

/// Tagged names are samples of their base name's family, tags as labels: one `# HELP` and
/// `# TYPE` per family, its samples together, keys that could be taken for our labels
/// prefixed, values escaped — and promtool has nothing to say.
#[test]
fn tags_become_labels_of_one_family_per_base_name() {
    let s = TestServer::start(Backend::Memory);
    let c = s.client();
    let batch = serde_json::json!([
        {"id": "Alloc", "type": "gauge", "value": 1.0},
        {"id": "Alloc;host=web1", "type": "gauge", "value": 2.0},
        // Sent out of order: stored (and exported) in canonical order.
        {"id": "Alloc;host=web2;dc=eu", "type": "gauge", "value": 3.5},
        {"id": "cpu load;host=a \"b\"\\c", "type": "gauge", "value": 0.25},
        {"id": "up;name=x;__meta=y;tag_z=w;rackName=r7", "type": "gauge", "value": 1.0},
        {"id": "up;host=é", "type": "gauge", "value": 0.0},
        // Not valid tag syntax: a plain name.
        {"id": "temp.°c;", "type": "gauge", "value": -4.0},
        {"id": "HeapAlloc;host=web1", "type": "gauge", "value": 6.0},
        // A counter with a gauge's base name: distinct families, as for plain names.
        {"id": "HeapAlloc;host=web1", "type": "counter", "delta": 5},
        {"id": "PollCount;host=web1", "type": "counter", "delta": 7},
    ]);
    assert_eq!(c.post_json("/updates", &batch.to_string()).status, 200);
    assert_eq!(
        c.post("/update/counter/PollCount;host=web2/9", b"").status,
        200
    );
    assert_eq!(
        c.post("/update/gauge/Alloc%3Bhost%3Dweb3/4", b"").status,
        200
    );

    let body = c.get("/metrics").text();
    parse_exposition(&body);
    // The stored metrics come last: gauges, then counters, each by base name (bytewise).
    let expected = r#"# HELP alloc Golectra gauge "Alloc".
# TYPE alloc gauge
alloc{name="Alloc"} 1.0
alloc{dc="eu",host="web2",name="Alloc"} 3.5
alloc{host="web1",name="Alloc"} 2.0
alloc{host="web3",name="Alloc"} 4.0
# HELP heap_alloc_99353c79 Golectra gauge "HeapAlloc".
# TYPE heap_alloc_99353c79 gauge
heap_alloc_99353c79{host="web1",name="HeapAlloc"} 6.0
# HELP cpu_load_778a899c Golectra gauge "cpu load".
# TYPE cpu_load_778a899c gauge
cpu_load_778a899c{host="a \"b\"\\c",name="cpu load"} 0.25
# HELP temp_c_9036f9ba Golectra gauge "temp.°c;".
# TYPE temp_c_9036f9ba gauge
temp_c_9036f9ba{name="temp.°c;"} -4.0
# HELP up Golectra gauge "up".
# TYPE up gauge
up{rack_name="r7",tag___meta="y",tag_name="x",tag_tag_z="w"} 1.0
up{host="é"} 0.0
# HELP heap_alloc_4a4de6ee Golectra counter "HeapAlloc" (a running total that may decrease, hence typed gauge).
# TYPE heap_alloc_4a4de6ee gauge
heap_alloc_4a4de6ee{host="web1",name="HeapAlloc"} 5
# HELP pollcount Golectra counter "PollCount" (a running total that may decrease, hence typed gauge).
# TYPE pollcount gauge
pollcount{host="web1",name="PollCount"} 7
pollcount{host="web2",name="PollCount"} 9
"#;
    assert!(body.ends_with(expected), "{body}");
    assert_eq!(
        body.matches("\n# TYPE alloc gauge\n").count(),
        1,
        "one family"
    );

    let Some(promtool) = find_tool(&["promtool"], "prometheus") else {
        return;
    };
    let (code, out) = promtool_check(&promtool, &body);
    assert_eq!((code, out.as_str()), (0, ""), "promtool on\n{body}");
}

#[test]
fn self_metrics_follow_known_traffic() {
    let s = TestServer::start(Backend::Memory);
    let c = s.client();
    let before = Scrape::get(&c);
    let ingested = |s: &Scrape, t: &str| s.value("golectra_samples_ingested_total", &[("type", t)]);
    let requests = |s: &Scrape, route: &str, code: &str| {
        s.value(
            "golectra_http_requests_total",
            &[("route", route), ("code", code)],
        )
    };
    let text_route = "/update/{type}/{name}/{value}";

    const N: usize = 7;
    for i in 0..N {
        assert_eq!(c.post(&format!("/update/gauge/g{i}/{i}"), b"").status, 200);
    }
    let batch = r#"[{"id":"a","type":"counter","delta":1},{"id":"a","type":"counter","delta":2},{"id":"b","type":"gauge","value":3}]"#;
    assert_eq!(c.post_json("/updates", batch).status, 200);
    assert_eq!(c.post("/update/nope/x/1", b"").status, 400);
    assert_eq!(c.post("/update/gauge/x/NaN", b"").status, 400);
    assert_eq!(c.get("/no/such/page").status, 404);
    assert_eq!(c.get("/updates").status, 405);

    let after = Scrape::get(&c);
    assert_eq!(
        ingested(&after, "gauge") - ingested(&before, "gauge"),
        N as f64 + 1.0
    );
    assert_eq!(
        ingested(&after, "counter") - ingested(&before, "counter"),
        2.0
    );
    assert_eq!(
        requests(&after, text_route, "200") - requests(&before, text_route, "200"),
        N as f64
    );
    assert_eq!(requests(&after, text_route, "400"), 2.0);
    assert_eq!(requests(&after, "/updates", "200"), 1.0);
    assert_eq!(requests(&after, "/updates", "405"), 1.0);
    assert_eq!(requests(&after, "other", "404"), 1.0);
    // The first scrape was counted once it was answered.
    assert_eq!(requests(&after, "/metrics", "200"), 1.0);
    assert_eq!(
        after.value(
            "golectra_http_request_body_bytes_total",
            &[("route", "/updates")]
        ),
        batch.len() as f64
    );
    // N bodies "ok" plus the 400 messages.
    let sent = after.value(
        "golectra_http_response_body_bytes_total",
        &[("route", text_route)],
    );
    assert!(sent > 2.0 * N as f64, "{sent}");
    assert_eq!(
        after.value("golectra_metrics_stored", &[("type", "gauge")]),
        N as f64 + 1.0
    );
    assert_eq!(
        after.value("golectra_metrics_stored", &[("type", "counter")]),
        1.0
    );
    assert!(after.value("golectra_last_write_timestamp_seconds", &[]) > 1.6e9);
    assert_eq!(
        after.value(
            "golectra_build_info",
            &[
                ("version", golectra_common::version::VERSION),
                ("commit", golectra_common::version::COMMIT),
                ("store", "memory"),
            ]
        ),
        1.0
    );
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        assert!(after.value(family, &[]) > 0.0, "{family}");
    }
    // No snapshot yet: the periodic interval is an hour in tests.
    assert_eq!(after.value("golectra_snapshot_writes_total", &[]), 0.0);
    assert!(
        after
            .family("golectra_snapshot_last_success_timestamp_seconds")
            .is_none()
    );
}

/// The packaged unit's `ProcSubset=pid` hides `/proc/stat` (and every other non-process file of
/// `/proc`). The exporter must not need it, and a source it cannot read drops only its own
/// metrics (unit-tested in `process.rs`). Here `/proc/stat` is hidden in a private mount namespace
/// (needs root and `unshare`, as in CI).
#[test]
fn process_metrics_survive_a_hidden_proc_stat() {
    if !require_root("to hide /proc/stat in a private mount namespace")
        || !require_tool("unshare", "util-linux")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hide =
        "mount --bind /dev/null /proc/stat && ! grep -q btime /proc/stat && exec \"$0\" \"$@\"";
    let server = ServerProcess::start_in_private_mounts(
        hide,
        dir.path(),
        &[],
        &[("RUST_LOG", "info,golectra_server::process=debug")],
    );
    let c = server.client();
    let scrape = Scrape::get(&c);
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "process_threads",
        "process_max_fds",
    ] {
        assert!(
            scrape.family(family).is_some(),
            "{family} missing without /proc/stat"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = scrape.value("process_start_time_seconds", &[]);
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "start time {started}, now {now}"
    );
    Scrape::get(&c);
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn snapshot_time_and_duration_after_a_snapshot() {
    let mut s = TestServer::start_with(Backend::Memory, |c| {
        if let golectra_server::config::Storage::Memory { interval, .. } = &mut c.storage {
            // Every write is durable before its 200: one snapshot per write here.
            *interval = Duration::ZERO;
        }
    });
    let c = s.client();
    c.post("/update/gauge/g/1", b"");
    let scrape = Scrape::get(&c);
    assert!(scrape.value("golectra_snapshot_writes_total", &[]) >= 1.0);
    assert_eq!(scrape.value("golectra_snapshot_failures_total", &[]), 0.0);
    let at = scrape.value("golectra_snapshot_last_success_timestamp_seconds", &[]);
    assert!(at > 1.6e9 && at <= scrape.value("golectra_last_write_timestamp_seconds", &[]) + 60.0);
    assert!(scrape.value("golectra_snapshot_last_duration_seconds", &[]) > 0.0);
    assert_eq!(scrape.value("golectra_snapshot_last_metrics", &[]), 1.0);
    s.stop();
}

// ---------------------------------------------------------------------------------------------
// History API

/// Polls the history of a metric until `done` accepts it (the sampler runs on its own clock).
fn history_until(
    c: &Client,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(Duration::from_secs(60), || {
        let r = c.get(path);
        assert_eq!(r.status, 200, "{}", r.text());
        let json = r.json();
        done(&json).then_some(json)
    })
    .unwrap_or_else(|| panic!("history of {path} never reached the expected state"))
}

#[test]
fn history_api_is_bounded_and_exact() {
    let s = TestServer::start_with(Backend::Memory, |c| {
        c.history = HistoryOptions {
            interval: Duration::from_millis(20),
            points: 5,
            ..c.history
        }
    });
    let c = s.client();
    c.post("/update/gauge/temp/1.5", b"");
    c.post("/update/counter/hits/9007199254740993", b"");
    let path = "/api/v1/history/gauge/temp";
    let first = history_until(&c, path, |j| j["points"].as_array().unwrap().len() == 5);
    // The ring is full; after more rounds it has rotated but not grown.
    let t0 = first["points"][0][0].as_i64().unwrap();
    let rotated = history_until(&c, path, |j| j["points"][0][0].as_i64().unwrap() > t0);
    let points = rotated["points"].as_array().unwrap();
    assert_eq!(points.len(), 5);
    assert!(
        points
            .windows(2)
            .all(|w| w[0][0].as_i64() < w[1][0].as_i64())
    );
    assert!(points.iter().all(|p| p[1].as_f64() == Some(1.5)));
    assert_eq!(rotated["id"], "temp");
    assert_eq!(rotated["type"], "gauge");
    assert_eq!(rotated["capacity"], 5);
    assert_eq!(rotated["value"], 1.5);

    c.post("/update/gauge/temp/-2.25", b"");
    let changed = history_until(&c, "/api/v1/history/gauge/temp/", |j| {
        j["points"][4][1].as_f64() == Some(-2.25)
    });
    // The change was first seen at the first point holding the new value (the sampler may have
    // recorded it again since); if that point rotated out already, it was seen earlier still.
    let points = changed["points"].as_array().unwrap();
    let first_new = points
        .iter()
        .position(|p| p[1].as_f64() == Some(-2.25))
        .unwrap();
    let changed_at = changed["changed_at_ms"].as_i64().unwrap();
    if first_new > 0 {
        assert_eq!(
            changed_at,
            points[first_new][0].as_i64().unwrap(),
            "{changed}"
        );
    } else {
        assert!(changed_at <= points[0][0].as_i64().unwrap(), "{changed}");
    }

    // Counters stay exact integers, past 2^53.
    let hits = history_until(&c, "/api/v1/history/counter/hits", |j| {
        !j["points"].as_array().unwrap().is_empty()
    });
    let raw = c.get("/api/v1/history/counter/hits").text();
    assert!(raw.contains(",9007199254740993]"), "{raw}");
    assert_eq!(hits["value"].as_i64(), Some(9007199254740993));

    assert_eq!(c.get("/api/v1/history/gauge/missing").status, 404);
    assert_eq!(c.get("/api/v1/history/counter/temp").status, 404);
    assert_eq!(c.get("/api/v1/history/bogus/temp").status, 400);
    assert_eq!(c.get("/api/v1/history/gauge").status, 404);
    let r = c.post("/api/v1/history/gauge/temp", b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
}

// ---------------------------------------------------------------------------------------------
// Dashboard in a headless browser

/// A fleet's dashboard: hosts, tags and stale rows.
mod fleet;

/// Where screenshots go: `target/artifacts/` (not committed).
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// Runs headless Chromium with a fresh profile; returns what it wrote to stdout.
fn chromium(browser: &Path, extra: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let stdout = profile.path().join("stdout");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.path().join("profile").display()
        ))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let code = wait_exit(&mut child, Duration::from_secs(120));
    assert_eq!(code, 0, "chromium {extra:?} {url}");
    std::fs::read_to_string(stdout).unwrap()
}

/// The `<tr>` elements of a dumped DOM as (data-name, whole row markup).
fn rows(dom: &str) -> Vec<(String, String)> {
    dom.split("<tr data-name=\"")
        .skip(1)
        .map(|chunk| {
            let (name, rest) = chunk.split_once('"').unwrap();
            let row = &rest[..rest.find("</tr>").unwrap()];
            (name.to_owned(), row.to_owned())
        })
        .collect()
}

#[test]
fn dashboard_in_headless_chromium() {
    let Some(browser) = find_tool(&["chromium", "chromium-browser"], "chromium") else {
        return;
    };
    let s = TestServer::start_with(Backend::Memory, |c| {
        c.history = HistoryOptions {
            interval: Duration::from_millis(50),
            points: 30,
            ..c.history
        }
    });
    let c = s.client();
    let metrics: &[(&str, &str, &str, &str)] = &[
        // kind, name, value written, value shown (cpu_load is written again below)
        ("gauge", "Alloc", "1234567.5", "1\u{202f}234\u{202f}567.5"),
        ("gauge", "cpu_load", "0.25", "0.7"),
        ("gauge", "<script>alert(1)</script>", "7", "7"),
        ("counter", "PollCount", "42", "42"),
        ("counter", "requests", "1000000", "1\u{202f}000\u{202f}000"),
    ];
    for (kind, name, value, _) in metrics {
        let name = name
            .replace('<', "%3C")
            .replace('>', "%3E")
            .replace('/', "%2F");
        assert_eq!(
            c.post(&format!("/update/{kind}/{name}/{value}"), b"")
                .status,
            200
        );
    }
    // A few samples so the sparklines have a shape.
    for i in 0..4 {
        c.post(&format!("/update/gauge/cpu_load/0.{}", i * 2 + 1), b"");
        history_until(&c, "/api/v1/history/gauge/cpu_load", |j| {
            let points = j["points"].as_array().unwrap();
            points.last().is_some_and(|p| p[1] == j["value"])
        });
    }

    let dom = chromium(&browser, &["--dump-dom"], &s.url("/"));
    let found = rows(&dom);
    assert_eq!(found.len(), metrics.len(), "{dom}");
    for (kind, name, _, shown) in metrics {
        let escaped = name
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .to_lowercase();
        let (_, row) = found
            .iter()
            .find(|(n, _)| *n == escaped)
            .unwrap_or_else(|| panic!("{kind} {name} has no row in\n{dom}"));
        assert!(
            row.contains(&format!(">{shown}</td>")),
            "{name} shows {shown}: {row}"
        );
        assert!(
            row.contains("<svg") && row.contains("<polyline"),
            "{name} sparkline: {row}"
        );
        assert!(!row.contains(" hidden"), "unfiltered rows are shown: {row}");
    }
    // The hostile name is text, in the table cell and in the sparkline's title.
    assert!(
        dom.contains(">&lt;script&gt;alert(1)&lt;/script&gt;</td>"),
        "{dom}"
    );
    assert!(
        dom.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt;:"),
        "{dom}"
    );
    assert!(!dom.contains("<script>alert"), "{dom}");
    assert_eq!(
        dom.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(
        dom.contains("(3)") && dom.contains("(2)"),
        "counts in the headings"
    );

    // The filter, given in the URL as it is kept there, narrows the rows on load.
    let dom = chromium(&browser, &["--dump-dom"], &s.url("/?q=LOAD"));
    let filtered = rows(&dom);
    assert_eq!(filtered.len(), metrics.len());
    for (name, row) in &filtered {
        assert_eq!(
            !row.contains(" hidden"),
            name.contains("load"),
            "{name}: {row}"
        );
    }
    assert!(
        dom.contains("(1 of 3)") && dom.contains("(0 of 2)"),
        "{dom}"
    );

    // After the automatic refresh (virtual time runs the timer at once) the tables are new
    // and the filter still applies.
    let dom = chromium(
        &browser,
        &["--dump-dom", "--virtual-time-budget=25000"],
        &s.url("/?q=poll"),
    );
    assert!(
        dom.contains("<span id=\"status\">updated "),
        "the refresh ran: {dom}"
    );
    for (name, row) in rows(&dom) {
        assert_eq!(
            !row.contains(" hidden"),
            name.contains("poll"),
            "{name}: {row}"
        );
    }

    let dir = artifacts_dir();
    for (file, size) in [
        ("dashboard-desktop.png", "1280,800"),
        ("dashboard-phone.png", "390,844"),
    ] {
        let path = dir.join(file);
        let _ = std::fs::remove_file(&path);
        chromium(
            &browser,
            &[
                &format!("--window-size={size}"),
                &format!("--screenshot={}", path.display()),
            ],
            &s.url("/"),
        );
        let png = std::fs::read(&path).expect("screenshot written");
        assert!(png.starts_with(b"\x89PNG"), "{file} is a PNG");
        eprintln!("screenshot: {}", path.display());
    }
}

/// A store too large for one page: the server pages and filters, and the page's script keeps
/// the filter and the page across its automatic refresh instead of filtering rows itself.
#[test]
fn paged_dashboard_in_headless_chromium() {
    let Some(browser) = find_tool(&["chromium", "chromium-browser"], "chromium") else {
        return;
    };
    let s = TestServer::start(Backend::Memory);
    let c = s.client();
    let items: Vec<String> = (0..1200)
        .map(|i| match i % 100 {
            3 => format!(r#"{{"id":"load_{i:04}","type":"gauge","value":{i}}}"#),
            _ => format!(r#"{{"id":"m{i:04}","type":"gauge","value":{i}}}"#),
        })
        .collect();
    let r = c.post_json("/updates/", &format!("[{}]", items.join(",")));
    assert_eq!(r.status, 200);

    // Filtered by the server; after the refresh the rows are still the matching ones only.
    let dom = chromium(
        &browser,
        &["--dump-dom", "--virtual-time-budget=25000"],
        &s.url("/?q=LOAD"),
    );
    assert!(
        dom.contains("<span id=\"status\">updated "),
        "the refresh ran: {dom}"
    );
    let found = rows(&dom);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    let expected: Vec<String> = (0..12)
        .map(|k| format!("load_{:04}", k * 100 + 3))
        .collect();
    assert_eq!(names, expected);
    assert!(found.iter().all(|(_, row)| !row.contains(" hidden")));
    assert!(dom.contains("(12 of 1200)"), "{dom}");
    assert!(dom.contains("data-shown=\"12\""), "{dom}");

    // Page 3 stays page 3 across the refresh.
    let dom = chromium(
        &browser,
        &["--dump-dom", "--virtual-time-budget=25000"],
        &s.url("/?page=3"),
    );
    assert!(dom.contains("<span id=\"status\">updated "), "{dom}");
    assert!(dom.contains("<b>rows 1001–1200 of 1200</b>"), "{dom}");
    assert_eq!(rows(&dom).len(), 200);

    let path = artifacts_dir().join("dashboard-paged.png");
    let _ = std::fs::remove_file(&path);
    chromium(
        &browser,
        &[
            "--window-size=1280,800",
            &format!("--screenshot={}", path.display()),
        ],
        &s.url("/?page=2"),
    );
    assert!(
        std::fs::read(&path)
            .expect("screenshot")
            .starts_with(b"\x89PNG")
    );
    eprintln!("screenshot: {}", path.display());
}
