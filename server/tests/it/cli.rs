//! The real binary's command line: `--help`, `--version`, precedence, and exit code 2 with a
//! message naming the setting for every bad value.

use golectra_testkit::{ServerProcess, eventually};

use crate::harness::run_binary;

#[test]
fn help_lists_every_setting() {
    let (code, out, _) = run_binary(&["--help"], &[]);
    assert_eq!(code, 0);
    for s in golectra_server::config::SETTINGS {
        assert!(out.contains(s.env), "--help lacks {}", s.env);
        assert!(
            out.contains(&format!("--{}", s.long)),
            "--help lacks --{}",
            s.long
        );
    }
    let (code, out, _) = run_binary(&["-h"], &[]);
    assert_eq!((code, out.contains("ADDRESS")), (0, true));
}

#[test]
fn version_names_commit_and_date() {
    let (code, out, _) = run_binary(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(out.starts_with("golectra-server 0."), "{out}");
    assert!(out.contains("commit ") && out.contains("built 20"), "{out}");
}

#[test]
fn bad_values_exit_2_naming_the_setting() {
    for (args, env, setting) in [
        (&["-i", "often"][..], &[][..], "STORE_INTERVAL"),
        (&["-r=perhaps"], &[], "RESTORE"),
        (&["-a", "no-port"], &[], "ADDRESS"),
        (&[], &[("ADDRESS", "1.2.3.4:99999")], "ADDRESS"),
        (&["-w", "none"], &[], "WORKERS"),
        (&["--audit-url=gopher://x"], &[], "AUDIT_URL"),
        (&["--max-inflated-size", "0"], &[], "MAX_INFLATED_SIZE"),
        (&["--no-such-flag"], &[], "--no-such-flag"),
        (&["stray"], &[], "stray"),
    ] {
        let (code, _, err) = run_binary(args, env);
        assert_eq!(code, 2, "{args:?} {env:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(setting), "{args:?}: {err}");
    }
}

#[test]
fn env_beats_flags_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    // The flag asks for a file the environment overrides; the restored value proves which won.
    std::fs::write(
        dir.path().join("env.json"),
        r#"[{"id":"from","type":"gauge","value":1}]"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("flag.json"),
        r#"[{"id":"from","type":"gauge","value":2}]"#,
    )
    .unwrap();
    let server = ServerProcess::start(
        dir.path(),
        &["-r", "-f", "flag.json"],
        &[("FILE_STORAGE_PATH", "env.json")],
    );
    assert_eq!(server.client().get("/value/gauge/from").text(), "1");
    let server2 = ServerProcess::start(dir.path(), &["-r", "-f", "flag.json"], &[]);
    assert_eq!(server2.client().get("/value/gauge/from").text(), "2");
    let log = server.log();
    assert!(log.contains("key not set"), "{log}");
}

#[test]
fn key_is_masked_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-k", "topsecretvalue"], &[]);
    let log = server.log();
    assert!(log.contains("key set (hidden)"), "{log}");
    assert!(!log.contains("topsecretvalue"), "{log}");
}

#[test]
fn unwritable_snapshot_directory_is_a_clear_start_error() {
    let (code, _, err) = run_binary(
        &["-a", "127.0.0.1:0", "-f", "/nonexistent-dir/db.json"],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent-dir"), "{err}");
}

#[test]
fn traffic_summary_lines_follow_traffic() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--summary-interval", "200ms"], &[]);
    let c = server.client();
    assert_eq!(c.post("/update/gauge/g/1", b"").status, 200);
    let batch = r#"[{"id":"a","type":"counter","delta":1},{"id":"b","type":"gauge","value":2}]"#;
    assert_eq!(c.post_json("/updates", batch).status, 200);
    assert_eq!(c.get("/nope").status, 404);
    // A tick may fall between the requests: add up every summary line.
    let summaries = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("traffic in the last"))
            .map(str::to_owned)
            .collect()
    };
    let number_before = |line: &str, word: &str| -> u64 {
        let head = &line[..line
            .find(word)
            .unwrap_or_else(|| panic!("no {word:?} in {line}"))];
        head.split(|c: char| !c.is_ascii_digit())
            .rev()
            .find(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    let total =
        |lines: &[String], word: &str| lines.iter().map(|l| number_before(l, word)).sum::<u64>();
    let lines = eventually(Duration::from_secs(20), || {
        let lines = summaries(&server.log());
        (total(&lines, " requests") == 3).then_some(lines)
    })
    .unwrap_or_else(|| panic!("summaries never added up to 3 requests:\n{}", server.log()));
    assert_eq!(total(&lines, " 4xx"), 1, "{lines:?}");
    assert_eq!(total(&lines, " 5xx"), 0, "{lines:?}");
    assert_eq!(total(&lines, " samples ingested"), 3, "{lines:?}");
    let last = lines.last().unwrap();
    assert!(
        last.contains(" INFO ") && last.contains("2 gauges and 1 counters stored"),
        "{last}"
    );
    // Idle intervals write nothing. A deliberate gap, not a wait: 700 ms of no traffic are more
    // than three summary intervals that must stay silent.
    std::thread::sleep(Duration::from_millis(700));
    let (code, log) = server.terminate();
    assert_eq!(code, 0);
    assert_eq!(summaries(&log).len(), lines.len(), "{log}");
}
