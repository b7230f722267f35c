//! Shared test harness: the real `golectra-server` and `golectra-agent` binaries as child
//! processes with their stderr collected, fake servers built on tiny_http, and small helpers.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Variables of both daemons that must not leak from the developer's shell into a test.
const SCRUBBED: &[&str] = &[
    "ADDRESS",
    "KEY",
    "REPORT_INTERVAL",
    "POLL_INTERVAL",
    "RATE_LIMIT",
    "FILE_STORAGE_PATH",
    "DATABASE_DSN",
    "STORE_INTERVAL",
    "RESTORE",
    "AUDIT_FILE",
    "AUDIT_URL",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "RUST_LOG",
    "http_proxy",
    "HTTP_PROXY",
    "ALL_PROXY",
    "all_proxy",
];

/// Short intervals that keep the suite fast.
pub const FAST: &[&str] = &["-p", "100ms", "-r", "300ms"];

pub fn agent_binary() -> &'static str {
    env!("CARGO_BIN_EXE_golectra-agent")
}

/// The server binary of the same target directory (`target/debug/golectra-server`), built once
/// if this run has not built it yet.
pub fn server_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/debug/deps/it-HASH → target/debug/golectra-server
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps");
        let path = dir.join("golectra-server");
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

/// Collects a child's stderr into a string, calling `on_line` for each line.
fn collect_stderr(
    child: &mut Child,
    mut on_line: impl FnMut(&str) + Send + 'static,
) -> Arc<Mutex<String>> {
    let stderr = child.stderr.take().expect("piped stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            on_line(&line);
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    log
}

fn command(binary: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.current_dir(dir).args(args);
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// The real `golectra-server`.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts on `listen` (`127.0.0.1:0` for any port) in `dir` and waits for its
    /// "listening on" line.
    pub fn start(dir: &Path, listen: &str, args: &[&str]) -> Self {
        let mut all = vec!["-a", listen];
        all.extend_from_slice(args);
        let mut child = command(server_binary(), dir, &all, &[])
            .spawn()
            .expect("spawn golectra-server");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = collect_stderr(&mut child, move |line| {
            if let Some(addr) = line.split("listening on http://").nth(1) {
                let _ = tx.send(addr.trim().to_owned());
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("socket address in the log"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start; log:\n{}", log.lock().unwrap());
            }
        };
        Self { child, addr, log }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET /api/v1/snapshot`.
    pub fn snapshot(&self) -> Snapshot {
        let body = http_get(&format!("{}/api/v1/snapshot", self.url()));
        let json: serde_json::Value = serde_json::from_str(&body).expect("snapshot JSON");
        Snapshot(json)
    }

    /// SIGTERM (the server writes its final snapshot) and wait for exit 0.
    pub fn stop(mut self) {
        signal(self.child.id(), libc::SIGTERM);
        let code = wait(&mut self.child, Duration::from_secs(30));
        assert_eq!(code, 0, "server log:\n{}", self.log.lock().unwrap());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// The real `golectra-agent`.
pub struct Agent {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Agent {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir();
        let mut child = command(Path::new(agent_binary()), &dir, args, env)
            .spawn()
            .expect("spawn golectra-agent");
        let log = collect_stderr(&mut child, |_| {});
        Self {
            child: Some(child),
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("not stopped yet");
        child.try_wait().expect("try_wait").is_none()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) {
        eventually(limit, || self.log().contains(needle).then_some(()))
            .unwrap_or_else(|| panic!("no {needle:?} in the agent log:\n{}", self.log()));
    }

    /// SIGTERM; returns the exit code and the whole log once the process is gone.
    pub fn terminate(&mut self) -> (i32, String) {
        let mut child = self.child.take().expect("not stopped yet");
        signal(child.id(), libc::SIGTERM);
        let code = wait(&mut child, Duration::from_secs(30));
        // The reader thread may still hold the last lines for a moment.
        let log = eventually(Duration::from_secs(5), || {
            let log = self.log();
            log.contains("stopped after").then_some(log)
        })
        .unwrap_or_else(|| self.log());
        (code, log)
    }

    /// SIGTERM and the number of polls from the final log line, asserting a clean exit.
    pub fn stop_and_count_polls(&mut self) -> i64 {
        let (code, log) = self.terminate();
        assert_eq!(code, 0, "agent log:\n{log}");
        polls_in(&log).unwrap_or_else(|| panic!("no final line in the agent log:\n{log}"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses `stopped after N polls` from an agent log.
pub fn polls_in(log: &str) -> Option<i64> {
    let rest = log.split("stopped after ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

/// Sends `sig` to a child this test started.
pub fn signal(pid: u32, sig: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Waits for a child with a deadline; returns its exit code (or -signal).
pub fn wait(child: &mut Child, limit: Duration) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
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

/// Retries `probe` every 50 ms until it returns `Some` or `limit` passes.
pub fn eventually<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn http_get(url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("body")
}

/// A port that was free a moment ago (bind, note, close).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
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

pub use golectra_common::metric::RUNTIME_GAUGES;

/// A request as a fake server saw it, body inflated when it was gzip.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body exactly as received.
    pub raw: Vec<u8>,
    /// The body after gzip inflation (equal to `raw` without `Content-Encoding: gzip`).
    pub body: Vec<u8>,
    /// The status the fake answered.
    pub status: u16,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A tiny_http server that answers with a status chosen per request and records everything.
pub struct Fake {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    /// `answer(path, n)` picks the status for the `n`-th request (0-based) to `path`.
    pub fn start(mut answer: impl FnMut(&str, usize) -> u16 + Send + 'static) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind fake"));
        let addr = server.server_addr().to_ip().expect("ip address");
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let (srv, log) = (server.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let mut raw = Vec::new();
                let _ = request.as_reader().read_to_end(&mut raw);
                let headers: Vec<(String, String)> = request
                    .headers()
                    .iter()
                    .map(|h| (h.field.to_string(), h.value.to_string()))
                    .collect();
                let gz = headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "gzip");
                let body = if gz {
                    golectra_common::gzip::inflate_unbounded(&raw).expect("valid gzip body")
                } else {
                    raw.clone()
                };
                let path = request.url().to_owned();
                let n = log
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|s| s.path == path)
                    .count();
                let status = answer(&path, n);
                log.lock().unwrap().push(Seen {
                    at: Instant::now(),
                    method: request.method().to_string(),
                    path,
                    headers,
                    raw,
                    body,
                    status,
                });
                let text = if status == 200 { "{}" } else { "fake says no" };
                let _ = request
                    .respond(tiny_http::Response::from_string(text).with_status_code(status));
            }
        });
        Self {
            server,
            thread: Some(thread),
            addr,
            seen,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
