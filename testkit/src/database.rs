//! Test databases: every PostgreSQL test gets a fresh, empty database of its own next to the
//! one `GOLECTRA_TEST_DATABASE_DSN` points at, dropped when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::{Client, NoTls};

/// Environment variable holding the PostgreSQL DSN for tests.
pub const DSN_ENV: &str = "GOLECTRA_TEST_DATABASE_DSN";

/// Databases of the suites are named `golectra_it_<unix seconds>_<pid>_<n>`, so parallel tests
/// (and parallel runs) never collide, and leftovers of crashed runs can be recognised by age.
const PREFIX: &str = "golectra_it_";

/// Leftovers older than this are dropped when a new database is created.
const STALE: Duration = Duration::from_secs(3600);

/// The configured DSN, `None` when `GOLECTRA_TEST_DATABASE_DSN` is unset or empty.
pub fn base_dsn() -> Option<String> {
    std::env::var(DSN_ENV).ok().filter(|v| !v.is_empty())
}

/// A fresh, empty PostgreSQL database for one test, or `None` (with a loud note) when no DSN is
/// configured.
pub fn fresh_postgres_dsn() -> Option<TestDatabase> {
    let base = base_dsn();
    if base.is_none() {
        eprintln!("NOTE: {DSN_ENV} is not set: this PostgreSQL test is SKIPPED");
    }
    base.map(|base| fresh_database(&base))
}

/// A database created for one test; dropped (with its connections) when the guard goes.
#[derive(Debug)]
pub struct TestDatabase {
    /// DSN of this database.
    pub dsn: String,
    /// Its name.
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
        .unwrap_or_else(|e| panic!("cannot connect to {base} ({DSN_ENV}): {e}"));
    drop_stale(&mut admin, PREFIX, STALE, now).expect("list test databases");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .expect("create the test database");
    TestDatabase {
        dsn: with_dbname(base, &name),
        name,
        base: base.to_owned(),
    }
}

/// Drops the databases named `<prefix><unix seconds>_…` created more than `older_than` before
/// `now` (leftovers of runs killed hard); only names of that form are ever touched.
pub fn drop_stale(
    admin: &mut Client,
    prefix: &str,
    older_than: Duration,
    now: u64,
) -> Result<(), postgres::Error> {
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    let rows = admin.query(
        "SELECT datname FROM pg_database WHERE datname LIKE $1",
        &[&pattern],
    )?;
    for row in rows {
        let name: String = row.get(0);
        let created = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|t| t + older_than.as_secs() < now) {
            let _ =
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
    }
    Ok(())
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

/// The DSN `dsn` (URL or key=value form) pointed at `addr` instead of its own host and port,
/// in key=value form: user, password and database kept, other settings dropped.
pub fn through(dsn: &str, addr: std::net::SocketAddr) -> String {
    let config: postgres::Config = dsn.parse().expect("a valid test DSN");
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut out = format!("host={} port={}", addr.ip(), addr.port());
    if let Some(user) = config.get_user() {
        out.push_str(&format!(" user={}", quote(user)));
    }
    if let Some(password) = config.get_password() {
        out.push_str(&format!(
            " password={}",
            quote(&String::from_utf8_lossy(password))
        ));
    }
    if let Some(db) = config.get_dbname() {
        out.push_str(&format!(" dbname={}", quote(db)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_host_dsns_are_pointed_and_renamed() {
        let addr: std::net::SocketAddr = "127.0.0.2:7000".parse().unwrap();
        assert_eq!(
            through(
                "host=db1,db2 port=5432,5433 user=u password=p dbname=m target_session_attrs=read-write",
                addr
            ),
            "host=127.0.0.2 port=7000 user='u' password='p' dbname='m'"
        );
        assert_eq!(
            through(
                "postgres://u@db1:5432,db2:5433/m?target_session_attrs=read-write",
                addr
            ),
            "host=127.0.0.2 port=7000 user='u' dbname='m'"
        );
        assert_eq!(
            with_dbname(
                "postgres://u@db1:5432,db2:5433/m?target_session_attrs=read-write",
                "x"
            ),
            "postgres://u@db1:5432,db2:5433/x?target_session_attrs=read-write"
        );
        assert_eq!(
            with_dbname("host=db1,db2 port=1,2 dbname=m", "x"),
            "host=db1,db2 port=1,2 dbname=m dbname=x"
        );
    }
}
