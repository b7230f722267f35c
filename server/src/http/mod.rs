//! The HTTP front of the server: a tiny_http listener and a **fixed** pool of worker threads.
//!
//! Each worker loops: take the next request from tiny_http → [`request::intake`] (read the body
//! within limits, inflate, verify the signature) → [`router::route`] under `catch_unwind` (a
//! panic becomes a 500 and the worker lives on) → encode the [`reply::Reply`] (gzip, signature)
//! → respond → one access-log line at debug level.
//!
//! Shutdown: [`HttpServer::shutdown`] queues one "unblock" per worker behind the requests
//! already received, so workers finish every request in flight before they exit.

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
use crate::config::Limits;
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
}

/// The listener and its worker pool.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    addr: SocketAddr,
}

impl HttpServer {
    /// Binds `listen` and starts `workers` worker threads.
    pub fn start(listen: SocketAddr, workers: usize, app: Arc<App>) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| std::io::Error::other(format!("cannot start the HTTP server: {e}")))?;
        let server = Arc::new(server);
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

fn worker_loop(server: &tiny_http::Server, app: &App) {
    loop {
        match server.recv() {
            Ok(request) => serve(app, request),
            // `recv` fails only when unblocked for shutdown.
            Err(_) => return,
        }
    }
}

fn serve(app: &App, mut request: tiny_http::Request) {
    let started = Instant::now();
    let key = app.key.as_deref();
    let path = request.url().split('?').next().unwrap_or("/");
    let route = Route::of(&Route::segments(path));
    let mut read = 0;
    let (reply, accept_gzip) = match request::intake(&mut request, &app.limits, key) {
        Ok(incoming) => {
            read = incoming.wire_bytes;
            let routed = catch_unwind(AssertUnwindSafe(|| router::route(app, &incoming, route)));
            let reply = match routed {
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
    let status = reply.status;
    let method = request.method().clone();
    let peer = request.remote_addr().copied();
    let url = log::log_enabled!(log::Level::Debug).then(|| request.url().to_owned());
    let response = reply.into_response(accept_gzip, key);
    let sent = response.data_length().unwrap_or(0);
    if let Err(e) = request.respond(response) {
        log::debug!("cannot send the response to {peer:?}: {e}");
    }
    app.stats.request(route, status, read, sent);
    if let Some(url) = url {
        log::debug!(
            "{} {} {} {:?} {}",
            peer.map_or("-".into(), |p| p.to_string()),
            method,
            url,
            status,
            started.elapsed().as_micros()
        );
    }
}
