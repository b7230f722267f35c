//! Writing the tables to the snapshot file and its key log: one writer at a time (periodic,
//! group-commit and final snapshots all come here), the version each snapshot made durable,
//! and the outcomes exported to `/metrics`. The snapshot's format and the crash-safe write are
//! [`crate::store::snapshot`]; the key log and the order of the two writes are `keylog.rs`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::keylog::{self, Log};
use super::tables::Tables;
use crate::exposition::{Exposition, FamilyType};
use crate::store::snapshot;

/// The snapshot file of one store.
pub(super) struct SnapshotFile {
    path: PathBuf,
    tables: Arc<RwLock<Tables>>,
    /// Serializes file writes; holds the version of the last snapshot written and the state
    /// of the key log.
    written: Mutex<Writer>,
    stats: Mutex<SnapshotStats>,
}

/// What the one writer keeps between snapshots.
struct Writer {
    /// The version of the last snapshot written.
    version: u64,
    log: Log,
}

/// What one snapshot write did.
pub(super) struct Written {
    /// The version the snapshot contains (every write up to it is in the file, if it succeeded).
    pub(super) version: u64,
    /// The number of metrics written, or why the file could not be written.
    pub(super) result: std::io::Result<usize>,
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

impl SnapshotFile {
    /// The snapshot file at `path` of `tables`, whose key log is in the state `log`.
    pub(super) fn new(path: PathBuf, tables: Arc<RwLock<Tables>>, log: Log) -> Self {
        Self {
            path,
            tables,
            written: Mutex::new(Writer { version: 0, log }),
            stats: Mutex::default(),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the tables changed since the last snapshot written (or none was written yet and
    /// no file exists).
    pub(super) fn changed(&self) -> bool {
        let written = self.written.lock().expect("poisoned").version;
        self.tables.read().expect("poisoned").version != written || !self.path.exists()
    }

    /// Serializes the tables under the read lock and writes them crash-safely: the key log's
    /// record of the new content first, then the snapshot, then (now and then) the log
    /// rewritten without expired keys (see `keylog.rs`).
    pub(super) fn write(&self) -> Written {
        let mut writer = self.written.lock().expect("poisoned");
        let started = Instant::now();
        let (version, bytes, count, new_keys, live, all_keys) = {
            let tables = self.tables.read().expect("poisoned");
            let live = tables.keys.len();
            // A rewrite must hold the keys as of this snapshot: read them under this lock.
            let all_keys = (live > 0 && keylog::wants_rewrite(&writer.log, live))
                .then(|| tables.keys.entries());
            let new_keys = tables.keys.since(writer.log.logged);
            let encoded = tables.encode();
            (
                tables.version,
                encoded,
                tables.len(),
                new_keys,
                live,
                all_keys,
            )
        };
        let hash = keylog::content_hash(&bytes);
        let logged = if live > 0 {
            keylog::append(&self.path, &mut writer.log, &hash, &new_keys)
        } else {
            Ok(())
        };
        if logged.is_ok() && live > 0 {
            writer.log.logged = version;
        }
        let result = logged.and_then(|()| snapshot::write_atomic(&self.path, &bytes));
        if result.is_ok() {
            // No key held: the log goes (no record means no keys); too large: rewritten.
            let rewritten = match (&all_keys, live) {
                (_, 0) => keylog::rewrite(&self.path, &mut writer.log, None, &[]),
                (Some(all), _) => keylog::rewrite(&self.path, &mut writer.log, Some(&hash), all),
                (None, _) => Ok(()),
            };
            if let Err(e) = rewritten {
                log::warn!(
                    "cannot rewrite key log {}: {e}; it keeps growing until a rewrite succeeds",
                    keylog::path_for(&self.path).display()
                );
            }
        }
        let mut stats = self.stats.lock().expect("poisoned");
        let result = match result {
            Ok(()) => {
                stats.last_success = Some((SystemTime::now(), started.elapsed()));
                stats.last_count = count;
                stats.written += 1;
                writer.version = version;
                Ok(count)
            }
            Err(e) => {
                stats.failed += 1;
                Err(e)
            }
        };
        Written { version, result }
    }

    /// Writes a snapshot if the tables changed since the last one; logs the outcome.
    pub(super) fn write_if_changed(&self, why: &str) {
        let written = self.written.lock().expect("poisoned").version;
        if self.tables.read().expect("poisoned").version == written {
            return;
        }
        let started = Instant::now();
        match self.write().result {
            Ok(count) => log::info!(
                "{why} snapshot: {count} metrics written to {} in {:?}",
                self.path.display(),
                started.elapsed()
            ),
            Err(e) => log::error!("{why} snapshot to {} failed: {e}", self.path.display()),
        }
    }

    /// The snapshot families of `/metrics`.
    pub(super) fn export(&self, out: &mut Exposition) {
        let stats = *self.stats.lock().expect("poisoned");
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

/// Fails with the path in the message if no file can be created next to `path`.
pub(super) fn check_writable(path: &Path) -> std::io::Result<()> {
    let dir = golectra_common::atomic_file::parent_dir(path);
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
