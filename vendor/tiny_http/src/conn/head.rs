//! golectra: request heads — the request line and header fields — parsed with `httparse` within
//! the head limits of the connection policy, plus the small pre-check that keeps the limits and
//! refusals the engine had before httparse (see PATCHES.md, "Parsing with httparse").

use std::mem::MaybeUninit;

use ascii::AsciiString;

use crate::common::{HTTPVersion, Header, HeaderField, Method};
use crate::policy::ConnectionPolicy;

/// Limits on the request head.
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
#[derive(Debug)]
pub(crate) struct Head {
    pub method: Method,
    pub path: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// A head line, the header count or the whole head is over its limit (`431`).
    TooLarge,
    /// A head line is not ASCII (`400`).
    NotAscii,
    /// The request line is malformed (`400`).
    RequestLine,
    /// A header line is malformed (`400`).
    Header,
    /// A well-formed HTTP version this server does not speak: 0.9, 2.0, 3.0 (`505`).
    Version,
}

impl HeadError {
    /// The status and one-line message the client gets.
    pub(crate) fn refusal(self) -> (u16, &'static str) {
        match self {
            HeadError::TooLarge => (431, "request header fields too large"),
            HeadError::NotAscii => (400, "the request line and headers must be ASCII"),
            HeadError::Header => (400, "malformed header line"),
            HeadError::RequestLine => (400, "malformed request line"),
            HeadError::Version => (505, "This server only supports HTTP versions 1.0 and 1.1"),
        }
    }
}

/// Where the end of a head (`CRLF CRLF`) is, as the length of the head including it.
pub(crate) fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// Header slots kept on the stack; a head with more header lines gets them on the heap.
const STACK_HEADERS: usize = 32;

