//! The rule for a report whose outcome is unknown (docs/agent.md, "Delivery").
//!
//! A connection error, a timeout, a connection closed after the body was sent, `408`, `429` or
//! a `5xx` says nothing about whether the server applied the batch. Merging its deltas back
//! into the pending totals would count them twice whenever it had; dropping them would lose
//! them whenever it had not. So such a report is *in doubt*: it is re-sent with the same key
//! and the same body after 1 s, 3 s and 5 s, then once per report interval, until the server
//! gives a definite answer — `2xx` (done) or another `4xx` (refused: logged and dropped, as the
//! original does). A server that honours `Idempotency-Key` applies it exactly once; one that
//! ignores the header (the original) at least once.
//!
//! [`settle`] is that loop, written against a [`Transport`] so that its rules are tested
//! without a network. It warns once when a report stays in doubt past the fast retries, then at
//! most once a minute, and once when it has been in doubt longer than the 10 minutes a server
//! keeps keys at least: past the server's retention a late retry could be applied twice.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, after, never, select};

use crate::report::Report;

/// Waits before the 2nd, 3rd and 4th attempt; later attempts come once per report interval.
pub const FAST_RETRIES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(5),
];

/// At most one "still in doubt" line per report per this period.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// The shortest time a server keeps idempotency keys (its `IDEMPOTENCY_RETENTION` is at least
/// this): a report in doubt for longer may be applied twice by a late retry.
pub const MIN_KEY_RETENTION: Duration = Duration::from_secs(10 * 60);

/// What one attempt (one request, or one pass over the metrics one by one) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// `2xx`: the server has applied the report.
    Delivered,
    /// A definite refusal (`400`, `401`, `403`, `413`, `422`…): retrying cannot help.
    Refused(String),
    /// The outcome is unknown: the report is in doubt.
    Unknown(String),
}

/// Sends a report once.
pub trait Transport {
    /// What a transport remembers between attempts at one report (the one-by-one fallback's
    /// place in the batch).
    type Progress: Default;

    /// One attempt at `report`; no request runs past `deadline`.
    fn attempt(
        &self,
        report: &Report,
        progress: &mut Self::Progress,
        deadline: Option<Instant>,
    ) -> Attempt;
}

/// When attempts are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Waits before the first re-sends ([`FAST_RETRIES`]).
    pub fast: Vec<Duration>,
    /// Wait between the later re-sends (the report interval).
    pub slow: Duration,
    /// At most one "still in doubt" line per this period ([`WARN_EVERY`]).
    pub warn_every: Duration,
    /// A report in doubt longer than this gets one warning ([`MIN_KEY_RETENTION`]).
    pub retention: Duration,
}

impl Schedule {
    /// The agent's schedule for a report interval of `slow`.
    pub fn new(slow: Duration) -> Self {
        Self {
            fast: FAST_RETRIES.to_vec(),
            slow,
            warn_every: WARN_EVERY,
            retention: MIN_KEY_RETENTION,
        }
    }
}

/// When to stop re-sending.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Disconnects (or receives) when the agent shuts down: waits end at once.
    pub stop: Receiver<()>,
    /// No attempt starts, and no request runs, past this instant.
    pub deadline: Option<Instant>,
}

impl Budget {
    /// Until `stop` fires.
    pub fn until_stopped(stop: Receiver<()>) -> Self {
        Self {
            stop,
            deadline: None,
        }
    }

