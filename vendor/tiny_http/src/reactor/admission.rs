//! golectra: admission — the `http-accept` thread, the connection caps (the server's and each
//! peer's), and which idle connection is evicted for a newcomer at a cap: one that never sent a
//! request first (a flood of empty connections cannot push out clients using their keep-alive
//! connections), oldest first, else the one idle the longest; at a peer's cap only that peer's
//! connections are candidates. With none idle the newcomer gets `503` with `Retry-After: 1`.

use std::io::Write;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::epoll;

use super::peers::{AtCap, PeerSlot};
use super::{Conn, ConnState, Reactor};
use crate::conn::refusal::refusal;
use crate::conn::Machine;
use crate::connection::{Connection, Listener};
use crate::policy::Counters;

/// The eviction choice: offered every idle connection's key ([`Machine::eviction_key`]), it
/// keeps the lowest — never served before served, then idle since the earliest. (A plain loop
/// over offers: at the cap it runs over every connection for each newcomer.)
pub(super) struct Victim<T> {
    best: Option<((bool, Instant), T)>,
}

impl<T> Victim<T> {
    pub fn new() -> Self {
        Self { best: None }
    }

    pub fn offer(&mut self, key: (bool, Instant), candidate: T) {
        match &self.best {
            Some((best, _)) if *best <= key => {}
            _ => self.best = Some((key, candidate)),
        }
    }

    pub fn take(self) -> Option<T> {
        self.best.map(|(_, victim)| victim)
    }
}

