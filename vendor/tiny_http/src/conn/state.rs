//! golectra: the sans-IO connection state machine. It is fed the bytes a socket gave and the
//! time, and answers with steps — read more, write `100 Continue`, dispatch a request, refuse
//! with a status, wait for budget, close — and it owns every rule of the protocol: head limits,
//! body framing and limits, `Expect`, keep-alive, pipelining, deadlines and lingering. It never
//! touches a socket, so each rule is unit-tested with bytes and a fake clock (`conn/tests.rs`).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Header, Method};
use crate::conn::body::{Framing, Pace, Pending};
use crate::conn::chunked::{wire_limit, ChunkDecoder, ChunkError};
use crate::conn::framing::{body_framing, with_connection_close, BodyFraming};
use crate::conn::head::{find_head_end, parse_head, Head, HeadLimits};
use crate::conn::refusal::refusal;
use crate::conn::Env;
use crate::policy::{Budget, Counters, Reservation, Shortage};

// golectra: the TLS handshake's part of the machine.
mod handshake;
// golectra: deadlines, eviction and closing.
mod lifecycle;

/// Bytes read from a socket per call (also the slack a chunked body reserves for one read).
pub(crate) const READ_CHUNK: usize = 16 << 10;
/// How long a connection closed with possibly unread input keeps draining it, so that the
/// client reads the answer instead of a reset.
pub(crate) const LINGER: Duration = Duration::from_secs(2);
/// Most bytes drained while lingering.
pub(crate) const LINGER_BYTES: usize = 1 << 20;
/// An idle connection's input buffer larger than this is given back.
const KEEP_INPUT_CAPACITY: usize = 4 << 10;
/// The interim response to `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the first byte of a request. Only idle connections may be evicted.
    Idle,
    /// Reading a request head.
    Head,
    /// Reading a request body.
    Body,
    /// Waiting for a share of the body buffer budget (not reading).
    BudgetWait,
    /// The request is with a worker.
    Dispatched,
    /// Writing a response.
    Writing,
    /// Half-closed after a refusal, draining the client's input.
    Lingering,
    Closed,
}

/// What the reader of the connection does next ([`Machine::poll`]).
#[derive(Debug)]
pub(crate) enum Step {
    /// Read more input (or, once the client closed its side, close: see [`Step::Close`]).
    NeedInput,
    /// Write [`CONTINUE`] now, then poll again.
    Continue,
    /// A complete request, to be handled; the connection waits for its response.
    Dispatch(Parsed),
    /// A refusal with this status is queued as output ([`Machine::unwritten`]): write it.
    Refuse(u16),
    /// Nothing to do until a deadline (waiting for budget), or not a reading phase.
    Wait,
    /// The client stopped sending before a request was complete.
    Close,
}

/// What a deadline did ([`Machine::expire`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    Nothing,
    /// Close silently (idle, response or linger deadline).
    Close,
    /// A refusal (`408`, `503`) is queued as output: write it.
    Refuse(u16),
    /// A body waiting for budget got it: drive the connection again.
    Resume,
}

/// What follows a completely written response ([`Machine::finish_writing`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep-alive with nothing buffered: wait for input.
    Read,
    /// Keep-alive with a pipelined request (or the end of input) already buffered: drive again.
    Drive,
    Close,
    /// Half-close, then drain what the client still sends.
    Linger,
}

/// What happens once the response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterWrite {
    KeepAlive,
    Close,
    /// Half-close and drain: the client may still be sending input we did not read.
    Linger,
}

/// A complete request, ready for a worker.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub method: Method,
    pub path: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
    pub reservation: Option<Reservation>,
    /// The declared length, when the request had one (over the limit: the body is not read).
    pub body_length: Option<usize>,
}

