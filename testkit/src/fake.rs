//! A fake HTTP server that answers with a status chosen per request and records every
//! request: a misbehaving Golectra server for the agent, an audit receiver for the server.
//!
//! [`Fake::start`] runs on the vendored engine. [`Fake::scripted`] runs on a bare TCP listener
//! instead, one request per connection, so that it can also do what no proper server does: read
//! a request and close the connection without an answer ([`Answer::Drop`]), or answer late
//! ([`Answer::After`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// The status the fake answered; 0 when it closed the connection without an answer.
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

/// What a [`Fake::scripted`] does with a request it has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Answers with this status at once (a 200 carries `{}`).
    Status(u16),
    /// Closes the connection without a word: the client cannot know whether the request was
    /// applied.
    Drop,
    /// Waits, then answers with the status.
    After(Duration, u16),
}

/// A server on 127.0.0.1 that answers with a status chosen per request and records everything.
pub struct Fake {
    /// Wakes the accepting thread so that it returns.
    unblock: Box<dyn Fn() + Send + Sync>,
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
            unblock: Box::new(move || server.unblock()),
            thread: Some(thread),
            addr,
            seen,
        }
    }

    /// A fake on a bare TCP listener: `answer(request, n)` decides, once the whole request is
    /// read, what to do with the `n`-th request (0-based) to its path. Every answer carries
    /// `Connection: close`; requests are served one at a time.
    pub fn scripted(mut answer: impl FnMut(&Seen, usize) -> Answer + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (log, stop) = (seen.clone(), done.clone());
        let thread = std::thread::Builder::new()
            .name("test-fake".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let Some(mut request) = read_request(&stream) else {
                        continue;
                    };
                    let n = log
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|s| s.path == request.path)
                        .count();
                    let what = answer(&request, n);
                    request.status = match what {
                        Answer::Status(status) | Answer::After(_, status) => status,
                        Answer::Drop => 0,
                    };
                    log.lock().unwrap().push(request.clone());
                    match what {
                        Answer::Drop => drop(stream),
                        Answer::Status(status) => write_answer(stream, status),
                        Answer::After(delay, status) => {
                            std::thread::sleep(delay);
                            write_answer(stream, status);
                        }
                    }
                }
            })
            .expect("spawn the fake's thread");
        Self {
            unblock: Box::new(move || {
                done.store(true, Ordering::SeqCst);
                let _ = TcpStream::connect(addr);
            }),
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

/// Reads one request (head and `Content-Length` body) from a connection of
/// [`Fake::scripted`]; `None` when the peer sent no complete request within 10 s.
fn read_request(stream: &TcpStream) -> Option<Seen> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_owned(), words.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize =
        crate::http::header(&headers, "content-length").map_or(Some(0), |v| v.parse().ok())?;
    let mut raw = vec![0; length];
    reader.read_exact(&mut raw).ok()?;
    let gz = crate::http::header(&headers, "content-encoding") == Some("gzip");
    let body = if gz {
        golectra_common::gzip::inflate_unbounded(&raw).expect("valid gzip body")
    } else {
        raw.clone()
    };
    Some(Seen {
        at: Instant::now(),
        method,
        path,
        headers,
        raw,
        body,
        status: 0,
    })
}

fn write_answer(mut stream: TcpStream, status: u16) {
    let text = if status == 200 { "{}" } else { "fake says no" };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Fake\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.flush();
}

impl Drop for Fake {
    fn drop(&mut self) {
        (self.unblock)();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
