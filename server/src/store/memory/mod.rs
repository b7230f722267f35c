//! The embedded default store: every metric in two hash maps behind one `RwLock`, made durable
//! by the snapshot file of [`super::snapshot`].
//!
//! # Durability (the contract: `docs/storage.md`)
//!
//! What "acknowledged" means is in what a write returns ([`Written`]), never in who calls it:
//! - **none** (no file: tests, benchmarks) and **periodic** (`STORE_INTERVAL=N>0`): every write
//!   is [`Durable::Now`]. The periodic thread (`periodic.rs`) writes a snapshot every N seconds
//!   when something changed, and [`Store::close`] writes the final one at shutdown;
//! - **sync** (`STORE_INTERVAL=0`): a write is applied to the tables at once (readable
//!   immediately) and returns [`Durable::After`] with a [`Ticket`] for its version. The caller
//!   acknowledges it when the ticket says so: the HTTP worker hands the reply to the ticket and
//!   moves on; the `snapshot` thread of the group commit (`group_commit.rs`) sends it after the
//!   fsync of a snapshot that contains the write, or answers 503 with the reason if that
//!   snapshot failed (the write stays applied and goes out with the next successful one). One
//!   snapshot covers every write applied before it started, so concurrent writers share fsyncs
//!   and no thread waits for the disk.
//!
//! Every applied write bumps a version number under the write lock (`tables.rs`); a snapshot
//! records the version it contains (`file.rs`), which is how the group commit knows which
//! tickets it may acknowledge. Once a sync snapshot fails, writes are refused before they are
//! applied until one succeeds (`group_commit.rs`).
//!
//! # Idempotency keys
//!
//! The keys of applied writes (`keys.rs`) live in the tables, under the same lock: a keyed
//! write is checked, applied and recorded in one step, and a repeat returns the recorded
//! result with the durability of the first write (in sync mode: the ticket of its version, so
//! a repeat of a write not yet on disk is acknowledged only once it is). Every snapshot writes
//! the keys to a key file named after the snapshot's content, before the snapshot itself
//! (`keyfile.rs` explains why no crash can double-apply or drop a retried key).

mod file;
mod group_commit;
mod keyfile;
mod keys;
mod periodic;
mod tables;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use golectra_common::metric::{MetricKind, Update};

use super::idempotency::{Key, KeyOptions};
use super::{Batch, Durable, Reading, Store, StoreError, StoreKind, Value, Written, snapshot};
use crate::exposition::{Exposition, FamilyType};
use crate::ticker::Ticker;
use file::SnapshotFile;
pub use group_commit::Ticket;
use group_commit::{Attempt, Committer};
use keys::KeyTable;
use tables::Tables;

/// How the memory store persists itself.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// The snapshot file.
    pub path: PathBuf,
    /// Time between snapshots; zero means every write is durable before it is acknowledged.
    pub interval: Duration,
    /// Load the file at start.
    pub restore: bool,
    /// How long idempotency keys are held, and how many.
    pub keys: KeyOptions,
}

/// The in-memory store.
pub struct MemoryStore {
    tables: Arc<RwLock<Tables>>,
    persistence: Persistence,
}

/// Where the tables go, and when.
enum Persistence {
    /// Nowhere: an ephemeral store.
    None,
    /// A snapshot every interval; the ticker until [`Store::close`] stops it.
    Periodic {
        file: Arc<SnapshotFile>,
        ticker: Mutex<Option<Ticker>>,
    },
    /// Every write durable before it is acknowledged: tickets of the group commit.
    Sync {
        file: Arc<SnapshotFile>,
        commit: Committer,
    },
}

impl MemoryStore {
    /// A store without a snapshot file, holding keys as `KeyOptions::default()` says.
    pub fn ephemeral() -> Arc<Self> {
        Arc::new(Self {
            tables: Arc::default(),
            persistence: Persistence::None,
        })
    }

