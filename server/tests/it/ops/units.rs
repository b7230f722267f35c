//! The systemd units pass `systemd-analyze verify` and `security` and carry the required
//! directives; the example env files list every setting with its default and parse.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use golectra_server::config::{Command as ServerCommand, SETTINGS};
use golectra_testkit::{agent_binary, require_tool};

use super::{read, systemd_dir};
use crate::harness::server_binary;

const DAEMONS: [&str; 2] = ["golectra-server", "golectra-agent"];

/// `key -> every value` of a unit file, in order, ignoring comments and section headers.
fn directives(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        out.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    out
}

/// Copies of both units in a temporary directory with `ExecStart` pointing at the built
/// binaries, so `systemd-analyze` can check that the executables exist. `None` (skipped) when
/// the agent binary is missing outside CI.
fn units_with_built_binaries() -> Option<tempfile::TempDir> {
    let agent = agent_binary()?;
    let dir = tempfile::tempdir().unwrap();
    for (daemon, binary) in [
        ("golectra-server", PathBuf::from(server_binary())),
        ("golectra-agent", agent),
    ] {
        let unit = read(&systemd_dir().join(format!("{daemon}.service")));
        let from = format!("ExecStart=/usr/bin/{daemon}\n");
        assert!(unit.contains(&from), "{daemon}.service lacks {from:?}");
        let rewritten = unit.replace(&from, &format!("ExecStart={}\n", binary.display()));
        std::fs::write(dir.path().join(format!("{daemon}.service")), rewritten).unwrap();
    }
    Some(dir)
}

/// Runs `systemd-analyze <args> <daemon>.service` on both units, with `ExecStart` pointing at
/// the built binaries; `None` when the tool or the binaries are missing (skipped loudly).
fn analyze_units(args: &[&str]) -> Option<Vec<(&'static str, std::process::Output)>> {
    if !require_tool("systemd-analyze", "systemd") {
        return None;
    }
    let dir = units_with_built_binaries()?;
    let results = DAEMONS
        .iter()
        .map(|daemon| {
            let out = Command::new("systemd-analyze")
                .current_dir(dir.path())
                .args(args)
                .arg(format!("{daemon}.service"))
                .output()
                .expect("run systemd-analyze");
            (*daemon, out)
        })
        .collect();
    Some(results)
}

#[test]
fn units_pass_systemd_analyze_verify_without_output() {
    let Some(results) = analyze_units(&["verify", "--man=no"]) else {
        return;
    };
    for (daemon, out) in results {
        // verify only warns on typos and unknown keys, so any output is a failure.
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && printed.is_empty(),
            "{daemon}.service: {} {printed}",
            out.status
        );
    }
}

