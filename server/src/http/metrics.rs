//! `GET /metrics` (docs/observability.md): the server's own families, the process, then every
//! stored metric as a sample of its base name's family, its tags as labels ([`Layout`]), in the
//! Prometheus text format.
//!
//! Stored counters are typed `gauge`: a Golectra counter is a running total of deltas that may
//! be negative, and a Prometheus `counter` that goes down is read as a process restart by
//! `rate()`. Counters that only go up still work with `rate()` and `increase()`.

use std::time::UNIX_EPOCH;

use crate::exposition::stored::{Layout, StoredFamily};
use crate::exposition::{Exporter, Exposition, FamilyType, SampleValue};
use crate::process::ProcessExporter;

use super::reply::{ApiError, PROMETHEUS, Reply};
use crate::app::App;

/// The `process_*` metrics of this process.
static PROCESS: ProcessExporter = ProcessExporter::new();

/// Renders the `/metrics` body; fails when the store cannot be read.
pub fn render(app: &App) -> Result<Reply, ApiError> {
    let snap = app.store.read_all()?;
    // Each stored metric takes its name about three times (HELP, TYPE, sample) and some 120
    // bytes of text: sized once, the body is never copied to grow.
    let names = snap.gauges.iter().map(|(n, ..)| n.len());
    let names = names.chain(snap.counters.iter().map(|(n, ..)| n.len()));
    let room = names.map(|len| 3 * len + 120).sum::<usize>() + 64 * 1024;
    let mut out = Exposition::with_room(64 + snap.gauges.len() + snap.counters.len(), room);

    let version = golectra_common::version::VERSION;
    let commit = golectra_common::version::COMMIT;
    out.family(
        "golectra_build_info",
        "Version and commit of the running server; always 1.",
        FamilyType::Gauge,
    )
    .sample(
        &[
            ("version", version),
            ("commit", commit),
            ("store", app.store.kind().as_str()),
        ],
        1u64,
    );
    app.stats.export(&mut out);
    app.expiry_stats.export(&mut out);
    out.family(
        "golectra_metrics_stored",
        "Metrics in the store, by type.",
        FamilyType::Gauge,
    )
    .sample(&[("type", "gauge")], snap.gauges.len())
    .sample(&[("type", "counter")], snap.counters.len());
    out.family(
        "golectra_metrics_limit",
        "The most metrics of each type the store takes (MAX_METRICS); a write adding a name past it gets 409.",
        FamilyType::Gauge,
    )
    .sample(&[], app.max_metrics.0);
    if let Some(at) = snap.updated_at {
        let at = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        out.family(
            "golectra_last_write_timestamp_seconds",
            "When this server last applied a write (unix seconds).",
            FamilyType::Gauge,
        )
        .sample(&[], at.as_secs_f64());
    }
    if let Some(listener) = app.listener.get() {
        export_connections(&mut out, &listener.connection_stats());
    }
    // Extension points: each source writes its own families.
    let exporters: [&dyn Exporter; 3] = [&app.audit, &*app.history, &PROCESS];
    app.store.export(&mut out);
    if app.store.kind() == crate::store::StoreKind::Postgres {
        app.store_slots.export(&mut out);
    }
    for exporter in exporters {
        exporter.export(&mut out);
    }

    let gauge_names: Vec<&str> = snap.gauges.iter().map(|(n, ..)| n.as_str()).collect();
    let counter_names: Vec<&str> = snap.counters.iter().map(|(n, ..)| n.as_str()).collect();
    let layout = Layout::new(&gauge_names, &counter_names);
    let mut labels = Vec::new();
    for family in &layout.gauges.families {
        let members = layout.gauges.members(family).map(|i| &snap.gauges[i]);
        let samples = members.map(|(name, value, _)| (name.as_str(), *value));
        stored(&mut out, &layout, family, "gauge", "", samples, &mut labels);
    }
    for family in &layout.counters.families {
        let members = layout.counters.members(family).map(|i| &snap.counters[i]);
        let samples = members.map(|(name, value, _)| (name.as_str(), *value));
        let note = " (a running total that may decrease, hence typed gauge)";
        stored(
            &mut out,
            &layout,
            family,
            "counter",
            note,
            samples,
            &mut labels,
        );
    }
    Ok(Reply {
        status: 200,
        content_type: PROMETHEUS,
        body: out.into_string().into_bytes(),
        headers: vec![("Cache-Control", "no-store".into())],
    })
}

