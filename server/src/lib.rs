//! The Golectra server as a library: [`Server::start`] opens the store, binds the listener and
//! starts the worker pool; [`Server::shutdown`] drains requests and makes everything durable.
//! `main.rs` wraps it with configuration, logging and signals; tests start it in-process.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod app;
pub mod audit;
pub mod client_addr;
pub mod config;
pub mod expiry;
pub mod exposition;
pub mod health;
pub mod history;
pub mod http;
pub mod process;
pub mod store;
pub mod store_slots;
pub mod summary;
pub mod ticker;
pub mod tls;
pub mod traffic;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use app::App;
use config::{Config, Storage};
use history::{History, Sampler};
use http::HttpServer;
use store::Store;
use store::memory::{MemoryStore, SnapshotOptions};
use store::postgres::{PostgresOptions, PostgresStore};

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The store could not be opened (snapshot directory not writable, the history sampler
    /// did not start).
    Store(String),
    /// The PostgreSQL store could not be opened (bad DSN, database unreachable or refusing).
    Postgres(store::postgres::OpenError),
    /// The listen address could not be bound.
    Bind {
        /// The address from the configuration (`ADDRESS`).
        addr: SocketAddr,
        /// Why binding failed (address in use, permission denied, …).
        error: std::io::Error,
    },
    /// An audit sink could not be set up.
    Audit(String),
    /// A TLS file is unusable (a configuration error: `main` exits 2).
    Tls(tls::TlsError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(why) => write!(f, "cannot open the store: {why}"),
            Self::Postgres(e) => write!(f, "cannot open the store: {e}"),
            Self::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
            Self::Audit(why) => write!(f, "cannot set up the audit trail: {why}"),
            Self::Tls(e) => write!(f, "cannot set up TLS: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server.
pub struct Server {
    http: HttpServer,
    app: Arc<App>,
    sampler: Option<Sampler>,
    summary: Option<summary::Summary>,
    expiry: Option<ticker::Ticker>,
    tls: Option<Arc<tls::Tls>>,
}

impl Server {
    /// Opens the store and starts serving.
    pub fn start(config: &Config) -> Result<Self, StartError> {
        // The TLS files first: a bad one is a configuration error, found before anything opens.
        let tls = match &config.tls {
            None => None,
            Some(files) => Some(Arc::new(tls::Tls::load(files).map_err(StartError::Tls)?)),
        };
        let store = open_store(config)?;
        let audit = match audit::Audit::start(&config.audit()) {
            Ok(audit) => audit,
            Err(why) => {
                let _ = store.close();
                return Err(StartError::Audit(why));
            }
        };
        let history = Arc::new(History::new(config.history));
        let sampler = match Sampler::spawn(history.clone(), store.clone()) {
            Ok(sampler) => sampler,
            Err(e) => {
                audit.close();
                let _ = store.close();
                return Err(StartError::Store(format!(
                    "cannot start the history sampler: {e}"
                )));
            }
        };
        let app = Arc::new(App {
            store,
            audit,
            key: config.key.clone(),
            require_signature: config.require_signature,
            limits: config.limits,
            max_metrics: config.max_metrics,
            started: Instant::now(),
            stats: traffic::HttpStats::default(),
            history,
            listener: std::sync::OnceLock::new(),
            store_slots: store_slots::StoreSlots::for_workers(config.workers),
            expiry: config.expiry,
            expiry_stats: Default::default(),
            admin_token: config.admin_token.clone(),
        });
        let http = match HttpServer::start(
            config.listen,
            config.workers,
            &config.connections,
            tls.as_ref().map(|t| t.acceptor()),
            app.clone(),
        ) {
            Ok(http) => http,
            Err(error) => {
                if let Some(sampler) = sampler {
                    sampler.stop();
                }
                app.audit.close();
                let _ = app.store.close();
                return Err(StartError::Bind {
                    addr: config.listen,
                    error,
                });
            }
        };
        // Expiry is opt-in housekeeping: without its thread the server still serves.
        let expiry = expiry::spawn(app.store.clone(), app.expiry, app.expiry_stats.clone())
            .unwrap_or_else(|e| {
                log::error!("cannot start the expiry thread: metrics do not expire: {e}");
                None
            });
        // The traffic summary is a convenience: without it the server still serves.
        let summary =
            summary::Summary::spawn(config.summary_interval, app.clone()).unwrap_or_else(|e| {
                log::warn!("cannot start the traffic summary thread: {e}");
                None
            });
        Ok(Self {
            http,
            app,
            sampler,
            summary,
            expiry,
            tls,
        })
    }

    /// Re-reads the TLS files (`SIGHUP`): new connections get the new certificate, established
    /// ones keep theirs. `Ok(false)`: the server speaks no TLS. On error nothing changes.
    pub fn reload_tls(&self) -> Result<bool, tls::TlsError> {
        match &self.tls {
            None => Ok(false),
            Some(tls) => tls.reload().map(|()| true),
        }
    }

    /// How the watchdog reaches this server's `/ping` (scheme, and the probe's identity under
    /// mTLS).
    pub fn probe_target(&self) -> health::Target {
        health::Target {
            addr: self.local_addr(),
            tls: self.tls.as_ref().map(|t| {
                t.requires_client_certificates()
                    .then(|| t.probe_identity().clone())
            }),
        }
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Connection counters (open, cap, evicted, refused, 408, 431…) for monitoring.
    pub fn connection_stats(&self) -> tiny_http::ConnectionStats {
        self.http.connection_stats()
    }

    /// The store, for tests and embedding.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.app.store
    }

    /// The audit trail, for its counters.
    pub fn audit(&self) -> &audit::Audit {
        &self.app.audit
    }

    /// Stops accepting work, answers the requests already received, delivers pending audit
    /// events and makes the store durable (final snapshot).
    pub fn shutdown(self) -> Result<(), store::StoreError> {
        if let Some(summary) = self.summary {
            summary.stop();
        }
        if let Some(expiry) = self.expiry {
            expiry.stop();
        }
        self.http.shutdown();
        if let Some(sampler) = self.sampler {
            sampler.stop();
        }
        self.app.audit.close();
        self.app.store.close()
    }
}

fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    match &config.storage {
        Storage::Memory {
            path,
            interval,
            restore,
        } => {
            let options = SnapshotOptions {
                path: path.clone(),
                interval: *interval,
                restore: *restore,
                keys: config.keys,
                max_metrics: config.max_metrics,
            };
            let store = MemoryStore::open(options)
                .map_err(|e| StartError::Store(format!("{}: {e}", path.display())))?;
            Ok(store)
        }
        Storage::Postgres {
            dsn,
            ignored_file_settings,
        } => {
            if *ignored_file_settings {
                log::info!(
                    "DATABASE_DSN is set: FILE_STORAGE_PATH, STORE_INTERVAL and RESTORE are ignored"
                );
            }
            let options = PostgresOptions {
                keys: config.keys,
                max_metrics: config.max_metrics,
                ..PostgresOptions::new(dsn, config.workers)
            };
            let store = PostgresStore::open(&options).map_err(StartError::Postgres)?;
            Ok(store)
        }
    }
}

/// One line describing the configuration for the start-up log; the key is never shown.
pub fn describe(config: &Config) -> String {
    let storage = match &config.storage {
        Storage::Memory {
            path,
            interval,
            restore,
        } => {
            let mode = if interval.is_zero() {
                "every write durable before its 200".to_owned()
            } else {
                format!("snapshot every {}", humantime::format_duration(*interval))
            };
            format!(
                "memory store, snapshot {} ({mode}), restore {restore}",
                path.display()
            )
        }
        Storage::Postgres { dsn, .. } => format!("PostgreSQL store at {}", mask_dsn(dsn)),
    };
    let tls = match &config.tls {
        None => "TLS off".to_owned(),
        Some(files) => format!(
            "TLS on (certificate {}, {})",
            files.cert.display(),
            match &files.client_ca {
                Some(ca) => format!("client certificates signed by {} required", ca.display()),
                None => "no client certificates".to_owned(),
            }
        ),
    };
    format!(
        "{storage}, at most {} gauges and {} counters; {tls}; key {}{}; {} workers; body limit {} B on the wire, {} B inflated, {} items per batch; {}; audit file {}, audit URL {}, trusted proxies {}; history {}",
        config.max_metrics.0,
        config.max_metrics.0,
        if config.key.is_some() {
            "set (hidden)"
        } else {
            "not set"
        },
        match (config.require_signature, config.key.is_some()) {
            (true, true) => ", Golectra-Signature required on writes",
            (true, false) => ", REQUIRE_SIGNATURE has no effect without a key",
            (false, _) => "",
        },
        config.workers,
        config.limits.max_body,
        config.limits.max_inflated,
        config.limits.max_batch_items,
        describe_connections(&config.connections),
        config
            .audit_file
            .as_ref()
            .map_or("off".into(), |p| p.display().to_string()),
        config.audit_url.as_deref().unwrap_or("off"),
        if config.trusted_proxies.is_empty() {
            "none".to_owned()
        } else {
            config
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        },
        if config.history.points == 0 {
            "off".to_owned()
        } else {
            format!(
                "{} points every {}, at most {} B",
                config.history.points,
                humantime::format_duration(config.history.interval),
                config.history.max_bytes
            )
        },
    )
}

fn describe_connections(c: &config::Connections) -> String {
    let d = |t| humantime::format_duration(t);
    format!(
        "at most {} connections, timeouts idle {} head {} body {} io {}, body buffer {} B",
        c.max_connections,
        d(c.idle_timeout),
        d(c.header_timeout),
        d(c.body_timeout),
        d(c.io_timeout),
        c.body_buffer_budget
    )
}

/// Hides the password of a DSN: in URL form (`postgres://u:secret@h1,h2/db`, and a
/// `password=` query parameter) or key=value form (`password=secret`, `password = 'a b'`).
pub fn mask_dsn(dsn: &str) -> String {
    if let Some((scheme, rest)) = dsn.split_once("://") {
        let (before_query, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(at) => before_query.split_at(at),
            None => (before_query, ""),
        };
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{hosts}"),
                None => authority.to_owned(),
            },
            None => authority.to_owned(),
        };
        let query = query.map(|query| {
            let params: Vec<&str> = query
                .split('&')
                .map(|p| {
                    if p.starts_with("password=") {
                        "password=***"
                    } else {
                        p
                    }
                })
                .collect();
            format!("?{}", params.join("&"))
        });
        return format!("{scheme}://{authority}{path}{}", query.unwrap_or_default());
    }
    mask_key_value(dsn)
}

