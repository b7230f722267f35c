//! Logging: the journald format (`<N>target: message`) when `JOURNAL_STREAM` names our stderr,
//! the plain format with timestamps otherwise, and configuration errors printed before the
//! logger exists still carrying the priority under journald.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use golectra_testkit::{Daemon, JOURNAL_STREAM_OF_STDERR, agent_binary};

use super::{get, has_timestamp};
use crate::harness::server_binary;

/// Runs the server once through start, one request and SIGTERM; returns its stderr.
fn logged_run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all_args = vec!["-a", "127.0.0.1:0", "-f", "db.json"];
    all_args.extend_from_slice(args);
    let mut server = Daemon::spawn(server_binary(), dir, &all_args, env);
    let line = server.wait_for_line("listening on http://", Duration::from_secs(30));
    let addr: SocketAddr = line
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an address")
        .parse()
        .unwrap();
    assert!(get(addr, "/ping").starts_with("HTTP/1.1 200"));
    assert_eq!(server.terminate(), 0, "{}", server.log());
    server.log()
}

fn assert_journald(log: &str) {
    assert!(!log.trim().is_empty());
    for line in log.lines() {
        let prio = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .and_then(|(n, _)| n.parse::<u8>().ok());
        assert!(
            prio.is_some_and(|p| p <= 7),
            "no <N> prefix: {line:?}\n{log}"
        );
        // `<6>golectra_server: message`: the target follows the prefix, no timestamp before it
        // (the message itself may quote one, as the version line's build date does).
        let after = &line[line.find('>').unwrap() + 1..];
        let target = after.split(": ").next().unwrap_or("");
        assert!(
            !target.is_empty()
                && target
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b':'),
            "not `<N>target: message` (a timestamp under journald?): {line:?}"
        );
        assert!(!has_timestamp(&after[..after.len().min(24)]), "{line:?}");
    }
}

#[test]
fn journald_format_when_journal_stream_is_our_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let journald = [
        ("JOURNAL_STREAM", JOURNAL_STREAM_OF_STDERR),
        ("RUST_LOG", "debug"),
    ];
    // A corrupt snapshot at start: an error line; the /ping request: a debug access line.
    std::fs::write(dir.path().join("db.json"), "[{not json").unwrap();
    let log = logged_run(dir.path(), &["-r"], &journald);
    assert_journald(&log);
    for prio in ["<3>", "<6>", "<7>"] {
        assert!(
            log.lines().any(|l| l.starts_with(prio)),
            "no {prio} line:\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.starts_with("<3>") && l.contains("corrupt")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("<6>") && l.contains("listening on")),
        "{log}"
    );
    // The snapshot written at shutdown exists and RESTORE is off: a warning.
    let log = logged_run(dir.path(), &[], &journald);
    assert_journald(&log);
    assert!(
        log.lines()
            .any(|l| l.starts_with("<4>") && l.contains("RESTORE is false")),
        "{log}"
    );
}

/// A configuration error is printed before the logger exists. Under journald it must still
/// carry the `<3>` prefix, or `journalctl -p err -u golectra-server` cannot show why the unit
/// failed; on a terminal it stays `program: message`.
#[test]
fn configuration_errors_carry_the_priority_under_journald() {
    let dir = tempfile::tempdir().unwrap();
    let mut programs = vec![(
        "golectra-server",
        PathBuf::from(server_binary()),
        "STORE_INTERVAL",
    )];
    if let Some(agent) = agent_binary() {
        programs.push(("golectra-agent", agent, "REPORT_INTERVAL"));
    }
    for (name, program, setting) in programs {
        for (journal, prefix) in [(JOURNAL_STREAM_OF_STDERR, "<3>"), ("1:1", "")] {
            let env = [("JOURNAL_STREAM", journal), (setting, "bogus")];
            let mut daemon = Daemon::spawn(&program, dir.path(), &[], &env);
            assert_eq!(daemon.wait_exit(Duration::from_secs(10)), 2);
            let log = daemon.log();
            assert_eq!(log.lines().count(), 1, "{log}");
            let wanted = format!("{prefix}{name}: invalid {setting}");
            assert!(log.starts_with(&wanted), "{journal}: {log:?}");
        }
    }
}

#[test]
fn plain_format_with_timestamps_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    // Unset, and set to a stream that is not our stderr (a journald stdout, say).
    for env in [&[][..], &[("JOURNAL_STREAM", "1:1")][..]] {
        let log = logged_run(dir.path(), &[], env);
        assert!(log.contains("listening on"), "{log}");
        for line in log.lines() {
            assert!(
                !line.starts_with('<'),
                "journald prefix without journald: {line:?}"
            );
            // `2026-11-25T01:34:17Z INFO  golectra_server: …`
            let (ts, rest) = line.split_once(' ').expect("timestamp and message");
            assert!(
                has_timestamp(ts) && ts.ends_with('Z') && ts.len() == 20,
                "{line:?}"
            );
            let level = rest.split_whitespace().next().unwrap();
            assert!(
                ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level),
                "{line:?}"
            );
        }
    }
}
