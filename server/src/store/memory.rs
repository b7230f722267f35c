//! The embedded default store: every metric in two hash maps behind one `RwLock`, made durable
//! by the snapshot file of [`super::snapshot`].
//!
//! Durability modes (SPEC §5.1):
//! - **periodic** (`STORE_INTERVAL=N>0`): a background thread writes a snapshot every N seconds
//!   when something changed, and once more at shutdown;
//! - **sync** (`STORE_INTERVAL=0`): a write returns only after a snapshot that contains it is on
//!   disk. Writers do not each write a file: they wait on a *group commit* — one thread writes
//!   snapshots back to back, and every write applied before a snapshot started is acknowledged by
//!   that snapshot's fsync. Concurrent writers therefore share fsyncs. The HTTP layer does not
//!   even wait: inside [`Store::deferring_durability`] a write only records its version, and
//!   the answer is sent from the snapshot thread by [`Store::when_durable`] once that version is
//!   on disk (or with the error if the snapshot failed), so one fsync covers every client;
//! - **none**: no file at all (tests, benchmarks).
//!
//! Every applied write bumps a version number under the write lock; a snapshot records the
//! version it contains, which is how the group commit knows whom it may acknowledge.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Sender, bounded, select, tick};
use golectra_common::metric::{MetricKind, Update};

use super::{Batch, DurableAck, Snapshot, Store, StoreError, Value, snapshot};
use crate::exposition::{Exposition, FamilyType};

/// How the memory store persists itself.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// The snapshot file.
    pub path: PathBuf,
    /// Time between snapshots; zero means every write is durable before it is acknowledged.
    pub interval: Duration,
    /// Load the file at start.
    pub restore: bool,
}

#[derive(Default)]
struct Tables {
    gauges: HashMap<String, f64>,
    counters: HashMap<String, i64>,
    /// Number of writes applied since start; identifies what a snapshot contains.
    version: u64,
    updated_at: Option<SystemTime>,
}

impl Tables {
    fn apply(&mut self, batch: &Batch) -> Result<(), StoreError> {
        // Check every counter first so that a batch is applied completely or not at all.
        for (name, delta) in &batch.counters {
            let current = self.counters.get(name.as_str()).copied().unwrap_or(0);
            if current.checked_add(*delta).is_none() {
                return Err(StoreError::Overflow { name: name.clone() });
            }
        }
        for (name, value) in &batch.gauges {
            match self.gauges.get_mut(name.as_str()) {
                Some(slot) => *slot = *value,
                None => {
                    self.gauges.insert(name.clone(), *value);
                }
            }
        }
        for (name, delta) in &batch.counters {
            match self.counters.get_mut(name.as_str()) {
                Some(total) => *total += delta,
                None => {
                    self.counters.insert(name.clone(), *delta);
                }
            }
        }
        self.version += 1;
        self.updated_at = Some(SystemTime::now());
        Ok(())
    }
}

/// Shared state of the group commit (sync mode).
#[derive(Default)]
struct CommitState {
    /// Highest version a writer is waiting for.
    requested: u64,
    /// Highest version known to be on disk.
    durable: u64,
    /// The last failed snapshot: the version it would have made durable, and why it failed.
    failed: Option<(u64, String)>,
    /// Acknowledgements waiting for a version to be durable.
    waiters: Vec<(u64, DurableAck)>,
    stop: bool,
}

#[derive(Default)]
struct GroupCommit {
    state: Mutex<CommitState>,
    /// Wakes the snapshot thread when a writer asks for durability.
    work: Condvar,
}

/// Outcomes of snapshot writes, for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
struct SnapshotStats {
    /// When the last successful snapshot finished, and how long it took.
    last_success: Option<(SystemTime, Duration)>,
    /// Metrics in the last successful snapshot.
    last_count: usize,
    written: u64,
    failed: u64,
}

struct SnapshotFile {
    options: SnapshotOptions,
    stats: Mutex<SnapshotStats>,
    /// Serializes file writes; holds the version of the last snapshot written.
    written: Mutex<u64>,
    commit: GroupCommit,
    /// Stops the background thread (periodic mode).
    stop_periodic: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The in-memory store.
pub struct MemoryStore {
    tables: RwLock<Tables>,
    file: Option<SnapshotFile>,
}

impl MemoryStore {
    /// A store without a snapshot file.
    pub fn ephemeral() -> Arc<Self> {
        Arc::new(Self {
            tables: RwLock::default(),
            file: None,
        })
    }

