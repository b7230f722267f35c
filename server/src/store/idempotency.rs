//! Idempotency keys (docs/http-api.md, "Idempotency keys"): what a store records of a keyed
//! write so that a retry of it applies nothing and gets the first reply again.
//!
//! A client sends `Idempotency-Key: <opaque, 1–255 bytes>` on a write. The HTTP layer turns it
//! into a [`Key`]: the text, a 16-byte digest of the text (what the memory store indexes, so a
//! held key costs the same whatever its length) and a [`Fingerprint`] of the request (route,
//! path and uncompressed body).
//!
//! The key's digest is SHA-256: nobody can make another key collide with a client's key and so
//! be taken for it. The fingerprint is XXH3-128, a fast non-cryptographic hash (an S2 body of
//! 5 KB costs 0.3 µs instead of 3 µs): it only tells one client's requests under one key apart,
//! and whoever knows a client's key can already spoil that key by using it first, so a
//! collision-resistant fingerprint would protect nothing more. Both are fixed functions, so
//! servers sharing a PostgreSQL database agree on them. The store checks and records the key in the same atomic step
//! as the write it protects: a known key with the same fingerprint is a repeat (nothing
//! applied, the first result returned, see [`Written::repeat`](super::Written)); a known key
//! with another fingerprint is [`StoreError::KeyReused`](super::StoreError) (422, nothing
//! applied).
//!
//! Keys are held for a retention window ([`KeyOptions::retention`], `IDEMPOTENCY_RETENTION`)
//! and at most [`KeyOptions::max_keys`] of them at once (`IDEMPOTENCY_MAX_KEYS`): when the
//! table is full of keys younger than the retention, a new keyed write is refused with 503
//! (nothing applied; the client retries) rather than forgetting a key early.

use std::time::Duration;

use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::Xxh3Default;

/// The first 16 bytes of a SHA-256: 128 bits, collision-free for any realistic key count.
pub type Digest16 = [u8; 16];

/// What identifies the request a key was first used with (XXH3-128).
pub type Fingerprint = Digest16;

/// Longest key accepted, in bytes (the draft standard's recommendation is far below).
pub const MAX_KEY_BYTES: usize = 255;

/// Name of the request header.
pub const HEADER: &str = "Idempotency-Key";

/// One write's idempotency key, as the stores record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The key as sent (1–255 bytes); PostgreSQL records it as is.
    pub text: String,
    /// 16 bytes of SHA-256 over the text: what the memory store indexes.
    pub digest: Digest16,
    /// XXH3-128 of the request the key came with.
    pub fingerprint: Fingerprint,
}

impl Key {
    /// The key `text` (already checked by [`check`]) for a request to `route` (a fixed name of
    /// the endpoint), `path` and uncompressed `body`.
    pub fn new(text: &str, route: &str, path: &str, body: &[u8]) -> Self {
        let mut request = Xxh3Default::new();
        for part in [route.as_bytes(), path.as_bytes()] {
            request.update(&(part.len() as u64).to_le_bytes());
            request.update(part);
        }
        request.update(body);
        Self {
            text: text.to_owned(),
            digest: first16(Sha256::digest(text.as_bytes()).into()),
            fingerprint: request.digest128().to_le_bytes(),
        }
    }
}

/// Checks a received header value: 1–255 bytes once surrounding whitespace is trimmed. The
/// value is opaque (a quoted structured-field string is taken with its quotes).
pub fn check(value: &str) -> Result<&str, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!(
            "{HEADER} is empty: send 1 to {MAX_KEY_BYTES} bytes"
        ));
    }
    if value.len() > MAX_KEY_BYTES {
        return Err(format!(
            "{HEADER} is {} bytes long: the limit is {MAX_KEY_BYTES}",
            value.len()
        ));
    }
    Ok(value)
}

/// How long keys are held and how many at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOptions {
    /// A key is forgotten this long after its write was applied (at least 10 minutes).
    pub retention: Duration,
    /// Most keys held at once (memory store); a full table refuses new keyed writes.
    pub max_keys: usize,
}

impl Default for KeyOptions {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(3600),
            max_keys: 1_000_000,
        }
    }
}

fn first16(full: [u8; 32]) -> Digest16 {
    let mut out = [0; 16];
    out.copy_from_slice(&full[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_covers_route_path_and_body() {
        let a = Key::new("k", "updates", "/updates/", b"[1]");
        assert_eq!(a, Key::new("k", "updates", "/updates/", b"[1]"));
        assert_ne!(
            a.fingerprint,
            Key::new("k", "updates", "/updates/", b"[2]").fingerprint
        );
        assert_ne!(
            a.fingerprint,
            Key::new("k", "update", "/updates/", b"[1]").fingerprint
        );
        assert_ne!(
            a.fingerprint,
            Key::new("k", "updates", "/updates", b"[1]").fingerprint
        );
        // Length-prefixed parts: moving bytes between the route and the path changes it.
        assert_ne!(
            Key::new("k", "ab", "c", b"").fingerprint,
            Key::new("k", "a", "bc", b"").fingerprint
        );
        assert_eq!(a.digest, Key::new("k", "other", "/", b"").digest);
        assert_ne!(
            a.digest,
            Key::new("k2", "updates", "/updates/", b"[1]").digest
        );
    }

    #[test]
    fn header_values_are_checked() {
        assert_eq!(check("  agent:7 "), Ok("agent:7"));
        assert_eq!(check("\"quoted\""), Ok("\"quoted\""));
        assert!(check("   ").unwrap_err().contains("empty"));
        assert_eq!(check(&"x".repeat(255)).map(str::len), Ok(255));
        assert!(check(&"x".repeat(256)).unwrap_err().contains("256 bytes"));
    }
}
