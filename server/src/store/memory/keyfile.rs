//! The key file: the idempotency keys that belong to one snapshot, kept beside it, because the
//! snapshot itself must stay in the original's format (a JSON array of metrics — the original
//! rejects anything else in it).
//!
//! # Crash consistency (docs/storage.md, "Idempotency keys")
//!
//! The key file is named after the content of the snapshot it belongs to:
//! `<snapshot>.keys-<first 32 hex digits of SHA-256(snapshot bytes)>`. A snapshot write
//!
//! 1. reads metrics and keys under one lock, at one version;
//! 2. writes the key file for the new content crash-safely (temp, fsync, rename, fsync dir);
//! 3. writes the snapshot crash-safely (the same steps);
//! 4. removes the key files of other contents.
//!
//! At start the snapshot is read, hashed, and only the key file of that hash is loaded; the
//! others are removed. Whatever the moment of a `kill -9` (or a power loss), the keys loaded
//! are exactly those whose writes the restored snapshot contains: before step 3's rename the
//! old snapshot is there and its own key file was not touched; after it the new key file is
//! already durable. So a retried key is applied again iff its effect is not in the restored
//! snapshot. (Two moments with byte-identical snapshots share a file name; the later key set
//! wins, which is still exact: the writes between them changed no metric.)
//!
//! A snapshot without a key file (written by the original, or before keys existed) restores
//! with no keys held. The format is JSON:
//! `{"format":1,"snapshot":"<hash>","keys":[{"k":"<digest>","f":"<fingerprint>","at":<unix s>,"c":7}]}`
//! (`c`/`g`: the value a single-metric write stored), about 120 bytes per key.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys::Held;
use crate::store::Value;
use crate::store::idempotency::Digest16;

const FORMAT: u32 = 1;

/// The key file belonging to the snapshot at `snapshot` whose bytes are `content`.
pub(super) fn path_for(snapshot: &Path, content: &[u8]) -> PathBuf {
    let hash = content_hash(content);
    let mut name = file_name(snapshot);
    name.push_str(".keys-");
    name.push_str(&hash);
    snapshot.with_file_name(name)
}

fn content_hash(content: &[u8]) -> String {
    hex::encode(&Sha256::digest(content)[..16])
}

fn file_name(snapshot: &Path) -> String {
    snapshot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[derive(Serialize, Deserialize)]
struct File {
    format: u32,
    snapshot: String,
    keys: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    k: String,
    f: String,
    at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    g: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<i64>,
}

/// The key file's bytes for `keys`, belonging to snapshot bytes `content`.
pub(super) fn encode(content: &[u8], keys: &[(Digest16, Held)]) -> Vec<u8> {
    let file = File {
        format: FORMAT,
        snapshot: content_hash(content),
        keys: keys
            .iter()
            .map(|(digest, held)| Entry {
                k: hex::encode(digest),
                f: hex::encode(held.fingerprint),
                at: held.applied_at,
                g: match held.stored {
                    Some(Value::Gauge(v)) => Some(v),
                    _ => None,
                },
                c: match held.stored {
                    Some(Value::Counter(v)) => Some(v),
                    _ => None,
                },
            })
            .collect(),
    };
    serde_json::to_vec(&file).expect("strings and numbers always serialize")
}

/// Loads the keys belonging to the snapshot whose bytes are `content` (`None`: no snapshot, or
/// a corrupt one that was moved aside). A missing key file is no keys; a corrupt one is
/// reported and counts as no keys.
pub(super) fn load(snapshot: &Path, content: Option<&[u8]>) -> Vec<(Digest16, Held)> {
    let Some(content) = content else {
        return Vec::new();
    };
    let path = path_for(snapshot, content);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::info!(
                "no key file for snapshot {} (written by another program, or before idempotency keys): no keys held",
                snapshot.display()
            );
            return Vec::new();
        }
        Err(e) => {
            log::error!(
                "cannot read key file {}: {e}; no idempotency keys held, so retries of writes in the snapshot may count twice",
                path.display()
            );
            return Vec::new();
        }
    };
    match decode(&bytes, &content_hash(content)) {
        Ok(keys) => keys,
        Err(why) => {
            log::error!(
                "key file {} is corrupt ({why}); no idempotency keys held, so retries of writes in the snapshot may count twice",
                path.display()
            );
            Vec::new()
        }
    }
}

