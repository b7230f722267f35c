//! The proxy against a tiny upstream, one test per fault.

use std::thread::JoinHandle;

use super::*;

/// `(path, body)` of every request an [`Upstream`] got.
type Got = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A tiny upstream: answers `ok <n>: <body>` to the n-th request (0-based), chunked for
/// paths starting `/chunked`, 300 ms late for paths starting `/slow`, and records what it got.
struct Upstream {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    got: Got,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = server.server_addr().to_ip().unwrap();
        let got = Got::default();
        let thread = std::thread::spawn({
            let (server, got) = (server.clone(), got.clone());
            move || {
                for mut request in server.incoming_requests() {
                    let mut body = Vec::new();
                    request.as_reader().read_to_end(&mut body).unwrap();
                    let path = request.url().to_owned();
                    let n = {
                        let mut got = got.lock().unwrap();
                        got.push((path.clone(), body.clone()));
                        got.len() - 1
                    };
                    if path.starts_with("/slow") {
                        std::thread::sleep(Duration::from_millis(300));
                    }
                    let text = format!("ok {n}: {}", String::from_utf8_lossy(&body));
                    let length = (!path.starts_with("/chunked")).then_some(text.len());
                    let response = tiny_http::Response::new(
                        tiny_http::StatusCode(200),
                        vec![],
                        std::io::Cursor::new(text.into_bytes()),
                        length,
                        None,
                    );
                    let _ = request.respond(response);
                }
            }
        });
        Self {
            server,
            addr,
            got,
            thread: Some(thread),
        }
    }

    fn got(&self) -> Vec<(String, Vec<u8>)> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A raw keep-alive client connection.
