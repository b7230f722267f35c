//! The audit trail (docs/audit.md): one event per successful write, fanned out to the configured
//! sinks without ever slowing ingestion.
//!
//! Observer style: [`Audit`] knows only the [`Sink`] trait. Each sink gets its own named thread
//! and its own bounded queue, so a slow or dead receiver delays nobody but itself. Adding a
//! third kind of sink means writing one type that implements [`Sink`] and listing it in
//! [`Audit::start`]; the HTTP handlers only ever call [`Audit::record`]. The audit depends on
//! neither the configuration nor the HTTP layer: it is started from an [`AuditConfig`] and told a
//! request's [`Origin`].
//!
//! A queue is a `Mutex<VecDeque>` with a `Condvar` rather than a crossbeam channel because
//! "when full, drop the **oldest**" needs the producer to evict from the head — a channel only
//! lets producers add at the tail (evicting through a cloned receiver works, but races with the
//! consumer and cannot keep a byte budget). The lock is held for a few pointer moves, never
//! across I/O, so a handler never waits for a sink. Each queue is bounded both in events and in
//! bytes ([`QueueLimits`]); an event is serialized once and shared between the queues.
//!
//! Delivery is at most once per sink: a failed attempt is counted and warned about (rate
//! limited), not retried — retrying a dead receiver would only make the queue drop newer
//! events instead. On shutdown each worker drains its queue; all of them together get
//! [`SHUTDOWN_DEADLINE`], after which the rest is counted as dropped and logged.

mod file;
mod url;

pub use file::FileSink;
pub use url::{CONNECT_TIMEOUT, REQUEST_TIMEOUT, UrlSink, is_https, validate_url};

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::RecvTimeoutError;
use golectra_common::tls_client::ClientTls;

use crate::client_addr::{IpNet, Origin};

/// How long [`Audit::close`] waits, in total, for the sinks to deliver what is still queued.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// At most one warning per sink and kind (drops, failures) in this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The bounds of one sink's queue. When a new event would exceed either, the oldest queued
/// events are dropped until it fits (an event is always accepted into an empty queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most events waiting (default 10 000).
    pub events: usize,
    /// Most bytes of serialized events waiting (default 32 MiB): one batch may name up to
    /// 100 000 metrics, so a count alone would not bound memory.
    pub bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            events: 10_000,
            bytes: 32 << 20,
        }
    }
}

/// One audit event, serialized once as
/// `{"ts":<unix seconds>,"metrics":[<names>],"ip_address":"<ip>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    json: Arc<str>,
}

impl Event {
    /// An event for a write of `metrics` (already sorted and unique) at `ts` by `ip`.
    pub fn new(ts: u64, metrics: &[String], ip: IpAddr) -> Self {
        Self::with_action(ts, None, metrics, ip)
    }

    /// An event for a delete of `metrics` (sorted, unique):
    /// `{"ts":…,"action":"delete","metrics":[…],"ip_address":"…"}`. Writes carry no `action`,
    /// as in the original's events.
    pub fn deletion(ts: u64, metrics: &[String], ip: IpAddr) -> Self {
        Self::with_action(ts, Some("delete"), metrics, ip)
    }

    fn with_action(ts: u64, action: Option<&str>, metrics: &[String], ip: IpAddr) -> Self {
        #[derive(serde::Serialize)]
        struct Wire<'a> {
            ts: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            action: Option<&'a str>,
            metrics: &'a [String],
            ip_address: String,
        }
        let wire = Wire {
            ts,
            action,
            metrics,
            ip_address: ip.to_string(),
        };
        let json = serde_json::to_string(&wire).expect("integers and strings always serialize");
        Self { json: json.into() }
    }

    /// The event as one line of JSON, without a newline.
    pub fn json(&self) -> &str {
        &self.json
    }
}

/// Why a sink could not deliver an event; logged and counted, never shown to HTTP clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError(pub String);

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SinkError {}

/// A destination of audit events. Runs on its own thread; it may block as long as its own
/// timeouts allow, since only its own queue waits meanwhile.
pub trait Sink: Send + 'static {
    /// Short name for logs, statistics and the thread name (`file`, `url`).
    fn name(&self) -> &str;

    /// Delivers one event. An error counts the event as failed; it is not retried.
    fn deliver(&mut self, event: &Event) -> Result<(), SinkError>;

    /// Makes delivered events durable; called once, after the queue drained at shutdown.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Counters of one sink, for logs and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStats {
    /// The sink's short name, as [`Sink::name`] gives it (`file`, `url`).
    pub name: String,
    /// Events the sink accepted (written to the file, answered 2xx).
    pub delivered: u64,
    /// Events discarded without an attempt: evicted from a full queue, or still queued when
    /// the shutdown deadline passed.
    pub dropped: u64,
    /// Events whose delivery failed (I/O error, connection error, timeout, non-2xx).
    pub failed: u64,
    /// Events waiting in the queue now.
    pub queued: usize,
}

