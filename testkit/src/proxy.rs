//! A TCP fault proxy: it sits between a client (the agent) and an upstream (the server), forwards
//! HTTP/1.1 exchanges, and on request spoils them in the ways a network or a middlebox does —
//! a response that comes too late, a connection that breaks after the request went through, a
//! 503 for a write that was applied, connections that are refused. Those are the cases where the
//! client cannot know whether its write was applied, which exactly-once delivery must survive.
//!
//! The proxy understands HTTP/1.1 framing (heads parsed with `httparse`, bodies by
//! `Content-Length` or chunked, responses without either read to the end of the connection), so
//! a [`Fault`] applies to one request/response exchange of a persistent connection, not to the
//! whole connection: a client that pools its connections sees the fault on the next exchange,
//! whichever connection carries it. Each request is read whole before it is forwarded; a client
//! that waits for `100 Continue` before sending its body is not supported.
//!
//! One thread per accepted connection, which also drives that connection's upstream connection;
//! nothing outlives the [`FaultProxy`]: dropping it closes every connection, ends every delay
//! and joins every thread.
//!
//! ```no_run
//! # use std::time::Duration;
//! use golectra_testkit::{Fault, FaultProxy};
//! # let server: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
//! let proxy = FaultProxy::start(server);
//! // The client talks to `proxy.url()`; the next three exchanges lose their responses.
//! proxy.set_for(Fault::DropResponse, 3);
//! golectra_testkit::eventually(Duration::from_secs(30), || {
//!     (proxy.counts().dropped == 3).then_some(())
//! });
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, after, select};

/// What the proxy does to an exchange (or, for [`Fault::Refuse`], to a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward the request and the response unchanged.
    #[default]
    None,
    /// Forward the request at once, read the upstream's response, and hold it for this long
    /// before passing it on: the client times out although the upstream applied the request.
    DelayResponse(Duration),
    /// Forward the request, read the upstream's response, then close the client's connection
    /// without passing anything on: the client sees the connection end after sending its body.
    DropResponse,
    /// Forward the request, read and discard the upstream's response, and answer the client
    /// `503 Service Unavailable` (with `Content-Length` and `Connection: close`) instead: a
    /// middlebox reporting a failure although the write was applied.
    Answer503,
    /// Close connections without forwarding anything: new connections are accepted and closed
    /// at once, and an open connection is closed at its next request. Nothing reaches the
    /// upstream.
    Refuse,
}

/// What the proxy did so far (see [`FaultProxy::counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Client connections accepted and served (refused ones are not counted here).
    pub accepted: u64,
    /// Connections closed under [`Fault::Refuse`]: at accept, or at a request on an open one.
    pub refused: u64,
    /// Requests written to the upstream.
    pub forwarded: u64,
    /// Responses held back under [`Fault::DelayResponse`].
    pub delayed: u64,
    /// Responses swallowed under [`Fault::DropResponse`].
    pub dropped: u64,
    /// Responses replaced by a 503 under [`Fault::Answer503`].
    pub rewritten: u64,
    /// Exchanges the upstream did not complete: no connection to it, or it closed or broke the
    /// connection before a whole response (a server that was killed, say). The client's
    /// connection is closed then, as the upstream's was.
    pub upstream_errors: u64,
}

/// One request the proxy read from a client, and what became of it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// When the request had been read whole.
    pub at: Instant,
    /// Request method.
    pub method: String,
    /// Request target (path and query).
    pub path: String,
    /// Every request header as `(name, value)`, in order.
    pub headers: Vec<(String, String)>,
    /// The request body as the client sent it (chunked framing removed, content encoding kept:
    /// still gzip when the client gzipped it).
    pub body: Vec<u8>,
    /// The fault applied to this exchange ([`Fault::Refuse`]: closed without forwarding).
    pub fault: Fault,
    /// The upstream's status, `None` when it gave no (complete) response or the request was
    /// not forwarded.
    pub status: Option<u16>,
}

