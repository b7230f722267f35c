//! systemd readiness protocol: `READY=1` once collecting, `WATCHDOG=1` while working,
//! `STOPPING=1` at shutdown.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use golectra_testkit::Fake;

use crate::harness::*;

#[test]
fn ready_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let fake = Fake::start(|_, _| 200);
    let mut agent = Agent::start_with_env(
        &[&["-a", &fake.url()][..], FAST].concat(),
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut messages = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut terminated = None;
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let watchdogs = messages.iter().filter(|m| *m == "WATCHDOG=1").count();
        if terminated.is_none() && watchdogs >= 2 {
            terminated = Some(agent.terminate());
        }
        if messages.iter().any(|m| m.starts_with("STOPPING=1")) {
            break;
        }
    }
    let (code, log) = terminated.expect("two watchdog pings");
    assert_eq!(code, 0, "{log}");
    assert!(messages[0].starts_with("READY=1\n"), "{messages:?}");
    assert!(
        messages.last().unwrap().starts_with("STOPPING=1"),
        "{messages:?}"
    );
}
