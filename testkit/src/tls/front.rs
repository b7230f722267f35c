//! A TLS terminator for tests: it accepts TLS connections on 127.0.0.1 with a test identity
//! (rustls, ring provider), optionally requires a client certificate signed by a test CA, and
//! forwards the plaintext both ways to a plain-HTTP upstream (the real server binary, or a
//! [`crate::Fake`]). Every handshake is recorded with its outcome and whether the client
//! presented a (verified) certificate. The identity can be switched at run time
//! ([`TlsFront::set_identity`]): later handshakes use the new one.
//!
//! A connection gets two threads (client → upstream, upstream → client) while it is open, and
//! at most [`MAX_CONNECTIONS`] are open at once; more are closed at accept. A handshake has
//! [`HANDSHAKE_TIMEOUT`]. After a failed handshake the alert is sent and the client's last
//! bytes are read before the socket closes, so the client reads the alert rather than a reset.
//! Dropping the front closes every connection and joins every thread.
//!
//! ```no_run
//! use golectra_testkit::{Fake, TestCa, TlsFront};
//! let ca = TestCa::new("test CA");
//! let upstream = Fake::start(|_, _| 200);
//! let front = TlsFront::start(&ca.server(&["localhost", "127.0.0.1"]), None, upstream.addr);
//! // A client trusting `ca` talks https to `front.url()`; `upstream` sees plain HTTP.
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use super::{Identity, TestCa};
use crate::served::{Served, Sockets};

/// Most connections open at once; more are closed at accept (and recorded as failed).
pub const MAX_CONNECTIONS: usize = 64;
/// Time allowed for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many handshakes are recorded.
pub const MAX_RECORDED: usize = 10_000;

/// Time allowed for one socket write to the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to connect to the upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection whose handshake failed is drained before it closes.
const LINGER: Duration = Duration::from_secs(1);

/// One TLS handshake the front took part in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// When it ended.
    pub at: Instant,
    /// Whether the client presented a certificate that verified against the client CA (a
    /// rejected certificate is `false`, with the reason in `error`).
    pub client_cert: bool,
    /// `None` when it succeeded, else why not, as rustls says it (`peer sent no
    /// certificates`, `received fatal alert: UnknownCA`, …).
    pub error: Option<String>,
}

impl Handshake {
    /// Whether the handshake succeeded.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// What the accept thread, the connection threads and the handle share.
struct Shared {
    config: Mutex<Arc<ServerConfig>>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    upstream: SocketAddr,
    handshakes: Mutex<Vec<Handshake>>,
    /// Every open socket (client and upstream sides), for `Drop` to shut down.
    sockets: Arc<Sockets>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn record(&self, client_cert: bool, error: Option<String>) {
        let mut handshakes = lock(&self.handshakes);
        if handshakes.len() < MAX_RECORDED {
            handshakes.push(Handshake {
                at: Instant::now(),
                client_cert,
                error,
            });
        }
    }
}

/// A TLS terminator on 127.0.0.1 in front of one plain-HTTP upstream (see the module docs).
pub struct TlsFront {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    served: Served,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The DER certificates of a PEM text.
fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

fn server_config(
    identity: &Identity,
    verifier: Option<&Arc<dyn ClientCertVerifier>>,
) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions of the ring provider");
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).expect("PEM key");
    Arc::new(
        builder
            .with_single_cert(certificates(&identity.cert_pem), key)
            .expect("a certificate and its key"),
    )
}

