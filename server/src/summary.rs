//! The periodic one-line traffic summary at info level (docs/readme-operations.md): what the server did since the
//! last line — requests and errors, samples ingested — and what it holds now — stored metrics,
//! open connections. Written only for intervals that saw requests, so an idle server stays
//! quiet; `SUMMARY_INTERVAL=0` turns it off.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::ticker::{FirstRun, Ticker};
use crate::traffic::Totals;

/// The running summary thread.
pub struct Summary {
    ticker: Ticker,
}

impl Summary {
    /// Starts the `summary` thread; `None` when `interval` is zero.
    pub fn spawn(interval: Duration, app: Arc<App>) -> std::io::Result<Option<Self>> {
        if interval.is_zero() {
            return Ok(None);
        }
        let mut last = app.stats.totals();
        let ticker = Ticker::spawn("summary", interval, FirstRun::AfterInterval, move || {
            let now = app.stats.totals();
            let delta = now.since(last);
            last = now;
            if delta.requests > 0 {
                log::info!("{}", line(interval, delta, &app));
            }
        })?;
        Ok(Some(Self { ticker }))
    }

    /// Stops the thread.
    pub fn stop(self) {
        self.ticker.stop();
    }
}

fn line(interval: Duration, delta: Totals, app: &App) -> String {
    let stored = match app.store.count() {
        Ok((gauges, counters)) => format!("{gauges} gauges and {counters} counters stored"),
        Err(e) => format!("store count unavailable ({e})"),
    };
    let connections = app
        .listener
        .get()
        .map(|l| format!("; {} connections open", l.connection_stats().current))
        .unwrap_or_default();
    format!(
        "traffic in the last {}: {} requests ({} 4xx, {} 5xx), {} samples ingested; {stored}{connections}",
        humantime::format_duration(interval),
        delta.requests,
        delta.client_errors,
        delta.server_errors,
        delta.samples,
    )
}