    /// Until the deadline, whatever happens elsewhere (the final report).
    pub fn until(deadline: Instant) -> Self {
        Self {
            stop: never(),
            deadline: Some(deadline),
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Waits `delay` unless stopped or past the deadline; `false` means "give up for now".
    pub fn wait(&self, delay: Duration) -> bool {
        if self
            .deadline
            .is_some_and(|d| d.saturating_duration_since(Instant::now()) <= delay)
        {
            return false;
        }
        select! {
            recv(self.stop) -> _ => false,
            recv(after(delay)) -> _ => true,
        }
    }
}

/// How [`settle`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The server acknowledged the report.
    Delivered,
    /// The server refused it for good.
    Refused(String),
    /// Stopped or out of time with the outcome still unknown (the last error): the report
    /// stays in doubt, to be re-sent with its key later or by the next process.
    InDoubt(String),
}

/// Sends `report` until a definite answer or until `budget` runs out. `in_doubt` is called once,
/// when the report is still in doubt after the fast retries.
pub fn settle<T: Transport>(
    transport: &T,
    report: &Report,
    schedule: &Schedule,
    budget: &Budget,
    mut in_doubt: impl FnMut(),
) -> Settled {
    let mut progress = T::Progress::default();
    let mut tries = 0;
    let mut warned: Option<Instant> = None;
    let mut retention_warned = false;
    loop {
        let error = match transport.attempt(report, &mut progress, budget.deadline) {
            Attempt::Delivered => {
                if warned.is_some() {
                    log::info!(
                        "report {} delivered after {}s in doubt",
                        report.key,
                        report.age().as_secs()
                    );
                }
                return Settled::Delivered;
            }
            Attempt::Refused(why) => return Settled::Refused(why),
            Attempt::Unknown(error) => error,
        };
        log::debug!("report {}: {error}", report.key);
        let delay = match schedule.fast.get(tries) {
            Some(delay) => *delay,
            None => {
                let age = report.age();
                if warned.is_none_or(|at| at.elapsed() >= schedule.warn_every) {
                    log::warn!(
                        "report {} ({} metrics) still in doubt after {}s: {error}; re-sending with the same key",
                        report.key,
                        report.metrics,
                        age.as_secs()
                    );
                    if warned.is_none() {
                        in_doubt();
                    }
                    warned = Some(Instant::now());
                }
                if !retention_warned && age > schedule.retention {
                    log::warn!(
                        "report {} has been in doubt for {}s, longer than the {} min a server keeps idempotency keys at least (IDEMPOTENCY_RETENTION): once the server has forgotten the key, a late retry could be counted twice",
                        report.key,
                        age.as_secs(),
                        schedule.retention.as_secs() / 60
                    );
                    retention_warned = true;
                }
                schedule.slow
            }
        };
        tries += 1;
        if !budget.wait(delay) {
            return Settled::InDoubt(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::accumulator::Batch;
    use crate::report::Keys;

    /// Answers from a script and records what every attempt sent.
    struct Scripted {
        answers: RefCell<Vec<Attempt>>,
        sent: RefCell<Vec<(String, Vec<u8>)>>,
    }

    impl Scripted {
        fn new(mut answers: Vec<Attempt>) -> Self {
            answers.reverse();
            Self {
                answers: RefCell::new(answers),
                sent: RefCell::default(),
            }
        }
    }

    impl Transport for Scripted {
        type Progress = ();

        fn attempt(&self, report: &Report, _: &mut (), _: Option<Instant>) -> Attempt {
            self.sent
                .borrow_mut()
                .push((report.key.clone(), report.body.clone()));
            self.answers
                .borrow_mut()
                .pop()
                .unwrap_or_else(|| Attempt::Unknown("script exhausted".into()))
        }
    }

    fn quick() -> Schedule {
        Schedule {
            fast: vec![Duration::from_millis(1); 3],
            slow: Duration::from_millis(1),
            warn_every: Duration::ZERO,
            retention: MIN_KEY_RETENTION,
        }
    }

    fn report() -> Report {
        Keys::fresh().cut(&Batch {
            gauges: vec![("g", 0.25)],
            counters: vec![("PollCount", 5)],
        })
    }

    fn unknown(n: usize) -> Vec<Attempt> {
        vec![Attempt::Unknown("503 Service Unavailable".into()); n]
    }

    #[test]
    fn a_report_in_doubt_is_re_sent_with_the_same_key_and_body_until_delivered() {
        let report = report();
        let transport = Scripted::new([unknown(7), vec![Attempt::Delivered]].concat());
        let (_stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let mut in_doubt = 0;
        let settled = settle(
            &transport,
            &report,
            &quick(),
            &Budget::until_stopped(stop),
            || in_doubt += 1,
        );
        assert_eq!(settled, Settled::Delivered);
        let sent = transport.sent.borrow();
        assert_eq!(sent.len(), 8, "past the three fast retries it goes on");
        assert!(
            sent.iter()
                .all(|(key, body)| *key == report.key && *body == report.body),
            "never re-keyed, never rebuilt"
        );
        assert_eq!(in_doubt, 1, "in doubt once, after the fast retries");
    }

    #[test]
    fn a_refusal_ends_the_retries_and_is_not_in_doubt() {
        let transport = Scripted::new(vec![
            Attempt::Unknown("timed out".into()),
            Attempt::Refused("400 bad signature".into()),
        ]);
        let mut in_doubt = false;
        let settled = settle(
            &transport,
            &report(),
            &quick(),
            &Budget::until(Instant::now() + Duration::from_secs(5)),
            || in_doubt = true,
        );
        assert_eq!(settled, Settled::Refused("400 bad signature".into()));
        assert_eq!(transport.sent.borrow().len(), 2);
        assert!(!in_doubt);
    }

    #[test]
    fn stopping_leaves_the_report_in_doubt_with_the_last_error() {
        let transport = Scripted::new(unknown(1));
        let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        drop(stop_tx);
        let settled = settle(
            &transport,
            &report(),
            &Schedule::new(Duration::from_secs(10)),
            &Budget::until_stopped(stop),
            || {},
        );
        assert_eq!(settled, Settled::InDoubt("503 Service Unavailable".into()));
        assert_eq!(transport.sent.borrow().len(), 1);
    }

    #[test]
    fn a_deadline_shorter_than_the_next_wait_ends_at_once() {
        let transport = Scripted::new(unknown(3));
        let started = Instant::now();
        let settled = settle(
            &transport,
            &report(),
            &Schedule::new(Duration::from_secs(10)),
            &Budget::until(Instant::now() + Duration::from_millis(500)),
            || {},
        );
        assert!(matches!(settled, Settled::InDoubt(_)));
        assert_eq!(transport.sent.borrow().len(), 1);
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn an_old_report_in_doubt_still_goes_out_with_its_key() {
        let mut old = report();
        old.first_sent -= 11 * 60;
        let transport = Scripted::new([unknown(4), vec![Attempt::Delivered]].concat());
        let (_stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let settled = settle(
            &transport,
            &old,
            &quick(),
            &Budget::until_stopped(stop),
            || {},
        );
        assert_eq!(settled, Settled::Delivered);
        assert!(old.age() > MIN_KEY_RETENTION);
        assert!(transport.sent.borrow().iter().all(|(k, _)| *k == old.key));
    }
}
