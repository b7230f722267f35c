//! Processes of a test: the one spawn path for the daemons ([`Daemon`], and [`ServerProcess`]
//! for the server binary on top of it), one-shot runs ([`run`]), signals and exits. Every
//! command comes from [`crate::env::command`], so no setting leaks in from the environment.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::env::command;
use crate::eventually;
use crate::http::Client;
use crate::require::require;

/// Placeholder value for the environment of [`Daemon::spawn`]: `JOURNAL_STREAM` becomes the
/// `dev:ino` of the daemon's stderr file, as under journald.
pub const JOURNAL_STREAM_OF_STDERR: &str = "<stderr dev:ino>";

/// The directory of the binaries under test (`target/debug` in a normal `cargo test`): the
/// parent of the `deps/` directory the running test executable lives in.
pub fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("a test executable lives in target/<profile>/deps")
        .to_owned()
}

/// The `golectra-server` binary of this target directory, built once if this run has not
/// built it yet (`cargo test -p golectra-agent` does not).
pub fn server_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = binary_dir().join("golectra-server");
        if !path.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "golectra-server", "--bin", "golectra-server"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building golectra-server failed");
        }
        assert!(path.exists(), "{} is missing", path.display());
        path
    })
}

/// The `golectra-agent` binary of this target directory, or `None` (skipped loudly, a failure
/// in CI) when it is missing: `cargo test -p golectra-server` does not build it, run
/// `cargo build --workspace` first.
pub fn agent_binary() -> Option<PathBuf> {
    let path = binary_dir().join("golectra-agent");
    let ok = require(
        "the golectra-agent binary",
        path.is_file(),
        "run `cargo build --workspace` before the tests",
    );
    ok.then_some(path)
}