/// Parses one request head from `bytes` within `limits`. `bytes` holds the head up to and
/// including its first empty line (`CRLF CRLF`, see [`find_head_end`]).
pub(crate) fn parse_head(bytes: &[u8], limits: HeadLimits) -> Result<Head, HeadError> {
    if bytes.len() > limits.max_bytes {
        return Err(HeadError::TooLarge);
    }
    let header_lines = check_lines(bytes, limits)?;
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots = if header_lines <= STACK_HEADERS {
        &mut stack[..header_lines]
    } else {
        heap.resize_with(header_lines, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(bytes, slots) {
        Ok(httparse::Status::Complete(n)) if n == bytes.len() => {}
        // Only empty lines, or a head that ends before `bytes` does: not a request line.
        Ok(_) => return Err(HeadError::RequestLine),
        Err(httparse::Error::Version) => return Err(version_error(bytes)),
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Err(HeadError::Header)
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::RequestLine),
    }
    let (Some(method), Some(path), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(HeadError::RequestLine);
    };
    let method = method.parse().map_err(|_| HeadError::RequestLine)?;
    let mut headers = Vec::with_capacity(request.headers.len());
    for h in request.headers.iter() {
        let field = HeaderField::from_bytes(h.name).map_err(|_| HeadError::Header)?;
        let value =
            AsciiString::from_ascii(h.value.trim_ascii()).map_err(|_| HeadError::NotAscii)?;
        headers.push(Header { field, value });
    }
    Ok(Head {
        method,
        path: path.to_owned(),
        version: HTTPVersion(1, minor),
        headers,
    })
}

/// The checks httparse does not make the way this engine always did, over every line of the
/// head in order: a line longer than `max_line` or more than `max_count` header lines → `431`,
/// a non-ASCII line → `400`, a lone `LF` (httparse would take it for a line end) → `400`.
/// Returns the number of header lines.
fn check_lines(bytes: &[u8], limits: HeadLimits) -> Result<usize, HeadError> {
    let mut start = 0;
    let mut non_empty = 0usize;
    while let Some(i) = bytes[start..].iter().position(|&b| b == b'\n') {
        let lf = start + i;
        if lf == start || bytes[lf - 1] != b'\r' {
            return Err(if non_empty == 0 {
                HeadError::RequestLine
            } else {
                HeadError::Header
            });
        }
        let line = &bytes[start..lf - 1];
        if line.len() > limits.max_line {
            return Err(HeadError::TooLarge);
        }
        if !line.is_ascii() {
            return Err(HeadError::NotAscii);
        }
        if !line.is_empty() {
            non_empty += 1;
            if non_empty - 1 > limits.max_count {
                return Err(HeadError::TooLarge);
            }
        }
        start = lf + 1;
    }
    Ok(non_empty.saturating_sub(1))
}

/// httparse knows HTTP/1.0 and 1.1 only; a request line naming another version the engine
/// recognised before (0.9, 2.0, 3.0) gets `505`, anything else `400`.
fn version_error(bytes: &[u8]) -> HeadError {
    let line = bytes
        .split(|&b| b == b'\n')
        .find(|l| !l.is_empty() && *l != b"\r")
        .unwrap_or(&[]);
    let version = line
        .strip_suffix(b"\r")
        .unwrap_or(line)
        .split(|&b| b == b' ')
        .nth(2);
    match version {
        Some(b"HTTP/0.9" | b"HTTP/2.0" | b"HTTP/3.0") => HeadError::Version,
        _ => HeadError::RequestLine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_line: 64,
        max_count: 3,
        max_bytes: 256,
    };

    fn parse(bytes: &[u8]) -> Result<Head, HeadError> {
        parse_head(bytes, LIMITS)
    }

    #[test]
    fn the_head_end_is_found_across_reads() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r"), None);
    }

    #[test]
    fn a_request_line_and_headers_are_parsed() {
        let head = parse(b"POST /a?b=1 HTTP/1.0\r\nHost: x\r\nX-Pad:  v \t\r\n\r\n").unwrap();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path, "/a?b=1");
        assert_eq!(head.version, HTTPVersion(1, 0));
        assert_eq!(head.headers.len(), 2);
        assert!(head.headers[1].field.equiv("x-pad"));
        assert_eq!(head.headers[1].value.as_str(), "v");
        let head = parse(b"PURGE / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(head.method.as_str(), "PURGE");
        assert!(head.headers.is_empty());
    }

    #[test]
    fn malformed_request_lines_are_refused() {
        for bad in [
            &b"GET /hello\r\n\r\n"[..],
            b"qsd qsd qsd\r\n\r\n",
            b"NONSENSE\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.2\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"\r\n\r\n",
            b"GET / HTTP/1.1\nHost: x\r\n\r\n",
        ] {
            assert_eq!(parse(bad).unwrap_err(), HeadError::RequestLine, "{:?}", bad);
        }
    }

    #[test]
    fn malformed_headers_are_refused_and_obs_fold_too() {
        for bad in [
            &b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX : y\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
        ] {
            assert_eq!(parse(bad).unwrap_err(), HeadError::Header, "{:?}", bad);
        }
    }

    #[test]
    fn non_ascii_is_refused_wherever_it_is() {
        for bad in [
            &b"GET /\xff\xfe HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX-Bin: \x80\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\xfc\x03\r\n\r\n",
        ] {
            assert_eq!(parse(bad).unwrap_err(), HeadError::NotAscii, "{:?}", bad);
        }
    }

    #[test]
    fn limits_give_too_large() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "p".repeat(64));
        assert_eq!(parse(long.as_bytes()).unwrap_err(), HeadError::TooLarge);
        let many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(parse(many).unwrap_err(), HeadError::TooLarge);
        assert!(parse(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n").is_ok());
        let big = format!("GET / HTTP/1.1\r\n{}\r\n", "X: yyyyyyyyyy\r\n".repeat(20));
        assert_eq!(parse(big.as_bytes()).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn other_http_versions_get_505() {
        for v in ["HTTP/2.0", "HTTP/3.0", "HTTP/0.9"] {
            let head = format!("GET / {v}\r\nHost: x\r\n\r\n");
            assert_eq!(parse(head.as_bytes()).unwrap_err(), HeadError::Version);
        }
        assert_eq!(HeadError::Version.refusal().0, 505);
    }

    #[test]
    fn many_headers_use_the_heap() {
        let limits = HeadLimits {
            max_line: 64,
            max_count: 100,
            max_bytes: 4096,
        };
        let head = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            (0..40).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
        );
        assert_eq!(
            parse_head(head.as_bytes(), limits).unwrap().headers.len(),
            40
        );
    }
}
