//! golectra: the connection state machine's rules, one test each, without sockets: bytes in,
//! steps out, time from a fake clock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::body::FIRST_SHARE;
use super::state::LINGER_BYTES;
use super::{Env, Expiry, Machine, Next, Parsed, Phase, Step};
use crate::policy::{Budget, ConnectionPolicy, RefusalSigner, Reservation, Shortage};

const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Room for a chunked body (which reserves a read's worth ahead) and little more.
const BUDGET: usize = 40_000;

fn policy() -> ConnectionPolicy {
    ConnectionPolicy {
        idle_timeout: IDLE_TIMEOUT,
        header_timeout: HEADER_TIMEOUT,
        body_timeout: BODY_TIMEOUT,
        io_timeout: IO_TIMEOUT,
        max_header_line: 200,
        max_header_count: 4,
        max_head_bytes: 600,
        prefetch_limit: 64,
        prefetch_budget: BUDGET,
        ..Default::default()
    }
}

/// A connection and its clock.
struct Wire {
    env: Env,
    m: Machine,
    t0: Instant,
}

impl Wire {
    fn new() -> Self {
        Self::with(policy())
    }

    fn with(policy: ConnectionPolicy) -> Self {
        let env = Env::new(policy);
        let t0 = Instant::now();
        let m = Machine::new(t0, &env);
        Self { env, m, t0 }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    /// Feeds `bytes` at `secs` and polls once.
    fn send(&mut self, bytes: &[u8], secs: f64) -> Step {
        let now = self.at(secs);
        self.m.feed(bytes, now);
        self.m.poll(now, &self.env)
    }

    fn poll(&mut self, secs: f64) -> Step {
        let now = self.at(secs);
        self.m.poll(now, &self.env)
    }

    fn expire(&mut self, secs: f64) -> Expiry {
        let now = self.at(secs);
        self.m.expire(now, &self.env)
    }

    /// Answers the dispatched request and writes it all: what follows.
    fn answer(&mut self, secs: f64) -> Next {
        let now = self.at(secs);
        assert!(self
            .m
            .respond(b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), now, &self.env));
        self.finish(secs)
    }

    fn finish(&mut self, secs: f64) -> Next {
        let now = self.at(secs);
        let n = self.m.unwritten().len();
        self.m.wrote(n, now);
        self.m.finish_writing(now, &self.env)
    }

    /// The status line of the queued output.
    fn output_status(&self) -> String {
        let out = String::from_utf8_lossy(self.m.unwritten()).into_owned();
        out.lines().next().unwrap_or_default().to_owned()
    }
}

fn dispatched(step: Step) -> Parsed {
    match step {
        Step::Dispatch(parsed) => parsed,
        other => panic!("expected a dispatch, got {:?}", other),
    }
}

/// A refusal: the status, a one-line answer with `Connection: close`, then lingering.
fn assert_refused(w: &mut Wire, step: Step, status: u16) {
    assert!(
        matches!(step, Step::Refuse(s) if s == status),
        "expected {}, got {:?}",
        status,
        step
    );
    assert!(w
        .output_status()
        .starts_with(&format!("HTTP/1.1 {status} ")));
    let out = String::from_utf8_lossy(w.m.unwritten()).into_owned();
    assert!(out.contains("\r\nConnection: close\r\n"), "{}", out);
    assert_eq!(w.finish(0.0), Next::Linger);
    assert_eq!(w.m.phase(), Phase::Lingering);
}

fn refused_with(bytes: &[u8], status: u16) {
    let mut w = Wire::new();
    let step = w.send(bytes, 0.0);
    assert_refused(&mut w, step, status);
}

// ---- 400 ------------------------------------------------------------------------------------

#[test]
fn a_malformed_request_line_gets_400() {
    for bad in [
        &b"NONSENSE\r\n\r\n"[..],
        b"GET /hello\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",
    ] {
        refused_with(bad, 400);
    }
}

#[test]
fn a_malformed_header_gets_400() {
    for bad in [
        &b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n obs-fold\r\n\r\n",
    ] {
        refused_with(bad, 400);
    }
}

#[test]
fn a_non_ascii_head_gets_400() {
    refused_with(
        b"GET /value/gauge/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
    );
    refused_with(b"GET /ping HTTP/1.1\r\nX-Bin: \x80\r\n\r\n", 400);
    refused_with(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400);
}

#[test]
fn an_unparsable_content_length_gets_400() {
    refused_with(
        b"POST /u HTTP/1.1\r\nContent-Length: ten\r\n\r\n0123456789",
        400,
    );
}

#[test]
fn a_bad_chunk_size_gets_400() {
    let head = b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for framing in [
        &b"zz\r\n[]\r\n0\r\n\r\n"[..],
        b"\r\n",
        b"-1\r\n",
        b"3\nabc\r\n",
    ] {
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(framing);
        refused_with(&bytes, 400);
    }
}

#[test]
fn chunk_data_longer_than_its_size_gets_400() {
    refused_with(
        b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
        400,
    );
}

// ---- request framing (RFC 9112 §6): no request smuggling ------------------------------------

/// A request that would be applied if the bytes before it were misframed.
const SMUGGLED: &[u8] = b"POST /update/counter/PollCount/100 HTTP/1.1\r\nContent-Length: 0\r\n\r\n";

/// `head` (without its empty line) then `body` then [`SMUGGLED`]: refused with `status` and the
/// one-line `reason`, and nothing after it is dispatched.
fn refused_before_the_smuggled_request(head: &str, body: &[u8], status: u16, reason: &str) {
    let mut bytes = format!("{head}\r\n\r\n").into_bytes();
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(SMUGGLED);
    let mut w = Wire::new();
    let step = w.send(&bytes, 0.0);
    let out = String::from_utf8_lossy(w.m.unwritten()).into_owned();
    assert!(
        out.ends_with(&format!("\r\n\r\n{reason}\n")),
        "{:?}: {}",
        head,
        out
    );
    assert_refused(&mut w, step, status);
    assert!(matches!(w.poll(0.1), Step::Wait), "{:?}: read on", head);
}

#[test]
fn a_length_and_a_coding_together_get_400() {
    let reason = "Content-Length and Transfer-Encoding together are ambiguous framing";
    let cl = SMUGGLED.len() + 5;
    for head in [
        format!("POST /u HTTP/1.1\r\nContent-Length: {cl}\r\nTransfer-Encoding: chunked"),
        format!("POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: {cl}"),
        "POST /u HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: gzip".to_owned(),
    ] {
        refused_before_the_smuggled_request(&head, b"0\r\n\r\n", 400, reason);
    }
}

#[test]
fn differing_or_non_numeric_lengths_get_400() {
    let n = SMUGGLED.len();
    for head in [
        format!("POST /u HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: {n}"),
        format!("POST /u HTTP/1.1\r\nContent-Length: {n}\r\nContent-Length: 0"),
        format!("POST /u HTTP/1.1\r\nContent-Length: 0, {n}"),
    ] {
        let reason = "conflicting Content-Length values";
        refused_before_the_smuggled_request(&head, b"", 400, reason);
    }
    for value in [
        "+5",
        "-1",
        "0x10",
        "5 5",
        "",
        "5,",
        "1e1",
        "18446744073709551616",
    ] {
        let head = format!("POST /u HTTP/1.1\r\nContent-Length: {value}");
        let reason = "invalid Content-Length: not a decimal number";
        refused_before_the_smuggled_request(&head, b"12345", 400, reason);
    }
}

#[test]
fn repeated_lengths_of_one_value_are_one_length() {
    for head in [
        &b"POST /u HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"[..],
        b"POST /u HTTP/1.1\r\nContent-Length: 5, 05\r\n\r\n",
    ] {
        let mut w = Wire::new();
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(b"12345GET /next HTTP/1.1\r\n\r\n");
        assert_eq!(dispatched(w.send(&bytes, 0.0)).body, b"12345");
        assert_eq!(w.answer(0.1), Next::Drive);
        assert_eq!(dispatched(w.poll(0.1)).path, "/next");
    }
}

#[test]
fn codings_other_than_one_chunked_get_501() {
    let reason = "unsupported Transfer-Encoding: only a single chunked coding is implemented";
    for te in [
        "Transfer-Encoding: gzip",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, gzip",
        "Transfer-Encoding: identity",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: x-unknown",
        "Transfer-Encoding: ",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    ] {
        let head = format!("POST /u HTTP/1.1\r\n{te}");
        refused_before_the_smuggled_request(&head, b"0\r\n\r\n", 501, reason);
    }
    let mut w = Wire::new();
    let bytes = b"POST /u HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n";
    assert_eq!(dispatched(w.send(bytes, 0.0)).body, b"ab");
}

#[test]
fn an_obs_folded_framing_header_gets_400() {
    for fold in [
        "X: a\r\n Transfer-Encoding: chunked",
        "X: a\r\n\tTransfer-Encoding: chunked",
        "X: a\r\n\tContent-Length: 5",
        "Transfer-Encoding:\r\n chunked",
        "Content-Length: 5\r\n\t5",
    ] {
        let head = format!("POST /u HTTP/1.1\r\n{fold}");
        refused_before_the_smuggled_request(&head, b"0\r\n\r\n", 400, "malformed header line");
    }
}

#[test]
fn a_coding_in_http_1_0_gets_400() {
    let reason = "Transfer-Encoding is not allowed in an HTTP/1.0 request";
    for head in [
        "POST /u HTTP/1.0\r\nTransfer-Encoding: chunked",
        "POST /u HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive",
    ] {
        refused_before_the_smuggled_request(head, b"0\r\n\r\n", 400, reason);
    }
}

#[test]
fn a_bare_lf_in_chunk_framing_gets_400() {
    let head = "POST /u HTTP/1.1\r\nTransfer-Encoding: chunked";
    let cases: [(&[u8], &str); 3] = [
        (b"3\r\nabc\n0\r\n\r\n", "chunk data longer than its size"),
        (b"0\r\nX: y\n\r\n", "malformed trailer line"),
        (b"0\r\n\n", "malformed trailer line"),
    ];
    for (body, reason) in cases {
        refused_before_the_smuggled_request(head, body, 400, reason);
    }
}

#[test]
fn a_chunked_body_over_its_wire_limit_gets_413_at_the_limit() {
    // 1 byte of data per 4 007 bytes on the wire: the decoded limit (64) is far away.
    let chunk = format!("1;{}\r\nx\r\n", "e".repeat(4000));
    let mut bytes = b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let head = bytes.len();
    for _ in 0..20 {
        bytes.extend_from_slice(chunk.as_bytes());
    }
    let limit = 2 * 64 + (64 << 10);
    let mut w = Wire::new();
    for part in bytes[..head + limit].chunks(4000) {
        assert!(matches!(w.send(part, 0.0), Step::NeedInput));
    }
    let step = w.send(&bytes[head + limit..head + limit + 1], 0.0);
    assert!(String::from_utf8_lossy(w.m.unwritten())
        .ends_with("\r\n\r\nchunked body too large on the wire (data and framing)\n"));
    assert_refused(&mut w, step, 413);
}

#[test]
fn a_response_after_which_the_connection_closes_says_connection_close() {
    let closing: [&[u8]; 5] = [
        b"POST /u HTTP/1.1\r\nContent-Length: 999999\r\n\r\n[",
        b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n",
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n",
    ];
    let answer =
        b"HTTP/1.1 413 Payload Too Large\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nno";
    for request in closing {
        let mut w = Wire::new();
        let mut bytes = request.to_vec();
        if request.ends_with(b"41\r\n") {
            bytes.extend_from_slice(&[b'a'; 65]);
        }
        dispatched(w.send(&bytes, 0.0));
        assert!(w.m.respond(answer.to_vec(), w.at(0.1), &w.env));
        assert_eq!(
            w.m.unwritten(),
            b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno",
            "{:?}",
            String::from_utf8_lossy(request)
        );
        assert!(matches!(w.finish(0.1), Next::Close | Next::Linger));
    }
    // A server stopping with the request in a worker's hands.
    let mut w = Wire::new();
    dispatched(w.send(b"GET / HTTP/1.1\r\n\r\n", 0.0));
    assert!(!w.m.close_for_shutdown());
    assert!(w
        .m
        .respond(b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), w.at(0.1), &w.env));
    assert_eq!(
        w.m.unwritten(),
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
    );
    // Kept alive: the response is left as it is.
    let mut w = Wire::new();
    dispatched(w.send(b"GET / HTTP/1.1\r\n\r\n", 0.0));
    assert!(w
        .m
        .respond(b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), w.at(0.1), &w.env));
    assert_eq!(w.m.unwritten(), b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(w.finish(0.1), Next::Read);
}

