//! golectra: a request body being collected — its framing, its bytes, its share of the body
//! buffer budget — and the two rules that keep slow senders from holding what others need:
//! the **share** follows the bytes a body sent, not the length it declared (64 KiB first, then
//! growing with what arrives), and the **pace**: after a grace period a body must keep up a
//! minimum average rate, or get `408`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::chunked::ChunkDecoder;
use crate::conn::head::Head;
use crate::conn::state::READ_CHUNK;
use crate::conn::Env;
use crate::policy::{Budget, Reservation, Shortage};

/// How the body of the request being read is framed.
pub(crate) enum Framing {
    Length(usize),
    Chunked(ChunkDecoder),
}

/// A request whose head has been read and whose body is being collected.
pub(crate) struct Pending {
    pub head: Head,
    pub framing: Framing,
    pub body: Vec<u8>,
    pub reservation: Option<Reservation>,
    pub close_after: bool,
    /// The client sent `Expect: 100-continue` and has not been told to go on yet.
    pub continue_due: bool,
    /// Body bytes taken from the input so far (chunked framing included), and where the body's
    /// rate is measured from (`min_body_rate`).
    pub wire: usize,
    pub pace: Pace,
}

impl Pending {
    /// Makes sure the reservation covers what the body may hold once it takes `input` more
    /// bytes — what arrived, not what was declared: a declared length takes its first share,
    /// then grows ([`length_share`]); chunked, what is decoded plus a read's worth — from the
    /// global budget and from the peer's, if any.
    pub fn reserve(
        &mut self,
        input: usize,
        env: &Env,
        peer: Option<&Arc<Budget>>,
    ) -> Result<(), Shortage> {
        let held = self.reservation.as_ref().map_or(0, Reservation::bytes);
        let (want, floor) = match &self.framing {
            Framing::Length(n) => match length_share(*n, held, self.body.len() + input) {
                None => return Ok(()),
                Some(share) => share,
            },
            Framing::Chunked(_) => {
                let needed = self.body.len() + input.max(READ_CHUNK);
                if needed <= held {
                    return Ok(());
                }
                (needed, needed)
            }
        };
        let budget = &env.budget;
        let slot = &mut self.reservation;
        Reservation::grow(slot, budget, peer, want - held).or_else(|short| match floor < want {
            true => Reservation::grow(slot, budget, peer, floor - held),
            false => Err(short),
        })?;
        if let Framing::Length(_) = self.framing {
            let held = self.reservation.as_ref().map_or(0, Reservation::bytes);
            self.body
                .reserve_exact(held.saturating_sub(self.body.len()));
        }
        Ok(())
    }

    /// When the body, with `input` more bytes arrived, falls under `min_body_rate`.
    pub fn pace_deadline(&self, input: usize, env: &Env) -> Option<Instant> {
        let policy = &env.policy;
        self.pace.deadline(
            self.wire + input,
            policy.min_body_rate,
            policy.body_rate_grace,
        )
    }
}

/// The first share of the budget a body with a declared length gets (or its whole length, if
/// smaller): what a trickling client holds, however large a body it declares.
pub(crate) const FIRST_SHARE: usize = 64 << 10;

/// What a body with a declared length must hold to take what arrived, and what it asks for:
/// `None` when `held` already covers it, else `(want, floor)` — `want` doubles the share (so a
/// large body takes a few steps, not one per read), `floor` is the least that lets it go on.
/// Both are at most `declared`.
pub(crate) fn length_share(declared: usize, held: usize, arrived: usize) -> Option<(usize, usize)> {
    let floor = declared.min(arrived.max(FIRST_SHARE));
    if held >= floor {
        return None;
    }
    let want = declared.min(floor.max(held.saturating_mul(2)));
    Some((want, floor))
}

/// Where a body's rate is measured from: since when, and how many of its bytes had arrived then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    since: Instant,
    from: usize,
}

impl Pace {
    /// Measuring from `now`, when `sent` bytes of the body had arrived.
    pub fn new(now: Instant, sent: usize) -> Self {
        Self {
            since: now,
            from: sent,
        }
    }

    /// When the body, having sent `sent` bytes, falls under `rate` bytes per second after
    /// `grace`: `since + grace + (sent − from) / rate`. `None` when the rule is off (`rate` 0)
    /// or the time is out of reach.
    pub fn deadline(&self, sent: usize, rate: usize, grace: Duration) -> Option<Instant> {
        if rate == 0 {
            return None;
        }
        let earned = Duration::from_secs_f64(sent.saturating_sub(self.from) as f64 / rate as f64);
        self.since.checked_add(grace)?.checked_add(earned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_gets_its_first_share_then_grows_with_what_arrives() {
        const M: usize = 1 << 20;
        // Nothing arrived yet: 64 KiB of a 4 MiB body, or a small body whole.
        assert_eq!(length_share(4 * M, 0, 0), Some((FIRST_SHARE, FIRST_SHARE)));
        assert_eq!(length_share(1000, 0, 0), Some((1000, 1000)));
        // Covered: no change.
        assert_eq!(length_share(4 * M, FIRST_SHARE, 1), None);
        assert_eq!(length_share(4 * M, FIRST_SHARE, FIRST_SHARE), None);
        // One byte over: doubled, at least what arrived.
        assert_eq!(
            length_share(4 * M, FIRST_SHARE, FIRST_SHARE + 1),
            Some((2 * FIRST_SHARE, FIRST_SHARE + 1))
        );
        assert_eq!(
            length_share(4 * M, FIRST_SHARE, 3 * FIRST_SHARE),
            Some((3 * FIRST_SHARE, 3 * FIRST_SHARE))
        );
        // Never past the declared length.
        assert_eq!(
            length_share(3 * M, 2 * M, 2 * M + 1),
            Some((3 * M, 2 * M + 1))
        );
        assert_eq!(length_share(3 * M, 3 * M, 3 * M), None);
    }

    #[test]
    fn a_body_must_keep_up_the_rate_after_its_grace() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(5);
        let pace = Pace::new(t0, 100);
        // Bytes before the measurement started do not count.
        assert_eq!(pace.deadline(100, 1024, grace), Some(t0 + grace));
        // Each 1024 bytes buy a second.
        assert_eq!(
            pace.deadline(100 + 2048, 1024, grace),
            Some(t0 + Duration::from_secs(7))
        );
        assert_eq!(
            pace.deadline(100 + 512, 1024, grace),
            Some(t0 + Duration::from_millis(5500))
        );
        // A trickle of a byte every 2 s is out soon after the grace.
        assert!(pace.deadline(103, 1024, grace).unwrap() < t0 + Duration::from_millis(5003));
        assert_eq!(pace.deadline(1 << 20, 0, grace), None, "0 turns it off");
    }
}
