//! The strict-mode request signature, `Golectra-Signature` (docs/signing.md): what a server with
//! `REQUIRE_SIGNATURE` demands of every write, and what the agent sends with every write when
//! it has a key.
//!
//! `HashSHA256` (see [`crate::signature`]) covers only the body, so any body the key ever
//! signed — a server's own reply included — passes it again, to any endpoint, any number of
//! times. `Golectra-Signature` binds the body to one request:
//!
//! ```text
//! Golectra-Signature: t=<unix seconds>,v1=<64 lowercase hex digits>
//! v1 = HMAC-SHA256(KEY, "golectra-request-v1\n" ‖ t ‖ "\n" ‖ endpoint ‖ "\n" ‖ Idempotency-Key ‖ "\n" ‖ body)
//! ```
//!
//! where `endpoint` is the request path without its query and without one trailing slash
//! (`/updates`, `/update`, `/update/counter/PollCount/1`, as sent, still percent-encoded),
//! `Idempotency-Key` is the header's value with surrounding whitespace trimmed, and `body` the
//! uncompressed body. None of the fields before the body can hold a newline, so the message
//! is unambiguous. A server accepts `t` within [`MAX_SKEW`] of its own clock.
//!
//! The message starts with a fixed label and is an HMAC, never `SHA-256(body ‖ KEY)`, so no
//! `HashSHA256` a server or client ever sent verifies as a `Golectra-Signature`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Name of the header.
pub const HEADER: &str = "Golectra-Signature";

/// The label the signed message starts with (the version of this format).
const LABEL: &[u8] = b"golectra-request-v1\n";

/// How far a signature's time may be from the server's clock, either way: 4 minutes. A request
/// is then accepted less than `2 × MAX_SKEW + 1 s` (481 s) after the first time it was, well
/// within the shortest idempotency-key retention (10 minutes), so a replay is always a repeat;
/// the 119 s left over absorb clock differences between the servers of one database.
pub const MAX_SKEW: Duration = Duration::from_secs(240);

/// Why a `Golectra-Signature` was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The header is not `t=<unix seconds>,v1=<64 hex digits>`.
    Malformed,
    /// The HMAC does not match the request (another key, endpoint, idempotency key, time or
    /// body).
    Mismatch,
    /// The signature is valid but was made too far from the server's clock.
    Stale {
        /// The `t` of the header.
        signed_at: u64,
        /// Its distance from the server's clock, in seconds.
        skew: u64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed => write!(
                f,
                "{HEADER} must be t=<unix seconds>,v1=<64 hex digits of HMAC-SHA256>"
            ),
            Self::Mismatch => write!(
                f,
                "{HEADER} does not match this request: the key, the path, the Idempotency-Key, the time or the body differ from what was signed"
            ),
            Self::Stale { signed_at, skew } => write!(
                f,
                "{HEADER} was made at {signed_at}, {skew} s away from the server's clock: the limit is {} s (a replayed or delayed request, or a clock out of sync)",
                MAX_SKEW.as_secs()
            ),
        }
    }
}

/// The endpoint a path is signed as: without one trailing slash (`/updates/` → `/updates`;
/// `/` stays `/`). `path` has no query string.
pub fn endpoint(path: &str) -> &str {
    path.strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path)
}

