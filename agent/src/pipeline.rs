//! The agent's threads and how they talk (README.md, docs/agent.md):
//!
//! ```text
//! poll-runtime ─┐ samples              reports (bounded)   ┌─ sender-1 ─┐
//!               ├──────────► scheduler ──────────────────►├─ sender-2 ─┼─► POST /updates/
//! poll-host ────┘ (bounded)   │   ▲                        └─ …        ┘
//!                             │   └──── events: in doubt, settled ──────┘
//!                             └──► state file, poll journal (with STATE_FILE)
//! ```
//!
//! The scheduler owns the books ([`Ledger`]): it records samples, cuts a keyed report every
//! report interval while a sender is free, writes the state file before the report's first
//! attempt, and hands it to a sender. A sender keeps its report until the server answers
//! definitely, re-sending it with the same key while it is in doubt ([`crate::in_doubt`]);
//! while every sender is busy the reports are skipped and the deltas stay pending, so an outage
//! of any length costs memory proportional to the number of metric names only.
//!
//! Shutdown: dropping the stop sender wakes every thread. Pollers finish, the scheduler takes
//! their last samples, waits (bounded) for the senders to give back what they hold, makes the
//! final report with a short deadline itself, saves the state and hands back the exit line,
//! which [`Pipeline::shutdown`] logs ([`crate::scheduler`]). A sender still waiting for an
//! answer then is not waited for.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, bounded, select, tick};
use golectra_common::notify::Notifier;

use crate::accumulator::Sample;
use crate::config::Config;
use crate::host::Host;
use crate::in_doubt::{self, Budget, Schedule, Settled};
use crate::ledger::Ledger;
use crate::report::Report;
use crate::runtime;
use crate::scheduler::{Event, Scheduler};
use crate::sender::HttpSender;
use crate::state::{Restored, StateFile};
use crate::tagging::Tagger;

/// Stack size of every agent thread, a quarter of Rust's default: nothing recurses, but an HTTP
/// request with gzip needs a few hundred KiB in unoptimized builds. Only touched pages become
/// resident. Also feeds the `StackSys` gauge.
pub const THREAD_STACK: usize = 512 << 10;

/// How long shutdown waits, after the scheduler has finished, for a sender to notice the stop.
const SENDER_JOIN_GRACE: Duration = Duration::from_millis(200);

/// The running agent.
pub struct Pipeline {
    stop: Option<Sender<()>>,
    /// The pollers.
    threads: Vec<JoinHandle<()>>,
    /// Returns the exit line.
    scheduler: Option<JoinHandle<String>>,
    senders: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Spawns the pollers, the scheduler and the sender workers. `restored` is what an earlier
    /// process left in `state_file` (or a fresh instance without one).
    pub fn start(
        config: &Config,
        notifier: Arc<Notifier>,
        restored: Restored,
        state_file: Option<StateFile>,
    ) -> anyhow::Result<Self> {
        let (stop_tx, stop) = bounded::<()>(0);
        let (samples_tx, samples) = bounded::<Sample>(16);
        let (reports_tx, reports) = bounded::<Arc<Report>>(config.rate_limit);
        let (events_tx, events) = bounded::<Event>(4 * config.rate_limit);
        let sender = Arc::new(HttpSender::new(
            &config.server,
            config.key.clone(),
            config.rate_limit,
            config.tls.as_ref(),
        ));
        let schedule = Schedule::new(config.report_interval);
        let host = Host::new().map_err(anyhow::Error::msg)?;
        let mut threads = Vec::new();

        let poll = config.poll_interval;
        let (tx, stop_rx) = (samples_tx.clone(), stop.clone());
        threads.push(spawn("poll-runtime", move || {
            poll_loop(poll, true, tx, stop_rx, || {
                runtime::poll(THREAD_STACK as u64)
            })
        })?);
        let (tx, stop_rx, mut host) = (samples_tx, stop.clone(), host);
        // CPU usage needs a period to measure: the host's first sample comes after one interval.
        threads.push(spawn("poll-host", move || {
            poll_loop(poll, false, tx, stop_rx, move || host.poll())
        })?);

        let mut senders = Vec::new();
        for i in 1..=config.rate_limit {
            let worker = Worker {
                sender: sender.clone(),
                schedule: schedule.clone(),
                reports: reports.clone(),
                events: events_tx.clone(),
                stop: stop.clone(),
            };
            senders.push(spawn(&format!("sender-{i}"), move || worker.run())?);
        }
        drop(events_tx);

        let scheduler = Scheduler {
            report_interval: config.report_interval,
            poll_interval: config.poll_interval,
            notifier,
            sender,
            schedule,
            samples,
            events,
            reports_tx: Some(reports_tx),
            reports,
            stop,
            ledger: Ledger::new(
                restored,
                config.rate_limit,
                Tagger::new(config.tags.clone()),
            ),
            state_file,
        };
        let scheduler = spawn("scheduler", move || scheduler.run())?;
        Ok(Self {
            stop: Some(stop_tx),
            threads,
            scheduler: Some(scheduler),
            senders,
        })
    }

