//! Write tokens, which make a retried write apply at most once: every counter write carries a
//! fresh token that the same statement records in `golectra_applied_batches`. If the connection
//! breaks while a write commits, the retry carries the same token and applies nothing when the
//! first attempt did commit. Tokens older than ten minutes are pruned now and then.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use super::pool::Conn;
use super::retry::describe;

/// Write tokens are needed only while a write may still be retried (well under a minute).
const PRUNE_TOKENS: &str =
    "DELETE FROM golectra_applied_batches WHERE applied_at < now() - interval '10 minutes'";

/// Tokens are pruned after every this many token-carrying writes of one server.
const PRUNE_EVERY: u64 = 4096;

/// Unique write tokens: SipHash, keyed randomly per process, of a sequence number. Two
/// servers collide with probability ~n²/2⁶⁴ for n tokens alive in the same ten minutes.
pub(super) struct Tokens {
    key: RandomState,
    next: AtomicU64,
}

impl Tokens {
    pub(super) fn new() -> Self {
        Self {
            key: RandomState::new(),
            next: AtomicU64::new(0),
        }
    }

    /// A fresh token, and whether this write should also prune old tokens.
    pub(super) fn next(&self) -> (i64, bool) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let token = self.key.hash_one((n, std::process::id())) as i64;
        (token, n % PRUNE_EVERY == PRUNE_EVERY - 1)
    }
}

/// Deletes expired write tokens; a failure only postpones it.
pub(super) fn prune(conn: &mut Conn) {
    match conn.execute(PRUNE_TOKENS, &[]) {
        Ok(n) => log::debug!("pruned {n} expired write tokens"),
        Err(e) => log::debug!("pruning write tokens failed: {}", describe(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_ask_for_pruning_every_4096_writes() {
        let tokens = Tokens::new();
        let mut seen = std::collections::HashSet::new();
        let mut prunes = Vec::new();
        for i in 0..3 * PRUNE_EVERY {
            let (token, prune) = tokens.next();
            assert!(seen.insert(token), "token {i} repeats");
            if prune {
                prunes.push(i);
            }
        }
        assert_eq!(prunes, [4095, 8191, 12287]);
        // Another server (another key) draws other tokens.
        let other = Tokens::new();
        assert!(!seen.contains(&other.next().0));
    }
}