// ---- 408 ------------------------------------------------------------------------------------

#[test]
fn a_head_past_its_deadline_gets_408_even_when_trickled() {
    let mut w = Wire::new();
    let mut secs = 0.0;
    // A byte every second: never `io_timeout` without progress, but the head deadline holds.
    for b in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaa".iter() {
        assert!(matches!(w.send(&[*b], secs), Step::NeedInput));
        assert_eq!(w.expire(secs + 0.5), Expiry::Nothing);
        secs += 1.0;
        if secs >= HEADER_TIMEOUT.as_secs_f64() {
            break;
        }
    }
    let deadline = w.m.next_deadline(w.at(secs), &w.env).unwrap();
    assert_eq!(deadline, w.at(HEADER_TIMEOUT.as_secs_f64()));
    assert_eq!(w.expire(HEADER_TIMEOUT.as_secs_f64()), Expiry::Refuse(408));
    assert!(w.output_status().starts_with("HTTP/1.1 408 "));
    assert_eq!(w.finish(10.0), Next::Linger);
}

#[test]
fn a_stalled_head_gets_408_after_io_timeout() {
    let mut w = Wire::new();
    assert!(matches!(
        w.send(b"GET / HTTP/1.1\r\n", 0.0),
        Step::NeedInput
    ));
    assert_eq!(w.m.next_deadline(w.at(0.0), &w.env), Some(w.at(5.0)));
    assert_eq!(w.expire(4.9), Expiry::Nothing);
    assert_eq!(w.expire(5.0), Expiry::Refuse(408));
}