fn decode(bytes: &[u8], expected: &str) -> Result<Vec<(Digest16, Held)>, String> {
    let file: File = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if file.format != FORMAT {
        return Err(format!("format {} is not {FORMAT}", file.format));
    }
    if file.snapshot != expected {
        return Err(format!("it belongs to snapshot {}", file.snapshot));
    }
    let hex16 = |s: &str| {
        let mut out = [0; 16];
        hex::decode_to_slice(s, &mut out).map(|()| out)
    };
    file.keys
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let stored = match (e.g, e.c) {
                (Some(v), None) => Some(Value::Gauge(v)),
                (None, Some(v)) => Some(Value::Counter(v)),
                (None, None) => None,
                (Some(_), Some(_)) => return Err(format!("key {i} holds two values")),
            };
            let (Ok(digest), Ok(fingerprint)) = (hex16(&e.k), hex16(&e.f)) else {
                return Err(format!("key {i} is not 32 hex digits"));
            };
            Ok((
                digest,
                Held {
                    fingerprint,
                    stored,
                    version: 0,
                    applied_at: e.at,
                },
            ))
        })
        .collect()
}

/// Removes key files of `snapshot` other than `keep`, and temporary key files a crash left.
pub(super) fn remove_others(snapshot: &Path, keep: Option<&Path>) {
    let dir = match snapshot.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let ours = format!("{}.keys-", file_name(snapshot));
    let temp = format!(".{ours}");
    let keep = keep.and_then(Path::file_name);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let text = name.to_string_lossy();
        let stale = (text.starts_with(&ours) && Some(name.as_os_str()) != keep)
            || (text.starts_with(&temp) && text.contains(".golectra-tmp-"));
        if stale && let Err(e) = fs::remove_file(entry.path()) {
            log::warn!(
                "cannot remove stale key file {}: {e}",
                entry.path().display()
            );
        }
    }
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

    #[test]
    fn round_trip_and_only_for_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = dir.path().join("db.json");
        let keys = vec![
            ([1; 16], held(10, None)),
            ([2; 16], held(11, Some(Value::Counter(-3)))),
            ([3; 16], held(12, Some(Value::Gauge(0.25)))),
        ];
        let content = b"[]";
        fs::write(path_for(&snapshot, content), encode(content, &keys)).unwrap();
        let loaded = load(&snapshot, Some(content));
        let expected: Vec<_> = keys
            .iter()
            .map(|(d, h)| (*d, Held { version: 0, ..*h }))
            .collect();
        assert_eq!(loaded, expected);
        // Another snapshot content has no key file: no keys.
        assert!(load(&snapshot, Some(b"[ ]")).is_empty());
        assert!(load(&snapshot, None).is_empty());
        // A file renamed to another content's name is refused.
        fs::rename(path_for(&snapshot, content), path_for(&snapshot, b"x")).unwrap();
        assert!(load(&snapshot, Some(b"x")).is_empty());
    }

    #[test]
    fn stale_key_files_and_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = dir.path().join("db.json");
        let keep = path_for(&snapshot, b"a");
        let old = path_for(&snapshot, b"b");
        let temp = dir.path().join(".db.json.keys-00.golectra-tmp-x");
        let other_server = dir.path().join("other.json.keys-00");
        for p in [&keep, &old, &temp, &other_server, &snapshot] {
            fs::write(p, "x").unwrap();
        }
        remove_others(&snapshot, Some(&keep));
        assert!(keep.exists() && snapshot.exists() && other_server.exists());
        assert!(!old.exists() && !temp.exists());
    }
}
