//! Hostile and broken clients (issue 9): slow bodies, idle floods, heads that never finish, short
//! bodies, pipelining, chunked bodies, absurd headers, non-UTF-8 paths. Each must end in a clear
//! 4xx/5xx or a closed connection, never a panic or a stuck worker — every test proves the
//! fixed worker pool still serves afterwards. Raw `TcpStream` clients, loopback only.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use golectra_testkit::{ServerProcess, eventually, wait_exit};

use crate::harness::{Backend, TestServer};

/// A server with two workers (the pool size the issue's reproduction used) and `adjust` applied.
fn server(adjust: impl FnOnce(&mut golectra_server::config::Config)) -> TestServer {
    TestServer::start_with(Backend::Memory, |c| {
        c.workers = 2;
        adjust(c);
    })
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Reads until the server closes the connection (or 15 s pass).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
}

/// Splits raw bytes into `(status, body)` responses using `Content-Length`.
fn parse_responses(mut raw: &[u8]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let (status, len) = parse_head(&raw[..end]);
        let body = &raw[end + 4..end + 4 + len];
        out.push((status, String::from_utf8_lossy(body).into_owned()));
        raw = &raw[end + 4 + len..];
    }
    out
}

/// Sends `bytes` and returns the single response the server sends before closing.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<(u16, String)> {
    let mut s = connect(addr);
    s.write_all(bytes).expect("send");
    parse_responses(&read_to_close(&mut s))
}