#[test]
fn a_body_past_its_deadline_gets_408() {
    // The body deadline alone: no minimum rate (it has its own tests below).
    let mut w = Wire::with(ConnectionPolicy {
        min_body_rate: 0,
        ..policy()
    });
    let head = b"POST /u HTTP/1.1\r\nContent-Length: 50\r\n\r\n";
    assert!(matches!(w.send(head, 0.0), Step::NeedInput));
    assert_eq!(w.m.phase(), Phase::Body);
    // Four bytes every 4 s: progress each time, the body deadline (30 s) still applies.
    for i in 1..8 {
        let secs = i as f64 * 4.0;
        assert!(matches!(w.send(b"abcd", secs), Step::NeedInput));
        assert_eq!(w.expire(secs), Expiry::Nothing);
    }
    assert_eq!(w.expire(BODY_TIMEOUT.as_secs_f64()), Expiry::Refuse(408));
}

#[test]
fn an_idle_connection_past_its_deadline_is_closed_silently() {
    let mut w = Wire::new();
    assert_eq!(w.m.next_deadline(w.t0, &w.env), Some(w.at(60.0)));
    assert_eq!(w.expire(59.0), Expiry::Nothing);
    assert_eq!(w.expire(60.0), Expiry::Close);
    assert!(w.m.unwritten().is_empty());
}

