//! golectra: the connection engine. Every admitted connection sits, non-blocking, in one epoll
//! set; the fixed worker threads that call [`crate::Server::recv`] wait on that set themselves.
//! A worker woken by a ready connection drives it — reads what arrived, parses the head within
//! its limits, collects the body within the budget — until it holds a complete request, which it
//! returns to be handled; the response is written by the same thread, without blocking, and
//! whatever the socket does not take is finished by whichever worker next sees it writable.
//!
//! So a request costs no hand-over between threads, a slow or idle client costs a buffer and
//! never a thread, and the thread count is fixed: `http-accept`, `http-timer` and the workers.
//!
//! - **One driver per connection.** Connections are registered `EPOLLONESHOT` and re-armed only
//!   when their driver is done with them, so at most one worker drives a connection at a time.
//!   Its state is still behind a mutex because the timer and the accept thread (eviction) look at
//!   it too, with `try_lock`, so they never wait for a worker.
//! - **State decides, not the event.** A driver acts on the connection's phase (reading a head or
//!   body, writing a response, lingering), so a spurious or stale wake-up is harmless. Re-arming
//!   for `EPOLLOUT` is also how a connection with a pipelined request already buffered asks to be
//!   driven again (a socket is nearly always writable).
//! - **Pollers are gated.** At most one poller per CPU waits on the set ([`Gate`]); the other
//!   workers park. A thread that is about to block outside the server (a synchronous store, a
//!   database) gives its slot away first ([`crate::Server::blocking`]), so a parked worker takes
//!   over polling. Without the gate every arriving request would wake a sleeping worker instead
//!   of being picked up by a busy one.
//! - **Deadlines** are checked by the `http-timer` thread every few milliseconds: idle, head,
//!   body (`408`), budget (`503`), response writing and lingering.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Result as IoResult, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::event::epoll;
use rustix::event::{eventfd, EventfdFlags};

use crate::common::{HTTPVersion, Header, Method, StatusCode};
use crate::connection::{Connection, Listener};
use crate::gate::Gate;
use crate::head::{read_head, HeadLimits, ReadError};
use crate::policy::{
    Budget, BufferedBody, ChunkDecoder, ConnectionPolicy, ConnectionStats, Counters, Reservation,
};
use crate::request::buffered_request;
use crate::Request;

/// The epoll token of the wake-up eventfd (shutdown and `unblock`).
const WAKE: u64 = u64::MAX;
/// Bytes read from a socket per call.
const READ_CHUNK: usize = 16 << 10;
/// How long a connection closed with possibly unread input keeps draining it, so that the
/// client reads the answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes drained while lingering.
const LINGER_BYTES: usize = 1 << 20;
/// An idle connection's input buffer larger than this is given back.
const KEEP_INPUT_CAPACITY: usize = 4 << 10;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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

/// What happens once the response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterWrite {
    KeepAlive,
    Close,
    /// Half-close and drain: the client may still be sending input we did not read.
    Linger,
}

/// How the body of the request being read is framed.
enum Framing {
    Length(usize),
    Chunked(ChunkDecoder),
}

/// A request whose head has been read and whose body is being collected.
struct Pending {
    method: Method,
    path: String,
    version: HTTPVersion,
    headers: Vec<Header>,
    framing: Framing,
    body: Vec<u8>,
    reservation: Option<Reservation>,
    close_after: bool,
    /// The client sent `Expect: 100-continue` and has not been told to go on yet.
    continue_due: bool,
}

struct State {
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
}

