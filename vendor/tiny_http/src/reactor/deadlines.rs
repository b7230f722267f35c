//! golectra: deadlines — a min-heap of connection deadlines (one entry per connection slot,
//! moved in place) and the `http-timer` thread, which sleeps until the earliest entry and
//! applies the deadlines that passed ([`crate::conn::Machine::expire`]). Nothing scans the
//! connections: an entry is only added or moved earlier when a connection's next deadline
//! comes before its current entry, which in steady keep-alive traffic is almost never, and an
//! entry that comes up early (the deadline moved later) is simply re-filed.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use rustix::event::epoll;

use super::slab::slot;
use super::{Conn, ConnState, Reactor};
use crate::conn::{Expiry, Phase};

/// No heap position.
const NONE: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct Entry {
    when: Instant,
    token: u64,
}

/// A binary min-heap of `(when, token)` with at most one entry per slot (the token's low half),
/// and each slot's position, so an entry is moved instead of duplicated.
#[derive(Default)]
pub(super) struct DeadlineHeap {
    heap: Vec<Entry>,
    /// Position in `heap` of each slot's entry, or [`NONE`].
    position: Vec<usize>,
}

impl DeadlineHeap {
    /// Files `token` for `when`. A slot's entry for the same token only moves earlier; an entry
    /// left by a closed connection in the slot is replaced. Returns true if the entry is now the
    /// earliest of all (the waker must look again).
    pub fn schedule(&mut self, token: u64, when: Instant) -> bool {
        let s = slot(token);
        if s >= self.position.len() {
            self.position.resize(s + 1, NONE);
        }
        let at = match self.position[s] {
            NONE => {
                self.heap.push(Entry { when, token });
                self.position[s] = self.heap.len() - 1;
                self.heap.len() - 1
            }
            at if self.heap[at].token != token => {
                self.heap[at] = Entry { when, token };
                self.sift_down(at)
            }
            at if when < self.heap[at].when => {
                self.heap[at].when = when;
                at
            }
            _ => return false,
        };
        self.sift_up(at) == 0
    }

    /// The earliest entry's time.
    pub fn next(&self) -> Option<Instant> {
        self.heap.first().map(|e| e.when)
    }

