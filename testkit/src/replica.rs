//! A replicated PostgreSQL 15 test bed (docs/postgresql.md, "A replicated test bed"): a fresh
//! primary and a streaming standby made from it with `pg_basebackup -R`, both extra clusters in
//! a temporary directory (data, logs and Unix sockets), on free ports of 127.0.0.1, run as user
//! `postgres` with the binaries of `/usr/lib/postgresql/15/bin`. The machine's own cluster
//! (port 5432) is never touched.
//!
//! With [`Replication::Synchronous`] the primary has `synchronous_standby_names = '*'`: a commit
//! is acknowledged only once the standby has flushed it, so whatever a client was told is
//! committed survives the primary's loss. The setting is made on the primary after the base
//! backup, so the promoted standby does not wait for a standby of its own.
//!
//! The test stops the primary hard ([`ReplicatedPostgres::stop_primary`], `pg_ctl stop -m
//! immediate`) and promotes the standby ([`ReplicatedPostgres::promote_standby`], `pg_ctl
//! promote`). Dropping the bed ends both postmasters by their PIDs (`SIGQUIT`, PostgreSQL's
//! immediate shutdown, then `SIGKILL` if one is still there) and removes the directory.
//!
//! Needs root (to run the clusters as `postgres`) and the PostgreSQL 15 server binaries:
//! without them [`ReplicatedPostgres::start`] returns `None` with a loud note (a failure in CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::{eventually, free_port, require, require_root};

/// The PostgreSQL 15 server binaries of Debian's `postgresql-15`.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The database the bed creates for the server.
pub const DATABASE: &str = "metrics";

/// How commits wait for the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// `synchronous_standby_names = '*'`: a commit is acknowledged once the standby flushed it.
    Synchronous,
    /// Streaming, but commits do not wait for the standby.
    Asynchronous,
}

/// A primary and its streaming standby, both stopped and removed on drop.
pub struct ReplicatedPostgres {
    /// Port of the primary on 127.0.0.1.
    pub primary_port: u16,
    /// Port of the standby on 127.0.0.1.
    pub standby_port: u16,
    /// Postmaster PIDs of the primary and the standby, from their `postmaster.pid`.
    pids: [Option<i32>; 2],
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for ReplicatedPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedPostgres")
            .field("primary_port", &self.primary_port)
            .field("standby_port", &self.standby_port)
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// Whether this machine can run the bed: root and the PostgreSQL 15 binaries (a loud note, and
/// `false`, when not; a failure in CI).
pub fn available() -> bool {
    require_root("to run extra PostgreSQL clusters as user postgres")
        && require(
            "PostgreSQL 15 server binaries",
            ["initdb", "pg_ctl", "pg_basebackup"]
                .iter()
                .all(|tool| Path::new(PG_BIN).join(tool).is_file()),
            &format!("install the Debian package postgresql-15 ({PG_BIN})"),
        )
        && require(
            "runuser",
            Path::new("/usr/sbin/runuser").is_file() || Path::new("/sbin/runuser").is_file(),
            "install the Debian package util-linux",
        )
}

impl ReplicatedPostgres {
    /// A primary with a synchronous standby, streaming, database [`DATABASE`] created; `None`
    /// (skipped loudly) when the machine cannot run it.
    pub fn start() -> Option<Self> {
        Self::start_with(Replication::Synchronous)
    }

    /// [`ReplicatedPostgres::start`] with the replication mode chosen.
    pub fn start_with(replication: Replication) -> Option<Self> {
        if !available() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("golectra-replica-")
            .tempdir()
            .expect("a directory for the clusters");
        chown_postgres(dir.path());
        let primary_port = free_port();
        let standby_port = loop {
            let port = free_port();
            if port != primary_port {
                break port;
            }
        };
        let mut bed = Self {
            primary_port,
            standby_port,
            pids: [None, None],
            dir,
        };
        let primary = bed.data("primary");
        as_postgres(
            "initdb",
            &[
                "-D",
                path(&primary),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let socket = bed.dir.path().to_str().expect("a UTF-8 path").to_owned();
        append(
            &primary.join("postgresql.conf"),
            &format!(
                "\n# golectra test bed\nport = {primary_port}\nlisten_addresses = '127.0.0.1'\n\
                 unix_socket_directories = '{socket}'\nmax_connections = 60\n\
                 shared_buffers = 32MB\nmax_wal_senders = 4\nwal_level = replica\n\
                 hot_standby = on\nlogging_collector = off\n"
            ),
        );
        bed.pg_ctl_start("primary");
        as_postgres(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
                "-D",
                path(&bed.data("standby")),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        append(
            &bed.data("standby").join("postgresql.conf"),
            &format!("port = {standby_port}\ncluster_name = 'standby'\n"),
        );
        bed.pg_ctl_start("standby");

        let mut admin = bed.connect(primary_port, "postgres");
        admin
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .expect("create the test bed's database");
        if replication == Replication::Synchronous {
            // ALTER SYSTEM cannot share a (multi-statement, implicit) transaction.
            admin
                .batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                .and_then(|()| admin.batch_execute("SELECT pg_reload_conf()"))
                .expect("make the standby synchronous");
        }
        let wanted = match replication {
            Replication::Synchronous => "sync",
            Replication::Asynchronous => "async",
        };
        eventually(Duration::from_secs(60), || {
            let row = admin
                .query_opt("SELECT sync_state FROM pg_stat_replication", &[])
                .ok()??;
            (row.get::<_, String>(0) == wanted).then_some(())
        })
        .unwrap_or_else(|| panic!("the standby is not {wanted} within 60 s:\n{}", bed.logs()));
        // The database exists on the standby too before anyone connects to it there.
        let mut standby = bed.connect(standby_port, "postgres");
        eventually(Duration::from_secs(30), || {
            standby
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])
                .ok()?
        })
        .expect("the database replicated to the standby");
        Some(bed)
    }

    /// Key=value DSN of both hosts, primary first, `target_session_attrs=read-write`.
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname={DATABASE} target_session_attrs=read-write",
            self.primary_port, self.standby_port
        )
    }