impl Exchange {
    /// The value of the first request header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::http::header(&self.headers, name)
    }

    /// Whether the client received the upstream's own 2xx answer: forwarded, answered with a
    /// 2xx and passed on unspoiled (a delayed response may still have arrived too late for the
    /// client, so that one does not count).
    pub fn acknowledged(&self) -> bool {
        self.fault == Fault::None && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// At most this many exchanges are recorded (a test's worth); later ones are only counted.
pub const MAX_RECORDED: usize = 10_000;

/// Largest request or response head accepted; a bigger one closes the connection.
const MAX_HEAD: usize = 64 << 10;
/// Headers per head that `httparse` is given room for.
const MAX_HEADERS: usize = 128;
/// Time allowed to open a connection to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The body of the 503 that [`Fault::Answer503`] sends instead of the upstream's response.
const REPLACED_BODY: &str = "fault proxy: the upstream's answer was replaced by this 503\n";

/// The current fault and how many more exchanges it applies to (`None`: until changed).
#[derive(Debug, Clone, Copy)]
struct Mode {
    fault: Fault,
    remaining: Option<u64>,
}

impl Mode {
    const NONE: Self = Self {
        fault: Fault::None,
        remaining: None,
    };
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    forwarded: AtomicU64,
    delayed: AtomicU64,
    dropped: AtomicU64,
    rewritten: AtomicU64,
    upstream_errors: AtomicU64,
}

/// What the accept thread, the connection threads and the handle share.
struct Shared {
    upstream: Mutex<SocketAddr>,
    mode: Mutex<Mode>,
    counters: Counters,
    exchanges: Mutex<Vec<Exchange>>,
    /// Set once, by `Drop`; checked under the `open` lock, so a connection registered after the
    /// flag is seen is never left open.
    stopped: AtomicBool,
    /// Every open socket (client and upstream sides), by connection, for `Drop` to shut down.
    open: Mutex<HashMap<u64, Vec<TcpStream>>>,
    /// Disconnects when the proxy is dropped: delays end at once.
    stop: Receiver<()>,
}

impl Shared {
    /// The fault for the next exchange, counting it against a limited fault.
    fn take_fault(&self) -> Fault {
        let mut mode = self.mode.lock().unwrap();
        let fault = mode.fault;
        if let Some(left) = mode.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                *mode = Mode::NONE;
            }
        }
        fault
    }

    /// Whether a newly accepted connection is to be refused (which counts against a limited
    /// [`Fault::Refuse`]); other faults wait for the connection's exchanges.
    fn refuses_connections(&self) -> bool {
        let mut mode = self.mode.lock().unwrap();
        if mode.fault != Fault::Refuse {
            return false;
        }
        if let Some(left) = mode.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                *mode = Mode::NONE;
            }
        }
        true
    }

    /// Keeps a clone of `stream` so that `Drop` can shut it down; `false` once stopped.
    fn register(&self, id: u64, stream: &TcpStream) -> bool {
        let mut open = self.open.lock().unwrap();
        if self.stopped.load(Ordering::SeqCst) {
            return false;
        }
        if let Ok(clone) = stream.try_clone() {
            open.entry(id).or_default().push(clone);
        }
        true
    }

    fn unregister(&self, id: u64) {
        self.open.lock().unwrap().remove(&id);
    }

    fn record(&self, exchange: Exchange) {
        let mut exchanges = self.exchanges.lock().unwrap();
        if exchanges.len() < MAX_RECORDED {
            exchanges.push(exchange);
        }
    }

    /// Waits `delay` unless the proxy is dropped meanwhile; `false` means "stopped".
    fn wait(&self, delay: Duration) -> bool {
        select! {
            recv(self.stop) -> _ => false,
            recv(after(delay)) -> _ => true,
        }
    }
}

