//! Operations (docs/readme-operations.md, issue 6), by subject:
//!
//! - [`units`]: the systemd units pass `systemd-analyze verify` and `security` and carry the
//!   required directives; the env files list every setting with its default and parse.
//! - [`notify`]: the real binary speaks sd_notify over path and abstract sockets (READY only
//!   once the port accepts, STATUS, WATCHDOG, STOPPING); the watchdog's health probe.
//! - [`logging`]: the journald or the plain format depending on `JOURNAL_STREAM`, and errors
//!   printed before the logger exists.
//! - [`packaging`]: the install script and the Debian package put everything at the same
//!   paths; `--version` names the commit.
//!
//! Tests that need an external tool (`systemd-analyze`, `dpkg-deb`, `dpkg-shlibdeps`) or the
//! agent binary fail in CI when it is missing and are skipped with a loud note elsewhere.

mod logging;
mod notify;
mod packaging;
mod units;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use golectra_testkit::workspace_root;

/// The unit files, env files and scripts of `systemd/`.
fn systemd_dir() -> PathBuf {
    workspace_root().join("systemd")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `GET path` over a fresh connection: the whole response as raw text.
fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Whether `line` contains an RFC 3339 timestamp such as `2026-11-25T01:34:17`.
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    b.windows(19).any(|w| {
        digits(&w[0..4])
            && w[4] == b'-'
            && digits(&w[5..7])
            && w[7] == b'-'
            && digits(&w[8..10])
            && w[10] == b'T'
            && digits(&w[11..13])
            && w[13] == b':'
            && digits(&w[14..16])
            && w[16] == b':'
            && digits(&w[17..19])
    })
}