/// The audit fan-out shared by all workers.
#[derive(Default)]
pub struct Audit {
    sinks: Vec<SinkHandle>,
    trusted_proxies: Vec<IpNet>,
    closed: AtomicBool,
}

/// The producer side of one sink.
struct SinkHandle {
    name: String,
    queue: Arc<Queue>,
    /// Disconnects when the worker has finished (its sender is dropped).
    done: crossbeam_channel::Receiver<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the audit trail needs from the configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditConfig {
    /// The NDJSON file sink (`AUDIT_FILE`), if any.
    pub file: Option<PathBuf>,
    /// The HTTP POST sink (`AUDIT_URL`), if any.
    pub url: Option<String>,
    /// With an `https://` URL: what the receiver is verified against, and the client
    /// certificate (`AUDIT_CA_FILE`, `AUDIT_TLS_CLIENT_CERT_FILE`, `AUDIT_TLS_CLIENT_KEY_FILE`).
    pub tls: Option<ClientTls>,
    /// Peers whose `X-Real-IP` / `X-Forwarded-For` are believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
}

impl Audit {
    /// An audit trail with no sinks.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Starts the sinks `config` asks for, with the default queue limits. Fails when the audit
    /// file cannot be opened.
    pub fn start(config: &AuditConfig) -> Result<Self, String> {
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if let Some(path) = &config.file {
            let sink = FileSink::open(path)
                .map_err(|e| format!("cannot open the audit file {}: {e}", path.display()))?;
            sinks.push(Box::new(sink));
        }
        if let Some(url) = &config.url {
            sinks.push(Box::new(UrlSink::new(url, config.tls.as_ref())));
        }
        Self::with_sinks(
            sinks,
            QueueLimits::default(),
            config.trusted_proxies.clone(),
        )
        .map_err(|e| format!("cannot start an audit thread: {e}"))
    }

    /// Starts one worker thread per sink, each with a queue bounded by `limits`.
    pub fn with_sinks(
        sinks: Vec<Box<dyn Sink>>,
        limits: QueueLimits,
        trusted_proxies: Vec<IpNet>,
    ) -> std::io::Result<Self> {
        let mut handles: Vec<SinkHandle> = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let name = sink.name().to_owned();
            let queue = Arc::new(Queue::new(limits));
            let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
            let worker_queue = queue.clone();
            let thread = std::thread::Builder::new()
                .name(format!("audit-{name}"))
                .spawn(move || {
                    run_sink(sink, &worker_queue);
                    drop(done_tx);
                });
            let thread = match thread {
                Ok(thread) => thread,
                Err(e) => {
                    // Stop the workers already running before reporting the failure.
                    for handle in &handles {
                        handle.queue.close();
                    }
                    return Err(e);
                }
            };
            handles.push(SinkHandle {
                name,
                queue,
                done,
                thread: Mutex::new(Some(thread)),
            });
        }
        Ok(Self {
            sinks: handles,
            trusted_proxies,
            closed: AtomicBool::new(false),
        })
    }

    /// Records a successful write of the names `names` yields (sorted, unique) by the client
    /// the request's `origin` names. The names are only gathered when a sink is configured.
    /// Never blocks on a sink.
    pub fn record(&self, names: impl FnOnce() -> Vec<String>, origin: Origin<'_>) {
        self.record_as(Event::new, names, origin);
    }

    /// Records a delete of the names `names` yields (sorted, unique), like [`Audit::record`].
    pub fn record_delete(&self, names: impl FnOnce() -> Vec<String>, origin: Origin<'_>) {
        self.record_as(Event::deletion, names, origin);
    }

    fn record_as(
        &self,
        event: fn(u64, &[String], IpAddr) -> Event,
        names: impl FnOnce() -> Vec<String>,
        origin: Origin<'_>,
    ) {
        if self.sinks.is_empty() {
            return;
        }
        let names = names();
        let ip = origin.client(&self.trusted_proxies);
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.publish(&event(ts, &names, ip));
    }

    /// Queues `event` for every sink. Never blocks on a sink.
    pub fn publish(&self, event: &Event) {
        for sink in &self.sinks {
            sink.queue.push(event.clone());
        }
    }