    /// Stops polling, makes the final report, waits for the threads — except a sender still
    /// waiting for an answer (its report is saved or counted as in doubt) — and logs the exit
    /// line, `stopped after N polls; …`.
    pub fn shutdown(mut self) {
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            join(thread);
        }
        if let Some(scheduler) = self.scheduler.take() {
            match scheduler.join() {
                Ok(line) => log::info!("{line}"),
                Err(_) => log::error!("thread scheduler panicked"),
            }
        }
        let grace = Instant::now() + SENDER_JOIN_GRACE;
        while !self.senders.iter().all(JoinHandle::is_finished) && Instant::now() < grace {
            thread::sleep(Duration::from_millis(10));
        }
        for thread in self.senders.drain(..) {
            if thread.is_finished() {
                join(thread);
            } else {
                log::debug!(
                    "{} still waits for an answer; not waiting for it",
                    thread.thread().name().unwrap_or("a sender")
                );
            }
        }
    }
}

fn join<T>(thread: JoinHandle<T>) {
    let name = thread.thread().name().unwrap_or("?").to_owned();
    if thread.join().is_err() {
        log::error!("thread {name} panicked");
    }
}

fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<JoinHandle<T>> {
    thread::Builder::new()
        .name(name.to_owned())
        .stack_size(THREAD_STACK)
        .spawn(body)
        .with_context(|| format!("cannot start thread {name}"))
}

/// Samples every `interval` (and once at once if `immediate`) until stopped.
fn poll_loop(
    interval: Duration,
    immediate: bool,
    samples: Sender<Sample>,
    stop: Receiver<()>,
    mut collect: impl FnMut() -> Sample,
) {
    if immediate && samples.send(collect()).is_err() {
        return;
    }
    let ticker = tick(interval);
    loop {
        select! {
            recv(ticker) -> _ => {
                if samples.send(collect()).is_err() {
                    return;
                }
            }
            recv(stop) -> _ => return,
        }
    }
}

/// A sender thread: takes a report, keeps it until the server answers definitely (or the agent
/// stops), tells the scheduler.
struct Worker {
    sender: Arc<HttpSender>,
    schedule: Schedule,
    reports: Receiver<Arc<Report>>,
    events: Sender<Event>,
    stop: Receiver<()>,
}

impl Worker {
    fn run(self) {
        let budget = Budget::until_stopped(self.stop.clone());
        loop {
            let report = select! {
                recv(self.reports) -> report => match report {
                    Ok(report) => report,
                    Err(_) => return,
                },
                recv(self.stop) -> _ => return,
            };
            // Both were ready and the report won: no new attempt once stopping.
            let settled = if self.stop.try_recv().is_err_and(|e| e.is_disconnected()) {
                Settled::InDoubt("shutting down".into())
            } else {
                in_doubt::settle(&*self.sender, &report, &self.schedule, &budget, || {
                    // The scheduler always listens until every sender has returned.
                    let _ = self.events.send(Event::InDoubt(report.sequence));
                })
            };
            match &settled {
                Settled::Delivered => log::debug!("report {} delivered", report.key),
                Settled::Refused(why) => log::warn!(
                    "report {} ({} metrics) refused and dropped: {why}",
                    report.key,
                    report.metrics
                ),
                Settled::InDoubt(why) => {
                    log::debug!("report {} given back in doubt: {why}", report.key)
                }
            }
            if self
                .events
                .send(Event::Done(report.sequence, settled))
                .is_err()
            {
                return;
            }
        }
    }
}
