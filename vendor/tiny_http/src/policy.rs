//! golectra: the connection policy of the server — how many connections are served, how long
//! each phase of a request may take, how large a request head may be, and how many body bytes
//! may be buffered before dispatch — plus the counters that report on it, the body buffer
//! budget and the incremental chunked-body decoder. The engine that applies the policy is
//! `reactor.rs`.

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

/// The global body buffer budget: body bytes held by requests being read or handled.
#[derive(Default)]
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

/// Longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer lines accepted.
const MAX_TRAILERS: usize = 32;

/// Why a chunked body was refused (`400`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(usize),
    /// After a chunk's data, expecting its line end.
    DataEnd,
    /// Reading trailer lines after the last chunk.
    Trailer,
    Done,
}

/// An incremental `Transfer-Encoding: chunked` decoder: fed whatever bytes arrived, it never
/// re-reads input and bounds its framing lines (upstream's decoder grew a size line without
/// limit).
pub(crate) struct ChunkDecoder {
    state: ChunkState,
    line: Vec<u8>,
    trailers: usize,
}

impl ChunkDecoder {
    pub fn new() -> Self {
        Self {
            state: ChunkState::Size,
            line: Vec::new(),
            trailers: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, appending data to `out`; returns how many input bytes were used
    /// (all of them unless the body ended inside `input`).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut used = 0;
        while used < input.len() && self.state != ChunkState::Done {
            let rest = &input[used..];
            match self.state {
                ChunkState::Data(left) => {
                    let n = left.min(rest.len());
                    out.extend_from_slice(&rest[..n]);
                    used += n;
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let (line_done, n) = match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => (true, i + 1),
                        None => (false, rest.len()),
                    };
                    if self.line.len() + n > MAX_CHUNK_LINE {
                        return Err(ChunkError("chunk framing line too long"));
                    }
                    self.line.extend_from_slice(&rest[..n]);
                    used += n;
                    if line_done {
                        self.end_line()?;
                    }
                }
                ChunkState::Done => unreachable!(),
            }
        }
        Ok(used)
    }

    /// Interprets the completed framing line in `self.line` (ending in LF, maybe CRLF).
    fn end_line(&mut self) -> Result<(), ChunkError> {
        let mut line = std::mem::take(&mut self.line);
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.state = match self.state {
            ChunkState::Size => {
                let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
                let size = std::str::from_utf8(size)
                    .ok()
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|s| usize::from_str_radix(s, 16).ok())
                    .ok_or(ChunkError("invalid chunk size"))?;
                if size == 0 {
                    ChunkState::Trailer
                } else {
                    ChunkState::Data(size)
                }
            }
            ChunkState::DataEnd if line.is_empty() => ChunkState::Size,
            ChunkState::DataEnd => return Err(ChunkError("chunk data longer than its size")),
            ChunkState::Trailer if line.is_empty() => ChunkState::Done,
            ChunkState::Trailer => {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return Err(ChunkError("too many trailer lines"));
                }
                ChunkState::Trailer
            }
            ChunkState::Data(_) | ChunkState::Done => unreachable!(),
        };
        // Keep the allocation for the next line.
        line.clear();
        self.line = line;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkDecoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        for part in input.chunks(piece) {
            used += d.feed(part, &mut out)?;
            if d.is_done() {
                break;
            }
        }
        assert!(d.is_done(), "incomplete");
        Ok((out, used))
    }

    #[test]
    fn decodes_whatever_the_piece_size_and_stops_at_the_end() {
        let body = b"7\r\n[{\"id\":\r\n3;ext=1\r\n\"a\"\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1";
        let end = body.len() - b"GET / HTTP/1.1".len();
        for piece in [1, 2, 3, 5, 64] {
            let (out, used) = decode_in_pieces(body, piece).unwrap();
            assert_eq!(out, b"[{\"id\":\"a\"");
            assert!(used <= end, "piece {}", piece);
        }
        let mut d = ChunkDecoder::new();
        let mut out = Vec::new();
        assert_eq!(d.feed(body, &mut out).unwrap(), end);
    }

    #[test]
    fn refuses_broken_framing() {
        for bad in [&b"zz\r\n"[..], b"3\r\nabcd\r\n", b"\r\n"] {
            let mut d = ChunkDecoder::new();
            assert!(d.feed(bad, &mut Vec::new()).is_err(), "{:?}", bad);
        }
        let mut d = ChunkDecoder::new();
        assert!(d
            .feed(&[b'1'; MAX_CHUNK_LINE + 1], &mut Vec::new())
            .is_err());
        let trailers = format!("0\r\n{}", "X: y\r\n".repeat(MAX_TRAILERS + 1));
        let mut d = ChunkDecoder::new();
        assert!(d.feed(trailers.as_bytes(), &mut Vec::new()).is_err());
    }

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
