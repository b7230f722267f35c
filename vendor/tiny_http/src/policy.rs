//! golectra: the connection policy of the server — who gets a connection thread, how long each
//! phase of a request may take, how large a request head may be, and how many body bytes may be
//! buffered before dispatch — plus the counters that report on it.
//!
//! Every accepted connection is registered here with a shared handle on its socket and an atomic
//! phase (idle, reading the head, reading the body, dispatched). The accept thread admits a
//! connection while fewer than `max_connections` are live; at the cap it evicts the connection
//! that has been idle longest (shutting its socket down wakes its blocked read, and its thread
//! exits) or, if none is idle, answers `503` and closes. Deadlines are enforced by the reading
//! side of each connection ([`ConnState::read`]), which every socket read goes through.

use std::collections::HashMap;
use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// Limits and timeouts applied to every connection. See each field for what a client sees.
#[derive(Debug, Clone)]
pub struct ConnectionPolicy {
    /// Most connections served at once. At the cap the longest-idle keep-alive connection is
    /// closed to make room; when none is idle the newcomer gets `503` and is closed.
    pub max_connections: usize,
    /// How long a connection may wait for the first byte of its next request (keep-alive and
    /// fresh connections). Missed: closed silently.
    pub idle_timeout: Duration,
    /// How long the whole request head may take once its first byte arrived. Missed: `408`.
    pub header_timeout: Duration,
    /// How long a request body (prefetch) may take in total, and the total time allowed to write
    /// one response. Missed: `408` (body) or the connection is closed (response).
    pub body_timeout: Duration,
    /// Longest wait of a single socket read or write while a request is in progress.
    pub io_timeout: Duration,
    /// Longest line of the request head (request line or one header). Over: `431`.
    pub max_header_line: usize,
    /// Most header fields in one request. Over: `431`.
    pub max_header_count: usize,
    /// Most bytes in the whole request head. Over: `431`.
    pub max_head_bytes: usize,
    /// Bodies up to this size are read completely by the connection thread before the request
    /// is handed to a worker; a larger declared `Content-Length` is dispatched with an empty
    /// body (so the handler can refuse it at once) and the connection is closed after the
    /// answer. Chunked bodies are read up to `prefetch_limit + 1` bytes.
    pub prefetch_limit: usize,
    /// Most body bytes buffered across all connections (prefetching or queued). A body that
    /// cannot get its share within its body deadline gets `503`.
    pub prefetch_budget: usize,
}

impl Default for ConnectionPolicy {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(10),
            max_header_line: 8 << 10,
            max_header_count: 100,
            max_head_bytes: 64 << 10,
            prefetch_limit: 4 << 20,
            prefetch_budget: 256 << 20,
        }
    }
}

/// A snapshot of the connection counters, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Connections open now.
    pub current: usize,
    /// The configured cap.
    pub max: usize,
    /// Connections accepted since start (admitted or not).
    pub accepted: u64,
    /// Connections refused with `503` because the cap was reached and none was idle.
    pub refused: u64,
    /// Idle connections closed to make room for a new one.
    pub evicted_idle: u64,
    /// Requests answered `408` because the head or body deadline passed.
    pub timed_out: u64,
    /// Requests answered `431` (header line, count or head size over the limit).
    pub header_too_large: u64,
    /// Requests answered `400` before dispatch (malformed request line, header, non-ASCII).
    pub bad_request: u64,
    /// Requests answered `503` because the body buffer budget stayed exhausted.
    pub budget_exhausted: u64,
    /// Body bytes buffered right now (prefetching or waiting for a worker).
    pub body_buffer_bytes: usize,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub evicted_idle: AtomicU64,
    pub timed_out: AtomicU64,
    pub header_too_large: AtomicU64,
    pub bad_request: AtomicU64,
    pub budget_exhausted: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a connection is doing; only `IDLE` connections may be evicted.
pub(crate) mod phase {
    pub const IDLE: u8 = 0;
    pub const HEAD: u8 = 1;
    pub const BODY: u8 = 2;
    pub const DISPATCHED: u8 = 3;
    pub const CLOSING: u8 = 4;
    pub const EVICTED: u8 = 5;
}

const NO_DEADLINE: u64 = u64::MAX;

