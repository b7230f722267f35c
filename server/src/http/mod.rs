//! The HTTP front of the server: a tiny_http listener (vendored, see
//! `vendor/tiny_http/PATCHES.md`) and a **fixed** pool of worker threads that drive the
//! connections themselves. Slow or hostile clients cost a buffer, never a thread or a worker:
//!
//! 1. **Accept** (thread `http-accept`): under `MAX_CONNECTIONS_PER_PEER` for its address and
//!    `MAX_CONNECTIONS` in all, a connection is admitted into one epoll set, non-blocking. At a
//!    cap an idle connection (of that address, at its cap) is closed to make room (one that
//!    never sent a request first, else the one idle the longest); if none is idle the newcomer
//!    gets a `503` with `Retry-After: 1` and `Connection: close`.
//! 2. **Fixed workers** (`http-worker-N`) wait on the epoll set in [`tiny_http::Server::recv`]
//!    (at most one poller per CPU; the others park). The worker woken by a ready connection
//!    reads what arrived, parses the head within the head limits (`431`, `400`), answers
//!    `Expect: 100-continue`, collects the body within `MAX_BODY_SIZE`, the global
//!    `BODY_BUFFER_BUDGET` and its address's `MAX_BUFFERED_PER_PEER` (a body holds what it sent,
//!    not what it declared; a larger declared length is not read at all), re-arms the
//!    connection and goes back to waiting until some connection holds a complete request.
//! 3. The worker then serves it (`worker.rs`): [`request::intake`] (check the size, inflate,
//!    verify the signature) → [`router::route`] under `catch_unwind` (a panic becomes a 500 and
//!    the worker lives on) → encode the [`reply::Reply`] (gzip, signature) → one access-log
//!    line. The reply goes out at once, or — when the write it acknowledges returned a
//!    durability ticket ([`crate::store::Durable::After`], sync mode) — the ticket gets it and
//!    the snapshot thread sends it after the fsync, without the worker. A PostgreSQL store is
//!    called inside [`tiny_http::Server::blocking`], which hands the worker's polling slot to a
//!    parked worker while the call waits on the network, and only by a worker holding one of
//!    the [`crate::store_slots::StoreSlots`] (one fewer than the workers; when all have waited on the
//!    database for over 5 s: `503` at once), so one worker always answers `/ping`.
//! 4. **Respond**: the same worker writes the response without blocking; what the socket does
//!    not take is finished by whichever worker next sees the connection writable, so a client
//!    that does not read holds no worker. Pipelined requests are answered in order.
//! 5. **Deadlines** (thread `http-timer`): `IDLE_TIMEOUT` (silent close), `HEADER_TIMEOUT`,
//!    `BODY_TIMEOUT` and `MIN_BODY_RATE` (`408`), `IO_TIMEOUT` between reads or writes of a
//!    request in progress, the body budget wait (`503`).
//!
//! With a key, every refusal the engine writes itself carries `HashSHA256`, signed as replies
//! are ([`reply::refusal_signer`]). Counters of this pipeline (open connections, caps,
//! evictions, refusals, 408s, 431s) are available from [`HttpServer::connection_stats`].
//!
//! Shutdown: [`HttpServer::shutdown`] makes each worker's next `recv` fail; a worker finishes
//! the request in its hands first.

pub mod dashboard;
pub mod deletes;
pub mod metrics;
pub mod reply;
pub mod request;
pub mod router;
pub mod selection;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app::App;
use crate::config::{Connections, Limits};

/// The listener and its worker pool.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    addr: SocketAddr,
}

impl HttpServer {
    /// Binds `listen` and starts `workers` worker threads behind the connection policy.
    pub fn start(
        listen: SocketAddr,
        workers: usize,
        connections: &Connections,
        tls: Option<Arc<tiny_http::TlsAcceptor>>,
        app: Arc<App>,
    ) -> std::io::Result<Self> {
        let listener = bind(listen)?;
        let addr = listener.local_addr()?;
        let server = tiny_http::Server::from_listener_with_policy(
            listener,
            tiny_http::ConnectionPolicy {
                tls,
                ..policy(connections, &app.limits, app.key.as_deref())
            },
        )
        .map_err(|e| std::io::Error::other(format!("cannot start the HTTP server: {e}")))?;
        let server = Arc::new(server);
        let _ = app.listener.set(server.clone());
        let workers = (0..workers)
            .map(|i| {
                let server = server.clone();
                let app = app.clone();
                std::thread::Builder::new()
                    .name(format!("http-worker-{i}"))
                    .spawn(move || worker::run(&server, &app))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            server,
            workers,
            addr,
        })
    }

    /// The address the listener is bound to (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connection counters for monitoring: open connections, the cap, accepted, refused over
    /// the cap (the server's or an address's), idle connections evicted, 408s (deadlines and
    /// `MIN_BODY_RATE`), 431s, 400s before dispatch, 503s for budget, buffered body bytes.
    pub fn connection_stats(&self) -> tiny_http::ConnectionStats {
        self.server.connection_stats()
    }

    /// Stops the workers after they answered every request already received.
    pub fn shutdown(self) {
        for _ in &self.workers {
            self.server.unblock();
        }
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

/// Pending connections the kernel may queue before accept. std's `bind` asks for 128, which a
/// burst of connects overflows while the accept thread evicts and spawns; the kernel caps it at
/// `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

/// Binds the listening socket (with `SO_REUSEADDR`, as std does, and a deep backlog).
fn bind(listen: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(listen), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&listen.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The connection policy for the configured limits. Head limits are fixed: 8 KiB per line,
/// 100 header fields, 64 KiB per head — far above what agents and browsers send; so is the
/// 5 s grace before `MIN_BODY_RATE` applies. With a key, the engine's own refusals are signed.
fn policy(
    connections: &Connections,
    limits: &Limits,
    key: Option<&[u8]>,
) -> tiny_http::ConnectionPolicy {
    tiny_http::ConnectionPolicy {
        max_connections: connections.max_connections,
        idle_timeout: connections.idle_timeout,
        header_timeout: connections.header_timeout,
        body_timeout: connections.body_timeout,
        io_timeout: connections.io_timeout,
        max_header_line: 8 << 10,
        max_header_count: 100,
        max_head_bytes: 64 << 10,
        prefetch_limit: limits.max_body,
        prefetch_budget: connections.body_buffer_budget,
        tls: None,
        min_body_rate: connections.min_body_rate,
        body_rate_grace: Duration::from_secs(5),
        max_connections_per_peer: connections.max_connections_per_peer,
        max_buffered_per_peer: connections.max_buffered_per_peer,
        refusal_signer: reply::refusal_signer(key),
    }
}
