//! Gzip in both directions with an explicit cap on the inflated size, so a small "gzip bomb"
//! can never make a daemon allocate more than the configured limit.

use std::io::{self, Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

/// Why a gzip body could not be inflated.
#[derive(Debug)]
pub enum InflateError {
    /// The stream is not valid gzip (bad header, bad checksum, truncated). A client error.
    Corrupt(io::Error),
    /// The stream inflates to more than the limit. The caller answers 413.
    TooLarge {
        /// The configured cap on the inflated size, in bytes.
        limit: usize,
    },
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Corrupt(e) => write!(f, "corrupt gzip body: {e}"),
            Self::TooLarge { limit } => {
                write!(f, "gzip body inflates past the limit of {limit} bytes")
            }
        }
    }
}

impl std::error::Error for InflateError {}

/// Inflates a gzip stream (including concatenated members), refusing to produce more than
/// `limit` bytes.
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(compressed).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(InflateError::Corrupt)?;
    if out.len() > limit {
        return Err(InflateError::TooLarge { limit });
    }
    Ok(out)
}

/// Compresses `data` as one gzip member. Level 1: metrics payloads are small and repetitive, so
/// the fastest level gets most of the gain for a fraction of the CPU.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 32), Compression::fast());
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

/// Inflates without a limit; for tests and trusted data only.
pub fn inflate_unbounded(compressed: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    GzDecoder::new(compressed).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bomb_is_stopped_at_the_limit() {
        let bomb = compress(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 << 10);
        assert!(matches!(
            inflate(&bomb, 1 << 20),
            Err(InflateError::TooLarge { .. })
        ));
        assert_eq!(inflate(&bomb, 10 << 20).unwrap().len(), 10 << 20);
    }

    #[test]
    fn corrupt_is_reported() {
        assert!(matches!(
            inflate(b"not gzip", 100),
            Err(InflateError::Corrupt(_))
        ));
        let mut truncated = compress(b"hello world hello world");
        truncated.truncate(truncated.len() - 4);
        assert!(matches!(
            inflate(&truncated, 100),
            Err(InflateError::Corrupt(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert_eq!(inflate(&compress(&data), data.len()).unwrap(), data);
        }
    }
}