/// The seconds since the Unix epoch now (0 before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(key: &[u8], at: u64, path: &str, idempotency_key: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(LABEL);
    mac.update(at.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(endpoint(path).as_bytes());
    mac.update(b"\n");
    mac.update(idempotency_key.trim().as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// The header value for a request to `path` with `idempotency_key` and the uncompressed
/// `body`, signed at `at` (Unix seconds).
pub fn sign(key: &[u8], at: u64, path: &str, idempotency_key: &str, body: &[u8]) -> String {
    let tag = mac(key, at, path, idempotency_key, body)
        .finalize()
        .into_bytes();
    format!("t={at},v1={}", hex::encode(tag))
}

/// Checks a received header value against the request, in constant time, then its time against
/// `now` (Unix seconds). Hex case is ignored.
pub fn verify(
    key: &[u8],
    header_value: &str,
    now: u64,
    path: &str,
    idempotency_key: &str,
    body: &[u8],
) -> Result<(), Refusal> {
    let (at, tag) = parse(header_value).ok_or(Refusal::Malformed)?;
    mac(key, at, path, idempotency_key, body)
        .verify_slice(&tag)
        .map_err(|_| Refusal::Mismatch)?;
    let skew = now.abs_diff(at);
    if skew > MAX_SKEW.as_secs() {
        return Err(Refusal::Stale {
            signed_at: at,
            skew,
        });
    }
    Ok(())
}

/// `t=<digits>,v1=<64 hex>` in either order, spaces allowed around the fields.
fn parse(value: &str) -> Option<(u64, [u8; 32])> {
    let (mut at, mut tag) = (None, None);
    for field in value.split(',') {
        let (name, v) = field.trim().split_once('=')?;
        match name {
            "t" if at.is_none() && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                at = Some(v.parse().ok()?);
            }
            "v1" if tag.is_none() => {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(v, &mut bytes).ok()?;
                tag = Some(bytes);
            }
            _ => return None,
        }
    }
    Some((at?, tag?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"sekrit";
    const BODY: &[u8] = br#"[{"id":"PollCount","type":"counter","delta":5}]"#;

    #[test]
    fn a_signature_verifies_only_for_its_request() {
        let header = sign(KEY, 1_700_000_000, "/updates/", "agent:1", BODY);
        let check = |key: &[u8], path: &str, idem: &str, body: &[u8]| {
            verify(key, &header, 1_700_000_000, path, idem, body)
        };
        assert_eq!(check(KEY, "/updates/", "agent:1", BODY), Ok(()));
        // One trailing slash and the key's surrounding whitespace do not matter.
        assert_eq!(check(KEY, "/updates", " agent:1 ", BODY), Ok(()));
        for (key, path, idem, body) in [
            (&b"other"[..], "/updates", "agent:1", BODY),
            (KEY, "/update", "agent:1", BODY),
            (KEY, "/updates", "agent:2", BODY),
            (KEY, "/updates", "", BODY),
            (KEY, "/updates", "agent:1", &BODY[1..]),
        ] {
            assert_eq!(check(key, path, idem, body), Err(Refusal::Mismatch));
        }
        // Another time is another message.
        let later = header.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(KEY, &later, 1_700_000_000, "/updates", "agent:1", BODY),
            Err(Refusal::Mismatch)
        );
        let upper = format!(
            "t=1700000000,v1={}",
            header.split_once("v1=").unwrap().1.to_uppercase()
        );
        assert_eq!(
            verify(KEY, &upper, 1_700_000_000, "/updates", "agent:1", BODY),
            Ok(())
        );
    }

    #[test]
    fn a_hash_sha256_is_never_a_request_signature() {
        let legacy = crate::signature::sign(BODY, KEY);
        assert_eq!(
            verify(KEY, &legacy, 1, "/updates", "k", BODY),
            Err(Refusal::Malformed)
        );
        let dressed = format!("t=1,v1={legacy}");
        assert_eq!(
            verify(KEY, &dressed, 1, "/updates", "k", BODY),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn the_time_is_checked_both_ways() {
        let at = 1_700_000_000;
        let header = sign(KEY, at, "/update", "k", b"{}");
        let max = MAX_SKEW.as_secs();
        for now in [at - max, at, at + max] {
            assert_eq!(verify(KEY, &header, now, "/update", "k", b"{}"), Ok(()));
        }
        assert_eq!(
            verify(KEY, &header, at + max + 1, "/update", "k", b"{}"),
            Err(Refusal::Stale {
                signed_at: at,
                skew: max + 1
            })
        );
        assert_eq!(
            verify(KEY, &header, at - max - 1, "/update", "k", b"{}"),
            Err(Refusal::Stale {
                signed_at: at,
                skew: max + 1
            })
        );
    }

    #[test]
    fn malformed_headers_are_named() {
        let tag = "ab".repeat(32);
        for bad in [
            String::new(),
            format!("v1={tag}"),
            "t=1".to_owned(),
            format!("t=-1,v1={tag}"),
            format!("t=+1,v1={tag}"),
            format!("t=1,v1={tag},t=2"),
            format!("t=1,v1={tag},v2={tag}"),
            format!("t=1,v1={}", &tag[2..]),
            format!("t=99999999999999999999999,v1={tag}"),
        ] {
            assert_eq!(
                verify(KEY, &bad, 1, "/update", "k", b""),
                Err(Refusal::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(KEY, &format!(" v1={tag} , t=1 "), 1, "/update", "k", b""),
            Err(Refusal::Mismatch),
            "either order, spaces around the fields"
        );
        assert_eq!(endpoint("/"), "/");
        assert_eq!(endpoint("/update/counter/c/1/"), "/update/counter/c/1");
    }
}
