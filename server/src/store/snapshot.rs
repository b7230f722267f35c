//! The snapshot file of the memory store (docs/storage.md): a JSON array of metrics in the wire form,
//! `[{"id":"Alloc","type":"gauge","value":1.5,"updated":1764547200000},{"id":"PollCount","type":"counter","delta":7,"updated":…}]`,
//! the format the original writes and reads, plus `updated`: when the metric was last written,
//! in Unix milliseconds. The original's loader ignores fields it does not know, so it reads
//! these files; a file without `updated` (the original's) is read as written when the file was.
//!
//! Writes are crash-safe: the bytes go to a temporary file in the same directory, which is
//! fsynced, renamed over the old snapshot, and the directory is fsynced. A `kill -9` at any
//! moment leaves the old or the new snapshot, never a torn or empty one.

use std::borrow::Cow;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use golectra_common::atomic_file;
use golectra_common::metric::{Metric, Update};

/// Temporary files are named `.<snapshot name>.golectra-tmp-<random>`, so that leftovers of a
/// crash can be recognised and removed — only this snapshot's, never those of another server
/// whose snapshot lives in the same directory.
fn temp_prefix(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    format!(".{}.golectra-tmp-", name.unwrap_or_default())
}

/// One entry of the file: a metric in the wire form (the fields of [`Metric`]) and when it was
/// last written. Spelled out rather than flattened: serde's `flatten` buffers every entry.
#[derive(serde::Serialize, serde::Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delta: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated: Option<u64>,
}

impl<'a> Entry<'a> {
    fn new(metric: Metric<'a>, updated: u64) -> Self {
        Self {
            id: metric.id,
            kind: metric.kind,
            delta: metric.delta,
            value: metric.value,
            updated: Some(updated),
        }
    }

    fn to_update(&self) -> Result<Update, golectra_common::metric::InvalidMetric> {
        Metric {
            id: Cow::Borrowed(&self.id),
            kind: Cow::Borrowed(&self.kind),
            delta: self.delta,
            value: self.value,
        }
        .to_update()
    }
}

/// Serializes metrics with the times they were last written (Unix milliseconds) into the
/// snapshot format.
pub fn encode<'a>(
    gauges: impl Iterator<Item = (&'a str, f64, u64)>,
    counters: impl Iterator<Item = (&'a str, i64, u64)>,
    capacity_hint: usize,
) -> Vec<u8> {
    use serde::ser::{SerializeSeq, Serializer};
    let mut out = Vec::with_capacity(capacity_hint * 64 + 2);
    let mut ser = serde_json::Serializer::new(&mut out);
    let mut seq = ser
        .serialize_seq(None)
        .expect("serializing to a Vec cannot fail");
    for (name, value, updated) in gauges {
        seq.serialize_element(&Entry::new(Metric::gauge(name, value), updated))
            .expect("serializing to a Vec cannot fail");
    }
    for (name, delta, updated) in counters {
        seq.serialize_element(&Entry::new(Metric::counter(name, delta), updated))
            .expect("serializing to a Vec cannot fail");
    }
    seq.end().expect("serializing to a Vec cannot fail");
    out
}

/// Why a snapshot file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read at all (permissions, I/O error). The server refuses to start.
    Io(io::Error),
    /// The file is not a valid snapshot. It is moved aside and the server starts empty.
    Corrupt(String),
}

/// Parses snapshot bytes. Empty (or whitespace-only) content is an empty store. Later entries
/// for the same (type, name) replace earlier ones, as a reload of the original's file would.
pub fn decode(bytes: &[u8]) -> Result<Vec<Update>, LoadError> {
    Ok(decode_with_times(bytes)?
        .into_iter()
        .map(|(update, _)| update)
        .collect())
}

/// [`decode`], with each metric's `updated` time (Unix milliseconds) when the file has it.
pub fn decode_with_times(bytes: &[u8]) -> Result<Vec<(Update, Option<u64>)>, LoadError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let entries: Vec<Entry> = serde_json::from_slice(bytes)
        .map_err(|e| LoadError::Corrupt(format!("not a JSON array of metrics: {e}")))?;
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.to_update()
                .map(|update| (update, e.updated))
                .map_err(|e| LoadError::Corrupt(format!("entry {i}: {e}")))
        })
        .collect()
}

/// A snapshot file as loaded at start.
#[derive(Debug, Default, PartialEq)]
pub struct Restored {
    /// Its metrics, with when each was last written (Unix milliseconds) if the file says.
    pub metrics: Vec<(Update, Option<u64>)>,
    /// When the file was last written (its modification time), if it was read.
    pub written: Option<SystemTime>,
    /// Its bytes, when a valid file was read (their hash names its records in the key log).
    pub content: Option<Vec<u8>>,
}