/// State shared by the accept thread and all connection threads.
pub(crate) struct Shared {
    pub policy: ConnectionPolicy,
    pub counters: Counters,
    registry: Mutex<Registry>,
    budget: Mutex<usize>,
    budget_freed: Condvar,
    epoch: Instant,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    live: HashMap<u64, Entry>,
}

struct Entry {
    socket: Arc<Connection>,
    state: Arc<ConnState>,
}

/// Why a connection was not admitted.
pub(crate) enum Refusal {
    /// At the cap with nothing idle to evict.
    Full,
}

impl Shared {
    pub fn new(policy: ConnectionPolicy) -> Arc<Self> {
        Arc::new(Self {
            policy,
            counters: Counters::default(),
            registry: Mutex::new(Registry::default()),
            budget: Mutex::new(0),
            budget_freed: Condvar::new(),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Registers a new connection, evicting the longest-idle one when at the cap.
    pub fn admit(self: &Arc<Self>, socket: Arc<Connection>) -> Result<Arc<ConnState>, Refusal> {
        let mut registry = self.registry.lock().unwrap();
        if registry.live.len() >= self.policy.max_connections.max(1) {
            let victim = registry
                .live
                .iter()
                .filter(|(_, e)| e.state.phase.load(Ordering::Acquire) == phase::IDLE)
                .min_by_key(|(_, e)| e.state.idle_since_ms.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            let evicted = victim.and_then(|id| {
                let entry = registry.live.get(&id)?;
                // Loses the race if the connection just received the first byte of a request.
                entry
                    .state
                    .phase
                    .compare_exchange(
                        phase::IDLE,
                        phase::EVICTED,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .ok()?;
                registry.live.remove(&id)
            });
            match evicted {
                Some(entry) => {
                    // Wakes the blocked read (the connection thread sees EOF and exits) and
                    // tells the client with a FIN; the final close is abortive so evictions
                    // leave no TIME_WAIT behind.
                    entry.socket.abort_on_close();
                    let _ = entry.socket.shutdown(Shutdown::Both);
                    Counters::bump(&self.counters.evicted_idle);
                }
                None => return Err(Refusal::Full),
            }
        }
        registry.next_id += 1;
        let now = self.now_ms();
        let state = Arc::new(ConnState {
            id: registry.next_id,
            phase: AtomicU8::new(phase::IDLE),
            deadline_ms: AtomicU64::new(now + self.policy.idle_timeout.as_millis() as u64),
            idle_since_ms: AtomicU64::new(now),
            last_timeout_ms: AtomicU64::new(0),
            shared: self.clone(),
        });
        registry.live.insert(
            state.id,
            Entry {
                socket,
                state: state.clone(),
            },
        );
        Ok(state)
    }

    fn deregister(&self, id: u64) {
        self.registry.lock().unwrap().live.remove(&id);
    }

    /// Shuts the reading side of every live connection (server shutdown): idle connections
    /// end at once, requests in flight are still answered.
    pub fn close_all(&self) {
        for entry in self.registry.lock().unwrap().live.values() {
            let _ = entry.socket.shutdown(Shutdown::Read);
        }
    }

    pub fn stats(&self) -> ConnectionStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConnectionStats {
            current: self.registry.lock().unwrap().live.len(),
            max: self.policy.max_connections,
            accepted: load(&c.accepted),
            refused: load(&c.refused),
            evicted_idle: load(&c.evicted_idle),
            timed_out: load(&c.timed_out),
            header_too_large: load(&c.header_too_large),
            bad_request: load(&c.bad_request),
            budget_exhausted: load(&c.budget_exhausted),
            body_buffer_bytes: *self.budget.lock().unwrap(),
        }
    }
}

/// One connection's phase and deadline.
pub(crate) struct ConnState {
    id: u64,
    phase: AtomicU8,
    /// Milliseconds since `Shared::epoch` after which reads fail with `TimedOut`.
    deadline_ms: AtomicU64,
    idle_since_ms: AtomicU64,
    /// The socket read timeout last set, in ms (0 = unknown), to skip redundant syscalls.
    last_timeout_ms: AtomicU64,
    pub shared: Arc<Shared>,
}

impl ConnState {
    /// Removes the connection from the registry (its thread is done with it).
    pub fn deregister(&self) {
        self.shared.deregister(self.id);
    }

    pub fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    fn set(&self, phase: u8, timeout: Option<Duration>) {
        let now = self.shared.now_ms();
        let deadline = timeout.map_or(NO_DEADLINE, |t| now + t.as_millis() as u64);
        self.deadline_ms.store(deadline, Ordering::Release);
        if phase == phase::IDLE {
            self.idle_since_ms.store(now, Ordering::Relaxed);
        }
        // Never resurrect an evicted connection.
        let _ = self
            .phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p != phase::EVICTED).then_some(phase)
            });
    }

    /// Waiting for the first byte of the next request.
    pub fn enter_idle(&self) {
        self.set(phase::IDLE, Some(self.shared.policy.idle_timeout));
    }

    /// The first byte of a request arrived. Fails if the connection was just evicted.
    pub fn enter_head(&self) -> IoResult<()> {
        let now = self.shared.now_ms();
        self.deadline_ms.store(
            now + self.shared.policy.header_timeout.as_millis() as u64,
            Ordering::Release,
        );
        self.phase
            .compare_exchange(
                phase::IDLE,
                phase::HEAD,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(|_| IoError::new(ErrorKind::ConnectionAborted, "connection evicted"))
    }

    pub fn enter_body(&self) {
        self.set(phase::BODY, Some(self.shared.policy.body_timeout));
    }

    pub fn enter_dispatched(&self) {
        self.set(phase::DISPATCHED, None);
    }

    /// Draining the client's leftovers before closing; bounded by `linger`.
    pub fn enter_closing(&self, linger: Duration) {
        self.set(phase::CLOSING, Some(linger));
    }

    /// The body deadline as an instant, for waits that are not socket reads.
    pub fn deadline(&self) -> Option<Instant> {
        let ms = self.deadline_ms.load(Ordering::Acquire);
        (ms != NO_DEADLINE).then(|| self.shared.epoch + Duration::from_millis(ms))
    }

    /// One socket read under the current phase's deadline. In the idle phase the read waits up
    /// to the idle deadline; otherwise each read also waits at most `io_timeout`.
    pub fn read(&self, socket: &Connection, buf: &mut [u8]) -> IoResult<usize> {
        loop {
            let now = self.shared.now_ms();
            let deadline = self.deadline_ms.load(Ordering::Acquire);
            if now >= deadline {
                return Err(IoError::new(ErrorKind::TimedOut, "deadline passed"));
            }
            let idle = self.phase() == phase::IDLE;
            let io = self.shared.policy.io_timeout.as_millis() as u64;
            let remaining = deadline.saturating_sub(now);
            let wait = if idle { remaining } else { remaining.min(io) }.max(1);
            if self.last_timeout_ms.swap(wait, Ordering::Relaxed) != wait {
                socket.set_read_timeout(Some(Duration::from_millis(wait)))?;
            }
            match (&*socket).read(buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if idle {
                        continue; // the loop re-checks the idle deadline
                    }
                    return Err(IoError::new(ErrorKind::TimedOut, "read timed out"));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Takes `n` bytes of the body buffer budget, waiting for others to release theirs until
    /// the current deadline. `None` when the budget stayed exhausted.
    pub fn reserve(&self, n: usize) -> Option<Reservation> {
        let shared = &self.shared;
        let limit = shared.policy.prefetch_budget;
        let deadline = self.deadline();
        let mut used = shared.budget.lock().unwrap();
        loop {
            if *used + n <= limit {
                *used += n;
                return Some(Reservation {
                    shared: shared.clone(),
                    bytes: n,
                });
            }
            let wait = match deadline {
                Some(d) => d.checked_duration_since(Instant::now())?,
                None => Duration::from_secs(1),
            };
            used = shared.budget_freed.wait_timeout(used, wait).unwrap().0;
        }
    }
}

/// A share of the body buffer budget, returned on drop.
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Reservation {
    /// Grows this reservation by `n` bytes under the same rules as [`ConnState::reserve`].
    pub fn grow(&mut self, state: &ConnState, n: usize) -> bool {
        match state.reserve(n) {
            Some(mut more) => {
                self.bytes += std::mem::take(&mut more.bytes);
                true
            }
            None => false,
        }
    }
}

impl Reservation {
    /// Returns what was reserved beyond `bytes`.
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            *self.shared.budget.lock().unwrap() -= self.bytes - bytes;
            self.bytes = bytes;
            self.shared.budget_freed.notify_all();
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            *self.shared.budget.lock().unwrap() -= self.bytes;
            self.shared.budget_freed.notify_all();
        }
    }
}

/// A prefetched body together with its budget reservation: the bytes count against the budget
/// until the worker is done with the request.
pub(crate) struct BufferedBody {
    pub body: std::io::Cursor<Vec<u8>>,
    pub _reservation: Option<Reservation>,
}

impl Read for BufferedBody {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.body.read(buf)
    }
}

/// Longest chunk-size line (size plus extensions) or trailer line of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer lines after the last chunk.
const MAX_TRAILERS: usize = 32;

/// A `Transfer-Encoding: chunked` decoder whose framing lines are bounded (the upstream
/// decoder grows a chunk-size line without limit). Malformed framing is an `InvalidData` error.
pub(crate) struct ChunkedReader<R> {
    source: R,
    /// Bytes left in the current chunk; `None` between chunks.
    remaining: Option<usize>,
    done: bool,
}

impl<R: Read> ChunkedReader<R> {
    pub fn new(source: R) -> Self {
        Self {
            source,
            remaining: None,
            done: false,
        }
    }

    fn line(&mut self) -> IoResult<Vec<u8>> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if self.source.read(&mut byte)? == 0 {
                return Err(IoError::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed inside a chunked body",
                ));
            }
            if byte[0] == b'\n' {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if line.len() >= MAX_CHUNK_LINE {
                return Err(invalid("chunk framing line too long"));
            }
            line.push(byte[0]);
        }
    }
}

