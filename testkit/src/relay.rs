//! A plain TCP relay: every connection accepted on its listener is joined byte for byte to a
//! new connection to the upstream (PostgreSQL, say), in both directions, until either side
//! ends. Unlike the HTTP-aware [`FaultProxy`](crate::FaultProxy) it knows no protocol.
//!
//! Its use is to carry traffic across network namespaces: the listener may be bound inside a
//! [`PrivateNetwork`](crate::netns::PrivateNetwork) while the relay's threads (and so its
//! upstream connections) stay where the relay was started, so a server in the namespace reaches
//! a database outside it, over a path where the test can make the kernel drop packets.
//!
//! Two threads per connection and one accept thread; dropping the relay shuts every socket
//! down and joins them all.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Time allowed to open a connection to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the accept thread looks for a stop (its listener is non-blocking).
const ACCEPT_POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Shared {
    stopped: AtomicBool,
    /// Every socket opened, to shut down on drop.
    sockets: Mutex<Vec<TcpStream>>,
    /// Every pump thread, to join on drop.
    pumps: Mutex<Vec<JoinHandle<()>>>,
}

/// A running relay.
pub struct TcpRelay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TcpRelay {
    /// Relays every connection accepted on `listener` to `upstream`.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> Self {
        let addr = listener.local_addr().expect("the listener's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let shared = Arc::new(Shared::default());
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("tcp-relay-accept".into())
                .spawn(move || accept_loop(&listener, upstream, &shared))
                .expect("spawn the relay's accept thread")
        };
        Self {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Where the relay listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn accept_loop(listener: &TcpListener, upstream: SocketAddr, shared: &Arc<Shared>) {
    while !shared.stopped.load(Ordering::Acquire) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(_) => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect_timeout(&upstream, CONNECT_TIMEOUT) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let clones = [&client, &server].map(|s| s.try_clone());
        let [Ok(client2), Ok(server2)] = clones else {
            continue;
        };
        {
            let mut sockets = shared.sockets.lock().unwrap();
            for s in [&client, &server] {
                if let Ok(s) = s.try_clone() {
                    sockets.push(s);
                }
            }
        }
        let mut pumps = shared.pumps.lock().unwrap();
        for (from, to) in [(client, server), (server2, client2)] {
            if let Ok(pump) = std::thread::Builder::new()
                .name("tcp-relay-pump".into())
                .spawn(move || pump(from, to))
            {
                pumps.push(pump);
            }
        }
    }
}

/// Copies `from` to `to` until `from` ends or either fails, then passes the end on.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for socket in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let pumps: Vec<_> = self.shared.pumps.lock().unwrap().drain(..).collect();
        for pump in pumps {
            let _ = pump.join();
        }
    }
}
