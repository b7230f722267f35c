//! The agent's threads and how they talk (README.md, docs/agent.md):
//!
//! ```text
//! poll-runtime ─┐ samples            batches (bounded 1)   ┌─ sender-1 ─┐
//!               ├──────────► scheduler ──────────────────►├─ sender-2 ─┼─► POST /updates/
//! poll-host ────┘ (bounded)      ▲                          └─ …        ┘
//!                                └──────── undelivered counter deltas ──┘
//! ```
//!
//! The scheduler owns the [`Accumulator`]: it records samples, cuts a batch every report
//! interval and merges back the deltas of batches that could not be delivered. When every
//! sender is busy the report is skipped and its deltas simply stay pending, so an outage of any
//! length costs memory proportional to the number of metric names only.
//!
//! Shutdown: dropping the stop sender wakes every thread. Pollers finish, the scheduler takes
//! their last samples, waits (bounded) for the senders to hand back what they still hold, and
//! makes one final report with a short deadline itself.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, never, select, tick};
use golectra_common::notify::Notifier;

use crate::accumulator::{Accumulator, Batch, Name, Sample};
use crate::config::Config;
use crate::host::Host;
use crate::runtime;
use crate::sender::{HttpSender, Outcome, RetryBudget};

/// Stack size of every agent thread, a quarter of Rust's default: nothing recurses, but an HTTP
/// request with gzip needs a few hundred KiB in unoptimized builds. Only touched pages become
/// resident. Also feeds the `StackSys` gauge.
pub const THREAD_STACK: usize = 512 << 10;

/// How long shutdown waits for pollers and busy senders before the final report.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// How long the final report may take, retries included.
const FINAL_REPORT_DEADLINE: Duration = Duration::from_secs(5);

/// The running agent.
pub struct Pipeline {
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Spawns the pollers, the scheduler and the sender workers.
    pub fn start(config: &Config, notifier: Arc<Notifier>) -> anyhow::Result<Self> {
        let (stop_tx, stop) = bounded::<()>(0);
        let (samples_tx, samples) = bounded::<Sample>(16);
        let (batches_tx, batches) = bounded::<Batch>(1);
        let (returns_tx, returns) = bounded::<Vec<(Name, i64)>>(config.rate_limit);
        let sender = Arc::new(HttpSender::new(
            &config.server,
            config.key.clone(),
            config.rate_limit,
        ));
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

        for i in 1..=config.rate_limit {
            let (batches, returns, stop, sender) = (
                batches.clone(),
                returns_tx.clone(),
                stop.clone(),
                sender.clone(),
            );
            threads.push(spawn(&format!("sender-{i}"), move || {
                send_loop(&sender, &batches, &returns, &stop)
            })?);
        }
        drop(returns_tx);

        let scheduler = Scheduler {
            report_interval: config.report_interval,
            poll_interval: config.poll_interval,
            notifier,
            sender,
            samples,
            returns,
            batches_tx,
            batches,
            stop,
            acc: Accumulator::new(),
        };
        threads.push(spawn("scheduler", move || scheduler.run())?);
        Ok(Self {
            stop: Some(stop_tx),
            threads,
        })
    }

