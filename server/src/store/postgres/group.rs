//! What one group-commit round writes, and what each of its writes is answered: the batches of
//! the round go to the database as one statement (`round.rs`), which applies the unkeyed ones
//! and those whose idempotency key is new, and says of every other one whether it repeats its
//! key's first request or reuses the key for another.
//!
//! Rust handles what one statement cannot:
//! - **The same key twice in a round** (a client retried before its first attempt was
//!   answered): only the first occurrence goes into the statement; the later ones go into a
//!   later pass, after the first is committed, and find its key there (a repeat, or refused
//!   when their request differs). Inside one statement the two could not see each other.
//! - **An overflow, or new names past `MAX_METRICS`**: the round's statement aborts with
//!   nothing applied; then every batch is written alone (with its own key), in order, so that
//!   only the guilty ones fail.
//! - **A key that vanished** between the statement and the look-up of its row (pruned at the
//!   end of its retention in between): that batch is written again alone, a few times at most.

use std::collections::HashSet;
use std::time::Instant;

use crate::store::{Batch, Key, StoreError};

/// One submitted write: a batch, its idempotency key and when it was submitted.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub(super) batch: Batch,
    pub(super) key: Option<Key>,
    /// When the write reached the store: the retry budget of the round that writes it counts
    /// from here, so that time spent queued behind another round is not granted again.
    pub(super) submitted: Instant,
}

impl Entry {
    /// The combiner's weight of an entry: its metrics (a keyed empty batch still weighs one).
    pub(super) fn weight(&self) -> usize {
        self.batch.len().max(1)
    }
}

/// What a round's statement did with one of its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Applied (now, or by an earlier attempt of the same statement that had committed).
    Applied,
    /// Its key had been applied before with the same request: nothing applied.
    Repeat,
    /// Its key had been applied before with another request: nothing applied.
    Reused,
    /// Its key was taken when the statement ran but gone when its row was read: nothing
    /// applied, to be written again.
    Vanished,
}

/// The result of one round's statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Round {
    /// One outcome per batch, in order.
    Done(Vec<Outcome>),
    /// A counter left the `bigint` range, or the round would add names past `MAX_METRICS`;
    /// nothing was applied (only for rounds of several batches: a lone batch's refusal is its
    /// error, naming the counter or the limit).
    Aborted,
}

/// What a write is answered: whether it was a repeat, or why it failed.
pub(super) type Answer = Result<bool, StoreError>;

/// Times a batch whose key vanished is written again before the write fails.
const VANISHED_RETRIES: usize = 3;

/// Writes the entries of a round with `round` (one call per statement) and answers each, in
/// order.
pub(super) fn apply_group(
    group: &[Entry],
    round: impl Fn(&[&Entry]) -> Result<Round, StoreError>,
) -> Vec<Answer> {
    let mut answers: Vec<Option<Answer>> = vec![None; group.len()];
    let mut pending: Vec<usize> = (0..group.len()).collect();
    while !pending.is_empty() {
        // The first occurrence of each key now, the others in a later pass.
        let mut seen = HashSet::new();
        let (now, later): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| {
            group[i]
                .key
                .as_ref()
                .is_none_or(|key| seen.insert(key.text.as_str()))
        });
        pass(group, &now, &round, &mut answers);
        pending = later;
    }
    answers
        .into_iter()
        .map(|a| a.expect("every entry is answered"))
        .collect()
}

/// One statement for the entries `at` (distinct keys), then the fallbacks it calls for.
fn pass(
    group: &[Entry],
    at: &[usize],
    round: &impl Fn(&[&Entry]) -> Result<Round, StoreError>,
    answers: &mut [Option<Answer>],
) {
    let entries: Vec<&Entry> = at.iter().map(|&i| &group[i]).collect();
    let alone = |i: usize| write_alone(&group[i], round);
    match round(&entries) {
        Ok(Round::Done(outcomes)) => {
            for (&i, outcome) in at.iter().zip(outcomes) {
                answers[i] = Some(match answer(&group[i], outcome) {
                    Some(answer) => answer,
                    None => alone(i),
                });
            }
        }
        Ok(Round::Aborted) => {
            for &i in at {
                answers[i] = Some(alone(i));
            }
        }
        Err(e) => {
            for &i in at {
                answers[i] = Some(Err(e.clone()));
            }
        }
    }
}

