//! golectra: the connection engine — the I/O around the connection state machine
//! ([`crate::conn::Machine`]). Every admitted connection sits, non-blocking, in one epoll set;
//! the fixed worker threads that call [`crate::Server::recv`] wait on that set themselves. A
//! worker woken by a ready connection reads what arrived and feeds it to the connection's state
//! machine until that yields a complete request, which the worker returns to be handled; the
//! response is written by the same thread, without blocking, and whatever the socket does not
//! take is finished by whichever worker next sees it writable.
//!
//! So a request costs no hand-over between threads, a slow or idle client costs a buffer and
//! never a thread, and the thread count is fixed: `http-accept`, `http-timer` and the workers.
//!
//! - **One driver per connection.** Connections are registered `EPOLLONESHOT` and re-armed only
//!   when their driver is done with them, so at most one worker drives a connection at a time.
//!   Its state is still behind a mutex because the deadline waker and the accept thread
//!   (eviction) look at it too, with `try_lock`, so they never wait for a worker.
//! - **State decides, not the event.** A driver acts on the connection's phase (reading a head or
//!   body, writing a response, lingering), so a spurious or stale wake-up is harmless. Re-arming
//!   for `EPOLLOUT` is also how a connection with a pipelined request already buffered asks to be
//!   driven again (a socket is nearly always writable).
//! - **Pollers are gated.** At most one poller per CPU waits on the set ([`Gate`]); the other
//!   workers park. A thread that is about to block outside the server (a synchronous store, a
//!   database) gives its slot away first ([`crate::Server::blocking`]).
//!
//! The rest is split by concern: `admission.rs` (accepting, the cap, eviction), `deadlines.rs`
//! (the deadline heap and the `http-timer` thread that sleeps until its earliest entry),
//! `writing.rs` (responses, partial writes, lingering) and `slab.rs` (tokens).

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Result as IoResult};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rustix::event::epoll;
use rustix::event::{eventfd, EventfdFlags};

use crate::conn::{Env, Machine, Parsed, Phase, Step, READ_CHUNK};
use crate::connection::Connection;
use crate::gate::Gate;
use crate::policy::{BufferedBody, ConnectionPolicy, ConnectionStats};
use crate::request::buffered_request;
use crate::tls::TlsSession;
use crate::Request;

mod admission;
mod deadlines;
mod peers;
mod slab;
#[cfg(test)]
mod tests;
pub(crate) mod transport;
mod writing;

use deadlines::Deadlines;
use peers::{PeerSlot, Peers};
use slab::Slab;
use transport::Input;
use writing::ResponseSink;

/// The epoll token of the wake-up eventfd (shutdown and `unblock`).
const WAKE: u64 = u64::MAX;

/// What the reactor keeps of a connection besides its socket.
struct ConnState {
    m: Machine,
    /// The time of this connection's entry in the deadline heap, if it has one. The entry is
    /// never later than the machine's next deadline; it is moved only when that comes earlier.
    alarm: Option<Instant>,
    /// golectra: the TLS session, when the listener speaks TLS (see `transport.rs`).
    tls: Option<Box<TlsSession>>,
}

