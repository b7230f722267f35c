//! The scheduler thread: samples in, one keyed report out per report interval while a sender
//! is free, the state file kept current, and the shutdown sequence with the exit line
//! (docs/agent.md, "Delivery" and "State file").
//!
//! The state file is written before a report's first attempt, when a report settles or goes in
//! doubt, and at every report interval; the poll journal after every poll. At shutdown the
//! senders give their reports back, the final report (the pending deltas, under a new key) is
//! tried first, then the reports still in doubt, all within one short deadline; what remains is
//! saved (or, without a state file, counted) and the last line says where every poll is:
//! `stopped after N polls; final report delivered` or
//! `stopped after N polls; P polls pending, D polls in doubt, L polls lost…`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, at, never, select, tick};
use golectra_common::notify::Notifier;

use crate::accumulator::Sample;
use crate::in_doubt::{self, Budget, Schedule, Settled};
use crate::ledger::Ledger;
use crate::report::Report;
use crate::sender::HttpSender;
use crate::state::StateFile;

/// How long shutdown waits for pollers and busy senders before the final report.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long the final report may take, retries and the reports in doubt included.
const FINAL_REPORT_DEADLINE: Duration = Duration::from_secs(5);

/// What a sender tells the scheduler about the report it holds.
#[derive(Debug)]
pub enum Event {
    /// Still in doubt after the fast retries; the sender keeps it.
    InDoubt(u64),
    /// The sender is done with it: delivered, refused, or given back in doubt (stopping).
    Done(u64, Settled),
}

pub struct Scheduler {
    pub report_interval: Duration,
    pub poll_interval: Duration,
    pub notifier: Arc<Notifier>,
    pub sender: Arc<HttpSender>,
    pub schedule: Schedule,
    pub samples: Receiver<Sample>,
    pub events: Receiver<Event>,
    /// `None` once shutdown began: the senders' channel is closed.
    pub reports_tx: Option<Sender<Arc<Report>>>,
    /// The senders' end, to take back reports none picked up.
    pub reports: Receiver<Arc<Report>>,
    pub stop: Receiver<()>,
    pub ledger: Ledger,
    pub state_file: Option<StateFile>,
}

impl Scheduler {
    /// Runs until stopped; returns the exit line.
    pub fn run(mut self) -> String {
        match &self.state_file {
            None => log::info!(
                "instance {}; no STATE_FILE: what is not delivered at exit is lost",
                self.ledger.instance()
            ),
            // The new run takes over the account before it polls (see `journal`).
            Some(_) => {
                self.save(false);
            }
        }
        self.hand_out();
        let report = tick(self.report_interval);
        let watchdog = self.notifier.watchdog_interval().map_or(never(), tick);
        // A watchdog ping vouches for the pollers: it is only sent while samples keep coming.
        let stale_after =
            self.poll_interval * 3 + self.notifier.watchdog_interval().unwrap_or_default();
        let mut last_sample: Option<Instant> = None;
        loop {
            select! {
                recv(self.samples) -> sample => match sample {
                    Ok(sample) => {
                        if last_sample.is_none() {
                            self.notifier.ready("collecting");
                            log::info!("collecting");
                        }
                        last_sample = Some(Instant::now());
                        self.record(sample);
                    }
                    Err(_) => break,
                },
                recv(self.events) -> event => match event {
                    Ok(event) => {
                        self.apply(event);
                        self.save(false);
                        self.hand_out();
                    }
                    Err(_) => {
                        // At shutdown the senders may finish before this loop sees `stop`
                        // (select picks among ready channels at random): that is the normal end.
                        if self.stop.try_recv().is_err_and(|e| e.is_disconnected()) {
                            break;
                        }
                        // Otherwise only a panic ends a sender; stop listening so the loop does
                        // not spin on the closed channel.
                        log::error!("every sender thread has stopped: reports cannot be sent");
                        self.events = never();
                    }
                },
                recv(report) -> _ => self.report(),
                recv(watchdog) -> _ => {
                    if last_sample.is_some_and(|at| at.elapsed() <= stale_after) {
                        self.notifier.watchdog();
                    } else {
                        log::warn!("no sample for {stale_after:?}: withholding the watchdog ping");
                    }
                }
                recv(self.stop) -> _ => break,
            }
        }
        self.finish()
    }