// ---- 413 (refused by the handler; the engine dispatches and closes after) ---------------------

#[test]
fn a_declared_body_over_the_limit_is_dispatched_unread_and_closes_after() {
    let mut w = Wire::new();
    let step = w.send(b"POST /u HTTP/1.1\r\nContent-Length: 999999\r\n\r\n[", 0.0);
    let parsed = dispatched(step);
    assert!(parsed.body.is_empty());
    assert_eq!(parsed.body_length, Some(999999));
    assert!(
        parsed.reservation.is_none(),
        "nothing reserved for an unread body"
    );
    assert_eq!(w.answer(0.1), Next::Linger);
}

#[test]
fn a_chunked_body_over_the_limit_is_cut_at_limit_plus_one_and_closes_after() {
    let mut w = Wire::new();
    let mut bytes = b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        bytes.extend_from_slice(b"a\r\n0123456789\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    let parsed = dispatched(w.send(&bytes, 0.0));
    assert_eq!(parsed.body.len(), 65);
    assert_eq!(parsed.body_length, None);
    assert_eq!(
        w.answer(0.1),
        Next::Linger,
        "the pipelined GET is not served"
    );
}

// ---- 417, 431, 505 ----------------------------------------------------------------------------

#[test]
fn an_unsupported_expect_gets_417() {
    refused_with(
        b"POST /u HTTP/1.1\r\nExpect: something-else\r\nContent-Length: 2\r\n\r\n[]",
        417,
    );
}

#[test]
fn a_head_over_its_limits_gets_431() {
    let long_line = format!("GET /ping HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(300));
    let many = format!(
        "GET /ping HTTP/1.1\r\n{}\r\n",
        (0..5).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
    );
    let huge = format!(
        "GET /ping HTTP/1.1\r\n{}\r\n",
        (0..4)
            .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(180)))
            .collect::<String>()
    );
    let long_path = format!("GET /{} HTTP/1.1\r\n\r\n", "p".repeat(300));
    for head in [long_line, many, huge, long_path] {
        refused_with(head.as_bytes(), 431);
    }
}

#[test]
fn a_head_that_does_not_end_within_its_limit_gets_431_before_it_ends() {
    let mut w = Wire::new();
    assert!(matches!(
        w.send(b"GET / HTTP/1.1\r\n", 0.0),
        Step::NeedInput
    ));
    let mut step = Step::NeedInput;
    for _ in 0..100 {
        step = w.send(b"X-Filler: 0123456789\r\n", 0.0);
        if !matches!(step, Step::NeedInput) {
            break;
        }
    }
    assert_refused(&mut w, step, 431);
}

#[test]
fn other_http_versions_get_505() {
    refused_with(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
    refused_with(b"GET / HTTP/3.0\r\n\r\n", 505);
}

// ---- keep-alive, pipelining, Expect, Connection, HTTP/1.0 ----------------------------------

#[test]
fn keep_alive_serves_requests_one_after_another() {
    let mut w = Wire::new();
    let parsed = dispatched(w.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 0.0));
    assert_eq!(parsed.path, "/a");
    assert_eq!(w.m.phase(), Phase::Dispatched);
    assert_eq!(
        w.m.next_deadline(w.at(0.0), &w.env),
        None,
        "no deadline with a worker"
    );
    assert_eq!(w.answer(1.0), Next::Read);
    assert_eq!(w.m.phase(), Phase::Idle);
    assert_eq!(w.m.next_deadline(w.at(1.0), &w.env), Some(w.at(61.0)));
    let parsed = dispatched(w.send(b"POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]", 2.0));
    assert_eq!((parsed.path.as_str(), &parsed.body[..]), ("/b", &b"[]"[..]));
    assert_eq!(parsed.body_length, Some(2));
    assert_eq!(w.answer(3.0), Next::Read);
}

#[test]
fn two_pipelined_requests_are_served_in_order() {
    let mut w = Wire::new();
    let both = b"GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    assert_eq!(dispatched(w.send(both, 0.0)).path, "/1");
    // The second waits until the first is answered, then is driven again at once.
    assert!(matches!(w.poll(0.0), Step::Wait));
    assert_eq!(w.answer(0.1), Next::Drive);
    let second = dispatched(w.poll(0.1));
    assert_eq!(
        (second.path.as_str(), &second.body[..]),
        ("/2", &b"abc"[..])
    );
    assert_eq!(w.answer(0.2), Next::Read);
}