/// A fault-injecting TCP proxy on 127.0.0.1 in front of one upstream (see the module docs).
/// Dropping it stops everything: the listener, every connection, every delay.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Dropped by `Drop`: disconnects the receiver every delay waits on.
    stop: Option<Sender<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`, transparently until
    /// [`FaultProxy::set`] says otherwise.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let (stop_tx, stop) = crossbeam_channel::bounded(0);
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            mode: Mutex::new(Mode::NONE),
            counters: Counters::default(),
            exchanges: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            stop,
        });
        let workers = Arc::new(Mutex::new(Vec::new()));
        let accept = std::thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn({
                let (shared, workers) = (shared.clone(), workers.clone());
                move || accept_loop(listener, &shared, &workers)
            })
            .expect("spawn the fault proxy's accept thread");
        Self {
            addr,
            shared,
            accept: Some(accept),
            workers,
            stop: Some(stop_tx),
        }
    }

    /// `http://ADDR` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` from the next exchange (or connection, for [`Fault::Refuse`]) on, until
    /// changed. Exchanges already past the point where their fault is chosen (their request
    /// read) keep theirs.
    pub fn set(&self, fault: Fault) {
        *self.shared.mode.lock().unwrap() = Mode {
            fault,
            remaining: None,
        };
    }

    /// Applies `fault` to the next `exchanges` exchanges (for [`Fault::Refuse`]: refused
    /// connections and requests), then goes back to [`Fault::None`] by itself.
    pub fn set_for(&self, fault: Fault, exchanges: u64) {
        *self.shared.mode.lock().unwrap() = if exchanges == 0 {
            Mode::NONE
        } else {
            Mode {
                fault,
                remaining: Some(exchanges),
            }
        };
    }

    /// The fault in force now.
    pub fn fault(&self) -> Fault {
        self.shared.mode.lock().unwrap().fault
    }

    /// Sends new connections to `upstream` (a server restarted on another port, say); open
    /// connections keep theirs.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    /// What the proxy did so far.
    pub fn counts(&self) -> Counts {
        let c = &self.shared.counters;
        let get = |n: &AtomicU64| n.load(Ordering::SeqCst);
        Counts {
            accepted: get(&c.accepted),
            refused: get(&c.refused),
            forwarded: get(&c.forwarded),
            delayed: get(&c.delayed),
            dropped: get(&c.dropped),
            rewritten: get(&c.rewritten),
            upstream_errors: get(&c.upstream_errors),
        }
    }

    /// Every exchange so far (up to [`MAX_RECORDED`]), in the order their requests were read;
    /// an exchange appears once its upstream answered (or failed to).
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared.exchanges.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // The accept thread blocks in accept(2): one connection of our own wakes it.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for streams in self.shared.open.lock().unwrap().values() {
            for stream in streams {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        // Every delay ends at once.
        drop(self.stop.take());
        let workers = std::mem::take(&mut *self.workers.lock().unwrap());
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: &Arc<Shared>, workers: &Mutex<Vec<JoinHandle<()>>>) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if shared.refuses_connections() {
            shared.counters.refused.fetch_add(1, Ordering::SeqCst);
            drop(stream);
            continue;
        }
        shared.counters.accepted.fetch_add(1, Ordering::SeqCst);
        next_id += 1;
        let id = next_id;
        if !shared.register(id, &stream) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name(format!("fault-proxy-{id}"))
            .spawn({
                let shared = shared.clone();
                move || {
                    serve(id, stream, &shared);
                    shared.unregister(id);
                }
            });
        let mut workers = workers.lock().unwrap();
        workers.retain(|w| !w.is_finished());
        match spawned {
            Ok(worker) => workers.push(worker),
            Err(_) => shared.unregister(id),
        }
    }
}

/// Serves one client connection, exchange by exchange, until either side closes it or a fault
/// ends it. Both sockets are closed on return.
fn serve(id: u64, client: TcpStream, shared: &Shared) {
    let _ = client.set_nonblocking(false);
    let mut client = Peer::new(client);
    let mut upstream: Option<Peer> = None;
    while let Ok(Some(request)) = client.read_request() {
        let fault = shared.take_fault();
        let mut exchange = Exchange {
            at: Instant::now(),
            method: request.method.clone(),
            path: request.path.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
            fault,
            status: None,
        };
        if fault == Fault::Refuse {
            shared.counters.refused.fetch_add(1, Ordering::SeqCst);
            shared.record(exchange);
            break;
        }
        let response = forward(id, &request, &mut upstream, shared);
        let Some(response) = response else {
            shared
                .counters
                .upstream_errors
                .fetch_add(1, Ordering::SeqCst);
            shared.record(exchange);
            break;
        };
        exchange.status = Some(response.status);
        shared.record(exchange);
        let counters = &shared.counters;
        let passed = match fault {
            Fault::None => client.stream.write_all(&response.raw).is_ok(),
            Fault::DelayResponse(delay) => {
                counters.delayed.fetch_add(1, Ordering::SeqCst);
                shared.wait(delay) && client.stream.write_all(&response.raw).is_ok()
            }
            Fault::DropResponse => {
                counters.dropped.fetch_add(1, Ordering::SeqCst);
                false
            }
            Fault::Answer503 => {
                counters.rewritten.fetch_add(1, Ordering::SeqCst);
                let replaced = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{REPLACED_BODY}",
                    REPLACED_BODY.len()
                );
                let _ = client.stream.write_all(replaced.as_bytes());
                false
            }
            Fault::Refuse => unreachable!("refused before forwarding"),
        };
        if !passed || request.close || response.close {
            break;
        }
    }
    let _ = client.stream.shutdown(Shutdown::Both);
    if let Some(upstream) = upstream {
        let _ = upstream.stream.shutdown(Shutdown::Both);
    }
}

