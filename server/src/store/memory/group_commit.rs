//! The group commit of sync mode (`STORE_INTERVAL=0`): durability [`Ticket`]s, the `snapshot`
//! thread that writes snapshots back to back while tickets wait, acknowledgement after the
//! fsync that covers a write, and what a failed snapshot tells its writers.
//!
//! Every write applied to the tables gets a version number; a snapshot contains every write up
//! to the version it read. A ticket waits for its version: the first snapshot attempt that
//! contains it decides — success acknowledges it, failure answers it with the reason. Tickets
//! that arrive while an attempt is under way wait for the next one, which then covers all of
//! them (concurrent writers share one fsync).
//!
//! After a failure the store *fails fast*: [`Committer::failing`] says why, the store refuses
//! new writes before applying them (503) and `/ping` answers 503, so the writes applied when
//! the snapshot failed are the only ones in doubt (their idempotency keys make the clients'
//! retries exact). The thread tries again every [`RETRY_PAUSE`] — one attempt a second on a
//! broken disk, not a loop — until a snapshot succeeds; then writes are accepted again.
//!
//! The thread knows nothing about tables or files: it calls the `write` function it was given
//! (see [`Committer::start`]), which is what the unit tests replace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::StoreError;

/// Time between snapshot attempts while snapshots fail.
pub(super) const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What one snapshot attempt did, as the group commit needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Attempt {
    /// The version the snapshot contained.
    pub(super) version: u64,
    /// `Err` with the reason when the snapshot could not be written.
    pub(super) result: Result<(), String>,
}

/// A promise from the memory store in sync mode: the write it was issued for is applied in
/// memory and will be on disk after the next snapshot. Hand it what to do then
/// ([`Ticket::on_durable`]) or wait for it ([`Ticket::wait`]).
#[must_use = "the write is not acknowledged until the ticket says it is durable"]
pub struct Ticket {
    version: u64,
    commit: Arc<GroupCommit>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Called once with the outcome of the snapshot covering a ticket's write.
type Ack = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

impl Ticket {
    /// Calls `ack` once the write is on disk, or with the error that prevented it. `ack` runs
    /// on the `snapshot` thread (or at once, here, if the outcome is already known), so it must
    /// not block: sending an HTTP response without blocking is what it is for.
    pub fn on_durable(self, ack: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        let commit = &self.commit;
        let mut state = commit.state.lock().expect("poisoned");
        if state.durable >= self.version {
            drop(state);
            return ack(Ok(()));
        }
        if let Some((attempted, why)) = &state.failed
            && *attempted >= self.version
        {
            let error = unavailable(why);
            drop(state);
            return ack(Err(error));
        }
        if state.ended {
            drop(state);
            return ack(Err(StoreError::Unavailable(
                "the store closed before the write was durable".into(),
            )));
        }
        state.waiters.push((self.version, Box::new(ack)));
        if state.requested < self.version {
            state.requested = self.version;
            commit.work.notify_one();
        }
    }

    /// Blocks until the write is on disk; the error if its snapshot failed.
    pub fn wait(self) -> Result<(), StoreError> {
        let (done, outcome) = std::sync::mpsc::sync_channel(1);
        self.on_durable(move |result| {
            let _ = done.send(result);
        });
        outcome.recv().unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the store closed before the write was durable".into(),
            ))
        })
    }
}

/// The error of a write that was applied in memory but whose snapshot failed.
fn unavailable(why: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the write was applied in memory but the snapshot could not be written: {why}"
    ))
}

/// State shared by the tickets and the `snapshot` thread.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<CommitState>,
    /// Wakes the snapshot thread when a ticket asks for a version not yet durable.
    work: Condvar,
    /// The last attempt failed and none succeeded since (read without the lock by writers).
    failing: AtomicBool,
}

#[derive(Default)]
struct CommitState {
    /// Highest version a ticket is waiting for.
    requested: u64,
    /// Highest version known to be on disk.
    durable: u64,
    /// The last failed snapshot: the version it would have made durable, and why it failed.
    failed: Option<(u64, String)>,
    /// Acknowledgements waiting for a version to be durable.
    waiters: Vec<(u64, Ack)>,
    /// Asked to stop: the thread ends once nothing requested is left.
    stop: bool,
    /// The thread ended: no snapshot will come.
    ended: bool,
}