#[test]
fn a_chunked_body_with_trailers_keeps_the_connection_alive() {
    let mut w = Wire::new();
    let bytes =
        b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
    let parsed = dispatched(w.send(bytes, 0.0));
    assert_eq!(parsed.body, b"abcde");
    assert_eq!(w.answer(0.1), Next::Read);
}

#[test]
fn expect_100_continue_is_answered_once_before_the_body_is_read() {
    let mut w = Wire::new();
    let head = b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    assert!(matches!(w.send(head, 0.0), Step::Continue));
    assert!(matches!(w.poll(0.0), Step::NeedInput), "only once");
    assert_eq!(dispatched(w.send(b"body", 0.1)).body, b"body");
    // The body came with the head: nothing to ask for.
    let mut w = Wire::new();
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(b"body");
    assert_eq!(dispatched(w.send(&bytes, 0.0)).body, b"body");
    // Over the limit: dispatched at once (the handler refuses), no 100.
    let mut w = Wire::new();
    let big = b"POST /u HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1000\r\n\r\n";
    assert_eq!(dispatched(w.send(big, 0.0)).body_length, Some(1000));
}

#[test]
fn connection_close_closes_after_the_response() {
    let mut w = Wire::new();
    dispatched(w.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0.0));
    assert_eq!(w.answer(0.1), Next::Close);
    let mut w = Wire::new();
    dispatched(w.send(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n", 0.0));
    assert_eq!(w.answer(0.1), Next::Close);
}

#[test]
fn http_1_0_closes_unless_it_asks_for_keep_alive() {
    let mut w = Wire::new();
    let parsed = dispatched(w.send(b"GET / HTTP/1.0\r\n\r\n", 0.0));
    assert_eq!(parsed.version, crate::HTTPVersion(1, 0));
    assert_eq!(w.answer(0.1), Next::Close);
    let mut w = Wire::new();
    dispatched(w.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0.0));
    assert_eq!(w.answer(0.1), Next::Read);
}

#[test]
fn an_end_of_input_closes_after_what_was_complete() {
    let mut w = Wire::new();
    w.m.feed(b"GET / HTTP/1.1\r\n\r\nGET /half HTTP/1.1\r\n", w.t0);
    w.m.feed_eof();
    dispatched(w.poll(0.0));
    assert_eq!(w.answer(0.1), Next::Drive);
    assert!(matches!(w.poll(0.1), Step::Close));
}

// ---- budget, writing, lingering -----------------------------------------------------------

#[test]
fn a_body_without_budget_waits_then_resumes_or_gets_503() {
    let mut w = Wire::new();
    // Other bodies hold all but 40 bytes of the budget.
    let mut held: Option<Reservation> = None;
    assert_eq!(
        Reservation::grow(&mut held, &w.env.budget, None, BUDGET - 40),
        Ok(())
    );
    let head = b"POST /u HTTP/1.1\r\nContent-Length: 50\r\n\r\n";
    assert!(matches!(w.send(head, 0.0), Step::Wait));
    assert_eq!(w.m.phase(), Phase::BudgetWait);
    // Retried soon, well before the body deadline.
    assert_eq!(
        w.m.next_deadline(w.at(0.0), &w.env),
        Some(w.at(0.0) + w.env.retry)
    );
    assert_eq!(w.expire(1.0), Expiry::Nothing);
    drop(held);
    assert_eq!(w.expire(2.0), Expiry::Resume);
    assert_eq!(w.m.phase(), Phase::Body);
    assert_eq!(dispatched(w.send(&[b' '; 50], 2.1)).body.len(), 50);

    let mut w = Wire::new();
    let mut held: Option<Reservation> = None;
    assert_eq!(
        Reservation::grow(&mut held, &w.env.budget, None, BUDGET - 40),
        Ok(())
    );
    assert!(matches!(w.send(head, 0.0), Step::Wait));
    assert_eq!(w.expire(BODY_TIMEOUT.as_secs_f64()), Expiry::Refuse(503));
    assert!(w.output_status().starts_with("HTTP/1.1 503 "));
}

#[test]
fn the_body_reservation_is_given_back_with_the_request() {
    let mut w = Wire::new();
    let parsed = dispatched(w.send(b"POST /u HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd", 0.0));
    assert_eq!(w.env.budget.used(), 4);
    drop(parsed);
    assert_eq!(w.env.budget.used(), 0);
}

#[test]
fn a_response_is_written_in_parts_and_closed_past_its_deadline() {
    let mut w = Wire::new();
    dispatched(w.send(b"GET / HTTP/1.1\r\n\r\n", 0.0));
    assert!(w.m.respond(b"0123456789".to_vec(), w.at(0.0), &w.env));
    w.m.wrote(4, w.at(1.0));
    assert_eq!(w.m.unwritten(), b"456789");
    // No progress for io_timeout: closed.
    assert_eq!(w.expire(5.9), Expiry::Nothing);
    assert_eq!(w.expire(6.0), Expiry::Close);
    // Progress, but the whole response may take body_timeout at most.
    let mut w = Wire::new();
    dispatched(w.send(b"GET / HTTP/1.1\r\n\r\n", 0.0));
    assert!(w.m.respond(b"0123456789".to_vec(), w.at(0.0), &w.env));
    for i in 1..10 {
        w.m.wrote(1, w.at(i as f64 * 3.0));
    }
    assert_eq!(w.expire(29.0), Expiry::Nothing);
    assert_eq!(w.expire(30.0), Expiry::Close);
}

