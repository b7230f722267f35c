//! Delivery of one report to the server: JSON → gzip → `POST {server}/updates/` with
//! `Content-Encoding: gzip`, `Content-Type: application/json` and, with a key, `HashSHA256`
//! over the uncompressed JSON (docs/http-api.md, docs/agent.md).
//!
//! Connection errors, timeouts, 429 and 5xx are retried after 1 s, 3 s and 5 s; other 4xx are
//! final (logged and dropped by the caller). A server that answers 404 or 405 on `/updates/`
//! predates batches: it gets the metrics one by one on `/update/`. Whatever could not be
//! delivered comes back to the caller as counter deltas to merge into the accumulator — gauges
//! need no such care, the next report carries their latest values anyway.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, after, never, select};
use golectra_common::{Metric, gzip, signature};

use crate::accumulator::{Batch, Name};

/// Waits before the 2nd, 3rd and 4th attempt.
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(5),
];

/// Time allowed to open a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for the server to answer once the request is sent.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of one whole request, connection to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read (and discarded) so that the connection can be reused.
const MAX_RESPONSE: u64 = 64 << 10;

/// How a report ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The server acknowledged every metric.
    Delivered,
    /// The server refused the report with a 4xx that retrying cannot fix (bad signature, bad
    /// request): the report is dropped, as the original does.
    Rejected(String),
    /// The report could not be delivered (server down, retries exhausted, shutdown or deadline
    /// reached). `undelivered` are the counter deltas to merge back.
    Failed {
        error: String,
        undelivered: Vec<(Name, i64)>,
    },
}

/// When to stop retrying.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    /// Disconnects (or receives) when the agent shuts down: retry waits end at once.
    pub stop: Receiver<()>,
    /// No attempt starts, and no request runs, past this instant.
    pub deadline: Option<Instant>,
}

impl RetryBudget {
    /// Retries until `stop` fires.
    pub fn until_stopped(stop: Receiver<()>) -> Self {
        Self {
            stop,
            deadline: None,
        }
    }

    /// Retries until the deadline, whatever happens elsewhere (the final report).
    pub fn until(deadline: Instant) -> Self {
        Self {
            stop: never(),
            deadline: Some(deadline),
        }
    }

    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Waits `delay` unless stopped or past the deadline; `false` means "give up".
    fn wait(&self, delay: Duration) -> bool {
        if self.remaining().is_some_and(|left| left <= delay) {
            return false;
        }
        select! {
            recv(self.stop) -> _ => false,
            recv(after(delay)) -> _ => true,
        }
    }
}

/// One attempt's result.
enum Attempt {
    Ok,
    /// Worth retrying: transport error, timeout, 429, 5xx.
    Transient(String),
    /// 404/405: the endpoint does not exist on this server.
    NoSuchEndpoint(u16),
    /// Any other status: retrying will not help.
    Final(String),
}

/// Posts reports; shared by every sender worker (the ureq agent pools connections).
pub struct HttpSender {
    agent: ureq::Agent,
    server: String,
    key: Option<Vec<u8>>,
    fallback_logged: AtomicBool,
}

