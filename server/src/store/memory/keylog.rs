//! The key log: the idempotency keys of the memory store, kept beside the snapshot because the
//! snapshot itself must stay in the original's format (a JSON array of metrics — the original
//! rejects anything else in it). One append-only file, `<snapshot>.keys`.
//!
//! # Crash consistency (docs/storage.md, "Idempotency keys")
//!
//! The log is a sequence of records; each says "these keys were applied by the time of the
//! snapshot whose bytes hash to H" (the first 16 bytes of their SHA-256) and holds the keys
//! applied since the previous record. A snapshot write
//!
//! 1. reads metrics and keys under one lock, at one version;
//! 2. appends the record of the new content to the log and fsyncs it (skipped when no key is
//!    held at all);
//! 3. writes the snapshot crash-safely (temp, fsync, rename, fsync dir);
//! 4. now and then, once the snapshot is in place, rewrites the log as one record of every
//!    live key under the new hash (temp, fsync, rename, fsync dir) to drop expired keys.
//!
//! At start the snapshot is read and hashed; the keys restored are those of every record up to
//! the **last record naming that hash**, minus the expired ones; then the log is rewritten to
//! hold exactly those. Whatever the moment of a `kill -9` (or a power loss): before step 3's
//! rename the old snapshot is on disk and the record of the new one comes after the old one's,
//! so it is not restored; after it, the new record was already durable. So a retried key is
//! applied again iff its effect is not in the restored snapshot. Records of a snapshot that was
//! never renamed (its write failed) stay in the log: a later snapshot contains their writes too.
//! Two moments with byte-identical snapshots share a hash; taking the later one is still exact
//! because the writes between them changed no metric.
//!
//! Each append costs the keys applied since the last one (49 bytes a key), not the whole table,
//! so sync mode stays fast however many keys are held. A record is framed (`GK`, version,
//! length, XXH3-64 of the payload); reading stops at a torn or corrupt record. An append that
//! fails is cut off again (`set_len`); should that fail too, the log is rewritten after the
//! next snapshot that succeeds. A snapshot without a matching record (written by the original,
//! or while no key was held) restores with no keys.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use golectra_common::atomic_file::parent_dir;
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_64;

use super::keys::Held;
use crate::store::Value;
use crate::store::idempotency::Digest16;

const MAGIC: &[u8; 2] = b"GK";
const VERSION: u8 = 1;
/// Magic, version, payload length.
const HEADER: usize = 2 + 1 + 4;
/// Digest, fingerprint, applied_at, value tag, value.
const ENTRY: usize = 16 + 16 + 8 + 1 + 8;
/// The log is rewritten once it is this many times larger than the live keys need (and at
/// least [`MIN_COMPACT`] bytes).
const COMPACT_FACTOR: u64 = 4;
const MIN_COMPACT: u64 = 1 << 20;

/// What the writer knows about the log between snapshots.
#[derive(Debug, Default)]
pub(super) struct Log {
    /// Keys up to this tables version are in the log.
    pub(super) logged: u64,
    /// The log's length in bytes.
    len: u64,
    /// Rewrite the log after the next successful snapshot.
    compact: bool,
}

/// The log beside `snapshot`.
pub(super) fn path_for(snapshot: &Path) -> PathBuf {
    let mut name = snapshot
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".keys");
    snapshot.with_file_name(name)
}

/// The hash that names a snapshot's content in the log.
pub(super) fn content_hash(content: &[u8]) -> Digest16 {
    let mut out = [0; 16];
    out.copy_from_slice(&Sha256::digest(content)[..16]);
    out
}

fn encode_record(hash: &Digest16, keys: &[(Digest16, Held)]) -> Vec<u8> {
    let payload_len = 16 + 4 + keys.len() * ENTRY;
    let mut payload = Vec::with_capacity(payload_len);
    payload.extend_from_slice(hash);
    payload.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for (digest, held) in keys {
        payload.extend_from_slice(digest);
        payload.extend_from_slice(&held.fingerprint);
        payload.extend_from_slice(&held.applied_at.to_le_bytes());
        let (tag, bits) = match held.stored {
            None => (0u8, 0u64),
            Some(Value::Gauge(v)) => (1, v.to_bits()),
            Some(Value::Counter(v)) => (2, v as u64),
        };
        payload.push(tag);
        payload.extend_from_slice(&bits.to_le_bytes());
    }
    let mut out = Vec::with_capacity(HEADER + payload.len() + 8);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
    out
}