#[test]
fn lingering_ends_at_its_deadline_or_byte_limit() {
    let mut w = Wire::new();
    let step = w.send(b"NONSENSE\r\n\r\n", 0.0);
    assert_refused(&mut w, step, 400);
    assert!(w.m.drained(LINGER_BYTES - 1));
    assert!(!w.m.drained(1));
    assert_eq!(w.expire(1.0), Expiry::Nothing);
    assert_eq!(w.expire(2.0), Expiry::Close);
}

#[test]
fn a_head_fed_byte_by_byte_is_the_same_request() {
    let bytes = b"POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz";
    let mut w = Wire::new();
    let mut last = None;
    for b in bytes.iter() {
        match w.send(&[*b], 0.0) {
            Step::NeedInput => {}
            step => last = Some(step),
        }
    }
    let parsed = dispatched(last.expect("a request"));
    assert_eq!(
        (parsed.path.as_str(), &parsed.body[..]),
        ("/t", &b"xyz"[..])
    );
    assert_eq!(parsed.headers.len(), 2);
}

#[test]
fn a_closed_connection_takes_no_response() {
    let mut w = Wire::new();
    dispatched(w.send(b"GET / HTTP/1.1\r\n\r\n", 0.0));
    assert!(!w.m.close_for_shutdown(), "answered first");
    assert_eq!(w.answer(0.1), Next::Close);
    let mut w = Wire::new();
    assert!(w.m.close_for_shutdown());
    assert!(w.m.close());
    assert!(!w.m.close());
    assert!(!w.m.respond(Vec::new(), w.t0, &w.env));
}

// ---- slow senders: the body's share follows what it sent, its pace, its peer's budget -----

/// A policy where bodies up to 4 MiB are read, under a 1 MiB budget.
fn large_bodies() -> ConnectionPolicy {
    ConnectionPolicy {
        prefetch_limit: 4 << 20,
        prefetch_budget: 1 << 20,
        io_timeout: Duration::from_secs(60),
        ..policy()
    }
}

const DECLARES_4_MIB: &[u8] = b"POST /updates HTTP/1.1\r\nContent-Length: 4194304\r\n\r\n";

#[test]
fn a_declared_length_holds_what_arrived_not_what_it_declares() {
    let mut w = Wire::with(large_bodies());
    assert!(matches!(w.send(DECLARES_4_MIB, 0.0), Step::NeedInput));
    assert_eq!(w.env.budget.used(), FIRST_SHARE, "64 KiB of the 4 MiB");
    assert!(matches!(w.send(b"[", 0.1), Step::NeedInput));
    assert_eq!(w.env.budget.used(), FIRST_SHARE);
    // 100 KiB arrived: the share doubles (at least what arrived).
    assert!(matches!(w.send(&[b' '; 100 << 10], 0.2), Step::NeedInput));
    assert_eq!(w.env.budget.used(), 2 * FIRST_SHARE);
    // A body that fits in the budget only as it arrives is served whole; then it holds exactly
    // its length.
    let mut w = Wire::with(ConnectionPolicy {
        prefetch_budget: 4 << 20,
        ..large_bodies()
    });
    assert!(matches!(w.send(DECLARES_4_MIB, 0.0), Step::NeedInput));
    let mut sent = 0;
    let mut last = Step::NeedInput;
    while sent < 4 << 20 {
        last = w.send(&[b'x'; 16 << 10], 0.1);
        sent += 16 << 10;
    }
    let parsed = dispatched(last);
    assert_eq!(parsed.body.len(), 4 << 20);
    assert_eq!(
        parsed.reservation.as_ref().map(Reservation::bytes),
        Some(4 << 20)
    );
    assert_eq!(w.env.budget.used(), 4 << 20);
}

#[test]
fn bodies_that_only_declare_a_size_cannot_take_the_budget() {
    // Sixteen connections declare 4 MiB each (64 MiB) under a 1 MiB budget and send a byte.
    let env = Env::new(large_bodies());
    let t0 = Instant::now();
    let mut trickling = Vec::new();
    for _ in 0..15 {
        let mut m = Machine::new(t0, &env);
        m.feed(DECLARES_4_MIB, t0);
        m.feed(b"[", t0);
        assert!(matches!(m.poll(t0, &env), Step::NeedInput));
        trickling.push(m);
    }
    assert_eq!(env.budget.used(), 15 * FIRST_SHARE);
    // A real body beside them gets its 64 KiB at once.
    let mut m = Machine::new(t0, &env);
    let mut bytes = b"POST /updates HTTP/1.1\r\nContent-Length: 65536\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[b' '; 65536]);
    m.feed(&bytes, t0);
    let served = dispatched(m.poll(t0, &env));
    assert_eq!(served.body.len(), 65536);
    assert_eq!(env.budget.used(), 1 << 20);
    // While it is handled, a sixteenth trickler gets no share: it waits (and gets 503 at its
    // body deadline).
    let mut m = Machine::new(t0, &env);
    m.feed(DECLARES_4_MIB, t0);
    assert!(matches!(m.poll(t0, &env), Step::Wait));
    assert_eq!(m.phase(), Phase::BudgetWait);
    assert_eq!(m.expire(t0 + BODY_TIMEOUT, &env), Expiry::Refuse(503));
    assert_eq!(env.counters.budget_exhausted.load(Ordering::Relaxed), 1);
}

