//! The command line of the real binary: help, version, bad configuration.

use crate::harness::agent_binary;

/// Runs the agent to completion with a scrubbed environment plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    golectra_testkit::run(agent_binary(), args, env)
}

#[test]
fn help_lists_every_setting() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for needle in [
        "ADDRESS",
        "http://localhost:8080",
        "KEY",
        "REPORT_INTERVAL",
        "POLL_INTERVAL",
        "RATE_LIMIT",
        "STATE_FILE",
        "--state-file",
        "--report-interval",
        "CA_FILE",
        "--ca-file",
        "TLS_CLIENT_CERT_FILE",
        "--tls-client-key-file",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}

#[test]
fn version_names_the_program() {
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("golectra-agent ") && out.contains("commit"),
        "{out}"
    );
}

#[test]
fn bad_configuration_exits_2_with_one_line() {
    for (args, env, setting) in [
        (&["-r", "0"][..], &[][..], "REPORT_INTERVAL"),
        (&[], &[("POLL_INTERVAL", "never")], "POLL_INTERVAL"),
        (&["-l", "0"], &[], "RATE_LIMIT"),
        (&["-a", "https://example.org:0"], &[], "ADDRESS"),
        (&["-a", "gopher://example.org:70"], &[], "ADDRESS"),
        (&["--frequency", "3"], &[], "--frequency"),
        // Absurd intervals: ~6e18 s overflowed the scheduler, 1ns spun a core.
        (&["-p", "6000000000000000000"], &[], "POLL_INTERVAL"),
        (
            &[],
            &[("REPORT_INTERVAL", "6000000000000000000")],
            "REPORT_INTERVAL",
        ),
        (&["-p", "1ns"], &[], "POLL_INTERVAL"),
        (&["-r", "1ns"], &[], "REPORT_INTERVAL"),
    ] {
        let (code, _, err) = run(args, env);
        assert_eq!(code, 2, "{args:?} {env:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(setting), "{args:?}: {err}");
        let numeric = args
            .iter()
            .chain(env.iter().map(|(_, v)| v))
            .any(|v| v.ends_with('0') || v.ends_with("ns"));
        if setting.ends_with("_INTERVAL") && numeric {
            assert!(
                err.contains("between 10ms and 1day"),
                "names the bounds: {err}"
            );
        }
    }
}