impl TlsFront {
    /// Listens on 127.0.0.1:0 with `identity`, requiring client certificates signed by
    /// `client_ca` when given, and forwards every connection to `upstream`.
    pub fn start(identity: &Identity, client_ca: Option<&TestCa>, upstream: SocketAddr) -> Self {
        let client_verifier = client_ca.map(|ca| {
            let mut roots = RootCertStore::empty();
            for cert in certificates(&ca.cert_pem()) {
                roots.add(cert).expect("the CA certificate");
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("a client verifier")
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TLS front");
        let addr = listener.local_addr().expect("the front's address");
        let sockets = Arc::new(Sockets::default());
        let shared = Arc::new(Shared {
            config: Mutex::new(server_config(identity, client_verifier.as_ref())),
            client_verifier,
            upstream,
            handshakes: Mutex::new(Vec::new()),
            sockets: sockets.clone(),
        });
        let served = Served::start(
            listener,
            "tls-front",
            sockets,
            {
                let shared = shared.clone();
                move |sockets| {
                    let room = sockets.active() < MAX_CONNECTIONS;
                    if !room {
                        shared.record(false, Some("refused: too many connections".into()));
                    }
                    room
                }
            },
            {
                let shared = shared.clone();
                move |id, stream| serve(id, stream, &shared)
            },
        );
        Self {
            addr,
            shared,
            served,
        }
    }

    /// `https://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `https://localhost:PORT`: the same front under a DNS name.
    pub fn localhost_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Later handshakes present `identity` (open connections keep theirs).
    pub fn set_identity(&self, identity: &Identity) {
        *lock(&self.shared.config) = server_config(identity, self.shared.client_verifier.as_ref());
    }

    /// Every handshake so far (up to `MAX_RECORDED`, 10 000), in the order they ended.
    pub fn handshakes(&self) -> Vec<Handshake> {
        lock(&self.shared.handshakes).clone()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.served.stop(|| {});
    }
}

/// Completes the handshake on `tcp`, then flushes what rustls still has to send.
fn handshake(conn: &mut ServerConnection, mut tcp: &TcpStream) -> io::Result<()> {
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    while conn.wants_write() {
        conn.write_tls(&mut tcp)?;
    }
    Ok(())
}

/// After a failed handshake (the alert is written): ends the write side and reads what the
/// client still sends, so that closing does not reset the connection before the client has
/// read the alert.
fn linger(mut tcp: &TcpStream) {
    let _ = tcp.shutdown(Shutdown::Write);
    let _ = tcp.set_read_timeout(Some(LINGER));
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match tcp.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Serves one client connection: handshake, then plaintext both ways until either side ends.
fn serve(id: u64, tcp: TcpStream, shared: &Shared) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(WRITE_TIMEOUT));
    let config = lock(&shared.config).clone();
    let mut conn = match ServerConnection::new(config) {
        Ok(conn) => conn,
        Err(e) => {
            shared.record(false, Some(e.to_string()));
            return;
        }
    };
    if let Err(e) = handshake(&mut conn, &tcp) {
        let client_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
        shared.record(client_cert, Some(e.to_string()));
        linger(&tcp);
        return;
    }
    shared.record(
        conn.peer_certificates().is_some_and(|c| !c.is_empty()),
        None,
    );
    let _ = tcp.set_read_timeout(None);
    let Ok(upstream) = TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT) else {
        conn.send_close_notify();
        let _ = conn.write_tls(&mut &tcp);
        return;
    };
    if !shared.sockets.register(id, &upstream) {
        return;
    }
    let conn = Arc::new(Mutex::new(conn));
    let back = std::thread::Builder::new()
        .name(format!("tls-front-{id}-back"))
        .spawn({
            let (conn, tcp, upstream) = (conn.clone(), tcp.try_clone(), upstream.try_clone());
            move || {
                if let (Ok(tcp), Ok(upstream)) = (tcp, upstream) {
                    upstream_to_client(&conn, &tcp, &upstream);
                }
            }
        });
    client_to_upstream(&conn, &tcp, &upstream);
    let _ = upstream.shutdown(Shutdown::Both);
    if let Ok(back) = back {
        let _ = back.join();
    }
    let _ = tcp.shutdown(Shutdown::Both);
}

/// Decrypts what the client sends and writes the plaintext to the upstream, until the client
/// closes (or sends `close_notify`) or either side fails. The handshake's last read may already
/// have brought the first request: what rustls holds is forwarded before reading more.
fn client_to_upstream(conn: &Mutex<ServerConnection>, tcp: &TcpStream, mut upstream: &TcpStream) {
    let mut raw = vec![0u8; 16 << 10];
    let mut plain = Vec::new();
    let mut ended = drain(&mut lock(conn), &mut plain);
    loop {
        if !plain.is_empty() && upstream.write_all(&plain).is_err() {
            return;
        }
        plain.clear();
        if ended {
            return;
        }
        let n = match (&*tcp).read(&mut raw) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut conn = lock(conn);
        let mut input = &raw[..n];
        while !input.is_empty() && !ended {
            if conn.read_tls(&mut input).is_err() {
                ended = true;
            } else if conn.process_new_packets().is_err() {
                let _ = conn.write_tls(&mut &*tcp);
                ended = true;
            } else {
                ended = drain(&mut conn, &mut plain);
            }
        }
        while conn.wants_write() {
            if conn.write_tls(&mut &*tcp).is_err() {
                ended = true;
                break;
            }
        }
    }
}

/// Moves the plaintext rustls holds into `plain`; `true` when the client has ended the
/// connection (`close_notify`) or the stream broke.
fn drain(conn: &mut ServerConnection, plain: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    loop {
        match conn.reader().read(&mut chunk) {
            Ok(0) => return true,
            Ok(k) => plain.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Encrypts what the upstream answers and writes it to the client; when the upstream closes,
/// sends `close_notify` and ends the client's write side.
fn upstream_to_client(conn: &Mutex<ServerConnection>, tcp: &TcpStream, mut upstream: &TcpStream) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match upstream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut conn = lock(conn);
        if conn.writer().write_all(&buf[..n]).is_err() {
            break;
        }
        while conn.wants_write() {
            if conn.write_tls(&mut &*tcp).is_err() {
                return;
            }
        }
    }
    let mut conn = lock(conn);
    conn.send_close_notify();
    while conn.wants_write() {
        if conn.write_tls(&mut &*tcp).is_err() {
            break;
        }
    }
    let _ = tcp.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests;
