//! Group commit, generic over the item, its result and the apply function: items submitted
//! while earlier rounds are being applied queue up, and the next free submitter applies the
//! whole queue (up to a weight limit) in one call, then hands every submitter its own result.
//!
//! What it promises:
//! - **Own result**: `submit` returns the result that `apply` gave for that very item.
//! - **No delay when idle**: a submitter that finds a free slot applies at once, on its own
//!   thread; nobody waits for a round to fill up.
//! - **FIFO rounds**: a round is the front of the queue in submission order, and `apply` sees
//!   its items in that order; with one flusher, rounds are applied in submission order too.
//! - **Bounded rounds**: a round weighs at most the limit, except a single heavier item, which
//!   goes alone. At most `flushers` rounds are applied at once.
//! - **Panics**: when `apply` panics, the panic continues in the thread that called it, and
//!   every other submitter of that round gets [`Abandoned`]. Nothing stays poisoned or pending:
//!   later rounds work as before.
//!
//! The PostgreSQL store applies a round of batches with one statement: with many clients
//! writing the same names this turns many small transactions that wait on each other's row
//! locks into a few large ones, and it cuts the database work per sample.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The round that held an item ended without a result for it: its `apply` panicked (or
/// returned fewer results than items).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Abandoned;

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the group commit round of this item ended without a result")
    }
}

impl std::error::Error for Abandoned {}

/// Combines concurrently submitted items of type `T` into rounds; each item gets an `R`.
pub(super) struct Combiner<T, R> {
    state: Mutex<State<T, R>>,
    done: Condvar,
    /// Rounds applied at once.
    flushers: usize,
    /// Most weight in one round.
    max_weight: usize,
    weight: fn(&T) -> usize,
}

struct State<T, R> {
    next_ticket: u64,
    /// Submitted items not yet taken into a round, in submission order.
    queue: VecDeque<(u64, T)>,
    /// Results of applied items whose submitters have not collected them yet.
    results: HashMap<u64, Result<R, Abandoned>>,
    /// Items in a round whose submitters are gone (their own `apply` panicked): their results
    /// are dropped.
    gone: HashSet<u64>,
    /// Rounds being applied.
    flushing: usize,
}

impl<T, R> Combiner<T, R> {
    /// At most `flushers` rounds at once, each of at most `max_weight` by `weight`.
    pub(super) fn new(flushers: usize, max_weight: usize, weight: fn(&T) -> usize) -> Self {
        Self {
            state: Mutex::new(State {
                next_ticket: 0,
                queue: VecDeque::new(),
                results: HashMap::new(),
                gone: HashSet::new(),
                flushing: 0,
            }),
            done: Condvar::new(),
            flushers: flushers.max(1),
            max_weight,
            weight,
        }
    }

    /// Queues `item` and returns its result, applying rounds (including other submitters'
    /// items) with `apply` while this thread waits. `apply` gets the items of a round in
    /// order and returns their results in the same order.
    pub(super) fn submit(&self, item: T, apply: impl Fn(Vec<T>) -> Vec<R>) -> Result<R, Abandoned> {
        // Declared before the lock guard, so that on unwinding it runs after the guard is gone.
        let mut waiter = Waiter {
            combiner: self,
            ticket: None,
        };
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back((ticket, item));
        waiter.ticket = Some(ticket);
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                waiter.ticket = None;
                return result;
            }
            if state.flushing < self.flushers && !state.queue.is_empty() {
                let mut weight = 0;
                let take = state
                    .queue
                    .iter()
                    .take_while(|(_, item)| {
                        weight += (self.weight)(item);
                        weight <= self.max_weight
                    })
                    .count()
                    .max(1);
                let (tickets, group): (Vec<u64>, Vec<T>) = state.queue.drain(..take).unzip();
                state.flushing += 1;
                drop(state);
                let mut round = Round {
                    combiner: self,
                    tickets,
                    results: None,
                };
                round.results = Some(apply(group));
                drop(round);
                state = self.lock();
                continue;
            }
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The state, also after a panic while it was held (every change under the lock completes
    /// before anything that can panic).
    fn lock(&self) -> MutexGuard<'_, State<T, R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Items queued and not yet taken into a round.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether nothing is queued, applied, uncollected or forgotten.
    #[cfg(test)]
    fn is_idle(&self) -> bool {
        let state = self.lock();
        state.queue.is_empty()
            && state.results.is_empty()
            && state.gone.is_empty()
            && state.flushing == 0
    }
}

/// Hands a round's results to its submitters — also when applying it panicked, so that no
/// submitter waits forever.
struct Round<'a, T, R> {
    combiner: &'a Combiner<T, R>,
    tickets: Vec<u64>,
    results: Option<Vec<R>>,
}

impl<T, R> Drop for Round<'_, T, R> {
    fn drop(&mut self) {
        let mut results = self.results.take().unwrap_or_default().into_iter();
        let mut state = self.combiner.lock();
        state.flushing -= 1;
        for ticket in self.tickets.drain(..) {
            let result = results.next().ok_or(Abandoned);
            if !state.gone.remove(&ticket) {
                state.results.insert(ticket, result);
            }
        }
        self.combiner.done.notify_all();
    }
}

/// Withdraws a submitter's item when `submit` unwinds (its own `apply` panicked), so that
/// neither the item nor its result stays behind.
struct Waiter<'a, T, R> {
    combiner: &'a Combiner<T, R>,
    /// Set while the item waits for its result.
    ticket: Option<u64>,
}

impl<T, R> Drop for Waiter<'_, T, R> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else { return };
        let mut state = self.combiner.lock();
        if state.results.remove(&ticket).is_some() {
            return;
        }
        if let Some(at) = state.queue.iter().position(|(t, _)| *t == ticket) {
            state.queue.remove(at);
        } else {
            // In a round another thread is applying.
            state.gone.insert(ticket);
        }
    }
}

#[cfg(test)]
mod tests;
