//! Slow senders cannot starve writers (issue 16 §3), and the engine's own refusals are signed
//! (§5). Attack sockets come from 127.0.0.2 (bound before connect; the server listens on
//! 127.0.0.1), so the per-peer caps tell them from the agent and the test's own clients.
//!
//! - The attack of the issue: sockets that send a `POST /updates` head declaring
//!   `Content-Length: 4194304`, then one byte every 2 s (a socket the server answered or closed
//!   is replaced at the next tick), 64 and 256 of them, while the real agent reports through the
//!   test kit's fault proxy every 300 ms. Every report is answered within 1 s (the proxy times
//!   each exchange from the request read whole to the response read whole), and `PollCount` is
//!   exactly what the agent says it polled. Before the fix, 64 such sockets held the whole
//!   256 MiB body budget and the agent's reports waited ~28 s or got `503`.
//! - The per-peer caps: 127.0.0.2 cannot open more connections than `MAX_CONNECTIONS_PER_PEER`
//!   nor hold more body bytes than `MAX_BUFFERED_PER_PEER`, while 127.0.0.1 is served.
//! - With `KEY` set, `400`, `408`, `413`, `431`, `503` and `505` carry `HashSHA256` over their
//!   body, checked against SHA-256(body ‖ key) computed here.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use golectra_testkit::{FaultProxy, ServerProcess, agent_binary, eventually};
use sha2::{Digest, Sha256};

use crate::exactly_once::{FAST, WAIT, poll_count, start_agent, stop_agent};
use crate::harness::{Backend, TestServer};

/// Where the attack comes from.
const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The head every attack socket sends, declaring the largest body (`MAX_BODY_SIZE`, 4 MiB).
const ATTACK_HEAD: &[u8] = b"POST /updates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 4194304\r\n\r\n";

/// Time between the attack's bytes.
const TRICKLE: Duration = Duration::from_secs(2);

/// How long the agent reports beside the attack: the attack sockets of the first generation are
/// refused (`MIN_BODY_RATE`) after about 5 s and replaced, so this covers two generations.
const UNDER_ATTACK: Duration = Duration::from_secs(12);

/// The deadline of every report.
const ANSWERED_WITHIN: Duration = Duration::from_secs(1);

/// A TCP connection from `from` to `to`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    Ok(stream)
}

/// What the attack saw so far.
#[derive(Debug, Default, Clone)]
struct AttackLog {
    /// Sockets connected (with their head sent).
    connected: u64,
    /// Answers the server sent an attack socket, by status.
    answers: BTreeMap<u16, u64>,
    /// Attack sockets the server closed without an answer, or that failed to connect.
    closed: u64,
}

