//! One attempt at a report over HTTP: the frozen JSON → gzip → `POST {server}/updates/` with
//! `Content-Encoding: gzip`, `Content-Type: application/json`, `Idempotency-Key` and, with a
//! signing key, `HashSHA256` over the uncompressed JSON (the original's header, which every
//! server checks) and `Golectra-Signature` over the endpoint, the key, the time of the attempt
//! and the JSON (which a server in strict mode requires and any other server ignores; see
//! docs/signing.md). Both are computed again for every attempt.
//!
//! Each answer is sorted into what [`crate::in_doubt`] acts on: `2xx` delivered; a transport
//! error, a timeout, `408`, `429` or `5xx` unknown; any other status a refusal. A server that
//! answers `404` or `405` on `/updates/` predates batches: it gets the metrics one by one on
//! `/update/`, metric `i` keyed `<key>.<i>`, and a re-send resumes after the last metric that
//! got a definite answer.
//!
//! An `https://` server is verified against the roots of [`ClientTls`] (`CA_FILE` or the system
//! trust store), with the client certificate when one is configured; a plain `http://` server
//! is reached without any TLS configuration at all. A TLS failure (the server's certificate
//! does not verify, the server refuses the client's) is logged as an error naming its cause
//! when it first happens and whenever its cause changes, and the report is treated like one in
//! doubt: kept and re-sent with its key (docs/agent.md, "TLS").
//!
//! Timeouts: 3 s to connect, 60 s for the answer, 65 s for the whole request. The answer may
//! take long because the server answers only once the write is durable, and its own worst case
//! for a batch write (PostgreSQL retries included: 52 s, docs/postgresql.md) is shorter than
//! 60 s: giving up earlier would leave reports in doubt that were merely slow.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use golectra_common::tls_client::ClientTls;
use golectra_common::{gzip, signature, signed_request};

use crate::in_doubt::{Attempt, Transport};
use crate::report::Report;

/// The request header carrying a report's key (SPEC §3.6).
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Time allowed to open a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for the server to answer once the request is sent.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound of one whole request, connection to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(65);
/// Largest response body read (and discarded) so that the connection can be reused.
const MAX_RESPONSE: u64 = 64 << 10;

/// What one request's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Ok,
    /// 404/405: the endpoint does not exist on this server.
    NoSuchEndpoint(u16),
    /// The outcome is unknown (the text says why).
    Unknown(String),
    /// A definite refusal.
    Refused(String),
}

/// Where a report stands in the one-by-one fallback.
#[derive(Debug, Default)]
pub struct Progress {
    /// `Some` once `/updates/` answered 404/405 for this report.
    singles: Option<Singles>,
}

#[derive(Debug, Default)]
struct Singles {
    /// The first metric without a definite answer.
    next: usize,
    /// The metrics refused so far.
    refused: Vec<String>,
}

/// Posts reports; shared by every sender worker (the ureq agent pools connections).
pub struct HttpSender {
    agent: ureq::Agent,
    server: String,
    key: Option<Vec<u8>>,
    tls: Option<ClientTls>,
    fallback_logged: AtomicBool,
    /// The cause of the last TLS failure logged, until a request gets through again.
    tls_failure: Mutex<Option<String>>,
}

impl HttpSender {
    /// A sender to `server` (a base URL from [`crate::config::parse_server`]); `tls` is `Some`
    /// exactly for an `https://` server.
    pub fn new(
        server: &str,
        key: Option<Vec<u8>>,
        workers: usize,
        tls: Option<&ClientTls>,
    ) -> Self {
        let mut config = ureq::Agent::config_builder();
        if let Some(tls) = tls {
            config = config.tls_config(tls.ureq_config());
        }
        let agent = config
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_idle_connections(workers)
            .max_idle_connections_per_host(workers)
            .user_agent(format!(
                "golectra-agent/{}",
                golectra_common::version::VERSION
            ))
            .build()
            .into();
        Self {
            agent,
            server: server.to_owned(),
            key,
            tls: tls.cloned(),
            fallback_logged: AtomicBool::new(false),
            tls_failure: Mutex::new(None),
        }
    }

    /// What a failed request means: with TLS, a TLS failure is logged (once per cause) and
    /// named; the report stays in doubt either way.
    fn failed(&self, url: &str, error: &ureq::Error) -> Reply {
        let Some(cause) = self.tls.as_ref().and_then(|tls| tls.explain(error)) else {
            return Reply::Unknown(format!("POST {url}: {error}"));
        };
        let mut last = self.tls_failure.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() != Some(cause.as_str()) {
            log::error!(
                "TLS handshake with {} failed: {cause}; the report is kept and re-sent with the same key",
                self.server
            );
            *last = Some(cause.clone());
        }
        Reply::Unknown(format!("POST {url}: TLS handshake failed: {cause}"))
    }

    /// A request got through: a TLS failure logged before is over.
    fn got_through(&self) {
        if self.tls.is_none() {
            return;
        }
        let mut last = self.tls_failure.lock().unwrap_or_else(|p| p.into_inner());
        if last.take().is_some() {
            log::info!("TLS handshake with {} succeeds again", self.server);
        }
    }

    /// The fallback for servers without `/updates/`: every metric not yet answered, in order,
    /// until one's outcome is unknown. Refused metrics are dropped (and named in the refusal).
    fn one_by_one(
        &self,
        report: &Report,
        singles: &mut Singles,
        deadline: Option<Instant>,
    ) -> Attempt {
        let bodies = report.single_bodies();
        while let Some((id, body)) = bodies.get(singles.next) {
            let key = report.metric_key(singles.next);
            match self.post("/update/", body, &key, deadline) {
                Reply::Ok => {}
                Reply::Refused(e) => singles.refused.push(format!("{id}: {e}")),
                Reply::NoSuchEndpoint(status) => singles
                    .refused
                    .push(format!("{id}: /update/ answered {status}")),
                Reply::Unknown(e) => return Attempt::Unknown(e),
            }
            singles.next += 1;
        }
        if singles.refused.is_empty() {
            Attempt::Delivered
        } else {
            Attempt::Refused(format!(
                "{} of {} metrics refused ({})",
                singles.refused.len(),
                bodies.len(),
                singles.refused.join("; ")
            ))
        }
    }

