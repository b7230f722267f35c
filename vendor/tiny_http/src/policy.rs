//! golectra: the connection policy of the server — how many connections are served (in all and
//! per peer), how long each phase of a request may take and how fast its body must come, how
//! large a request head may be, how many body bytes may be buffered before dispatch (in all and
//! per peer), and how its own refusals are signed — plus the counters that report on it and the
//! body buffer budgets. The rules are applied by the connection state machine (`conn/`), the
//! I/O by the reactor (`reactor/`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Limits and timeouts applied to every connection. See each field for what a client sees.
#[derive(Debug, Clone)]
pub struct ConnectionPolicy {
    /// Most connections served at once. At the cap an idle connection is closed to make room
    /// (one that never sent a request first, else the one idle the longest); when none is idle
    /// the newcomer gets `503` and is closed.
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
    /// Bodies up to this size are read completely before their request is returned by
    /// `Server::recv`; a larger declared `Content-Length` is dispatched with an empty
    /// body (so the handler can refuse it at once) and the connection is closed after the
    /// answer. Chunked bodies are read up to `prefetch_limit + 1` bytes.
    pub prefetch_limit: usize,
    /// Most body bytes buffered across all connections (being read or handled). A body that
    /// cannot get its share within its body deadline gets `503`. A body's share follows what
    /// it sent, not what it declared: it starts at 64 KiB (or the declared length, if smaller)
    /// and grows as bytes arrive.
    pub prefetch_budget: usize,
    /// golectra: TLS on this listener, when set: every connection is a TLS session whose
    /// configuration is taken from the acceptor at accept time (so replacing it reaches new
    /// connections only). The handshake must be complete within `header_timeout` of the
    /// accept, else the connection is closed.
    pub tls: Option<Arc<crate::tls::TlsAcceptor>>,
    /// golectra: the slowest acceptable body, in bytes per second, measured from the end of
    /// its head (or from when it got budget after waiting) over the whole body: after
    /// `body_rate_grace`, a body must have sent `min_body_rate` bytes for every second past the
    /// grace. Slower: `408`. `0` turns the rule off.
    pub min_body_rate: usize,
    /// golectra: how long a body may send nothing before `min_body_rate` applies.
    pub body_rate_grace: Duration,
    /// golectra: most connections from one peer address (IPv4-mapped IPv6 counts as IPv4). At
    /// the cap an idle connection of that peer is closed to make room; when none is idle the
    /// newcomer gets `503` with `Retry-After: 1`. `0` = no cap.
    pub max_connections_per_peer: usize,
    /// golectra: most body bytes buffered for one peer address across its connections (at
    /// least `prefetch_limit`, or no body of the largest size fits). A body that cannot get its
    /// share waits as for the global budget and gets `503` at its body deadline. `0` = no cap.
    pub max_buffered_per_peer: usize,
    /// golectra: signs the refusals the engine writes itself (`400`, `408`, `417`, `431`,
    /// `503`, `505`): a header over each refusal's body. `None`: unsigned.
    pub refusal_signer: Option<RefusalSigner>,
}

/// golectra: a header the engine adds to every refusal it writes itself: `name`, and a value
/// computed over the refusal's body by `sign` (a server's response signature, say).
#[derive(Clone)]
pub struct RefusalSigner {
    /// The header's name.
    pub name: String,
    /// The header's value for a body.
    pub sign: Arc<SignFn>,
}

/// golectra: what computes a [`RefusalSigner`]'s header value over a refusal's body.
pub type SignFn = dyn Fn(&[u8]) -> String + Send + Sync;

impl RefusalSigner {
    /// A signer adding the header `name` with the value `sign(body)`.
    pub fn new(
        name: impl Into<String>,
        sign: impl Fn(&[u8]) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            sign: Arc::new(sign),
        }
    }
}

impl std::fmt::Debug for RefusalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusalSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
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
            tls: None,
            min_body_rate: 1 << 10,
            body_rate_grace: Duration::from_secs(5),
            max_connections_per_peer: 256,
            max_buffered_per_peer: 64 << 20,
            refusal_signer: None,
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
    /// golectra: TLS connections that failed: a handshake refused (unknown or missing client
    /// certificate, no common protocol version or cipher), a corrupt record, or plain HTTP
    /// sent to the TLS port (answered `400`).
    pub tls_failed: u64,
    /// Body bytes buffered right now (prefetching or waiting for a worker).
    pub body_buffer_bytes: usize,
    /// golectra: requests answered `408` because their body came slower than `min_body_rate`
    /// (not counted in `timed_out`).
    pub too_slow: u64,
    /// golectra: chunked bodies refused `413` at the wire limit (framing bytes included).
    pub body_too_large: u64,
    /// golectra: requests refused `501`: a transfer coding other than one `chunked`.
    pub unsupported_framing: u64,
    /// golectra: connections refused with `503` at the per-peer cap because none of that
    /// peer's connections was idle (not counted in `refused`).
    pub refused_per_peer: u64,
    /// golectra: requests answered `503` because their peer's body budget
    /// (`max_buffered_per_peer`) stayed exhausted (not counted in `budget_exhausted`).
    pub peer_budget_exhausted: u64,
    /// golectra: peer addresses with a connection open now.
    pub peers: usize,
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
    pub tls_failed: AtomicU64,
    pub too_slow: AtomicU64,
    pub body_too_large: AtomicU64,
    pub unsupported_framing: AtomicU64,
    pub refused_per_peer: AtomicU64,
    pub peer_budget_exhausted: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A body buffer budget: body bytes held by requests being read or handled, under a limit —
