//! Request smuggling (RFC 9112 §6) on a real server over TCP: a request whose framing is
//! ambiguous or unsupported — `Content-Length` with `Transfer-Encoding`, differing or
//! non-numeric lengths, codings other than `chunked`, obs-folded framing headers, a coding in
//! HTTP/1.0 — gets exactly one refusal with `Connection: close`, and the request hidden behind
//! it is never applied. Also: every response after which the server closes says so, and a
//! chunked body is bounded on the wire, not only decoded. Raw `TcpStream` clients, loopback only.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::harness::{Backend, TestServer};

/// The request an attacker hides behind the first one.
const SMUGGLED: &str =
    "POST /update/counter/PollCount/100 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";

/// One response: status, header lines, body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<String>,
    body: String,
}

impl Response {
    fn says_connection_close(&self) -> bool {
        self.headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("connection: close"))
    }
}

/// Sends `bytes` on a fresh connection and returns every response read until the server
/// closes it (a read timeout, 15 s, fails the test: the server must close).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<Response> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let bytes = bytes.to_vec();
        // The server may stop reading after its refusal: write beside the reads.
        std::thread::spawn(move || {
            let _ = s.write_all(&bytes);
        })
    };
    let raw = crate::harness::read_to_close(&mut s);
    writer.join().unwrap();
    parse_responses(&raw)
}

fn parse_responses(mut raw: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {head:?}"));
        let headers: Vec<String> = lines.map(str::to_owned).collect();
        let length = headers
            .iter()
            .find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + length]).into_owned();
        out.push(Response {
            status,
            headers,
            body,
        });
        raw = &raw[end + 4 + length..];
    }
    assert!(raw.is_empty(), "bytes after the last response: {raw:?}");
    out
}

/// `head` (request line and headers, without the empty line), `body`, then [`SMUGGLED`]: one
/// response, `status` with `reason` and `Connection: close`, then the server closes.
fn refused_once(t: &TestServer, head: &str, body: &str, status: u16, reason: &str) {
    let bytes = format!("{head}\r\n\r\n{body}{SMUGGLED}");
    let r = exchange(t.addr, bytes.as_bytes());
    assert_eq!(r.len(), 1, "exactly one response to {head:?}: {r:?}");
    assert_eq!(
        (r[0].status, r[0].body.as_str()),
        (status, &*format!("{reason}\n"))
    );
    assert!(r[0].says_connection_close(), "{head:?}: {r:?}");
}

/// Nothing reached the store: neither the smuggled counter nor the request in front of it.
fn nothing_applied(t: &TestServer) {
    let c = t.client();
    assert_eq!(c.get("/value/counter/PollCount").status, 404);
    assert_eq!(c.get("/value/gauge/Front").status, 404);
    assert_eq!(c.get("/ping").status, 200, "the server still serves");
}

#[test]
fn a_length_with_a_coding_cannot_smuggle_a_request() {
    let t = TestServer::start(Backend::Memory);
    let front = "POST /update/gauge/Front/1 HTTP/1.1\r\nHost: x";
    // CL.TE: a front end that uses the length forwards everything as one request; read as
    // chunked, it would end after `0\r\n\r\n` and the counter update would follow.
    let cl = "0\r\n\r\n".len() + SMUGGLED.len();
    let reason = "Content-Length and Transfer-Encoding together are ambiguous framing";
    for head in [
        format!("{front}\r\nContent-Length: {cl}\r\nTransfer-Encoding: chunked"),
        format!("{front}\r\nTransfer-Encoding: chunked\r\nContent-Length: {cl}"),
        format!("{front}\r\nContent-Length: {cl}\r\nTransfer-Encoding: gzip"),
    ] {
        refused_once(&t, &head, "0\r\n\r\n", 400, reason);
    }
    nothing_applied(&t);
}

#[test]
fn differing_or_non_numeric_lengths_cannot_smuggle_a_request() {
    let t = TestServer::start(Backend::Memory);
    let front = "POST /update/gauge/Front/1 HTTP/1.1\r\nHost: x";
    let n = SMUGGLED.len();
    let conflicting = "conflicting Content-Length values";
    for head in [
        format!("{front}\r\nContent-Length: 0\r\nContent-Length: {n}"),
        format!("{front}\r\nContent-Length: {n}\r\nContent-Length: 0"),
        format!("{front}\r\nContent-Length: 0, {n}"),
    ] {
        refused_once(&t, &head, "", 400, conflicting);
    }
    let invalid = "invalid Content-Length: not a decimal number";
    for value in ["+0", "-1", "0x0", "0 0", ""] {
        let head = format!("{front}\r\nContent-Length: {value}");
        refused_once(&t, &head, "", 400, invalid);
    }
    nothing_applied(&t);
}

