//! PostgreSQL for a fleet run: a fresh database next to the one a DSN names (created before the
//! server starts, dropped after it stopped), and the CPU time of that database's backends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::{Client, NoTls};

/// The fleet runs' databases are `golectra_fleet_<unix seconds>_<pid>`; only such a database is
/// ever dropped, and leftovers older than an hour (a run killed hard) go with the next run.
const PREFIX: &str = "golectra_fleet_";
const STALE: Duration = Duration::from_secs(3600);

fn connect(dsn: &str) -> Result<Client, String> {
    Client::connect(dsn, NoTls).map_err(|e| format!("cannot connect to PostgreSQL at {dsn:?}: {e}"))
}

/// Creates an empty database next to `base`'s and returns its DSN.
pub fn fresh(base: &str) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut admin = connect(base)?;
    golectra_testkit::database::drop_stale(&mut admin, PREFIX, STALE, now)
        .map_err(|e| format!("cannot list databases: {e}"))?;
    let name = format!("{PREFIX}{now}_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .map_err(|e| format!("cannot create database {name}: {e}"))?;
    Ok(golectra_testkit::database::with_dbname(base, &name))
}

/// Drops the database `fresh` names (one [`fresh`] made), connected through `base`.
pub fn drop(base: &str, fresh: &str) -> Result<(), String> {
    let config: postgres::Config = fresh
        .parse()
        .map_err(|e| format!("not a PostgreSQL DSN: {fresh:?}: {e}"))?;
    let name = config.get_dbname().unwrap_or("");
    if !name.starts_with(PREFIX) || name.contains('"') {
        return Err(format!(
            "{name:?} is not a fleet run's database: not dropped"
        ));
    }
    connect(base)?
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .map_err(|e| format!("cannot drop database {name}: {e}"))
}

/// Watches the backends serving one database (the server's pool), from a connection of its own.
pub struct Backends {
    client: Client,
}

impl Backends {
    pub fn new(dsn: &str) -> Result<Self, String> {
        Ok(Self {
            client: connect(dsn)?,
        })
    }

    /// The pids of the database's other backends.
    pub fn pids(&mut self) -> Vec<String> {
        self.client
            .query(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| r.get::<_, i32>(0).to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}