/// the server's (`prefetch_budget`) or, golectra: one peer's (`max_buffered_per_peer`).
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they fit under the limit.
    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// golectra: which budget a body could not get its share from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shortage {
    /// The server's (`prefetch_budget`).
    Global,
    /// Its peer's (`max_buffered_per_peer`).
    Peer,
}

/// Bytes held by one body, of the global [`Budget`] and (golectra: with a per-peer cap) of its
/// peer's; given back when dropped (with the request).
#[derive(Debug)]
pub(crate) struct Reservation {
    global: Arc<Budget>,
    peer: Option<Arc<Budget>>,
    bytes: usize,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `n` more bytes for `slot` from `global` and from `peer`, from both or from
    /// neither. A slot that already holds bytes must be grown from the same budgets.
    pub fn grow(
        slot: &mut Option<Reservation>,
        global: &Arc<Budget>,
        peer: Option<&Arc<Budget>>,
        n: usize,
    ) -> Result<(), Shortage> {
        if let Some(peer) = peer {
            if !peer.take(n) {
                return Err(Shortage::Peer);
            }
        }
        if !global.take(n) {
            if let Some(peer) = peer {
                peer.give(n);
            }
            return Err(Shortage::Global);
        }
        match slot {
            Some(r) => r.bytes += n,
            None => {
                *slot = Some(Reservation {
                    global: global.clone(),
                    peer: peer.cloned(),
                    bytes: n,
                })
            }
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.global.give(self.bytes);
        if let Some(peer) = &self.peer {
            peer.give(self.bytes);
        }
    }
}

/// A complete request body and the budget it holds, read by the handler.
pub(crate) struct BufferedBody {
    pub body: std::io::Cursor<Vec<u8>>,
    pub _reservation: Option<Reservation>,
}

impl std::io::Read for BufferedBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.body.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = Arc::new(Budget::new(1000));
        let mut a = None;
        let mut b = None;
        assert_eq!(Reservation::grow(&mut a, &budget, None, 600), Ok(()));
        assert_eq!(
            Reservation::grow(&mut b, &budget, None, 500),
            Err(Shortage::Global)
        );
        assert_eq!(Reservation::grow(&mut a, &budget, None, 400), Ok(()));
        assert_eq!(budget.used(), 1000);
        drop(a);
        assert_eq!(Reservation::grow(&mut b, &budget, None, 500), Ok(()));
        assert_eq!(b.as_ref().map(Reservation::bytes), Some(500));
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_peer_budget_caps_one_peer_and_takes_from_both_or_neither() {
        let global = Arc::new(Budget::new(1000));
        let peer = Arc::new(Budget::new(300));
        let other = Arc::new(Budget::new(300));
        let mut a = None;
        let mut b = None;
        assert_eq!(Reservation::grow(&mut a, &global, Some(&peer), 200), Ok(()));
        // Over the peer's cap although the global budget has room: nothing taken anywhere.
        assert_eq!(
            Reservation::grow(&mut b, &global, Some(&peer), 101),
            Err(Shortage::Peer)
        );
        assert_eq!((global.used(), peer.used()), (200, 200));
        assert!(b.is_none());
        // Another peer is not held back by this one's cap.
        let mut c = None;
        assert_eq!(
            Reservation::grow(&mut c, &global, Some(&other), 300),
            Ok(())
        );
        // The global budget refuses: the peer's share is given back.
        let mut d = None;
        let mut big = None;
        assert_eq!(Reservation::grow(&mut big, &global, None, 450), Ok(()));
        assert_eq!(
            Reservation::grow(&mut d, &global, Some(&peer), 100),
            Err(Shortage::Global)
        );
        assert_eq!((global.used(), peer.used()), (950, 200));
        drop(a);
        drop(c);
        drop(big);
        assert_eq!((global.used(), peer.used(), other.used()), (0, 0, 0));
    }
}