impl Reactor {
    /// Accepts connections until the server closes. Accept errors (such as running out of file
    /// descriptors) never stop the loop; it backs off briefly instead.
    pub fn accept_loop(&self, listener: Listener) {
        let mut backoff = Duration::from_millis(5);
        while !self.closed.load(std::sync::atomic::Ordering::Acquire) {
            match listener.accept() {
                Ok((socket, peer)) => {
                    backoff = Duration::from_millis(5);
                    if self.closed.load(std::sync::atomic::Ordering::Acquire) {
                        break;
                    }
                    self.admit(socket, peer);
                }
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ECONNABORTED…: the listener itself is fine.
                    log::warn!("cannot accept a connection: {e}; retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Admits an accepted connection (evicting an idle one at a cap) or refuses it. The peer's
    /// cap is checked first: evicting one of its own connections also makes room under the
    /// server's cap.
    fn admit(&self, socket: Connection, peer: Option<SocketAddr>) {
        let c = &self.env.counters;
        Counters::bump(&c.accepted);
        let peer_slot = match self.peers.join(peer) {
            Ok(slot) => slot,
            Err(AtCap(ip)) => match self.evict_idle(Some(ip)).then(|| self.peers.join(peer)) {
                Some(Ok(slot)) => slot,
                _ => {
                    Counters::bump(&c.refused_per_peer);
                    let message = "server busy: too many connections from this client, retry later";
                    self.refuse_over_capacity(&socket, message);
                    return;
                }
            },
        };
        let live = self.slab().live;
        if live >= self.env.policy.max_connections.max(1) && !self.evict_idle(None) {
            Counters::bump(&c.refused);
            let message = "server busy: too many connections, retry later";
            self.refuse_over_capacity(&socket, message);
            return;
        }
        if socket.set_nonblocking(true).is_err() {
            return;
        }
        socket.set_nodelay();
        let now = Instant::now();
        let mut m = Machine::new(now, &self.env);
        m.set_peer_budget(peer_slot.as_ref().and_then(PeerSlot::budget));
        let tls = match &self.env.policy.tls {
            None => None,
            Some(acceptor) => match acceptor.session() {
                Ok(session) => {
                    m.expect_handshake(now, &self.env);
                    Some(Box::new(session))
                }
                Err(e) => {
                    log::warn!("cannot start a TLS session: {e}");
                    return;
                }
            },
        };
        let conn = self.slab().insert(|token| {
            Arc::new(Conn {
                token,
                peer,
                peer_slot,
                socket,
                state: Mutex::new(ConnState {
                    m,
                    alarm: None,
                    tls,
                }),
            })
        });
        let mut st = conn.lock();
        self.schedule_deadline(&conn, &mut st);
        let data = epoll::EventData::new_u64(conn.token);
        let flags = epoll::EventFlags::IN | epoll::EventFlags::ONESHOT;
        if epoll::add(&self.epoll, &conn.socket, data, flags).is_err() {
            self.close(&conn, &mut st);
        }
    }

    /// Closes an idle connection (abortively: no `TIME_WAIT` left behind), if there is one, by
    /// [`Victim`] — of the peer `only`, when given. Connections a worker holds right now are
    /// skipped (`try_lock`).
    fn evict_idle(&self, only: Option<IpAddr>) -> bool {
        // Scanned under the slab's lock, without cloning every connection: at the cap this
        // runs for each newcomer. Only `try_lock` is taken inside, so it never waits for a
        // worker (which may hold a connection and then want the slab to close it).
        let victim = {
            let slab = self.slab();
            let mut victim = Victim::new();
            let theirs =
                |conn: &Conn| only.is_none() || conn.peer_slot.as_ref().map(PeerSlot::ip) == only;
            for conn in slab.iter().filter(|conn| theirs(conn)) {
                let Ok(st) = conn.state.try_lock() else {
                    continue;
                };
                if let Some(key) = st.m.eviction_key() {
                    victim.offer(key, conn);
                }
            }
            victim.take().cloned()
        };
        let Some(conn) = victim else {
            return false;
        };
        let Ok(mut st) = conn.state.try_lock() else {
            return false;
        };
        if st.m.eviction_key().is_none() {
            return false; // a request started meanwhile
        }
        conn.socket.abort_on_close();
        self.close(&conn, &mut st);
        Counters::bump(&self.env.counters.evicted_idle);
        true
    }
}

impl Reactor {
    /// A minimal `503` for a connection over a cap, written without waiting long. golectra: a
    /// TLS client could not read a plain-text answer, so on a TLS listener it is just closed.
    fn refuse_over_capacity(&self, socket: &Connection, message: &str) {
        if self.env.policy.tls.is_none() {
            let signer = self.env.policy.refusal_signer.as_ref();
            let _ = socket.set_write_timeout(Some(Duration::from_millis(100)));
            let response = refusal(503, message, &[("Retry-After", "1")], signer);
            let _ = (&*socket).write_all(&response);
        }
        let _ = socket.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Env, Next, Step};
    use crate::policy::ConnectionPolicy;

    #[test]
    fn never_served_connections_go_first_oldest_first() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut victim = Victim::new();
        victim.offer((true, s(0)), "served, idle longest");
        victim.offer((false, s(5)), "fresh, newer");
        victim.offer((false, s(2)), "fresh, oldest");
        victim.offer((false, s(2)), "fresh, as old but later in the list");
        victim.offer((true, s(1)), "served");
        assert_eq!(victim.take(), Some("fresh, oldest"));
    }

    #[test]
    fn then_the_connection_idle_the_longest() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut victim = Victim::new();
        victim.offer((true, s(3)), "b");
        victim.offer((true, s(1)), "idle longest");
        victim.offer((true, s(2)), "c");
        assert_eq!(victim.take(), Some("idle longest"));
        assert_eq!(Victim::<()>::new().take(), None);
    }

    #[test]
    fn only_idle_connections_without_input_are_candidates() {
        let env = Env::new(ConnectionPolicy::default());
        let t0 = Instant::now();
        let mut m = Machine::new(t0, &env);
        assert_eq!(m.eviction_key(), Some((false, t0)));
        // Half a head: busy, not evictable.
        m.feed(b"GET / HTTP/1.1\r\n", t0);
        assert!(matches!(m.poll(t0, &env), Step::NeedInput));
        assert_eq!(m.eviction_key(), None);
        m.feed(b"\r\n", t0);
        assert!(matches!(m.poll(t0, &env), Step::Dispatch(_)));
        assert_eq!(m.eviction_key(), None, "dispatched");
        let t1 = t0 + Duration::from_secs(1);
        assert!(m.respond(b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), t1, &env));
        assert_eq!(m.eviction_key(), None, "writing");
        m.wrote(m.unwritten().len(), t1);
        assert_eq!(m.finish_writing(t1, &env), Next::Read);
        // Served once, idle since the response was written.
        assert_eq!(m.eviction_key(), Some((true, t1)));
    }
}
