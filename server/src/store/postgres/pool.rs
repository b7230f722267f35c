//! The connection pool: session settings taken from the DSN (the socket timeouts that bound a
//! call on a network that drops packets included), r2d2 with a `broken` mark per connection,
//! and checkouts that weed out dead connections after a failure.
//!
//! The pool is sized to the worker pool (one connection per worker, so a checkout never waits
//! for a busy connection) and does not test connections on checkout (no extra round trip per
//! request); a connection that broke is discarded when it is returned, and closed on the
//! `postgres-close` thread: closing a connection whose last request is still unanswered waits
//! for the socket to fail, which on a silent network takes up to `tcp_user_timeout`.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use r2d2::{Pool, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;

use super::PostgresOptions;
use super::retry::{Failure, describe, is_timeout};
use super::standby;
use crate::exposition::{Exposition, FamilyType};

/// A connection checked out of the pool.
pub(super) type Conn = PooledConnection<Manager>;

/// The pool's connection manager: `r2d2_postgres`'s, plus a `broken` mark. r2d2 discards a
/// connection only when `has_broken` says so, and the client library notices a closed socket a
/// moment *after* the server's FATAL message (`pg_terminate_backend`, a restart) has failed a
/// call; without the mark the pool would hand the same dead connection out again and again.
pub(super) struct Manager {
    inner: PostgresConnectionManager<NoTls>,
    /// Why the last connect failed, and when; cleared by a successful one.
    last_error: Arc<Mutex<Option<(Instant, String)>>>,
}

/// A pooled client that a failed call can mark broken.
pub(super) struct Connection {
    /// Always `Some` until the connection is dropped.
    client: Option<Client>,
    /// Set when a call on this connection failed transiently: the pool then discards it.
    pub(super) broken: bool,
}

impl std::ops::Deref for Connection {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a live connection has its client")
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a live connection has its client")
    }
}

impl Drop for Connection {
    /// A broken connection may still wait for an answer that never comes: dropping its client
    /// blocks until the socket fails. That wait happens on the `postgres-close` thread, never
    /// on the worker that returned the connection.
    fn drop(&mut self) {
        if let Some(client) = self.client.take().filter(|_| self.broken) {
            close_later(client);
        }
    }
}

