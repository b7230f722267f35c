//! The `HashSHA256` header (docs/http-api.md): lowercase hex of SHA-256 over `body ‖ key`, where `body`
//! is the uncompressed body. This is the original's format, so both implementations interoperate.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Name of the header that carries the signature.
pub const HEADER: &str = "HashSHA256";

/// Signs `body` with `key`: lowercase hex of SHA-256(body ‖ key).
pub fn sign(body: &[u8], key: &[u8]) -> String {
    hex::encode(digest(body, key))
}

fn digest(body: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(key);
    hasher.finalize().into()
}

/// Checks a received signature in constant time. Hex case is ignored; anything that is not 64
/// hex digits is simply a mismatch.
pub fn verify(body: &[u8], key: &[u8], header_value: &str) -> bool {
    let mut received = [0u8; 32];
    if hex::decode_to_slice(header_value.trim(), &mut received).is_err() {
        return false;
    }
    digest(body, key).ct_eq(&received).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_openssl_example() {
        // printf '%s' '{"id":"temp","type":"gauge","value":42}your-secret' | openssl dgst -sha256
        let body = br#"{"id":"temp","type":"gauge","value":42}"#;
        let sig = sign(body, b"your-secret");
        assert_eq!(sig.len(), 64);
        assert!(verify(body, b"your-secret", &sig));
        assert!(verify(body, b"your-secret", &sig.to_uppercase()));
        assert!(!verify(body, b"other", &sig));
        assert!(!verify(body, b"your-secret", "zz"));
        assert!(!verify(b"tampered", b"your-secret", &sig));
    }
}