fn invalid(why: &'static str) -> IoError {
    IoError::new(ErrorKind::InvalidData, why)
}

impl<R: Read> Read for ChunkedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let remaining = match self.remaining {
            Some(n) => n,
            None => {
                let line = self.line()?;
                let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
                let size = std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                    .ok_or_else(|| invalid("invalid chunk size"))?;
                if size == 0 {
                    for _ in 0..=MAX_TRAILERS {
                        if self.line()?.is_empty() {
                            self.done = true;
                            return Ok(0);
                        }
                    }
                    return Err(invalid("too many trailer lines"));
                }
                size
            }
        };
        let want = buf.len().min(remaining);
        let n = self.source.read(&mut buf[..want])?;
        if n == 0 {
            return Err(IoError::new(
                ErrorKind::UnexpectedEof,
                "connection closed inside a chunk",
            ));
        }
        if n == remaining {
            if !self.line()?.is_empty() {
                return Err(invalid("chunk data longer than its size"));
            }
            self.remaining = None;
        } else {
            self.remaining = Some(remaining - n);
        }
        Ok(n)
    }
}

/// Reads `source` to its end or to `max` bytes, holding a budget reservation for what it
/// buffers. `Err(None)` means the budget stayed exhausted until the deadline.
pub(crate) fn read_budgeted<R: Read>(
    state: &ConnState,
    mut source: R,
    max: usize,
) -> Result<BufferedBody, Option<IoError>> {
    const STEP: usize = 64 << 10;
    let mut data = Vec::new();
    let mut reservation: Option<Reservation> = None;
    let mut reserved = 0;
    loop {
        let want = (max - data.len()).min(STEP);
        if want == 0 {
            break;
        }
        let need = data.len() + want;
        if need > reserved {
            let more = need - reserved;
            let ok = match reservation.as_mut() {
                Some(r) => r.grow(state, more),
                None => {
                    reservation = state.reserve(more);
                    reservation.is_some()
                }
            };
            if !ok {
                return Err(None);
            }
            reserved = need;
        }
        let start = data.len();
        data.resize(start + want, 0);
        match source.read(&mut data[start..]) {
            Ok(n) => {
                data.truncate(start + n);
                if n == 0 {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => data.truncate(start),
            Err(e) => return Err(Some(e)),
        }
    }
    if let Some(r) = reservation.as_mut() {
        r.shrink_to(data.len());
    }
    Ok(BufferedBody {
        body: std::io::Cursor::new(data),
        _reservation: reservation,
    })
}
