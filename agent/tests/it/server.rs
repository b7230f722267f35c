//! The agent against the real `golectra-server`: every metric arrives and moves, `PollCount` is
//! exact across an outage and at shutdown, signatures (strict mode included).

use std::time::Duration;

use golectra_testkit::{ServerProcess, eventually, free_port};

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(20);

/// The gauges that must change while the agent works.
const MOVING: [&str; 9] = [
    "Alloc",
    "Frees",
    "HeapAlloc",
    "HeapIdle",
    "HeapInuse",
    "HeapObjects",
    "Mallocs",
    "TotalAlloc",
    "RandomValue",
];

#[test]
fn every_metric_arrives_and_the_allocator_gauges_move() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[], &[]);
    let mut agent = Agent::start(&[&["-a", &server.url()][..], FAST].concat());
    let expected = expected_gauges();
    let first = eventually(WAIT, || {
        let snap = snapshot(&server);
        let mut names = snap.gauge_names();
        names.sort();
        (names == expected && snap.counter("PollCount").is_some()).then_some(snap)
    })
    .unwrap_or_else(|| {
        panic!(
            "expected gauges {expected:?}, server has {:?}",
            snapshot(&server).gauge_names()
        )
    });
    // A few reports later every moving metric has a new value.
    let second = eventually(WAIT, || {
        let snap = snapshot(&server);
        let moved = MOVING
            .iter()
            .all(|name| first.gauge(name) != snap.gauge(name));
        (moved && snap.counter("PollCount") > first.counter("PollCount")).then_some(snap)
    })
    .unwrap_or_else(|| snapshot(&server));
    for name in MOVING {
        assert_ne!(first.gauge(name), second.gauge(name), "{name} did not move");
    }
    assert!(second.counter("PollCount") > first.counter("PollCount"));
    for name in ["Mallocs", "Frees", "TotalAlloc"] {
        assert!(second.gauge(name) > first.gauge(name), "{name} must grow");
    }
    for (name, zero) in [
        ("NumGC", 0.0),
        ("PauseTotalNs", 0.0),
        ("GCCPUFraction", 0.0),
    ] {
        assert_eq!(second.gauge(name), Some(zero), "{name}");
    }
    for i in 1..=cpu_count() {
        let usage = second.gauge(&format!("CPUutilization{i}")).unwrap();
        assert!(
            (0.0..=100.0).contains(&usage),
            "CPUutilization{i} = {usage}"
        );
    }
    let total = second.gauge("TotalMemory").unwrap();
    let free = second.gauge("FreeMemory").unwrap();
    assert!(total > 0.0 && free > 0.0 && free <= total);
    agent.stop_and_count_polls();
}

#[test]
fn sigterm_makes_a_final_report() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[], &[]);
    // The report interval is far away: only the final report can deliver anything.
    let mut agent = Agent::start(&["-a", &server.url(), "-p", "100ms", "-r", "1h"]);
    agent.wait_for_log("collecting", WAIT);
    // A deliberate gap, not a wait: for 500 ms (five polls) nothing may reach the server.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(snapshot(&server).counter("PollCount"), None);
    let polls = agent.stop_and_count_polls();
    assert!(polls >= 2, "{polls}");
    let snap = snapshot(&server);
    assert_eq!(snap.counter("PollCount"), Some(polls));
    assert!(snap.gauge("Alloc").is_some());
}

#[test]
fn poll_count_is_exact_across_a_server_outage() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-f", "db.json"], &[]);
    let listen = server.addr.to_string();
    // Two senders: two reports in doubt at once, both re-sent with their keys later.
    let mut agent = Agent::start(&[&["-a", &server.url(), "-l", "2"][..], FAST].concat());
    eventually(WAIT, || snapshot(&server).counter("PollCount")).expect("first reports");
    // The final snapshot keeps what was delivered so far.
    stop(server);
    // Without a server the reports of both senders go in doubt (after their fast retries)
    // while new deltas pile up pending.
    wait_for_log_count(&agent, "still in doubt after", 2, WAIT);
    let before_restart = std::fs::read_to_string(dir.path().join("db.json")).unwrap();
    let restarted = ServerProcess::start_on(dir.path(), &listen, &["-f", "db.json", "-r"], &[]);
    let restored = snapshot(&restarted).counter("PollCount").expect("restored");
    assert!(before_restart.contains("PollCount"));
    // The reports in doubt and the pending deltas go out with regular reports, before any
    // shutdown.
    eventually(WAIT, || {
        (snapshot(&restarted).counter("PollCount")? > restored + 20).then_some(())
    })
    .expect("deltas of the outage delivered after the restart");
    assert!(agent.is_running());
    let polls = agent.stop_and_count_polls();
    assert_eq!(snapshot(&restarted).counter("PollCount"), Some(polls));
}

