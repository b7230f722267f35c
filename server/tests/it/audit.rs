//! The audit trail (docs/audit.md): exact events in the file and at a real HTTP receiver (also
//! over https, with a CA file and a client certificate, through the test kit's TLS front), dead
//! receivers that must not slow ingestion, a receiver whose certificate does not verify,
//! drop-oldest queues, trusted proxies, rotation.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use golectra_server::audit::{
    Audit, Event, QueueLimits, REQUEST_TIMEOUT, Sink, SinkError, SinkStats,
};
use golectra_server::client_addr::parse_list;

use golectra_server::config::{Command, Config};
use golectra_testkit::tls::TestCa;
use golectra_testkit::{Fake, ServerProcess, TlsFront, eventually};

use crate::harness::{Backend, TestServer, run_binary};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "torn last line: {text:?}"
            );
            text.lines().map(str::to_owned).collect()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// Waits (generously) until `path` holds at least `n` lines.
fn wait_for_lines(path: &Path, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(60), || {
        let lines = read_lines(path);
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} has {} lines, expected {n}",
            path.display(),
            read_lines(path).len()
        )
    })
}

/// Checks that `lines` are exactly the events `expected` (metric names, client IP), with
/// timestamps between `t0` and `t1`.
fn assert_events(lines: &[String], expected: &[(&[&str], &str)], t0: u64, t1: u64) {
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, (names, ip)) in lines.iter().zip(expected) {
        let parsed: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let ts = parsed["ts"].as_u64().expect("integer ts");
        assert!((t0..=t1).contains(&ts), "ts {ts} outside {t0}..={t1}");
        let exact = format!(
            r#"{{"ts":{ts},"metrics":{},"ip_address":"{ip}"}}"#,
            serde_json::to_string(names).unwrap()
        );
        assert_eq!(line, &exact);
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn sink_stats(server: &TestServer, name: &str) -> SinkStats {
    server
        .server
        .as_ref()
        .unwrap()
        .audit()
        .stats()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sink {name}"))
}

const BATCH: &str = r#"[
    {"id":"Zeta","type":"gauge","value":1},
    {"id":"PollCount","type":"counter","delta":1},
    {"id":"Alloc","type":"gauge","value":2},
    {"id":"PollCount","type":"counter","delta":2},
    {"id":"Alloc","type":"counter","delta":3},
    {"id":"Zeta","type":"gauge","value":4}
]"#;

/// Every kind of write, and requests that must not produce an event.
fn write_each_kind(s: &TestServer) {
    let c = s.client();
    assert_eq!(c.post("/update/gauge/Alloc/1.5", b"").status, 200);
    assert_eq!(
        c.post_json(
            "/update/",
            r#"{"id":"PollCount","type":"counter","delta":7}"#
        )
        .status,
        200
    );
    assert_eq!(c.post_json("/updates/", BATCH).status, 200);
    // Rejected writes, empty batches and reads change nothing and are not audited.
    for (path, body, status) in [
        ("/update/foo/x/1", "", 400),
        ("/update/gauge/x/abc", "", 400),
        ("/update/gauge/", "", 404),
        ("/update", "{not json", 400),
        ("/update", r#"{"id":"g","type":"gauge"}"#, 400),
        (
            "/updates",
            r#"[{"id":"ok","type":"gauge","value":1},{"id":"bad","type":"counter"}]"#,
            400,
        ),
        ("/updates", "[]", 200),
        ("/value", r#"{"id":"Alloc","type":"gauge"}"#, 200),
    ] {
        assert_eq!(c.post_json(path, body).status, status, "{path} {body}");
    }
    for path in ["/value/gauge/Alloc", "/", "/api/v1/snapshot", "/ping"] {
        assert_eq!(c.get(path).status, 200, "{path}");
    }
    assert_eq!(c.post("/update/counter/PollCount/1", b"").status, 200);
}

const EXPECTED: &[(&[&str], &str)] = &[
    (&["Alloc"], "127.0.0.1"),
    (&["PollCount"], "127.0.0.1"),
    (&["Alloc", "PollCount", "Zeta"], "127.0.0.1"),
    (&["PollCount"], "127.0.0.1"),
];

#[test]
fn file_holds_one_exact_line_per_successful_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.ndjson");
    let t0 = now();
    let mut s = TestServer::start_with(Backend::Memory, |c| c.audit_file = Some(file.clone()));
    assert_eq!(mode(&file), 0o600, "created with mode 0600");
    write_each_kind(&s);
    s.stop();
    assert_events(&read_lines(&file), EXPECTED, t0, now());
}

#[test]
fn the_file_is_appended_to_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.ndjson");
    std::fs::write(&file, "earlier line\n").unwrap();
    let mut s = TestServer::start_with(Backend::Memory, |c| c.audit_file = Some(file.clone()));
    assert_eq!(s.client().post("/update/gauge/g/1", b"").status, 200);
    s.stop();
    let lines = read_lines(&file);
    assert_eq!(lines[0], "earlier line");
    assert_eq!(lines.len(), 2);
}

