//! What every request handler can reach: the store, the audit trail, the signing settings, the
//! traffic counters, the history, the listener, the store slots, how metrics age and who may
//! delete them. Its own module so that the HTTP layer, the
//! traffic summary and the start-up code share it without depending on each other.

use std::sync::Arc;
use std::time::Instant;

use crate::audit::Audit;
use crate::config::Limits;
use crate::expiry::{ExpiryOptions, ExpiryStats};
use crate::history::History;
use crate::store::{MaxMetrics, Store};
use crate::store_slots::StoreSlots;
use crate::traffic::HttpStats;

/// What every handler can reach.
pub struct App {
    /// Where metrics are kept (memory or PostgreSQL).
    pub store: Arc<dyn Store>,
    /// The audit trail that write handlers report to.
    pub audit: Audit,
    /// The `HashSHA256` key (`KEY`): checks request bodies and signs replies; `None` = no signing.
    pub key: Option<Vec<u8>>,
    /// Whether writes without a valid signature are refused (only when a key is set).
    pub require_signature: bool,
    /// Size limits of request bodies and batches.
    pub limits: Limits,
    /// The most gauges, and the most counters, the store holds (`MAX_METRICS`), for
    /// `/metrics`.
    pub max_metrics: MaxMetrics,
    /// When the server started; the dashboard shows the uptime from it.
    pub started: Instant,
    /// Traffic counters for `/metrics`.
    pub stats: HttpStats,
    /// Recent values of every metric, for the dashboard and `/api/v1/history`.
    pub history: Arc<History>,
    /// The listener, once started: its connection counters go into `/metrics`.
    pub listener: std::sync::OnceLock<Arc<tiny_http::Server>>,
    /// How many requests may wait on a PostgreSQL store at once (one worker fewer than the
    /// pool), so that one worker always answers.
    pub store_slots: StoreSlots,
    /// Staleness and expiry (`STALE_AFTER`, `METRIC_TTL`, `EXPIRE_COUNTERS`).
    pub expiry: ExpiryOptions,
    /// What expiry removed, for `/metrics`.
    pub expiry_stats: Arc<ExpiryStats>,
    /// The bearer token that authorises deletes (`ADMIN_TOKEN`); `None`: deletes only from
    /// loopback peers.
    pub admin_token: Option<String>,
}
