//! Store slots: how many workers may be inside a request that calls a store waiting on the
//! network (PostgreSQL) at once — one fewer than the workers — so that a database that stops
//! answering can never hold every worker, and `/ping` (the systemd watchdog's probe) always gets
//! a definite answer (docs/postgresql.md, "When the database goes away").
//!
//! A request that finds every slot taken waits for one while the database is answering: as long
//! as some slot has been held for less than [`SLOW`], slots come free at the database's pace and
//! the request is served a moment later, exactly as before slots existed. Once every slot has
//! been held for longer than [`SLOW`] the database is not answering, and the request gets `503`
//! at once; so does a waiting request when that point is reached. The last worker is then free
//! again at once for the next request. With `WORKERS=1` the one worker is the one slot, and
//! nothing is held in reserve.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::exposition::{Exposition, FamilyType};

/// How long every slot must have been held before a request that finds none free is refused
/// instead of waiting: far above a healthy call, far below the watchdog's probe timeout (15 s).
pub const SLOW: Duration = Duration::from_secs(5);

/// The slots of one server.
#[derive(Debug)]
pub struct StoreSlots {
    /// When each slot was taken; `None` while free.
    held: Mutex<Vec<Option<Instant>>>,
    freed: Condvar,
    refused: AtomicU64,
}

/// A taken slot; given back when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    slots: &'a StoreSlots,
    index: usize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.lock()[self.index] = None;
        self.slots.freed.notify_one();
    }
}

impl StoreSlots {
    /// Slots for a pool of `workers`: `workers - 1`, at least 1.
    pub fn for_workers(workers: usize) -> Self {
        Self {
            held: Mutex::new(vec![None; workers.saturating_sub(1).max(1)]),
            freed: Condvar::new(),
            refused: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Instant>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many requests may call the store at once.
    pub fn capacity(&self) -> usize {
        self.lock().len()
    }

    /// Takes a slot, waiting while one is likely to come free soon; or says why none will (the
    /// reason of a `503` to send at once; counted).
    pub fn take(&self) -> Result<Slot<'_>, String> {
        let mut held = self.lock();
        loop {
            let now = Instant::now();
            if let Some(index) = held.iter().position(Option::is_none) {
                held[index] = Some(now);
                return Ok(Slot { slots: self, index });
            }
            let youngest = held.iter().flatten().max().copied().unwrap_or(now);
            let slow_at = youngest + SLOW;
            if now >= slow_at {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(format!(
                    "store unavailable: all {} requests the store may serve at once have waited over {} s for PostgreSQL; nothing was applied, try again",
                    held.len(),
                    SLOW.as_secs()
                ));
            }
            held = self
                .freed
                .wait_timeout(held, slow_at - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// `golectra_store_slots` and `golectra_store_slot_refusals_total`.
    pub fn export(&self, out: &mut Exposition) {
        let (capacity, busy) = {
            let held = self.lock();
            (held.len(), held.iter().flatten().count())
        };
        out.family(
            "golectra_store_slots",
            "Requests that may wait on the PostgreSQL store at once (one fewer than the workers), and how many do now.",
            FamilyType::Gauge,
        )
        .sample(&[("state", "capacity")], capacity as u64)
        .sample(&[("state", "busy")], busy as u64);
        out.family(
            "golectra_store_slot_refusals_total",
            "Requests answered 503 at once because every store slot had waited on PostgreSQL for over 5 s.",
            FamilyType::Counter,
        )
        .sample(&[], self.refused.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_waits_for_a_slot_that_comes_free() {
        let slots = StoreSlots::for_workers(3);
        assert_eq!(slots.capacity(), 2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| slots.take().map(|slot| slot.index));
            std::thread::sleep(Duration::from_millis(50));
            drop(a);
            assert_eq!(waiter.join().unwrap().unwrap(), 0);
        });
        assert_eq!(slots.refused.load(Ordering::Relaxed), 0);
        assert_eq!(StoreSlots::for_workers(1).capacity(), 1);
    }

    #[test]
    fn slots_held_too_long_refuse_at_once() {
        let slots = StoreSlots::for_workers(3);
        let _a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        // Both taken longer ago than SLOW: the database is not answering.
        for held in slots.lock().iter_mut() {
            *held = Some(Instant::now() - SLOW);
        }
        let started = Instant::now();
        let refusal = slots.take().unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            refusal,
            "store unavailable: all 2 requests the store may serve at once have waited over 5 s for PostgreSQL; nothing was applied, try again"
        );
        assert_eq!(slots.refused.load(Ordering::Relaxed), 1);
        // One held for less than SLOW: a waiter gives up when it reaches SLOW.
        slots.lock()[1] = Some(Instant::now() - SLOW + Duration::from_millis(100));
        let started = Instant::now();
        assert!(slots.take().is_err());
        assert!(started.elapsed() >= Duration::from_millis(90));
    }
}