/// One batch in a statement of its own, again while its key vanishes.
fn write_alone(entry: &Entry, round: &impl Fn(&[&Entry]) -> Result<Round, StoreError>) -> Answer {
    for _ in 0..VANISHED_RETRIES {
        match round(&[entry]) {
            Ok(Round::Done(outcomes)) => match outcomes.first() {
                Some(&outcome) => match answer(entry, outcome) {
                    Some(answer) => return answer,
                    None => continue,
                },
                None => break,
            },
            Ok(Round::Aborted) => break,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(format!(
        "the idempotency key {:?} kept vanishing while it was checked; nothing was applied",
        entry.key.as_ref().map_or("", |k| k.text.as_str())
    )))
}

/// The answer of an outcome; `None` when the batch must be written again.
fn answer(entry: &Entry, outcome: Outcome) -> Option<Answer> {
    match outcome {
        Outcome::Applied => Some(Ok(false)),
        Outcome::Repeat => Some(Ok(true)),
        Outcome::Reused => Some(Err(StoreError::KeyReused {
            key: entry
                .key
                .as_ref()
                .map(|k| k.text.clone())
                .unwrap_or_default(),
        })),
        Outcome::Vanished => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    fn entry(counters: &[(&str, i64)], key: Option<(&str, &[u8])>) -> Entry {
        Entry {
            batch: Batch {
                gauges: vec![],
                counters: counters
                    .iter()
                    .map(|(n, d)| ((*n).to_owned(), *d))
                    .collect(),
            },
            key: key.map(|(text, body)| Key::new(text, "updates", "/updates/", body)),
            submitted: Instant::now(),
        }
    }

    /// A database in memory that answers rounds as the statement does: keys first, then the
    /// live batches' counters summed, an overflow aborting everything.
    struct Fake {
        totals: Mutex<BTreeMap<String, i64>>,
        keys: Mutex<BTreeMap<String, [u8; 16]>>,
        /// The sizes of the rounds, in order.
        rounds: Mutex<Vec<usize>>,
        /// Rounds (by number) in which a not-fresh key is reported vanished.
        vanish: Vec<usize>,
    }

    impl Fake {
        fn new(totals: &[(&str, i64)]) -> Self {
            Self {
                totals: Mutex::new(totals.iter().map(|(n, t)| ((*n).into(), *t)).collect()),
                keys: Mutex::default(),
                rounds: Mutex::default(),
                vanish: vec![],
            }
        }

        fn round(&self, entries: &[&Entry]) -> Result<Round, StoreError> {
            let number = {
                let mut rounds = self.rounds.lock().unwrap();
                rounds.push(entries.len());
                rounds.len() - 1
            };
            let mut keys = self.keys.lock().unwrap().clone();
            let mut outcomes = Vec::new();
            for e in entries {
                outcomes.push(match &e.key {
                    None => Outcome::Applied,
                    Some(k) => match keys.get(&k.text) {
                        None => {
                            keys.insert(k.text.clone(), k.fingerprint);
                            Outcome::Applied
                        }
                        Some(_) if self.vanish.contains(&number) => Outcome::Vanished,
                        Some(f) if *f == k.fingerprint => Outcome::Repeat,
                        Some(_) => Outcome::Reused,
                    },
                });
            }
            let mut totals = self.totals.lock().unwrap().clone();
            for (e, o) in entries.iter().zip(&outcomes) {
                if *o != Outcome::Applied {
                    continue;
                }
                for (name, delta) in &e.batch.counters {
                    let total = totals.entry(name.clone()).or_insert(0);
                    match total.checked_add(*delta) {
                        Some(sum) => *total = sum,
                        None if entries.len() > 1 => return Ok(Round::Aborted),
                        None => return Err(StoreError::Overflow { name: name.clone() }),
                    }
                }
            }
            *self.totals.lock().unwrap() = totals;
            *self.keys.lock().unwrap() = keys;
            Ok(Round::Done(outcomes))
        }

        fn total(&self, name: &str) -> i64 {
            self.totals.lock().unwrap()[name]
        }
    }

    #[test]
    fn a_round_is_one_statement_and_repeats_apply_nothing() {
        let fake = Fake::new(&[]);
        let group = [
            entry(&[("c", 1)], None),
            entry(&[("c", 2)], Some(("k", b"a"))),
            entry(&[("c", 4)], Some(("j", b"b"))),
        ];
        assert_eq!(
            apply_group(&group, |e| fake.round(e)),
            [Ok(false), Ok(false), Ok(false)]
        );
        assert_eq!(*fake.rounds.lock().unwrap(), [3]);
        // The keyed ones again, and one key with another body.
        let again = [group[1].clone(), entry(&[("c", 8)], Some(("j", b"other")))];
        assert_eq!(
            apply_group(&again, |e| fake.round(e)),
            [Ok(true), Err(StoreError::KeyReused { key: "j".into() })]
        );
        assert_eq!(fake.total("c"), 7);
    }

    #[test]
    fn the_same_key_twice_in_a_round_is_applied_once() {
        let fake = Fake::new(&[]);
        let group = [
            entry(&[("c", 1)], Some(("k", b"a"))),
            entry(&[("c", 1)], Some(("k", b"a"))),
            entry(&[("c", 10)], None),
            entry(&[("c", 100)], Some(("k", b"other"))),
            entry(&[("c", 1)], Some(("k", b"a"))),
        ];
        assert_eq!(
            apply_group(&group, |e| fake.round(e)),
            [
                Ok(false),
                Ok(true),
                Ok(false),
                Err(StoreError::KeyReused { key: "k".into() }),
                Ok(true)
            ]
        );
        assert_eq!(fake.total("c"), 11);
        assert_eq!(*fake.rounds.lock().unwrap(), [2, 1, 1, 1]);
    }

    #[test]
    fn an_overflow_fails_only_the_guilty_batch_and_records_only_the_others_keys() {
        let fake = Fake::new(&[("c", i64::MAX - 5)]);
        let group = [
            entry(&[("c", 2)], Some(("a", b""))),
            entry(&[("c", 10)], Some(("b", b""))),
            entry(&[("d", 1)], None),
            entry(&[("c", 3)], Some(("a", b""))),
        ];
        let overflow = Err(StoreError::Overflow { name: "c".into() });
        assert_eq!(
            apply_group(&group, |e| fake.round(e)),
            [Ok(false), overflow, Ok(false), Ok(true)]
        );
        assert_eq!(
            *fake.rounds.lock().unwrap(),
            [3, 1, 1, 1, 1],
            "the round, its 3 batches alone, then the duplicate"
        );
        assert_eq!(fake.total("c"), i64::MAX - 3);
        let keys = fake.keys.lock().unwrap();
        assert!(keys.contains_key("a") && !keys.contains_key("b"));
    }

    #[test]
    fn another_error_fails_the_whole_round() {
        let group = [entry(&[("c", 1)], None), entry(&[], Some(("k", b"")))];
        let down = StoreError::Unavailable("down".into());
        let calls = Mutex::new(0);
        let results = apply_group(&group, |_| {
            *calls.lock().unwrap() += 1;
            Err(down.clone())
        });
        assert_eq!(results, [Err(down.clone()), Err(down)]);
        assert_eq!(*calls.lock().unwrap(), 1, "not retried one by one");
    }

    #[test]
    fn a_vanished_key_is_written_again_alone_a_few_times() {
        let mut fake = Fake::new(&[]);
        fake.keys.lock().unwrap().insert(
            "k".into(),
            Key::new("k", "updates", "/updates/", b"").fingerprint,
        );
        fake.vanish = vec![0, 1];
        let group = [
            entry(&[("c", 1)], None),
            entry(&[("c", 1)], Some(("k", b""))),
        ];
        assert_eq!(
            apply_group(&group, |e| fake.round(e)),
            [Ok(false), Ok(true)]
        );
        assert_eq!(*fake.rounds.lock().unwrap(), [2, 1, 1]);

        fake.vanish = (0..10).collect();
        fake.rounds.lock().unwrap().clear();
        let answers = apply_group(&group[1..], |e| fake.round(e));
        assert!(
            matches!(&answers[..], [Err(StoreError::Unavailable(why))] if why.contains("vanishing")),
            "{answers:?}"
        );
    }
}