/// Runs `program` to completion with a scrubbed environment plus `env` and no stdin (for
/// `--help`, bad configuration…): exit code, stdout, stderr.
pub fn run(
    program: impl AsRef<OsStr>,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let out = command(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Sends `signal` to the process (or, negative, the process group) `pid`, a child this test
/// started; returns kill(2)'s result.
pub fn send_signal(pid: i32, signal: i32) -> i32 {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    unsafe {
        libc::kill(pid, signal)
    }
}

/// Waits for a child with a deadline; returns its exit code (or -signal). Past the deadline the
/// child is killed and the test fails.
pub fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let status = eventually(limit, || child.try_wait().expect("wait"));
    match status {
        Some(status) => status
            .code()
            .unwrap_or_else(|| -status.signal().unwrap_or(0)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {limit:?}");
        }
    }
}

/// A daemon under test: started in a directory with arguments, a scrubbed environment plus
/// the test's variables, no stdin or stdout, and stderr in a file of its own (so its device
/// and inode are known, as journald needs, and the log is complete the moment it exits).
/// Killed when dropped.
pub struct Daemon {
    /// The process (the daemon itself, also under a wrapper that `exec`s it).
    pub child: Child,
    /// The file holding its stderr.
    pub stderr: PathBuf,
    _logs: tempfile::TempDir,
}

impl Daemon {
    /// Spawns `program` in `dir` with `args` and `env` on top of the scrubbed environment. `env`
    /// may give `JOURNAL_STREAM` as [`JOURNAL_STREAM_OF_STDERR`].
    pub fn spawn(
        program: impl AsRef<OsStr>,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_wrapped(&[], program, dir, args, env)
    }

    /// [`Daemon::spawn`] under a wrapper command: `wrapper[0] wrapper[1..] <program> <args>`
    /// (e.g. `unshare … sh -c '…; exec "$0" "$@"'`). The wrapper must `exec` the program, so
    /// the child's PID is the daemon's.
    pub fn spawn_wrapped(
        wrapper: &[&str],
        program: impl AsRef<OsStr>,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let program = program.as_ref();
        let logs = tempfile::tempdir().expect("a directory for the daemon's stderr");
        let stderr = logs.path().join("stderr");
        let file = std::fs::File::create(&stderr).expect("create the stderr file");
        let mut cmd = match wrapper {
            [] => command(program),
            [wrapper, rest @ ..] => {
                let mut cmd = command(wrapper);
                cmd.args(rest).arg(program);
                cmd
            }
        };
        cmd.current_dir(dir).args(args);
        for (key, value) in env {
            if *key == "JOURNAL_STREAM" && *value == JOURNAL_STREAM_OF_STDERR {
                use std::os::unix::fs::MetadataExt;
                let meta = file.metadata().expect("stat the stderr file");
                cmd.env(key, format!("{}:{}", meta.dev(), meta.ino()));
            } else {
                cmd.env(key, value);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.to_string_lossy()));
        Self {
            child,
            stderr,
            _logs: logs,
        }
    }

    /// Its process ID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the log contains `needle` and returns the log; fails the test with the log
    /// when the daemon exits first or `limit` passes.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) -> String {
        let found = eventually(limit, || {
            let log = self.log();
            if log.contains(needle) {
                return Some(log);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log();
                assert!(
                    log.contains(needle),
                    "daemon exited ({status}) before logging {needle:?}:\n{log}"
                );
                return Some(log);
            }
            None
        });
        found
            .unwrap_or_else(|| panic!("no {needle:?} in the log within {limit:?}:\n{}", self.log()))
    }

    /// [`Daemon::wait_for_log`] for a whole line: the first complete line (newline written)
    /// containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let complete_line = |log: &str| {
            log.split_inclusive('\n')
                .find(|l| l.contains(needle) && l.ends_with('\n'))
                .map(|l| l.trim_end().to_owned())
        };
        let found = eventually(limit, || {
            if let Some(line) = complete_line(&self.log()) {
                return Some(line);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log();
                let line = complete_line(&log);
                assert!(
                    line.is_some(),
                    "daemon exited ({status}) before logging {needle:?}:\n{log}"
                );
                return line;
            }
            None
        });
        found.unwrap_or_else(|| {
            panic!(
                "no {needle:?} line in the log within {limit:?}:\n{}",
                self.log()
            )
        })
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Sends `signal`; fails the test when kill(2) fails.
    pub fn signal(&self, signal: i32) {
        let rc = send_signal(self.pid(), signal);
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Waits up to `limit` for the exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> i32 {
        wait_exit(&mut self.child, limit)
    }

    /// SIGTERM, then the exit code (within 30 s).
    pub fn terminate(&mut self) -> i32 {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }

    /// SIGKILL, no cleanup.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The real `golectra-server` binary as a [`Daemon`], listening once started.
pub struct ServerProcess {
    /// The process and its log.
    pub daemon: Daemon,
    /// Where it listens (from its "listening on" line).
    pub addr: SocketAddr,
    /// `http` or `https` (from the same line).
    pub scheme: &'static str,
}

impl ServerProcess {
    /// Starts the binary in `dir` on 127.0.0.1:0 and waits for its "listening on" line.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(&[], dir, args, env)
    }

    /// [`ServerProcess::start`] listening on `listen` (a port of a server started before, say).
    pub fn start_on(dir: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::launch(&[], dir, &[&["-a", listen], args].concat(), env)
    }

    /// [`ServerProcess::start`] in a private mount namespace, after `script` (a `sh -c`
    /// script that sets up mounts, then `exec "$0" "$@"`) ran in it (needs root and `unshare`).
    pub fn start_in_private_mounts(
        script: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let wrapper = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ];
        Self::start_wrapped(&wrapper, dir, args, env)
    }

    /// [`ServerProcess::start`] under a wrapper (see [`Daemon::spawn_wrapped`]).
    pub fn start_wrapped(
        wrapper: &[&str],
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(wrapper, dir, &[&["-a", "127.0.0.1:0"], args].concat(), env)
    }

    fn launch(wrapper: &[&str], dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut daemon = Daemon::spawn_wrapped(wrapper, server_binary(), dir, args, env);
        // "listening on http://ADDR" or "listening on https://ADDR".
        let line = daemon.wait_for_line("listening on http", Duration::from_secs(60));
        let rest = line.split("listening on ").nth(1).unwrap_or_default();
        let scheme = if rest.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let addr = rest
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no socket address in {line:?}:\n{}", daemon.log()));
        Self {
            daemon,
            addr,
            scheme,
        }
    }

    /// `http://ADDR` or `https://ADDR` (no trailing slash).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// A client of this server.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// Its process ID.
    pub fn pid(&self) -> i32 {
        self.daemon.pid()
    }

    /// Sends `signal`; fails the test when kill(2) fails.
    pub fn signal(&self, signal: i32) {
        self.daemon.signal(signal);
    }

    /// SIGTERM; the exit code and the whole log.
    pub fn terminate(mut self) -> (i32, String) {
        let code = self.daemon.terminate();
        (code, self.daemon.log())
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(mut self) {
        self.daemon.kill();
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}