/// Loads the snapshot at `path` for `RESTORE=true`. A missing file is an empty store; a corrupt
/// one is renamed to `<path>.corrupt-<unix seconds>` and reported, and the store starts empty.
pub fn restore(path: &Path) -> Result<Restored, io::Error> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::info!(
                "snapshot {} does not exist yet: starting with an empty store",
                path.display()
            );
            return Ok(Restored::default());
        }
        Err(e) => return Err(e),
    };
    let written = fs::metadata(path).and_then(|m| m.modified()).ok();
    match decode_with_times(&bytes) {
        Ok(metrics) => Ok(Restored {
            metrics,
            written,
            content: Some(bytes),
        }),
        Err(LoadError::Io(e)) => Err(e),
        Err(LoadError::Corrupt(why)) => {
            let aside = corrupt_path(path);
            fs::rename(path, &aside)?;
            log::error!(
                "snapshot {} is corrupt ({why}); moved it to {} and starting with an empty store",
                path.display(),
                aside.display()
            );
            Ok(Restored::default())
        }
    }
}

fn corrupt_path(path: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".corrupt-{secs}"));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` crash-safely (temp file, fsync, rename, fsync directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_file::write(path, bytes, &temp_prefix(path))
}

/// Removes temporary files a crash may have left next to the snapshot.
pub fn remove_stale_temp_files(path: &Path) {
    let Ok(entries) = fs::read_dir(atomic_file::parent_dir(path)) else {
        return;
    };
    let prefix = temp_prefix(path);
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match fs::remove_file(entry.path()) {
                Ok(()) => log::info!(
                    "removed stale temporary snapshot {}",
                    entry.path().display()
                ),
                Err(e) => log::warn!(
                    "cannot remove stale temporary snapshot {}: {e}",
                    entry.path().display()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_originals_format() {
        let original = br#"[{"id":"Alloc","type":"gauge","value":12345.5},{"id":"PollCount","type":"counter","delta":7,"hash":""}]"#;
        assert_eq!(
            decode(original).unwrap(),
            vec![
                Update::Gauge {
                    name: "Alloc".into(),
                    value: 12345.5
                },
                Update::Counter {
                    name: "PollCount".into(),
                    delta: 7
                }
            ]
        );
        assert_eq!(decode(b"").unwrap(), vec![]);
        assert_eq!(decode(b" \n").unwrap(), vec![]);
        assert!(matches!(decode(b"[{\"id\":"), Err(LoadError::Corrupt(_))));
        assert!(matches!(
            decode(br#"[{"id":"x","type":"histogram"}]"#),
            Err(LoadError::Corrupt(_))
        ));
    }

    #[test]
    fn encode_decode_round_trip() {
        let bytes = encode(
            [("g;host=a", 0.1, 7)].into_iter(),
            [("c", -3, 9)].into_iter(),
            2,
        );
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"[{"id":"g;host=a","type":"gauge","value":0.1,"updated":7},{"id":"c","type":"counter","delta":-3,"updated":9}]"#
        );
        let decoded = decode_with_times(&bytes).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!((decoded[0].0.name(), decoded[0].1), ("g;host=a", Some(7)));
        assert_eq!((decoded[1].0.name(), decoded[1].1), ("c", Some(9)));
        // The original's entries have no time.
        let original = br#"[{"id":"c","type":"counter","delta":1}]"#;
        assert_eq!(decode_with_times(original).unwrap()[0].1, None);
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.json");
        fs::write(&path, "{oops").unwrap();
        assert_eq!(restore(&path).unwrap(), Restored::default());
        assert!(!path.exists());
        let moved: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(moved.len(), 1);
        assert!(moved[0].to_string_lossy().starts_with("db.json.corrupt-"));
    }

    #[test]
    fn atomic_write_replaces_and_cleans() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.json");
        write_atomic(&path, b"[]").unwrap();
        write_atomic(&path, b"[1]").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"[1]");
        fs::write(dir.path().join(format!("{}x", temp_prefix(&path))), "junk").unwrap();
        // Another server's snapshot in the same directory, mid-write: not ours to remove.
        let other = dir.path().join("other.json");
        let theirs = dir.path().join(format!("{}y", temp_prefix(&other)));
        fs::write(&theirs, "in progress").unwrap();
        remove_stale_temp_files(&path);
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [theirs.file_name().unwrap(), path.file_name().unwrap()]
        );
    }
}
