//! Server configuration (docs/configuration.md): the raw values of the settings table (`table`) turned
//! into one immutable [`Config`].

mod table;
pub use table::*;

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use golectra_common::settings::{self, ConfigError, INTERVAL_BOUNDS};

use crate::audit::AuditConfig;
use crate::client_addr::{self, IpNet};
use crate::expiry::ExpiryOptions;
use crate::history::HistoryOptions;
use crate::store::{KeyOptions, MaxMetrics};

/// Idempotency keys are held at least 10 minutes (longer than any retry horizon worth
/// having) and at most a week.
const RETENTION_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(600)..=Duration::from_secs(7 * 24 * 3600);

/// `STALE_AFTER`: one second to a year.
const STALE_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(365 * 24 * 3600);

/// `METRIC_TTL` when set: a minute (an expiry pass runs at most every few seconds, and a TTL
/// shorter than a report interval would remove live metrics) to a year.
const TTL_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(365 * 24 * 3600);

/// The shortest `ADMIN_TOKEN`: a bearer token must not be guessable.
const MIN_ADMIN_TOKEN: usize = 16;

/// The bounds of the connection timeouts: 1 ms to one day (a deadline further out would overflow
/// `Instant` arithmetic; nothing useful waits longer).
const TIMEOUT_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(24 * 60 * 60);

const INTRO: &str = "Golectra metrics server: stores gauges and counters pushed by agents and serves them over HTTP.";

/// Where metrics are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// The embedded memory store with its snapshot file.
    Memory {
        /// Snapshot file (`FILE_STORAGE_PATH`, default `metrics-db.json`).
        path: PathBuf,
        /// Time between snapshots (`STORE_INTERVAL`, default 300 s); zero = synchronous.
        interval: Duration,
        /// Load the snapshot at start (`RESTORE`, default false).
        restore: bool,
    },
    /// PostgreSQL (`DATABASE_DSN`, default empty = memory).
    Postgres {
        /// The connection string (URL or key=value pairs); it may hold a password.
        dsn: String,
        /// The file settings that were given but are ignored with a DSN, for a log line.
        ignored_file_settings: bool,
    },
}

/// Size limits of requests (docs/limits.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body on the wire (`MAX_BODY_SIZE`, default 4 MiB).
    pub max_body: usize,
    /// Largest body after inflation (`MAX_INFLATED_SIZE`, default 32 MiB).
    pub max_inflated: usize,
    /// Most items in one batch (`MAX_BATCH_ITEMS`, default 100 000).
    pub max_batch_items: usize,
}

/// Limits and timeouts of client connections (docs/limits.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Most open connections (`MAX_CONNECTIONS`, default 1024).
    pub max_connections: usize,
    /// Keep-alive wait for the next request (`IDLE_TIMEOUT`, default 60 s).
    pub idle_timeout: Duration,
    /// Whole request head once started (`HEADER_TIMEOUT`, default 10 s).
    pub header_timeout: Duration,
    /// Whole request body, and writing one response (`BODY_TIMEOUT`, default 30 s).
    pub body_timeout: Duration,
    /// One socket read or write during a request (`IO_TIMEOUT`, default 10 s).
    pub io_timeout: Duration,
    /// Request-body bytes buffered across all connections (`BODY_BUFFER_BUDGET`, default 256 MiB).
    pub body_buffer_budget: usize,
    /// Slowest acceptable body, bytes per second after its first 5 s (`MIN_BODY_RATE`, default
    /// 1 KiB/s; 0 = off).
    pub min_body_rate: usize,
    /// Most connections from one peer address (`MAX_CONNECTIONS_PER_PEER`, default 256; 0 = no
    /// cap).
    pub max_connections_per_peer: usize,
    /// Body bytes buffered for one peer address (`MAX_BUFFERED_PER_PEER`, default 64 MiB; 0 = no
    /// cap).
    pub max_buffered_per_peer: usize,
}

/// The files of HTTPS on the listener (docs/configuration.md, "TLS"); read by [`crate::tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (`TLS_CERT_FILE`).
    pub cert: PathBuf,
    /// PEM private key (`TLS_KEY_FILE`).
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates (`TLS_CLIENT_CA_FILE`); `None`: no
    /// client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

