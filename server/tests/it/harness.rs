//! What only the server's suite needs on top of the test kit (`golectra-testkit`): the server
//! in-process on port 0 against every store, and the binaries of this build.
//!
//! Tests that exercise the HTTP API loop over [`backends`], so the same suite runs against every
//! store: the memory store always, PostgreSQL when `GOLECTRA_TEST_DATABASE_DSN` is set (CI
//! always sets it; locally a skip is announced on stderr).

#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use golectra_server::config::{Config, Storage};
use golectra_testkit::database::base_dsn;
use golectra_testkit::{Client, DSN_ENV, Received, TestDatabase, fresh_postgres_dsn};

/// A store the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Postgres,
}

/// The backends available in this run.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Memory];
    if base_dsn().is_some() {
        out.push(Backend::Postgres);
    } else {
        eprintln!("NOTE: {DSN_ENV} is not set: PostgreSQL variants of the API tests are SKIPPED");
    }
    out
}

/// An in-process server on 127.0.0.1:0 with its own temporary directory.
pub struct TestServer {
    pub server: Option<golectra_server::Server>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    /// The PostgreSQL database of this server, dropped after the server stops.
    pub database: Option<TestDatabase>,
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

/// The server binary this package built (`target/<profile>/golectra-server`).
pub fn server_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_golectra-server"))
}

/// Runs the server binary to completion (for `--help`, bad configuration…).
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    golectra_testkit::run(server_binary(), args, env)
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

/// A JSON `POST` to `path` carrying `Idempotency-Key: key`.
pub fn keyed(c: &Client, path: &str, key: &str, body: &str) -> Received {
    c.request(
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", key),
        ],
        body.as_bytes(),
    )
}

/// Reads `s` until the server closes it (or resets it) and returns every byte read; any other
/// read error (a read timeout: the server did not close) fails the test.
pub fn read_to_close(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return raw,
            Err(e) => panic!(
                "the server did not close the connection after {} bytes: {e}",
                raw.len()
            ),
        }
    }
}