/// One connection's protocol state.
pub(crate) struct Machine {
    phase: Phase,
    /// When the current phase must be over.
    deadline: Option<Instant>,
    /// Last time a read or write made progress (for `io_timeout`).
    progress_at: Instant,
    idle_since: Instant,
    /// Bytes read and not yet consumed.
    input: Vec<u8>,
    /// How much of `input` was already searched for the end of the head.
    scanned: usize,
    pending: Option<Pending>,
    output: Vec<u8>,
    written: usize,
    after_write: AfterWrite,
    /// The client closed its sending side.
    eof: bool,
    /// A request was received on this connection (evicted after those that never sent one).
    served: bool,
    lingered: usize,
    /// The budget of this connection's peer, when its bodies are capped per peer.
    peer_budget: Option<Arc<Budget>>,
}

impl Machine {
    /// A freshly accepted connection, idle.
    pub fn new(now: Instant, env: &Env) -> Self {
        Self {
            phase: Phase::Idle,
            deadline: Some(now + env.policy.idle_timeout),
            progress_at: now,
            idle_since: now,
            input: Vec::new(),
            scanned: 0,
            pending: None,
            output: Vec::new(),
            written: 0,
            after_write: AfterWrite::KeepAlive,
            eof: false,
            served: false,
            lingered: 0,
            peer_budget: None,
        }
    }

    /// Counts this connection's bodies against its peer's budget too.
    pub fn set_peer_budget(&mut self, budget: Option<Arc<Budget>>) {
        self.peer_budget = budget;
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Bytes read and not yet consumed (for the fuzz targets: where a request ended).
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Bytes the client sent.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) {
        self.input.extend_from_slice(bytes);
        self.progress_at = now;
    }

    /// The client closed its sending side.
    pub fn feed_eof(&mut self) {
        self.eof = true;
    }

    // ---- reading requests ----------------------------------------------------------------

    /// Moves request reading forward over the buffered input.
    pub fn poll(&mut self, now: Instant, env: &Env) -> Step {
        match self.phase {
            Phase::Idle | Phase::Head | Phase::Body => {}
            _ => return Step::Wait,
        }
        if self.pending.is_some() {
            return self.collect_body(now, env);
        }
        if self.input.is_empty() {
            return self.need_input();
        }
        if self.phase == Phase::Idle {
            self.phase = Phase::Head;
            self.deadline = Some(now + env.policy.header_timeout);
        }
        // The end of the head is searched only in newly arrived bytes: a trickled head costs
        // linear time.
        let from = self.scanned.saturating_sub(3);
        let Some(end) = find_head_end(&self.input[from..]).map(|i| from + i) else {
            self.scanned = self.input.len();
            if self.input.len() > env.policy.max_head_bytes {
                return self.refuse(431, "request header fields too large", now, env);
            }
            return self.need_input();
        };
        self.scanned = 0;
        let head = parse_head(&self.input[..end], HeadLimits::of(&env.policy));
        self.input.drain(..end);
        match head {
            Ok(head) => self.start_request(head, now, env),
            Err(e) => {
                let (status, message) = e.refusal();
                self.refuse(status, message, now, env)
            }
        }
    }

    fn need_input(&self) -> Step {
        if self.eof {
            Step::Close
        } else {
            Step::NeedInput
        }
    }