    fn record(&mut self, sample: Sample) {
        let before = self.ledger.polls_made();
        self.ledger.record(sample);
        let polls = self.ledger.polls_made();
        if polls != before
            && let Some(file) = &self.state_file
        {
            file.record_polls(polls);
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            // The file already holds it (since before its first attempt); the save that follows
            // every event refreshes the poll account.
            Event::InDoubt(sequence) => log::debug!("report #{sequence} is in doubt"),
            Event::Done(sequence, Settled::InDoubt(_)) => self.ledger.given_back(sequence),
            Event::Done(sequence, Settled::Delivered | Settled::Refused(_)) => {
                self.ledger.settled(sequence);
            }
        }
    }

    /// Every report interval: a new report if a sender is free, and the state file written.
    fn report(&mut self) {
        if !self.ledger.cut() && self.ledger.outstanding() > 0 {
            log::debug!(
                "every sender is busy: {} polls pending wait for the next report",
                self.ledger.pending_polls()
            );
        }
        self.save(false);
        self.hand_out();
    }

    /// Gives free senders the oldest reports none holds.
    fn hand_out(&mut self) {
        let Some(tx) = &self.reports_tx else {
            return;
        };
        while let Some(report) = self.ledger.hand_out() {
            if tx.try_send(report.clone()).is_err() {
                self.ledger.given_back(report.sequence);
                break;
            }
        }
    }

    /// Writes the state file (when there is one); `clean` only in the last write.
    fn save(&mut self, clean: bool) -> Option<Result<(), String>> {
        let file = self.state_file.as_mut()?;
        let state = self.ledger.state(file.run(self.ledger.polls_made(), clean));
        Some(file.save(&state).map_err(|e| e.to_string()))
    }

    fn finish(mut self) -> String {
        let deadline = Instant::now() + DRAIN_DEADLINE;
        // 1. The pollers' last samples: the channel disconnects once both have returned.
        loop {
            select! {
                recv(self.samples) -> sample => match sample {
                    Ok(sample) => self.record(sample),
                    Err(_) => break,
                },
                recv(at(deadline)) -> _ => {
                    log::warn!("a poller did not stop in time; its last sample is not reported");
                    break;
                }
            }
        }
        // 2. Senders stop re-sending and give back what they hold; `events` disconnects once
        //    every sender has returned.
        self.reports_tx = None;
        loop {
            select! {
                recv(self.events) -> event => match event {
                    Ok(event) => self.apply(event),
                    Err(_) => break,
                },
                recv(at(deadline)) -> _ => {
                    log::warn!("a sender is still waiting for an answer; its report stays in doubt");
                    break;
                }
            }
        }
        // 3. Reports no sender picked up.
        while let Ok(report) = self.reports.try_recv() {
            self.ledger.given_back(report.sequence);
        }
        // 4. The final report, on disk before its first attempt, then the reports in doubt.
        //    With a state file and every sender's worth of reports in doubt, the final report
        //    is cut only once one of those has settled.
        let bounded = self.state_file.is_some();
        let mut last = self.ledger.cut_final(bounded);
        self.save(false);
        let mut order: VecDeque<Arc<Report>> = last
            .and_then(|s| self.ledger.report(s))
            .into_iter()
            .collect();
        order.extend(
            self.ledger
                .returned()
                .into_iter()
                .filter(|r| Some(r.sequence) != last),
        );
        let budget = Budget::until(Instant::now() + FINAL_REPORT_DEADLINE);
        let mut end = End::default();
        while let Some(report) = order.pop_front() {
            match in_doubt::settle(&*self.sender, &report, &self.schedule, &budget, || {}) {
                Settled::Delivered => {
                    self.ledger.settled(report.sequence);
                }
                Settled::Refused(why) => {
                    log::warn!(
                        "report {} ({} metrics) refused and dropped: {why}",
                        report.key,
                        report.metrics
                    );
                    self.ledger.settled(report.sequence);
                    end.refused_polls += report.polls;
                    end.refusal.get_or_insert(why);
                }
                Settled::InDoubt(error) => {
                    end.last_error.get_or_insert(error);
                }
            }
            if last.is_none() && order.is_empty() && !budget.expired() {
                last = self.ledger.cut_final(bounded);
                if let Some(report) = last.and_then(|s| self.ledger.report(s)) {
                    self.save(false);
                    order.push_back(report);
                }
            }
        }
        end.final_delivered = last.is_some_and(|s| self.ledger.report(s).is_none());
        end.pending_polls = self.ledger.pending_polls();
        end.in_doubt_polls = self.ledger.in_doubt_polls();
        // 5. The last write says the run ended cleanly: nothing it made is unaccounted for.
        let saved = self.save(true);
        let path = self.state_file.as_ref().map(StateFile::path);
        format!(
            "stopped after {} polls; {}",
            self.ledger.polls_made(),
            end.describe(path, saved)
        )
    }
}