/// One record: the hash of a snapshot's content and the keys it adds.
type Record = (Digest16, Vec<(Digest16, Held)>);

/// The records of a log: `(hash, keys)` in order, up to the first torn or corrupt one.
fn decode(bytes: &[u8]) -> (Vec<Record>, Option<String>) {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(record) = decode_one(&bytes[at..]) else {
            let why = format!("record at byte {at} is torn or corrupt; the rest is ignored");
            return (records, Some(why));
        };
        at += record.0;
        records.push(record.1);
    }
    (records, None)
}

fn decode_one(bytes: &[u8]) -> Option<(usize, Record)> {
    let header = bytes.get(..HEADER)?;
    if &header[..2] != MAGIC || header[2] != VERSION {
        return None;
    }
    let len = u32::from_le_bytes(header[3..7].try_into().ok()?) as usize;
    let payload = bytes.get(HEADER..HEADER + len)?;
    let sum = bytes.get(HEADER + len..HEADER + len + 8)?;
    if xxh3_64(payload).to_le_bytes() != sum {
        return None;
    }
    let hash: Digest16 = payload.get(..16)?.try_into().ok()?;
    let count = u32::from_le_bytes(payload.get(16..20)?.try_into().ok()?) as usize;
    if payload.len() != 20 + count * ENTRY {
        return None;
    }
    let keys = payload[20..]
        .chunks_exact(ENTRY)
        .map(|e| {
            let bits = u64::from_le_bytes(e[41..49].try_into().expect("8 bytes"));
            let stored = match e[40] {
                1 => Some(Value::Gauge(f64::from_bits(bits))),
                2 => Some(Value::Counter(bits as i64)),
                _ => None,
            };
            let digest: Digest16 = e[..16].try_into().expect("16 bytes");
            let held = Held {
                fingerprint: e[16..32].try_into().expect("16 bytes"),
                stored,
                version: 0,
                applied_at: u64::from_le_bytes(e[32..40].try_into().expect("8 bytes")),
            };
            (digest, held)
        })
        .collect();
    Some((HEADER + len + 8, (hash, keys)))
}

/// The keys belonging to the snapshot whose bytes are `content` (`None`: no valid snapshot):
/// every record up to the last one naming its hash. A missing log, or no such record, is no
/// keys; an unreadable log is reported and counts as no keys.
pub(super) fn load(snapshot: &Path, content: Option<&[u8]>) -> Vec<(Digest16, Held)> {
    let Some(content) = content else {
        return Vec::new();
    };
    let path = path_for(snapshot);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            log::error!(
                "cannot read key log {}: {e}; no idempotency keys held, so retries of writes in the snapshot may count twice",
                path.display()
            );
            return Vec::new();
        }
    };
    let (records, torn) = decode(&bytes);
    let hash = content_hash(content);
    let Some(last) = records.iter().rposition(|(h, _)| *h == hash) else {
        if !records.is_empty() {
            log::info!(
                "no record of key log {} belongs to snapshot {} (written by another program?): no keys held",
                path.display(),
                snapshot.display()
            );
        }
        return Vec::new();
    };
    if let Some(why) = torn {
        log::warn!("key log {}: {why}", path.display());
    }
    records
        .into_iter()
        .take(last + 1)
        .flat_map(|(_, keys)| keys)
        .collect()
}

/// Appends the record of snapshot `hash` with `keys` (those applied since the last record)
/// and fsyncs it. On failure the log is cut back to where it was, or marked for a rewrite.
pub(super) fn append(
    snapshot: &Path,
    log: &mut Log,
    hash: &Digest16,
    keys: &[(Digest16, Held)],
) -> io::Result<()> {
    let path = path_for(snapshot);
    let record = encode_record(hash, keys);
    let created = !path.exists();
    let result = (|| {
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.write_all(&record)?;
        file.sync_data()?;
        if created {
            File::open(parent_dir(snapshot))?.sync_all()?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            log.len += record.len() as u64;
            Ok(())
        }
        Err(e) => {
            let cut = OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(log.len).and_then(|()| f.sync_data()));
            if let Err(cut) = cut
                && !(created && cut.kind() == io::ErrorKind::NotFound)
            {
                log::error!(
                    "cannot cut the failed append off key log {}: {cut}; it is rewritten after the next snapshot",
                    path.display()
                );
                log.compact = true;
            }
            Err(e)
        }
    }
}

