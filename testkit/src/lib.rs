//! The Golectra test kit: what the integration suites of `golectra-server` and `golectra-agent`
//! share. Dev-only (`publish = false`, a dev-dependency of both daemons, never a dependency).
//!
//! - [`env`](mod@env): the environment of every process a test starts. [`env::command`] removes every
//!   variable either daemon reads — the server's settings taken from its table
//!   (`golectra_server::config::SETTINGS`), the agent's from [`env::AGENT_SETTINGS`], the
//!   systemd variables, `RUST_LOG`, the proxy variables and the trust-store variables
//!   (`SSL_CERT_FILE`, `SSL_CERT_DIR`) — so a developer's shell
//!   (`WORKERS=1 KEY=x cargo test`) cannot leak into a test.
//! - [`process`]: the one spawn path for daemons ([`Daemon`], stderr in a file of its own;
//!   [`ServerProcess`] on top for the server binary), [`run`] for one-shot runs (`--help`, bad
//!   configuration), signals and waiting for an exit.
//! - [`eventually`]: the only waiting helper. A test waits for a condition, never for a fixed
//!   time; a sleep that remains in a suite deliberately makes a gap ("nothing happens for
//!   500 ms") and says so.
//! - [`http`]: a small client returning status, headers and body as received (no automatic
//!   decompression), and free ports.
//! - [`database`]: a fresh PostgreSQL database per test (`GOLECTRA_TEST_DATABASE_DSN`).
//! - [`replica`]: a replicated test bed, a fresh PostgreSQL 15 primary and its (synchronous)
//!   streaming standby as extra clusters in a temporary directory, with a hard stop of the
//!   primary and a promotion of the standby.
//! - [`require`](mod@require): prerequisites that skip a test loudly, or fail it in CI.
//! - [`fake`]: a recording HTTP server answering with a status chosen per request, or (scripted)
//!   closing the connection unanswered or answering late.
//! - [`proxy`]: a TCP fault proxy between a client and a server (responses delayed, dropped or
//!   replaced by a 503 after the request went through, connections refused), switched at run
//!   time, per HTTP exchange.
//! - [`tls`]: a certificate authority made at test time, issuing server and client
//!   certificates as PEM files, and [`TlsFront`], a TLS terminator in front of a plain-HTTP
//!   server (requiring client certificates if asked), its identity switched at run time.
//! - [`netns`]: a private network namespace whose kernel drops every packet to and from one
//!   loopback address on request (a black-holed network); [`relay`]: a plain TCP relay that
//!   carries connections from inside such a namespace to a database outside it.
//!
//! # Why the agent's settings are a list here
//!
//! The server is a library, so its table is imported. The agent is a binary-only crate, and a
//! library cannot import from a binary; giving it a library target only for this would make
//! its configuration a public API. So the kit keeps the agent's variables in
//! [`env::AGENT_SETTINGS`], and a unit test of the agent
//! (`config::tests::the_test_kit_scrubs_every_setting`, in `agent/src/config.rs`) fails as soon
//! as the agent's `SETTINGS` holds a variable this list lacks.

pub mod database;
pub mod env;
pub mod fake;
pub mod http;
pub mod netns;
pub mod process;
pub mod proxy;
pub mod relay;
pub mod replica;
pub mod require;
mod served;
pub mod tls;
mod wait;

pub use database::{DSN_ENV, TestDatabase, fresh_postgres_dsn};
pub use env::command;
pub use fake::{Answer, Fake, Seen};
pub use http::{Client, Received, free_port};
pub use netns::{PrivateNetwork, Veth};
pub use process::{
    Daemon, JOURNAL_STREAM_OF_STDERR, ServerProcess, agent_binary, binary_dir, run, send_signal,
    server_binary, wait_exit,
};
pub use proxy::{Counts, Exchange, Fault, FaultProxy};
pub use relay::TcpRelay;
pub use replica::{ReplicatedPostgres, Replication};
pub use require::{in_ci, require, require_root, require_tool};
pub use tls::{Handshake, TestCa, TlsFront};
pub use wait::eventually;

use std::path::{Path, PathBuf};

/// The workspace root (where `Cargo.toml`, `systemd/`, `scripts/` and `target/` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ sits in the workspace")
        .to_owned()
}