#[test]
fn a_body_under_the_minimum_rate_gets_408_after_its_grace() {
    let mut w = Wire::new();
    assert_eq!(w.env.policy.min_body_rate, 1024);
    assert_eq!(w.env.policy.body_rate_grace, Duration::from_secs(5));
    assert!(matches!(
        w.send(b"POST /u HTTP/1.1\r\nContent-Length: 60\r\n\r\n", 0.0),
        Step::NeedInput
    ));
    // A byte every 2 s: within io_timeout (5 s) and the body deadline (30 s).
    assert!(matches!(w.send(b"a", 2.0), Step::NeedInput));
    assert!(matches!(w.send(b"b", 4.0), Step::NeedInput));
    assert_eq!(w.expire(4.9), Expiry::Nothing);
    // The grace, plus 2 bytes' worth at 1024 bytes/s.
    let due = w.at(5.0) + Duration::from_secs_f64(2.0 / 1024.0);
    assert_eq!(w.m.next_deadline(w.at(4.0), &w.env), Some(due));
    assert_eq!(w.expire(5.001), Expiry::Nothing);
    assert_eq!(w.expire(5.002), Expiry::Refuse(408));
    let out = String::from_utf8_lossy(w.m.unwritten()).into_owned();
    assert!(out.starts_with("HTTP/1.1 408 "), "{}", out);
    assert!(
        out.ends_with("the request body came slower than 1024 bytes/s\n"),
        "{}",
        out
    );
    assert_eq!(w.env.counters.too_slow.load(Ordering::Relaxed), 1);
    assert_eq!(w.env.counters.timed_out.load(Ordering::Relaxed), 0);
    assert_eq!(w.finish(5.002), Next::Linger);
}

#[test]
fn a_body_at_the_minimum_rate_or_ahead_of_it_is_served() {
    let mut w = Wire::with(large_bodies());
    let head = b"POST /u HTTP/1.1\r\nContent-Length: 25000\r\n\r\n";
    assert!(matches!(w.send(head, 0.0), Step::NeedInput));
    // 1 100 bytes a second, for 22 s.
    let mut last = Step::NeedInput;
    for i in 1..=23 {
        let secs = i as f64;
        let left = 25000 - 1100 * (i - 1);
        last = w.send(&vec![b'x'; left.min(1100)], secs);
        assert_eq!(w.expire(secs + 0.99), Expiry::Nothing, "at {secs} s");
    }
    assert_eq!(dispatched(last).body.len(), 25000);
    // 10 KiB at once, then 14 s of nothing: the bytes sent early count.
    let mut w = Wire::with(large_bodies());
    assert!(matches!(w.send(head, 0.0), Step::NeedInput));
    assert!(matches!(w.send(&[b'x'; 10 << 10], 0.0), Step::NeedInput));
    assert_eq!(w.expire(14.9), Expiry::Nothing);
    assert_eq!(w.expire(15.0), Expiry::Refuse(408));
    // Off at 0: only the body deadline applies.
    let mut w = Wire::with(ConnectionPolicy {
        min_body_rate: 0,
        ..large_bodies()
    });
    assert!(matches!(w.send(head, 0.0), Step::NeedInput));
    assert_eq!(w.m.next_deadline(w.at(0.0), &w.env), Some(w.at(30.0)));
    assert_eq!(w.expire(29.9), Expiry::Nothing);
    assert_eq!(w.expire(30.0), Expiry::Refuse(408));
    assert_eq!(w.env.counters.timed_out.load(Ordering::Relaxed), 1);
    assert_eq!(w.env.counters.too_slow.load(Ordering::Relaxed), 0);
}

#[test]
fn waiting_for_budget_does_not_count_against_the_rate() {
    let mut w = Wire::new();
    let mut held: Option<Reservation> = None;
    Reservation::grow(&mut held, &w.env.budget, None, BUDGET - 40).unwrap();
    let head = b"POST /u HTTP/1.1\r\nContent-Length: 50\r\n\r\n";
    assert!(matches!(w.send(head, 0.0), Step::Wait));
    assert_eq!(w.expire(9.0), Expiry::Nothing);
    drop(held);
    assert_eq!(w.expire(10.0), Expiry::Resume);
    assert!(matches!(w.poll(10.0), Step::NeedInput));
    // Measured from the resumption: the grace runs until 15 s (io_timeout is 5 s: a byte at 14).
    assert!(matches!(w.send(b"x", 14.0), Step::NeedInput));
    assert_eq!(w.expire(14.9), Expiry::Nothing);
    assert_eq!(w.expire(15.001), Expiry::Refuse(408));
    assert_eq!(w.env.counters.too_slow.load(Ordering::Relaxed), 1);
}