#[test]
fn units_pass_systemd_analyze_security() {
    let Some(results) = analyze_units(&["security", "--offline=yes", "--threshold=20"]) else {
        return;
    };
    for (daemon, out) in results {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let overall = stdout
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or("no overall score");
        eprintln!("{overall}");
        assert!(
            out.status.success(),
            "{daemon}.service is above the threshold: {overall}\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn units_carry_the_required_settings() {
    let required_both = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2"),
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
        ("Wants", "network-online.target"),
    ];
    for daemon in DAEMONS {
        let text = read(&systemd_dir().join(format!("{daemon}.service")));
        let d = directives(&text);
        for (key, value) in required_both {
            assert!(
                d.get(key).is_some_and(|v| v.iter().any(|x| x == value)),
                "{daemon}.service lacks {key}={value}"
            );
        }
        let short = daemon.trim_start_matches("golectra-");
        assert_eq!(
            d["EnvironmentFile"],
            [format!("-/etc/golectra/{short}.env")],
            "{daemon}"
        );
        assert!(d.contains_key("WatchdogSec") && d.contains_key("LimitNOFILE"));
        assert!(d.contains_key("TimeoutStopSec"));
        assert_eq!(d["ExecStart"], [format!("/usr/bin/{daemon}")]);
    }
    let server = directives(&read(&systemd_dir().join("golectra-server.service")));
    assert_eq!(server["StateDirectory"], ["golectra"]);
    assert_eq!(server["WorkingDirectory"], ["/var/lib/golectra"]);
    // Packaged defaults: the snapshot in the state directory, restored at start, so restarts
    // and upgrades keep the data (the binary's own RESTORE default is the original's false).
    assert_eq!(
        server["Environment"],
        [
            "FILE_STORAGE_PATH=/var/lib/golectra/metrics-db.json",
            "RESTORE=true"
        ]
    );
    let after = &server["After"][0];
    assert!(after.contains("postgresql.service") && after.contains("network-online.target"));
    assert!(
        !server.contains_key("Requires") && !server["Wants"].iter().any(|w| w.contains("postgres")),
        "PostgreSQL is ordering only, never pulled in"
    );
    let agent = directives(&read(&systemd_dir().join("golectra-agent.service")));
    assert!(
        !agent.contains_key("ProcSubset"),
        "the agent reads /proc/stat and /proc/meminfo: no ProcSubset=pid"
    );
    // The agent's state file lives in a state directory of its own: two dynamic users must
    // not share one.
    assert_eq!(agent["StateDirectory"], ["golectra-agent"]);
    assert_ne!(agent["StateDirectory"], server["StateDirectory"]);
    // Packaged defaults: the state file, and the host name as a tag (%H, expanded by systemd;
    // agent.env's TAGS= overrides it, docs/agent.md "Tags and fleets").
    assert_eq!(
        agent["Environment"],
        [
            "STATE_FILE=/var/lib/golectra-agent/state.json",
            "\"TAGS=host=%H\""
        ]
    );
}

/// `KEY -> value` of every `#KEY=value` line of an example env file.
fn env_file_settings(name: &str) -> BTreeMap<String, String> {
    read(&systemd_dir().join(name))
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
        })
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn server_env_lists_every_setting_with_its_default_and_parses() {
    let listed = env_file_settings("server.env");
    let unit = directives(&read(&systemd_dir().join("golectra-server.service")));
    let unit_environment: BTreeMap<String, String> = unit["Environment"]
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(unit_environment["RESTORE"], "true");
    for s in SETTINGS {
        let value = listed
            .get(s.env)
            .unwrap_or_else(|| panic!("server.env lacks {}", s.env));
        // The file shows the defaults under the unit: its Environment= values where it sets
        // one, else the binary's (and an example where the default is computed).
        let under_unit = unit_environment.get(s.env).map(String::as_str);
        match s.env {
            "WORKERS" => assert!(value.parse::<usize>().is_ok(), "{value}"),
            _ => assert_eq!(
                value,
                under_unit.unwrap_or(s.default.shown()),
                "default of {} in server.env",
                s.env
            ),
        }
    }
    assert_eq!(listed.get("RUST_LOG").map(String::as_str), Some("info"));
    // Uncommenting every line gives a configuration the server accepts.
    let env = listed.clone();
    let parsed = golectra_server::config::Config::from_sources(Vec::<String>::new(), |k| {
        env.get(k).cloned()
    });
    assert!(
        matches!(parsed, Ok(ServerCommand::Run(_))),
        "server.env with every line uncommented: {parsed:?}"
    );
}

#[test]
fn agent_env_lists_every_setting_with_its_default() {
    let listed = env_file_settings("agent.env");
    let expected: BTreeMap<String, String> = [
        ("ADDRESS", "http://localhost:8080"),
        ("KEY", ""),
        ("REPORT_INTERVAL", "10"),
        ("POLL_INTERVAL", "2"),
        ("RATE_LIMIT", "1"),
        // Empty in the binary; the packaged unit sets it (a comment in the file says so).
        ("STATE_FILE", ""),
        // Empty in the binary; the packaged unit sets host=%H (the file's comment says so).
        ("TAGS", ""),
        ("CA_FILE", ""),
        ("TLS_CLIENT_CERT_FILE", ""),
        ("TLS_CLIENT_KEY_FILE", ""),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(listed, expected);
}