/// One family of stored metrics: a sample per `(stored name, value)` of `samples`, their
/// labels put together in `labels` (one buffer for the whole body).
fn stored<'n, V: Into<SampleValue>>(
    out: &mut Exposition,
    layout: &'n Layout,
    family: &'n StoredFamily,
    kind: &str,
    note: &str,
    samples: impl Iterator<Item = (&'n str, V)>,
    labels: &mut Vec<(&'n str, &'n str)>,
) {
    let help = format!("Golectra {kind} {:?}{note}.", family.base);
    let mut family_out = out.family(&family.exported.name, &help, FamilyType::Gauge);
    for (name, value) in samples {
        layout.labels(family, name, labels);
        family_out.sample(labels, value);
    }
}

/// The connection policy's counters (see `vendor/tiny_http/src/policy.rs`).
fn export_connections(out: &mut Exposition, c: &tiny_http::ConnectionStats) {
    use FamilyType::{Counter, Gauge};
    out.family(
        "golectra_connections_open",
        "Client connections open now.",
        Gauge,
    )
    .sample(&[], c.current);
    out.family(
        "golectra_connections_max",
        "The connection cap (MAX_CONNECTIONS).",
        Gauge,
    )
    .sample(&[], c.max);
    out.family(
        "golectra_connections_accepted_total",
        "Connections accepted since start.",
        Counter,
    )
    .sample(&[], c.accepted);
    out.family(
        "golectra_connections_refused_total",
        "Connections refused with 503 at the cap because none was idle.",
        Counter,
    )
    .sample(&[], c.refused);
    out.family(
        "golectra_connections_refused_per_peer_total",
        "Connections refused with 503 at MAX_CONNECTIONS_PER_PEER because none of that address's was idle.",
        Counter,
    )
    .sample(&[], c.refused_per_peer);
    out.family(
        "golectra_connection_peers",
        "Client addresses with a connection open now (counted when a per-peer cap is set).",
        Gauge,
    )
    .sample(&[], c.peers);
    out.family(
        "golectra_connections_evicted_total",
        "Idle keep-alive connections closed to make room at the cap (or at one address's cap).",
        Counter,
    )
    .sample(&[], c.evicted_idle);
    out.family(
        "golectra_tls_failures_total",
        "TLS connections that failed: handshake refused (e.g. no or unknown client certificate), corrupt record, or plain HTTP sent to the TLS port.",
        Counter,
    )
    .sample(&[], c.tls_failed);
    out.family(
        "golectra_requests_rejected_total",
        "Requests answered by the connection layer before any worker saw them, by reason.",
        Counter,
    )
    .sample(&[("reason", "timeout")], c.timed_out)
    .sample(&[("reason", "body_too_slow")], c.too_slow)
    .sample(&[("reason", "chunked_body_too_large")], c.body_too_large)
    .sample(
        &[("reason", "unsupported_transfer_coding")],
        c.unsupported_framing,
    )
    .sample(&[("reason", "header_too_large")], c.header_too_large)
    .sample(&[("reason", "bad_request")], c.bad_request)
    .sample(&[("reason", "body_buffer_full")], c.budget_exhausted)
    .sample(
        &[("reason", "peer_body_buffer_full")],
        c.peer_budget_exhausted,
    );
    out.family(
        "golectra_body_buffer_bytes",
        "Request-body bytes buffered now (BODY_BUFFER_BUDGET caps it).",
        Gauge,
    )
    .sample(&[], c.body_buffer_bytes);
}