/// Whether the log should be rewritten after this snapshot, holding `live` keys.
pub(super) fn wants_rewrite(log: &Log, live: usize) -> bool {
    log.compact || log.len > MIN_COMPACT.max(COMPACT_FACTOR * (live * ENTRY) as u64)
}

/// Rewrites the log as one record of `keys` under `hash` (or removes it when there are none),
/// crash-safely. Only after the snapshot of `hash` is in place (or at start).
pub(super) fn rewrite(
    snapshot: &Path,
    log: &mut Log,
    hash: Option<&Digest16>,
    keys: &[(Digest16, Held)],
) -> io::Result<()> {
    let path = path_for(snapshot);
    match hash.filter(|_| !keys.is_empty()) {
        None => match fs::remove_file(&path) {
            Ok(()) => File::open(parent_dir(snapshot))?.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        },
        Some(hash) => {
            let record = encode_record(hash, keys);
            crate::store::snapshot::write_atomic(&path, &record)?;
            log.len = record.len() as u64;
            log.compact = false;
            return Ok(());
        }
    }
    log.len = 0;
    log.compact = false;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(at: u64, stored: Option<Value>) -> Held {
        Held {
            fingerprint: [7; 16],
            stored,
            version: 9,
            applied_at: at,
        }
    }

    fn restored(keys: &[(Digest16, Held)]) -> Vec<(Digest16, Held)> {
        keys.iter()
            .map(|(d, h)| (*d, Held { version: 0, ..*h }))
            .collect()
    }

    #[test]
    fn records_up_to_the_snapshots_last_one_are_restored() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = dir.path().join("db.json");
        let mut log = Log::default();
        let a = [([1; 16], held(10, None))];
        let b = [
            ([2; 16], held(11, Some(Value::Counter(-3)))),
            ([3; 16], held(12, Some(Value::Gauge(0.25)))),
        ];
        append(&snapshot, &mut log, &content_hash(b"A"), &a).unwrap();
        append(&snapshot, &mut log, &content_hash(b"B"), &b).unwrap();
        assert_eq!(load(&snapshot, Some(b"A")), restored(&a));
        let both: Vec<_> = a.iter().chain(&b).copied().collect();
        assert_eq!(load(&snapshot, Some(b"B")), restored(&both));
        // A snapshot the log does not know, or none: no keys.
        assert!(load(&snapshot, Some(b"C")).is_empty());
        assert!(load(&snapshot, None).is_empty());
        // A torn tail (a crash mid-append) is ignored; what came before stays.
        let mut bytes = fs::read(path_for(&snapshot)).unwrap();
        bytes.extend_from_slice(&encode_record(&content_hash(b"C"), &a)[..20]);
        fs::write(path_for(&snapshot), bytes).unwrap();
        assert_eq!(load(&snapshot, Some(b"B")), restored(&both));
        // A rewrite keeps only what it is given.
        rewrite(&snapshot, &mut log, Some(&content_hash(b"B")), &b).unwrap();
        assert_eq!(load(&snapshot, Some(b"B")), restored(&b));
        assert!(load(&snapshot, Some(b"A")).is_empty());
        rewrite(&snapshot, &mut log, Some(&content_hash(b"B")), &[]).unwrap();
        assert!(!path_for(&snapshot).exists());
    }

    #[test]
    fn a_corrupt_record_ends_the_log() {
        let record = encode_record(&[5; 16], &[([1; 16], held(1, None))]);
        let mut flipped = record.clone();
        flipped[HEADER + 3] ^= 1;
        let (records, why) = decode(&[record.clone(), flipped, record].concat());
        assert_eq!(records.len(), 1);
        assert!(why.unwrap().contains("torn or corrupt"));
    }

    #[test]
    fn the_log_is_rewritten_once_it_outgrows_the_live_keys() {
        let mut log = Log {
            len: MIN_COMPACT,
            ..Log::default()
        };
        assert!(!wants_rewrite(&log, 0));
        log.len += 1;
        assert!(wants_rewrite(&log, 0));
        assert!(!wants_rewrite(&log, 100_000));
    }
}
