//! The README's Quick start, `scripts/run-local.sh`, run the way a terminal runs it: under a
//! pseudo-terminal (`script` from bsdutils) with the script as the foreground process group, and
//! Ctrl-C as the tty driver delivers it, `\x03` on the terminal, i.e. SIGINT to the whole
//! foreground process group.
//!
//! - Ctrl-C stops the agent first (its final report lands) and then the server (final snapshot),
//!   each with exactly one SIGTERM; the snapshot holds every poll of the run; exit status 0.
//!   Several rounds per test, because the bug this guards against was a race.
//! - The binaries come from `$CARGO_TARGET_DIR/release` (absolute or relative to the caller).
//! - A missing binary, a port already taken, an agent that exits at once and a server that never
//!   answers `/ping` each end the script with a message and a non-zero status, leaving no
//!   process behind.
//!
//! Every process a test starts carries a marker variable in its environment; a guard kills
//! whatever still carries it when the test ends, passed or failed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use golectra_testkit::{
    agent_binary, command, eventually, free_port, require_tool, send_signal, workspace_root,
};

/// Marker variable: its value names one session, so its processes can be found in `/proc`.
const MARKER: &str = "GOLECTRA_QUICKSTART_SESSION";

/// Rounds of the Ctrl-C scenario: the original script failed every one of them.
const ROUNDS: usize = 5;

/// The dashboard line the script prints once the server answers.
const BANNER: &str = "dashboard: http://";

/// The script's own knobs (both daemons' settings are scrubbed by [`command`]): none may leak
/// in from the environment of the test run.
const SCRUBBED: &[&str] = &[
    "CARGO_TARGET_DIR",
    "GOLECTRA_BIN_DIR",
    "GOLECTRA_START_TIMEOUT",
];

fn script_path() -> PathBuf {
    workspace_root().join("scripts/run-local.sh")
}

/// Whether the tools this suite needs are there (the pty comes from `script`, bsdutils).
fn prerequisites() -> Option<PathBuf> {
    if !require_tool("script", "bsdutils") {
        return None;
    }
    agent_binary()
}

