//! Is the running server really serving? Answers that for systemd: the watchdog thread started
//! by `main` under `Type=notify` asks the server's own HTTP pool for `GET /ping` every
//! `WATCHDOG_USEC/2` and sends `WATCHDOG=1` only when a complete answer came back in time.
//!
//! Why a request over the socket rather than a heartbeat flag: an answer proves the whole path a
//! client depends on — the listener accepts, a worker of the fixed pool is free to take the
//! request, the router runs, the store answers `ping()` — where a flag set by some thread proves
//! only that this thread runs. If every worker is stuck (a wedged lock, a hung store call) the
//! probe times out, the pings stop, and systemd restarts the service after `WatchdogSec`.
//!
//! A `503` from `/ping` (PostgreSQL unreachable) still counts as alive: the process is healthy
//! and restarting it cannot bring the database back — it would only turn degraded service into
//! a crash loop, because the server refuses to start without its database. That state is
//! reported in `STATUS=` and in the log instead.
//!
//! Over TLS the probe speaks HTTPS to the same listener without verifying the certificate: it
//! connects to its own process's port on loopback (the certificate names the public host, not
//! `127.0.0.1`) and sends nothing secret. Under mTLS it presents the in-memory identity the
//! server's client verifier accepts ([`crate::tls`]).
//!
//! Each tick also counts the stored metrics for `STATUS=`, which takes the store's read lock:
//! a store whose lock never comes free stops the pings too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use golectra_common::notify::Notifier;

use crate::store::Store;
use crate::ticker::{FirstRun, Ticker};
use crate::tls::ProbeIdentity;

/// How often `STATUS=` is refreshed when systemd asked for no watchdog.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(30);

/// What the server answered on `/ping`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// `200`: serving, store healthy.
    Serving,
    /// `503`: serving, but the store is unavailable; the reason as the server gave it.
    StoreUnavailable(String),
}

/// Where the probe asks: the listener's address, and whether it speaks TLS.
#[derive(Debug, Clone)]
pub struct Target {
    /// The listen address (a wildcard address is probed on loopback).
    pub addr: SocketAddr,
    /// `None`: plain HTTP. `Some(None)`: HTTPS. `Some(Some(identity))`: HTTPS with this client
    /// certificate (mTLS).
    pub tls: Option<Option<ProbeIdentity>>,
}

impl Target {
    /// A plain HTTP listener.
    pub fn plain(addr: SocketAddr) -> Self {
        Self { addr, tls: None }
    }

    /// `http://` or `https://`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Asks the plain HTTP server listening on `listen` for `GET /ping` ([`check`]).
pub fn probe(listen: SocketAddr, timeout: Duration) -> Result<Health, String> {
    check(&Target::plain(listen), timeout)
}

/// Asks the server at `target` for `GET /ping`, allowing `timeout` in all. `Err` says why no
/// usable answer came back (connection refused, timeout, an unexpected status).
pub fn check(server: &Target, timeout: Duration) -> Result<Health, String> {
    let target = reachable(server.addr);
    let mut config = ureq::Agent::config_builder();
    if let Some(identity) = &server.tls {
        config = config.tls_config(probe_tls(identity.as_ref()));
    }
    let agent: ureq::Agent = config
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .user_agent("golectra-watchdog")
        .build()
        .into();
    let url = format!("{}://{target}/ping", server.scheme());
    let mut answer = agent
        .get(&url)
        .header("Connection", "close")
        .call()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => format!("no answer from {target} within {timeout:?}"),
            ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                format!("cannot connect to {target}: {e}")
            }
            e => format!("no usable answer from {target}: {e}"),
        })?;
    let status = answer.status().as_u16();
    // The answer is a few dozen bytes; the cap only guards against a confused peer.
    let body = answer
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    match status {
        200 => Ok(Health::Serving),
        503 => Ok(Health::StoreUnavailable(first_line(body.trim()).to_owned())),
        other => Err(format!(
            "/ping answered {other}: {}",
            first_line(body.trim())
        )),
    }
}

/// The probe's TLS: no certificate verification (see the module doc), its own identity under
/// mTLS.
fn probe_tls(identity: Option<&ProbeIdentity>) -> ureq::tls::TlsConfig {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, TlsConfig, TlsProvider};
    let client = identity.and_then(|id| {
        let key = PrivateKey::from_pem(id.key_pem.as_bytes()).ok()?;
        Some(ClientCert::new_with_certs(
            &[Certificate::from_der(&id.cert_der).to_owned()],
            key,
        ))
    });
    TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(crate::tls::provider())
        .disable_verification(true)
        .client_cert(client)
        .build()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Where to connect to reach a listener: the wildcard addresses become loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// The `STATUS=` line: where the server serves and how many metrics it holds.
pub fn status_line(server: &Target, store: &dyn Store) -> String {
    let (scheme, listen) = (server.scheme(), server.addr);
    match store.count() {
        Ok((gauges, counters)) => {
            let n = gauges + counters;
            format!(
                "serving on {scheme}://{listen}, {} store, {n} metric{}",
                store.kind(),
                if n == 1 { "" } else { "s" }
            )
        }
        Err(e) => format!("serving on {scheme}://{listen}, {e}"),
    }
}

/// The thread that proves progress to systemd: `WATCHDOG=1` after each successful [`probe`],
/// and a fresh `STATUS=` line. Runs only when a service manager listens.
pub struct Watchdog {
    ticker: Ticker,
}

impl Watchdog {
    /// Starts the thread if `notifier` talks to a service manager; `None` otherwise.
    pub fn spawn(
        notifier: Arc<Notifier>,
        server: Target,
        store: Arc<dyn Store>,
    ) -> std::io::Result<Option<Self>> {
        if !notifier.is_enabled() {
            return Ok(None);
        }
        let pinging = notifier.watchdog_interval();
        let interval = pinging.unwrap_or(STATUS_INTERVAL);
        let mut last_problem: Option<String> = None;
        let ticker = Ticker::spawn("watchdog", interval, FirstRun::AfterInterval, move || {
            let (alive, problem) = match check(&server, interval) {
                Ok(Health::Serving) => (true, None),
                Ok(Health::StoreUnavailable(why)) => {
                    (true, Some(format!("degraded: /ping answers 503: {why}")))
                }
                Err(why) => (false, Some(format!("not answering: {why}"))),
            };
            if alive && pinging.is_some() {
                notifier.watchdog();
            }
            if problem != last_problem {
                match &problem {
                    Some(p) if alive => log::warn!("health check: {p}"),
                    Some(p) => {
                        log::error!("health check: {p}; the systemd watchdog is not pinged")
                    }
                    None => log::info!("health check: serving again"),
                }
            }
            match &problem {
                Some(p) => notifier.status(p),
                None => notifier.status(&status_line(&server, store.as_ref())),
            }
            last_problem = problem;
        })?;
        Ok(Some(Self { ticker }))
    }

    /// Stops the thread (no more `WATCHDOG=1`) and waits for it.
    pub fn stop(self) {
        self.ticker.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_probed_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:8080".parse().unwrap()),
            "[::1]:8080".parse().unwrap()
        );
        assert_eq!(
            reachable("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse().unwrap()
        );
    }

    #[test]
    fn nothing_listening_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is dropped: the port refuses connections.
        assert!(probe(port, Duration::from_secs(2)).is_err());
    }
}