/// The pool still answers ordinary requests (no stuck worker).
fn assert_serves(t: &TestServer) {
    for _ in 0..4 {
        let r = t.client().get("/ping");
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

fn stats(t: &TestServer) -> tiny_http::ConnectionStats {
    t.server.as_ref().expect("running").connection_stats()
}

#[test]
fn slow_bodies_do_not_stall_the_workers() {
    const SLOW: usize = 50;
    const REQUESTS: usize = 1000;
    let t = server(|_| {});
    let stop = Arc::new(AtomicBool::new(false));
    let slow: Vec<_> = (0..SLOW)
        .map(|i| {
            let stop = stop.clone();
            let mut s = connect(t.addr);
            std::thread::Builder::new()
                .name(format!("slow-client-{i}"))
                .spawn(move || {
                    s.write_all(
                        b"POST /updates HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n[",
                    )
                    .unwrap();
                    // One byte per second; the stop flag is checked every 100 ms.
                    let mut last = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                        if last.elapsed() >= Duration::from_secs(1) {
                            let _ = s.write_all(b" ");
                            last = Instant::now();
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    // Every slow client is admitted and waiting in its body.
    eventually(Duration::from_secs(10), || {
        (stats(&t).current >= SLOW).then_some(())
    });
    assert!(stats(&t).current >= SLOW, "{:?}", stats(&t));

    let client = t.client();
    let mut latencies = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let started = Instant::now();
        let r = if i % 2 == 0 {
            client.post(&format!("/update/counter/c/{}", 1), b"")
        } else {
            client.get("/value/counter/c")
        };
        latencies.push(started.elapsed());
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    eprintln!(
        "slow-client test: {REQUESTS} requests beside {SLOW} slow bodies: p50 {:?}, p99 {:?}, max {:?}",
        pct(50),
        pct(99),
        latencies.last().unwrap()
    );
    assert!(pct(99) < Duration::from_secs(2), "p99 {:?}", pct(99));
    assert_eq!(client.get("/value/counter/c").text(), "500");
    stop.store(true, Ordering::Relaxed);
    for h in slow {
        h.join().unwrap();
    }
}

fn proc_status(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

fn open_sockets(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Connections waiting in the kernel's accept queue of the listener at `addr` (the `rx_queue`
/// of its LISTEN line in `/proc/net/tcp`), `None` when there is no such line.
fn accept_queue(addr: SocketAddr) -> Option<u64> {
    let local = match addr.ip() {
        std::net::IpAddr::V4(ip) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(ip.octets()),
            addr.port()
        ),
        std::net::IpAddr::V6(_) => return None,
    };
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // `sl local_address rem_address st tx_queue:rx_queue …`; 0A is LISTEN.
        if fields.get(1) != Some(&local.as_str()) || fields.get(3) != Some(&"0A") {
            return None;
        }
        let rx = fields.get(4)?.split(':').nth(1)?;
        u64::from_str_radix(rx, 16).ok()
    })
}

/// Raises this process's soft descriptor limit to its hard limit and returns it.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

const FLOOD_ADDR: &str = "GOLECTRA_TEST_FLOOD_ADDR";
const FLOOD_COUNT: &str = "GOLECTRA_TEST_FLOOD_COUNT";
const FLOOD_SOURCE: &str = "GOLECTRA_TEST_FLOOD_SOURCE";

/// Not a test of its own: the idle-flood test runs this binary again with this filter to hold
/// part of the flood in another process (one process's descriptor limit cannot hold 20 000
/// sockets where the hard limit is 20 000). Without the variables it does nothing.
#[test]
#[ignore = "helper process of idle_flood_stays_within_the_cap_and_adds_no_thread"]
fn idle_flood_helper() {
    let (Ok(addr), Ok(count)) = (std::env::var(FLOOD_ADDR), std::env::var(FLOOD_COUNT)) else {
        return;
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let count: usize = count.parse().unwrap();
    let limit = raise_nofile();
    assert!(limit as usize > count + 64, "descriptor limit {limit}");
    // Each helper connects from its own loopback address, so the flood does not exhaust the
    // ephemeral ports of 127.0.0.1 that other tests use.
    let source: std::net::IpAddr = std::env::var(FLOOD_SOURCE).unwrap().parse().unwrap();
    let held: Vec<_> = (0..count)
        .map(|_| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            s.bind(&SocketAddr::new(source, 0).into()).expect("bind");
            s.connect(&addr.into()).expect("connect");
            TcpStream::from(s)
        })
        .collect();
    println!("FLOOD-READY {}", held.len());
    std::io::stdout().flush().unwrap();
    // Hold every connection until the parent closes our stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Starts a helper process holding `count` idle connections to `addr`.
fn flood_process(addr: SocketAddr, count: usize, source: &str) -> std::process::Child {
    use std::process::{Command, Stdio};
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "resilience::idle_flood_helper",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(FLOOD_ADDR, addr.to_string())
        .env(FLOOD_COUNT, count.to_string())
        .env(FLOOD_SOURCE, source)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn flood helper")
}

#[test]
fn idle_flood_stays_within_the_cap_and_adds_no_thread() {
    const FLOOD: usize = 20_000;
    const HELPERS: usize = 2;
    const CAP: usize = 1024; // the default MAX_CONNECTIONS
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-w", "2"], &[]);
    let pid = server.pid();
    let client = server.client();
    assert_eq!(client.get("/ping").status, 200);
    // A deliberate gap, not a wait: whatever the first request set going settles before the
    // baseline is taken.
    std::thread::sleep(Duration::from_millis(300));
    let base_threads = proc_status(pid, "Threads:");
    let base_rss = proc_status(pid, "VmRSS:");
    // The listener, the signal pipe pair and the test's keep-alive connection.
    let base_sockets = open_sockets(pid);

    let started = Instant::now();
    let mut helpers: Vec<_> = (0..HELPERS)
        .map(|i| flood_process(server.addr, FLOOD / HELPERS, &format!("127.0.0.{}", 2 + i)))
        .collect();
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = helpers
        .iter_mut()
        .map(|h| {
            let out = h.stdout.take().unwrap();
            let ready = ready.clone();
            std::thread::spawn(move || {
                // The test harness prints its own text around ours.
                let held: usize = std::io::BufRead::lines(std::io::BufReader::new(out))
                    .map_while(Result::ok)
                    .find_map(|l| l.split("FLOOD-READY ").nth(1)?.trim().parse().ok())
                    .expect("the flood helper reports its connections");
                ready.fetch_add(held, Ordering::SeqCst);
            })
        })
        .collect();
    // Sample the server while the flood comes in; ordinary requests must keep working.
    let mut max_sockets = 0;
    let mut max_threads = 0;
    let mut served = 0;
    while readers.iter().any(|r| !r.is_finished()) {
        max_sockets = max_sockets.max(open_sockets(pid));
        max_threads = max_threads.max(proc_status(pid, "Threads:"));
        assert_eq!(client.get("/ping").status, 200, "during the flood");
        served += 1;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "flood too slow"
        );
        // The pace of the sampling, not a wait.
        std::thread::sleep(Duration::from_millis(100));
    }
    for r in readers {
        r.join().expect("flood helper reported");
    }
    let flood_time = started.elapsed();
    assert_eq!(ready.load(Ordering::SeqCst), FLOOD);
    // A deliberate gap, not a wait: the flood is held idle for a second before the settled
    // figures are taken…
    std::thread::sleep(Duration::from_secs(1));
    // …and once the server has accepted (and evicted its way through) every connection the
    // kernel queued for it: on a loaded machine that takes longer than the second.
    eventually(Duration::from_secs(60), || {
        (accept_queue(server.addr) == Some(0)).then_some(())
    })
    .unwrap_or_else(|| panic!("accept queue {:?}", accept_queue(server.addr)));
    let settled_sockets = open_sockets(pid);
    let settled_threads = proc_status(pid, "Threads:");
    let rss = proc_status(pid, "VmRSS:");
    for i in 0..20 {
        let r = server.client().post(&format!("/update/gauge/g/{i}"), b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    eprintln!(
        "idle flood: {FLOOD} connections held open in {flood_time:?} ({served} pings served meanwhile); \
         server sockets base {base_sockets} peak {max_sockets} settled {settled_sockets} (cap {CAP}); threads base \
         {base_threads} peak {max_threads} settled {settled_threads}; RSS base {base_rss} kB, \
         under the flood {rss} kB"
    );
    // Live connections never exceed the cap (the test's own connection is one of them; one
    // more socket may be just accepted, before an idle one is evicted for it). Connections are
    // driven by the fixed workers, so the flood adds no thread at all.
    assert!(max_sockets <= base_sockets + CAP, "sockets {max_sockets}");
    assert!(
        settled_sockets <= base_sockets - 1 + CAP,
        "sockets {settled_sockets}"
    );
    assert!(
        max_threads <= base_threads && settled_threads <= base_threads,
        "threads base {base_threads} peak {max_threads} settled {settled_threads}"
    );
    assert!(rss < base_rss + 256 * 1024, "RSS {rss} kB");

    // Closing the flood: the helpers exit when their stdin closes.
    for mut h in helpers {
        drop(h.stdin.take());
        wait_exit(&mut h, Duration::from_secs(30));
    }
    // The closed connections are deregistered.
    eventually(Duration::from_secs(30), || {
        (open_sockets(pid) <= base_sockets).then_some(())
    });
    assert!(
        open_sockets(pid) <= base_sockets,
        "sockets after the flood closed"
    );
    assert_eq!(client.get("/value/gauge/g").text(), "19");
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn a_client_that_does_not_read_its_large_response_holds_no_worker() {
    // One worker: if writing the response could block it, nothing else would be served.
    let t = server(|c| c.workers = 1);
    let client = t.client();
    for batch in 0..12 {
        let items: Vec<String> = (0..5000)
            .map(|i| {
                format!(r#"{{"id":"slow_reader_gauge_{batch}_{i}","type":"gauge","value":{i}.5}}"#)
            })
            .collect();
        let r = client.post("/updates", format!("[{}]", items.join(",")).as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A /metrics page of several MiB, far more than the socket buffers hold, not read for now.
    let mut slow = connect(t.addr);
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // A deliberate gap, not a wait: the server has half a second to fill the unread socket
    // before the other requests come.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..50 {
        let r = client.post(&format!("/update/counter/while_blocked/{}", 1), b"");
        assert_eq!(
            r.status,
            200,
            "request {i} beside the slow reader: {}",
            r.text()
        );
    }
    // The whole response arrives once the client reads (tiny_http sends a body this large
    // chunked), and the connection stays usable.
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 << 10];
    while !raw.ends_with(b"\r\n0\r\n\r\n") {
        let n = slow.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {} bytes", raw.len());
        raw.extend_from_slice(&buf[..n]);
    }
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let body = String::from_utf8(dechunk(&raw[head_end..])).unwrap();
    assert!(
        body.len() > 4 << 20,
        "the page is only {} bytes",
        body.len()
    );
    assert!(
        body.contains("slow_reader_gauge_11_4999"),
        "an incomplete page"
    );
    assert!(body.ends_with('\n'));
    slow.write_all(
        b"GET /value/counter/while_blocked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        parse_responses(&read_to_close(&mut slow)),
        [(200, "50".to_owned())]
    );
}

/// Decodes a complete chunked body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("size line");
        let size = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        assert_eq!(&raw[size..size + 2], b"\r\n");
        raw = &raw[size + 2..];
    }
}

/// Status and `Content-Length` of a response head.
fn parse_head(head: &[u8]) -> (u16, usize) {
    let head = String::from_utf8_lossy(head);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (status, length)
}

#[test]
fn a_head_that_never_finishes_gets_408() {
    let t = server(|c| {
        c.connections.header_timeout = Duration::from_millis(600);
        c.connections.io_timeout = Duration::from_millis(400);
    });
    // Stops after one header line.
    let started = Instant::now();
    let r = exchange(t.addr, b"GET /ping HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].0, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Trickles a byte every 100 ms: each read is quick, the head deadline still applies.
    let mut s = connect(t.addr);
    let trickle = std::thread::spawn({
        let mut s = s.try_clone().unwrap();
        move || {
            for b in b"GET /ping HTTP/1.1\r\nX-Slow: "
                .iter()
                .chain([b'a'; 100].iter())
            {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                // The trickle's pace, not a wait: one byte every 100 ms.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    let r = parse_responses(&read_to_close(&mut s));
    assert_eq!(r.first().map(|r| r.0), Some(408), "{r:?}");
    trickle.join().unwrap();
    assert!(stats(&t).timed_out >= 2, "{:?}", stats(&t));
    assert_serves(&t);
}

#[test]
fn a_body_shorter_than_its_length_gets_408_or_a_close() {
    let t = server(|c| {
        c.connections.body_timeout = Duration::from_millis(800);
        c.connections.io_timeout = Duration::from_millis(400);
    });
    let head = b"POST /update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":";
    // The client waits: 408 after the body deadline.
    let r = exchange(t.addr, head);
    assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), [408]);
    // The client gives up sending: the connection closes, nothing reaches a worker.
    let mut s = connect(t.addr);
    s.write_all(head).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let r = parse_responses(&read_to_close(&mut s));
    assert!(r.iter().all(|r| r.0 >= 400), "{r:?}");
    assert_serves(&t);
    assert_eq!(t.client().get("/value/gauge/").status, 404);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let t = server(|_| {});
    let mut pipeline = Vec::new();
    for i in 1..=5 {
        pipeline.extend_from_slice(
            format!(
                "POST /update/gauge/p/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET /value/gauge/p HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    pipeline.extend_from_slice(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = exchange(t.addr, &pipeline);
    let mut expected = Vec::new();
    for i in 1..=5 {
        expected.push((200, "ok".to_owned()));
        expected.push((200, i.to_string()));
    }
    expected.push((200, "ok".to_owned()));
    assert_eq!(r, expected);
}

fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn chunked_bodies_work_and_over_limit_gets_413() {
    let t = server(|c| c.limits.max_body = 1024);
    let body =
        br#"[{"id":"ch","type":"counter","delta":5},{"id":"cg","type":"gauge","value":2.5}]"#;
    let mut req =
        b"POST /updates HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend(chunked(body, 7));
    // Keep-alive still works after a chunked body: a second request on the same connection.
    req.extend_from_slice(
        b"GET /value/counter/ch HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let r = exchange(t.addr, &req);
    assert_eq!(
        r,
        [(200, r#"{"updated":2}"#.to_owned()), (200, "5".to_owned())]
    );

    let big = format!(
        "[{}]",
        vec![r#"{"id":"x","type":"counter","delta":1}"#; 60].join(",")
    );
    assert!(big.len() > 1024);
    let mut req =
        b"POST /updates HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend(chunked(big.as_bytes(), 100));
    req.extend_from_slice(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = exchange(t.addr, &req);
    assert_eq!(r.len(), 1, "the connection closes after the 413: {r:?}");
    assert_eq!(r[0].0, 413, "{r:?}");

    // A declared length over the limit is refused without reading the body.
    let r = exchange(
        t.addr,
        b"POST /updates HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n[",
    );
    assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), [413]);
    // Broken chunk framing.
    let r = exchange(
        t.addr,
        b"POST /updates HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n[]\r\n0\r\n\r\n",
    );
    assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), [400]);
    assert_eq!(t.client().get("/value/counter/x").status, 404);
    assert_serves(&t);
}

#[test]
fn absurd_headers_get_431() {
    let t = server(|_| {});
    let long_line = format!(
        "GET /ping HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 << 10)
    );
    let many = format!(
        "GET /ping HTTP/1.1\r\n{}\r\n",
        (0..500)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let huge_head = format!(
        "GET /ping HTTP/1.1\r\n{}\r\n",
        (0..12)
            .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(7000)))
            .collect::<String>()
    );
    let long_path = format!("GET /{} HTTP/1.1\r\n\r\n", "p".repeat(20 << 10));
    for req in [long_line, many, huge_head, long_path] {
        let r = exchange(t.addr, req.as_bytes());
        assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), [431]);
    }
    assert_eq!(stats(&t).header_too_large, 4);
    assert_serves(&t);
}

#[test]
fn invalid_utf8_and_garbage_get_400() {
    let t = server(|_| {});
    for req in [
        &b"GET /value/gauge/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"POST /update/gauge/\xc3\x28/1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nX-Bin: \x80\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"NONSENSE\r\n\r\n",
        b"GET /ping HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /update HTTP/1.1\r\nContent-Length: ten\r\n\r\n0123456789",
    ] {
        let r = exchange(t.addr, req);
        assert_eq!(
            r.iter().map(|r| r.0).collect::<Vec<_>>(),
            [400],
            "{:?}",
            String::from_utf8_lossy(req)
        );
    }
    // Percent-encoded invalid UTF-8 reaches the router, which refuses it.
    let r = exchange(
        t.addr,
        b"POST /update/gauge/%FF%FE/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), [400]);
    assert_serves(&t);
}

#[test]
fn at_the_cap_idle_connections_make_room_and_busy_ones_refuse() {
    let t = server(|c| {
        c.connections.max_connections = 3;
        c.connections.header_timeout = Duration::from_secs(20);
    });
    // Three idle connections fill the cap; an ordinary request still gets in by evicting one.
    let mut idle: Vec<_> = (0..3).map(|_| connect(t.addr)).collect();
    eventually(Duration::from_secs(5), || {
        (stats(&t).current >= 3).then_some(())
    });
    let r = exchange(t.addr, b"GET /ping HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r, [(200, "ok".to_owned())]);
    assert!(stats(&t).evicted_idle >= 1, "{:?}", stats(&t));
    // The evicted connection (the oldest) was closed by the server.
    let mut buf = [0u8; 1];
    assert_eq!(idle[0].read(&mut buf).unwrap_or(0), 0);

    // Three connections in the middle of a request head are not idle: a newcomer gets 503.
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let mut s = connect(t.addr);
            s.write_all(b"GET /ping HTTP/1.1\r\n").unwrap();
            // Let the server read the first byte (leave the idle phase) before the next one.
            std::thread::sleep(Duration::from_millis(150));
            s
        })
        .collect();
    // The 503 is sent at once, before the newcomer says anything.
    let r = parse_responses(&read_to_close(&mut connect(t.addr)));
    assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), [503]);
    let s = stats(&t);
    assert!(s.refused >= 1 && s.current <= 3, "{s:?}");
    // Once they finish, the server serves again.
    for mut s in busy {
        s.write_all(b"Connection: close\r\n\r\n").unwrap();
        assert_eq!(parse_responses(&read_to_close(&mut s))[0].0, 200);
    }
    idle.clear();
    assert_serves(&t);
}

#[test]
fn an_exhausted_body_budget_gets_503() {
    let t = server(|c| {
        c.connections.body_buffer_budget = 1500;
        c.connections.body_timeout = Duration::from_millis(800);
    });
    // A slow body holds 1 000 bytes of the 1 500-byte budget while a 2 000-byte body waits for
    // its share: that one gets 503 when its deadline passes, the slow one 408 at its own.
    let mut slow = connect(t.addr);
    slow.write_all(b"POST /updates HTTP/1.1\r\nContent-Length: 1000\r\n\r\n[")
        .unwrap();
    // A deliberate gap, not a wait: the slow body is admitted (and holds its budget) first.
    std::thread::sleep(Duration::from_millis(100));
    let mut body = b"POST /updates HTTP/1.1\r\nContent-Length: 2000\r\n\r\n".to_vec();
    body.extend(std::iter::repeat_n(b' ', 2000));
    let r = exchange(t.addr, &body);
    assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), [503]);
    assert_eq!(stats(&t).budget_exhausted, 1);
    let r = parse_responses(&read_to_close(&mut slow));
    assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), [408]);
    assert_eq!(stats(&t).body_buffer_bytes, 0);
    assert_serves(&t);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let t = server(|_| {});
    let mut s = connect(t.addr);
    let body = br#"{"id":"e","type":"gauge","value":1}"#;
    s.write_all(
        format!(
            "POST /update HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body).unwrap();
    let r = parse_responses(&read_to_close(&mut s));
    assert_eq!(r.iter().map(|r| r.0).collect::<Vec<_>>(), [200]);
}

#[test]
fn the_cap_and_the_connection_count_are_in_metrics() {
    let t = server(|c| c.connections.max_connections = 7);
    let idle: Vec<TcpStream> = (0..3).map(|_| connect(t.addr)).collect();
    // The idle connections are registered once accepted; wait for that, boundedly.
    eventually(Duration::from_secs(10), || {
        (stats(&t).current >= 3).then_some(())
    });
    let metrics = t.client().get("/metrics").text();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{metrics}"))
    };
    assert_eq!(value("golectra_connections_max"), 7.0);
    let open = value("golectra_connections_open");
    assert!((4.0..=7.0).contains(&open), "3 idle + this scrape: {open}");
    assert!(value("golectra_connections_accepted_total") >= 4.0);
    assert!(metrics.contains("golectra_requests_rejected_total{reason=\"timeout\"}"));
    drop(idle);
}
