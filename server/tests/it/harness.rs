//! Shared test harness: starts servers (in-process on port 0, or the real binary), and a small
//! HTTP client that returns raw status, headers and body (no automatic decompression).
//!
//! Tests that exercise the HTTP API loop over [`backends`], so the same suite runs against every
//! store: the memory store always, PostgreSQL when `GOLECTRA_TEST_DATABASE_DSN` is set (CI
//! always sets it; locally a skip is announced on stderr).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use golectra_server::config::{Config, Storage};

/// Environment variable holding the PostgreSQL DSN for tests.
pub const DSN_ENV: &str = "GOLECTRA_TEST_DATABASE_DSN";

/// A store the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Postgres,
}

/// The backends available in this run.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Memory];
    if std::env::var(DSN_ENV).is_ok_and(|v| !v.is_empty()) {
        out.push(Backend::Postgres);
    } else {
        eprintln!("NOTE: {DSN_ENV} is not set: PostgreSQL variants of the API tests are SKIPPED");
    }
    out
}

/// A fresh, empty PostgreSQL database for one test, or `None` (with a loud note) when no DSN is
/// configured.
pub fn fresh_postgres_dsn() -> Option<postgres_support::TestDatabase> {
    let base = std::env::var(DSN_ENV).ok().filter(|v| !v.is_empty());
    if base.is_none() {
        eprintln!("NOTE: {DSN_ENV} is not set: this PostgreSQL test is SKIPPED");
    }
    base.map(|base| postgres_support::fresh_database(&base))
}

pub mod postgres_support {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use postgres::{Client, NoTls};

    /// Databases of this suite are named `golectra_it_<unix seconds>_<pid>_<n>`, so parallel
    /// tests (and parallel runs) never collide, and leftovers of crashed runs can be recognised
    /// by age.
    const PREFIX: &str = "golectra_it_";

    /// Leftovers older than this are dropped when a new database is created.
    const STALE: Duration = Duration::from_secs(3600);

    /// A database created for one test; dropped (with its connections) when the guard goes.
    #[derive(Debug)]
    pub struct TestDatabase {
        pub dsn: String,
        pub name: String,
        base: String,
    }

    impl TestDatabase {
        /// A client connected to this database.
        pub fn connect(&self) -> Client {
            Client::connect(&self.dsn, NoTls).expect("connect to the test database")
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            if let Ok(mut admin) = Client::connect(&self.base, NoTls) {
                let _ = admin.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ));
            }
        }
    }

    /// Creates a new empty database next to the one `base` points at and returns it.
    pub fn fresh_database(base: &str) -> TestDatabase {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let name = format!(
            "{PREFIX}{now}_{}_{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = Client::connect(base, NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to {base} ({}): {e}", super::DSN_ENV));
        drop_stale(&mut admin, now);
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create the test database");
        TestDatabase {
            dsn: with_dbname(base, &name),
            name,
            base: base.to_owned(),
        }
    }

    fn drop_stale(admin: &mut Client, now: u64) {
        let rows = admin
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'golectra\\_it\\_%'",
                &[],
            )
            .expect("list test databases");
        for row in rows {
            let name: String = row.get(0);
            let created = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('_').next())
                .and_then(|secs| secs.parse::<u64>().ok());
            if created.is_some_and(|t| t + STALE.as_secs() < now) {
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        }
    }

    /// The DSN `base` with its database replaced, in URL or key=value form.
    pub fn with_dbname(base: &str, name: &str) -> String {
        match base.split_once("://") {
            Some((scheme, rest)) => {
                let (before_query, query) = match rest.split_once('?') {
                    Some((b, q)) => (b, format!("?{q}")),
                    None => (rest, String::new()),
                };
                let authority = before_query.split('/').next().unwrap_or(before_query);
                format!("{scheme}://{authority}/{name}{query}")
            }
            None => format!("{base} dbname={name}"),
        }
    }
}

/// An in-process server on 127.0.0.1:0 with its own temporary directory.
pub struct TestServer {
    pub server: Option<golectra_server::Server>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    /// The PostgreSQL database of this server, dropped after the server stops.
    pub database: Option<postgres_support::TestDatabase>,
}

impl TestServer {
    pub fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {})
    }

    /// Starts a server after letting the test adjust the configuration.
    pub fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let database = match backend {
            Backend::Memory => None,
            Backend::Postgres => {
                Some(fresh_postgres_dsn().expect("backends() only offers PostgreSQL with a DSN"))
            }
        };
        let storage = match backend {
            Backend::Memory => Storage::Memory {
                path: dir.path().join("metrics-db.json"),
                interval: Duration::from_secs(3600),
                restore: false,
            },
            Backend::Postgres => Storage::Postgres {
                dsn: database.as_ref().expect("created above").dsn.clone(),
                ignored_file_settings: false,
            },
        };
        let mut config = Config::for_tests(storage);
        adjust(&mut config);
        let server = golectra_server::Server::start(&config).expect("server starts");
        let addr = server.local_addr();
        Self {
            server: Some(server),
            addr,
            dir,
            backend,
            database,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// Shuts down cleanly (final snapshot).
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().expect("clean shutdown");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown();
        }
    }
}

/// A response as received.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A minimal HTTP client for tests.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self { addr, agent }
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let uri = format!("http://{}{path}", self.addr);
        let mut builder = ureq::http::Request::builder().method(method).uri(&uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(body.to_vec()).expect("valid request");
        let mut response = self
            .agent
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .expect("body");
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Resp {
        self.request("POST", path, &[], body)
    }

    pub fn post_json(&self, path: &str, body: &str) -> Resp {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }
}