struct Conn {
    token: u64,
    peer: Option<SocketAddr>,
    /// golectra: its place in its peer's count (per-peer caps), left when the connection drops.
    peer_slot: Option<PeerSlot>,
    socket: Connection,
    state: Mutex<ConnState>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Identifies reactors for the gate's thread-local slot record.
static NEXT_REACTOR_ID: AtomicUsize = AtomicUsize::new(1);

pub(crate) struct Reactor {
    id: usize,
    epoll: OwnedFd,
    wake: OwnedFd,
    env: Env,
    peers: Arc<Peers>,
    conns: Mutex<Slab>,
    deadlines: Deadlines,
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
            peers: Peers::new(
                policy.max_connections_per_peer,
                policy.max_buffered_per_peer,
            ),
            env: Env::new(policy),
            conns: Mutex::new(Slab::default()),
            deadlines: Deadlines::default(),
            gate: Arc::new(Gate::new(pollers)),
            unblocks: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }))
    }

    fn slab(&self) -> MutexGuard<'_, Slab> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stats(&self) -> ConnectionStats {
        let c = &self.env.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ConnectionStats {
            current: self.slab().live,
            max: self.env.policy.max_connections,
            accepted: load(&c.accepted),
            refused: load(&c.refused),
            evicted_idle: load(&c.evicted_idle),
            timed_out: load(&c.timed_out),
            header_too_large: load(&c.header_too_large),
            bad_request: load(&c.bad_request),
            budget_exhausted: load(&c.budget_exhausted),
            tls_failed: load(&c.tls_failed),
            body_buffer_bytes: self.env.budget.used(),
            too_slow: load(&c.too_slow),
            body_too_large: load(&c.body_too_large),
            unsupported_framing: load(&c.unsupported_framing),
            refused_per_peer: load(&c.refused_per_peer),
            peer_budget_exhausted: load(&c.peer_budget_exhausted),
            peers: self.peers.count(),
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
        let request = match st.m.phase() {
            Phase::Idle | Phase::Head | Phase::Body => self.read(conn, &mut st),
            Phase::Writing => {
                self.flush(conn, &mut st);
                None
            }
            Phase::Lingering => {
                self.drain(conn, &mut st);
                None
            }
            Phase::BudgetWait | Phase::Dispatched | Phase::Closed => None,
        };
        self.schedule_deadline(conn, &mut st);
        request
    }

    /// Feeds the state machine what the socket has until it yields a request, the socket has
    /// nothing more for now (re-armed for input), or the connection was refused or closed.
    fn read(self: &Arc<Self>, conn: &Arc<Conn>, st: &mut ConnState) -> Option<Request> {
        loop {
            match st.m.poll(Instant::now(), &self.env) {
                Step::NeedInput => {}
                Step::Continue => {
                    if !self.send_continue(conn, st) {
                        self.close(conn, st);
                        return None;
                    }
                    continue;
                }
                Step::Dispatch(parsed) => return Some(self.request(conn, parsed)),
                // Counted by the machine (`Env::counters`).
                Step::Refuse(_) => {
                    self.flush(conn, st);
                    return None;
                }
                Step::Wait => return None,
                Step::Close => {
                    self.close(conn, st);
                    return None;
                }
            }
            match self.read_input(conn, st) {
                Ok(Input::Eof) => st.m.feed_eof(),
                Ok(Input::Data) => {}
                Ok(Input::NotTls) => {
                    st.m.refuse_now(400, transport::NOT_TLS, Instant::now(), &self.env);
                    self.flush(conn, st);
                    return None;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // A TLS handshake may have output the socket did not take yet.
                    let mut interest = epoll::EventFlags::IN;
                    if Self::output_waits(st) {
                        interest |= epoll::EventFlags::OUT;
                    }
                    self.arm(conn, st, interest);
                    return None;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::InvalidData && st.tls.is_some() => {
                    // A failed TLS session: its alert is out; linger so the client reads it.
                    st.tls = None;
                    st.m.linger_after_tls_failure(Instant::now());
                    let _ = conn.socket.shutdown(Shutdown::Write);
                    self.drain(conn, st);
                    return None;
                }
                Err(_) => {
                    self.close(conn, st);
                    return None;
                }
            }
        }
    }

    /// A complete request for a worker; its response comes back through a [`ResponseSink`].
    fn request(self: &Arc<Self>, conn: &Arc<Conn>, parsed: Parsed) -> Request {
        let writer = ResponseSink::new(self.clone(), conn.clone());
        buffered_request(
            parsed.method,
            parsed.path,
            parsed.version,
            parsed.headers,
            conn.peer,
            BufferedBody {
                body: std::io::Cursor::new(parsed.body),
                _reservation: parsed.reservation,
            },
            parsed.body_length,
            writer,
        )
    }

    // ---- registration ----------------------------------------------------------------------

    fn arm(&self, conn: &Conn, st: &mut ConnState, interest: epoll::EventFlags) {
        let flags = interest | epoll::EventFlags::ONESHOT;
        let data = epoll::EventData::new_u64(conn.token);
        if epoll::modify(&self.epoll, &conn.socket, data, flags).is_err() {
            self.close(conn, st);
        }
    }

    fn close(&self, conn: &Conn, st: &mut ConnState) {
        if !st.m.close() {
            return;
        }
        // Its deadline entry, if any, stays until it comes up (then the token is unknown) or
        // the slot is reused.
        let _ = epoll::delete(&self.epoll, &conn.socket);
        let _ = conn.socket.shutdown(Shutdown::Both);
        self.slab().remove(conn.token);
    }

    /// Stops everything: workers' `recv` fail, and every connection not waiting for a response
    /// is closed (those with a request in a worker's hands are answered, then closed).
    pub fn shut_down(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_all();
        self.deadlines.wake();
        let conns = self.slab().all();
        for conn in conns {
            let mut st = conn.lock();
            if st.m.close_for_shutdown() {
                self.close(&conn, &mut st);
            }
        }
    }
}

thread_local! {
    /// Each thread's read buffer (reads are copied out of it, so idle connections hold none).
    pub(super) static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Reads once from `socket` and hands what arrived to `take`.
fn fill(socket: &Connection, take: impl FnOnce(&[u8])) -> IoResult<usize> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let n = (&*socket).read(&mut scratch)?;
        if n > 0 {
            take(&scratch[..n]);
        }
        Ok(n)
    })
}