#[test]
fn agent_started_before_the_server_delivers_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut agent = Agent::start(&[&["-a", &listen][..], FAST].concat());
    agent.wait_for_log("collecting", WAIT);
    // A deliberate gap, not a wait: the agent reports into the void for 500 ms first.
    std::thread::sleep(Duration::from_millis(500));
    let server = ServerProcess::start_on(dir.path(), &listen, &[], &[]);
    eventually(WAIT, || snapshot(&server).counter("PollCount")).expect("reports arrive");
    let polls = agent.stop_and_count_polls();
    assert_eq!(snapshot(&server).counter("PollCount"), Some(polls));
}

#[test]
fn signed_reports_are_accepted_by_a_server_with_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-k", "s3cret"], &[]);
    let mut agent = Agent::start_with_env(
        &[&["-a", &server.url()][..], FAST].concat(),
        &[("KEY", "s3cret")],
    );
    eventually(WAIT, || snapshot(&server).counter("PollCount")).expect("reports arrive");
    let polls = agent.stop_and_count_polls();
    assert_eq!(snapshot(&server).counter("PollCount"), Some(polls));
    assert!(!agent_log_has_warnings(&agent));
}

/// A server in strict mode (`REQUIRE_SIGNATURE`) accepts only writes with an `Idempotency-Key`
/// and a `Golectra-Signature` (docs/signing.md): the agent sends both, so every poll arrives,
/// exactly once, also through the final report.
#[test]
fn a_strict_server_gets_exact_totals() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        dir.path(),
        &["-k", "s3cret"],
        &[("REQUIRE_SIGNATURE", "true")],
    );
    let mut agent = Agent::start_with_env(
        &[&["-a", &server.url()][..], FAST].concat(),
        &[("KEY", "s3cret")],
    );
    eventually(WAIT, || {
        (snapshot(&server).counter("PollCount")? >= 5).then_some(())
    })
    .expect("reports arrive");
    let polls = agent.stop_and_count_polls();
    assert_eq!(snapshot(&server).counter("PollCount"), Some(polls));
    assert!(
        outcome_in(&agent.log()).is_some_and(|o| o.starts_with("final report delivered")),
        "{}",
        agent.log()
    );
    assert!(!agent_log_has_warnings(&agent), "{}", agent.log());
}

/// The original trims `KEY`; a key read from a file with a trailing newline or space must sign
/// exactly as the same key without it, on both daemons.
#[test]
fn keys_with_surrounding_whitespace_sign_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-k", " s3cret\n"], &[]);
    let mut agent = Agent::start_with_env(
        &[&["-a", &server.url()][..], FAST].concat(),
        &[("KEY", "s3cret \n")],
    );
    eventually(WAIT, || snapshot(&server).counter("PollCount")).expect("reports arrive");
    let polls = agent.stop_and_count_polls();
    assert_eq!(snapshot(&server).counter("PollCount"), Some(polls));
    assert!(!agent_log_has_warnings(&agent), "{}", agent.log());
}

#[test]
fn a_key_mismatch_is_logged_and_the_agent_delivers_once_the_key_matches() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = ServerProcess::start(dir.path(), &["-k", "other"], &[]);
    let listen = wrong.addr.to_string();
    let mut agent = Agent::start(&[&["-a", &wrong.url(), "-k", "s3cret"][..], FAST].concat());
    agent.wait_for_log("refused and dropped", WAIT);
    assert!(agent.log().contains("400"), "{}", agent.log());
    assert!(agent.is_running());
    assert_eq!(snapshot(&wrong).counter("PollCount"), None);
    stop(wrong);
    let right = ServerProcess::start_on(dir.path(), &listen, &["-k", "s3cret"], &[]);
    eventually(WAIT, || snapshot(&right).counter("PollCount")).expect("reports arrive");
    assert!(agent.is_running());
    agent.stop_and_count_polls();
}

fn agent_log_has_warnings(agent: &Agent) -> bool {
    agent
        .log()
        .lines()
        .any(|l| l.contains(" WARN ") || l.contains(" ERROR "))
}