/// One request as the test receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: Option<String>,
    body: String,
}

/// A real HTTP audit receiver on 127.0.0.1 (the test kit's fake server) that answers every
/// POST with `status`.
struct Receiver(Fake);

impl Receiver {
    fn start(status: u16) -> Self {
        Self(Fake::start(move |_, _| status))
    }

    fn url(&self) -> String {
        format!("{}/audit", self.0.url())
    }

    fn received(&self) -> Vec<Received> {
        self.0
            .seen()
            .into_iter()
            .map(|seen| Received {
                content_type: seen.header("Content-Type").map(str::to_owned),
                method: seen.method,
                path: seen.path,
                body: String::from_utf8(seen.body).expect("a UTF-8 body"),
            })
            .collect()
    }
}

#[test]
fn http_receiver_gets_the_same_events_as_the_file() {
    let receiver = Receiver::start(200);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.ndjson");
    let t0 = now();
    let mut s = TestServer::start_with(Backend::Memory, |c| {
        c.audit_file = Some(file.clone());
        c.audit_url = Some(receiver.url());
    });
    write_each_kind(&s);
    s.stop();
    let lines = read_lines(&file);
    assert_events(&lines, EXPECTED, t0, now());
    let received = receiver.received();
    for r in &received {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/audit"));
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }
    let bodies: Vec<String> = received.into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, lines, "the receiver got exactly the file's events");
}

#[test]
fn non_2xx_answers_count_as_failed() {
    let receiver = Receiver::start(500);
    let mut s = TestServer::start_with(Backend::Memory, |c| c.audit_url = Some(receiver.url()));
    for i in 0..3 {
        assert_eq!(
            s.client()
                .post(&format!("/update/gauge/g{i}/1"), b"")
                .status,
            200
        );
    }
    eventually(Duration::from_secs(60), || {
        (sink_stats(&s, "url").failed >= 3).then_some(())
    })
    .unwrap_or_else(|| panic!("{:?}", sink_stats(&s, "url")));
    let stats = sink_stats(&s, "url");
    assert_eq!((stats.delivered, stats.failed, stats.dropped), (0, 3, 0));
    assert_eq!(receiver.received().len(), 3);
    s.stop();
}

/// 1 000 writes with a URL sink that cannot deliver: every write is answered without waiting
/// for the sink, and the file sink, which has its own queue and thread, gets every event.
fn dead_url_sink_does_not_slow_ingestion(url: String) -> SinkStats {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.ndjson");
    let s = TestServer::start_with(Backend::Memory, |c| {
        c.audit_file = Some(file.clone());
        c.audit_url = Some(url);
    });
    let c = s.client();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..1000 {
        let t = Instant::now();
        assert_eq!(c.post(&format!("/update/counter/c{i}/1"), b"").status, 200);
        slowest = slowest.max(t.elapsed());
    }
    // A write that waited for the dead sink would take at least the sink's request timeout.
    assert!(
        slowest < REQUEST_TIMEOUT,
        "slowest write took {slowest:?}; total {:?}",
        started.elapsed()
    );
    let lines = wait_for_lines(&file, 1000);
    let expected: Vec<String> = (0..1000).map(|i| format!("c{i}")).collect();
    let names: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["metrics"].as_array().unwrap().len(), 1);
            v["metrics"][0].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(names, expected);
    let file_stats = sink_stats(&s, "file");
    assert_eq!(
        (file_stats.delivered, file_stats.dropped, file_stats.failed),
        (1000, 0, 0)
    );
    let url_stats = sink_stats(&s, "url");
    assert_eq!(url_stats.delivered, 0);
    // `s` shuts down here; a sink that never answers is abandoned after the deadline.
    url_stats
}

#[test]
fn url_sink_that_never_answers() {
    // Bound but never accepted: connections complete in the kernel's backlog (or hang once it
    // is full), and no request is ever answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let stats = dead_url_sink_does_not_slow_ingestion(format!(
        "http://{}/audit",
        silent.local_addr().unwrap()
    ));
    assert_eq!(stats.dropped, 0, "nothing dropped with the default queue");
}