    /// The same in URL form.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{DATABASE}?target_session_attrs=read-write",
            self.primary_port, self.standby_port
        )
    }

    /// DSN of one host of the bed (`port`), database [`DATABASE`].
    pub fn host_dsn(&self, port: u16) -> String {
        format!("host=127.0.0.1 port={port} user=postgres dbname={DATABASE}")
    }

    /// A client of one host of the bed.
    pub fn connect(&self, port: u16, database: &str) -> Client {
        let dsn = format!("host=127.0.0.1 port={port} user=postgres dbname={database}");
        Client::connect(&dsn, NoTls)
            .unwrap_or_else(|e| panic!("connect to {dsn}: {e}\n{}", self.logs()))
    }

    /// Waits until the standby has replayed everything the primary has written so far (an
    /// asynchronous standby lags; even a synchronous one only flushed the WAL before the
    /// commit was acknowledged).
    pub fn wait_replayed(&self) {
        let lsn: String = self
            .connect(self.primary_port, "postgres")
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .expect("the primary's WAL position")
            .get(0);
        let mut standby = self.connect(self.standby_port, "postgres");
        eventually(Duration::from_secs(30), || {
            let row = standby
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&lsn],
                )
                .ok()?;
            row.get::<_, bool>(0).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the standby did not replay {lsn} within 30 s:\n{}",
                self.logs()
            )
        });
    }

    /// `pg_ctl stop -m immediate` of the primary: its postmaster and backends are gone at
    /// once, nothing is flushed or shut down cleanly (as in a crash of PostgreSQL).
    pub fn stop_primary(&mut self) {
        self.pg_ctl(&[
            "stop",
            "-m",
            "immediate",
            "-w",
            "-D",
            path(&self.data("primary")),
        ]);
        self.pids[0] = None;
    }

    /// `pg_ctl promote` of the standby, waiting until it accepts writes.
    pub fn promote_standby(&mut self) {
        self.pg_ctl(&["promote", "-w", "-D", path(&self.data("standby"))]);
    }

    /// `ALTER SYSTEM SET default_transaction_read_only` on the host at `port` and a reload: a
    /// primary that goes (or stops being) read-only while connections to it stay open.
    pub fn set_read_only(&self, port: u16, on: bool) {
        let mut admin = self.connect(port, "postgres");
        admin
            .batch_execute(&format!(
                "ALTER SYSTEM SET default_transaction_read_only = {}",
                if on { "on" } else { "off" }
            ))
            .and_then(|()| admin.batch_execute("SELECT pg_reload_conf()"))
            .expect("set default_transaction_read_only");
    }

    /// Both clusters' logs, for failure messages.
    pub fn logs(&self) -> String {
        ["primary", "standby"]
            .iter()
            .map(|name| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                    .unwrap_or_default();
                format!("--- {name}.log\n{log}")
            })
            .collect()
    }

    fn data(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pg_ctl_start(&mut self, name: &str) {
        let data = self.data(name);
        let log = self.dir.path().join(format!("{name}.log"));
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            path(&data),
            "-l",
            path(&log),
        ]);
        let pid = std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok());
        self.pids[usize::from(name == "standby")] = pid;
    }

    fn pg_ctl(&self, args: &[&str]) {
        let (ok, output) = run_as_postgres("pg_ctl", args);
        assert!(ok, "pg_ctl {args:?} failed: {output}\n{}", self.logs());
    }
}

impl Drop for ReplicatedPostgres {
    /// Ends both postmasters by PID: `SIGQUIT` (immediate shutdown, which ends their backends),
    /// then `SIGKILL` if one is still running after 10 s.
    fn drop(&mut self) {
        for pid in self.pids.iter().flatten().copied() {
            if !is_postmaster_of(pid, self.dir.path()) {
                continue;
            }
            crate::send_signal(pid, libc::SIGQUIT);
            let gone = eventually(Duration::from_secs(10), || {
                (!is_postmaster_of(pid, self.dir.path())).then_some(())
            });
            if gone.is_none() {
                crate::send_signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// Whether `pid` is still a postgres process of a cluster under `dir` (never signal a PID
/// that was reused by another process).
fn is_postmaster_of(pid: i32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie (state Z) has exited.
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    !zombie && String::from_utf8_lossy(&cmdline).contains(dir.to_str().unwrap_or("\u{0}unmatched"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn append(file: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("append to {}: {e}", file.display()));
}

fn chown_postgres(dir: &Path) {
    let status = Command::new("chown")
        .args(["postgres:postgres", path(dir)])
        .status()
        .expect("run chown");
    assert!(status.success(), "chown postgres {}", dir.display());
}

/// Runs a PostgreSQL binary as user `postgres` (`runuser`), with a minimal environment (no
/// `PG*` variable of the caller's); fails the test when it fails.
fn as_postgres(tool: &str, args: &[&str]) {
    let (ok, output) = run_as_postgres(tool, args);
    assert!(ok, "{tool} {args:?} failed: {output}");
}

fn run_as_postgres(tool: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(tool))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("LC_ALL", "C")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {tool} as postgres: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
