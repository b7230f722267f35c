//! A fake HTTP server (on the vendored engine) that answers with a status chosen per request
//! and records every request: a misbehaving Golectra server for the agent, an audit receiver
//! for the server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// A request as a [`Fake`] saw it, body inflated when it was gzip.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// Request method.
    pub method: String,
    /// Request target (path and query).
    pub path: String,
    /// Every header as `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body exactly as received.
    pub raw: Vec<u8>,
    /// The body after gzip inflation (equal to `raw` without `Content-Encoding: gzip`).
    pub body: Vec<u8>,
    /// The status the fake answered.
    pub status: u16,
}

impl Seen {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::header(&self.headers, name)
    }

    /// The (inflated) body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The (inflated) body as JSON; panics with the text when it is not.
    pub fn json(&self) -> serde_json::Value {
        crate::http::json(&self.body)
    }
}

/// A server on 127.0.0.1 that answers with a status chosen per request and records everything.
pub struct Fake {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    /// `answer(path, n)` picks the status for the `n`-th request (0-based) to `path`. A 200
    /// carries `{}`, anything else a short text.
    pub fn start(mut answer: impl FnMut(&str, usize) -> u16 + Send + 'static) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind fake"));
        let addr = server.server_addr().to_ip().expect("ip address");
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let (srv, log) = (server.clone(), seen.clone());
        let thread = std::thread::Builder::new()
            .name("test-fake".into())
            .spawn(move || {
                for mut request in srv.incoming_requests() {
                    let mut raw = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut raw);
                    let headers: Vec<(String, String)> = request
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect();
                    let gz = headers
                        .iter()
                        .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "gzip");
                    let body = if gz {
                        golectra_common::gzip::inflate_unbounded(&raw).expect("valid gzip body")
                    } else {
                        raw.clone()
                    };
                    let path = request.url().to_owned();
                    let n = log
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|s| s.path == path)
                        .count();
                    let status = answer(&path, n);
                    log.lock().unwrap().push(Seen {
                        at: Instant::now(),
                        method: request.method().to_string(),
                        path,
                        headers,
                        raw,
                        body,
                        status,
                    });
                    let text = if status == 200 { "{}" } else { "fake says no" };
                    let _ = request
                        .respond(tiny_http::Response::from_string(text).with_status_code(status));
                }
            })
            .expect("spawn the fake's thread");
        Self {
            server,
            thread: Some(thread),
            addr,
            seen,
        }
    }

    /// `http://ADDR` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