#[test]
fn codings_other_than_one_chunked_get_501_without_smuggling() {
    let t = TestServer::start(Backend::Memory);
    let front = "POST /update/gauge/Front/1 HTTP/1.1\r\nHost: x";
    let reason = "unsupported Transfer-Encoding: only a single chunked coding is implemented";
    for te in [
        "Transfer-Encoding: gzip",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, gzip",
        "Transfer-Encoding: identity",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
    ] {
        refused_once(&t, &format!("{front}\r\n{te}"), "0\r\n\r\n", 501, reason);
    }
    nothing_applied(&t);
    let metrics = t.client().get("/metrics").text();
    assert!(
        metrics.contains(
            "golectra_requests_rejected_total{reason=\"unsupported_transfer_coding\"} 6\n"
        ),
        "{metrics}"
    );
}

#[test]
fn obs_folded_framing_and_a_coding_in_http_1_0_cannot_smuggle_a_request() {
    let t = TestServer::start(Backend::Memory);
    let front = "POST /update/gauge/Front/1 HTTP/1.1\r\nHost: x";
    let n = SMUGGLED.len();
    for fold in [
        "X: a\r\n Transfer-Encoding: chunked".to_owned(),
        "X: a\r\n\tTransfer-Encoding: chunked".to_owned(),
        format!("X: a\r\n\tContent-Length: {n}"),
    ] {
        let head = format!("{front}\r\n{fold}");
        refused_once(&t, &head, "0\r\n\r\n", 400, "malformed header line");
    }
    let http_1_0 = "POST /update/gauge/Front/1 HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked";
    let reason = "Transfer-Encoding is not allowed in an HTTP/1.0 request";
    refused_once(&t, http_1_0, "0\r\n\r\n", 400, reason);
    nothing_applied(&t);
}

#[test]
fn every_response_after_which_the_server_closes_says_connection_close() {
    let t = TestServer::start_with(Backend::Memory, |c| c.limits.max_body = 1024);
    for (request, status) in [
        // Over the body limit: answered by the API, then closed.
        (
            &b"POST /updates HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n["[..],
            413,
        ),
        (b"GET /ping HTTP/1.0\r\n\r\n", 200),
        (
            b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            200,
        ),
        (b"NONSENSE\r\n\r\n", 400),
    ] {
        let r = exchange(t.addr, request);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].status, status, "{r:?}");
        assert!(
            r[0].says_connection_close(),
            "{:?}: {r:?}",
            String::from_utf8_lossy(request)
        );
    }
    // Kept alive: no `Connection: close`.
    let r = exchange(
        t.addr,
        b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(!r[0].says_connection_close(), "{r:?}");
    assert!(r[1].says_connection_close(), "{r:?}");
}

#[test]
fn chunk_extensions_cannot_make_a_body_cost_more_than_its_wire_limit() {
    // 2 × 1 KiB + 64 KiB = 67 584 bytes on the wire at most.
    let t = TestServer::start_with(Backend::Memory, |c| c.limits.max_body = 1024);
    let body = r#"[{"id":"Amp","type":"counter","delta":1}]"#;
    let mut request =
        b"POST /updates HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    // One byte of data per 4 007 bytes on the wire: 41 decoded bytes cost 164 287.
    for b in body.bytes() {
        request.extend_from_slice(format!("1;{}\r\n", "e".repeat(4000)).as_bytes());
        request.extend_from_slice(&[b, b'\r', b'\n']);
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(t.addr, &request);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (r[0].status, r[0].body.as_str()),
        (
            413,
            "chunked body too large on the wire (data and framing)\n"
        )
    );
    assert!(r[0].says_connection_close(), "{r:?}");
    assert_eq!(t.client().get("/value/counter/Amp").status, 404);
    let metrics = t.client().get("/metrics").text();
    assert!(
        metrics.contains("golectra_requests_rejected_total{reason=\"chunked_body_too_large\"} 1\n"),
        "{metrics}"
    );
    // The same body in ordinary chunks is taken.
    let mut request =
        b"POST /updates HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    request.extend_from_slice(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    let r = exchange(t.addr, &request);
    assert_eq!(
        r.iter()
            .map(|r| (r.status, r.body.as_str()))
            .collect::<Vec<_>>(),
        [(200, r#"{"updated":1}"#)]
    );
    assert_eq!(t.client().get("/value/counter/Amp").text(), "1");
}