/// `sockets` attack sockets from [`ATTACKER`], on a thread of their own until dropped.
struct Attack {
    log: Arc<Mutex<AttackLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Attack {
    fn start(server: SocketAddr, sockets: usize) -> Self {
        let log = Arc::new(Mutex::new(AttackLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("slow-senders".into())
            .spawn({
                let (log, stop) = (log.clone(), stop.clone());
                move || attack(server, sockets, &log, &stop)
            })
            .expect("spawn the attack");
        Self {
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn log(&self) -> AttackLog {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One tick every [`TRICKLE`]: an empty slot gets a new socket (head sent), a socket the
/// server answered or closed is logged and emptied, every other one sends one more byte.
fn attack(server: SocketAddr, sockets: usize, log: &Mutex<AttackLog>, stop: &AtomicBool) {
    let mut slots: Vec<Option<TcpStream>> = (0..sockets).map(|_| None).collect();
    while !stop.load(Ordering::Relaxed) {
        for slot in &mut slots {
            let Some(socket) = slot else {
                let opened = connect_from(ATTACKER, server).and_then(|mut s| {
                    s.write_all(ATTACK_HEAD)?;
                    s.set_nonblocking(true)?;
                    Ok(s)
                });
                let mut log = log.lock().unwrap();
                match opened {
                    Ok(s) => {
                        log.connected += 1;
                        *slot = Some(s);
                    }
                    Err(_) => log.closed += 1,
                }
                continue;
            };
            let mut buf = [0u8; 512];
            let outcome = match socket.read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => match socket.write(b" ") {
                    Ok(1) => continue,
                    _ => None,
                },
                Ok(n) if n > 0 => std::str::from_utf8(&buf[..n])
                    .ok()
                    .and_then(|text| text.strip_prefix("HTTP/1.1 "))
                    .and_then(|rest| rest.get(..3))
                    .and_then(|status| status.parse::<u16>().ok()),
                _ => None,
            };
            let mut log = log.lock().unwrap();
            match outcome {
                Some(status) => *log.answers.entry(status).or_default() += 1,
                None => log.closed += 1,
            }
            *slot = None;
        }
        // The attack's pace, not a wait for a condition.
        let tick = Instant::now();
        while tick.elapsed() < TRICKLE && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A family's sample in a `/metrics` text (`name` with its labels, as written), 0 when absent.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The agent reports through the fault proxy while `sockets` attack sockets trickle their
/// bodies: every report answered within [`ANSWERED_WITHIN`], `PollCount` exact.
fn the_agent_is_served_beside(sockets: usize) {
    let Some(bin) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The defaults: they alone must hold the attack off.
    let server = ServerProcess::start(dir.path(), &[], &[]);
    let metrics = || server.client().get("/metrics").text();
    let attack = Attack::start(server.addr, sockets);
    // Every attack socket is admitted and in its body before the agent starts.
    eventually(WAIT, || {
        let open = sample(&metrics(), "golectra_connections_open");
        (open >= sockets as f64).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the attack did not get in: {:?}\n{}",
            attack.log(),
            metrics()
        )
    });

    let proxy = FaultProxy::start(server.addr);
    let started = Instant::now();
    let mut agent = start_agent(&bin, dir.path(), &proxy.url(), None, FAST);
    let mut buffered_peak = 0.0f64;
    while started.elapsed() < UNDER_ATTACK {
        buffered_peak = buffered_peak.max(sample(&metrics(), "golectra_body_buffer_bytes"));
        // The scrapes' pace: the deliberate gap is the attack itself (UNDER_ATTACK).
        std::thread::sleep(Duration::from_millis(500));
    }
    let stopped = stop_agent(&mut agent);
    let seen = attack.log();
    drop(attack);

    // Every exchange is recorded once its answer came (or failed to).
    eventually(Duration::from_secs(60), || {
        (proxy.exchanges().len() as u64 >= proxy.counts().forwarded).then_some(())
    })
    .unwrap_or_else(|| panic!("exchanges still unanswered: {:?}", proxy.counts()));
    let posts: Vec<_> = proxy
        .exchanges()
        .into_iter()
        .filter(|e| e.method == "POST")
        .collect();
    let late: Vec<String> = posts
        .iter()
        .filter(|e| e.status != Some(200) || e.answered_in.is_none_or(|t| t > ANSWERED_WITHIN))
        .map(|e| {
            format!(
                "{} {} {:?} in {:?}",
                e.method, e.path, e.status, e.answered_in
            )
        })
        .collect();
    let slowest = posts.iter().filter_map(|e| e.answered_in).max();
    eprintln!(
        "beside {sockets} slow senders: {} reports, slowest {slowest:?}; attack {seen:?}; peak buffered {buffered_peak} bytes",
        posts.len()
    );
    assert!(
        late.is_empty(),
        "{} of {} reports not answered 200 within {ANSWERED_WITHIN:?} beside {sockets} slow senders: {late:#?}\nattack: {seen:?}",
        late.len(),
        posts.len()
    );
    assert!(
        posts.len() >= 10,
        "only {} reports in {UNDER_ATTACK:?}",
        posts.len()
    );
    assert!(stopped.delivered, "{stopped:?}\n{}", agent.log());
    assert_eq!(poll_count(&server), stopped.polls, "{}", agent.log());

    // The attack was real: every socket got in, and was refused for its pace, not its budget.
    let metrics = metrics();
    assert!(seen.connected >= sockets as u64, "{seen:?}");
    let too_slow = sample(
        &metrics,
        "golectra_requests_rejected_total{reason=\"body_too_slow\"}",
    );
    assert!(too_slow >= sockets as f64, "{too_slow} 408s\n{metrics}");
    assert_eq!(
        seen.answers.get(&408).copied(),
        Some(too_slow as u64),
        "{seen:?}"
    );
    let budget_refusals = sample(
        &metrics,
        "golectra_requests_rejected_total{reason=\"body_buffer_full\"}",
    );
    assert_eq!(budget_refusals, 0.0, "{metrics}");
    // Each attack socket held its first share (64 KiB) at most, beside the agent's bodies.
    let bound = (sockets * (64 << 10) + (4 << 20)) as f64;
    assert!(buffered_peak <= bound, "{buffered_peak} buffered > {bound}");
}

#[test]
fn an_agent_is_served_beside_64_slow_senders() {
    the_agent_is_served_beside(64);
}

#[test]
fn an_agent_is_served_beside_256_slow_senders() {
    the_agent_is_served_beside(256);
}

// ---- the per-peer caps ------------------------------------------------------------------------

fn stats(t: &TestServer) -> tiny_http::ConnectionStats {
    t.server.as_ref().expect("running").connection_stats()
}

/// Reads until the server closes the connection; `(status, head, body)` of the one response.
fn response_to_close(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let raw = crate::harness::read_to_close(s);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head[9..12].parse().expect("a status");
    (status, head, raw[end + 4..].to_vec())
}

/// The value of header `name` in a raw head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn one_address_cannot_open_more_connections_than_its_cap() {
    const CAP: usize = 8;
    let t = TestServer::start_with(Backend::Memory, |c| {
        c.connections.max_connections_per_peer = CAP;
        c.connections.header_timeout = Duration::from_secs(20);
    });
    // Eight connections of 127.0.0.2 in the middle of a request head: none is idle.
    let busy: Vec<TcpStream> = (0..CAP)
        .map(|_| {
            let mut s = connect_from(ATTACKER, t.addr).unwrap();
            s.write_all(b"GET /ping HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    eventually(WAIT, || (stats(&t).current >= CAP).then_some(()));
    // A deliberate gap, not a wait: the server reads the heads' first bytes (they leave the
    // idle phase, so none is evicted for the newcomer).
    std::thread::sleep(Duration::from_millis(300));
    let (status, head, body) = response_to_close(&mut connect_from(ATTACKER, t.addr).unwrap());
    assert_eq!(status, 503, "{head}");
    assert_eq!(header(&head, "Retry-After"), Some("1"), "{head}");
    assert_eq!(header(&head, "Connection"), Some("close"), "{head}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "server busy: too many connections from this client, retry later\n"
    );
    let s = stats(&t);
    assert_eq!(
        (s.refused_per_peer, s.refused, s.current),
        (1, 0, CAP),
        "{s:?}"
    );
    assert_eq!(s.peers, 1, "{s:?}");
    // Another address is served meanwhile.
    let r = t.client().get("/ping");
    assert_eq!(r.status, 200, "{}", r.text());
    let metrics = t.client().get("/metrics").text();
    assert_eq!(
        sample(&metrics, "golectra_connections_refused_per_peer_total"),
        1.0,
        "{metrics}"
    );
    // Once its requests are done, the address gets in again.
    for mut s in busy {
        s.write_all(b"Connection: close\r\n\r\n").unwrap();
        assert_eq!(response_to_close(&mut s).0, 200);
    }
    eventually(WAIT, || (stats(&t).peers == 0).then_some(()));
    let mut s = connect_from(ATTACKER, t.addr).unwrap();
    s.write_all(b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(response_to_close(&mut s).0, 200);

    // At its cap with idle connections, the address's oldest idle one makes room.
    let other = Ipv4Addr::new(127, 0, 0, 3);
    let mut idle: Vec<TcpStream> = (0..CAP)
        .map(|_| connect_from(other, t.addr).unwrap())
        .collect();
    eventually(WAIT, || (stats(&t).current >= CAP).then_some(()));
    let mut s = connect_from(other, t.addr).unwrap();
    s.write_all(b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(response_to_close(&mut s).0, 200);
    let s = stats(&t);
    assert_eq!((s.evicted_idle, s.refused_per_peer), (1, 1), "{s:?}");
    let mut byte = [0u8; 1];
    assert_eq!(
        idle[0].read(&mut byte).unwrap_or(0),
        0,
        "the oldest was closed"
    );
    idle.clear();
}

#[test]
fn one_address_cannot_hold_more_body_bytes_than_its_cap() {
    const MAX_BODY: usize = 256 << 10;
    const PEER_CAP: usize = 1 << 20;
    let t = TestServer::start_with(Backend::Memory, |c| {
        c.limits.max_body = MAX_BODY;
        c.connections.max_buffered_per_peer = PEER_CAP;
        c.connections.max_connections_per_peer = 0;
        c.connections.min_body_rate = 0;
        c.connections.body_timeout = Duration::from_secs(3);
    });
    let head = format!("POST /updates HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY}\r\n\r\n");
    // The victim: a body of 127.0.0.2 that started first, holding its first 64 KiB share.
    let mut victim = connect_from(ATTACKER, t.addr).unwrap();
    victim.write_all(head.as_bytes()).unwrap();
    victim.write_all(&[b' '; 1024]).unwrap();
    eventually(WAIT, || {
        (stats(&t).body_buffer_bytes == 64 << 10).then_some(())
    })
    .unwrap_or_else(|| panic!("{:?}", stats(&t)));
    // Four more bodies of 127.0.0.2, one after the other: three send all but their last byte
    // (holding 256 KiB each), the fourth the 192 KiB that fill the address's share exactly.
    let mut holders = Vec::new();
    for (sends, holds) in [
        (MAX_BODY - 1, (64 << 10) + (256 << 10)),
        (MAX_BODY - 1, (64 << 10) + (512 << 10)),
        (MAX_BODY - 1, (64 << 10) + (768 << 10)),
        (192 << 10, PEER_CAP),
    ] {
        let mut s = connect_from(ATTACKER, t.addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&vec![b' '; sends]).unwrap();
        eventually(WAIT, || {
            (stats(&t).body_buffer_bytes == holds).then_some(())
        })
        .unwrap_or_else(|| panic!("{holds} expected: {:?}", stats(&t)));
        holders.push(s);
    }
    // The victim's body goes on: it needs more than what is left of its address's share.
    victim.write_all(&[b' '; 100 << 10]).unwrap();
    // Another address is served at once meanwhile, with a body of its own.
    let item = r#"{"id":"g","type":"gauge","value":1},"#;
    let mut batch = "[".to_owned() + &item.repeat((200 << 10) / item.len());
    batch.pop();
    batch.push(']');
    let sent = Instant::now();
    let r = t.client().post_json("/updates", &batch);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    // Its body given back, the buffered bytes are the address's cap, exactly.
    eventually(WAIT, || {
        (stats(&t).body_buffer_bytes == PEER_CAP).then_some(())
    })
    .unwrap_or_else(|| panic!("{:?}", stats(&t)));
    // The victim waits for room and gets 503 at its body deadline.
    let (status, head, body) = response_to_close(&mut victim);
    assert_eq!(status, 503, "{head}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "server busy: too many request bodies in flight from this client, retry later\n"
    );
    let s = stats(&t);
    assert_eq!(
        (s.peer_budget_exhausted, s.budget_exhausted),
        (1, 0),
        "{s:?}"
    );
    drop(holders);
    let metrics = t.client().get("/metrics").text();
    assert_eq!(
        sample(
            &metrics,
            "golectra_requests_rejected_total{reason=\"peer_body_buffer_full\"}"
        ),
        1.0,
        "{metrics}"
    );
}

// ---- signed refusals ----------------------------------------------------------------------------

const KEY: &[u8] = b"refusal-key";

/// SHA-256(body ‖ key), lowercase hex: the spec's `HashSHA256` (SPEC §3.3).
fn expected_signature(body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(KEY);
    hex::encode(hasher.finalize())
}

#[test]
fn refusals_before_any_handler_are_signed_with_the_key() {
    let t = TestServer::start_with(Backend::Memory, |c| {
        c.key = Some(KEY.to_vec());
        c.connections.header_timeout = Duration::from_millis(500);
        c.connections.max_connections_per_peer = 1;
    });
    // Each case from an address of its own (a refused connection lingers for a while, and the
    // per-peer cap is 1 here for the 503).
    let cases: [(u16, &[u8]); 5] = [
        (400, b"NONSENSE\r\n\r\n"),
        (408, b"GET /ping HTTP/1.1\r\n"),
        (
            413,
            b"POST /updates HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n[",
        ),
        (431, &[]),
        (505, b"GET /ping HTTP/2.0\r\n\r\n"),
    ];
    let long_header = format!("GET /ping HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(9000));
    for (i, (status, bytes)) in cases.iter().enumerate() {
        let from = Ipv4Addr::new(127, 0, 1, i as u8 + 1);
        let mut s = connect_from(from, t.addr).unwrap();
        let bytes = if *status == 431 {
            long_header.as_bytes()
        } else {
            bytes
        };
        s.write_all(bytes).unwrap();
        let (got, head, body) = response_to_close(&mut s);
        assert_eq!(got, *status, "{head}");
        assert!(!body.is_empty(), "{head}");
        assert_eq!(
            header(&head, "HashSHA256"),
            Some(expected_signature(&body).as_str()),
            "{status}: {head}\n\n{}",
            String::from_utf8_lossy(&body)
        );
    }
    // 503: the second connection of an address at its cap of 1.
    let mut busy = connect_from(ATTACKER, t.addr).unwrap();
    busy.write_all(b"GET /ping HTTP/1.1\r\n").unwrap();
    eventually(WAIT, || (stats(&t).peers >= 1).then_some(()));
    // A deliberate gap, not a wait: the server reads the first byte (the connection is busy).
    std::thread::sleep(Duration::from_millis(200));
    let (got, head, body) = response_to_close(&mut connect_from(ATTACKER, t.addr).unwrap());
    assert_eq!(got, 503, "{head}");
    assert_eq!(
        header(&head, "HashSHA256"),
        Some(expected_signature(&body).as_str()),
        "{head}"
    );
    // Without a key nothing is signed.
    let t = TestServer::start(Backend::Memory);
    let mut s = connect_from(ATTACKER, t.addr).unwrap();
    s.write_all(b"NONSENSE\r\n\r\n").unwrap();
    let (got, head, _) = response_to_close(&mut s);
    assert_eq!((got, header(&head, "HashSHA256")), (400, None), "{head}");
}