#[test]
fn url_sink_that_refuses_connections() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let stats = dead_url_sink_does_not_slow_ingestion(format!("http://127.0.0.1:{port}/audit"));
    assert_eq!(stats.dropped, 0);
}

/// A sink that reports every event it starts on, then waits until the test opens the gate.
struct GatedSink {
    started: crossbeam_channel::Sender<String>,
    gate: crossbeam_channel::Receiver<()>,
}

impl Sink for GatedSink {
    fn name(&self) -> &str {
        "gated"
    }

    fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
        self.started.send(event.json().to_owned()).unwrap();
        // A closed gate (sender dropped) lets everything through.
        let _ = self.gate.recv();
        Ok(())
    }
}

fn event(n: u64) -> Event {
    Event::new(n, &[format!("m{n}")], "127.0.0.1".parse().unwrap())
}

fn gated_audit(
    capacity: usize,
) -> (
    Audit,
    crossbeam_channel::Receiver<String>,
    crossbeam_channel::Sender<()>,
) {
    let (started_tx, started) = crossbeam_channel::unbounded();
    let (gate, gate_rx) = crossbeam_channel::unbounded();
    let sink = GatedSink {
        started: started_tx,
        gate: gate_rx,
    };
    let limits = QueueLimits {
        events: capacity,
        bytes: 1 << 20,
    };
    let audit = Audit::with_sinks(vec![Box::new(sink)], limits, Vec::new()).unwrap();
    (audit, started, gate)
}

#[test]
fn a_full_queue_drops_the_oldest_events_and_counts_them() {
    let (audit, started, gate) = gated_audit(2);
    audit.publish(&event(0));
    let first = started.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(first, event(0).json(), "the worker holds event 0");
    for n in 1..=5 {
        audit.publish(&event(n));
    }
    let stats = audit.stats();
    assert_eq!(
        (stats[0].delivered, stats[0].dropped, stats[0].queued),
        (0, 3, 2),
        "events 1–3 were evicted, 4 and 5 wait"
    );
    drop(gate);
    audit.close();
    let delivered: Vec<String> = started.try_iter().collect();
    assert_eq!(delivered, [event(4).json(), event(5).json()]);
    let stats = audit.stats();
    assert_eq!(
        (stats[0].name.as_str(), stats[0].delivered, stats[0].dropped),
        ("gated", 3, 3)
    );
    assert_eq!((stats[0].failed, stats[0].queued), (0, 0));
}

#[test]
fn shutdown_gives_up_after_its_deadline() {
    let (audit, started, gate) = gated_audit(100);
    for n in 0..10 {
        audit.publish(&event(n));
    }
    started.recv_timeout(Duration::from_secs(60)).unwrap();
    let closing = Instant::now();
    audit.close_within(Duration::from_millis(200));
    // Generous: what matters is that close returns although the sink never finishes.
    assert!(closing.elapsed() < Duration::from_secs(30));
    let stats = audit.stats();
    assert_eq!((stats[0].dropped, stats[0].queued), (9, 0));
    drop(gate);
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    let headers = [
        ("X-Real-IP", "203.0.113.7"),
        ("X-Forwarded-For", "198.51.100.9, 127.0.0.1"),
    ];
    // (trusted proxies, client of the X-Real-IP request, client of the X-Forwarded-For one).
    // X-Forwarded-For is read from the right: trusted hops are skipped and the first untrusted
    // one is the client, so what a client prepends ("garbage") cannot spoof its address.
    for (trusted, expected, forwarded) in [
        ("", "127.0.0.1", "127.0.0.1"),
        ("10.0.0.0/8, 192.168.0.0/16", "127.0.0.1", "127.0.0.1"),
        ("127.0.0.0/8", "203.0.113.7", "198.51.100.9"),
        ("::1, 127.0.0.1", "203.0.113.7", "127.0.0.2"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.ndjson");
        let t0 = now();
        let mut s = TestServer::start_with(Backend::Memory, |c| {
            c.audit_file = Some(file.clone());
            c.trusted_proxies = parse_list(trusted).unwrap();
        });
        let c = s.client();
        assert_eq!(
            c.request("POST", "/update/gauge/g/1", &headers, b"").status,
            200
        );
        let forwarded_only = [("X-Forwarded-For", "garbage, 198.51.100.9:4711, 127.0.0.2")];
        assert_eq!(
            c.request("POST", "/update/gauge/h/1", &forwarded_only, b"")
                .status,
            200
        );
        s.stop();
        assert_events(
            &read_lines(&file),
            &[(&["g"], expected), (&["h"], forwarded)],
            t0,
            now(),
        );
    }
}

#[test]
fn a_rotated_file_is_followed_by_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.ndjson");
    let rotated = dir.path().join("audit.ndjson.1");
    let t0 = now();
    let mut s = TestServer::start_with(Backend::Memory, |c| c.audit_file = Some(file.clone()));
    let c = s.client();
    assert_eq!(c.post("/update/gauge/before/1", b"").status, 200);
    wait_for_lines(&file, 1);
    std::fs::rename(&file, &rotated).unwrap();
    assert_eq!(c.post("/update/gauge/after/1", b"").status, 200);
    assert_eq!(c.post("/update/counter/later/1", b"").status, 200);
    s.stop();
    let t1 = now();
    assert_events(&read_lines(&rotated), &[(&["before"], "127.0.0.1")], t0, t1);
    assert_events(
        &read_lines(&file),
        &[(&["after"], "127.0.0.1"), (&["later"], "127.0.0.1")],
        t0,
        t1,
    );
    assert_eq!(mode(&file), 0o600);
}