    /// Decides what a freshly parsed head needs: a refusal, an immediate dispatch, or a body.
    fn start_request(&mut self, head: Head, now: Instant, env: &Env) -> Step {
        let header = |name: &'static str| header_value(&head.headers, name);
        // golectra: ambiguous or unsupported framing is refused (conn/framing.rs); the body's
        // end is then unknown, so it must not be parsed as the next request.
        let framing = match body_framing(&head.headers, &head.version) {
            Ok(BodyFraming::Empty) => None,
            Ok(BodyFraming::Length(n)) => Some(Framing::Length(n)),
            Ok(BodyFraming::Chunked) => Some(Framing::Chunked(ChunkDecoder::new(wire_limit(
                env.policy.prefetch_limit,
            )))),
            Err((status, reason)) => return self.refuse(status, reason, now, env),
        };
        let continue_due = match header("Expect") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            Some(_) => return self.refuse(417, "unsupported Expect header", now, env),
        };
        let http_1_0 = head.version == HTTPVersion(1, 0);
        let connection = header("Connection").map(str::to_ascii_lowercase);
        let close_after = match connection.as_deref() {
            Some(v) if v.contains("close") || v.contains("upgrade") => true,
            Some(v) => !v.contains("keep-alive") && http_1_0,
            None => http_1_0,
        };
        let mut pending = Pending {
            head,
            framing: Framing::Length(0),
            body: Vec::new(),
            reservation: None,
            close_after,
            continue_due,
            wire: 0,
            pace: Pace::new(now, 0),
        };
        match framing {
            None => return self.dispatch(pending, None),
            // Over the limit: not read at all; the handler refuses the declared length and the
            // connection closes after the answer (its unread body lingers).
            Some(Framing::Length(n)) if n > env.policy.prefetch_limit => {
                pending.close_after = true;
                self.after_write = AfterWrite::Linger;
                return self.dispatch(pending, Some(n));
            }
            Some(framing) => pending.framing = framing,
        }
        self.phase = Phase::Body;
        self.deadline = Some(now + env.policy.body_timeout);
        self.pending = Some(pending);
        // Part or all of the body may have arrived with the head.
        self.collect_body(now, env)
    }

    /// Makes sure the pending body's reservation covers what it may hold next
    /// ([`Pending::reserve`]).
    fn reserve(&mut self, env: &Env) -> Result<(), Shortage> {
        let input = self.input.len();
        match self.pending.as_mut() {
            Some(p) => p.reserve(input, env, self.peer_budget.as_ref()),
            None => Ok(()),
        }
    }

    fn collect_body(&mut self, now: Instant, env: &Env) -> Step {
        if self.reserve(env).is_err() {
            self.phase = Phase::BudgetWait;
            return Step::Wait;
        }
        let limit = env.policy.prefetch_limit;
        let input_len = self.input.len();
        let p = self.pending.as_mut().expect("a pending request");
        if std::mem::take(&mut p.continue_due) {
            let body_missing = match &p.framing {
                Framing::Length(n) => p.body.len() + input_len < *n,
                Framing::Chunked(decoder) => !decoder.is_done(),
            };
            // Only once the body has its share of the budget.
            if body_missing {
                return Step::Continue;
            }
        }
        match &mut p.framing {
            Framing::Length(n) => {
                let n = *n;
                let take = (n - p.body.len()).min(input_len);
                p.body.extend_from_slice(&self.input[..take]);
                self.input.drain(..take);
                p.wire += take;
                if p.body.len() < n {
                    return self.need_input();
                }
                let pending = self.pending.take().expect("a pending request");
                self.dispatch(pending, Some(n))
            }
            Framing::Chunked(decoder) => match decoder.feed(&self.input, &mut p.body, limit) {
                Err(e @ ChunkError::WireLimit) => self.refuse(413, e.reason(), now, env),
                Err(e) => self.refuse(400, e.reason(), now, env),
                Ok(used) => {
                    self.input.drain(..used);
                    p.wire += used;
                    let over = p.body.len() > limit;
                    if !over && !decoder.is_done() {
                        return self.need_input();
                    }
                    let mut pending = self.pending.take().expect("a pending request");
                    if over {
                        // The handler sees limit + 1 bytes and refuses them; the rest of the
                        // body is never read and the connection closes after the answer.
                        pending.body.truncate(limit + 1);
                        pending.close_after = true;
                        self.after_write = AfterWrite::Linger;
                    }
                    self.dispatch(pending, None)
                }
            },
        }
    }

    /// Hands a complete request out; the connection waits for its response.
    fn dispatch(&mut self, pending: Pending, body_length: Option<usize>) -> Step {
        self.phase = Phase::Dispatched;
        self.deadline = None;
        self.pending = None;
        self.served = true;
        if pending.close_after && self.after_write == AfterWrite::KeepAlive {
            self.after_write = AfterWrite::Close;
        }
        if self.input.is_empty() && self.input.capacity() > KEEP_INPUT_CAPACITY {
            self.input = Vec::new();
        }
        let Head {
            method,
            path,
            version,
            headers,
        } = pending.head;
        Step::Dispatch(Parsed {
            method,
            path,
            version,
            headers,
            body: pending.body,
            reservation: pending.reservation,
            body_length,
        })
    }

    /// Queues a refusal of a request that never reached a worker, counted by its status; the
    /// connection lingers after.
    fn refuse(&mut self, status: u16, message: &str, now: Instant, env: &Env) -> Step {
        let c = &env.counters;
        let counter = match status {
            400 => Some(&c.bad_request),
            408 => Some(&c.timed_out),
            413 => Some(&c.body_too_large),
            431 => Some(&c.header_too_large),
            501 => Some(&c.unsupported_framing),
            503 => Some(&c.budget_exhausted),
            _ => None,
        };
        self.refuse_counted(counter, status, message, now, env)
    }

    /// [`Machine::refuse`] bumping `counter`.
    fn refuse_counted(
        &mut self,
        counter: Option<&AtomicU64>,
        status: u16,
        message: &str,
        now: Instant,
        env: &Env,
    ) -> Step {
        if let Some(counter) = counter {
            Counters::bump(counter);
        }
        self.pending = None;
        self.after_write = AfterWrite::Linger;
        let signer = env.policy.refusal_signer.as_ref();
        self.start_writing(refusal(status, message, &[], signer), now, env);
        Step::Refuse(status)
    }

    // ---- writing responses ---------------------------------------------------------------

    /// The encoded response of the dispatched request; false if the connection closed meanwhile
    /// (server shutdown).
    pub fn respond(&mut self, bytes: Vec<u8>, now: Instant, env: &Env) -> bool {
        if self.phase != Phase::Dispatched {
            return false;
        }
        // golectra: a response after which the connection closes says so (RFC 9112 §9.6).
        let bytes = match self.after_write {
            AfterWrite::KeepAlive => bytes,
            AfterWrite::Close | AfterWrite::Linger => with_connection_close(bytes),
        };
        self.start_writing(bytes, now, env);
        true
    }

    fn start_writing(&mut self, bytes: Vec<u8>, now: Instant, env: &Env) {
        self.output = bytes;
        self.written = 0;
        self.phase = Phase::Writing;
        self.deadline = Some(now + env.policy.body_timeout);
        self.progress_at = now;
    }

    /// What is left to write.
    pub fn unwritten(&self) -> &[u8] {
        &self.output[self.written..]
    }

    /// The socket took `n` more bytes.
    pub fn wrote(&mut self, n: usize, now: Instant) {
        self.written += n;
        self.progress_at = now;
    }

    /// The response is written: keep the connection alive, close it or linger.
    pub fn finish_writing(&mut self, now: Instant, env: &Env) -> Next {
        self.output = Vec::new();
        self.written = 0;
        match std::mem::replace(&mut self.after_write, AfterWrite::KeepAlive) {
            AfterWrite::KeepAlive => {
                self.phase = Phase::Idle;
                self.idle_since = now;
                self.deadline = Some(now + env.policy.idle_timeout);
                if self.input.is_empty() && !self.eof {
                    Next::Read
                } else {
                    Next::Drive
                }
            }
            AfterWrite::Close => Next::Close,
            AfterWrite::Linger => {
                self.phase = Phase::Lingering;
                self.deadline = Some(now + LINGER);
                self.lingered = 0;
                self.input = Vec::new();
                Next::Linger
            }
        }
    }

    /// `n` bytes were drained while lingering; false once enough was drained to close.
    pub fn drained(&mut self, n: usize) -> bool {
        self.lingered += n;
        self.lingered < LINGER_BYTES
    }
}

fn header_value<'a>(headers: &'a [Header], name: &'static str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}
