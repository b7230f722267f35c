//! What only the agent's suite needs on top of the test kit (`golectra-testkit`): the agent
//! binary as a [`Daemon`] that reports its polls, the server's snapshot as the agent's tests read
//! it, and the gauges this machine must show.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use golectra_testkit::{Daemon, ServerProcess, eventually};

pub use golectra_common::metric::RUNTIME_GAUGES;

/// Short intervals that keep the suite fast.
pub const FAST: &[&str] = &["-p", "100ms", "-r", "300ms"];

/// The agent binary this package built.
pub fn agent_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_golectra-agent"))
}

/// The real `golectra-agent`, started in a temporary directory of its own.
pub struct Agent {
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

impl Agent {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let daemon = Daemon::spawn(agent_binary(), dir.path(), args, env);
        Self { daemon, _dir: dir }
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) {
        self.daemon.wait_for_log(needle, limit);
    }

    /// SIGTERM; returns the exit code and the whole log once the process is gone.
    pub fn terminate(&mut self) -> (i32, String) {
        let code = self.daemon.terminate();
        (code, self.log())
    }

    /// Waits for the first complete log line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        self.daemon.wait_for_line(needle, limit)
    }

    /// SIGKILL: no final report, no state written.
    pub fn kill9(&mut self) -> String {
        self.daemon.kill();
        self.log()
    }

    /// SIGTERM and the number of polls from the final log line, asserting a clean exit.
    pub fn stop_and_count_polls(&mut self) -> i64 {
        let (code, log) = self.terminate();
        assert_eq!(code, 0, "agent log:\n{log}");
        polls_in(&log).unwrap_or_else(|| panic!("no final line in the agent log:\n{log}"))
    }
}

/// Parses `stopped after N polls` from an agent log.
pub fn polls_in(log: &str) -> Option<i64> {
    let rest = log.split("stopped after ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// The text after `stopped after N polls; ` in an agent log.
pub fn outcome_in(log: &str) -> Option<&str> {
    let line = log.lines().find(|l| l.contains("stopped after "))?;
    Some(line.split_once(" polls; ")?.1)
}

/// The numbers in front of each of `words` in `text`: `numbers_before("3 polls pending, 4
/// polls in doubt", &["polls pending", "polls in doubt"])` is `[3, 4]`.
pub fn numbers_before(text: &str, words: &[&str]) -> Vec<i64> {
    words
        .iter()
        .map(|word| {
            let before = text
                .split_once(&format!(" {word}"))
                .unwrap_or_else(|| panic!("no {word:?} in {text:?}"))
                .0;
            let number = before.rsplit([' ', ',', ':']).next().unwrap_or_default();
            number
                .parse()
                .unwrap_or_else(|_| panic!("no number before {word:?} in {text:?}"))
        })
        .collect()
}

/// The server's `GET /api/v1/snapshot`.
pub fn snapshot(server: &ServerProcess) -> Snapshot {
    let r = server.client().get("/api/v1/snapshot");
    assert_eq!(r.status, 200, "{}", r.text());
    Snapshot(r.json())
}

/// SIGTERM (the server writes its final snapshot) and wait for exit 0.
pub fn stop(server: ServerProcess) {
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "server log:\n{log}");
}

/// The server's `/api/v1/snapshot`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot(pub serde_json::Value);

impl Snapshot {
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.0["gauges"][name].as_f64()
    }

    pub fn counter(&self, name: &str) -> Option<i64> {
        self.0["counters"][name].as_i64()
    }

    pub fn gauge_names(&self) -> Vec<String> {
        self.0["gauges"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Number of logical CPUs as the kernel lists them in `/proc/stat` (what sysinfo reports).
pub fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/stat")
        .expect("/proc/stat")
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count()
}

/// Every gauge name the agent reports on this machine.
pub fn expected_gauges() -> Vec<String> {
    let mut names: Vec<String> = RUNTIME_GAUGES.iter().map(|s| s.to_string()).collect();
    names.push("RandomValue".into());
    names.push("TotalMemory".into());
    names.push("FreeMemory".into());
    names.extend((1..=cpu_count()).map(|i| format!("CPUutilization{i}")));
    names.sort();
    names
}

/// Waits until the agent's log holds `needle` at least `n` times.
pub fn wait_for_log_count(agent: &Agent, needle: &str, n: usize, limit: Duration) {
    eventually(limit, || {
        (agent.log().matches(needle).count() >= n).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "fewer than {n} {needle:?} in the agent log:\n{}",
            agent.log()
        )
    });
}
