//! sd_notify with the real binary over path and abstract sockets: READY only once the port
//! accepts, STATUS following the store, WATCHDOG pings, STOPPING; no watchdog thread without a
//! notify socket; the watchdog's health probe.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use golectra_common::notify::{Listener, Message};
use golectra_server::health::{self, Health};
use golectra_testkit::{Daemon, send_signal};

use super::get;
use crate::harness::{Backend, TestServer, server_binary};

fn free_listener_name(kind: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "golectra-it-{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The address in a `STATUS=serving on http://ADDR, …` line.
fn served_addr(message: &Message) -> SocketAddr {
    let status = message.value("STATUS").expect("READY carries a STATUS");
    let rest = status
        .strip_prefix("serving on http://")
        .unwrap_or_else(|| panic!("unexpected status {status:?}"));
    rest.split(',').next().unwrap().parse().expect("an address")
}

/// Runs the server against a notify socket and checks the whole conversation.
fn notify_lifecycle(listener: &Listener, dir: &Path) {
    let mut server = Daemon::spawn(
        server_binary(),
        dir,
        &["-a", "127.0.0.1:0", "-f", "db.json"],
        &[
            ("NOTIFY_SOCKET", listener.notify_socket()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let (ready, before) = listener
        .wait_for("READY=1", Duration::from_secs(30))
        .unwrap_or_else(|got| panic!("no READY=1; got {got:?}; log:\n{}", server.log()));
    assert!(
        before.is_empty(),
        "nothing (no watchdog ping) before READY: {before:?}"
    );
    // READY means the port accepts connections right now: no retry, no wait.
    let addr = served_addr(&ready);
    let answer = get(addr, "/ping");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        ready
            .value("STATUS")
            .unwrap()
            .ends_with("memory store, 0 metrics"),
        "{ready:?}"
    );

    // WATCHDOG_USEC=1s: a ping every 0.5 s, and the STATUS line follows the store.
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /update/gauge/g/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Stop listening as soon as three pings and the new count arrived; the generous deadline
    // only matters on a loaded machine.
    let started = Instant::now();
    let limit = Duration::from_secs(8);
    let mut pings = 0;
    let mut saw_count = false;
    while (pings < 3 || !saw_count) && started.elapsed() < limit {
        if let Some(m) = listener.recv(limit.saturating_sub(started.elapsed())) {
            pings += usize::from(m.has("WATCHDOG=1"));
            saw_count |= m.value("STATUS").is_some_and(|s| s.ends_with("1 metric"));
            assert!(!m.has("STOPPING=1"), "STOPPING before SIGTERM: {m:?}");
        }
    }
    assert!(
        pings >= 3,
        "only {pings} WATCHDOG=1 in {limit:?} at a 0.5 s interval"
    );
    assert!(saw_count, "STATUS never showed the stored metric");

    assert_eq!(send_term(&server), 0);
    let (stopping, _) = listener
        .wait_for("STOPPING=1", Duration::from_secs(10))
        .unwrap_or_else(|got| panic!("no STOPPING=1 after SIGTERM; got {got:?}"));
    assert!(stopping.at > started);
    let code = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", server.log());
}

fn send_term(daemon: &Daemon) -> i32 {
    send_signal(daemon.pid(), libc::SIGTERM)
}

#[test]
fn sd_notify_over_a_path_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let listener = Listener::bind(socket.to_str().unwrap()).unwrap();
    notify_lifecycle(&listener, dir.path());
}

#[test]
fn sd_notify_over_an_abstract_socket() {
    let dir = tempfile::tempdir().unwrap();
    let listener = Listener::bind(&format!("@{}", free_listener_name("notify"))).unwrap();
    notify_lifecycle(&listener, dir.path());
}

#[test]
fn without_notify_socket_the_watchdog_thread_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Daemon::spawn(
        server_binary(),
        dir.path(),
        &["-a", "127.0.0.1:0", "-f", "db.json"],
        &[("WATCHDOG_USEC", "200000"), ("RUST_LOG", "debug")],
    );
    server.wait_for_log("listening on http://", Duration::from_secs(30));
    // A deliberate gap, not a wait: for 800 ms (four watchdog intervals) nothing may probe.
    std::thread::sleep(Duration::from_millis(800));
    // The watchdog's probe would show up as a debug access line for /ping.
    assert_eq!(server.terminate(), 0);
    let log = server.log();
    assert!(!log.contains("/ping"), "{log}");
}

#[test]
fn the_probe_fails_when_the_server_does_not_answer() {
    let mut server = TestServer::start_with(Backend::Memory, |c| c.workers = 1);
    assert_eq!(
        health::probe(server.addr, Duration::from_secs(5)),
        Ok(Health::Serving)
    );
    // A slow upload no longer reaches the workers (bodies are read on the connection thread),
    // so the pool keeps answering while a client trickles a large body.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    write!(
        slow,
        "POST /update HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{{"
    )
    .unwrap();
    // A deliberate gap, not a wait: the slow upload is under way for a while before the probe.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        health::probe(server.addr, Duration::from_secs(5)),
        Ok(Health::Serving)
    );
    drop(slow);
    server.stop();
    // What a stuck pool looks like from outside: the connection is accepted, nothing answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let probed = health::probe(addr, Duration::from_millis(500));
    assert!(
        probed.as_ref().is_err_and(|e| e.contains("no answer")),
        "{probed:?}"
    );
    drop(silent);
    let refused = health::probe(addr, Duration::from_millis(500));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("cannot connect")),
        "{refused:?}"
    );
}
