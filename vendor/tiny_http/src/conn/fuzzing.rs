//! golectra: entry points for the fuzz targets (`fuzz/fuzz_targets/http_head.rs`,
//! `request_framing.rs`): the head parser, the chunked decoder and the whole connection state
//! machine, fed raw bytes.

use std::time::{Duration, Instant};

use crate::conn::chunked::ChunkDecoder;
use crate::conn::head::{find_head_end, parse_head, HeadLimits};
use crate::conn::{Env, Machine, Next, Step};
use crate::policy::ConnectionPolicy;

/// Parses one request head from raw bytes with the limits of `policy`, exactly as a connection
/// would: up to the first empty line. Returns the method, path and header count, or a
/// description of the error.
#[doc(hidden)]
pub fn parse_head_for_fuzzing(
    bytes: &[u8],
    policy: &ConnectionPolicy,
) -> Result<(String, String, usize), String> {
    let Some(end) = find_head_end(bytes) else {
        return Err("head without an end".into());
    };
    parse_head(&bytes[..end], HeadLimits::of(policy))
        .map(|head| (head.method.to_string(), head.path, head.headers.len()))
        .map_err(|e| format!("{:?}", e))
}

/// Decodes a chunked body from raw bytes, up to `max` bytes. The bytes are also fed in small
/// pieces, as they may arrive from a socket; both ways must agree (a disagreement panics, which
/// the fuzzer reports).
#[doc(hidden)]
pub fn decode_chunked_for_fuzzing(bytes: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let whole = decode_in_pieces(bytes, bytes.len().max(1));
    let piece = 1 + bytes.first().map_or(0, |b| *b as usize % 7);
    let pieces = decode_in_pieces(bytes, piece);
    assert_eq!(whole, pieces, "decoding in pieces of {} differs", piece);
    let mut out = whole?;
    out.truncate(max.saturating_add(1));
    Ok(out)
}

fn decode_in_pieces(bytes: &[u8], piece: usize) -> Result<Vec<u8>, String> {
    let mut decoder = ChunkDecoder::new(usize::MAX);
    let mut out = Vec::new();
    for part in bytes.chunks(piece) {
        decoder
            .feed(part, &mut out, usize::MAX)
            .map_err(|e| e.reason().to_string())?;
        if decoder.is_done() {
            return Ok(out);
        }
    }
    Err("the body ends inside its chunked framing".into())
}

/// Drives one connection's state machine over raw bytes (fed whole, then in pieces whose size
/// the first byte picks), answering every dispatched request with a fixed response, and
/// returns what happened: `D<body length>` per dispatch, `R<status>` per refusal, then `C`
/// (closed) or `W` (waiting for input). Both feedings must agree; within the policy's limits,
/// a dispatched body is never over `prefetch_limit + 1` bytes, and every response after which
/// the connection closes says `Connection: close`.
#[doc(hidden)]
pub fn drive_connection_for_fuzzing(bytes: &[u8], policy: &ConnectionPolicy) -> Vec<String> {
    dispatch_requests_for_fuzzing(bytes, policy).steps
}

/// A request the state machine dispatched, as the fuzz target `request_framing` checks it.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchedForFuzzing {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// The declared length, when the request had one.
    pub body_length: Option<usize>,
    /// Input bytes the connection had consumed when it dispatched the request: where the
    /// request ended, when its body was read.
    pub end: usize,
}

/// What a connection driven over raw bytes did.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrivenForFuzzing {
    /// The dispatched requests, in order.
    pub dispatched: Vec<DispatchedForFuzzing>,
    /// The status of the refusal that ended the connection, if one did.
    pub refused: Option<u16>,
    /// The steps as [`drive_connection_for_fuzzing`] logs them.
    pub steps: Vec<String>,
}

/// [`drive_connection_for_fuzzing`] with the dispatched requests and where each ended.
#[doc(hidden)]
pub fn dispatch_requests_for_fuzzing(bytes: &[u8], policy: &ConnectionPolicy) -> DrivenForFuzzing {
    let whole = drive(bytes, bytes.len().max(1), policy);
    let piece = 1 + bytes.first().map_or(0, |b| *b as usize % 13);
    let pieces = drive(bytes, piece, policy);
    assert_eq!(whole, pieces, "driving in pieces of {} differs", piece);
    whole
}

fn drive(bytes: &[u8], piece: usize, policy: &ConnectionPolicy) -> DrivenForFuzzing {
    let env = Env::new(policy.clone());
    let now = Instant::now();
    let mut m = Machine::new(now, &env);
    let mut parts = bytes.chunks(piece);
    let mut fed = 0;
    let mut out = DrivenForFuzzing {
        dispatched: Vec::new(),
        refused: None,
        steps: Vec::new(),
    };
    let end = |mut out: DrivenForFuzzing, last: &str| {
        out.steps.push(last.into());
        out
    };
    // Bounded: every step consumes input, or ends the connection.
    for _ in 0..bytes.len() * 4 + 16 {
        match m.poll(now, &env) {
            Step::NeedInput => match parts.next() {
                Some(part) => {
                    fed += part.len();
                    m.feed(part, now)
                }
                None => return end(out, "W"),
            },
            Step::Continue => {}
            Step::Dispatch(request) => {
                assert!(request.body.len() <= policy.prefetch_limit + 1);
                out.steps.push(format!("D{}", request.body.len()));
                out.dispatched.push(DispatchedForFuzzing {
                    method: request.method.to_string(),
                    path: request.path.clone(),
                    body: request.body.clone(),
                    body_length: request.body_length,
                    end: fed - m.buffered(),
                });
                assert!(m.respond(b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), now, &env));
                let says_close = says_connection_close(m.unwritten());
                m.wrote(m.unwritten().len(), now);
                match m.finish_writing(now, &env) {
                    Next::Read | Next::Drive => assert!(!says_close),
                    Next::Close | Next::Linger => {
                        assert!(says_close, "a closing response without Connection: close");
                        return end(out, "C");
                    }
                }
            }
            Step::Refuse(status) => {
                assert!(m
                    .unwritten()
                    .starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
                assert!(says_connection_close(m.unwritten()));
                out.steps.push(format!("R{status}"));
                out.refused = Some(status);
                return end(out, "C");
            }
            Step::Wait | Step::Close => return end(out, "C"),
        }
    }
    // Expire the rest.
    let _ = m.expire(now + Duration::from_secs(3600), &env);
    end(out, "T")
}

fn says_connection_close(response: &[u8]) -> bool {
    let head_end = find_head_end(response).unwrap_or(response.len());
    response[..head_end]
        .windows(21)
        .any(|w| w == b"\r\nConnection: close\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driving_a_connection_logs_its_steps_the_same_whole_or_in_pieces() {
        let policy = ConnectionPolicy {
            prefetch_limit: 8,
            ..Default::default()
        };
        let bytes = b"GET / HTTP/1.1\r\n\r\nPOST /u HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n0123456789\r\n";
        assert_eq!(
            drive_connection_for_fuzzing(bytes, &policy),
            ["D0", "D3", "D9", "C"]
        );
        assert_eq!(
            drive_connection_for_fuzzing(b"GET / HTTP/1.1\r\nHost", &policy),
            ["W"]
        );
        assert_eq!(
            drive_connection_for_fuzzing(b"BAD\r\n\r\n", &policy),
            ["R400", "C"]
        );
    }
}
