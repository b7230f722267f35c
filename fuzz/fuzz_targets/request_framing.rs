//! Request framing (RFC 9112 §6): the bytes of one request never yield two dispatches unless
//! they are two well-formed requests.
//!
//! The oracle is a second, deliberately simple framer written here from the RFC, independent of
//! the engine (`reference` below). It splits the input into requests the strict way: a head up
//! to the first `CRLF CRLF`, every line ending in `CRLF`, no obs-fold, header names that are
//! tokens; the body delimited by exactly one `Transfer-Encoding: chunked` (HTTP/1.1 only, no
//! `Content-Length` beside it; strict chunk lines: hex size, optional `;extension`, `CRLF`, data,
//! `CRLF`, trailer field lines) or by `Content-Length` values that are decimal and all equal, or
//! no body; anything else stops it. Where the engine is stricter (limits, refusals, a
//! connection that closes) it dispatches fewer requests, which is fine; so the reference may be
//! lenient wherever framing does not depend on it (header values, targets).
//!
//! The engine's connection state machine is driven over the same bytes (whole and in pieces,
//! which must agree), and every request it dispatches must be the reference's request at the
//! same position: same method and target, same body, and — for every request whose body was
//! read — the same end offset. Hence a second dispatch starts exactly where the strict framer
//! says a second well-formed request starts: no byte of one request is ever read as another.
//! The two exceptions are requests the engine dispatches without their whole body because it is
//! over the limit (a declared length: the same length; chunked: a prefix of the reference's
//! decoded body); those must be the last dispatch, since the connection closes after them.
//! Every response after which the connection closes must say `Connection: close` (asserted
//! inside the driver).
//!
//! Inputs are raw bytes, or — when the first byte is 0xF0 or more — a program that assembles a
//! request from framing fragments (lengths, codings, folds, chunks, smuggled requests), so that
//! the fuzzer reaches the interesting combinations fast.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Small body limit, so that over-limit bodies are common.
const LIMIT: usize = 16;

fuzz_target!(|data: &[u8]| {
    let bytes = match data.first() {
        Some(&b) if b >= 0xF0 => assemble(&data[1..]),
        _ => data.to_vec(),
    };
    let policy = tiny_http::ConnectionPolicy {
        max_header_line: 512,
        max_header_count: 16,
        max_head_bytes: 2048,
        prefetch_limit: LIMIT,
        ..Default::default()
    };
    let driven = tiny_http::dispatch_requests_for_fuzzing(&bytes, &policy);
    let reference = reference(&bytes);
    let last = driven.dispatched.len().saturating_sub(1);
    for (i, d) in driven.dispatched.iter().enumerate() {
        let Some(r) = reference.get(i) else {
            panic!("dispatch {i} ({d:?}) is not a request under strict framing: {reference:?}");
        };
        assert_eq!(
            (d.method.as_bytes(), d.path.as_bytes()),
            (&r.method[..], &r.target[..]),
            "dispatch {i}"
        );
        match (d.body_length, r.framing) {
            // Declared over the limit: dispatched unread, the connection closes after it.
            (Some(n), Framing::Length(m)) if n > LIMIT => {
                assert_eq!(n, m, "dispatch {i}");
                assert!(d.body.is_empty() && i == last, "dispatch {i}");
            }
            // Chunked over the limit: the first LIMIT + 1 bytes, then the connection closes.
            (None, Framing::Chunked) if d.body.len() > LIMIT => {
                assert!(r.decoded.starts_with(&d.body), "dispatch {i}");
                assert!(i == last, "dispatch {i}");
            }
            _ => {
                assert_eq!(
                    Some(d.end),
                    r.end,
                    "dispatch {i} ends elsewhere: {d:?} {r:?}"
                );
                assert_eq!(d.body, r.decoded, "dispatch {i}");
            }
        }
    }
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

/// A request under strict framing.
#[derive(Debug)]
struct Request {
    method: Vec<u8>,
    target: Vec<u8>,
    framing: Framing,
    /// The body decoded as far as the input is complete and well-formed.
    decoded: Vec<u8>,
    /// Where the request ends, if its body is complete and well-formed.
    end: Option<usize>,
}

/// Splits `bytes` into requests under strict framing, up to the first that is incomplete or
/// not well-formed (that one included if its head is well-formed).
fn reference(bytes: &[u8]) -> Vec<Request> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((head_end, method, target, framing)) = head(&bytes[at..]) {
        let body_at = at + head_end;
        let (decoded, end) = match framing {
            Framing::Empty => (Vec::new(), Some(body_at)),
            Framing::Length(n) => {
                let rest = &bytes[body_at..];
                let take = n.min(rest.len());
                (rest[..take].to_vec(), (take == n).then_some(body_at + n))
            }
            Framing::Chunked => {
                let (decoded, used) = chunked(&bytes[body_at..]);
                (decoded, used.map(|n| body_at + n))
            }
        };
        out.push(Request {
            method,
            target,
            framing,
            decoded,
            end,
        });
        match end {
            Some(end) => at = end,
            None => break,
        }
    }
    out
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A well-formed head at the start of `bytes`: its length, method, target and framing.
fn head(bytes: &[u8]) -> Option<(usize, Vec<u8>, Vec<u8>, Framing)> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut text = &bytes[..end - 2];
    // Empty lines before the request line are ignored (RFC 9112 §2.2).
    while let Some(rest) = text.strip_prefix(b"\r\n") {
        text = rest;
    }
    // Every line ends in CRLF; a lone CR or LF is not a line end and not allowed.
    let lines: Vec<&[u8]> = text.strip_suffix(b"\r\n")?.split(|&b| b == b'\n').collect();
    let mut clean = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let line = if i + 1 < lines.len() {
            line.strip_suffix(b"\r")?
        } else {
            line
        };
        if line.contains(&b'\r') {
            return None;
        }
        clean.push(line);
    }
    let (request_line, fields) = clean.split_first()?;
    let mut words = request_line.split(|&b| b == b' ');
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some()
        || method.is_empty()
        || !method.iter().all(|&b| is_tchar(b))
        || target.is_empty()
        || !target.iter().all(|&b| (0x21..=0x7e).contains(&b))
    {
        return None;
    }
    let http_1_1 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return None,
    };
    let mut codings: Vec<&[u8]> = Vec::new();
    let mut has_coding = false;
    let mut lengths: Vec<&[u8]> = Vec::new();
    for field in fields {
        // No obs-fold: a field line starts with its name.
        let colon = field.iter().position(|&b| b == b':')?;
        let (name, value) = (&field[..colon], trim_ows(&field[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return None;
        }
        let elements = value.split(|&b| b == b',').map(trim_ows);
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_coding = true;
            codings.extend(elements.filter(|e| !e.is_empty()));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            lengths.extend(elements);
        }
    }
    let framing = if has_coding {
        let single_chunked = codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked");
        if !http_1_1 || !lengths.is_empty() || !single_chunked {
            return None;
        }
        Framing::Chunked
    } else if let Some(first) = lengths.first() {
        if lengths
            .iter()
            .any(|l| l.is_empty() || !l.iter().all(u8::is_ascii_digit))
        {
            return None;
        }
        // Decimal digits only (checked above), so UTF-8; too large for usize: not a length.
        let number = |l: &[u8]| std::str::from_utf8(l).unwrap().parse::<usize>().ok();
        let n = number(first)?;
        if lengths.iter().any(|l| number(l) != Some(n)) {
            return None;
        }
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    } else {
        Framing::Empty
    };
    Some((end, method.to_vec(), target.to_vec(), framing))
}