    /// The counters of every sink, in configuration order.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks
            .iter()
            .map(|s| {
                let (dropped, queued) = s.queue.dropped_and_queued();
                SinkStats {
                    name: s.name.clone(),
                    delivered: s.queue.delivered.load(Ordering::Relaxed),
                    failed: s.queue.failed.load(Ordering::Relaxed),
                    dropped,
                    queued,
                }
            })
            .collect()
    }

    /// Delivers pending events within [`SHUTDOWN_DEADLINE`]; called once at shutdown, after
    /// the HTTP workers stopped.
    pub fn close(&self) {
        self.close_within(SHUTDOWN_DEADLINE);
    }

    /// Like [`Audit::close`] with another deadline. Events still queued when it passes are
    /// counted as dropped and logged; a delivery in flight is left to its own timeout.
    pub fn close_within(&self, limit: Duration) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let deadline = Instant::now() + limit;
        for sink in &self.sinks {
            sink.queue.close();
        }
        for sink in &self.sinks {
            match sink.done.recv_deadline(deadline) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    let thread = lock(&sink.thread).take();
                    if let Some(thread) = thread {
                        let _ = thread.join();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let (queued, in_flight) = sink.queue.abandon();
                    log::error!(
                        "audit sink {}: shutdown deadline of {} passed, {queued} queued events dropped{}",
                        sink.name,
                        humantime::format_duration(limit),
                        if in_flight {
                            " (one more was still being delivered)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        for s in self.stats() {
            log::info!(
                "audit sink {}: {} events delivered, {} failed, {} dropped",
                s.name,
                s.delivered,
                s.failed,
                s.dropped
            );
        }
    }
}

impl Drop for Audit {
    /// Without [`Audit::close`] (a server dropped without shutdown) the workers still drain
    /// their queues and end, detached.
    fn drop(&mut self) {
        for sink in &self.sinks {
            sink.queue.close();
        }
    }
}

/// One sink's bounded drop-oldest queue and its counters.
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    limits: QueueLimits,
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct QueueState {
    events: VecDeque<Event>,
    bytes: usize,
    dropped: u64,
    /// No more events will come: drain and stop.
    closing: bool,
    /// The shutdown deadline passed: stop without draining.
    abandoned: bool,
    /// The worker holds an event it took from the queue.
    busy: bool,
}

impl Queue {
    fn new(limits: QueueLimits) -> Self {
        Self {
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                bytes: 0,
                dropped: 0,
                closing: false,
                abandoned: false,
                busy: false,
            }),
            ready: Condvar::new(),
            limits,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Appends `event`, evicting the oldest events while the queue is over its limits.
    fn push(&self, event: Event) {
        let size = event.json().len();
        let mut s = lock(&self.state);
        if s.closing {
            s.dropped += 1;
            return;
        }
        while !s.events.is_empty()
            && (s.events.len() >= self.limits.events || s.bytes + size > self.limits.bytes)
        {
            let old = s.events.pop_front().expect("not empty");
            s.bytes -= old.json().len();
            s.dropped += 1;
        }
        s.bytes += size;
        s.events.push_back(event);
        drop(s);
        self.ready.notify_one();
    }

    /// The next event for the worker; blocks while the queue is empty. `None` means stop.
    fn next(&self) -> Option<Event> {
        let mut s = lock(&self.state);
        s.busy = false;
        let mut s = self
            .ready
            .wait_while(s, |s| s.events.is_empty() && !s.closing && !s.abandoned)
            .unwrap_or_else(PoisonError::into_inner);
        if s.abandoned {
            return None;
        }
        let event = s.events.pop_front()?;
        s.bytes -= event.json().len();
        s.busy = true;
        Some(event)
    }

    fn close(&self) {
        lock(&self.state).closing = true;
        self.ready.notify_all();
    }

    /// Stops the worker without draining; returns how many events were still queued (now
    /// counted as dropped) and whether one was being delivered.
    fn abandon(&self) -> (usize, bool) {
        let mut s = lock(&self.state);
        s.abandoned = true;
        let queued = s.events.len();
        s.events.clear();
        s.bytes = 0;
        s.dropped += queued as u64;
        let busy = s.busy;
        drop(s);
        self.ready.notify_all();
        (queued, busy)
    }

    fn dropped_and_queued(&self) -> (u64, usize) {
        let s = lock(&self.state);
        (s.dropped, s.events.len())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The worker loop of one sink: deliver until the queue closes, then flush.
fn run_sink(mut sink: Box<dyn Sink>, queue: &Queue) {
    let name = sink.name().to_owned();
    let mut failures = Throttle::default();
    let mut drops = Throttle::default();
    let mut dropped_reported = 0;
    while let Some(event) = queue.next() {
        match sink.deliver(&event) {
            Ok(()) => {
                queue.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                queue.failed.fetch_add(1, Ordering::Relaxed);
                if let Some(suppressed) = failures.allow() {
                    log::warn!(
                        "audit sink {name}: cannot deliver an event: {e}{}",
                        if suppressed > 0 {
                            format!(" ({suppressed} more failures since the last warning)")
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
        let (dropped, _) = queue.dropped_and_queued();
        if dropped > dropped_reported && drops.allow().is_some() {
            log::warn!(
                "audit sink {name}: queue full (at most {} events, {} bytes), dropped the {} oldest events ({dropped} in total)",
                queue.limits.events,
                queue.limits.bytes,
                dropped - dropped_reported
            );
            dropped_reported = dropped;
        }
    }
    if let Err(e) = sink.flush() {
        log::error!("audit sink {name}: cannot flush at shutdown: {e}");
    }
}

/// Lets one log line through per [`WARN_EVERY`] and counts the ones it held back.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(number held back since the last line)` when a line may be logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|last| now - last < WARN_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The audit counters in `/metrics`, one sample per configured sink (nothing without sinks):
/// `golectra_audit_events_{delivered,dropped,failed}_total{sink}` and
/// `golectra_audit_events_queued{sink}`.
impl crate::exposition::Exporter for Audit {
    fn export(&self, out: &mut crate::exposition::Exposition) {
        use crate::exposition::FamilyType::{Counter, Gauge};
        let stats = self.stats();
        if stats.is_empty() {
            return;
        }
        type Column = fn(&SinkStats) -> u64;
        let families: [(&str, &str, _, Column); 4] = [
            (
                "golectra_audit_events_delivered_total",
                "Audit events the sink accepted.",
                Counter,
                |s| s.delivered,
            ),
            (
                "golectra_audit_events_dropped_total",
                "Audit events discarded without an attempt (queue full or shutdown deadline).",
                Counter,
                |s| s.dropped,
            ),
            (
                "golectra_audit_events_failed_total",
                "Audit events whose delivery failed.",
                Counter,
                |s| s.failed,
            ),
            (
                "golectra_audit_events_queued",
                "Audit events waiting in the sink's queue.",
                Gauge,
                |s| s.queued as u64,
            ),
        ];
        for (name, help, kind, value) in families {
            let mut family = out.family(name, help, kind);
            for sink in &stats {
                family.sample(&[("sink", &sink.name)], value(sink));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_format() {
        let e = Event::new(
            1_735_584_000,
            &["Alloc".into(), "Poll\"Count".into()],
            "192.168.0.42".parse().unwrap(),
        );
        assert_eq!(
            e.json(),
            r#"{"ts":1735584000,"metrics":["Alloc","Poll\"Count"],"ip_address":"192.168.0.42"}"#
        );
    }

    #[test]
    fn a_delete_event_says_so() {
        let e = Event::deletion(7, &["Alloc;host=web1".into()], "127.0.0.1".parse().unwrap());
        assert_eq!(
            e.json(),
            r#"{"ts":7,"action":"delete","metrics":["Alloc;host=web1"],"ip_address":"127.0.0.1"}"#
        );
    }

    #[test]
    fn queue_drops_oldest_by_count_and_by_bytes() {
        let event = |n: u64| Event::new(n, &[], "127.0.0.1".parse().unwrap());
        let q = Queue::new(QueueLimits {
            events: 3,
            bytes: 1 << 20,
        });
        for n in 0..5 {
            q.push(event(n));
        }
        assert_eq!(q.dropped_and_queued(), (2, 3));
        assert_eq!(q.next(), Some(event(2)));

        let size = event(0).json().len();
        let q = Queue::new(QueueLimits {
            events: 100,
            bytes: 2 * size,
        });
        for n in 0..4 {
            q.push(event(n));
        }
        assert_eq!(q.dropped_and_queued(), (2, 2));
        q.close();
        assert_eq!(q.next(), Some(event(2)));
        assert_eq!(q.next(), Some(event(3)));
        assert_eq!(q.next(), None);
        q.push(event(9));
        assert_eq!(q.dropped_and_queued(), (3, 0));
    }

    #[test]
    fn throttle_lets_one_line_through_per_interval() {
        let mut t = Throttle::default();
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        t.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(t.allow(), Some(2));
    }
}
