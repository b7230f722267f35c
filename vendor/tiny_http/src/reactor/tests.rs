//! golectra: the reactor over real sockets — rules that need the workers, the timer and the
//! kernel's socket buffers together, which the state machine's tests (`conn/tests.rs`) cannot
//! show.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{ConnectionPolicy, Response, Server};

/// How long the handler of `/busy` holds the only worker.
const BUSY: Duration = Duration::from_millis(1500);

/// A deadline far shorter than [`BUSY`].
const SHORT: Duration = Duration::from_millis(300);

/// A server with one worker: `/busy` holds it for [`BUSY`], anything else answers its body.
fn one_worker(policy: ConnectionPolicy) -> (Arc<Server>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Arc::new(Server::from_listener_with_policy(listener, policy).unwrap());
    let worker = {
        let server = server.clone();
        std::thread::spawn(move || {
            while let Ok(mut request) = server.recv() {
                if request.url() == "/busy" {
                    std::thread::sleep(BUSY);
                }
                let mut body = String::new();
                request.as_reader().read_to_string(&mut body).unwrap();
                request.respond(Response::from_string(body)).unwrap();
            }
        })
    };
    (server, worker)
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.server_addr().to_ip().unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// The status line and the body of the one response on `s` (which the server closes after it).
fn answer(s: &mut TcpStream) -> String {
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.lines().next().unwrap_or_default().to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    format!("{status} / {body}")
}

/// Client A sends `first`, the only worker reads it; then client B's request takes the worker
/// for [`BUSY`], and A sends `rest` at once — bytes no worker can read before A's deadline
/// passes. A must be served all the same: it sent everything in time.
fn served_while_every_worker_was_busy(policy: ConnectionPolicy, first: &str, rest: &str) {
    let (server, worker) = one_worker(policy);
    let mut a = connect(&server);
    a.write_all(first.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut b = connect(&server);
    b.write_all(b"GET /busy HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    a.write_all(rest.as_bytes()).unwrap();
    assert_eq!(answer(&mut a), "HTTP/1.1 200 OK / hello");
    assert_eq!(answer(&mut b), "HTTP/1.1 200 OK / ");
    assert_eq!(server.connection_stats().timed_out, 0);
    assert_eq!(server.connection_stats().too_slow, 0);
    server.unblock();
    worker.join().unwrap();
}

#[test]
fn a_body_that_came_while_every_worker_was_busy_is_not_judged_slow() {
    let policy = ConnectionPolicy {
        min_body_rate: 1 << 10,
        body_rate_grace: SHORT,
        ..Default::default()
    };
    let head = "POST /a HTTP/1.1\r\nConnection: close\r\nContent-Length: 5\r\n\r\n";
    served_while_every_worker_was_busy(policy, head, "hello");
}

#[test]
fn a_head_that_came_while_every_worker_was_busy_gets_no_408() {
    let policy = ConnectionPolicy {
        header_timeout: SHORT,
        io_timeout: SHORT,
        ..Default::default()
    };
    let rest = "Connection: close\r\nContent-Length: 5\r\n\r\nhello";
    served_while_every_worker_was_busy(policy, "POST /a HTTP/1.1\r\n", rest);
}

#[test]
fn a_body_that_stops_coming_still_gets_408_while_workers_are_free() {
    let policy = ConnectionPolicy {
        min_body_rate: 1 << 10,
        body_rate_grace: SHORT,
        ..Default::default()
    };
    let (server, worker) = one_worker(policy);
    let mut a = connect(&server);
    a.write_all(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel")
        .unwrap();
    let text = answer(&mut a);
    assert!(text.starts_with("HTTP/1.1 408 "), "{}", text);
    assert_eq!(server.connection_stats().too_slow, 1);
    server.unblock();
    worker.join().unwrap();
}
