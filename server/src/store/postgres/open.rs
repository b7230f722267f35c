//! Start-up: connecting and migrating, with transient failures retried on the configured
//! schedule, and [`OpenError`], why the store could not be opened.

use std::fmt;
use std::time::Duration;

use postgres::NoTls;

use super::migrate::migrate;
use super::retry::Failure;
use super::standby;
use crate::store::StoreError;

/// Why [`PostgresStore::open`](super::PostgresStore::open) failed. Each message names the
/// database (`host:port/dbname`, never the password) and the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// `DATABASE_DSN` is not a valid URL or key=value DSN.
    InvalidDsn {
        /// What the DSN parser objected to.
        reason: String,
    },
    /// Connecting or migrating failed transiently (connection refused, the server is
    /// starting, …) on every attempt.
    Unreachable {
        /// `host:port/dbname`.
        target: String,
        /// Attempts made: one more than the retry delays.
        attempts: usize,
        /// The last attempt's error.
        reason: String,
    },
    /// The database refused the connection in a way no retry fixes (bad password, missing
    /// database, …).
    Connect {
        /// `host:port/dbname`.
        target: String,
        /// The database's error.
        reason: String,
    },
    /// Migrating the schema failed in a way no retry fixes (missing privileges, a failing
    /// migration, …).
    Migrate {
        /// `host:port/dbname`.
        target: String,
        /// The database's error, naming the migration when one failed.
        reason: String,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidDsn { reason } => write!(f, "invalid DATABASE_DSN: {reason}"),
            Self::Unreachable {
                target,
                attempts,
                reason,
            } => write!(
                f,
                "PostgreSQL at {target} is unreachable after {attempts} attempts: {reason}"
            ),
            Self::Connect { target, reason } | Self::Migrate { target, reason } => {
                write!(f, "PostgreSQL at {target}: {reason}")
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// The start-up step that failed.
#[derive(Clone, Copy)]
enum Step {
    Connect,
    Migrate,
}

/// What [`connect_and_migrate`] did.
#[derive(Debug)]
pub(super) struct Opened {
    /// Migrations applied now.
    pub(super) applied: usize,
    /// The primary as it names itself (`address:port`), when it could say.
    pub(super) primary: Option<String>,
}

/// Connects to a writable host of `config` (migrations run only on a primary, whatever the
/// DSN's `target_session_attrs`) and applies pending migrations, retrying transient failures
/// after each of `delays`.
pub(super) fn connect_and_migrate(
    config: &postgres::Config,
    target: &str,
    delays: &[Duration],
) -> Result<Opened, OpenError> {
    let config = standby::for_migrations(config);
    let mut attempt = 0;
    loop {
        let result = config
            .connect(NoTls)
            .map_err(|e| (Step::Connect, Failure::from(e)))
            .and_then(|mut client| {
                let applied = migrate(&mut client).map_err(|f| (Step::Migrate, f))?;
                Ok(Opened {
                    applied,
                    primary: server_address(&mut client),
                })
            });
        let (step, failure) = match result {
            Ok(opened) => return Ok(opened),
            Err(failed) => failed,
        };
        let failure = match failure {
            Failure::Transient(why) => Failure::Transient(standby::explain(why)),
            other => other,
        };
        let reason = match failure {
            Failure::Transient(why) if attempt < delays.len() => {
                let delay = delays[attempt];
                attempt += 1;
                log::warn!(
                    "PostgreSQL at {target} is not reachable ({why}); attempt {} in {delay:?}",
                    attempt + 1
                );
                std::thread::sleep(delay);
                continue;
            }
            Failure::Transient(why) => {
                return Err(OpenError::Unreachable {
                    target: target.to_owned(),
                    attempts: attempt + 1,
                    reason: why,
                });
            }
            Failure::Permanent(why) | Failure::Store(StoreError::Unavailable(why)) => why,
            Failure::Store(e) => e.to_string(),
        };
        let target = target.to_owned();
        return Err(match step {
            Step::Connect => OpenError::Connect { target, reason },
            Step::Migrate => OpenError::Migrate { target, reason },
        });
    }
}

/// `address:port` of the server `client` is connected to, as it names itself (`socket:port`
/// over a Unix socket); `None` when it cannot say.
fn server_address(client: &mut postgres::Client) -> Option<String> {
    let rows = client
        .simple_query(
            "SELECT coalesce(host(inet_server_addr()) || ':', 'socket:') || current_setting('port')",
        )
        .ok()?;
    rows.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}