    /// Stops polling, makes the final report and waits for every thread.
    pub fn shutdown(mut self) {
        drop(self.stop.take());
        for thread in self.threads.drain(..) {
            let name = thread.thread().name().unwrap_or("?").to_owned();
            if thread.join().is_err() {
                log::error!("thread {name} panicked");
            }
        }
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> anyhow::Result<JoinHandle<()>> {
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

/// Delivers batches until stopped; hands back what could not be delivered.
fn send_loop(
    sender: &HttpSender,
    batches: &Receiver<Batch>,
    returns: &Sender<Vec<(Name, i64)>>,
    stop: &Receiver<()>,
) {
    let budget = RetryBudget::until_stopped(stop.clone());
    loop {
        let batch = select! {
            recv(batches) -> batch => match batch {
                Ok(batch) => batch,
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        };
        match sender.deliver(&batch, &budget) {
            Outcome::Delivered => log::debug!("report of {} metrics delivered", batch.len()),
            Outcome::Rejected(why) => {
                log::warn!(
                    "report of {} metrics refused and dropped: {why}",
                    batch.len()
                );
            }
            Outcome::Failed { error, undelivered } => {
                log::warn!(
                    "report of {} metrics failed: {error}; counter deltas kept for the next report",
                    batch.len()
                );
                // The scheduler always listens; should it be gone, the process is ending and
                // the deltas were counted as undeliverable in its final line anyway.
                let _ = returns.send(undelivered);
            }
        }
    }
}

struct Scheduler {
    report_interval: Duration,
    poll_interval: Duration,
    notifier: Arc<Notifier>,
    sender: Arc<HttpSender>,
    samples: Receiver<Sample>,
    returns: Receiver<Vec<(Name, i64)>>,
    batches_tx: Sender<Batch>,
    batches: Receiver<Batch>,
    stop: Receiver<()>,
    acc: Accumulator,
}

impl Scheduler {
    fn run(mut self) {
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
                        self.acc.record(sample);
                    }
                    Err(_) => break,
                },
                recv(self.returns) -> undelivered => match undelivered {
                    Ok(undelivered) => self.acc.restore(undelivered),
                    Err(_) => {
                        // At shutdown the senders may finish before this loop sees `stop`
                        // (select picks among ready channels at random): that is the normal end.
                        if self.stop.try_recv().is_err_and(|e| e.is_disconnected()) {
                            break;
                        }
                        // Otherwise only a panic ends a sender; stop listening so the loop does
                        // not spin on the closed channel.
                        log::error!("every sender thread has stopped: reports cannot be sent");
                        self.returns = never();
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
        self.finish();
    }

    /// Hands a batch to the senders, or keeps its deltas pending when they are all busy.
    fn report(&mut self) {
        let Some(batch) = self.acc.take() else {
            return;
        };
        match self.batches_tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => {
                self.acc.restore(batch.counters);
                log::debug!(
                    "every sender is busy: {} pending counters wait for the next report",
                    self.acc.pending_counters()
                );
            }
        }
    }

    fn finish(mut self) {
        let deadline = Instant::now() + DRAIN_DEADLINE;
        // 1. The pollers' last samples: the channel disconnects once both have returned.
        loop {
            select! {
                recv(self.samples) -> sample => match sample {
                    Ok(sample) => self.acc.record(sample),
                    Err(_) => break,
                },
                recv(crossbeam_channel::at(deadline)) -> _ => {
                    log::warn!("a poller did not stop in time; its last sample is not reported");
                    break;
                }
            }
        }
        // 2. Senders stop waiting for retries and hand back what they hold; `returns`
        //    disconnects once every sender has returned.
        drop(self.batches_tx);
        loop {
            select! {
                recv(self.returns) -> undelivered => match undelivered {
                    Ok(undelivered) => self.acc.restore(undelivered),
                    Err(_) => break,
                },
                recv(crossbeam_channel::at(deadline)) -> _ => {
                    log::warn!("a sender is still busy with a request; its counter deltas are not in the final report");
                    break;
                }
            }
        }
        // 3. Batches no sender picked up.
        while let Ok(batch) = self.batches.try_recv() {
            self.acc.restore(batch.counters);
        }
        // 4. The final report, by this thread, with its own deadline.
        let polls = self.acc.recorded(runtime::POLL_COUNT);
        let result = match self.acc.take() {
            None => "nothing to report".to_owned(),
            Some(batch) => {
                let budget = RetryBudget::until(Instant::now() + FINAL_REPORT_DEADLINE);
                match self.sender.deliver(&batch, &budget) {
                    Outcome::Delivered => "final report delivered".to_owned(),
                    Outcome::Rejected(why) => format!("final report refused: {why}"),
                    Outcome::Failed { error, undelivered } => {
                        let lost: i64 = undelivered
                            .iter()
                            .filter(|(name, _)| *name == runtime::POLL_COUNT)
                            .map(|(_, delta)| delta)
                            .sum();
                        format!("final report failed: {error}; {lost} polls not delivered")
                    }
                }
            }
        };
        log::info!("stopped after {polls} polls; {result}");
    }
}