#[test]
fn the_binary_refuses_an_unusable_audit_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("metrics-db.json");
    let snapshot = snapshot.to_str().unwrap();
    let missing = dir.path().join("no-such-dir/audit.ndjson");
    let (code, _, stderr) = run_binary(
        &["-a", "127.0.0.1:0", "-f", snapshot],
        &[("AUDIT_FILE", missing.to_str().unwrap())],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot open the audit file"), "{stderr}");

    let https = "https://audit.example.com/hook";
    for (args, setting) in [
        (
            &["--audit-url", "ftp://audit.example.com/"][..],
            "AUDIT_URL (--audit-url)",
        ),
        (&["--trusted-proxies", "10.0.0.0/40"][..], "TRUSTED_PROXIES"),
        (
            &[
                "--audit-url",
                https,
                "--audit-ca-file",
                "/nonexistent/ca.pem",
            ][..],
            "invalid AUDIT_CA_FILE (--audit-ca-file) value \"/nonexistent/ca.pem\": cannot open",
        ),
        (
            &["--audit-url", https, "--audit-tls-client-key-file", "k.pem"][..],
            "AUDIT_TLS_CLIENT_KEY_FILE (--audit-tls-client-key-file) is set but AUDIT_TLS_CLIENT_CERT_FILE (--audit-tls-client-cert-file) is not",
        ),
        (
            &[
                "--audit-url",
                "http://127.0.0.1:1/",
                "--audit-ca-file",
                "ca.pem",
            ][..],
            "AUDIT_CA_FILE (--audit-ca-file) is set but AUDIT_URL (--audit-url) is not an https:// address",
        ),
    ] {
        let (code, _, stderr) = run_binary(args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(setting), "{stderr}");
    }
}

#[test]
fn audit_counters_are_exported_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.ndjson");
    let s = TestServer::start_with(Backend::Memory, |c| c.audit_file = Some(file.clone()));
    let c = s.client();
    for i in 0..3 {
        assert_eq!(c.post(&format!("/update/counter/c{i}/1"), b"").status, 200);
    }
    wait_for_lines(&file, 3);
    // The counter moves right after the line is written: wait for it, boundedly.
    let delivered = r#"golectra_audit_events_delivered_total{sink="file"} 3"#;
    let metrics = eventually(Duration::from_secs(10), || {
        let metrics = c.get("/metrics").text();
        metrics.contains(delivered).then_some(metrics)
    })
    .unwrap_or_else(|| c.get("/metrics").text());
    for line in [
        r#"golectra_audit_events_delivered_total{sink="file"} 3"#,
        r#"golectra_audit_events_dropped_total{sink="file"} 0"#,
        r#"golectra_audit_events_failed_total{sink="file"} 0"#,
        r#"golectra_audit_events_queued{sink="file"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing from:\n{metrics}"
        );
    }
    // Without sinks the families are absent rather than empty.
    let plain = TestServer::start(Backend::Memory);
    assert!(
        !plain
            .client()
            .get("/metrics")
            .text()
            .contains("golectra_audit_events")
    );
}

/// The audit URL and its TLS settings as the server reads them from these flags.
fn audit_url_config(args: &[&str]) -> Config {
    match Config::from_sources(args.iter().copied(), |_| None) {
        Ok(Command::Run(config)) => *config,
        other => panic!("{args:?}: {other:?}"),
    }
}

