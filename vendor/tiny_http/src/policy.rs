//! golectra: the connection policy of the server — how many connections are served, how long
//! each phase of a request may take, how large a request head may be, and how many body bytes
//! may be buffered before dispatch — plus the counters that report on it, the body buffer
//! budget. The rules are applied by the connection state machine (`conn/`), the I/O by the
//! reactor (`reactor/`).

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
    /// cannot get its share within its body deadline gets `503`.
    pub prefetch_budget: usize,
    /// golectra: TLS on this listener, when set: every connection is a TLS session whose
    /// configuration is taken from the acceptor at accept time (so replacing it reaches new
    /// connections only). The handshake must be complete within `header_timeout` of the
    /// accept, else the connection is closed.
    pub tls: Option<Arc<crate::tls::TlsAcceptor>>,
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
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The global body buffer budget: body bytes held by requests being read or handled.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    used: AtomicUsize,
}

impl Budget {
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` more bytes for `reservation` if they fit under `limit`.
    pub fn grow(
        self: &Arc<Self>,
        reservation: &mut Option<Reservation>,
        n: usize,
        limit: usize,
    ) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= limit)
            })
            .is_ok();
        if taken {
            match reservation {
                Some(r) => r.bytes += n,
                None => {
                    *reservation = Some(Reservation {
                        budget: self.clone(),
                        bytes: n,
                    })
                }
            }
        }
        taken
    }
}

/// Bytes of the [`Budget`] held by one body; given back when dropped (with the request).
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Reservation {
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
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
        let budget = Arc::new(Budget::default());
        let mut a = None;
        let mut b = None;
        assert!(budget.grow(&mut a, 600, 1000));
        assert!(!budget.grow(&mut b, 500, 1000));
        assert!(budget.grow(&mut a, 400, 1000));
        assert_eq!(budget.used(), 1000);
        drop(a);
        assert!(budget.grow(&mut b, 500, 1000));
        assert_eq!(b.as_ref().map(Reservation::bytes), Some(500));
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
