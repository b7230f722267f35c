//! The scheduler's books: every poll is in exactly one place — pending in the [`Accumulator`],
//! in an outstanding [`Report`] (in flight or in doubt), or settled. The ledger owns the
//! first two and the key counter, decides when a batch may be cut, and gives the state file
//! its content.
//!
//! A batch is cut only while a sender is free, so a report never waits in a queue while its
//! deltas could still join the next one; while every sender holds a report in doubt the
//! reports are skipped and the deltas stay pending, bounded by the number of names. Reports
//! restored from the state file are outstanding from the start and go out before any new one.
//!
//! Polls are counted by the `PollCount` deltas: this process's under its tagged name, the
//! pending and outstanding ones under any tags ([`is_poll_count`]), since deltas restored from
//! a run with other `TAGS` keep their names.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::accumulator::{Accumulator, Name, Sample};
use crate::report::{Keys, Report};
use crate::runtime::POLL_COUNT;
use crate::state::{FORMAT, Restored, Run, Saved, State};
use crate::tagging::{Tagger, is_poll_count};

#[derive(Debug)]
struct Outstanding {
    report: Arc<Report>,
    /// Handed to a sender that has not given it back.
    held: bool,
}

/// Pending deltas, outstanding reports and keys.
#[derive(Debug)]
pub struct Ledger {
    acc: Accumulator,
    /// `PollCount` as this process records it (with its tags).
    poll_count: Name,
    keys: Keys,
    senders: usize,
    /// By sequence number, i.e. oldest first.
    outstanding: BTreeMap<u64, Outstanding>,
}

impl Ledger {
    /// The books of `senders` sender workers, starting from what an earlier process left;
    /// every sample's names get `tagger`'s tags.
    pub fn new(restored: Restored, senders: usize, tagger: Tagger) -> Self {
        let mut acc = Accumulator::with_tagger(tagger);
        let poll_count = acc.name(POLL_COUNT);
        acc.add_pending(restored.pending);
        let outstanding = restored
            .in_doubt
            .into_iter()
            .map(|report| {
                let entry = Outstanding {
                    report: Arc::new(report),
                    held: false,
                };
                (entry.report.sequence, entry)
            })
            .collect();
        Self {
            acc,
            poll_count,
            keys: restored.keys,
            senders,
            outstanding,
        }
    }

    pub fn instance(&self) -> &str {
        self.keys.instance()
    }

    pub fn record(&mut self, sample: Sample) {
        self.acc.record(sample);
    }

    /// Polls recorded by this process.
    pub fn polls_made(&self) -> u64 {
        self.acc.recorded(self.poll_count).max(0) as u64
    }

    /// Polls in no report yet (restored ones under an earlier run's tags included).
    pub fn pending_polls(&self) -> i64 {
        self.acc
            .pending_counters_iter()
            .filter(|(name, _)| is_poll_count(name))
            .map(|(_, delta)| delta)
            .sum()
    }

