//! The real binary's command line: `--help`, `--version`, precedence, and exit code 2 with a
//! message naming the setting for every bad value.

use crate::harness::{BinaryServer, run_binary};

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
    let server = BinaryServer::start(
        dir.path(),
        &["-r", "-f", "flag.json"],
        &[("FILE_STORAGE_PATH", "env.json")],
    );
    assert_eq!(server.client().get("/value/gauge/from").text(), "1");
    let server2 = BinaryServer::start(dir.path(), &["-r", "-f", "flag.json"], &[]);
    assert_eq!(server2.client().get("/value/gauge/from").text(), "2");
    let log = server.log();
    assert!(log.contains("key not set"), "{log}");
}

#[test]
fn key_is_masked_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(dir.path(), &["-k", "topsecretvalue"], &[]);
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
