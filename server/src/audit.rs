//! The audit trail (SPEC §6): one event per successful write, fanned out to the configured
//! sinks without ever slowing ingestion.
//!
//! This module currently records nothing; the sinks are built by the audit issue.

use crate::exposition::{Exporter, Exposition};
use crate::http::request::Incoming;

/// The audit fan-out shared by all workers.
#[derive(Debug, Default)]
pub struct Audit {}

impl Audit {
    /// An audit trail with no sinks.
    pub fn disabled() -> Self {
        Self {}
    }

    /// Records a successful write of `names` (sorted, unique) by the client of `req`.
    pub fn record(&self, names: Vec<String>, req: &Incoming) {
        let _ = (names, req);
    }

    /// Delivers pending events; called once at shutdown.
    pub fn close(&self) {}
}

/// Per-sink delivery counters for `/metrics`. With sinks, this writes
/// `golectra_audit_events_delivered_total{sink="file"|"url"}` and
/// `golectra_audit_events_dropped_total{sink=…}` (counters); without sinks, nothing.
impl Exporter for Audit {
    fn export(&self, out: &mut Exposition) {
        let _ = out;
    }
}
