//! A TCP listener whose every connection is served on a thread of its own — what the fault
//! proxy ([`crate::proxy`]) and the TLS front ([`crate::tls`]) share: the accept thread, every
//! open socket kept by connection (the client side and any upstream side), so that stopping
//! shuts each one down, and joining every thread when stopped. Nothing outlives [`Served::stop`].

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The open sockets of a [`Served`] listener, by connection.
#[derive(Default)]
pub(crate) struct Sockets {
    /// Set once, by [`Served::stop`]; checked under the `open` lock, so a socket registered
    /// after the flag is seen is never left open.
    stopped: AtomicBool,
    open: Mutex<HashMap<u64, Vec<TcpStream>>>,
    /// Connections being served now.
    active: AtomicUsize,
}

impl Sockets {
    /// Keeps a clone of `stream` (a socket of connection `id`) so that stopping can shut it
    /// down; `false` once stopped.
    pub fn register(&self, id: u64, stream: &TcpStream) -> bool {
        let mut open = lock(&self.open);
        if self.stopped.load(Ordering::SeqCst) {
            return false;
        }
        if let Ok(clone) = stream.try_clone() {
            open.entry(id).or_default().push(clone);
        }
        true
    }

    /// Connections being served now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    fn finished(&self, id: u64) {
        lock(&self.open).remove(&id);
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A listener serving each accepted connection on a thread named `<name>-<id>`.
pub(crate) struct Served {
    addr: SocketAddr,
    sockets: Arc<Sockets>,
    accept: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Served {
    /// Accepts on `listener`. `admit` decides for each new connection (false: it is closed at
    /// once); `serve` runs on the connection's own thread. Both see `sockets`, the set the
    /// listener shuts down when stopped.
    pub fn start(
        listener: TcpListener,
        name: &str,
        sockets: Arc<Sockets>,
        admit: impl Fn(&Sockets) -> bool + Send + 'static,
        serve: impl Fn(u64, TcpStream) + Send + Sync + 'static,
    ) -> Self {
        let addr = listener.local_addr().expect("the listener's address");
        let workers = Arc::new(Mutex::new(Vec::new()));
        let accept = std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn({
                let (sockets, workers, name) = (sockets.clone(), workers.clone(), name.to_owned());
                let serve = Arc::new(serve);
                move || accept_loop(listener, &name, &sockets, &workers, admit, serve)
            })
            .expect("spawn an accept thread");
        Self {
            addr,
            sockets,
            accept: Some(accept),
            workers,
        }
    }

    /// Stops accepting, shuts every open socket down, runs `then` (to end what a connection
    /// thread may wait on besides its sockets) and joins every thread.
    pub fn stop(&mut self, then: impl FnOnce()) {
        self.sockets.stopped.store(true, Ordering::SeqCst);
        // The accept thread blocks in accept(2): one connection of our own wakes it.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for streams in lock(&self.sockets.open).values() {
            for stream in streams {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        then();
        let workers = std::mem::take(&mut *lock(&self.workers));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    name: &str,
    sockets: &Arc<Sockets>,
    workers: &Mutex<Vec<JoinHandle<()>>>,
    admit: impl Fn(&Sockets) -> bool,
    serve: Arc<impl Fn(u64, TcpStream) + Send + Sync + 'static>,
) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if sockets.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if !admit(sockets) {
            continue;
        }
        next_id += 1;
        let id = next_id;
        if !sockets.register(id, &stream) {
            return;
        }
        sockets.active.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-{id}"))
            .spawn({
                let (sockets, serve) = (sockets.clone(), serve.clone());
                move || {
                    serve(id, stream);
                    sockets.finished(id);
                }
            });
        let mut workers = lock(workers);
        workers.retain(|w| !w.is_finished());
        match spawned {
            Ok(worker) => workers.push(worker),
            Err(_) => sockets.finished(id),
        }
    }
}