fn connect(proxy: &FaultProxy) -> Peer {
    let stream = TcpStream::connect(proxy.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    Peer::new(stream)
}

fn post(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` and reads the response; `None` when the connection ends instead.
fn exchange(peer: &mut Peer, request: &[u8]) -> Option<Message> {
    peer.stream.write_all(request).ok()?;
    peer.read_response("POST").ok()
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

#[test]
fn none_forwards_keep_alive_exchanges_both_ways() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(up.addr);
    let mut c = connect(&proxy);
    let r = exchange(&mut c, &post("/a", "one")).expect("a response");
    assert_eq!((r.status, text(&r)), (200, "ok 0: one".to_owned()));
    // A chunked request, and a chunked response, on the same connection.
    c.stream
        .write_all(
            b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\ntwo\r\n4\r\n two\r\n0\r\n\r\n",
        )
        .unwrap();
    let r = c.read_response("POST").expect("a chunked response");
    assert_eq!(text(&r), "ok 1: two two");
    assert!(
        r.raw.ends_with(b"0\r\n\r\n"),
        "still chunked for the client"
    );
    let r = exchange(&mut c, &post("/c", "three")).expect("a response");
    assert_eq!(text(&r), "ok 2: three");
    let counts = proxy.counts();
    assert_eq!((counts.accepted, counts.forwarded), (1, 3), "{counts:?}");
    let seen = proxy.exchanges();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].path, "/chunked");
    assert_eq!(seen[1].body, b"two two");
    assert_eq!(seen[1].header("transfer-encoding"), Some("chunked"));
    assert!(seen.iter().all(Exchange::acknowledged));
    assert_eq!(up.got().len(), 3);
}

#[test]
fn delay_response_forwards_at_once_and_answers_late() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(up.addr);
    let mut c = connect(&proxy);
    proxy.set(Fault::DelayResponse(Duration::from_millis(400)));
    let started = Instant::now();
    c.stream.write_all(&post("/slow", "x")).unwrap();
    // The upstream has the request long before the client has the answer.
    eventually_true(|| up.got().len() == 1);
    assert!(started.elapsed() < Duration::from_millis(400));
    let r = c.read_response("POST").expect("the late response");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(text(&r), "ok 0: x");
    proxy.set(Fault::None);
    let started = Instant::now();
    let r = exchange(&mut c, &post("/fast", "y")).expect("a response");
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(text(&r), "ok 1: y");
    assert_eq!(proxy.counts().delayed, 1);
    assert_eq!(
        proxy.exchanges()[0].fault,
        Fault::DelayResponse(Duration::from_millis(400))
    );
    assert!(!proxy.exchanges()[0].acknowledged());
}

#[test]
fn drop_response_closes_after_the_upstream_answered() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(up.addr);
    let mut c = connect(&proxy);
    assert!(exchange(&mut c, &post("/a", "before")).is_some());
    proxy.set(Fault::DropResponse);
    assert!(exchange(&mut c, &post("/a", "lost")).is_none());
    assert_eq!(c.buf, b"", "not one byte of the response");
    assert_eq!(up.got()[1].1, b"lost", "the upstream got it");
    proxy.set(Fault::None);
    let mut c = connect(&proxy);
    let r = exchange(&mut c, &post("/a", "after")).expect("a response");
    assert_eq!(text(&r), "ok 2: after");
    let counts = proxy.counts();
    assert_eq!((counts.dropped, counts.forwarded), (1, 3), "{counts:?}");
    let seen = proxy.exchanges();
    assert_eq!(seen[1].fault, Fault::DropResponse);
    assert_eq!(seen[1].status, Some(200));
}

#[test]
fn answer_503_replaces_the_applied_response_and_closes() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(up.addr);
    let mut c = connect(&proxy);
    proxy.set(Fault::Answer503);
    let r = exchange(&mut c, &post("/w", "applied")).expect("the 503");
    assert_eq!(r.status, 503);
    assert_eq!(text(&r), REPLACED_BODY);
    assert_eq!(crate::http::header(&r.headers, "connection"), Some("close"));
    assert_eq!(
        crate::http::header(&r.headers, "content-length"),
        Some(REPLACED_BODY.len().to_string().as_str())
    );
    assert_eq!(c.fill().unwrap_or(0), 0, "closed after the 503");
    assert_eq!(up.got(), [("/w".to_owned(), b"applied".to_vec())]);
    assert_eq!(proxy.counts().rewritten, 1);
    assert_eq!(proxy.exchanges()[0].status, Some(200));
}

#[test]
fn refuse_closes_new_and_open_connections_without_forwarding() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(up.addr);
    let mut open = connect(&proxy);
    assert!(exchange(&mut open, &post("/a", "1")).is_some());
    proxy.set(Fault::Refuse);
    let mut fresh = connect(&proxy);
    assert!(exchange(&mut fresh, &post("/a", "2")).is_none());
    assert!(exchange(&mut open, &post("/a", "3")).is_none());
    assert_eq!(up.got().len(), 1, "nothing reached the upstream");
    let counts = proxy.counts();
    assert_eq!((counts.refused, counts.forwarded), (2, 1), "{counts:?}");
    assert_eq!(proxy.exchanges()[1].fault, Fault::Refuse);
    assert_eq!(proxy.exchanges()[1].status, None);
    assert_eq!(proxy.exchanges()[1].answered_in, None);
    proxy.set(Fault::None);
    let mut c = connect(&proxy);
    assert_eq!(
        text(&exchange(&mut c, &post("/a", "4")).unwrap()),
        "ok 1: 4"
    );
}

#[test]
fn set_for_spoils_that_many_exchanges_then_heals() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(up.addr);
    proxy.set_for(Fault::Answer503, 2);
    let statuses: Vec<u16> = (0..4)
        .map(|i| {
            let mut c = connect(&proxy);
            exchange(&mut c, &post("/s", &i.to_string()))
                .unwrap()
                .status
        })
        .collect();
    assert_eq!(statuses, [503, 503, 200, 200]);
    assert_eq!(proxy.fault(), Fault::None);
    assert_eq!(up.got().len(), 4);
}

#[test]
fn an_unreachable_upstream_closes_the_client_and_a_new_one_is_used() {
    let up = Upstream::start();
    let gone = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = FaultProxy::start(gone);
    let mut c = connect(&proxy);
    assert!(exchange(&mut c, &post("/a", "x")).is_none());
    assert_eq!(proxy.counts().upstream_errors, 1);
    proxy.set_upstream(up.addr);
    let mut c = connect(&proxy);
    assert_eq!(
        text(&exchange(&mut c, &post("/a", "y")).unwrap()),
        "ok 0: y"
    );
}

#[test]
fn dropping_the_proxy_closes_everything_and_ends_delays() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(up.addr);
    let addr = proxy.addr;
    let mut idle = connect(&proxy);
    assert!(exchange(&mut idle, &post("/a", "1")).is_some());
    proxy.set(Fault::DelayResponse(Duration::from_secs(60)));
    let mut waiting = connect(&proxy);
    waiting.stream.write_all(&post("/a", "2")).unwrap();
    eventually_true(|| proxy.counts().delayed == 1);
    let started = Instant::now();
    drop(proxy);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a delay held the drop"
    );
    assert_eq!(idle.fill().unwrap_or(0), 0);
    assert_eq!(waiting.fill().unwrap_or(0), 0);
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
}

fn eventually_true(mut probe: impl FnMut() -> bool) {
    crate::eventually(Duration::from_secs(10), || probe().then_some(()))
        .expect("condition within 10 s");
}

#[test]
fn each_exchange_records_how_long_the_upstream_took() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(up.addr);
    let mut c = connect(&proxy);
    assert!(exchange(&mut c, &post("/fast", "1")).is_some());
    assert!(exchange(&mut c, &post("/slow", "2")).is_some());
    let seen = proxy.exchanges();
    let took: Vec<Duration> = seen.iter().map(|e| e.answered_in.unwrap()).collect();
    assert!(took[0] < Duration::from_millis(300), "{took:?}");
    assert!(took[1] >= Duration::from_millis(300), "{took:?}");
}