/// Writes `request` to the upstream (connecting first if this client connection has no upstream
/// connection yet) and reads its response; `None` when the upstream fails.
fn forward(
    id: u64,
    request: &Message,
    upstream: &mut Option<Peer>,
    shared: &Shared,
) -> Option<Message> {
    if upstream.is_none() {
        let addr = *shared.upstream.lock().unwrap();
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
        if !shared.register(id, &stream) {
            return None;
        }
        *upstream = Some(Peer::new(stream));
    }
    let peer = upstream.as_mut()?;
    peer.stream.write_all(&request.raw).ok()?;
    shared.counters.forwarded.fetch_add(1, Ordering::SeqCst);
    peer.read_response(&request.method).ok()
}

/// A request or a response, read whole.
#[derive(Debug)]
struct Message {
    /// Request method (empty for a response).
    method: String,
    /// Request target (empty for a response).
    path: String,
    /// Response status (0 for a request).
    status: u16,
    headers: Vec<(String, String)>,
    /// The body, chunked framing removed.
    body: Vec<u8>,
    /// Every byte as read: head and framed body (for a response, interim 1xx responses first).
    raw: Vec<u8>,
    /// The connection ends after this message (`Connection: close`, HTTP/1.0, or a response
    /// delimited by the end of the connection).
    close: bool,
}

/// How a message's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the sender closes the connection (responses only).
    ToEnd,
}