    /// Opens the store: restores the snapshot if asked, checks that the snapshot directory is
    /// writable, and starts the snapshot thread.
    pub fn open(options: SnapshotOptions) -> std::io::Result<Arc<Self>> {
        let path = options.path.clone();
        snapshot::remove_stale_temp_files(&path);
        let mut tables = Tables::default();
        if options.restore {
            let started = Instant::now();
            let restored = snapshot::restore(&path)?;
            let count = restored.len();
            for update in restored {
                match update {
                    Update::Gauge { name, value } => {
                        tables.gauges.insert(name, value);
                    }
                    Update::Counter { name, delta } => {
                        tables.counters.insert(name, delta);
                    }
                }
            }
            log::info!(
                "restored {count} metrics from {} in {:?}",
                path.display(),
                started.elapsed()
            );
        } else if path.exists() {
            log::warn!(
                "snapshot {} exists but RESTORE is false: its contents are not loaded and will be replaced by the next snapshot",
                path.display()
            );
        }
        check_writable(&path)?;
        let sync = options.interval.is_zero();
        let store = Arc::new(Self {
            tables: RwLock::new(tables),
            file: Some(SnapshotFile {
                options,
                stats: Mutex::default(),
                written: Mutex::new(0),
                commit: GroupCommit::default(),
                stop_periodic: Mutex::new(None),
                thread: Mutex::new(None),
            }),
        });
        let weak = Arc::downgrade(&store);
        let file = store.file.as_ref().expect("just set");
        let builder = std::thread::Builder::new().name("snapshot".into());
        let handle = if sync {
            builder.spawn(move || group_commit_loop(weak))?
        } else {
            let (stop_tx, stop_rx) = bounded::<()>(1);
            *file.stop_periodic.lock().expect("poisoned") = Some(stop_tx);
            let interval = file.options.interval;
            builder.spawn(move || {
                let ticker = tick(interval);
                loop {
                    select! {
                        recv(ticker) -> _ => match weak.upgrade() {
                            Some(store) => store.snapshot_if_changed("periodic"),
                            None => return,
                        },
                        recv(stop_rx) -> _ => return,
                    }
                }
            })?
        };
        *file.thread.lock().expect("poisoned") = Some(handle);
        Ok(store)
    }

    fn file(&self) -> &SnapshotFile {
        self.file
            .as_ref()
            .expect("only called with a snapshot file")
    }

    /// Writes a snapshot if the store changed since the last one; logs the outcome.
    fn snapshot_if_changed(&self, why: &str) {
        let written = *self.file().written.lock().expect("poisoned");
        if self.tables.read().expect("poisoned").version == written {
            return;
        }
        let started = Instant::now();
        match self.write_snapshot() {
            Ok((_, count)) => log::info!(
                "{why} snapshot: {count} metrics written to {} in {:?}",
                self.file().options.path.display(),
                started.elapsed()
            ),
            Err(e) => log::error!(
                "{why} snapshot to {} failed: {e}",
                self.file().options.path.display()
            ),
        }
    }

    /// Serializes the tables under the read lock and writes them crash-safely. Returns the
    /// version that is now durable and the number of metrics written.
    fn write_snapshot(&self) -> std::io::Result<(u64, usize)> {
        let file = self.file();
        let mut written = file.written.lock().expect("poisoned");
        let started = Instant::now();
        let (version, bytes, count) = {
            let tables = self.tables.read().expect("poisoned");
            let count = tables.gauges.len() + tables.counters.len();
            let bytes = snapshot::encode(
                tables.gauges.iter().map(|(k, v)| (k.as_str(), *v)),
                tables.counters.iter().map(|(k, v)| (k.as_str(), *v)),
                count,
            );
            (tables.version, bytes, count)
        };
        let result = snapshot::write_atomic(&file.options.path, &bytes);
        let mut stats = file.stats.lock().expect("poisoned");
        match result {
            Ok(()) => {
                stats.last_success = Some((SystemTime::now(), started.elapsed()));
                stats.last_count = count;
                stats.written += 1;
            }
            Err(e) => {
                stats.failed += 1;
                return Err(e);
            }
        }
        *written = version;
        Ok((version, count))
    }

    /// The snapshot file, if the store is in sync mode.
    fn sync_file(&self) -> Option<&SnapshotFile> {
        self.file
            .as_ref()
            .filter(|file| file.options.interval.is_zero())
    }

