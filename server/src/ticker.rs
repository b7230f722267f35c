//! [`Ticker`]: a named thread that runs a closure every interval until stopped — the one
//! periodic-thread pattern of the server (history sampler, watchdog, traffic summary, periodic
//! snapshots).
//!
//! The schedule is that of `crossbeam_channel::tick`, which these threads used before: the next
//! run is due one interval after the previous one started (at once if that one overran). A stop
//! request wakes the thread at once, whatever is left of the interval; a run in progress
//! finishes first.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};

/// A running periodic thread. [`Ticker::stop`] stops it and waits for it; dropping the ticker
/// also stops it (at its next wake-up, a run in progress finishes) without waiting.
#[derive(Debug)]
pub struct Ticker {
    /// Never sent on: dropping it disconnects the channel, which is the stop request.
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

/// When the first run happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRun {
    /// As soon as the thread starts, then every interval.
    Now,
    /// One interval after the start.
    AfterInterval,
}

impl Ticker {
    /// Starts the thread `name`, which calls `run` every `interval` until stopped.
    pub fn spawn(
        name: &str,
        interval: Duration,
        first: FirstRun,
        mut run: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut due = Instant::now();
                if first == FirstRun::AfterInterval {
                    due += interval;
                }
                loop {
                    match stopped.recv_deadline(due) {
                        Err(RecvTimeoutError::Timeout) => {}
                        // Disconnected (or, never, a message): stop.
                        _ => return,
                    }
                    let started = Instant::now();
                    run();
                    due = started + interval;
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread and waits until it ended (after the run in progress, if any).
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (Arc<Mutex<Vec<Instant>>>, impl FnMut() + Send + 'static) {
        let runs = Arc::new(Mutex::new(Vec::new()));
        let record = {
            let runs = runs.clone();
            move || runs.lock().unwrap().push(Instant::now())
        };
        (runs, record)
    }

    #[test]
    fn runs_at_the_interval() {
        let interval = Duration::from_millis(100);
        let (runs, record) = recorder();
        let started = Instant::now();
        let ticker = Ticker::spawn("test-ticker", interval, FirstRun::AfterInterval, record)
            .expect("spawned");
        std::thread::sleep(interval * 6 + interval / 2);
        ticker.stop();
        let runs = runs.lock().unwrap().clone();
        // Six runs are due; a loaded machine may delay some, none may come early.
        assert!((3..=6).contains(&runs.len()), "{} runs", runs.len());
        assert!(runs[0] - started >= interval, "{:?}", runs[0] - started);
        for pair in runs.windows(2) {
            // Never two runs closer than the interval, less scheduling jitter.
            assert!(
                pair[1] - pair[0] >= interval * 9 / 10,
                "{:?}",
                pair[1] - pair[0]
            );
        }
    }

    #[test]
    fn first_run_now_runs_at_start() {
        let (runs, record) = recorder();
        let started = Instant::now();
        let ticker = Ticker::spawn(
            "test-ticker",
            Duration::from_secs(3600),
            FirstRun::Now,
            record,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        ticker.stop();
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0] - started < Duration::from_secs(5));
    }

    #[test]
    fn stops_promptly_in_the_middle_of_an_interval() {
        let (runs, record) = recorder();
        let ticker = Ticker::spawn(
            "test-ticker",
            Duration::from_secs(3600),
            FirstRun::AfterInterval,
            record,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let stopping = Instant::now();
        ticker.stop();
        assert!(
            stopping.elapsed() < Duration::from_secs(1),
            "{:?}",
            stopping.elapsed()
        );
        assert!(runs.lock().unwrap().is_empty());
    }

    #[test]
    fn dropping_stops_the_thread() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        // The closure owns the sender: when the thread ends the closure is dropped with it.
        let ticker = Ticker::spawn(
            "test-ticker",
            Duration::from_secs(3600),
            FirstRun::AfterInterval,
            move || {
                let _ = &done_tx;
            },
        )
        .unwrap();
        drop(ticker);
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn names_its_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        let ticker = Ticker::spawn(
            "named-ticker",
            Duration::from_secs(3600),
            FirstRun::Now,
            move || {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            },
        )
        .unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap().as_deref(),
            Some("named-ticker")
        );
        ticker.stop();
    }
}