/// Where the polls are at the end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct End {
    /// The final report was cut and delivered.
    final_delivered: bool,
    pending_polls: i64,
    in_doubt_polls: i64,
    /// Polls of reports the server refused at shutdown.
    refused_polls: i64,
    refusal: Option<String>,
    last_error: Option<String>,
}

impl End {
    /// The rest of the exit line. `saved`: `None` without a state file, else the last write.
    fn describe(&self, path: Option<&Path>, saved: Option<Result<(), String>>) -> String {
        if self.final_delivered
            && self.pending_polls == 0
            && self.in_doubt_polls == 0
            && self.refused_polls == 0
        {
            return "final report delivered".into();
        }
        let (pending, lost, tail) = match (path, saved) {
            (Some(path), Some(Ok(()))) => (
                self.pending_polls,
                self.refused_polls,
                format!("; saved to {}", path.display()),
            ),
            (Some(path), Some(Err(e))) => (
                0,
                self.pending_polls + self.refused_polls,
                format!("; cannot save them to {}: {e}", path.display()),
            ),
            _ => (
                0,
                self.pending_polls + self.refused_polls,
                if self.in_doubt_polls > 0 {
                    "; no STATE_FILE: the polls in doubt may or may not have been applied by the server, the lost ones were not".into()
                } else {
                    String::new()
                },
            ),
        };
        let mut line = format!(
            "{pending} polls pending, {} polls in doubt, {lost} polls lost",
            self.in_doubt_polls
        );
        if let Some(why) = &self.refusal {
            line.push_str(&format!(" (the final report was refused: {why})"));
        }
        line.push_str(&tail);
        if let (Some(error), true) = (&self.last_error, self.in_doubt_polls > 0) {
            line.push_str(&format!("; last error: {error}"));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_line_accounts_for_every_poll() {
        let delivered = End {
            final_delivered: true,
            ..End::default()
        };
        assert_eq!(delivered.describe(None, None), "final report delivered");
        let path = Path::new("/var/lib/golectra-agent/state.json");
        let outage = End {
            final_delivered: false,
            pending_polls: 4,
            in_doubt_polls: 6,
            last_error: Some("POST …: connection refused".into()),
            ..End::default()
        };
        assert_eq!(
            outage.describe(Some(path), Some(Ok(()))),
            "4 polls pending, 6 polls in doubt, 0 polls lost; saved to /var/lib/golectra-agent/state.json; last error: POST …: connection refused"
        );
        assert_eq!(
            outage.describe(None, None),
            "0 polls pending, 6 polls in doubt, 4 polls lost; no STATE_FILE: the polls in doubt may or may not have been applied by the server, the lost ones were not; last error: POST …: connection refused"
        );
        assert!(
            outage
                .describe(Some(path), Some(Err("No space left on device".into())))
                .starts_with("0 polls pending, 6 polls in doubt, 4 polls lost; cannot save them to /var/lib/golectra-agent/state.json: No space")
        );
        let refused = End {
            final_delivered: false,
            refused_polls: 3,
            refusal: Some("400 bad signature".into()),
            ..End::default()
        };
        assert_eq!(
            refused.describe(Some(path), Some(Ok(()))),
            "0 polls pending, 0 polls in doubt, 3 polls lost (the final report was refused: 400 bad signature); saved to /var/lib/golectra-agent/state.json"
        );
        assert_eq!(
            End::default().describe(None, None),
            "0 polls pending, 0 polls in doubt, 0 polls lost",
            "nothing to report"
        );
    }
}