/// The fake receiver behind a TLS front with a certificate of `ca` (requiring client
/// certificates of `client_ca` when given).
fn https_receiver(ca: &TestCa, client_ca: Option<&TestCa>) -> (Receiver, TlsFront) {
    let receiver = Receiver::start(200);
    let front = TlsFront::start(
        &ca.server(&["localhost", "127.0.0.1"]),
        client_ca,
        receiver.0.addr,
    );
    (receiver, front)
}

/// Every kind of write to a server whose URL sink posts to the https receiver with `args`; the
/// receiver must get exactly the file's events.
fn events_reach_the_https_receiver(args: &[&str], receiver: &Receiver, front: &TlsFront) {
    let url = format!("{}/audit", front.localhost_url());
    let tls = audit_url_config(&[&["--audit-url", &url][..], args].concat());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.ndjson");
    let t0 = now();
    let mut s = TestServer::start_with(Backend::Memory, |c| {
        c.audit_file = Some(file.clone());
        c.audit_url = tls.audit_url.clone();
        c.audit_tls = tls.audit_tls.clone();
    });
    write_each_kind(&s);
    s.stop();
    let lines = read_lines(&file);
    assert_events(&lines, EXPECTED, t0, now());
    let received = receiver.received();
    for r in &received {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/audit"));
    }
    let bodies: Vec<String> = received.into_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies, lines,
        "the https receiver got exactly the file's events"
    );
}

#[test]
fn an_https_receiver_gets_the_events_with_audit_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("audit receiver CA");
    let ca_file = ca.write_cert(dir.path(), "ca");
    let (receiver, front) = https_receiver(&ca, None);
    events_reach_the_https_receiver(
        &["--audit-ca-file", ca_file.to_str().unwrap()],
        &receiver,
        &front,
    );
    let handshakes = front.handshakes();
    assert!(
        !handshakes.is_empty() && handshakes.iter().all(|h| h.ok() && !h.client_cert),
        "{handshakes:?}"
    );
}

#[test]
fn an_https_receiver_requiring_client_certificates_gets_the_events_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("audit mTLS CA");
    let ca_file = ca.write_cert(dir.path(), "ca");
    let client = ca.client("golectra-server").write(dir.path(), "client");
    let (receiver, front) = https_receiver(&ca, Some(&ca));
    events_reach_the_https_receiver(
        &[
            "--audit-ca-file",
            ca_file.to_str().unwrap(),
            "--audit-tls-client-cert-file",
            client.cert.to_str().unwrap(),
            "--audit-tls-client-key-file",
            client.key.to_str().unwrap(),
        ],
        &receiver,
        &front,
    );
    let handshakes = front.handshakes();
    assert!(
        !handshakes.is_empty() && handshakes.iter().all(|h| h.ok() && h.client_cert),
        "{handshakes:?}"
    );
}

#[test]
fn a_receiver_whose_certificate_does_not_verify_gets_nothing_and_the_failure_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, other) = (TestCa::new("trusted CA"), TestCa::new("other CA"));
    let ca_file = trusted.write_cert(dir.path(), "ca");
    let (receiver, front) = https_receiver(&other, None);
    let url = format!("{}/audit", front.localhost_url());
    let server = ServerProcess::start(
        dir.path(),
        &[],
        &[
            ("AUDIT_URL", &url),
            ("AUDIT_CA_FILE", ca_file.to_str().unwrap()),
        ],
    );
    let c = server.client();
    for i in 0..3 {
        assert_eq!(c.post(&format!("/update/counter/c{i}/1"), b"").status, 200);
    }
    let failed = r#"golectra_audit_events_failed_total{sink="url"} 3"#;
    eventually(Duration::from_secs(30), || {
        c.get("/metrics").text().contains(failed).then_some(())
    })
    .unwrap_or_else(|| panic!("{failed} missing from:\n{}", c.get("/metrics").text()));
    let metrics = c.get("/metrics").text();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"golectra_audit_events_delivered_total{sink="url"} 0"#),
        "{metrics}"
    );
    assert!(receiver.received().is_empty());
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    let warning = format!(
        "audit sink url: cannot deliver an event: POST {url}: TLS handshake failed: certificate verify failed: UnknownIssuer (the peer's certificate is not accepted by the CAs in AUDIT_CA_FILE (--audit-ca-file) {})",
        ca_file.display()
    );
    assert!(log.contains(&warning), "{warning:?} not in:\n{log}");
}
