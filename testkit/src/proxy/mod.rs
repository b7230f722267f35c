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

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, after, select};

mod wire;
use wire::{Message, Peer};

use crate::served::{Served, Sockets};

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
    /// How long the upstream took: from the request read whole (`at`) to its whole response
    /// read; `None` when it gave none.
    pub answered_in: Option<Duration>,
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
    /// Every open socket (client and upstream sides), for `Drop` to shut down.
    sockets: Arc<Sockets>,
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
    served: Served,
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
        let sockets = Arc::new(Sockets::default());
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            mode: Mutex::new(Mode::NONE),
            counters: Counters::default(),
            exchanges: Mutex::new(Vec::new()),
            sockets: sockets.clone(),
            stop,
        });
        let served = Served::start(
            listener,
            "fault-proxy",
            sockets,
            {
                let shared = shared.clone();
                move |_| admit(&shared)
            },
            {
                let shared = shared.clone();
                move |id, stream| serve(id, stream, &shared)
            },
        );
        Self {
            addr,
            shared,
            served,
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
        // Every delay ends at once, once the sockets are shut down.
        let stop = self.stop.take();
        self.served.stop(|| drop(stop));
    }
}

/// Whether a new client connection is served: not under [`Fault::Refuse`].
fn admit(shared: &Shared) -> bool {
    if shared.refuses_connections() {
        shared.counters.refused.fetch_add(1, Ordering::SeqCst);
        return false;
    }
    shared.counters.accepted.fetch_add(1, Ordering::SeqCst);
    true
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
            answered_in: None,
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
        exchange.answered_in = Some(exchange.at.elapsed());
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
        if !shared.sockets.register(id, &stream) {
            return None;
        }
        *upstream = Some(Peer::new(stream));
    }
    let peer = upstream.as_mut()?;
    peer.stream.write_all(&request.raw).ok()?;
    shared.counters.forwarded.fetch_add(1, Ordering::SeqCst);
    peer.read_response(&request.method).ok()
}

#[cfg(test)]
mod tests;
