//! Request heads: the request line and header fields, parsed within the head limits of the
//! connection policy. (Upstream's `client.rs`; golectra moved the connection logic to
//! `reactor.rs` and kept the parser here.)

use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::ErrorKind;
use std::str::FromStr;

use crate::common::{HTTPVersion, Header, Method};
use crate::policy::ConnectionPolicy;

/// Error that can happen when reading a request.
#[derive(Debug)]
#[allow(dead_code)] // golectra: the versions are kept for debug output only
pub(crate) enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    ReadIoError(IoError),
    // golectra: limits of the connection policy and malformed input.
    /// A head line, the header count or the whole head is over its limit (`431`).
    HeaderTooLarge,
    /// A head line is not ASCII (`400`).
    NotAscii,
}

/// golectra: limits on the request head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    pub max_line: usize,
    pub max_count: usize,
    pub max_bytes: usize,
}

impl HeadLimits {
    pub(crate) fn of(policy: &ConnectionPolicy) -> Self {
        Self {
            max_line: policy.max_header_line,
            max_count: policy.max_header_count,
            max_bytes: policy.max_head_bytes,
        }
    }
}

/// A parsed request head.
pub(crate) type Head = (Method, String, HTTPVersion, Vec<Header>);

/// golectra: parses one request head from `bytes` within `limits`. `bytes` holds the head up
/// to and including its empty line (`CRLF CRLF`); a head without one is refused as incomplete.
pub(crate) fn read_head(bytes: &[u8], limits: HeadLimits) -> Result<Head, ReadError> {
    if bytes.len() > limits.max_bytes {
        return Err(ReadError::HeaderTooLarge);
    }
    let mut lines = HeadLines { rest: bytes };
    let line = next_line(&mut lines, limits.max_line)?;
    let (method, path, version) = parse_request_line(line.as_str().trim())?;

    let mut headers = Vec::new();
    loop {
        let line = next_line(&mut lines, limits.max_line)?;
        if line.is_empty() {
            break;
        };
        if headers.len() >= limits.max_count {
            return Err(ReadError::HeaderTooLarge);
        }
        headers.push(match FromStr::from_str(line.as_str().trim()) {
            Ok(h) => h,
            _ => return Err(ReadError::WrongHeader(version)),
        });
    }
    Ok((method, path, version, headers))
}

/// The unread part of a head.
struct HeadLines<'a> {
    rest: &'a [u8],
}

/// The next line up to `CRLF` (a lone `LF` is part of the line), bounded by `max_line`;
/// non-ASCII is its own error.
fn next_line(lines: &mut HeadLines<'_>, max_line: usize) -> Result<AsciiString, ReadError> {
    let end = lines
        .rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or_else(|| {
            ReadError::ReadIoError(IoError::new(
                ErrorKind::UnexpectedEof,
                "head without an end",
            ))
        })?;
    if end > max_line {
        return Err(ReadError::HeaderTooLarge);
    }
    let line = &lines.rest[..end];
    lines.rest = &lines.rest[end + 2..];
    AsciiString::from_ascii(line).map_err(|_| ReadError::NotAscii)
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

/// golectra: parses one request head from raw bytes with the limits of `policy`, exactly as a
/// connection would (for fuzzing). Returns the method, path and header count, or a description
/// of the error.
#[doc(hidden)]
pub fn parse_head_for_fuzzing(
    bytes: &[u8],
    policy: &ConnectionPolicy,
) -> Result<(String, String, usize), String> {
    read_head(bytes, HeadLimits::of(policy))
        .map(|(method, path, _, headers)| (method.to_string(), path, headers.len()))
        .map_err(|e| format!("{:?}", e))
}

/// golectra: decodes a chunked body from raw bytes, up to `max` bytes (for fuzzing). The bytes
/// are also fed in small pieces, as they may arrive from a socket; both ways must agree (a
/// disagreement panics, which the fuzzer reports).
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
    let mut decoder = crate::policy::ChunkDecoder::new();
    let mut out = Vec::new();
    for part in bytes.chunks(piece) {
        decoder.feed(part, &mut out).map_err(|e| e.0.to_string())?;
        if decoder.is_done() {
            return Ok(out);
        }
    }
    Err("the body ends inside its chunked framing".into())
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