struct Conn {
    token: u64,
    peer: Option<SocketAddr>,
    socket: Connection,
    state: Mutex<State>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The live connections, indexed by the low half of their token (the high half is a generation
/// number, so a stale event for a reused slot is ignored).
#[derive(Default)]
struct Slab {
    entries: Vec<Option<Arc<Conn>>>,
    free: Vec<usize>,
    live: usize,
    generation: u32,
}

impl Slab {
    fn insert(&mut self, make: impl FnOnce(u64) -> Arc<Conn>) -> Arc<Conn> {
        self.generation = self.generation.wrapping_add(1);
        let index = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        let conn = make(((self.generation as u64) << 32) | index as u64);
        self.entries[index] = Some(conn.clone());
        self.live += 1;
        conn
    }

    fn get(&self, token: u64) -> Option<Arc<Conn>> {
        let entry = self.entries.get((token & 0xffff_ffff) as usize)?.as_ref()?;
        (entry.token == token).then(|| entry.clone())
    }

    fn remove(&mut self, token: u64) {
        let index = (token & 0xffff_ffff) as usize;
        if self
            .entries
            .get(index)
            .and_then(Option::as_ref)
            .map(|c| c.token)
            == Some(token)
        {
            self.entries[index] = None;
            self.free.push(index);
            self.live -= 1;
        }
    }

    fn all(&self) -> Vec<Arc<Conn>> {
        self.entries.iter().flatten().cloned().collect()
    }
}

/// Identifies reactors for the gate's thread-local slot record.
static NEXT_REACTOR_ID: AtomicUsize = AtomicUsize::new(1);

pub(crate) struct Reactor {
    id: usize,
    epoll: OwnedFd,
    wake: OwnedFd,
    pub policy: ConnectionPolicy,
    pub counters: Counters,
    budget: Arc<Budget>,
    conns: Mutex<Slab>,
    gate: Arc<Gate>,
    unblocks: AtomicUsize,
    closed: AtomicBool,
}

impl Reactor {
    pub fn new(policy: ConnectionPolicy) -> IoResult<Arc<Self>> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE),
            epoll::EventFlags::IN,
        )?;
        let pollers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Arc::new(Self {
            id: NEXT_REACTOR_ID.fetch_add(1, Ordering::Relaxed),
            epoll,
            wake,
            policy,
            counters: Counters::default(),
            budget: Arc::new(Budget::default()),
            conns: Mutex::new(Slab::default()),
            gate: Arc::new(Gate::new(pollers)),
            unblocks: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }))
    }

    fn slab(&self) -> MutexGuard<'_, Slab> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> ConnectionStats {
        let c = &self.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ConnectionStats {
            current: self.slab().live,
            max: self.policy.max_connections,
            accepted: load(&c.accepted),
            refused: load(&c.refused),
            evicted_idle: load(&c.evicted_idle),
            timed_out: load(&c.timed_out),
            header_too_large: load(&c.header_too_large),
            bad_request: load(&c.bad_request),
            budget_exhausted: load(&c.budget_exhausted),
            body_buffer_bytes: self.budget.used(),
        }
    }

    // ---- workers -------------------------------------------------------------------------

    /// Waits for and returns the next complete request. Fails once unblocked or closed.
    pub fn recv(self: &Arc<Self>) -> IoResult<Request> {
        let mut events = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 1];
        loop {
            if self.take_unblock() {
                self.gate.leave(self.id);
                return Err(std::io::Error::other("thread unblocked"));
            }
            if !self.gate.enter(self.id, || self.unblock_pending()) {
                continue;
            }
            let token = match epoll::wait(&self.epoll, &mut events, None) {
                Ok((ready, _)) => match ready.first() {
                    Some(event) => event.data.u64(),
                    None => continue,
                },
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    self.gate.leave(self.id);
                    return Err(e.into());
                }
            };
            if token == WAKE {
                if !self.unblock_pending() {
                    let mut counter = [0u8; 8];
                    let _ = rustix::io::read(&self.wake, &mut counter);
                }
                continue;
            }
            let Some(conn) = self.slab().get(token) else {
                continue;
            };
            if let Some(request) = self.drive(&conn) {
                return Ok(request);
            }
        }
    }

    /// Gives this thread's polling slot away while `f` blocks (see [`Gate`]).
    pub fn blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        self.gate.leave(self.id);
        f()
    }

    /// Makes one `recv` (current or future) fail, after nothing else.
    pub fn unblock(&self) {
        self.unblocks.fetch_add(1, Ordering::AcqRel);
        self.wake_all();
    }

    fn wake_all(&self) {
        self.gate.wake_all();
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    fn unblock_pending(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.unblocks.load(Ordering::Acquire) > 0
    }

    fn take_unblock(&self) -> bool {
        self.closed.load(Ordering::Acquire)
            || self
                .unblocks
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
    }

    /// Moves a ready connection forward; returns a request when one is complete.
    fn drive(self: &Arc<Self>, conn: &Arc<Conn>) -> Option<Request> {
        let mut st = conn.lock();
        match st.phase {
            Phase::Idle | Phase::Head | Phase::Body => self.advance(conn, &mut st),
            Phase::Writing => {
                self.flush(conn, &mut st);
                None
            }
            Phase::Lingering => {
                self.drain(conn, &mut st);
                None
            }
            Phase::BudgetWait | Phase::Dispatched | Phase::Closed => None,
        }
    }

    /// Parses what is buffered and reads more until a request is complete, the socket has
    /// nothing more for now (re-armed for input), or the connection was refused or closed.
    fn advance(self: &Arc<Self>, conn: &Arc<Conn>, st: &mut State) -> Option<Request> {
        loop {
            match self.progress(conn, st) {
                Progress::Request(request) => return Some(request),
                Progress::Stop => return None,
                Progress::NeedInput => {}
            }
            if st.eof {
                // The client stopped sending before a request was complete.
                self.close(conn, st);
                return None;
            }
            match fill(&conn.socket, &mut st.input) {
                Ok(0) => st.eof = true,
                Ok(_) => st.progress_at = Instant::now(),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.arm(conn, st, epoll::EventFlags::IN);
                    return None;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(conn, st);
                    return None;
                }
            }
        }
    }

    /// One step of request parsing over the buffered input.
    fn progress(self: &Arc<Self>, conn: &Arc<Conn>, st: &mut State) -> Progress {
        if st.pending.is_none() {
            if st.input.is_empty() {
                return Progress::NeedInput;
            }
            if st.phase == Phase::Idle {
                st.phase = Phase::Head;
                st.deadline = Some(Instant::now() + self.policy.header_timeout);
            }
            let from = st.scanned.saturating_sub(3);
            let Some(end) = find_head_end(&st.input[from..]).map(|i| from + i) else {
                st.scanned = st.input.len();
                if st.input.len() > self.policy.max_head_bytes {
                    Counters::bump(&self.counters.header_too_large);
                    self.refuse(conn, st, 431, "request header fields too large");
                    return Progress::Stop;
                }
                return Progress::NeedInput;
            };
            st.scanned = 0;
            let head = read_head(&st.input[..end], HeadLimits::of(&self.policy));
            st.input.drain(..end);
            return match head {
                Ok((method, path, version, headers)) => {
                    self.start_request(conn, st, method, path, version, headers)
                }
                Err(e) => {
                    let (status, message) = match e {
                        ReadError::HeaderTooLarge => {
                            Counters::bump(&self.counters.header_too_large);
                            (431, "request header fields too large")
                        }
                        ReadError::NotAscii => {
                            Counters::bump(&self.counters.bad_request);
                            (400, "the request line and headers must be ASCII")
                        }
                        ReadError::WrongHeader(_) => {
                            Counters::bump(&self.counters.bad_request);
                            (400, "malformed header line")
                        }
                        ReadError::WrongRequestLine | ReadError::ReadIoError(_) => {
                            Counters::bump(&self.counters.bad_request);
                            (400, "malformed request line")
                        }
                    };
                    self.refuse(conn, st, status, message);
                    Progress::Stop
                }
            };
        }
        self.collect_body(conn, st)
    }

    /// Decides what a freshly parsed head needs: a refusal, an immediate dispatch, or a body.
    fn start_request(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        st: &mut State,
        method: Method,
        path: String,
        version: HTTPVersion,
        headers: Vec<Header>,
    ) -> Progress {
        if version > HTTPVersion(1, 1) {
            self.refuse(
                conn,
                st,
                505,
                "This server only supports HTTP versions 1.0 and 1.1",
            );
            return Progress::Stop;
        }
        let header = |name: &'static str| header_value(&headers, name);
        // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); any coding is chunked.
        let framing = if header("Transfer-Encoding").is_some() {
            Some(Framing::Chunked(ChunkDecoder::new()))
        } else {
            match header("Content-Length").map(|v| v.trim().parse::<usize>()) {
                None | Some(Ok(0)) => None,
                Some(Ok(n)) => Some(Framing::Length(n)),
                Some(Err(_)) => {
                    Counters::bump(&self.counters.bad_request);
                    // The body's end is unknown: it must not be parsed as the next request.
                    self.refuse(conn, st, 400, "invalid Content-Length or chunked framing");
                    return Progress::Stop;
                }
            }
        };
        let expects_continue = match header("Expect") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
            Some(_) => {
                self.refuse(conn, st, 417, "unsupported Expect header");
                return Progress::Stop;
            }
        };
        let connection = header("Connection").map(str::to_ascii_lowercase);
        let close_after = match connection.as_deref() {
            Some(v) if v.contains("close") || v.contains("upgrade") => true,
            Some(v) => !v.contains("keep-alive") && version == HTTPVersion(1, 0),
            None => version == HTTPVersion(1, 0),
        };
        let mut pending = Pending {
            method,
            path,
            version,
            headers,
            framing: Framing::Length(0),
            body: Vec::new(),
            reservation: None,
            close_after,
            continue_due: expects_continue,
        };
        let limit = self.policy.prefetch_limit;
        match framing {
            None => return Progress::Request(self.dispatch(conn, st, pending, None)),
            // Over the limit: not read at all; the handler refuses the declared length and the
            // connection closes after the answer (its unread body lingers).
            Some(Framing::Length(n)) if n > limit => {
                pending.close_after = true;
                st.after_write = AfterWrite::Linger;
                return Progress::Request(self.dispatch(conn, st, pending, Some(n)));
            }
            Some(framing) => pending.framing = framing,
        }
        if let Framing::Length(n) = pending.framing {
            pending.body.reserve_exact(n);
        }
        st.phase = Phase::Body;
        st.deadline = Some(Instant::now() + self.policy.body_timeout);
        st.pending = Some(pending);
        // Part or all of the body may have arrived with the head.
        self.collect_body(conn, st)
    }

    /// Makes sure the pending body's reservation covers what it may hold next: the whole
    /// declared length, or (chunked) what is decoded plus what is buffered.
    fn reserve(&self, st: &mut State) -> bool {
        let input = st.input.len();
        let Some(p) = st.pending.as_mut() else {
            return true;
        };
        let needed = match &p.framing {
            Framing::Length(n) => *n,
            Framing::Chunked(_) => p.body.len() + input.max(READ_CHUNK),
        };
        let held = p.reservation.as_ref().map_or(0, Reservation::bytes);
        needed <= held
            || self.budget.grow(
                &mut p.reservation,
                needed - held,
                self.policy.prefetch_budget,
            )
    }

    fn collect_body(self: &Arc<Self>, conn: &Arc<Conn>, st: &mut State) -> Progress {
        if !self.reserve(st) {
            st.phase = Phase::BudgetWait;
            return Progress::Stop;
        }
        let limit = self.policy.prefetch_limit;
        let p = st.pending.as_mut().expect("a pending request");
        if std::mem::take(&mut p.continue_due) {
            let body_missing = match &p.framing {
                Framing::Length(n) => p.body.len() + st.input.len() < *n,
                Framing::Chunked(decoder) => !decoder.is_done(),
            };
            // Only once the body has its share of the budget; a connection's send buffer takes
            // these 25 bytes at once.
            if body_missing
                && (&conn.socket)
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .is_err()
            {
                self.close(conn, st);
                return Progress::Stop;
            }
        }
        match &mut p.framing {
            Framing::Length(n) => {
                let take = (*n - p.body.len()).min(st.input.len());
                p.body.extend_from_slice(&st.input[..take]);
                st.input.drain(..take);
                if p.body.len() < *n {
                    return Progress::NeedInput;
                }
                let n = *n;
                let pending = st.pending.take().expect("a pending request");
                Progress::Request(self.dispatch(conn, st, pending, Some(n)))
            }
            Framing::Chunked(decoder) => match decoder.feed(&st.input, &mut p.body) {
                Err(_) => {
                    Counters::bump(&self.counters.bad_request);
                    self.refuse(conn, st, 400, "invalid Content-Length or chunked framing");
                    Progress::Stop
                }
                Ok(used) => {
                    st.input.drain(..used);
                    let over = p.body.len() > limit;
                    if !over && !decoder.is_done() {
                        return Progress::NeedInput;
                    }
                    let mut pending = st.pending.take().expect("a pending request");
                    if over {
                        // The handler sees limit + 1 bytes and refuses them; the rest of the
                        // body is never read and the connection closes after the answer.
                        pending.body.truncate(limit + 1);
                        pending.close_after = true;
                        st.after_write = AfterWrite::Linger;
                    }
                    Progress::Request(self.dispatch(conn, st, pending, None))
                }
            },
        }
    }

    /// Hands a complete request out; the connection waits (unarmed) for its response.
    fn dispatch(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        st: &mut State,
        pending: Pending,
        body_length: Option<usize>,
    ) -> Request {
        st.phase = Phase::Dispatched;
        st.deadline = None;
        st.pending = None;
        st.served = true;
        if pending.close_after && st.after_write == AfterWrite::KeepAlive {
            st.after_write = AfterWrite::Close;
        }
        if st.input.is_empty() && st.input.capacity() > KEEP_INPUT_CAPACITY {
            st.input = Vec::new();
        }
        let writer = ResponseSink {
            reactor: self.clone(),
            conn: conn.clone(),
            bytes: Vec::new(),
        };
        buffered_request(
            pending.method,
            pending.path,
            pending.version,
            pending.headers,
            conn.peer,
            BufferedBody {
                body: std::io::Cursor::new(pending.body),
                _reservation: pending.reservation,
            },
            body_length,
            writer,
        )
    }

    // ---- responses -----------------------------------------------------------------------

    /// Takes the encoded response of a dispatched request and starts writing it.
    fn respond(&self, conn: &Conn, bytes: Vec<u8>) {
        let mut st = conn.lock();
        if st.phase != Phase::Dispatched {
            return; // closed meanwhile (server shutdown)
        }
        self.start_writing(conn, &mut st, bytes);
    }

    fn start_writing(&self, conn: &Conn, st: &mut State, bytes: Vec<u8>) {
        let now = Instant::now();
        st.output = bytes;
        st.written = 0;
        st.phase = Phase::Writing;
        st.deadline = Some(now + self.policy.body_timeout);
        st.progress_at = now;
        self.flush(conn, st);
    }

    /// Writes what the socket takes; then keeps the connection alive, closes or lingers.
    fn flush(&self, conn: &Conn, st: &mut State) {
        while st.written < st.output.len() {
            match (&conn.socket).write(&st.output[st.written..]) {
                Ok(0) => return self.close(conn, st),
                Ok(n) => {
                    st.written += n;
                    st.progress_at = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return self.arm(conn, st, epoll::EventFlags::OUT);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(conn, st),
            }
        }
        st.output = Vec::new();
        st.written = 0;
        match std::mem::replace(&mut st.after_write, AfterWrite::KeepAlive) {
            AfterWrite::KeepAlive => {
                let now = Instant::now();
                st.phase = Phase::Idle;
                st.idle_since = now;
                st.deadline = Some(now + self.policy.idle_timeout);
                // A pipelined request already buffered (or an end of input already seen) is
                // driven again at once: the socket is writable.
                let interest = if st.input.is_empty() && !st.eof {
                    epoll::EventFlags::IN
                } else {
                    epoll::EventFlags::OUT
                };
                self.arm(conn, st, interest);
            }
            AfterWrite::Close => self.close(conn, st),
            AfterWrite::Linger => {
                let _ = conn.socket.shutdown(Shutdown::Write);
                st.phase = Phase::Lingering;
                st.deadline = Some(Instant::now() + LINGER);
                st.lingered = 0;
                st.input = Vec::new();
                self.drain(conn, st);
            }
        }
    }

    /// Answers a request that never reached a worker, then lingers and closes.
    fn refuse(&self, conn: &Conn, st: &mut State, status: u16, message: &str) {
        let body = format!("{message}\n");
        let response = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            status,
            StatusCode(status).default_reason_phrase(),
            body.len(),
            body
        );
        st.pending = None;
        st.after_write = AfterWrite::Linger;
        self.start_writing(conn, st, response.into_bytes());
    }

    /// Reads and discards what a refused client still sends, until it closes, or the linger
    /// deadline or byte limit is reached.
    fn drain(&self, conn: &Conn, st: &mut State) {
        loop {
            match fill(&conn.socket, &mut st.input) {
                Ok(0) => return self.close(conn, st),
                Ok(n) => {
                    st.lingered += n;
                    st.input.clear();
                    if st.lingered >= LINGER_BYTES {
                        return self.close(conn, st);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return self.arm(conn, st, epoll::EventFlags::IN);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.close(conn, st),
            }
        }
    }

    // ---- registration ----------------------------------------------------------------------

    fn arm(&self, conn: &Conn, st: &mut State, interest: epoll::EventFlags) {
        let flags = interest | epoll::EventFlags::ONESHOT;
        let data = epoll::EventData::new_u64(conn.token);
        if epoll::modify(&self.epoll, &conn.socket, data, flags).is_err() {
            self.close(conn, st);
        }
    }

    fn close(&self, conn: &Conn, st: &mut State) {
        if st.phase == Phase::Closed {
            return;
        }
        st.phase = Phase::Closed;
        st.deadline = None;
        st.pending = None;
        st.input = Vec::new();
        st.output = Vec::new();
        let _ = epoll::delete(&self.epoll, &conn.socket);
        let _ = conn.socket.shutdown(Shutdown::Both);
        self.slab().remove(conn.token);
    }

    /// Admits an accepted connection (evicting an idle one at the cap) or refuses it.
    fn admit(&self, socket: Connection, peer: Option<SocketAddr>) {
        Counters::bump(&self.counters.accepted);
        let live = self.slab().live;
        if live >= self.policy.max_connections.max(1) && !self.evict_idle() {
            Counters::bump(&self.counters.refused);
            refuse_over_capacity(&socket);
            return;
        }
        if socket.set_nonblocking(true).is_err() {
            return;
        }
        socket.set_nodelay();
        let now = Instant::now();
        let conn = self.slab().insert(|token| {
            Arc::new(Conn {
                token,
                peer,
                socket,
                state: Mutex::new(State {
                    phase: Phase::Idle,
                    deadline: Some(now + self.policy.idle_timeout),
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
                }),
            })
        });
        let data = epoll::EventData::new_u64(conn.token);
        let flags = epoll::EventFlags::IN | epoll::EventFlags::ONESHOT;
        if epoll::add(&self.epoll, &conn.socket, data, flags).is_err() {
            self.close(&conn, &mut conn.lock());
        }
    }

    /// Closes an idle connection (abortively: no `TIME_WAIT` left behind), if there is one:
    /// among those that never sent a request (a flood of empty connections) the oldest, else
    /// the one idle the longest — so a flood cannot push out clients that are using their
    /// keep-alive connections.
    fn evict_idle(&self) -> bool {
        let conns = self.slab().all();
        let mut victim: Option<((bool, Instant), Arc<Conn>)> = None;
        for conn in conns {
            let Ok(st) = conn.state.try_lock() else {
                continue;
            };
            let key = (st.served, st.idle_since);
            if st.phase == Phase::Idle
                && st.input.is_empty()
                && victim.as_ref().is_none_or(|(best, _)| key < *best)
            {
                drop(st);
                victim = Some((key, conn));
            }
        }
        let Some((_, conn)) = victim else {
            return false;
        };
        let Ok(mut st) = conn.state.try_lock() else {
            return false;
        };
        if st.phase != Phase::Idle || !st.input.is_empty() {
            return false; // a request started meanwhile
        }
        conn.socket.abort_on_close();
        self.close(&conn, &mut st);
        Counters::bump(&self.counters.evicted_idle);
        true
    }

    // ---- the accept and timer threads --------------------------------------------------------

    /// Accepts connections until the server closes. Accept errors (such as running out of file
    /// descriptors) never stop the loop; it backs off briefly instead.
    pub fn accept_loop(&self, listener: Listener) {
        let mut backoff = Duration::from_millis(5);
        while !self.closed.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((socket, peer)) => {
                    backoff = Duration::from_millis(5);
                    if self.closed.load(Ordering::Acquire) {
                        break;
                    }
                    self.admit(socket, peer);
                }
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ECONNABORTED…: the listener itself is fine.
                    log::warn!("cannot accept a connection: {e}; retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Enforces deadlines until the server closes.
    pub fn timer_loop(&self) {
        let p = &self.policy;
        let shortest = [
            p.idle_timeout,
            p.header_timeout,
            p.body_timeout,
            p.io_timeout,
        ]
        .iter()
        .copied()
        .min()
        .unwrap_or(Duration::from_secs(1));
        let tick = (shortest / 8).clamp(Duration::from_millis(5), Duration::from_millis(100));
        while !self.closed.load(Ordering::Acquire) {
            std::thread::sleep(tick);
            let conns = self.slab().all();
            let now = Instant::now();
            for conn in conns {
                if let Ok(mut st) = conn.state.try_lock() {
                    self.expire(&conn, &mut st, now);
                }
            }
        }
    }

    fn expire(&self, conn: &Conn, st: &mut State, now: Instant) {
        let io_deadline = st.progress_at + self.policy.io_timeout;
        let passed = |deadline: Option<Instant>| deadline.is_some_and(|d| now >= d);
        match st.phase {
            Phase::Idle if passed(st.deadline) => self.close(conn, st),
            Phase::Head | Phase::Body if passed(st.deadline) || passed(Some(io_deadline)) => {
                Counters::bump(&self.counters.timed_out);
                self.refuse(
                    conn,
                    st,
                    408,
                    "request timeout: the request head or body came too slowly",
                );
            }
            Phase::BudgetWait => {
                if self.reserve(st) {
                    st.phase = Phase::Body;
                    st.progress_at = now;
                    // Driven again at once: part of the body may be buffered already.
                    self.arm(conn, st, epoll::EventFlags::OUT);
                } else if passed(st.deadline) {
                    Counters::bump(&self.counters.budget_exhausted);
                    self.refuse(
                        conn,
                        st,
                        503,
                        "server busy: too many request bodies in flight, retry later",
                    );
                }
            }
            Phase::Writing if passed(st.deadline) || passed(Some(io_deadline)) => {
                self.close(conn, st)
            }
            Phase::Lingering if passed(st.deadline) => self.close(conn, st),
            _ => {}
        }
    }

    /// Stops everything: workers' `recv` fail, and every connection not waiting for a response
    /// is closed (those with a request in a worker's hands are answered, then closed).
    pub fn shut_down(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_all();
        let conns = self.slab().all();
        for conn in conns {
            let mut st = conn.lock();
            if st.phase == Phase::Dispatched {
                st.after_write = AfterWrite::Close;
            } else {
                self.close(&conn, &mut st);
            }
        }
    }
}

enum Progress {
    Request(Request),
    /// More input is needed.
    NeedInput,
    /// The connection is taken care of (refused, closed, waiting for budget).
    Stop,
}

fn header_value<'a>(headers: &'a [Header], name: &'static str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Where the end of a head (`CRLF CRLF`) is, as the length of the head including it.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

thread_local! {
    /// Each thread's read buffer (reads are copied out of it, so idle connections hold none).
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Reads once from `socket`, appending to `input`.
fn fill(socket: &Connection, input: &mut Vec<u8>) -> IoResult<usize> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let n = (&*socket).read(&mut scratch)?;
        input.extend_from_slice(&scratch[..n]);
        Ok(n)
    })
}

/// A minimal `503` for a connection over the cap, written without waiting long.
fn refuse_over_capacity(socket: &Connection) {
    let _ = socket.set_write_timeout(Some(Duration::from_millis(100)));
    let body = "server busy: too many connections, retry later\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{}",
        body.len(),
        body
    );
    let _ = (&*socket).write_all(response.as_bytes());
    let _ = socket.shutdown(Shutdown::Both);
}

/// The handler writes its response here; dropping it (after `respond`, or by `Request`'s drop,
/// which answers `500`) hands the bytes to the connection.
struct ResponseSink {
    reactor: Arc<Reactor>,
    conn: Arc<Conn>,
    bytes: Vec<u8>,
}

impl Write for ResponseSink {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> IoResult<()> {
        Ok(())
    }
}

impl Drop for ResponseSink {
    fn drop(&mut self) {
        self.reactor
            .respond(&self.conn, std::mem::take(&mut self.bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_end_is_found_across_reads() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r"), None);
    }
}