    /// Opens the store: restores the snapshot if asked, checks that the snapshot directory is
    /// writable, and starts the snapshot thread.
    pub fn open(options: SnapshotOptions) -> std::io::Result<Arc<Self>> {
        let path = options.path;
        snapshot::remove_stale_temp_files(&path);
        let tables = if options.restore {
            let started = Instant::now();
            let restored = snapshot::restore(&path)?;
            let count = restored.metrics.len();
            let held = keyfile::load(&path, restored.content.as_deref());
            let keys = KeyTable::restored(options.keys, held, unix_now());
            keyfile::remove_others(
                &path,
                restored
                    .content
                    .as_deref()
                    .map(|content| keyfile::path_for(&path, content))
                    .as_deref(),
            );
            let tables = Tables::restored(restored.metrics, keys);
            log::info!(
                "restored {count} metrics and {} idempotency keys from {} in {:?}",
                tables.keys.len(),
                path.display(),
                started.elapsed()
            );
            tables
        } else {
            if path.exists() {
                log::warn!(
                    "snapshot {} exists but RESTORE is false: its contents are not loaded and will be replaced by the next snapshot",
                    path.display()
                );
            }
            keyfile::remove_others(&path, None);
            Tables {
                keys: KeyTable::new(options.keys),
                ..Tables::default()
            }
        };
        file::check_writable(&path)?;
        let tables = Arc::new(RwLock::new(tables));
        let file = Arc::new(SnapshotFile::new(path, tables.clone()));
        let persistence = if options.interval.is_zero() {
            let commit = Committer::start({
                let file = file.clone();
                move || {
                    let written = file.write();
                    let result = written
                        .result
                        .map(drop)
                        .map_err(|e| format!("{}: {e}", file.path().display()));
                    Attempt {
                        version: written.version,
                        result,
                    }
                }
            })?;
            Persistence::Sync { file, commit }
        } else {
            let ticker = periodic::start(file.clone(), options.interval)?;
            Persistence::Periodic {
                file,
                ticker: Mutex::new(Some(ticker)),
            }
        };
        Ok(Arc::new(Self {
            tables,
            persistence,
        }))
    }

    /// When a write that brought the tables to `version` is durable.
    fn durability(&self, version: u64) -> Durable {
        match &self.persistence {
            Persistence::Sync { commit, .. } => Durable::After(commit.ticket(version)),
            Persistence::None | Persistence::Periodic { .. } => Durable::Now,
        }
    }

    fn file(&self) -> Option<&SnapshotFile> {
        match &self.persistence {
            Persistence::None => None,
            Persistence::Periodic { file, .. } | Persistence::Sync { file, .. } => Some(file),
        }
    }
}

impl MemoryStore {
    /// Refuses a write before it is applied while sync snapshots fail.
    fn refuse_while_failing(&self) -> Result<(), StoreError> {
        match &self.persistence {
            Persistence::Sync { commit, .. } => match commit.failing() {
                Some(why) => Err(StoreError::Unavailable(format!(
                    "the last snapshot failed ({why}): writes are refused until one succeeds; nothing was applied"
                ))),
                None => Ok(()),
            },
            Persistence::None | Persistence::Periodic { .. } => Ok(()),
        }
    }

    /// Applies `batch` under `key`, all under the write lock; `stored` reads what a
    /// single-metric write leaves stored (recorded with its key, returned by repeats).
    fn write<T>(
        &self,
        batch: &Batch,
        key: Option<&Key>,
        stored: impl FnOnce(&Tables) -> Option<Value>,
        result: impl FnOnce(Option<Value>) -> Result<T, StoreError>,
    ) -> Result<Written<T>, StoreError> {
        self.refuse_while_failing()?;
        let now = key.map(|_| unix_now());
        let (version, value, repeat) = {
            let mut tables = self.tables.write().expect("poisoned");
            let earlier = match (key, now) {
                (Some(key), Some(now)) => tables.keys.check(key, now)?,
                _ => None,
            };
            match earlier {
                Some(held) => (held.version, held.stored, true),
                None => {
                    tables.apply(batch)?;
                    let value = stored(&tables);
                    let version = tables.version;
                    if let (Some(key), Some(now)) = (key, now) {
                        tables.keys.record(key, value, version, now);
                    }
                    (version, value, false)
                }
            }
        };
        Ok(Written {
            value: result(value)?,
            durable: self.durability(version),
            repeat,
        })
    }
}