/// [`mask_dsn`] of the key=value form: values may be quoted (`'…'`, with `\'` and `\\`
/// escapes) and `=` may have spaces around it, as libpq allows.
fn mask_key_value(dsn: &str) -> String {
    let mut out = String::with_capacity(dsn.len());
    let mut rest = dsn;
    loop {
        let trimmed = rest.trim_start();
        out.push_str(&rest[..rest.len() - trimmed.len()]);
        if trimmed.is_empty() {
            return out;
        }
        let key_len = trimmed
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(trimmed.len());
        let key = &trimmed[..key_len];
        let after_key = &trimmed[key_len..];
        let after_spaces = after_key.trim_start();
        let Some(value) = after_spaces.strip_prefix('=') else {
            // Not key=value: kept as is (the parser rejects it anyway).
            out.push_str(&trimmed[..key_len]);
            rest = after_key;
            continue;
        };
        let value_start = value.trim_start();
        let value_len = if let Some(quoted) = value_start.strip_prefix('\'') {
            let mut escaped = false;
            let end = quoted
                .char_indices()
                .find(|&(_, c)| {
                    let end = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                })
                .map_or(quoted.len(), |(i, _)| i + 1);
            1 + end
        } else {
            value_start
                .find(char::is_whitespace)
                .unwrap_or(value_start.len())
        };
        let head_len = trimmed.len() - value_start.len();
        out.push_str(&trimmed[..head_len]);
        if key == "password" {
            out.push_str("***");
        } else {
            out.push_str(&value_start[..value_len]);
        }
        rest = &value_start[value_len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_passwords_are_masked() {
        assert_eq!(
            mask_dsn("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(mask_dsn("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            mask_dsn("host=h password=secret user=u"),
            "host=h password=*** user=u"
        );
        // Several hosts, a password in the query, quoted values with spaces and escapes.
        assert_eq!(
            mask_dsn("postgres://u:s@cret@db1:5432,db2:5433/m?target_session_attrs=read-write"),
            "postgres://u:***@db1:5432,db2:5433/m?target_session_attrs=read-write"
        );
        assert_eq!(
            mask_dsn("postgresql://u@db1,db2/m?password=secret&sslmode=disable"),
            "postgresql://u@db1,db2/m?password=***&sslmode=disable"
        );
        assert_eq!(
            mask_dsn("host=db1,db2 port=1,2 password = 'it\\'s a secret' user=u"),
            "host=db1,db2 port=1,2 password = *** user=u"
        );
        assert_eq!(mask_dsn("password='a\\\\' user=u"), "password=*** user=u");
        assert_eq!(
            mask_dsn("host=h  odd password="),
            "host=h  odd password=***"
        );
    }
}