    fn post(&self, path: &str, json: &[u8], key: &str, deadline: Option<Instant>) -> Reply {
        let url = format!("{}{path}", self.server);
        let compressed = gzip::compress(json);
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .header("Accept-Encoding", "identity")
            .header(IDEMPOTENCY_KEY, key);
        if let Some(secret) = &self.key {
            let at = signed_request::unix_now();
            request = request
                .header(signature::HEADER, signature::sign(json, secret))
                .header(
                    signed_request::HEADER,
                    signed_request::sign(secret, at, path, key, json),
                );
        }
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Reply::Unknown("deadline reached".into());
            }
            request = request
                .config()
                .timeout_global(Some(left.min(REQUEST_TIMEOUT)))
                .build();
        }
        let mut response = match request.send(&compressed[..]) {
            Ok(response) => response,
            Err(e) => return self.failed(&url, &e),
        };
        self.got_through();
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .unwrap_or_default();
        classify(status, &format!("POST {url}: {status} {}", answer.trim()))
    }
}

impl Transport for HttpSender {
    type Progress = Progress;

    fn attempt(
        &self,
        report: &Report,
        progress: &mut Progress,
        deadline: Option<Instant>,
    ) -> Attempt {
        if progress.singles.is_none() {
            match self.post("/updates/", &report.body, &report.key, deadline) {
                Reply::Ok => return Attempt::Delivered,
                Reply::Refused(why) => return Attempt::Refused(why),
                Reply::Unknown(why) => return Attempt::Unknown(why),
                Reply::NoSuchEndpoint(status) => {
                    if !self.fallback_logged.swap(true, Ordering::Relaxed) {
                        log::info!(
                            "{}/updates/ answered {status}: sending metrics one by one to /update/",
                            self.server
                        );
                    }
                }
            }
        }
        let singles = progress.singles.get_or_insert_with(Singles::default);
        self.one_by_one(report, singles, deadline)
    }
}

/// What a status means for a report; `text` describes the answer.
fn classify(status: u16, text: &str) -> Reply {
    match status {
        200..=299 => Reply::Ok,
        404 | 405 => Reply::NoSuchEndpoint(status),
        408 | 429 | 500..=599 => Reply::Unknown(text.to_owned()),
        _ => Reply::Refused(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::accumulator::Batch;
    use crate::report::Keys;

    fn report() -> Report {
        Keys::fresh().cut(&Batch {
            gauges: vec![("g", 1.0)],
            counters: vec![("PollCount", 2)],
        })
    }

    #[test]
    fn statuses_are_delivered_unknown_or_refused() {
        for ok in [200, 202, 204] {
            assert_eq!(classify(ok, ""), Reply::Ok, "{ok}");
        }
        for unknown in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(unknown, ""), Reply::Unknown(_)),
                "{unknown}"
            );
        }
        for refused in [400, 401, 403, 409, 413, 422, 301] {
            assert!(
                matches!(classify(refused, ""), Reply::Refused(_)),
                "{refused}"
            );
        }
        assert_eq!(classify(404, ""), Reply::NoSuchEndpoint(404));
        assert_eq!(classify(405, ""), Reply::NoSuchEndpoint(405));
    }

    #[test]
    fn an_unreachable_server_leaves_the_report_in_doubt() {
        // A port nobody listens on: bind, note the port, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sender = HttpSender::new(&format!("http://127.0.0.1:{port}"), None, 1, None);
        let deadline = Instant::now() + Duration::from_millis(500);
        let attempt = sender.attempt(&report(), &mut Progress::default(), Some(deadline));
        assert!(matches!(attempt, Attempt::Unknown(_)), "{attempt:?}");
    }

    /// `(Idempotency-Key, body)` of each request a test server saw.
    type Requests = Vec<(String, Vec<u8>)>;

    /// Accepts `n` connections, reads each request to the end of its body, and closes the
    /// connection without a word; returns the requests' `Idempotency-Key`s and bodies.
    fn swallowing_server(n: usize) -> (String, std::thread::JoinHandle<Requests>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for stream in listener.incoming().take(n) {
                let mut reader = BufReader::new(stream.unwrap());
                let (mut length, mut key) = (0, String::new());
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    let (name, value) = line.split_once(':').unwrap_or((line, ""));
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse().unwrap(),
                        "idempotency-key" => key = value.trim().to_owned(),
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.push((key, body));
                // Dropping the stream closes the connection with the answer never written.
                let _ = reader.get_mut().flush();
            }
            seen
        });
        (url, thread)
    }

    #[test]
    fn a_connection_closed_after_the_body_was_sent_leaves_the_report_in_doubt() {
        let (url, server) = swallowing_server(2);
        let sender = HttpSender::new(&url, None, 1, None);
        let report = report();
        let mut progress = Progress::default();
        for _ in 0..2 {
            let attempt = sender.attempt(&report, &mut progress, None);
            assert!(matches!(attempt, Attempt::Unknown(_)), "{attempt:?}");
        }
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 2);
        for (key, body) in seen {
            assert_eq!(key, report.key, "the same key on the re-send");
            assert_eq!(
                golectra_common::gzip::inflate_unbounded(&body).unwrap(),
                report.body,
                "the same JSON on the re-send"
            );
        }
    }
}