    /// Polls in outstanding reports (in flight or in doubt).
    pub fn in_doubt_polls(&self) -> i64 {
        self.outstanding.values().map(|o| o.report.polls).sum()
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    fn held(&self) -> usize {
        self.outstanding.values().filter(|o| o.held).count()
    }

    /// Cuts the next batch when a sender is free and no older report waits for one. `false`:
    /// the report is skipped and its deltas stay pending.
    pub fn cut(&mut self) -> bool {
        if self.outstanding.len() >= self.senders {
            return false;
        }
        self.cut_now()
    }

    /// The final report at shutdown: cut whenever there is something to say — unless `bounded`
    /// (a state file keeps the books) and there are already as many reports outstanding as
    /// senders, so that restarts during an outage cannot pile up reports in the file.
    pub fn cut_final(&mut self, bounded: bool) -> Option<u64> {
        if bounded && self.outstanding.len() >= self.senders {
            return None;
        }
        self.cut_now().then(|| self.keys.next_sequence() - 1)
    }

    fn cut_now(&mut self) -> bool {
        let Some(batch) = self.acc.take() else {
            return false;
        };
        let report = Arc::new(self.keys.cut(&batch));
        self.outstanding.insert(
            report.sequence,
            Outstanding {
                report,
                held: false,
            },
        );
        true
    }

    /// The oldest report no sender holds, marked held, while a sender is free.
    pub fn hand_out(&mut self) -> Option<Arc<Report>> {
        if self.held() >= self.senders {
            return None;
        }
        let entry = self.outstanding.values_mut().find(|o| !o.held)?;
        entry.held = true;
        Some(entry.report.clone())
    }

    /// Reports no sender holds, oldest first (at shutdown).
    pub fn returned(&self) -> Vec<Arc<Report>> {
        self.outstanding
            .values()
            .filter(|o| !o.held)
            .map(|o| o.report.clone())
            .collect()
    }

    /// A definite answer (delivered or refused): the report is done with.
    pub fn settled(&mut self, sequence: u64) -> Option<Arc<Report>> {
        self.outstanding.remove(&sequence).map(|o| o.report)
    }

    /// A sender gave the report back still in doubt (shutdown).
    pub fn given_back(&mut self, sequence: u64) {
        if let Some(entry) = self.outstanding.get_mut(&sequence) {
            entry.held = false;
        }
    }

    /// The report by sequence number.
    pub fn report(&self, sequence: u64) -> Option<Arc<Report>> {
        self.outstanding.get(&sequence).map(|o| o.report.clone())
    }

    /// What the state file holds now, written by `run`.
    pub fn state(&self, run: Run) -> State {
        State {
            format: FORMAT,
            instance: self.keys.instance().to_owned(),
            next_sequence: self.keys.next_sequence(),
            run,
            pending: self
                .acc
                .pending_counters_iter()
                .map(|(name, delta)| (name.to_owned(), delta))
                .collect(),
            in_doubt: self
                .outstanding
                .values()
                .map(|o| Saved::of(&o.report))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll() -> Sample {
        Sample {
            gauges: vec![("g", 1.0)],
            counters: vec![("PollCount", 1)],
        }
    }

    fn ledger(senders: usize) -> Ledger {
        Ledger::new(Restored::fresh(), senders, Tagger::default())
    }

    #[test]
    fn a_report_in_doubt_is_never_merged_back_and_new_polls_wait_for_a_free_sender() {
        let mut books = ledger(1);
        for _ in 0..3 {
            books.record(poll());
        }
        assert!(books.cut());
        let first = books.hand_out().unwrap();
        assert_eq!(first.polls, 3);
        // The report goes in doubt; the sender keeps it. Polls go on.
        for _ in 0..5 {
            books.record(poll());
            assert!(!books.cut(), "every sender is busy: the report is skipped");
            assert!(books.hand_out().is_none());
        }
        assert_eq!(
            books.pending_polls(),
            5,
            "the report's 3 polls are not merged back"
        );
        assert_eq!(books.in_doubt_polls(), 3);
        // The server finally answers: the report is done, nothing comes back.
        assert_eq!(books.settled(first.sequence).unwrap().key, first.key);
        assert_eq!(books.pending_polls(), 5);
        assert!(books.cut());
        let second = books.hand_out().unwrap();
        assert_eq!(second.polls, 5);
        assert_eq!(second.sequence, first.sequence + 1);
        assert_ne!(second.key, first.key);
        assert_eq!(books.polls_made(), 8);
    }

    #[test]
    fn restored_reports_go_out_first_with_their_keys() {
        let mut old = ledger(2);
        old.record(poll());
        assert!(old.cut());
        old.record(poll());
        old.record(poll());
        let saved = old.state(Run {
            id: "r".into(),
            polls: 3,
            clean: true,
        });
        let restored_key = saved.in_doubt[0].key.clone();
        let state = State::decode(&saved.encode()).unwrap();
        let restored = Restored::of(state);
        let mut books = Ledger::new(restored, 1, Tagger::default());
        assert_eq!(books.instance(), old.instance());
        assert_eq!((books.pending_polls(), books.in_doubt_polls()), (2, 1));
        assert!(!books.cut(), "the restored report takes the only sender");
        let first = books.hand_out().unwrap();
        assert_eq!(first.key, restored_key);
        books.settled(first.sequence);
        assert!(books.cut());
        let next = books.hand_out().unwrap();
        assert_eq!(next.sequence, first.sequence + 1, "keys continue");
        assert_eq!(next.polls, 2);
    }

    #[test]
    fn deltas_saved_under_other_tags_leave_once_under_their_names() {
        let old_tags = golectra_common::tags::parse_tag_list("host=old").unwrap();
        let mut old = Ledger::new(Restored::fresh(), 1, Tagger::new(old_tags));
        old.record(poll());
        assert!(old.cut());
        old.record(poll());
        old.record(poll());
        let run = Run {
            id: "r".into(),
            polls: 3,
            clean: true,
        };
        let saved = old.state(run);
        assert_eq!(saved.pending["PollCount;host=old"], 2);
        assert!(
            saved.in_doubt[0]
                .body
                .contains(r#""id":"PollCount;host=old""#)
        );
        let restored = Restored::of(State::decode(&saved.encode()).unwrap());
        let new_tags = golectra_common::tags::parse_tag_list("host=new").unwrap();
        let mut books = Ledger::new(restored, 1, Tagger::new(new_tags));
        assert_eq!((books.pending_polls(), books.in_doubt_polls()), (2, 1));
        books.record(poll());
        assert_eq!((books.polls_made(), books.pending_polls()), (1, 3));
        // The report in doubt goes out as it was; the old pending deltas join the next one.
        let first = books.hand_out().unwrap();
        assert!(
            String::from_utf8_lossy(&first.body)
                .contains(r#""PollCount;host=old","type":"counter","delta":1"#)
        );
        books.settled(first.sequence);
        assert!(books.cut());
        let next = books.hand_out().unwrap();
        assert_eq!(next.polls, 3);
        let body = String::from_utf8_lossy(&next.body).into_owned();
        assert!(
            body.contains(r#"{"id":"g;host=new","type":"gauge","value":1.0}"#),
            "{body}"
        );
        assert!(
            body.contains(r#"{"id":"PollCount;host=new","type":"counter","delta":1}"#),
            "{body}"
        );
        assert!(
            body.contains(r#"{"id":"PollCount;host=old","type":"counter","delta":2}"#),
            "{body}"
        );
        assert_eq!(books.pending_polls(), 0);
    }

    #[test]
    fn reports_given_back_at_shutdown_are_returned_and_saved() {
        let mut books = ledger(2);
        books.record(poll());
        assert!(books.cut());
        let held = books.hand_out().unwrap();
        assert!(books.returned().is_empty());
        books.given_back(held.sequence);
        assert_eq!(books.returned(), vec![held.clone()]);
        books.record(poll());
        // A state file bounds the reports to the number of senders: one more fits.
        assert!(books.cut_final(true).is_some());
        books.record(poll());
        assert!(books.cut_final(true).is_none());
        assert_eq!(books.pending_polls(), 1);
        // Without a state file the last polls leave anyway.
        assert!(books.cut_final(false).is_some());
        let state = books.state(Run {
            id: "r".into(),
            polls: 3,
            clean: true,
        });
        assert_eq!(state.in_doubt.len(), 3);
        assert_eq!(state.in_doubt_polls(), 3);
        assert_eq!(state.pending_polls(), 0);
    }
}