    /// In sync mode, waits until a snapshot containing `version` is on disk — or, inside
    /// [`Store::deferring_durability`], only records `version` for the caller to wait on.
    fn wait_durable(&self, version: u64) -> Result<(), StoreError> {
        if self.sync_file().is_none() {
            return Ok(());
        }
        if let Some(highest) = DEFERRED.get() {
            DEFERRED.set(Some(highest.max(version)));
            return Ok(());
        }
        let (done, result) = std::sync::mpsc::sync_channel(1);
        self.when_durable(
            version,
            Box::new(move |outcome| {
                let _ = done.send(outcome);
            }),
        );
        result.recv().unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the store closed before the write was durable".into(),
            ))
        })
    }

    fn apply_versioned(&self, batch: &Batch) -> Result<u64, StoreError> {
        let mut tables = self.tables.write().expect("poisoned");
        tables.apply(batch)?;
        Ok(tables.version)
    }
}

/// The snapshot thread of sync mode: writes snapshots back to back while writers wait.
fn group_commit_loop(store: Weak<MemoryStore>) {
    loop {
        let Some(strong) = store.upgrade() else {
            return;
        };
        let commit = &strong.file().commit;
        {
            let mut state = commit.state.lock().expect("poisoned");
            while state.requested <= state.durable && !state.stop {
                state = commit.work.wait(state).expect("poisoned");
            }
            if state.stop && state.requested <= state.durable {
                return;
            }
        }
        let attempted = strong.tables.read().expect("poisoned").version;
        let result = strong.write_snapshot();
        let mut state = commit.state.lock().expect("poisoned");
        // The writes this attempt covered, and what they are told.
        let (covered, failure) = match result {
            Ok((version, _)) => {
                state.durable = state.durable.max(version);
                (state.durable, None)
            }
            Err(e) => {
                log::error!(
                    "sync snapshot to {} failed: {e}",
                    strong.file().options.path.display()
                );
                (attempted, Some(e.to_string()))
            }
        };
        let acks: Vec<DurableAck> = state
            .waiters
            .extract_if(.., |(waiting_for, _)| *waiting_for <= covered)
            .map(|(_, ack)| ack)
            .collect();
        if let Some(why) = &failure {
            state.failed = Some((attempted, why.clone()));
            // Do not spin on a broken disk: only writes that were not in this attempt (and
            // writers that arrive later) trigger a new one.
            let newest_waiting = state.waiters.iter().map(|(v, _)| *v).max();
            state.requested = newest_waiting.unwrap_or(0).max(state.durable);
        }
        drop(state);
        // Acknowledge outside the lock: an acknowledgement writes an HTTP response.
        for ack in acks {
            ack(match &failure {
                None => Ok(()),
                Some(why) => Err(unavailable(why)),
            });
        }
    }
}

/// The error of a write that was applied in memory but whose snapshot failed.
fn unavailable(why: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the write was applied in memory but the snapshot could not be written: {why}"
    ))
}

thread_local! {
    /// Inside [`Store::deferring_durability`]: the highest version written so far (`Some(0)`
    /// before the first write); `None` outside, where sync-mode writes wait themselves.
    static DEFERRED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

fn check_writable(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".golectra-write-check-")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("snapshot directory {} is not writable: {e}", dir.display()),
            )
        })
}