/// Unix seconds now (the clock of key retention, which must survive restarts).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Store for MemoryStore {
    fn update(&self, update: &Update, key: Option<&Key>) -> Result<Written<Value>, StoreError> {
        // Built outside the lock: the lock is held only to apply.
        let batch = Batch::from(update);
        self.write(
            &batch,
            key,
            |tables| Some(tables.stored(update)),
            // A repeat whose first write stored nothing was a batch: the same key and
            // fingerprint on another endpoint cannot happen, but would be another request.
            |value| {
                value.ok_or_else(|| StoreError::KeyReused {
                    key: key.map(|k| k.text.clone()).unwrap_or_default(),
                })
            },
        )
    }

    fn apply(&self, batch: &Batch, key: Option<&Key>) -> Result<Written<()>, StoreError> {
        self.write(batch, key, |_| None, |_| Ok(()))
    }

    fn get(&self, kind: MetricKind, name: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.tables.read().expect("poisoned").get(kind, name))
    }

    fn read_all(&self) -> Result<Reading, StoreError> {
        let mut snapshot = self.tables.read().expect("poisoned").read_all();
        snapshot.gauges.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        snapshot.counters.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(snapshot)
    }

    fn count(&self) -> Result<(usize, usize), StoreError> {
        let tables = self.tables.read().expect("poisoned");
        Ok((tables.gauges.len(), tables.counters.len()))
    }

    /// Fails while sync snapshots fail (writes are refused meanwhile).
    fn ping(&self) -> Result<(), StoreError> {
        self.refuse_while_failing()
    }

    /// Stops the snapshot thread (in sync mode after the snapshots tickets wait for), then
    /// writes the final snapshot if anything changed since the last one.
    fn close(&self) -> Result<(), StoreError> {
        let file = match &self.persistence {
            Persistence::None => return Ok(()),
            Persistence::Periodic { file, ticker } => {
                if let Some(ticker) = ticker.lock().expect("poisoned").take() {
                    ticker.stop();
                }
                file
            }
            Persistence::Sync { file, commit } => {
                commit.stop();
                file
            }
        };
        if !file.changed() {
            return Ok(());
        }
        let started = Instant::now();
        let count = file.write().result.map_err(|e| {
            StoreError::Unavailable(format!(
                "final snapshot to {} failed: {e}",
                file.path().display()
            ))
        })?;
        log::info!(
            "final snapshot: {count} metrics written to {} in {:?}",
            file.path().display(),
            started.elapsed()
        );
        Ok(())
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }

    fn export(&self, out: &mut Exposition) {
        if let Some(file) = self.file() {
            file.export(out);
        }
        let held = self.tables.read().expect("poisoned").keys.len();
        out.family(
            "golectra_idempotency_keys",
            "Idempotency keys held (applied writes whose retries are recognised).",
            FamilyType::Gauge,
        )
        .sample(&[], held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn options(dir: &Path, interval: Duration, restore: bool) -> SnapshotOptions {
        SnapshotOptions {
            path: dir.join("db.json"),
            interval,
            restore,
            keys: KeyOptions::default(),
        }
    }

    #[test]
    fn overflow_rejects_the_whole_batch() {
        let store = MemoryStore::ephemeral();
        store
            .update(
                &Update::Counter {
                    name: "c".into(),
                    delta: i64::MAX,
                },
                None,
            )
            .unwrap()
            .wait()
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
            store.apply(&batch, None).and_then(Written::wait),
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
            .update(
                &Update::Gauge {
                    name: "x".into(),
                    value: 2.5,
                },
                None,
            )
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(
            store
                .update(
                    &Update::Counter {
                        name: "x".into(),
                        delta: 3
                    },
                    None
                )
                .and_then(Written::wait),
            Ok(Value::Counter(3))
        );
        assert_eq!(
            store
                .update(
                    &Update::Counter {
                        name: "x".into(),
                        delta: 4
                    },
                    None
                )
                .and_then(Written::wait),
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
                            .update(
                                &Update::Counter {
                                    name: format!("c{t}"),
                                    delta: 1,
                                },
                                None,
                            )
                            .and_then(Written::wait)
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
        store.file().expect("a snapshot file").path().to_owned()
    }

    /// What the acknowledgement handed to a write's ticket receives.
    fn ack_of(written: Written<Value>) -> Result<(), StoreError> {
        let Durable::After(ticket) = written.durable else {
            panic!("a sync-mode write returns a ticket");
        };
        let (tx, rx) = std::sync::mpsc::channel();
        ticket.on_durable(move |outcome| {
            tx.send(outcome).unwrap();
        });
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
    fn sync_writes_are_acknowledged_only_once_on_disk_or_with_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("d");
        std::fs::create_dir(&sub).unwrap();
        let store = MemoryStore::open(options(&sub, Duration::ZERO, false)).unwrap();
        let write = |delta| {
            store
                .update(
                    &Update::Counter {
                        name: "c".into(),
                        delta,
                    },
                    None,
                )
                .unwrap()
        };
        // Applied at once (readable), acknowledged once the file holds it.
        let w1 = write(5);
        assert_eq!(w1.value, Value::Counter(5));
        assert_eq!(
            store.get(MetricKind::Counter, "c").unwrap(),
            Some(Value::Counter(5))
        );
        assert_eq!(ack_of(w1), Ok(()));
        assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(5));
        // A write that applies nothing (an overflow) returns no ticket: it is an error.
        assert!(
            store
                .update(
                    &Update::Counter {
                        name: "c".into(),
                        delta: i64::MAX,
                    },
                    None
                )
                .is_err()
        );
        // A snapshot that cannot be written: the acknowledgement carries the error.
        std::fs::remove_dir_all(&sub).unwrap();
        match ack_of(write(1)) {
            Err(StoreError::Unavailable(why)) => assert!(why.contains("snapshot"), "{why}"),
            other => panic!("{other:?}"),
        }
        // The disk is back: the next write makes both durable.
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(ack_of(write(1)), Ok(()));
        assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(7));
        // A caller without a reply to hand over waits on the ticket.
        assert_eq!(write(1).wait(), Ok(Value::Counter(8)));
        assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(8));
        store.close().unwrap();
    }

    #[test]
    fn periodic_and_ephemeral_writes_are_durable_now() {
        let dir = tempfile::tempdir().unwrap();
        let periodic =
            MemoryStore::open(options(dir.path(), Duration::from_secs(3600), false)).unwrap();
        for store in [periodic.clone(), MemoryStore::ephemeral()] {
            let written = store
                .apply(
                    &Batch::from(&Update::Gauge {
                        name: "g".into(),
                        value: 1.0,
                    }),
                    None,
                )
                .unwrap();
            assert!(matches!(written.durable, Durable::Now));
        }
        periodic.close().unwrap();
    }

    #[test]
    fn periodic_snapshots_follow_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            MemoryStore::open(options(dir.path(), Duration::from_millis(50), false)).unwrap();
        store
            .update(
                &Update::Counter {
                    name: "c".into(),
                    delta: 3,
                },
                None,
            )
            .unwrap()
            .wait()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while counter_on_disk(&dir_path(&store), "c") != Some(3) {
            assert!(Instant::now() < deadline, "no periodic snapshot");
            std::thread::sleep(Duration::from_millis(10));
        }
        store.close().unwrap();
    }

    #[test]
    fn close_writes_and_restore_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            MemoryStore::open(options(dir.path(), Duration::from_secs(3600), false)).unwrap();
        store
            .update(
                &Update::Gauge {
                    name: "g".into(),
                    value: 0.1,
                },
                None,
            )
            .unwrap()
            .wait()
            .unwrap();
        store
            .update(
                &Update::Counter {
                    name: "g".into(),
                    delta: 5,
                },
                None,
            )
            .unwrap()
            .wait()
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