/// Hands `client` to the `postgres-close` thread (started on first use), which drops the
/// clients it gets one after another; drops it here if that thread cannot be started.
fn close_later(client: Client) {
    static CLOSER: OnceLock<Option<crossbeam_channel::Sender<Client>>> = OnceLock::new();
    let closer = CLOSER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<Client>();
        std::thread::Builder::new()
            .name("postgres-close".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    match closer {
        Some(tx) => {
            if let Err(crossbeam_channel::SendError(client)) = tx.send(client) {
                drop(client);
            }
        }
        None => drop(client),
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Connection, postgres::Error> {
        let result = self.inner.connect();
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = match &result {
            Ok(_) => None,
            Err(e) => Some((Instant::now(), describe(e))),
        };
        Ok(Connection {
            client: Some(result?),
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), postgres::Error> {
        self.inner.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.broken || self.inner.has_broken(conn)
    }
}

/// Logs pool errors (failed background connects) at debug level: the request that suffers
/// from them logs its own warning, and an outage must not flood the log.
#[derive(Debug)]
struct QuietErrors;

impl r2d2::HandleError<postgres::Error> for QuietErrors {
    fn handle_error(&self, error: postgres::Error) {
        log::debug!("PostgreSQL pool: {}", describe(&error));
    }
}

/// The DSN with the server's session defaults: the connect timeout, the socket timeouts
/// (`tcp_user_timeout`, keepalives) and `application_name` unless the DSN sets them, and the
/// statement timeout and `golectra.max_metrics` (what the count trigger checks, see
/// `004_metric_count.sql`) added to its `options`.
pub(super) fn session_config(options: &PostgresOptions) -> Result<postgres::Config, String> {
    let mut config: postgres::Config = options.dsn.parse().map_err(|e| describe(&e))?;
    let (hosts, ports) = (config.get_hosts().len(), config.get_ports().len());
    if ports > 1 && ports != hosts {
        return Err(format!(
            "{hosts} hosts and {ports} ports: give one port for every host, or one for all"
        ));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    // Without these a call on a network that silently drops packets waits for the kernel's
    // retransmissions to give up, about 15 minutes: a statement sent into the void is cut
    // after `tcp_user_timeout` without an acknowledgement, and an answer that never comes
    // after `keepalives_idle` plus unanswered probes (bounded by `tcp_user_timeout` too).
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(options.tcp_user_timeout);
    }
    if config.get_keepalives() {
        if !dsn_sets(&options.dsn, "keepalives_idle") {
            config.keepalives_idle(options.keepalives_idle);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(options.keepalives_interval);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE_PROBES);
        }
    }
    if config.get_application_name().is_none() {
        config.application_name("golectra-server");
    }
    standby::apply_default(&mut config, dsn_sets(&options.dsn, "target_session_attrs"))?;
    // Sent with the start-up packet: no extra round trip per connection.
    let timeout = format!(
        "-c statement_timeout={} -c golectra.max_metrics={}",
        options.statement_timeout.as_millis(),
        options.max_metrics.0
    );
    let session_options = match config.get_options() {
        Some(existing) if !existing.trim().is_empty() => format!("{existing} {timeout}"),
        _ => timeout,
    };
    config.options(&session_options);
    Ok(config)
}

/// Unanswered keepalive probes before the kernel gives up on a connection (when
/// `tcp_user_timeout` has not ended it first).
const KEEPALIVE_PROBES: u32 = 3;

/// Whether the DSN (URL or key=value form) sets `key` itself (the client library reports a
/// default for some settings it was not given).
fn dsn_sets(dsn: &str, key: &str) -> bool {
    dsn.match_indices(key).any(|(at, _)| {
        let before = dsn[..at].chars().next_back();
        let after = dsn[at + key.len()..].trim_start();
        before.is_none_or(|c| c.is_whitespace() || c == '?' || c == '&') && after.starts_with('=')
    })
}

/// `host:port/dbname` of a connection configuration (never the password), for messages.
pub(super) fn target(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    };
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{hosts}/{db}")
}

/// Longest wait for the answer to the test of a suspect connection.
pub(super) const TEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The pool of one store.
pub(super) struct ConnectionPool {
    pool: Pool<Manager>,
    /// The manager's record of the last failed connect.
    last_error: Arc<Mutex<Option<(Instant, String)>>>,
}

impl ConnectionPool {
    /// A pool of `options.pool_size` connections to `config`, opened lazily.
    pub(super) fn new(config: postgres::Config, options: &PostgresOptions) -> Self {
        let last_error = Arc::new(Mutex::new(None));
        let manager = Manager {
            inner: PostgresConnectionManager::new(config, NoTls),
            last_error: last_error.clone(),
        };
        Self {
            pool: Pool::builder()
                .max_size(options.pool_size)
                .test_on_check_out(false)
                .connection_timeout(options.checkout_timeout)
                .error_handler(Box::new(QuietErrors))
                .build_unchecked(manager),
            last_error,
        }
    }

    /// Why a checkout found no connection: r2d2 hands the last connect error to one waiter
    /// only, so the others get it from the manager's record (when it is recent: a failure of
    /// the last two checkout timeouts).
    fn no_connection(&self, e: &r2d2::Error) -> String {
        let recent = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|(at, _)| at.elapsed() <= 2 * self.pool.connection_timeout());
        let why = match recent {
            Some((_, why)) => format!("no database connection: {why}"),
            None => format!("no database connection: {e}"),
        };
        standby::explain(why)
    }

    /// Checks out a connection. After a failure (`suspect`), the pooled connections may all be
    /// dead (a restarted or terminated server) or lead to a server that no longer accepts
    /// writes (a failover): then each one is tested, and the dead and read-only ones discarded,
    /// at most one pool's worth, before it is used. A test that times out ends the
    /// search: the database is not answering, and testing the others would only multiply the
    /// wait (at most the checkout timeout plus [`TEST_TIMEOUT`] in all).
    pub(super) fn checkout(&self, suspect: bool) -> Result<Conn, Failure> {
        let tries = if suspect {
            self.pool.max_size() as usize + 1
        } else {
            1
        };
        let mut last = String::new();
        for _ in 0..tries {
            let mut conn = match self.pool.get() {
                Ok(conn) => conn,
                Err(e) if last.is_empty() => {
                    return Err(Failure::Transient(self.no_connection(&e)));
                }
                // What the tested connections said comes first ("not ready: … standby").
                Err(e) => {
                    let why = self.no_connection(&e);
                    return Err(Failure::Transient(format!("{last}; then {why}")));
                }
            };
            if !suspect {
                return Ok(conn);
            }
            // The test proves an answer within TEST_TIMEOUT; the read-only check that follows
            // is bounded by the socket timeouts.
            match conn
                .is_valid(TEST_TIMEOUT)
                .and_then(|()| standby::read_only(&mut conn))
            {
                Ok(None) => return Ok(conn),
                Ok(Some(why)) => {
                    // A standby, or a primary gone read-only: never written to. The next
                    // connection the pool opens looks for a writable host again.
                    conn.broken = true;
                    last = why;
                }
                Err(e) => {
                    // Marked broken, the pool discards it when it is dropped here.
                    conn.broken = true;
                    last = describe(&e);
                    if is_timeout(&e) {
                        break;
                    }
                }
            }
        }
        Err(Failure::Transient(last))
    }

    /// `golectra_postgres_pool_connections`.
    pub(super) fn export(&self, out: &mut Exposition) {
        let state = self.pool.state();
        out.family(
            "golectra_postgres_pool_connections",
            "Connections held by the PostgreSQL pool, by state.",
            FamilyType::Gauge,
        )
        .sample(&[("state", "idle")], state.idle_connections as u64)
        .sample(
            &[("state", "busy")],
            (state.connections - state.idle_connections) as u64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::str::FromStr;

    #[test]
    fn targets_name_host_port_and_database() {
        let url =
            postgres::Config::from_str("postgres://u:secret@db.example:6543/metrics").unwrap();
        assert_eq!(target(&url), "db.example:6543/metrics");
        let kv = postgres::Config::from_str("host=h1,h2 port=1,2 user=u password=p").unwrap();
        assert_eq!(target(&kv), "h1:1,h2:2/u");
    }

    #[test]
    fn session_settings_default_what_the_dsn_leaves_open() {
        let options = PostgresOptions::new("postgres://u@h/db", 3);
        let config = session_config(&options).unwrap();
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(config.get_application_name(), Some("golectra-server"));
        assert_eq!(
            config.get_options(),
            Some("-c statement_timeout=10000 -c golectra.max_metrics=1000000")
        );

        let options = PostgresOptions::new(
            "host=h connect_timeout=9 application_name=mine options='-c work_mem=8MB'",
            3,
        );
        let config = session_config(&options).unwrap();
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(9)));
        assert_eq!(config.get_application_name(), Some("mine"));
        assert_eq!(
            config.get_options(),
            Some("-c work_mem=8MB -c statement_timeout=10000 -c golectra.max_metrics=1000000")
        );

        let err = session_config(&PostgresOptions::new("host=h port=x", 1)).unwrap_err();
        assert!(err.contains("invalid"), "{err}");
    }

    #[test]
    fn multi_host_dsns_keep_their_hosts_and_get_the_defaults() {
        use postgres::config::TargetSessionAttrs;
        for dsn in [
            "host=db1,db2 port=5432,5433 user=u dbname=metrics",
            "postgres://u@db1:5432,db2:5433/metrics",
            "host=db1,db2 port=5432,5433 user=u dbname=metrics target_session_attrs=read-write",
            "postgres://u@db1:5432,db2:5433/metrics?target_session_attrs=read-write",
        ] {
            let config = session_config(&PostgresOptions::new(dsn, 3)).unwrap();
            assert_eq!(target(&config), "db1:5432,db2:5433/metrics", "{dsn}");
            assert_eq!(
                config.get_target_session_attrs(),
                TargetSessionAttrs::ReadWrite,
                "{dsn}"
            );
            assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(5)));
            assert_eq!(
                config.get_tcp_user_timeout(),
                Some(&Duration::from_secs(10))
            );
            assert_eq!(config.get_keepalives_idle(), Duration::from_secs(5));
        }
        // `any` is the DSN's choice and kept; one port for several hosts is the libpq rule.
        let config = session_config(&PostgresOptions::new(
            "postgres://u@db1,db2:6000/m?target_session_attrs=any&keepalives_idle=9",
            3,
        ))
        .unwrap();
        assert_eq!(config.get_target_session_attrs(), TargetSessionAttrs::Any);
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(9));
        let config = session_config(&PostgresOptions::new("host=a,b port=7 user=u", 1)).unwrap();
        assert_eq!(target(&config), "a:7,b:7/u");
        let err = session_config(&PostgresOptions::new("host=a,b port=1,2,3", 1)).unwrap_err();
        assert_eq!(
            err,
            "2 hosts and 3 ports: give one port for every host, or one for all"
        );
    }

    #[test]
    fn socket_timeouts_default_what_the_dsn_leaves_open() {
        let config = session_config(&PostgresOptions::new("postgres://u@h/db", 3)).unwrap();
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(10))
        );
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(config.get_keepalives_retries(), Some(3));

        for dsn in [
            "postgres://u@h/db?tcp_user_timeout=30&keepalives_idle=7200&keepalives_interval=9&keepalives_retries=2",
            "host=h tcp_user_timeout=30 keepalives_idle = 7200 keepalives_interval=9 keepalives_retries=2",
        ] {
            let config = session_config(&PostgresOptions::new(dsn, 3)).unwrap();
            assert_eq!(
                config.get_tcp_user_timeout(),
                Some(&Duration::from_secs(30)),
                "{dsn}"
            );
            assert_eq!(
                config.get_keepalives_idle(),
                Duration::from_secs(7200),
                "{dsn}"
            );
            assert_eq!(
                config.get_keepalives_interval(),
                Some(Duration::from_secs(9))
            );
            assert_eq!(config.get_keepalives_retries(), Some(2));
        }
        // Keepalives turned off stay off.
        let config = session_config(&PostgresOptions::new("host=h keepalives=0", 3)).unwrap();
        assert!(!config.get_keepalives());
        assert_eq!(config.get_keepalives_interval(), None);
        // A key that only ends like one is not the setting.
        assert!(!dsn_sets("host=h my_keepalives_idle=3", "keepalives_idle"));
        assert!(dsn_sets("keepalives_idle=3", "keepalives_idle"));
    }
}