impl Store for MemoryStore {
    fn update(&self, update: &Update) -> Result<Value, StoreError> {
        let batch = Batch::from(update);
        let (version, value) = {
            let mut tables = self.tables.write().expect("poisoned");
            tables.apply(&batch)?;
            let value = match update {
                Update::Gauge { value, .. } => Value::Gauge(*value),
                Update::Counter { name, .. } => Value::Counter(tables.counters[name.as_str()]),
            };
            (tables.version, value)
        };
        self.wait_durable(version)?;
        Ok(value)
    }

    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        let version = self.apply_versioned(batch)?;
        self.wait_durable(version)
    }

    fn get(&self, kind: MetricKind, name: &str) -> Result<Option<Value>, StoreError> {
        let tables = self.tables.read().expect("poisoned");
        Ok(match kind {
            MetricKind::Gauge => tables.gauges.get(name).map(|v| Value::Gauge(*v)),
            MetricKind::Counter => tables.counters.get(name).map(|v| Value::Counter(*v)),
        })
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let (mut gauges, mut counters, updated_at) = {
            let tables = self.tables.read().expect("poisoned");
            (
                tables
                    .gauges
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<Vec<_>>(),
                tables
                    .counters
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<Vec<_>>(),
                tables.updated_at,
            )
        };
        gauges.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        counters.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Snapshot {
            gauges,
            counters,
            updated_at,
        })
    }

    fn count(&self) -> Result<(usize, usize), StoreError> {
        let tables = self.tables.read().expect("poisoned");
        Ok((tables.gauges.len(), tables.counters.len()))
    }

    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn close(&self) -> Result<(), StoreError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if let Some(stop) = file.stop_periodic.lock().expect("poisoned").take() {
            let _ = stop.send(());
        }
        {
            let mut state = file.commit.state.lock().expect("poisoned");
            state.stop = true;
            file.commit.work.notify_all();
        }
        if let Some(handle) = file.thread.lock().expect("poisoned").take() {
            let _ = handle.join();
        }
        let written = *file.written.lock().expect("poisoned");
        if self.tables.read().expect("poisoned").version == written && file.options.path.exists() {
            return Ok(());
        }
        let started = Instant::now();
        let (_, count) = self.write_snapshot().map_err(|e| {
            StoreError::Unavailable(format!(
                "final snapshot to {} failed: {e}",
                file.options.path.display()
            ))
        })?;
        log::info!(
            "final snapshot: {count} metrics written to {} in {:?}",
            file.options.path.display(),
            started.elapsed()
        );
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn deferring_durability(&self, handler: &mut dyn FnMut()) -> Option<u64> {
        if self.sync_file().is_none() {
            handler();
            return None;
        }
        /// Ends the deferral even if the handler unwinds.
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                DEFERRED.set(None);
            }
        }
        let _reset = Reset;
        DEFERRED.set(Some(0));
        handler();
        DEFERRED.get().filter(|version| *version > 0)
    }

    fn when_durable(&self, version: u64, ack: DurableAck) {
        let Some(file) = self.sync_file() else {
            return ack(Ok(()));
        };
        let commit = &file.commit;
        let mut state = commit.state.lock().expect("poisoned");
        if state.durable >= version {
            drop(state);
            return ack(Ok(()));
        }
        if let Some((attempted, why)) = &state.failed
            && *attempted >= version
        {
            let error = unavailable(why);
            drop(state);
            return ack(Err(error));
        }
        state.waiters.push((version, ack));
        if state.requested < version {
            state.requested = version;
            commit.work.notify_one();
        }
    }

    fn export(&self, out: &mut Exposition) {
        let Some(file) = &self.file else {
            return;
        };
        let stats = *file.stats.lock().expect("poisoned");
        out.family(
            "golectra_snapshot_writes_total",
            "Snapshot files written successfully (periodic, synchronous and final).",
            FamilyType::Counter,
        )
        .sample(&[], stats.written);
        out.family(
            "golectra_snapshot_failures_total",
            "Snapshot writes that failed (the previous file stays in place).",
            FamilyType::Counter,
        )
        .sample(&[], stats.failed);
        if let Some((at, took)) = stats.last_success {
            let at = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            out.family(
                "golectra_snapshot_last_success_timestamp_seconds",
                "When the last successful snapshot finished (unix seconds).",
                FamilyType::Gauge,
            )
            .sample(&[], at.as_secs_f64());
            out.family(
                "golectra_snapshot_last_duration_seconds",
                "How long the last successful snapshot took: encoding, write, fsync and rename.",
                FamilyType::Gauge,
            )
            .sample(&[], took.as_secs_f64());
            out.family(
                "golectra_snapshot_last_metrics",
                "Metrics in the last successful snapshot.",
                FamilyType::Gauge,
            )
            .sample(&[], stats.last_count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path, interval: Duration, restore: bool) -> SnapshotOptions {
        SnapshotOptions {
            path: dir.join("db.json"),
            interval,
            restore,
        }
    }

    #[test]
    fn overflow_rejects_the_whole_batch() {
        let store = MemoryStore::ephemeral();
        store
            .update(&Update::Counter {
                name: "c".into(),
                delta: i64::MAX,
            })
            .unwrap();
        let batch = Batch::aggregate([
            Update::Gauge {
                name: "g".into(),
                value: 1.0,
            },
            Update::Counter {
                name: "c".into(),
                delta: 1,
            },
        ])
        .unwrap();
        assert_eq!(
            store.apply(&batch),
            Err(StoreError::Overflow { name: "c".into() })
        );
        assert_eq!(store.get(MetricKind::Gauge, "g"), Ok(None));
        assert_eq!(
            store.get(MetricKind::Counter, "c"),
            Ok(Some(Value::Counter(i64::MAX)))
        );
    }

    #[test]
    fn gauge_and_counter_share_a_name() {
        let store = MemoryStore::ephemeral();
        store
            .update(&Update::Gauge {
                name: "x".into(),
                value: 2.5,
            })
            .unwrap();
        assert_eq!(
            store.update(&Update::Counter {
                name: "x".into(),
                delta: 3
            }),
            Ok(Value::Counter(3))
        );
        assert_eq!(
            store.update(&Update::Counter {
                name: "x".into(),
                delta: 4
            }),
            Ok(Value::Counter(7))
        );
        assert_eq!(
            store.get(MetricKind::Gauge, "x"),
            Ok(Some(Value::Gauge(2.5)))
        );
    }

    #[test]
    fn sync_mode_is_durable_on_return() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::open(options(dir.path(), Duration::ZERO, false)).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        store
                            .update(&Update::Counter {
                                name: format!("c{t}"),
                                delta: 1,
                            })
                            .unwrap();
                        // Acknowledged means on disk: the file holds at least this total.
                        let on_disk =
                            snapshot::decode(&std::fs::read(dir_path(&store)).unwrap()).unwrap();
                        let total = on_disk.iter().find_map(|u| match u {
                            Update::Counter { name, delta } if *name == format!("c{t}") => {
                                Some(*delta)
                            }
                            _ => None,
                        });
                        assert!(total.unwrap() > i);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        store.close().unwrap();
    }

    fn dir_path(store: &MemoryStore) -> PathBuf {
        store.file().options.path.clone()
    }

    /// What a deferred acknowledgement receives.
    fn ack_of(store: &MemoryStore, version: u64) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        store.when_durable(
            version,
            Box::new(move |outcome| {
                tx.send(outcome).unwrap();
            }),
        );
        rx.recv_timeout(Duration::from_secs(30))
            .expect("acknowledged")
    }

    fn counter_on_disk(path: &Path, name: &str) -> Option<i64> {
        let on_disk = snapshot::decode(&std::fs::read(path).ok()?).ok()?;
        on_disk.iter().find_map(|u| match u {
            Update::Counter { name: n, delta } if n == name => Some(*delta),
            _ => None,
        })
    }

    #[test]
    fn deferred_writes_are_acknowledged_only_once_on_disk_or_with_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("d");
        std::fs::create_dir(&sub).unwrap();
        let store = MemoryStore::open(options(&sub, Duration::ZERO, false)).unwrap();
        let write = |delta| {
            let mut result = None;
            let version = store.deferring_durability(&mut || {
                result = Some(store.update(&Update::Counter {
                    name: "c".into(),
                    delta,
                }));
            });
            assert!(result.unwrap().is_ok());
            version.expect("a sync-mode write is deferred")
        };
        // Applied at once (readable), acknowledged once the file holds it.
        let v1 = write(5);
        assert_eq!(
            store.get(MetricKind::Counter, "c").unwrap(),
            Some(Value::Counter(5))
        );
        assert_eq!(ack_of(&store, v1), Ok(()));
        assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(5));
        // Nothing written inside the handler: nothing to wait for.
        assert_eq!(store.deferring_durability(&mut || {}), None);
        // A snapshot that cannot be written: the acknowledgement carries the error.
        std::fs::remove_dir_all(&sub).unwrap();
        let v2 = write(1);
        match ack_of(&store, v2) {
            Err(StoreError::Unavailable(why)) => assert!(why.contains("snapshot"), "{why}"),
            other => panic!("{other:?}"),
        }
        // The disk is back: the next write makes both durable.
        std::fs::create_dir(&sub).unwrap();
        let v3 = write(1);
        assert_eq!(ack_of(&store, v3), Ok(()));
        assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(7));
        // Outside a deferral a sync write still waits for itself.
        store
            .update(&Update::Counter {
                name: "c".into(),
                delta: 1,
            })
            .unwrap();
        assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(8));
        store.close().unwrap();
    }

    #[test]
    fn close_writes_and_restore_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            MemoryStore::open(options(dir.path(), Duration::from_secs(3600), false)).unwrap();
        store
            .update(&Update::Gauge {
                name: "g".into(),
                value: 0.1,
            })
            .unwrap();
        store
            .update(&Update::Counter {
                name: "g".into(),
                delta: 5,
            })
            .unwrap();
        store.close().unwrap();
        let again =
            MemoryStore::open(options(dir.path(), Duration::from_secs(3600), true)).unwrap();
        assert_eq!(
            again.get(MetricKind::Gauge, "g"),
            Ok(Some(Value::Gauge(0.1)))
        );
        assert_eq!(
            again.get(MetricKind::Counter, "g"),
            Ok(Some(Value::Counter(5)))
        );
        again.close().unwrap();
    }
}