/// The running group commit: issues tickets, owns the `snapshot` thread. Dropping it stops the
/// thread (once the requested work is done) without waiting for it.
pub(super) struct Committer {
    commit: Arc<GroupCommit>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Committer {
    /// Starts the `snapshot` thread; `write` writes a snapshot of everything applied so far.
    pub(super) fn start(
        mut write: impl FnMut() -> Attempt + Send + 'static,
    ) -> std::io::Result<Self> {
        let commit = Arc::new(GroupCommit::default());
        let thread = {
            let commit = commit.clone();
            std::thread::Builder::new()
                .name("snapshot".into())
                .spawn(move || {
                    commit_loop(&commit, &mut write);
                    commit.state.lock().expect("poisoned").ended = true;
                })?
        };
        Ok(Self {
            commit,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The ticket of the write that made the tables reach `version`.
    pub(super) fn ticket(&self, version: u64) -> Ticket {
        Ticket {
            version,
            commit: self.commit.clone(),
        }
    }

    /// Why writes must be refused now: the last snapshot failed and none succeeded since.
    pub(super) fn failing(&self) -> Option<String> {
        if !self.commit.failing.load(Ordering::Acquire) {
            return None;
        }
        let state = self.commit.state.lock().expect("poisoned");
        match &state.failed {
            Some((_, why)) if self.commit.failing.load(Ordering::Acquire) => Some(why.clone()),
            _ => None,
        }
    }

    /// Stops the thread after the snapshots tickets are waiting for, and waits for it.
    pub(super) fn stop(&self) {
        self.request_stop();
        if let Some(thread) = self.thread.lock().expect("poisoned").take() {
            let _ = thread.join();
        }
    }

    fn request_stop(&self) {
        let mut state = self.commit.state.lock().expect("poisoned");
        state.stop = true;
        self.commit.work.notify_all();
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.request_stop();
    }
}

/// Writes snapshots back to back while tickets wait; after a failure, again every
/// [`RETRY_PAUSE`] until one succeeds (or the store stops).
fn commit_loop(commit: &GroupCommit, write: &mut impl FnMut() -> Attempt) {
    let mut failures = 0u64;
    loop {
        {
            let mut state = commit.state.lock().expect("poisoned");
            if failures > 0 {
                state = commit
                    .work
                    .wait_timeout_while(state, RETRY_PAUSE, |s| !s.stop)
                    .expect("poisoned")
                    .0;
                if state.stop {
                    // The final snapshot of `close` is the last attempt; tickets still waiting
                    // would otherwise never hear.
                    let acks: Vec<Ack> = state.waiters.drain(..).map(|(_, ack)| ack).collect();
                    drop(state);
                    for ack in acks {
                        ack(Err(StoreError::Unavailable(
                            "the store closed before the write was durable".into(),
                        )));
                    }
                    return;
                }
            }
            while state.requested <= state.durable && !state.stop {
                state = commit.work.wait(state).expect("poisoned");
            }
            if state.stop && state.requested <= state.durable {
                return;
            }
        }
        let attempt = write();
        let mut state = commit.state.lock().expect("poisoned");
        // The writes this attempt covered, and what they are told.
        let covered = match &attempt.result {
            Ok(()) => {
                state.durable = state.durable.max(attempt.version);
                state.durable
            }
            Err(_) => attempt.version,
        };
        let acks: Vec<Ack> = state
            .waiters
            .extract_if(.., |(waiting_for, _)| *waiting_for <= covered)
            .map(|(_, ack)| ack)
            .collect();
        match &attempt.result {
            Err(why) => {
                if failures == 0 {
                    log::error!(
                        "sync snapshot failed: {why}; writes are refused (503) until a snapshot succeeds, tried again every {RETRY_PAUSE:?}"
                    );
                }
                failures += 1;
                state.failed = Some((attempt.version, why.clone()));
                commit.failing.store(true, Ordering::Release);
                // Until a snapshot succeeds, the writes it contained are in doubt: try again.
                let newest_waiting = state.waiters.iter().map(|(v, _)| *v).max();
                state.requested = newest_waiting
                    .unwrap_or(0)
                    .max(attempt.version)
                    .max(state.durable);
            }
            Ok(()) => {
                if failures > 0 {
                    log::warn!(
                        "sync snapshot succeeded again after {failures} failed attempts: writes are accepted again"
                    );
                }
                failures = 0;
                commit.failing.store(false, Ordering::Release);
            }
        }
        drop(state);
        // Acknowledge outside the lock: an acknowledgement writes an HTTP response.
        for ack in acks {
            ack(match &attempt.result {
                Ok(()) => Ok(()),
                Err(why) => Err(unavailable(why)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    const LONG: Duration = Duration::from_secs(30);
    const SHORT: Duration = Duration::from_millis(150);

    /// A fake snapshot writer: each attempt reports that it started (with the version it
    /// contains), then waits for the test to say how it ends.
    struct Disk {
        /// The version the "tables" are at.
        version: Arc<AtomicU64>,
        started: Receiver<u64>,
        finish: Sender<Result<(), String>>,
    }

    fn start() -> (Committer, Disk) {
        let version = Arc::new(AtomicU64::new(0));
        let (started_tx, started) = unbounded();
        let (finish, finish_rx) = unbounded::<Result<(), String>>();
        let committer = Committer::start({
            let version = version.clone();
            move || {
                let contains = version.load(Ordering::SeqCst);
                started_tx.send(contains).unwrap();
                Attempt {
                    version: contains,
                    result: finish_rx.recv().unwrap_or(Err("test over".into())),
                }
            }
        })
        .unwrap();
        (
            committer,
            Disk {
                version,
                started,
                finish,
            },
        )
    }

    impl Disk {
        /// A write applied to the "tables": the new version.
        fn apply(&self) -> u64 {
            self.version.fetch_add(1, Ordering::SeqCst) + 1
        }
    }

    /// Registers an acknowledgement; its outcome arrives on the returned channel.
    fn acked(ticket: Ticket) -> Receiver<Result<(), StoreError>> {
        let (tx, rx) = bounded(1);
        ticket.on_durable(move |outcome| tx.send(outcome).unwrap());
        rx
    }

    #[test]
    fn acknowledged_only_after_the_snapshot_covering_it() {
        let (committer, disk) = start();
        let v1 = disk.apply();
        let ack = acked(committer.ticket(v1));
        // The attempt started and contains the write, but the fsync has not completed.
        assert_eq!(disk.started.recv_timeout(LONG), Ok(v1));
        assert!(
            ack.recv_timeout(SHORT).is_err(),
            "acknowledged before the fsync"
        );
        disk.finish.send(Ok(())).unwrap();
        assert_eq!(ack.recv_timeout(LONG), Ok(Ok(())));
        // A ticket for a version already durable is acknowledged at once, without an attempt.
        assert_eq!(acked(committer.ticket(v1)).try_recv(), Ok(Ok(())));
        assert!(disk.started.recv_timeout(SHORT).is_err());
        committer.stop();
    }

    #[test]
    fn tickets_waiting_during_an_attempt_share_the_next_one() {
        let (committer, disk) = start();
        let first = acked(committer.ticket(disk.apply()));
        assert_eq!(disk.started.recv_timeout(LONG), Ok(1));
        // Three more writes while the first snapshot is being written.
        let later: Vec<_> = (0..3)
            .map(|_| acked(committer.ticket(disk.apply())))
            .collect();
        disk.finish.send(Ok(())).unwrap();
        assert_eq!(first.recv_timeout(LONG), Ok(Ok(())));
        // They were not in the first snapshot: one more attempt covers all three.
        assert_eq!(disk.started.recv_timeout(LONG), Ok(4));
        for ack in &later {
            assert!(ack.recv_timeout(SHORT).is_err());
        }
        disk.finish.send(Ok(())).unwrap();
        for ack in later {
            assert_eq!(ack.recv_timeout(LONG), Ok(Ok(())));
        }
        assert!(
            disk.started.recv_timeout(SHORT).is_err(),
            "one attempt for three writes"
        );
        committer.stop();
    }

    #[test]
    fn a_failed_snapshot_answers_with_the_reason() {
        let (committer, disk) = start();
        let v1 = disk.apply();
        let ack = acked(committer.ticket(v1));
        assert_eq!(disk.started.recv_timeout(LONG), Ok(v1));
        disk.finish
            .send(Err("No space left on device".into()))
            .unwrap();
        match ack.recv_timeout(LONG) {
            Ok(Err(StoreError::Unavailable(why))) => {
                assert!(why.contains("snapshot could not be written"), "{why}");
                assert!(why.contains("No space left on device"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // A late ticket for a write the failed snapshot contained gets the same answer at once.
        assert!(matches!(
            acked(committer.ticket(v1)).try_recv(),
            Ok(Err(StoreError::Unavailable(_)))
        ));
        // Writes are refused meanwhile; no retry loop on a broken disk: the next attempt comes
        // after the pause, and its success ends the refusal.
        assert!(committer.failing().unwrap().contains("No space left"));
        let failed_at = std::time::Instant::now();
        assert_eq!(disk.started.recv_timeout(LONG), Ok(v1));
        assert!(
            failed_at.elapsed() >= RETRY_PAUSE - SHORT,
            "retried in a loop"
        );
        disk.finish.send(Ok(())).unwrap();
        let deadline = std::time::Instant::now() + LONG;
        while committer.failing().is_some() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(acked(committer.ticket(v1)).try_recv(), Ok(Ok(())));
        committer.stop();
    }

    #[test]
    fn a_write_after_a_failed_attempt_keeps_its_request() {
        let (committer, disk) = start();
        let in_attempt = acked(committer.ticket(disk.apply()));
        assert_eq!(disk.started.recv_timeout(LONG), Ok(1));
        // Applied while the doomed attempt runs: not in it.
        let after = acked(committer.ticket(disk.apply()));
        disk.finish.send(Err("I/O error".into())).unwrap();
        assert!(matches!(
            in_attempt.recv_timeout(LONG),
            Ok(Err(StoreError::Unavailable(_)))
        ));
        // The later write still asks for its snapshot: a new attempt, which succeeds.
        assert_eq!(disk.started.recv_timeout(LONG), Ok(2));
        assert!(after.recv_timeout(SHORT).is_err());
        disk.finish.send(Ok(())).unwrap();
        assert_eq!(after.recv_timeout(LONG), Ok(Ok(())));
        // And a write after the failure, once the disk is back, is made durable too.
        let v3 = disk.apply();
        let ticket = committer.ticket(v3);
        let waiter = std::thread::spawn(move || ticket.wait());
        assert_eq!(disk.started.recv_timeout(LONG), Ok(3));
        disk.finish.send(Ok(())).unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(()));
        committer.stop();
    }

    #[test]
    fn stop_while_snapshots_fail_ends_without_waiting_for_the_disk() {
        let (committer, disk) = start();
        let first = acked(committer.ticket(disk.apply()));
        assert_eq!(disk.started.recv_timeout(LONG), Ok(1));
        // A write applied during the doomed attempt waits for the next one.
        let later = acked(committer.ticket(disk.apply()));
        disk.finish.send(Err("I/O error".into())).unwrap();
        assert!(matches!(first.recv_timeout(LONG), Ok(Err(_))));
        // Stopping during the pause: no more attempts, and the waiting write hears why.
        committer.stop();
        assert!(matches!(
            later.try_recv(),
            Ok(Err(StoreError::Unavailable(why))) if why.contains("closed")
        ));
        assert!(disk.started.try_recv().is_err());
    }

    #[test]
    fn stop_finishes_the_requested_snapshot_then_refuses() {
        let (committer, disk) = start();
        let ack = acked(committer.ticket(disk.apply()));
        assert_eq!(disk.started.recv_timeout(LONG), Ok(1));
        let stopping = {
            let finish = disk.finish.clone();
            std::thread::spawn(move || {
                std::thread::sleep(SHORT);
                finish.send(Ok(())).unwrap();
            })
        };
        committer.stop();
        stopping.join().unwrap();
        assert_eq!(ack.try_recv(), Ok(Ok(())));
        // After the thread ended a ticket is answered at once instead of never.
        assert!(matches!(
            committer.ticket(disk.apply()).wait(),
            Err(StoreError::Unavailable(_))
        ));
    }
}