/// A strict chunked body at the start of `bytes`: what it decodes to as far as it is complete
/// and well-formed, and its length once complete.
fn chunked(bytes: &[u8]) -> (Vec<u8>, Option<usize>) {
    let mut decoded = Vec::new();
    let mut at = 0;
    let line = |at: usize| -> Option<&[u8]> {
        let n = bytes[at..].windows(2).position(|w| w == b"\r\n")?;
        Some(&bytes[at..at + n])
    };
    loop {
        // chunk-size [ BWS ";" chunk-ext ] CRLF, with any byte but CR and LF in the extension.
        let Some(size_line) = line(at) else {
            return (decoded, None);
        };
        let digits = size_line
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let (hex, mut rest) = size_line.split_at(digits);
        if hex.is_empty() || hex.len() > 16 {
            return (decoded, None);
        }
        while let [b' ' | b'\t', tail @ ..] = rest {
            rest = tail;
        }
        if !(rest.is_empty() || rest[0] == b';') || rest.iter().any(|&b| b == b'\r' || b == b'\n') {
            return (decoded, None);
        }
        let size = usize::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        at += size_line.len() + 2;
        if size == 0 {
            break;
        }
        let Some(data) = bytes.get(at..at.saturating_add(size)) else {
            decoded.extend_from_slice(&bytes[at..]);
            return (decoded, None);
        };
        decoded.extend_from_slice(data);
        at += size;
        if bytes.get(at..at + 2) != Some(&b"\r\n"[..]) {
            return (decoded, None);
        }
        at += 2;
    }
    // Trailer field lines, then an empty line.
    loop {
        let Some(trailer) = line(at) else {
            return (decoded, None);
        };
        at += trailer.len() + 2;
        if trailer.is_empty() {
            return (decoded, Some(at));
        }
        let Some(colon) = trailer.iter().position(|&b| b == b':') else {
            return (decoded, None);
        };
        let name = &trailer[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) || trailer.contains(&b'\n') {
            return (decoded, None);
        }
    }
}

/// Framing fragments a program (inputs starting with 0xF0 or more) assembles requests from.
const PARTS: &[&[u8]] = &[
    b"POST /a HTTP/1.1\r\n",
    b"GET /b HTTP/1.1\r\n",
    b"POST /c HTTP/1.0\r\n",
    b"POST /update/counter/PollCount/100 HTTP/1.1\r\n",
    b"Host: x\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: 05\r\n",
    b"Content-Length: 5, 5\r\n",
    b"Content-Length: 5,\r\n",
    b"Content-Length: +5\r\n",
    b"Content-Length:  5 \r\n",
    b"Content-Length: 40\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: Chunked, \r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: chunked, gzip\r\n",
    b"Transfer-Encoding: identity\r\n",
    b"transfer-encoding:chunked\r\n",
    b" Transfer-Encoding: chunked\r\n",
    b"\tContent-Length: 5\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"\r\n",
    b"5\r\nabcde\r\n",
    b"3;ext=\"v\"\r\nabc\r\n",
    b"5 ;x\r\n",
    b"11\r\n0123456789abcdefg\r\n",
    b"0\r\n\r\n",
    b"0\r\nT: 1\r\n\r\n",
    b"1\r\nx\n",
    b"abcde",
    b"\n",
    b"\r",
    b" ",
    b"GET /smuggled HTTP/1.1\r\n\r\n",
];

/// Builds an input from a program: a byte below 0xE0 appends a fragment of [`PARTS`]; one of
/// 0xE0 or more appends the next (its low 5 bits + 1) bytes as they are.
fn assemble(program: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < program.len() {
        let op = program[i];
        i += 1;
        if op < 0xE0 {
            out.extend_from_slice(PARTS[op as usize % PARTS.len()]);
        } else {
            let n = ((op & 0x1F) as usize + 1).min(program.len() - i);
            out.extend_from_slice(&program[i..i + n]);
            i += n;
        }
    }
    out
}
