//! The environment of the processes a test starts: nothing the developer's shell (or the CI
//! runner) has set may change what a daemon does.

use std::ffi::OsStr;
use std::process::Command;

/// The agent's settings (`SETTINGS` in `agent/src/config.rs`). The agent is a binary-only
/// crate, so its table cannot be imported; its unit test
/// `config::tests::the_test_kit_scrubs_every_setting` fails when the table gains a variable
/// this list lacks.
pub const AGENT_SETTINGS: &[&str] = &[
    "ADDRESS",
    "KEY",
    "REPORT_INTERVAL",
    "POLL_INTERVAL",
    "RATE_LIMIT",
    "STATE_FILE",
    "TAGS",
    "CA_FILE",
    "TLS_CLIENT_CERT_FILE",
    "TLS_CLIENT_KEY_FILE",
];

/// Read by both daemons outside their settings tables: the systemd protocol (readiness,
/// watchdog, journald detection) and the log filter.
pub const SYSTEMD_AND_LOG: &[&str] = &[
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "RUST_LOG",
];

/// Proxy variables: an HTTP client of a daemon (the agent's sender, the server's audit URL
/// sink) must talk to the test's listener directly.
pub const PROXIES: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Where rustls-native-certs looks for the system trust store instead of the distribution's
/// bundle: a daemon with an `https://` peer and no CA file verifies against what these name, so
/// a developer's shell must not choose it; a test sets them to make a test CA "the system".
pub const TRUST_STORE: &[&str] = &["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Every variable removed from the environment of a process a test starts: the server's
/// settings (from its table), the agent's, [`SYSTEMD_AND_LOG`], [`PROXIES`] and
/// [`TRUST_STORE`], each once.
pub fn scrubbed() -> Vec<&'static str> {
    let server = golectra_server::config::SETTINGS.iter().map(|s| s.env);
    let mut all: Vec<&'static str> = Vec::new();
    for var in server
        .chain(AGENT_SETTINGS.iter().copied())
        .chain(SYSTEMD_AND_LOG.iter().copied())
        .chain(PROXIES.iter().copied())
        .chain(TRUST_STORE.iter().copied())
    {
        if !all.contains(&var) {
            all.push(var);
        }
    }
    all
}

/// A command for `program` that inherits none of the [`scrubbed`] variables; everything else
/// (`PATH`, `HOME`, `CI`…) is inherited. Every process the suites start goes through here.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in scrubbed() {
        cmd.env_remove(var);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_setting_and_the_systemd_variables_are_scrubbed() {
        let all = scrubbed();
        for s in golectra_server::config::SETTINGS {
            assert!(all.contains(&s.env), "{}", s.env);
        }
        for var in [
            "WORKERS",
            "MAX_BODY_SIZE",
            "IDLE_TIMEOUT",
            "TRUSTED_PROXIES",
            "REQUIRE_SIGNATURE",
            "KEY",
            "POLL_INTERVAL",
            "NOTIFY_SOCKET",
            "RUST_LOG",
            "HTTP_PROXY",
            "SSL_CERT_FILE",
        ] {
            assert!(all.contains(&var), "{var}");
        }
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "each variable once: {all:?}");
    }

    #[test]
    fn a_command_removes_them_and_inherits_the_rest() {
        let cmd = command("true");
        let removed: Vec<&OsStr> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(key, _)| key)
            .collect();
        assert_eq!(removed.len(), scrubbed().len());
        assert!(removed.contains(&OsStr::new("MAX_BODY_SIZE")));
        assert!(!removed.contains(&OsStr::new("PATH")));
    }
}