/// The server's configuration, immutable once parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Listen address (`ADDRESS`, default `:8080` = 0.0.0.0:8080).
    pub listen: SocketAddr,
    /// HTTPS on the listener (`TLS_CERT_FILE`, `TLS_KEY_FILE`, `TLS_CLIENT_CA_FILE`; default
    /// none: plain HTTP).
    pub tls: Option<TlsFiles>,
    /// Memory or PostgreSQL store.
    pub storage: Storage,
    /// Signing key (`KEY`, default none).
    pub key: Option<Vec<u8>>,
    /// Reject unsigned writes when a key is set (`REQUIRE_SIGNATURE`, default false).
    pub require_signature: bool,
    /// Audit file (`AUDIT_FILE`, default none).
    pub audit_file: Option<PathBuf>,
    /// Audit URL (`AUDIT_URL`, default none), `http://` or `https://`.
    pub audit_url: Option<String>,
    /// With an `https://` audit URL: its trust roots (`AUDIT_CA_FILE`, default the system trust
    /// store) and client certificate (`AUDIT_TLS_CLIENT_CERT_FILE`, `AUDIT_TLS_CLIENT_KEY_FILE`),
    /// read at start; `None` otherwise.
    pub audit_tls: Option<golectra_common::tls_client::ClientTls>,
    /// Peers whose `X-Real-IP` / `X-Forwarded-For` are believed in audit events
    /// (`TRUSTED_PROXIES`, default none).
    pub trusted_proxies: Vec<IpNet>,
    /// Worker threads (`WORKERS`, default 4 × cores).
    pub workers: usize,
    /// Size limits of request bodies and batches (docs/limits.md).
    pub limits: Limits,
    /// Most gauges, and most counters, stored (`MAX_METRICS`, default 1 000 000 each).
    pub max_metrics: MaxMetrics,
    /// Retention and count of idempotency keys (`IDEMPOTENCY_RETENTION`, default 1 h;
    /// `IDEMPOTENCY_MAX_KEYS`, default 1 000 000).
    pub keys: KeyOptions,
    /// History behind the sparklines (`HISTORY_INTERVAL`, default 5 s; `HISTORY_POINTS`,
    /// default 60; `HISTORY_MAX_BYTES`, default 128 MiB).
    pub history: HistoryOptions,
    /// Time between traffic summaries in the log (`SUMMARY_INTERVAL`, default 60 s; 0 = off).
    pub summary_interval: Duration,
    /// Staleness and expiry (`STALE_AFTER`, default 5 min; `METRIC_TTL`, default off;
    /// `EXPIRE_COUNTERS`, default false).
    pub expiry: ExpiryOptions,
    /// The bearer token that authorises deletes (`ADMIN_TOKEN`, default none: deletes only
    /// from loopback peers).
    pub admin_token: Option<String>,
    /// Connection count, timeouts and the body buffer budget (docs/limits.md).
    pub connections: Connections,
}

/// What the command line asks the server to do.
pub type Command = settings::Command<Box<Config>>;