/// The real `golectra-server` binary, started with arguments and environment; its stderr is
/// collected so tests can wait for log lines.
pub struct BinaryServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

pub fn server_binary() -> &'static str {
    env!("CARGO_BIN_EXE_golectra-server")
}

impl BinaryServer {
    /// Starts the binary listening on 127.0.0.1:0 and waits for its "listening on" line.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(&[], dir, args, env)
    }

    /// [`BinaryServer::start`] under a wrapper command: `wrapper[0] wrapper[1..] <server> <args>`
    /// (e.g. `unshare … sh -c '…; exec "$0" "$@"'`). The wrapper must `exec` the server, so the
    /// child's PID is the server's.
    pub fn start_wrapped(
        wrapper: &[&str],
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = match wrapper {
            [] => clean_command(server_binary()),
            [program, rest @ ..] => {
                let mut cmd = clean_command(program);
                cmd.args(rest).arg(server_binary());
                cmd
            }
        };
        cmd.current_dir(dir).args(["-a", "127.0.0.1:0"]).args(args);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn golectra-server");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr.parse().expect("socket address in the log"),
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Self { child, addr, log }
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        let rc = send_signal(self.pid(), signal);
        assert_eq!(rc, 0, "kill failed");
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> (i32, String) {
        self.signal(libc::SIGTERM);
        let status = wait_timeout(&mut self.child, Duration::from_secs(30));
        (status, self.log.lock().unwrap().clone())
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` to the process `pid` (a child this test started).
pub fn send_signal(pid: i32, signal: i32) -> i32 {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    unsafe {
        libc::kill(pid, signal)
    }
}

/// Waits for a child with a deadline; returns its exit code (or -signal).
pub fn wait_timeout(child: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            use std::os::unix::process::ExitStatusExt;
            return status
                .code()
                .unwrap_or_else(|| -status.signal().unwrap_or(0));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command for a daemon under test that inherits none of the settings this process may have:
/// every server setting, the systemd variables and the log filter are removed.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    let server_settings = golectra_server::config::SETTINGS.iter().map(|s| s.env);
    let others = [
        "JOURNAL_STREAM",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "RUST_LOG",
    ];
    for var in server_settings.chain(others) {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs the binary to completion (for `--help`, bad configuration…).
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = clean_command(server_binary());
    let out = cmd
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

pub fn gzip(data: &[u8]) -> Vec<u8> {
    golectra_common::gzip::compress(data)
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// The workspace root (where `Cargo.toml`, `systemd/` and `target/` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ sits in the workspace")
        .to_owned()
}

/// The directory of the binaries under test (`target/debug` in a normal `cargo test`).
pub fn binary_dir() -> PathBuf {
    Path::new(server_binary())
        .parent()
        .expect("a binary lives in a directory")
        .to_owned()
}

/// Whether this run is CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Checks that a prerequisite of a test is there. Missing in CI: the test fails. Missing
/// elsewhere: a loud note on stderr and `false`, and the caller returns (the test is skipped).
pub fn require(what: &str, present: bool, hint: &str) -> bool {
    if present {
        return true;
    }
    assert!(!in_ci(), "{what} is missing in CI: {hint}");
    eprintln!("NOTE: {what} is missing: this test is SKIPPED ({hint})");
    false
}

/// [`require`] for a program on `PATH`.
pub fn require_tool(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    require(
        tool,
        found,
        &format!("install the Debian package {package}"),
    )
}

/// The `golectra-agent` binary next to the server binary. `cargo test -p golectra-server` does
/// not build it: run `cargo build --workspace` first.
pub fn agent_binary() -> Option<PathBuf> {
    let path = binary_dir().join("golectra-agent");
    let ok = require(
        "the golectra-agent binary",
        path.is_file(),
        "run `cargo build --workspace` before the tests",
    );
    ok.then_some(path)
}

/// A daemon started with its stderr in a file (so its device and inode are known, as journald
/// needs) and, optionally, `NOTIFY_SOCKET` and friends in its environment. Used for the server
/// here; the agent's tests can start their binary the same way.
pub struct Daemon {
    pub child: Child,
    pub stderr: PathBuf,
}

impl Daemon {
    /// Spawns `program` in `dir` with `args`, a clean systemd-related environment plus `env`, and
    /// stderr redirected to `dir/<name>.stderr`. `env` may name `JOURNAL_STREAM` as
    /// [`JOURNAL_STREAM_OF_STDERR`] to get the stderr file's own `dev:ino`.
    pub fn spawn(
        program: &Path,
        dir: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let stderr = dir.join(format!("{name}.stderr"));
        let file = std::fs::File::create(&stderr).expect("create the stderr file");
        let mut cmd = clean_command(program);
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
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Self { child, stderr }
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after `limit`.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("daemon exited ({status}) before logging {needle:?}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log within {limit:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> i32 {
        assert_eq!(send_signal(self.child.id() as i32, libc::SIGTERM), 0);
        wait_timeout(&mut self.child, Duration::from_secs(30))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Placeholder value for [`Daemon::spawn`]: set `JOURNAL_STREAM` to the stderr file's `dev:ino`.
pub const JOURNAL_STREAM_OF_STDERR: &str = "<stderr dev:ino>";