    /// Removes every entry due at `now`, appending their tokens to `due` (earliest first).
    pub fn pop_due(&mut self, now: Instant, due: &mut Vec<u64>) {
        while let Some(first) = self.heap.first().copied() {
            if first.when > now {
                break;
            }
            due.push(first.token);
            self.remove_at(0);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    fn remove_at(&mut self, at: usize) {
        let removed = self.heap.swap_remove(at);
        self.position[slot(removed.token)] = NONE;
        if at < self.heap.len() {
            self.position[slot(self.heap[at].token)] = at;
            let at = self.sift_down(at);
            self.sift_up(at);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[slot(self.heap[a].token)] = a;
        self.position[slot(self.heap[b].token)] = b;
    }

    fn sift_up(&mut self, mut at: usize) -> usize {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.heap[parent].when <= self.heap[at].when {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
        at
    }

    fn sift_down(&mut self, mut at: usize) -> usize {
        loop {
            let (left, right) = (2 * at + 1, 2 * at + 2);
            let mut least = at;
            if left < self.heap.len() && self.heap[left].when < self.heap[least].when {
                least = left;
            }
            if right < self.heap.len() && self.heap[right].when < self.heap[least].when {
                least = right;
            }
            if least == at {
                return at;
            }
            self.swap(at, least);
            at = least;
        }
    }
}

/// The heap behind a mutex, and the condition variable the `http-timer` thread sleeps on.
#[derive(Default)]
pub(super) struct Deadlines {
    heap: Mutex<DeadlineHeap>,
    changed: Condvar,
}

impl Deadlines {
    fn lock(&self) -> MutexGuard<'_, DeadlineHeap> {
        self.heap.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn schedule(&self, token: u64, when: Instant) {
        if self.lock().schedule(token, when) {
            self.changed.notify_one();
        }
    }

    /// Wakes the timer thread (shutdown).
    pub fn wake(&self) {
        let _heap = self.lock();
        self.changed.notify_all();
    }
}

impl Reactor {
    /// Files the connection's next deadline if it comes before its current entry (called with
    /// the connection locked, after anything that may have changed its state).
    pub(super) fn schedule_deadline(&self, conn: &Conn, st: &mut ConnState) {
        let Some(next) = st.m.next_deadline(Instant::now(), &self.env) else {
            return;
        };
        if st.alarm.is_some_and(|alarm| alarm <= next) {
            return;
        }
        st.alarm = Some(next);
        self.deadlines.schedule(conn.token, next);
    }

    /// Applies deadlines as they come, until the server closes.
    pub fn timer_loop(&self) {
        let mut due = Vec::new();
        loop {
            {
                let mut heap = self.deadlines.lock();
                loop {
                    if self.closed.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                    let now = Instant::now();
                    heap.pop_due(now, &mut due);
                    if !due.is_empty() {
                        break;
                    }
                    heap = match heap.next() {
                        Some(when) => {
                            let timeout = when.saturating_duration_since(now);
                            let wait = self.deadlines.changed.wait_timeout(heap, timeout);
                            wait.unwrap_or_else(|e| e.into_inner()).0
                        }
                        None => {
                            let wait = self.deadlines.changed.wait(heap);
                            wait.unwrap_or_else(|e| e.into_inner())
                        }
                    };
                }
            }
            for token in due.drain(..) {
                let Some(conn) = self.slab().get(token) else {
                    continue; // closed
                };
                let now = Instant::now();
                match conn.state.try_lock() {
                    // The server is behind on this connection, not its client: look again
                    // shortly, without judging the client by bytes no worker has read yet.
                    Ok(mut st) if Self::input_waits(&conn, &st) => {
                        let later = now + self.env.retry;
                        st.alarm = Some(later);
                        self.deadlines.schedule(token, later);
                    }
                    Ok(mut st) => {
                        st.alarm = None;
                        self.expire(&conn, &mut st, now);
                        self.schedule_deadline(&conn, &mut st);
                    }
                    // A worker has it: look again shortly (its alarm stays, so its driver does
                    // not file an entry itself).
                    Err(_) => self.deadlines.schedule(token, now + self.env.retry),
                };
            }
        }
    }

    /// Whether a connection that is reading a request has bytes waiting in its socket that no
    /// worker has read: every worker was busy (a slow store, say) when they came. A read
    /// deadline (idle, head, body, the body's pace, `io_timeout`) judges what the client sent,
    /// so it waits until a worker has taken them; once workers are free again the bytes are
    /// read at once and the deadlines apply as usual.
    fn input_waits(conn: &Conn, st: &ConnState) -> bool {
        matches!(st.m.phase(), Phase::Idle | Phase::Head | Phase::Body)
            && rustix::io::ioctl_fionread(&conn.socket).is_ok_and(|n| n > 0)
    }

    fn expire(&self, conn: &Conn, st: &mut ConnState, now: Instant) {
        match st.m.expire(now, &self.env) {
            Expiry::Nothing => {}
            Expiry::Close => self.close(conn, st),
            // Counted by the machine.
            Expiry::Refuse(_) => self.flush(conn, st),
            // Driven again at once: part of the body may be buffered already.
            Expiry::Resume => self.arm(conn, st, epoll::EventFlags::OUT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn token(generation: u64, slot: u64) -> u64 {
        (generation << 32) | slot
    }

    #[test]
    fn entries_come_up_earliest_first_and_only_when_due() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut h = DeadlineHeap::default();
        assert!(h.schedule(token(1, 0), s(5)));
        assert!(!h.schedule(token(1, 1), s(9)));
        assert!(h.schedule(token(1, 2), s(1)));
        assert!(!h.schedule(token(1, 3), s(3)));
        assert_eq!(h.next(), Some(s(1)));
        let mut due = Vec::new();
        h.pop_due(s(0), &mut due);
        assert!(due.is_empty());
        h.pop_due(s(5), &mut due);
        assert_eq!(due, [token(1, 2), token(1, 3), token(1, 0)]);
        assert_eq!(h.next(), Some(s(9)));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn an_entry_only_moves_earlier_and_is_never_duplicated() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut h = DeadlineHeap::default();
        h.schedule(token(1, 0), s(5));
        h.schedule(token(1, 1), s(4));
        assert!(!h.schedule(token(1, 0), s(8)), "later: unchanged");
        assert_eq!(h.len(), 2);
        assert!(
            h.schedule(token(1, 0), s(2)),
            "earlier: moved, now the first"
        );
        assert_eq!(h.len(), 2);
        let mut due = Vec::new();
        h.pop_due(s(2), &mut due);
        assert_eq!(due, [token(1, 0)]);
    }

    #[test]
    fn a_reused_slot_replaces_the_closed_connections_entry() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut h = DeadlineHeap::default();
        h.schedule(token(1, 0), s(1));
        h.schedule(token(1, 1), s(2));
        // Slot 0 now belongs to a newer connection with a later deadline.
        h.schedule(token(2, 0), s(7));
        assert_eq!(h.len(), 2);
        let mut due = Vec::new();
        h.pop_due(s(10), &mut due);
        assert_eq!(due, [token(1, 1), token(2, 0)]);
    }

    #[test]
    fn the_heap_stays_ordered_under_many_moves() {
        let t0 = Instant::now();
        let mut h = DeadlineHeap::default();
        let mut expected = Vec::new();
        for i in 0..200u64 {
            // Scrambled times, then every third entry moved earlier.
            let mut secs = (i * 7919) % 1000 + 100;
            h.schedule(token(1, i), t0 + Duration::from_secs(secs));
            if i % 3 == 0 {
                secs -= 50;
                h.schedule(token(1, i), t0 + Duration::from_secs(secs));
            }
            expected.push((secs, token(1, i)));
        }
        let mut due = Vec::new();
        h.pop_due(t0 + Duration::from_secs(2000), &mut due);
        assert_eq!(due.len(), expected.len());
        let secs_of = |t: u64| expected.iter().find(|(_, e)| *e == t).unwrap().0;
        let secs: Vec<u64> = due.iter().map(|t| secs_of(*t)).collect();
        assert!(secs.windows(2).all(|w| w[0] <= w[1]), "{:?}", secs);
    }
}