impl Config {
    /// Builds the configuration from arguments (without the program name) and an environment.
    pub fn from_sources(
        args: impl IntoIterator<Item = impl Into<OsString>>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Command, ConfigError> {
        settings::parse("golectra-server", INTRO, SETTINGS, args, env, |values| {
            let listen = values.parse(&ADDRESS, parse_listen)?;
            let dsn = values.string(&DATABASE_DSN);
            let path = PathBuf::from(values.string(&FILE_STORAGE_PATH));
            let interval = values.duration_in(&STORE_INTERVAL, INTERVAL_BOUNDS, true)?;
            let restore = values.bool(&RESTORE)?;
            if path.as_os_str().is_empty() && dsn.is_empty() {
                return Err(FILE_STORAGE_PATH.invalid("", "a snapshot path is required"));
            }
            let storage = if dsn.trim().is_empty() {
                Storage::Memory {
                    path,
                    interval,
                    restore,
                }
            } else {
                // A DSN that cannot be parsed is a configuration error (exit 2), caught before any
                // connection attempt. The message never echoes the DSN: it may hold a password.
                if let Err(e) = dsn.parse::<postgres::Config>() {
                    return Err(ConfigError(format!(
                        "invalid {} value: {e} (expected postgres://user:password@host:port/db or key=value pairs such as host=h dbname=db)",
                        DATABASE_DSN.label()
                    )));
                }
                let ignored_file_settings = [&FILE_STORAGE_PATH, &STORE_INTERVAL, &RESTORE]
                    .into_iter()
                    .any(|setting| values.changed(setting));
                Storage::Postgres {
                    dsn,
                    ignored_file_settings,
                }
            };
            // Trimmed like the original, so a key with a stray newline or space checks and signs
            // exactly as a Go peer configured with the same file does.
            let key = Some(values.text(&KEY).trim().as_bytes().to_vec()).filter(|k| !k.is_empty());
            let workers = match values.given(&WORKERS) {
                None => default_workers(),
                Some(_) => values.number(&WORKERS, 1, 1024)? as usize,
            };
            let limits = Limits {
                max_body: values
                    .parse(&MAX_BODY_SIZE, |s| at_least(settings::parse_bytes(s)?, 1))?,
                max_inflated: values.parse(&MAX_INFLATED_SIZE, |s| {
                    at_least(settings::parse_bytes(s)?, 1)
                })?,
                max_batch_items: values.number(&MAX_BATCH_ITEMS, 1, u32::MAX as u64)? as usize,
            };
            let connections = Connections {
                max_connections: values.number(&MAX_CONNECTIONS, 1, 1 << 20)? as usize,
                idle_timeout: values.duration_in(&IDLE_TIMEOUT, TIMEOUT_BOUNDS, false)?,
                header_timeout: values.duration_in(&HEADER_TIMEOUT, TIMEOUT_BOUNDS, false)?,
                body_timeout: values.duration_in(&BODY_TIMEOUT, TIMEOUT_BOUNDS, false)?,
                io_timeout: values.duration_in(&IO_TIMEOUT, TIMEOUT_BOUNDS, false)?,
                body_buffer_budget: values.parse(&BODY_BUFFER_BUDGET, |s| {
                    at_least(settings::parse_bytes(s)?, 1)
                })?,
                min_body_rate: values.parse(&MIN_BODY_RATE, settings::parse_bytes)?,
                max_connections_per_peer: values.number(&MAX_CONNECTIONS_PER_PEER, 0, 1 << 20)?
                    as usize,
                max_buffered_per_peer: values
                    .parse(&MAX_BUFFERED_PER_PEER, settings::parse_bytes)?,
            };
            for (setting, budget, zero) in [
                (&BODY_BUFFER_BUDGET, connections.body_buffer_budget, ""),
                (
                    &MAX_BUFFERED_PER_PEER,
                    connections.max_buffered_per_peer,
                    "0 (no cap) or ",
                ),
            ] {
                if budget != 0 && budget < limits.max_body {
                    return Err(setting.invalid(
                        values.text(setting),
                        &format!(
                            "must be {zero}at least MAX_BODY_SIZE ({} bytes), or no body of the largest size could ever be buffered",
                            limits.max_body
                        ),
                    ));
                }
            }
            let optional = |setting| Some(values.string(setting)).filter(|s| !s.trim().is_empty());
            let audit_url = match optional(&AUDIT_URL) {
                None => None,
                Some(_) => Some(values.parse(&AUDIT_URL, |s| {
                    crate::audit::validate_url(s.trim())?;
                    Ok(s.trim().to_owned())
                })?),
            };
            let audit_tls = golectra_common::tls_client::ClientTls::from_settings(
                values,
                &AUDIT_TLS,
                audit_url.as_deref().is_some_and(crate::audit::is_https),
                &AUDIT_URL,
            )?;
            let trusted_proxies = values.parse(&TRUSTED_PROXIES, client_addr::parse_list)?;
            let tls = tls_files(
                optional(&TLS_CERT_FILE),
                optional(&TLS_KEY_FILE),
                optional(&TLS_CLIENT_CA_FILE),
            )?;
            let history = HistoryOptions {
                interval: values.duration_in(&HISTORY_INTERVAL, INTERVAL_BOUNDS, false)?,
                points: values.number(&HISTORY_POINTS, 0, 100_000)? as usize,
                max_bytes: values.parse(&HISTORY_MAX_BYTES, |s| {
                    at_least(settings::parse_bytes(s)?, 1)
                })?,
            };
            if history.points > 0 && history.max_bytes < history.series_bytes(0) {
                return Err(HISTORY_MAX_BYTES.invalid(
                    values.text(&HISTORY_MAX_BYTES),
                    &format!(
                        "must be at least the {} bytes one metric's history of HISTORY_POINTS={} costs",
                        history.series_bytes(0),
                        history.points
                    ),
                ));
            }
            let ttl = values.duration_in(&METRIC_TTL, TTL_BOUNDS, true)?;
            let expire_counters = values.bool(&EXPIRE_COUNTERS)?;
            if expire_counters && ttl.is_zero() {
                return Err(EXPIRE_COUNTERS.invalid(
                    values.text(&EXPIRE_COUNTERS),
                    "needs METRIC_TTL: without a TTL nothing expires",
                ));
            }
            let expiry = ExpiryOptions {
                stale_after: values.duration_in(&STALE_AFTER, STALE_BOUNDS, false)?,
                ttl: (!ttl.is_zero()).then_some(ttl),
                counters: expire_counters,
            };
            // The messages never echo the token: it is a secret.
            let bad_token =
                |why: String| ConfigError(format!("invalid {} value: {why}", ADMIN_TOKEN.label()));
            let admin_token = match values.text(&ADMIN_TOKEN).trim() {
                "" => None,
                token if token.chars().count() < MIN_ADMIN_TOKEN => {
                    return Err(bad_token(format!(
                        "it is {} characters long: at least {MIN_ADMIN_TOKEN} are required",
                        token.chars().count()
                    )));
                }
                token if token.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                    return Err(bad_token(
                        "it must not hold spaces or control characters (it is sent in an Authorization header)".into(),
                    ));
                }
                token => Some(token.to_owned()),
            };
            Ok(Box::new(Config {
                listen,
                tls,
                storage,
                key,
                require_signature: values.bool(&REQUIRE_SIGNATURE)?,
                audit_file: optional(&AUDIT_FILE).map(PathBuf::from),
                audit_url,
                audit_tls,
                trusted_proxies,
                workers,
                limits,
                max_metrics: MaxMetrics(values.number(&MAX_METRICS, 1, 1 << 32)? as usize),
                keys: KeyOptions {
                    retention: values.duration_in(
                        &IDEMPOTENCY_RETENTION,
                        RETENTION_BOUNDS,
                        false,
                    )?,
                    max_keys: values.number(&IDEMPOTENCY_MAX_KEYS, 1, 1 << 32)? as usize,
                },
                history,
                connections,
                summary_interval: values.duration_in(&SUMMARY_INTERVAL, INTERVAL_BOUNDS, true)?,
                expiry,
                admin_token,
            }))
        })
    }

