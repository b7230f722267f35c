//! golectra: the poller gate of the reactor — at most one thread per CPU waits on the epoll set;
//! the other workers park until a slot is free. Without it, every arriving request would wake a
//! sleeping worker (a context switch) instead of being picked up by a busy one. A thread that is
//! about to block outside the server gives its slot away first (`Server::blocking`).

use std::cell::{Cell, RefCell};
use std::sync::{Arc, Condvar, Mutex};

/// Limits how many threads poll the epoll set at once (one per CPU). Workers beyond that park on
/// a condition variable; a worker that will block elsewhere leaves its slot first.
pub(crate) struct Gate {
    limit: usize,
    active: Mutex<usize>,
    freed: Condvar,
}

thread_local! {
    /// The reactor (by id) whose polling slot this thread holds, if any; given back if the
    /// thread ends while holding it.
    static SLOT: SlotHeld = const { SlotHeld { held: Cell::new(0), gate: RefCell::new(None) } };
}

struct SlotHeld {
    held: Cell<usize>,
    gate: RefCell<Option<Arc<Gate>>>,
}

impl Drop for SlotHeld {
    fn drop(&mut self) {
        if self.held.get() != 0 {
            if let Some(gate) = self.gate.borrow_mut().take() {
                gate.release();
            }
        }
    }
}

impl Gate {
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            active: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Takes a slot for this thread (a no-op if it holds one). Returns `false`, without a slot,
    /// when `interrupted` becomes true while waiting.
    pub fn enter(self: &Arc<Self>, id: usize, interrupted: impl Fn() -> bool) -> bool {
        if SLOT.with(|s| s.held.get()) == id {
            return true;
        }
        // A thread polls one reactor at a time: a slot held elsewhere is given back first.
        if let Some(other) = SLOT.with(|s| {
            s.held.set(0);
            s.gate.borrow_mut().take()
        }) {
            other.release();
        }
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        while *active >= self.limit {
            if interrupted() {
                return false;
            }
            active = self.freed.wait(active).unwrap_or_else(|e| e.into_inner());
        }
        *active += 1;
        drop(active);
        SLOT.with(|s| {
            s.held.set(id);
            *s.gate.borrow_mut() = Some(self.clone());
        });
        true
    }

    /// Gives this thread's slot back, if it holds one of this reactor's.
    pub fn leave(&self, id: usize) {
        let held = SLOT.with(|s| {
            let held = s.held.get() == id;
            if held {
                s.held.set(0);
                s.gate.borrow_mut().take();
            }
            held
        });
        if held {
            self.release();
        }
    }

    fn release(&self) {
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.freed.notify_one();
    }

    pub fn wake_all(&self) {
        let _guard = self.active.lock().unwrap_or_else(|e| e.into_inner());
        self.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    fn active(gate: &Gate) -> usize {
        *gate.active.lock().unwrap()
    }

    #[test]
    fn the_gate_admits_up_to_its_limit_and_takes_slots_back() {
        const ID: usize = usize::MAX - 1;
        let gate = Arc::new(Gate::new(2));
        let (leave_tx, leave_rx) = mpsc::channel::<()>();
        let (entered_tx, entered_rx) = mpsc::channel::<&str>();
        // A holds a slot until told to leave (as around a blocking store call).
        let a = std::thread::spawn({
            let (gate, entered) = (gate.clone(), entered_tx.clone());
            move || {
                assert!(gate.enter(ID, || false));
                assert!(gate.enter(ID, || false), "entering again is a no-op");
                entered.send("a").unwrap();
                leave_rx.recv().unwrap();
                gate.leave(ID);
                gate.leave(ID); // leaving twice gives back one slot only
            }
        });
        // B takes the second slot and ends while holding it: the slot comes back.
        let b = std::thread::spawn({
            let (gate, entered) = (gate.clone(), entered_tx.clone());
            move || {
                assert!(gate.enter(ID, || false));
                entered.send("b").unwrap();
            }
        });
        let mut first = vec![entered_rx.recv().unwrap(), entered_rx.recv().unwrap()];
        first.sort();
        assert_eq!(first, ["a", "b"]);
        b.join().unwrap();
        assert_eq!(active(&gate), 1, "B's slot came back when B ended");
        // C and D: one gets B's old slot, the other waits for A's.
        let waiters: Vec<_> = ["c", "d"]
            .iter()
            .map(|&name| {
                let (gate, entered) = (gate.clone(), entered_tx.clone());
                std::thread::spawn(move || {
                    assert!(gate.enter(ID, || false));
                    entered.send(name).unwrap();
                    gate.leave(ID);
                })
            })
            .collect();
        let _ = entered_rx.recv().unwrap();
        leave_tx.send(()).unwrap();
        let _ = entered_rx.recv().unwrap();
        a.join().unwrap();
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(active(&gate), 0);
    }

    #[test]
    fn a_waiting_thread_gives_up_when_interrupted() {
        const ID: usize = usize::MAX - 2;
        let gate = Arc::new(Gate::new(1));
        assert!(gate.enter(ID, || false));
        let interrupted = Arc::new(AtomicBool::new(false));
        let waiter = std::thread::spawn({
            let (gate, interrupted) = (gate.clone(), interrupted.clone());
            move || gate.enter(ID, || interrupted.load(Ordering::Acquire))
        });
        interrupted.store(true, Ordering::Release);
        gate.wake_all();
        assert!(
            !waiter.join().unwrap(),
            "no slot while the only one is held"
        );
        gate.leave(ID);
        assert_eq!(active(&gate), 0);
    }
}
