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
//! a repeat of a write not yet on disk is acknowledged only once it is). Before every snapshot
//! the keys applied since the last one are appended to the key log under the hash of the
//! snapshot's content (`keylog.rs` explains why no crash can double-apply or drop a retried
//! key).
//!
//! # Size
//!
//! At most `MAX_METRICS` gauges and as many counters ([`MaxMetrics`]): the check is part of
//! applying a batch under the write lock (`tables.rs`), so it is exact, and a refused write
//! records no key.

mod file;
mod group_commit;
mod keylog;
mod keys;
mod periodic;
mod tables;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use golectra_common::metric::{MetricKind, Update};

use super::idempotency::{Key, KeyOptions};
use super::{
    Batch, Cutoff, Durable, MaxMetrics, Reading, Removed, Selection, Store, StoreError, StoreKind,
    Value, Written, snapshot,
};
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
    /// The most gauges, and the most counters, held (`MAX_METRICS`).
    pub max_metrics: MaxMetrics,
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
        Self::ephemeral_with(KeyOptions::default())
    }

    /// A store without a snapshot file, holding keys as `keys` says (benchmarks, tests).
    pub fn ephemeral_with(keys: KeyOptions) -> Arc<Self> {
        Self::ephemeral_limited(keys, MaxMetrics::DEFAULT)
    }

    /// A store without a snapshot file, holding keys as `keys` says and at most `max_metrics`
    /// names per type (tests).
    pub fn ephemeral_limited(keys: KeyOptions, max_metrics: MaxMetrics) -> Arc<Self> {
        Arc::new(Self {
            tables: Arc::new(RwLock::new(Tables::new(KeyTable::new(keys), max_metrics))),
            persistence: Persistence::None,
        })
    }

    /// Opens the store: restores the snapshot if asked, checks that the snapshot directory is
    /// writable, and starts the snapshot thread.
    pub fn open(options: SnapshotOptions) -> std::io::Result<Arc<Self>> {
        let path = options.path;
        snapshot::remove_stale_temp_files(&path);
        snapshot::remove_stale_temp_files(&keylog::path_for(&path));
        let mut log = keylog::Log::default();
        let tables = if options.restore {
            let started = Instant::now();
            let restored = snapshot::restore(&path)?;
            let count = restored.metrics.len();
            let held = keylog::load(&path, restored.content.as_deref());
            let keys = KeyTable::restored(options.keys, held, unix_now());
            // The log holds exactly the restored keys from now on: records of snapshots that
            // were never in place must not join a later snapshot's keys.
            let hash = restored.content.as_deref().map(keylog::content_hash);
            keylog::rewrite(&path, &mut log, hash.as_ref(), &keys.entries())?;
            let tables = Tables::restored(restored, keys, options.max_metrics);
            for (kind, held) in [
                ("gauges", tables.gauges.len()),
                ("counters", tables.counters.len()),
            ] {
                if held > options.max_metrics.0 {
                    log::warn!(
                        "the snapshot holds {held} {kind}, more than MAX_METRICS={}: all are kept and served, writes adding new {kind} are refused (409) until MAX_METRICS is raised",
                        options.max_metrics.0
                    );
                }
            }
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
            keylog::rewrite(&path, &mut log, None, &[])?;
            Tables::new(KeyTable::new(options.keys), options.max_metrics)
        };
        file::check_writable(&path)?;
        let tables = Arc::new(RwLock::new(tables));
        let file = Arc::new(SnapshotFile::new(path, tables.clone(), log));
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
        let keyed = key.map(|key| (key, unix_now()));
        let (version, value, repeat) = {
            let mut tables = self.tables.write().expect("poisoned");
            let earlier = match keyed {
                Some((key, now)) => tables.keys.check(key, now)?,
                None => None,
            };
            match earlier {
                Some(held) => (held.version, held.stored, true),
                None => {
                    tables.apply(batch)?;
                    let value = stored(&tables);
                    let version = tables.version;
                    if let Some((key, now)) = keyed {
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

impl MemoryStore {
    /// What a removal returns: durable now when nothing was removed, else like a write that
    /// brought the tables to `version`.
    fn removed(&self, removed: Removed, version: u64) -> Written<Removed> {
        let durable = match removed.is_empty() {
            true => Durable::Now,
            false => self.durability(version),
        };
        Written {
            value: removed.sorted(),
            durable,
            repeat: false,
        }
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

    fn delete(&self, selection: &Selection) -> Result<Written<Removed>, StoreError> {
        self.refuse_while_failing()?;
        let mut tables = self.tables.write().expect("poisoned");
        let (gauges, counters) = tables.selected(selection);
        let removed = tables.remove(gauges, counters);
        let version = tables.version;
        drop(tables);
        Ok(self.removed(removed, version))
    }

    /// Looks for expired metrics under the read lock (writers go on meanwhile), then removes
    /// those still expired under the write lock.
    fn expire(&self, cutoff: &Cutoff) -> Result<Written<Removed>, StoreError> {
        self.refuse_while_failing()?;
        let (gauges, counters) = self.tables.read().expect("poisoned").expired(cutoff);
        if gauges.is_empty() && counters.is_empty() {
            return Ok(Written::now(Removed::default()));
        }
        let mut tables = self.tables.write().expect("poisoned");
        let gauges = Tables::still_older(&tables.gauges, gauges, cutoff.gauges);
        let counters = Tables::still_older(&tables.counters, counters, cutoff.counters);
        let removed = tables.remove(gauges, counters);
        let version = tables.version;
        drop(tables);
        Ok(self.removed(removed, version))
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
mod tests;