impl HttpSender {
    pub fn new(server: &str, key: Option<Vec<u8>>, workers: usize) -> Self {
        let agent = ureq::Agent::config_builder()
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
            fallback_logged: AtomicBool::new(false),
        }
    }

    /// Delivers `batch`, retrying as docs/agent.md describes, within `budget`.
    pub fn deliver(&self, batch: &Batch, budget: &RetryBudget) -> Outcome {
        let metrics = to_metrics(batch);
        let body = serde_json::to_vec(&metrics).expect("metrics always serialize");
        match self.with_retries("/updates/", &body, budget) {
            Attempt::Ok => Outcome::Delivered,
            Attempt::Final(e) => Outcome::Rejected(e),
            Attempt::Transient(error) => Outcome::Failed {
                error,
                undelivered: batch.counters.clone(),
            },
            Attempt::NoSuchEndpoint(status) => {
                if !self.fallback_logged.swap(true, Ordering::Relaxed) {
                    log::info!(
                        "{}/updates/ answered {status}: sending metrics one by one to /update/",
                        self.server
                    );
                }
                self.deliver_one_by_one(batch, &metrics, budget)
            }
        }
    }

    /// The fallback for servers without `/updates/`. Stops at the first metric that cannot be
    /// delivered and returns the counters from there on; refused metrics are dropped.
    /// `metrics` is `batch` as [`to_metrics`] lays it out: gauges first, then counters.
    fn deliver_one_by_one(
        &self,
        batch: &Batch,
        metrics: &[Metric<'_>],
        budget: &RetryBudget,
    ) -> Outcome {
        let mut rejected = Vec::new();
        for (i, metric) in metrics.iter().enumerate() {
            let body = serde_json::to_vec(metric).expect("metrics always serialize");
            match self.with_retries("/update/", &body, budget) {
                Attempt::Ok => {}
                Attempt::Final(e) => rejected.push(format!("{}: {e}", metric.id)),
                Attempt::NoSuchEndpoint(status) => {
                    rejected.push(format!("{}: /update/ answered {status}", metric.id))
                }
                Attempt::Transient(error) => {
                    let first_counter = i.saturating_sub(batch.gauges.len());
                    return Outcome::Failed {
                        error,
                        undelivered: batch.counters[first_counter..].to_vec(),
                    };
                }
            }
        }
        if rejected.is_empty() {
            Outcome::Delivered
        } else {
            Outcome::Rejected(format!(
                "{} of {} metrics refused ({})",
                rejected.len(),
                metrics.len(),
                rejected.join("; ")
            ))
        }
    }

    fn with_retries(&self, path: &str, body: &[u8], budget: &RetryBudget) -> Attempt {
        let mut delays = RETRY_DELAYS.iter();
        loop {
            let attempt = self.post(path, body, budget);
            let Attempt::Transient(error) = attempt else {
                return attempt;
            };
            log::debug!("POST {path}: {error}");
            match delays.next() {
                Some(delay) if budget.wait(*delay) => {}
                Some(_) => {
                    return Attempt::Transient(format!("{error} (gave up: shutting down)"));
                }
                None => {
                    let tries = RETRY_DELAYS.len() + 1;
                    return Attempt::Transient(format!("{error} (after {tries} attempts)"));
                }
            }
        }
    }

    fn post(&self, path: &str, json: &[u8], budget: &RetryBudget) -> Attempt {
        let url = format!("{}{path}", self.server);
        let compressed = gzip::compress(json);
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .header("Accept-Encoding", "identity");
        if let Some(key) = &self.key {
            request = request.header(signature::HEADER, signature::sign(json, key));
        }
        if let Some(left) = budget.remaining() {
            if left.is_zero() {
                return Attempt::Transient("deadline reached".into());
            }
            request = request
                .config()
                .timeout_global(Some(left.min(REQUEST_TIMEOUT)))
                .build();
        }
        let mut response = match request.send(&compressed[..]) {
            Ok(response) => response,
            Err(e) => return Attempt::Transient(format!("POST {url}: {e}")),
        };
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .unwrap_or_default();
        let answer = answer.trim();
        match status {
            200..=299 => Attempt::Ok,
            404 | 405 => Attempt::NoSuchEndpoint(status),
            429 | 500..=599 => Attempt::Transient(format!("POST {url}: {status} {answer}")),
            _ => Attempt::Final(format!("POST {url}: {status} {answer}")),
        }
    }
}

/// The JSON metrics of a batch: gauges first, then counters.
fn to_metrics(batch: &Batch) -> Vec<Metric<'static>> {
    batch
        .gauges
        .iter()
        .map(|(name, value)| Metric::gauge(*name, *value))
        .chain(
            batch
                .counters
                .iter()
                .map(|(name, delta)| Metric::counter(*name, *delta)),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_json_shape() {
        let batch = Batch {
            gauges: vec![("Alloc", 1.5)],
            counters: vec![("PollCount", 3)],
        };
        let json = serde_json::to_string(&to_metrics(&batch)).unwrap();
        assert_eq!(
            json,
            r#"[{"id":"Alloc","type":"gauge","value":1.5},{"id":"PollCount","type":"counter","delta":3}]"#
        );
    }

    #[test]
    fn unreachable_server_fails_with_the_deltas() {
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sender = HttpSender::new(&format!("http://127.0.0.1:{port}"), None, 1);
        let batch = Batch {
            gauges: vec![("g", 1.0)],
            counters: vec![("PollCount", 2)],
        };
        // A deadline shorter than the first retry delay: one attempt only.
        let outcome = sender.deliver(
            &batch,
            &RetryBudget::until(Instant::now() + Duration::from_millis(500)),
        );
        let Outcome::Failed { undelivered, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(undelivered, vec![("PollCount", 2)]);
    }

    #[test]
    fn stop_ends_retry_waits_at_once() {
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        drop(tx);
        let budget = RetryBudget::until_stopped(rx);
        let start = Instant::now();
        assert!(!budget.wait(Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