/// One side of a connection with what was read from it but not consumed yet.
struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl Peer {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; 0 at the end of the connection.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Takes the first `n` bytes, reading as needed.
    fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Takes one line, CRLF included.
    fn take_line(&mut self) -> io::Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            if let Some(at) = self.buf[searched..].windows(2).position(|w| w == b"\r\n") {
                return self.take(searched + at + 2);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            searched = self.buf.len().saturating_sub(1);
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Waits until `parse` finds a complete head in the buffer; `Ok(None)` when the connection
    /// ends cleanly before the first byte of a head.
    fn head_len(
        &mut self,
        parse: impl Fn(&[u8]) -> httparse::Result<usize>,
    ) -> io::Result<Option<usize>> {
        loop {
            if !self.buf.is_empty() {
                match parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => return Ok(Some(len)),
                    Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => {}
                    Ok(httparse::Status::Partial) => return Err(invalid("head too large")),
                    Err(e) => return Err(invalid(&format!("bad head: {e}"))),
                }
            }
            if self.fill()? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// Reads one request; `Ok(None)` when the client closed the connection between requests.
    fn read_request(&mut self) -> io::Result<Option<Message>> {
        let parse = |buf: &[u8]| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            httparse::Request::new(&mut headers).parse(buf)
        };
        let Some(len) = self.head_len(parse)? else {
            return Ok(None);
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        request
            .parse(&self.buf[..len])
            .map_err(|e| invalid(&format!("bad request head: {e}")))?;
        let method = request.method.unwrap_or_default().to_owned();
        let path = request.path.unwrap_or_default().to_owned();
        let http10 = request.version == Some(0);
        let headers = owned(request.headers);
        let raw = self.take(len)?;
        let framing = match framing(&headers)? {
            Some(framing) => framing,
            None => Framing::Length(0),
        };
        let close = closes(&headers, http10);
        let mut message = Message {
            method,
            path,
            status: 0,
            headers,
            body: Vec::new(),
            raw,
            close,
        };
        self.read_body(&mut message, framing)?;
        Ok(Some(message))
    }

    /// Reads one response to a `method` request, interim 1xx responses included in its raw
    /// bytes.
    fn read_response(&mut self, method: &str) -> io::Result<Message> {
        let mut raw = Vec::new();
        loop {
            let parse = |buf: &[u8]| {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                httparse::Response::new(&mut headers).parse(buf)
            };
            let len = self.head_len(parse)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            response
                .parse(&self.buf[..len])
                .map_err(|e| invalid(&format!("bad response head: {e}")))?;
            let status = response.code.unwrap_or_default();
            let http10 = response.version == Some(0);
            let headers = owned(response.headers);
            raw.extend(self.take(len)?);
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let no_body = method.eq_ignore_ascii_case("HEAD")
                || status == 204
                || status == 304
                || status == 101;
            let framing = if no_body {
                Framing::Length(0)
            } else {
                framing(&headers)?.unwrap_or(Framing::ToEnd)
            };
            let close =
                closes(&headers, http10) || status == 101 || matches!(framing, Framing::ToEnd);
            let mut message = Message {
                method: String::new(),
                path: String::new(),
                status,
                headers,
                body: Vec::new(),
                raw,
                close,
            };
            self.read_body(&mut message, framing)?;
            return Ok(message);
        }
    }

    fn read_body(&mut self, message: &mut Message, framing: Framing) -> io::Result<()> {
        match framing {
            Framing::Length(n) => {
                let body = self.take(n)?;
                message.raw.extend_from_slice(&body);
                message.body = body;
            }
            Framing::Chunked => loop {
                let line = self.take_line()?;
                message.raw.extend_from_slice(&line);
                let size = std::str::from_utf8(&line)
                    .ok()
                    .and_then(|l| l.trim_end().split(';').next())
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                    .ok_or_else(|| invalid("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        let line = self.take_line()?;
                        message.raw.extend_from_slice(&line);
                        if line == b"\r\n" {
                            return Ok(());
                        }
                    }
                }
                let chunk = self.take(size + 2)?;
                if !chunk.ends_with(b"\r\n") {
                    return Err(invalid("chunk without its CRLF"));
                }
                message.raw.extend_from_slice(&chunk);
                message.body.extend_from_slice(&chunk[..size]);
            },
            Framing::ToEnd => {
                while self.fill()? > 0 {}
                let body = std::mem::take(&mut self.buf);
                message.raw.extend_from_slice(&body);
                message.body = body;
            }
        }
        Ok(())
    }
}

fn owned(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// The body's framing from the headers, `None` when they give none. `Transfer-Encoding` wins
/// over `Content-Length`, as RFC 9112 says.
fn framing(headers: &[(String, String)]) -> io::Result<Option<Framing>> {
    if let Some(te) = crate::http::header(headers, "transfer-encoding") {
        let last = te.rsplit(',').next().unwrap_or_default().trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Ok(Some(Framing::Chunked))
        } else {
            Err(invalid("a transfer coding other than chunked"))
        };
    }
    match crate::http::header(headers, "content-length") {
        Some(length) => length
            .trim()
            .parse()
            .map(|n| Some(Framing::Length(n)))
            .map_err(|_| invalid("bad Content-Length")),
        None => Ok(None),
    }
}

/// Whether the connection ends after a message with these headers.
fn closes(headers: &[(String, String)], http10: bool) -> bool {
    let has = |token: &str| {
        crate::http::header(headers, "connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has("close") || (http10 && !has("keep-alive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(path, body)` of every request an [`Upstream`] got.
    type Got = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// A tiny upstream: answers `ok <n>: <body>` to the n-th request (0-based), chunked for
    /// paths starting `/chunked`, and records what it got.
    struct Upstream {
        server: Arc<tiny_http::Server>,
        addr: SocketAddr,
        got: Got,
        thread: Option<JoinHandle<()>>,
    }

    impl Upstream {
        fn start() -> Self {
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
            let addr = server.server_addr().to_ip().unwrap();
            let got = Got::default();
            let thread = std::thread::spawn({
                let (server, got) = (server.clone(), got.clone());
                move || {
                    for mut request in server.incoming_requests() {
                        let mut body = Vec::new();
                        request.as_reader().read_to_end(&mut body).unwrap();
                        let path = request.url().to_owned();
                        let n = {
                            let mut got = got.lock().unwrap();
                            got.push((path.clone(), body.clone()));
                            got.len() - 1
                        };
                        let text = format!("ok {n}: {}", String::from_utf8_lossy(&body));
                        let length = (!path.starts_with("/chunked")).then_some(text.len());
                        let response = tiny_http::Response::new(
                            tiny_http::StatusCode(200),
                            vec![],
                            io::Cursor::new(text.into_bytes()),
                            length,
                            None,
                        );
                        let _ = request.respond(response);
                    }
                }
            });
            Self {
                server,
                addr,
                got,
                thread: Some(thread),
            }
        }

        fn got(&self) -> Vec<(String, Vec<u8>)> {
            self.got.lock().unwrap().clone()
        }
    }

    impl Drop for Upstream {
        fn drop(&mut self) {
            self.server.unblock();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// A raw keep-alive client connection.
    fn connect(proxy: &FaultProxy) -> Peer {
        let stream = TcpStream::connect(proxy.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Peer::new(stream)
    }

    fn post(path: &str, body: &str) -> Vec<u8> {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Sends `request` and reads the response; `None` when the connection ends instead.
    fn exchange(peer: &mut Peer, request: &[u8]) -> Option<Message> {
        peer.stream.write_all(request).ok()?;
        peer.read_response("POST").ok()
    }

    fn text(m: &Message) -> String {
        String::from_utf8_lossy(&m.body).into_owned()
    }

    #[test]
    fn none_forwards_keep_alive_exchanges_both_ways() {
        let up = Upstream::start();
        let proxy = FaultProxy::start(up.addr);
        let mut c = connect(&proxy);
        let r = exchange(&mut c, &post("/a", "one")).expect("a response");
        assert_eq!((r.status, text(&r)), (200, "ok 0: one".to_owned()));
        // A chunked request, and a chunked response, on the same connection.
        c.stream
            .write_all(
                b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3\r\ntwo\r\n4\r\n two\r\n0\r\n\r\n",
            )
            .unwrap();
        let r = c.read_response("POST").expect("a chunked response");
        assert_eq!(text(&r), "ok 1: two two");
        assert!(
            r.raw.ends_with(b"0\r\n\r\n"),
            "still chunked for the client"
        );
        let r = exchange(&mut c, &post("/c", "three")).expect("a response");
        assert_eq!(text(&r), "ok 2: three");
        let counts = proxy.counts();
        assert_eq!((counts.accepted, counts.forwarded), (1, 3), "{counts:?}");
        let seen = proxy.exchanges();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].path, "/chunked");
        assert_eq!(seen[1].body, b"two two");
        assert_eq!(seen[1].header("transfer-encoding"), Some("chunked"));
        assert!(seen.iter().all(Exchange::acknowledged));
        assert_eq!(up.got().len(), 3);
    }

    #[test]
    fn delay_response_forwards_at_once_and_answers_late() {
        let up = Upstream::start();
        let proxy = FaultProxy::start(up.addr);
        let mut c = connect(&proxy);
        proxy.set(Fault::DelayResponse(Duration::from_millis(400)));
        let started = Instant::now();
        c.stream.write_all(&post("/slow", "x")).unwrap();
        // The upstream has the request long before the client has the answer.
        eventually_true(|| up.got().len() == 1);
        assert!(started.elapsed() < Duration::from_millis(400));
        let r = c.read_response("POST").expect("the late response");
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert_eq!(text(&r), "ok 0: x");
        proxy.set(Fault::None);
        let started = Instant::now();
        let r = exchange(&mut c, &post("/fast", "y")).expect("a response");
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(text(&r), "ok 1: y");
        assert_eq!(proxy.counts().delayed, 1);
        assert_eq!(
            proxy.exchanges()[0].fault,
            Fault::DelayResponse(Duration::from_millis(400))
        );
        assert!(!proxy.exchanges()[0].acknowledged());
    }

    #[test]
    fn drop_response_closes_after_the_upstream_answered() {
        let up = Upstream::start();
        let proxy = FaultProxy::start(up.addr);
        let mut c = connect(&proxy);
        assert!(exchange(&mut c, &post("/a", "before")).is_some());
        proxy.set(Fault::DropResponse);
        assert!(exchange(&mut c, &post("/a", "lost")).is_none());
        assert_eq!(c.buf, b"", "not one byte of the response");
        assert_eq!(up.got()[1].1, b"lost", "the upstream got it");
        proxy.set(Fault::None);
        let mut c = connect(&proxy);
        let r = exchange(&mut c, &post("/a", "after")).expect("a response");
        assert_eq!(text(&r), "ok 2: after");
        let counts = proxy.counts();
        assert_eq!((counts.dropped, counts.forwarded), (1, 3), "{counts:?}");
        let seen = proxy.exchanges();
        assert_eq!(seen[1].fault, Fault::DropResponse);
        assert_eq!(seen[1].status, Some(200));
    }

    #[test]
    fn answer_503_replaces_the_applied_response_and_closes() {
        let up = Upstream::start();
        let proxy = FaultProxy::start(up.addr);
        let mut c = connect(&proxy);
        proxy.set(Fault::Answer503);
        let r = exchange(&mut c, &post("/w", "applied")).expect("the 503");
        assert_eq!(r.status, 503);
        assert_eq!(text(&r), REPLACED_BODY);
        assert_eq!(crate::http::header(&r.headers, "connection"), Some("close"));
        assert_eq!(
            crate::http::header(&r.headers, "content-length"),
            Some(REPLACED_BODY.len().to_string().as_str())
        );
        assert_eq!(c.fill().unwrap_or(0), 0, "closed after the 503");
        assert_eq!(up.got(), [("/w".to_owned(), b"applied".to_vec())]);
        assert_eq!(proxy.counts().rewritten, 1);
        assert_eq!(proxy.exchanges()[0].status, Some(200));
    }

    #[test]
    fn refuse_closes_new_and_open_connections_without_forwarding() {
        let up = Upstream::start();
        let proxy = FaultProxy::start(up.addr);
        let mut open = connect(&proxy);
        assert!(exchange(&mut open, &post("/a", "1")).is_some());
        proxy.set(Fault::Refuse);
        let mut fresh = connect(&proxy);
        assert!(exchange(&mut fresh, &post("/a", "2")).is_none());
        assert!(exchange(&mut open, &post("/a", "3")).is_none());
        assert_eq!(up.got().len(), 1, "nothing reached the upstream");
        let counts = proxy.counts();
        assert_eq!((counts.refused, counts.forwarded), (2, 1), "{counts:?}");
        assert_eq!(proxy.exchanges()[1].fault, Fault::Refuse);
        assert_eq!(proxy.exchanges()[1].status, None);
        proxy.set(Fault::None);
        let mut c = connect(&proxy);
        assert_eq!(
            text(&exchange(&mut c, &post("/a", "4")).unwrap()),
            "ok 1: 4"
        );
    }

    #[test]
    fn set_for_spoils_that_many_exchanges_then_heals() {
        let up = Upstream::start();
        let proxy = FaultProxy::start(up.addr);
        proxy.set_for(Fault::Answer503, 2);
        let statuses: Vec<u16> = (0..4)
            .map(|i| {
                let mut c = connect(&proxy);
                exchange(&mut c, &post("/s", &i.to_string()))
                    .unwrap()
                    .status
            })
            .collect();
        assert_eq!(statuses, [503, 503, 200, 200]);
        assert_eq!(proxy.fault(), Fault::None);
        assert_eq!(up.got().len(), 4);
    }

    #[test]
    fn an_unreachable_upstream_closes_the_client_and_a_new_one_is_used() {
        let up = Upstream::start();
        let gone = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = FaultProxy::start(gone);
        let mut c = connect(&proxy);
        assert!(exchange(&mut c, &post("/a", "x")).is_none());
        assert_eq!(proxy.counts().upstream_errors, 1);
        proxy.set_upstream(up.addr);
        let mut c = connect(&proxy);
        assert_eq!(
            text(&exchange(&mut c, &post("/a", "y")).unwrap()),
            "ok 0: y"
        );
    }

    #[test]
    fn dropping_the_proxy_closes_everything_and_ends_delays() {
        let up = Upstream::start();
        let proxy = FaultProxy::start(up.addr);
        let addr = proxy.addr;
        let mut idle = connect(&proxy);
        assert!(exchange(&mut idle, &post("/a", "1")).is_some());
        proxy.set(Fault::DelayResponse(Duration::from_secs(60)));
        let mut waiting = connect(&proxy);
        waiting.stream.write_all(&post("/a", "2")).unwrap();
        eventually_true(|| proxy.counts().delayed == 1);
        let started = Instant::now();
        drop(proxy);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a delay held the drop"
        );
        assert_eq!(idle.fill().unwrap_or(0), 0);
        assert_eq!(waiting.fill().unwrap_or(0), 0);
        assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
    }

    fn eventually_true(mut probe: impl FnMut() -> bool) {
        crate::eventually(Duration::from_secs(10), || probe().then_some(()))
            .expect("condition within 10 s");
    }
}
