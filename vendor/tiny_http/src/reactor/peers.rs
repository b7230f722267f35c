//! golectra: per-peer accounting — how many connections each peer address has open, and the
//! body budget its connections share (`max_connections_per_peer`, `max_buffered_per_peer`).
//! A peer is the socket's IP address (an IPv4-mapped IPv6 address counts as the IPv4 one; the
//! port is not part of it); the engine knows no proxies, so behind a reverse proxy every client
//! is the proxy.
//!
//! Only the accept thread adds connections ([`Peers::join`]); a connection leaves when its
//! [`PeerSlot`] is dropped (with the connection). A peer's entry is removed with its last
//! connection, unless its bodies still hold budget (a request in a worker's hands outlives its
//! connection briefly); such entries are swept once their budget is given back.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::policy::Budget;

/// One peer: its open connections (under the table's lock) and its body budget.
struct Peer {
    connections: usize,
    budget: Option<Arc<Budget>>,
}

#[derive(Default)]
struct Table {
    peers: HashMap<IpAddr, Peer>,
    /// The table's size at which leftover entries are swept next.
    sweep_at: usize,
}

/// The per-peer caps and counts of one server.
pub(super) struct Peers {
    max_connections: usize,
    max_buffered: usize,
    table: Mutex<Table>,
}

/// Why [`Peers::join`] refused a connection: its peer is at the cap.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AtCap(pub IpAddr);

impl Peers {
    /// `0` means no cap, for either.
    pub fn new(max_connections: usize, max_buffered: usize) -> Arc<Self> {
        Arc::new(Self {
            max_connections,
            max_buffered,
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether anything is counted per peer at all.
    fn enabled(&self) -> bool {
        self.max_connections > 0 || self.max_buffered > 0
    }

    /// Peers with a connection open now.
    pub fn count(&self) -> usize {
        self.table()
            .peers
            .values()
            .filter(|p| p.connections > 0)
            .count()
    }

    /// Counts a new connection from `addr`, unless its peer is at the connection cap. No slot
    /// when nothing is counted per peer or the connection has no IP address (Unix sockets).
    pub fn join(self: &Arc<Self>, addr: Option<SocketAddr>) -> Result<Option<PeerSlot>, AtCap> {
        let Some(ip) = addr
            .map(|a| a.ip().to_canonical())
            .filter(|_| self.enabled())
        else {
            return Ok(None);
        };
        let mut table = self.table();
        if table.peers.len() >= table.sweep_at {
            table.peers.retain(|_, p| {
                p.connections > 0 || p.budget.as_ref().is_some_and(|b| b.used() > 0)
            });
            table.sweep_at = (table.peers.len() * 2).max(64);
        }
        let max_buffered = self.max_buffered;
        let peer = table.peers.entry(ip).or_insert_with(|| Peer {
            connections: 0,
            budget: (max_buffered > 0).then(|| Arc::new(Budget::new(max_buffered))),
        });
        if self.max_connections > 0 && peer.connections >= self.max_connections {
            return Err(AtCap(ip));
        }
        peer.connections += 1;
        Ok(Some(PeerSlot {
            peers: self.clone(),
            ip,
            budget: peer.budget.clone(),
        }))
    }

    fn leave(&self, ip: IpAddr) {
        let mut table = self.table();
        let Some(peer) = table.peers.get_mut(&ip) else {
            return;
        };
        peer.connections = peer.connections.saturating_sub(1);
        let holds = peer.budget.as_ref().is_some_and(|b| b.used() > 0);
        if peer.connections == 0 && !holds {
            table.peers.remove(&ip);
        }
    }
}

/// One connection's place in its peer's count; leaves it when dropped.
pub(super) struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
    budget: Option<Arc<Budget>>,
}

impl PeerSlot {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The body budget the peer's connections share, if capped.
    pub fn budget(&self) -> Option<Arc<Budget>> {
        self.budget.clone()
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.peers.leave(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Reservation;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_peer_is_capped_and_others_are_not() {
        let peers = Peers::new(2, 0);
        let a1 = peers.join(addr("127.0.0.2:1000")).unwrap().unwrap();
        let _a2 = peers.join(addr("127.0.0.2:1001")).unwrap().unwrap();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(peers.join(addr("127.0.0.2:1002")).err(), Some(AtCap(ip)));
        // The same address mapped into IPv6 is the same peer.
        assert_eq!(
            peers.join(addr("[::ffff:127.0.0.2]:1003")).err(),
            Some(AtCap(ip))
        );
        let _b = peers.join(addr("127.0.0.1:1000")).unwrap().unwrap();
        assert_eq!(peers.count(), 2);
        assert!(a1.budget().is_none(), "no body cap");
        drop(a1);
        assert!(peers.join(addr("127.0.0.2:1004")).unwrap().is_some());
    }

    #[test]
    fn nothing_is_counted_without_caps_or_an_ip() {
        let off = Peers::new(0, 0);
        for port in 0..10 {
            assert!(off
                .join(addr(&format!("127.0.0.2:{port}")))
                .unwrap()
                .is_none());
        }
        let on = Peers::new(1, 0);
        assert!(on.join(None).unwrap().is_none(), "a Unix socket");
        assert_eq!(on.count(), 0);
    }

    #[test]
    fn a_peers_connections_share_one_body_budget_that_outlives_them() {
        let peers = Peers::new(0, 1000);
        let a = peers.join(addr("10.0.0.1:1")).unwrap().unwrap();
        let b = peers.join(addr("10.0.0.1:2")).unwrap().unwrap();
        let global = Arc::new(Budget::new(1 << 20));
        let shared = a.budget().unwrap();
        assert!(Arc::ptr_eq(&shared, &b.budget().unwrap()));
        let mut held = None;
        Reservation::grow(&mut held, &global, Some(&shared), 800).unwrap();
        drop((a, b));
        // A body still held: the entry stays, and a new connection shares its budget.
        let c = peers.join(addr("10.0.0.1:3")).unwrap().unwrap();
        assert!(Arc::ptr_eq(&shared, &c.budget().unwrap()));
        drop(c);
        drop(held);
        // Leftovers are swept when the table has doubled since the last sweep: the one above
        // when these reach 64 entries (sweep_at 64, then 126 for the 63 kept).
        let mut bodies = Vec::new();
        for i in 0..100u8 {
            let slot = peers.join(addr(&format!("10.0.1.{i}:1"))).unwrap().unwrap();
            let mut r = None;
            Reservation::grow(&mut r, &global, slot.budget().as_ref(), 10).unwrap();
            bodies.push(r);
        }
        assert_eq!(peers.table().peers.len(), 100);
        drop(bodies);
        let open: Vec<_> = (0..30u8)
            .map(|i| peers.join(addr(&format!("10.0.2.{i}:1"))).unwrap())
            .collect();
        assert_eq!(peers.table().peers.len(), 30, "the 100 swept at 126");
        assert_eq!(peers.count(), 30);
        drop(open);
    }
}
