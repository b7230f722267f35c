//! One worker of the fixed pool (`http-worker-N`), in a straight line: take a complete request
//! from the engine → [`request::intake`] (size, inflate, signature) → [`router::route`] → send
//! the reply now, or hand it to the write's durability [`Ticket`] to be sent once the snapshot
//! covering the write is on disk (memory store, `STORE_INTERVAL=0`). The worker never waits for
//! the disk: the `snapshot` thread sends those replies.
//!
//! A PostgreSQL call waits on the network, so around the handler of a PostgreSQL-backed server
//! the worker lends its polling slot of the engine to a parked worker
//! ([`tiny_http::Server::blocking`]), and it must first take one of the store slots
//! ([`StoreSlots`], one fewer than the workers; it waits for one while the database answers,
//! and gets `503` at once when every slot has waited on it too long), so a database that does
//! not answer can never hold every worker. The memory store
//! never blocks and is called directly; a path no handler serves (404) needs no slot.
//!
//! [`StoreSlots`]: crate::store_slots::StoreSlots
//!
//! [`Ticket`]: crate::store::Ticket

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::reply::{ApiError, Reply};
use super::{request, router};
use crate::app::App;
use crate::store::{Durable, StoreKind, Written};
use crate::traffic::Route;

/// Serves requests until the engine is shut down.
pub(super) fn run(server: &tiny_http::Server, app: &Arc<App>) {
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
    let path = request.url().split('?').next().unwrap_or("/");
    let route = Route::of(&Route::segments(path));
    let mut read = 0;
    let (written, accept_gzip) =
        match request::intake(&mut request, &app.limits, app.key.as_deref()) {
            Ok(incoming) => {
                read = incoming.wire_bytes;
                let handle = || handle(app, &incoming, route);
                let written = match app.store.kind() {
                    StoreKind::Postgres if route != Route::Other => {
                        server.blocking(|| match app.store_slots.take() {
                            Ok(_slot) => handle(),
                            Err(why) => Written::now(ApiError::new(503, why).into()),
                        })
                    }
                    StoreKind::Postgres | StoreKind::Memory => handle(),
                };
                (written, incoming.accept_gzip)
            }
            Err(e) => (Written::now(Reply::from(e)), false),
        };
    let pending = Pending {
        request,
        accept_gzip,
        route,
        read,
        started,
    };
    match written.durable {
        Durable::Now => pending.send(app, written.value),
        Durable::After(ticket) => {
            let reply = written.value;
            let app = app.clone();
            ticket.on_durable(move |outcome| {
                let reply = match outcome {
                    Ok(()) => reply,
                    Err(e) => ApiError::from(e).into(),
                };
                pending.send(&app, reply);
            });
        }
    }
}

/// Routes under `catch_unwind`: a panic becomes a 500 and the worker lives on; an error becomes
/// its reply, sent at once.
fn handle(app: &App, incoming: &request::Incoming, route: Route) -> Written<Reply> {
    match catch_unwind(AssertUnwindSafe(|| router::route(app, incoming, route))) {
        Ok(Ok(written)) => written,
        Ok(Err(e)) => Written::now(e.into()),
        Err(_) => {
            log::error!(
                "handler panicked on {} {}",
                incoming.method_name,
                incoming.path
            );
            Written::now(ApiError::new(500, "internal error: the request was not applied").into())
        }
    }
}

/// A handled request waiting for its reply to be sent.
struct Pending {
    request: tiny_http::Request,
    accept_gzip: bool,
    route: Route,
    read: usize,
    started: Instant,
}

impl Pending {
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