#[test]
fn a_peers_budget_caps_its_bodies_and_the_wait_ends_in_503() {
    let mut w = Wire::new();
    let peer = Arc::new(Budget::new(100));
    w.m.set_peer_budget(Some(peer.clone()));
    // The peer's other connections hold 80 of its 100 bytes.
    let mut held: Option<Reservation> = None;
    Reservation::grow(&mut held, &w.env.budget, Some(&peer), 80).unwrap();
    let head = b"POST /u HTTP/1.1\r\nContent-Length: 50\r\n\r\n";
    assert!(matches!(w.send(head, 0.0), Step::Wait));
    assert_eq!(w.m.phase(), Phase::BudgetWait);
    assert_eq!(w.expire(BODY_TIMEOUT.as_secs_f64()), Expiry::Refuse(503));
    let out = String::from_utf8_lossy(w.m.unwritten()).into_owned();
    assert!(out.ends_with("from this client, retry later\n"), "{}", out);
    let c = &w.env.counters;
    assert_eq!(c.peer_budget_exhausted.load(Ordering::Relaxed), 1);
    assert_eq!(c.budget_exhausted.load(Ordering::Relaxed), 0);
    // Another peer's body is not held back, and its bytes count against both budgets.
    let mut w2 = Wire::new();
    let other = Arc::new(Budget::new(100));
    w2.m.set_peer_budget(Some(other.clone()));
    let parsed = dispatched(w2.send(b"POST /u HTTP/1.1\r\nContent-Length: 50\r\n\r\n[]                                                ", 0.0));
    assert_eq!(parsed.body.len(), 50);
    assert_eq!((other.used(), w2.env.budget.used()), (50, 50));
    drop(parsed);
    assert_eq!((other.used(), w2.env.budget.used()), (0, 0));
    // With room again the first peer's next body goes through.
    drop(held);
    assert_eq!(peer.used(), 0);
    let mut held = None;
    assert_eq!(
        Reservation::grow(&mut held, &w.env.budget, Some(&peer), 101),
        Err(Shortage::Peer)
    );
}

#[test]
fn every_refusal_before_dispatch_is_counted_by_its_cause() {
    let env = Env::new(policy());
    let t0 = Instant::now();
    for bytes in [
        &b"NONSENSE\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\n\r\n",
        b"POST /u HTTP/1.1\r\nExpect: nope\r\n\r\n",
    ] {
        let mut m = Machine::new(t0, &env);
        m.feed(bytes, t0);
        assert!(matches!(m.poll(t0, &env), Step::Refuse(_)));
    }
    let mut m = Machine::new(t0, &env);
    m.feed(
        format!("GET /{} HTTP/1.1\r\n\r\n", "p".repeat(300)).as_bytes(),
        t0,
    );
    assert!(matches!(m.poll(t0, &env), Step::Refuse(431)));
    let mut m = Machine::new(t0, &env);
    m.feed(b"GET / HTTP/1.1\r\n", t0);
    assert!(matches!(m.poll(t0, &env), Step::NeedInput));
    assert_eq!(m.expire(t0 + HEADER_TIMEOUT, &env), Expiry::Refuse(408));
    let c = &env.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    assert_eq!(
        (
            load(&c.bad_request),
            load(&c.header_too_large),
            load(&c.timed_out)
        ),
        (1, 1, 1),
        "417 and 505 have no counter"
    );
}

#[test]
fn refusals_carry_the_signers_header_over_their_body() {
    let signer = RefusalSigner::new("X-Sig", |body: &[u8]| {
        format!(
            "{}:{}",
            body.len(),
            String::from_utf8_lossy(body).trim_end()
        )
    });
    let mut w = Wire::with(ConnectionPolicy {
        refusal_signer: Some(signer),
        ..policy()
    });
    assert!(matches!(
        w.send(b"NONSENSE\r\n\r\n", 0.0),
        Step::Refuse(400)
    ));
    let out = String::from_utf8_lossy(w.m.unwritten()).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let expected = format!("\r\nX-Sig: {}:{}\r\n", body.len(), body.trim_end());
    assert!(head.contains(&expected), "{}", out);
    // A refusal at a deadline too.
    let mut w = Wire::with(ConnectionPolicy {
        refusal_signer: Some(RefusalSigner::new("X-Sig", |_: &[u8]| "s".into())),
        ..policy()
    });
    assert!(matches!(
        w.send(b"GET / HTTP/1.1\r\n", 0.0),
        Step::NeedInput
    ));
    assert_eq!(w.expire(5.0), Expiry::Refuse(408));
    let out = String::from_utf8_lossy(w.m.unwritten()).into_owned();
    assert!(
        out.contains("\r\nX-Sig: s\r\nConnection: close\r\n"),
        "{}",
        out
    );
}