/// `dir/name` as the file at `from`: a hard link when possible, else a copy.
fn place_binary(from: &Path, dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).expect("create the binary directory");
    let to = dir.join(name);
    if std::fs::hard_link(from, &to).is_err() {
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("create the directory");
    std::fs::write(path, text).expect("write the script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The processes whose environment holds `MARKER=<marker>`, with their executables.
fn marked_processes(marker: &str) -> Vec<(i32, PathBuf)> {
    let needle = format!("{MARKER}={marker}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
        {
            let exe = std::fs::read_link(entry.path().join("exe")).unwrap_or_default();
            out.push((pid, exe));
        }
    }
    out
}

/// One line per process (`/proc/<pid>/stat`: state, process group, session, terminal's
/// foreground group…), for failure messages.
fn describe(processes: &[(i32, PathBuf)]) -> String {
    processes
        .iter()
        .map(|(pid, exe)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            format!("{pid} {}: {}", exe.display(), stat.trim())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `run-local.sh` running under a pseudo-terminal. Dropping it kills every process of the
/// session that is still there.
struct Session {
    child: Child,
    /// Input of the terminal (`script` copies it to the pty master): `\x03` is Ctrl-C.
    terminal: Option<ChildStdin>,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    marker: String,
    status: Option<i32>,
}

impl Session {
    /// Starts the script in `cwd` with `env` on top of a scrubbed environment.
    fn start(cwd: &Path, env: &[(&str, String)]) -> Self {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let marker = format!(
            "{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let mut cmd = command("script");
        for var in SCRUBBED {
            cmd.env_remove(var);
        }
        // `exec`: the script itself leads the session and the foreground process group, as a
        // job started from an interactive shell leads its group. `env --default-signal`: an
        // interactive shell starts its jobs with SIGINT at its default, whatever this test
        // inherited (`cargo test &` in a script ignores it, and bash cannot trap a signal that
        // was ignored when it started).
        let command = format!(
            "exec env --default-signal=INT {}",
            shell_quote(&script_path().to_string_lossy())
        );
        cmd.args(["-qfec", &command, "/dev/null"])
            .current_dir(cwd)
            .env("SHELL", "/bin/sh")
            .env(MARKER, &marker)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn script(1)");
        let terminal = child.stdin.take();
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped"));
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped"));
        for mut stream in [stdout, stderr] {
            let sink = output.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }));
        }
        Self {
            child,
            terminal,
            output,
            readers,
            marker,
            status: None,
        }
    }

    /// Everything written to the terminal so far, without the carriage returns of the tty.
    fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).replace('\r', "")
    }

    fn exited(&mut self) -> Option<i32> {
        if self.status.is_none()
            && let Some(status) = self.child.try_wait().expect("wait for script(1)")
        {
            use std::os::unix::process::ExitStatusExt;
            self.status = Some(
                status
                    .code()
                    .unwrap_or_else(|| -status.signal().unwrap_or(0)),
            );
        }
        self.status
    }

    /// Waits until the terminal shows `needle`.
    fn wait_for_output(&mut self, needle: &str, limit: Duration) -> Result<(), String> {
        eventually(limit, || {
            if self.output().contains(needle) {
                return Some(Ok(()));
            }
            let status = self.exited()?;
            self.drain_readers();
            if self.output().contains(needle) {
                return Some(Ok(()));
            }
            Some(Err(format!(
                "the script exited ({status}) before printing {needle:?}"
            )))
        })
        .unwrap_or_else(|| Err(format!("no {needle:?} on the terminal within {limit:?}")))
    }

    /// Ctrl-C on the terminal: the tty driver sends SIGINT to the foreground process group.
    fn ctrl_c(&mut self) -> Result<(), String> {
        let terminal = self.terminal.as_mut().ok_or("the terminal is closed")?;
        terminal
            .write_all(b"\x03")
            .and_then(|()| terminal.flush())
            .map_err(|e| format!("type Ctrl-C: {e}"))
    }

    /// Waits for the script's exit status; afterwards the whole output is in.
    fn wait_exit(&mut self, limit: Duration) -> Result<i32, String> {
        match eventually(limit, || self.exited()) {
            Some(status) => {
                self.drain_readers();
                Ok(status)
            }
            None => Err(format!(
                "the script did not exit within {limit:?}; its processes:\n{}",
                describe(&self.leftovers())
            )),
        }
    }

    /// Lets the reader threads copy the last bytes (the pipes close when `script` exits).
    fn drain_readers(&mut self) {
        eventually(Duration::from_secs(5), || {
            self.readers.iter().all(|r| r.is_finished()).then_some(())
        });
    }

    /// Processes of this session still alive (none may be left once the script has exited).
    fn leftovers(&self) -> Vec<(i32, PathBuf)> {
        marked_processes(&self.marker)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for (pid, _) in self.leftovers() {
            send_signal(pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` on 127.0.0.1:`port`: status and body, or `None` while nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// Waits until the server's PollCount is at least `at_least`, i.e. a few reports have landed.
fn wait_for_poll_count(port: u16, at_least: i64, limit: Duration) -> Result<(), String> {
    let mut last = None;
    eventually(limit, || {
        let (200, body) = http_get(port, "/value/counter/PollCount")? else {
            return None;
        };
        let value = body.trim().parse::<i64>().ok();
        last = value;
        value.filter(|v| *v >= at_least).map(|_| ())
    })
    .ok_or_else(|| {
        format!("PollCount did not reach {at_least} within {limit:?} (last seen: {last:?})")
    })
}

/// The log lines of one daemon (`golectra_agent` or `golectra_server` and their modules).
fn lines_of<'a>(output: &'a str, target: &str) -> Vec<&'a str> {
    output
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .nth(2)
                .is_some_and(|t| t == format!("{target}:") || t.starts_with(&format!("{target}::")))
        })
        .collect()
}

/// The PollCount counter in a snapshot file.
fn snapshot_poll_count(path: &Path) -> Result<i64, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("no snapshot at {}: {e}", path.display()))?;
    let metrics: Vec<serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|e| format!("snapshot is not JSON: {e}"))?;
    metrics
        .iter()
        .find(|m| m["id"] == "PollCount" && m["type"] == "counter")
        .and_then(|m| m["delta"].as_i64())
        .ok_or_else(|| "no PollCount counter in the snapshot".to_owned())
}

/// What one round of "start, let a few reports land, Ctrl-C" showed.
#[derive(Debug, Default)]
struct Round {
    exit_zero: bool,
    final_report: bool,
    server_stopped: bool,
    snapshot_complete: bool,
    problems: Vec<String>,
}

/// Checks the stop sequence in the terminal output; returns the agent's poll total.
fn check_stop(output: &str, round: &mut Round) -> Option<i64> {
    let agent = lines_of(output, "golectra_agent");
    let server = lines_of(output, "golectra_server");
    for (name, lines) in [("agent", &agent), ("server", &server)] {
        let received: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains("received SIG"))
            .collect();
        if received.len() != 1 || !received[0].contains("received SIGTERM") {
            round.problems.push(format!(
                "the {name} should log exactly one SIGTERM (and no SIGINT), got {received:?}"
            ));
        }
    }
    let mut polls = None;
    match agent.last().and_then(|l| l.split("stopped after ").nth(1)) {
        Some(rest) => {
            round.final_report = rest.contains("polls; final report delivered");
            if !round.final_report {
                round
                    .problems
                    .push(format!("the agent's final report did not land: {rest:?}"));
            }
            polls = rest.split(' ').next().and_then(|n| n.parse::<i64>().ok());
        }
        None => round.problems.push(format!(
            "the agent's last line is not `stopped after N polls; …`: {:?}",
            agent.last()
        )),
    }
    round.server_stopped = server.iter().any(|l| l.contains("final snapshot:"))
        && server
            .last()
            .is_some_and(|l| l.ends_with("golectra_server: stopped"));
    if !round.server_stopped {
        round.problems.push(format!(
            "the server did not write its final snapshot and log `stopped`; its last line: {:?}",
            server.last()
        ));
    }
    // Order: the agent is done before the server is signalled.
    let agent_done = output.find("golectra_agent::pipeline: stopped after");
    let server_signalled = output.find("golectra_server: received SIG");
    if let (Some(a), Some(s)) = (agent_done, server_signalled)
        && a > s
    {
        round
            .problems
            .push("the server was signalled before the agent had stopped".to_owned());
    }
    polls
}

/// One round of the Quick start with Ctrl-C.
fn ctrl_c_round(bin_dir: &Path) -> Round {
    let mut round = Round::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let snapshot = dir.path().join("metrics-db.json");
    let mut session = Session::start(
        dir.path(),
        &[
            ("ADDRESS", format!("127.0.0.1:{port}")),
            ("FILE_STORAGE_PATH", snapshot.to_string_lossy().into_owned()),
            ("POLL_INTERVAL", "50ms".to_owned()),
            ("REPORT_INTERVAL", "200ms".to_owned()),
            ("GOLECTRA_BIN_DIR", bin_dir.to_string_lossy().into_owned()),
        ],
    );
    let started = session
        .wait_for_output(BANNER, Duration::from_secs(60))
        .and_then(|()| wait_for_poll_count(port, 12, Duration::from_secs(30)));
    if let Err(e) = started {
        round.problems.push(e);
        round
            .problems
            .push(format!("terminal:\n{}", session.output()));
        return round;
    }
    if let Err(e) = session.ctrl_c() {
        round.problems.push(e);
        return round;
    }
    match session.wait_exit(Duration::from_secs(40)) {
        Ok(status) => {
            round.exit_zero = status == 0;
            if status != 0 {
                round.problems.push(format!("exit status {status}, not 0"));
            }
        }
        Err(e) => round.problems.push(e),
    }
    let output = session.output();
    let polls = check_stop(&output, &mut round);
    match (polls, snapshot_poll_count(&snapshot)) {
        (Some(polls), Ok(saved)) => {
            round.snapshot_complete = polls == saved;
            if polls != saved {
                round.problems.push(format!(
                    "the snapshot holds PollCount {saved}, the agent made {polls} polls"
                ));
            }
        }
        (_, Err(e)) => round.problems.push(e),
        (None, Ok(_)) => {}
    }
    let leftovers = session.leftovers();
    if session.status.is_some() && !leftovers.is_empty() {
        round
            .problems
            .push(format!("processes left behind: {leftovers:?}"));
    }
    if !round.problems.is_empty() {
        round.problems.push(format!("terminal:\n{output}"));
    }
    round
}

#[test]
fn ctrl_c_stops_the_agent_then_the_server_each_cleanly() {
    let Some(agent) = prerequisites() else {
        return;
    };
    let bin_dir = agent.parent().expect("a directory").to_owned();
    let rounds: Vec<Round> = (0..ROUNDS).map(|_| ctrl_c_round(&bin_dir)).collect();
    let count = |f: fn(&Round) -> bool| rounds.iter().filter(|r| f(r)).count();
    eprintln!(
        "quick start, {ROUNDS} rounds of Ctrl-C: exit 0 {}/{ROUNDS}, final report delivered \
         {}/{ROUNDS}, server stopped with its final snapshot {}/{ROUNDS}, snapshot PollCount = \
         agent polls {}/{ROUNDS}",
        count(|r| r.exit_zero),
        count(|r| r.final_report),
        count(|r| r.server_stopped),
        count(|r| r.snapshot_complete),
    );
    let failures: Vec<String> = rounds
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.problems.is_empty())
        .map(|(i, r)| format!("round {}:\n{}", i + 1, r.problems.join("\n")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn binaries_come_from_cargo_target_dir() {
    let Some(agent) = prerequisites() else {
        return;
    };
    let server = agent.with_file_name("golectra-server");
    // Absolute, and relative to the directory the script is started from (as cargo reads it).
    for relative in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let release = dir.path().join("target/release");
        place_binary(&server, &release, "golectra-server");
        place_binary(&agent, &release, "golectra-agent");
        let cargo_log = dir.path().join("cargo.log");
        write_executable(
            &dir.path().join("bin/cargo"),
            &format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\n",
                shell_quote(&cargo_log.to_string_lossy())
            ),
        );
        let path = format!(
            "{}:{}",
            dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let target = if relative {
            "target".to_owned()
        } else {
            dir.path().join("target").to_string_lossy().into_owned()
        };
        let port = free_port();
        let mut session = Session::start(
            dir.path(),
            &[
                ("PATH", path),
                ("CARGO_TARGET_DIR", target.clone()),
                ("ADDRESS", format!("127.0.0.1:{port}")),
                (
                    "FILE_STORAGE_PATH",
                    dir.path().join("db.json").to_string_lossy().into_owned(),
                ),
            ],
        );
        let context = |s: &Session| format!("CARGO_TARGET_DIR={target}; terminal:\n{}", s.output());
        if let Err(e) = session.wait_for_output(BANNER, Duration::from_secs(30)) {
            panic!("{e}; {}", context(&session));
        }
        let cargo_calls = std::fs::read_to_string(&cargo_log).unwrap_or_default();
        assert!(
            cargo_calls.starts_with("build --release"),
            "the script should run `cargo build --release`, cargo saw {cargo_calls:?}"
        );
        // The agent is started just before the banner: wait until both daemons run.
        let release = release.canonicalize().expect("canonical release dir");
        let daemons_now = || -> Vec<(i32, PathBuf)> {
            session
                .leftovers()
                .into_iter()
                .filter(|(_, exe)| {
                    exe.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("golectra-"))
                })
                .collect()
        };
        let daemons = eventually(Duration::from_secs(10), || {
            Some(daemons_now()).filter(|d| d.len() >= 2)
        })
        .unwrap_or_else(daemons_now);
        let mut names: Vec<String> = Vec::new();
        for (pid, exe) in daemons {
            assert_eq!(
                exe.parent(),
                Some(release.as_path()),
                "pid {pid} runs {}, not a binary of $CARGO_TARGET_DIR/release; {}",
                exe.display(),
                context(&session)
            );
            names.push(exe.file_name().unwrap().to_string_lossy().into_owned());
        }
        names.sort();
        assert_eq!(
            names,
            ["golectra-agent", "golectra-server"],
            "{}",
            context(&session)
        );
        session.ctrl_c().expect("Ctrl-C");
        let status = session
            .wait_exit(Duration::from_secs(40))
            .unwrap_or_else(|e| panic!("{e}; {}", context(&session)));
        assert_eq!(status, 0, "{}", context(&session));
        assert!(session.leftovers().is_empty(), "{}", context(&session));
    }
}

/// Runs the script to its end; returns its status and terminal output, after checking that no
/// process of it is left.
fn run_to_failure(cwd: &Path, env: &[(&str, String)]) -> (i32, String) {
    let mut session = Session::start(cwd, env);
    let status = session
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}; terminal:\n{}", session.output()));
    let output = session.output();
    let leftovers = session.leftovers();
    assert!(
        leftovers.is_empty(),
        "processes left behind: {leftovers:?}; terminal:\n{output}"
    );
    (status, output)
}

#[test]
fn start_up_failures_are_loud_and_leave_nothing_behind() {
    let Some(agent) = prerequisites() else {
        return;
    };
    let server = agent.with_file_name("golectra-server");
    let bin_dir = agent.parent().expect("a directory").to_string_lossy();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db.json").to_string_lossy().into_owned();

    // A missing binary.
    let half = dir.path().join("half");
    place_binary(&server, &half, "golectra-server");
    let (status, output) = run_to_failure(
        dir.path(),
        &[
            ("GOLECTRA_BIN_DIR", half.to_string_lossy().into_owned()),
            ("ADDRESS", format!("127.0.0.1:{}", free_port())),
            ("FILE_STORAGE_PATH", db.clone()),
        ],
    );
    assert_ne!(status, 0, "missing agent binary: {output}");
    assert!(
        output.contains("golectra-agent is missing") && !output.contains(BANNER),
        "missing agent binary: {output}"
    );

    // The port is taken: the server cannot bind.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let (status, output) = run_to_failure(
        dir.path(),
        &[
            ("GOLECTRA_BIN_DIR", bin_dir.clone().into_owned()),
            ("ADDRESS", format!("127.0.0.1:{port}")),
            ("FILE_STORAGE_PATH", db.clone()),
        ],
    );
    assert_ne!(status, 0, "port taken: {output}");
    assert!(
        output.contains("golectra-server exited during start-up") && !output.contains(BANNER),
        "port taken: {output}"
    );
    drop(taken);

    // The agent exits at once (bad setting): the server is stopped cleanly, the status says so.
    let (status, output) = run_to_failure(
        dir.path(),
        &[
            ("GOLECTRA_BIN_DIR", bin_dir.clone().into_owned()),
            ("ADDRESS", format!("127.0.0.1:{}", free_port())),
            ("FILE_STORAGE_PATH", db.clone()),
            ("REPORT_INTERVAL", "0".to_owned()),
        ],
    );
    assert_ne!(status, 0, "agent exits early: {output}");
    assert!(
        output.contains("golectra-agent exited during start-up with status 2")
            && output.contains("golectra_server: stopped"),
        "agent exits early: {output}"
    );

    // A server that never answers /ping: stopped after GOLECTRA_START_TIMEOUT.
    let mute = dir.path().join("mute");
    write_executable(&mute.join("golectra-server"), "#!/bin/sh\nexec sleep 600\n");
    place_binary(&agent, &mute, "golectra-agent");
    let started = Instant::now();
    let (status, output) = run_to_failure(
        dir.path(),
        &[
            ("GOLECTRA_BIN_DIR", mute.to_string_lossy().into_owned()),
            ("GOLECTRA_START_TIMEOUT", "1".to_owned()),
            ("ADDRESS", format!("127.0.0.1:{}", free_port())),
            ("FILE_STORAGE_PATH", db),
        ],
    );
    assert_ne!(status, 0, "mute server: {output}");
    assert!(
        output.contains("golectra-server does not answer") && !output.contains(BANNER),
        "mute server: {output}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the start-up bound was not honoured"
    );
}