    /// What the audit trail needs of this configuration.
    pub fn audit(&self) -> AuditConfig {
        AuditConfig {
            file: self.audit_file.clone(),
            url: self.audit_url.clone(),
            tls: self.audit_tls.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }

    /// The configuration with every setting at its default (no arguments, empty environment).
    pub fn defaults() -> Self {
        match Self::from_sources(Vec::<OsString>::new(), |_| None) {
            Ok(Command::Run(config)) => *config,
            other => unreachable!("the defaults are a valid configuration: {other:?}"),
        }
    }

    /// A configuration for tests: the defaults on `127.0.0.1:0` with `storage`, 4 workers and
    /// no traffic summaries.
    pub fn for_tests(storage: Storage) -> Self {
        Self {
            listen: "127.0.0.1:0".parse().expect("valid"),
            storage,
            workers: 4,
            summary_interval: Duration::ZERO,
            ..Self::defaults()
        }
    }
}

/// Both files or neither; a client CA only with them. The files are read at start
/// ([`crate::tls::Tls::load`]), so an unreadable one is an error naming its setting too.
fn tls_files(
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
) -> Result<Option<TlsFiles>, ConfigError> {
    let path = |s: String| PathBuf::from(s.trim());
    match (cert, key) {
        (None, None) => match client_ca {
            None => Ok(None),
            Some(ca) => Err(TLS_CLIENT_CA_FILE.invalid(
                &ca,
                "client certificates need TLS: set TLS_CERT_FILE and TLS_KEY_FILE too",
            )),
        },
        (Some(cert), None) => Err(TLS_KEY_FILE.invalid(
            "",
            &format!("TLS_CERT_FILE is set ({cert:?}): its private key is required too"),
        )),
        (None, Some(key)) => Err(TLS_CERT_FILE.invalid(
            "",
            &format!("TLS_KEY_FILE is set ({key:?}): its certificate is required too"),
        )),
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: path(cert),
            key: path(key),
            client_ca: client_ca.map(path),
        })),
    }
}

fn at_least(n: usize, min: usize) -> Result<usize, String> {
    if n >= min {
        Ok(n)
    } else {
        Err(format!("must be at least {min}"))
    }
}

/// Default worker count: four per core. Workers block on the store (fsync in sync mode, the
/// database with PostgreSQL), so a few more threads than cores keep the CPUs busy.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 4
}

/// Parses `host:port`, `:port`, `port` or `http://host:port`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let trimmed = text.trim();
    let without_scheme = trimmed
        .strip_prefix("http://")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    let candidate = if let Some(port) = without_scheme.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if !without_scheme.is_empty() && without_scheme.bytes().all(|b| b.is_ascii_digit()) {
        format!("0.0.0.0:{without_scheme}")
    } else {
        without_scheme.to_owned()
    };
    let port_ok = candidate
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    if !port_ok {
        return Err("expected host:port, :port, port or http://host:port".into());
    }
    candidate
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "the host resolves to no address".into())
}

#[cfg(test)]
mod tests;
