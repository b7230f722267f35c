//! The HTTP front of the server: a tiny_http listener (vendored, see
//! `vendor/tiny_http/PATCHES.md`) and a **fixed** pool of worker threads that drive the
//! connections themselves. Slow or hostile clients cost a buffer, never a thread or a worker:
//!
//! 1. **Accept** (thread `http-accept`): under `MAX_CONNECTIONS` a connection is admitted into
//!    one epoll set, non-blocking. At the cap an idle connection is closed to make room (one
//!    that never sent a request first, else the one idle the longest); if none is idle the
//!    newcomer gets a `503` with `Connection: close`.
//! 2. **Fixed workers** (`http-worker-N`) wait on the epoll set in [`tiny_http::Server::recv`]
//!    (at most one poller per CPU; the others park). The worker woken by a ready connection
//!    reads what arrived, parses the head within the head limits (`431`, `400`), answers
//!    `Expect: 100-continue`, collects the body within `MAX_BODY_SIZE` and the global
//!    `BODY_BUFFER_BUDGET` (a larger declared length is not read at all), re-arms the
//!    connection and goes back to waiting until some connection holds a complete request.
//! 3. The worker then serves it: [`request::intake`] (check the size, inflate, verify the
//!    signature) → [`router::route`] under `catch_unwind` (a panic becomes a 500 and the worker
//!    lives on) → encode the [`reply::Reply`] (gzip, signature) → one access-log line. A store
//!    that may block (PostgreSQL) is called inside [`tiny_http::Server::blocking`], which hands
//!    the worker's polling slot to a parked worker meanwhile. In sync mode the answer to a write
//!    waits for its snapshot without the worker: the snapshot thread sends it
//!    ([`crate::store::Store::when_durable`]).
//! 4. **Respond**: the same worker writes the response without blocking; what the socket does
//!    not take is finished by whichever worker next sees the connection writable, so a client
//!    that does not read holds no worker. Pipelined requests are answered in order.
//! 5. **Deadlines** (thread `http-timer`): `IDLE_TIMEOUT` (silent close), `HEADER_TIMEOUT` and
//!    `BODY_TIMEOUT` (`408`), `IO_TIMEOUT` between reads or writes of a request in progress,
//!    the body budget wait (`503`).
//!
//! Counters of this pipeline (open connections, cap, evictions, refusals, 408s, 431s) are
//! available from [`HttpServer::connection_stats`].
//!
//! Shutdown: [`HttpServer::shutdown`] makes each worker's next `recv` fail; a worker finishes
//! the request in its hands first.

pub mod dashboard;
pub mod metrics;
pub mod reply;
pub mod request;
pub mod router;
pub mod stats;

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::audit::Audit;
use crate::config::{Connections, Limits};
use crate::history::History;
use crate::store::Store;
use reply::{ApiError, Reply};
use stats::{HttpStats, Route};

/// What every handler can reach.
pub struct App {
    pub store: Arc<dyn Store>,
    pub audit: Audit,
    pub key: Option<Vec<u8>>,
    pub require_signature: bool,
    pub limits: Limits,
    pub started: Instant,
    /// Traffic counters for `/metrics`.
    pub stats: HttpStats,
    /// Recent values of every metric, for the dashboard and `/api/v1/history`.
    pub history: Arc<History>,
    /// The listener, once started: its connection counters go into `/metrics`.
    pub listener: std::sync::OnceLock<Arc<tiny_http::Server>>,
}

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
        app: Arc<App>,
    ) -> std::io::Result<Self> {
        let listener = bind(listen)?;
        let addr = listener.local_addr()?;
        let server = tiny_http::Server::from_listener_with_policy(
            listener,
            policy(connections, &app.limits),
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
                    .spawn(move || worker_loop(&server, &app))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            server,
            workers,
            addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connection counters for monitoring: open connections, the cap, accepted, refused over
    /// the cap, idle connections evicted, 408s, 431s, 400s before dispatch, buffered body bytes.
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
/// 100 header fields, 64 KiB per head — far above what agents and browsers send.
fn policy(connections: &Connections, limits: &Limits) -> tiny_http::ConnectionPolicy {
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
    }
}

fn worker_loop(server: &tiny_http::Server, app: &Arc<App>) {
    loop {
        match server.recv() {
            Ok(request) => serve(server, app, request),
            // `recv` fails only when unblocked for shutdown.
            Err(_) => return,
        }
    }
}

fn serve(server: &tiny_http::Server, app: &Arc<App>, mut request: tiny_http::Request) {
    let started = Instant::now();
    let key = app.key.as_deref();
    let path = request.url().split('?').next().unwrap_or("/");
    let route = Route::of(&Route::segments(path));
    let mut read = 0;
    let mut durable_after = None;
    let (reply, accept_gzip) = match request::intake(&mut request, &app.limits, key) {
        Ok(incoming) => {
            read = incoming.wire_bytes;
            let mut routed = None;
            let mut handle = || {
                durable_after = app.store.deferring_durability(&mut || {
                    routed = Some(catch_unwind(AssertUnwindSafe(|| {
                        router::route(app, &incoming, route)
                    })));
                });
            };
            if app.store.may_block() {
                server.blocking(handle);
            } else {
                handle();
            }
            let reply = match routed.expect("the handler ran") {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => e.into(),
                Err(_) => {
                    log::error!(
                        "handler panicked on {} {}",
                        incoming.method_name,
                        incoming.path
                    );
                    ApiError::new(500, "internal error: the request was not applied").into()
                }
            };
            (reply, incoming.accept_gzip)
        }
        Err(e) => (Reply::from(e), false),
    };
    let answer = Answer {
        request,
        accept_gzip,
        route,
        read,
        started,
    };
    match durable_after {
        // Sync mode: the snapshot thread sends the answer once the write is on disk; this
        // worker moves on.
        Some(version) => {
            let app_for_ack = app.clone();
            app.store.when_durable(
                version,
                Box::new(move |outcome| {
                    let reply = match outcome {
                        Ok(()) => reply,
                        Err(e) => ApiError::from(e).into(),
                    };
                    answer.send(&app_for_ack, reply);
                }),
            );
        }
        None => answer.send(app, reply),
    }
}

/// A handled request waiting for its reply to be sent.
struct Answer {
    request: tiny_http::Request,
    accept_gzip: bool,
    route: Route,
    read: usize,
    started: Instant,
}

impl Answer {
    /// Encodes and sends `reply`, counts it, and logs the access line at debug level.
    fn send(self, app: &App, reply: Reply) {
        let request = self.request;
        let status = reply.status;
        let method = request.method().clone();
        let peer = request.remote_addr().copied();
        let url = log::log_enabled!(log::Level::Debug).then(|| request.url().to_owned());
        let response = reply.into_response(self.accept_gzip, app.key.as_deref());
        let sent = response.data_length().unwrap_or(0);
        if let Err(e) = request.respond(response) {
            log::debug!("cannot send the response to {peer:?}: {e}");
        }
        app.stats.request(self.route, status, self.read, sent);
        if let Some(url) = url {
            log::debug!(
                "{} {} {} {:?} {}",
                peer.map_or("-".into(), |p| p.to_string()),
                method,
                url,
                status,
                self.started.elapsed().as_micros()
            );
        }
    }
}
