//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

// The reactor is built on epoll (through rustix); there is no other back end.
#[cfg(not(target_os = "linux"))]
compile_error!("Golectra's HTTP engine runs on Linux only: its reactor is built on epoll");

use std::error::Error;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;

use connection::Connection;
use reactor::Reactor;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use conn::fuzzing::{
    decode_chunked_for_fuzzing, dispatch_requests_for_fuzzing, drive_connection_for_fuzzing,
    parse_head_for_fuzzing, DispatchedForFuzzing, DrivenForFuzzing,
};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
// golectra: the connection policy, its counters and the refusal signer.
pub use policy::{ConnectionPolicy, ConnectionStats, RefusalSigner, SignFn};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;
// golectra: TLS on the listener (rustls, driven by the reactor).
pub use tls::TlsAcceptor;

mod common;
mod conn;
mod connection;
mod gate;
mod policy;
mod reactor;
mod request;
mod response;
mod test;
mod tls;
mod util;

/// The main class of this library.
///
/// golectra: connections are driven by the threads that call [`Server::recv`] (see
/// `reactor.rs`). Destroying this object closes the listening socket and every connection that
/// is not waiting for the answer to a request already returned by `recv()`; those are answered,
/// then closed.
pub struct Server {
    reactor: Arc<Reactor>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
#[allow(dead_code)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    ///
    /// golectra: serves with the default [`ConnectionPolicy`]; TLS is not available in this
    /// vendored copy.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        if ssl_config.is_some() {
            return Err("TLS is not supported by this build of tiny_http".into());
        }
        Self::from_listener_with_policy(listener, ConnectionPolicy::default())
    }

    /// golectra: builds a server on `listener` that enforces `policy`: at most
    /// `max_connections` connections (an idle connection is evicted for a newcomer,
    /// else the newcomer gets `503`), per-phase deadlines (`408`), head limits (`431`), and
    /// bodies read completely before [`Server::recv`] returns their request.
    pub fn from_listener_with_policy<L: Into<Listener>>(
        listener: L,
        policy: ConnectionPolicy,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        let local_addr = listener.local_addr()?;
        log::debug!("Server listening on {}", local_addr);
        let reactor = Reactor::new(policy)?;
        let accepting = reactor.clone();
        thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accepting.accept_loop(listener))?;
        let timing = reactor.clone();
        thread::Builder::new()
            .name("http-timer".into())
            .spawn(move || timing.timer_loop())?;
        Ok(Server {
            reactor,
            listening_addr: local_addr,
        })
    }

    /// golectra: the connection counters (current, cap, accepted, refused, evicted, 408, 431…).
    pub fn connection_stats(&self) -> ConnectionStats {
        self.reactor.stats()
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        // golectra: implemented by the connection registry (upstream panicked here).
        self.reactor.stats().current
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    ///
    /// golectra: the calling thread drives connections while it waits (see `reactor.rs`).
    pub fn recv(&self) -> IoResult<Request> {
        self.reactor.recv()
    }

    /// golectra: runs `f`, which may block for a while (a synchronous store, a database), after
    /// giving this thread's polling slot to another worker so connections keep being served.
    pub fn blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        self.reactor.blocking(f)
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.reactor.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // golectra: connections end now; requests in flight are still answered.
        self.reactor.shut_down();
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
