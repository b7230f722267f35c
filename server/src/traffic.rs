//! Traffic counters of the HTTP layer for `/metrics`: requests by route and status code, body
//! bytes in and out, samples ingested by type.
//!
//! Routes are a closed set ([`Route`]), never raw paths, so the number of series is bounded
//! whatever clients send. Counting is a few relaxed atomic additions per request into arrays
//! sized at start — no lock and no allocation on the request path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::exposition::{Exporter, Exposition, FamilyType};

/// The endpoint a request addressed, by the shape of its path (the method does not matter: a
/// `GET /update` is counted on `/update` with its 405).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /`: the HTML dashboard.
    Dashboard,
    /// `POST /update/{type}/{name}/{value}`: one metric in the path.
    UpdateText,
    /// `POST /update`: one metric as JSON.
    UpdateJson,
    /// `GET /value/{type}/{name}`: one value as text.
    ValueText,
    /// `POST /value`: one metric asked for and answered as JSON.
    ValueJson,
    /// `POST /updates`: a JSON batch of metrics.
    Updates,
    /// `GET /ping`: whether the store is reachable.
    Ping,
    /// `GET /api/v1/snapshot`: every stored metric as JSON.
    Snapshot,
    /// `GET /api/v1/history/{type}/{name}`: one metric's recent points.
    History,
    /// `GET /metrics`: the Prometheus exposition.
    Metrics,
    /// `DELETE /api/v1/series`: metrics removed by matcher or name.
    Series,
    /// Any path that is not an endpoint (404).
    Other,
}

impl Route {
    /// Every route in declaration order, so a route's position is its index in the counters.
    pub const ALL: [Route; 12] = [
        Route::Dashboard,
        Route::UpdateText,
        Route::UpdateJson,
        Route::ValueText,
        Route::ValueJson,
        Route::Updates,
        Route::Ping,
        Route::Snapshot,
        Route::History,
        Route::Metrics,
        Route::Series,
        Route::Other,
    ];

    /// The `route` label.
    pub fn label(self) -> &'static str {
        match self {
            Route::Dashboard => "/",
            Route::UpdateText => "/update/{type}/{name}/{value}",
            Route::UpdateJson => "/update",
            Route::ValueText => "/value/{type}/{name}",
            Route::ValueJson => "/value",
            Route::Updates => "/updates",
            Route::Ping => "/ping",
            Route::Snapshot => "/api/v1/snapshot",
            Route::History => "/api/v1/history/{type}/{name}",
            Route::Metrics => "/metrics",
            Route::Series => "/api/v1/series",
            Route::Other => "other",
        }
    }

    /// Splits a path (without query) into segments, ignoring one trailing slash.
    pub fn segments(path: &str) -> Vec<&str> {
        let path = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        path.split('/').skip(1).collect()
    }

    /// The route of a path's segments. The router dispatches on this, so the label always names
    /// the handler that answered.
    pub fn of(segments: &[&str]) -> Self {
        match segments {
            [""] => Route::Dashboard,
            ["update"] => Route::UpdateJson,
            ["update", ..] => Route::UpdateText,
            ["value"] => Route::ValueJson,
            ["value", ..] => Route::ValueText,
            ["updates"] => Route::Updates,
            ["ping"] => Route::Ping,
            ["metrics"] => Route::Metrics,
            ["api", "v1", "snapshot"] => Route::Snapshot,
            ["api", "v1", "history", ..] => Route::History,
            ["api", "v1", "series"] => Route::Series,
            _ => Route::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Status codes 100–599, one slot each.
const CODES: usize = 500;

/// The counters; one instance per server.
#[derive(Debug)]
pub struct HttpStats {
    /// `Route::ALL.len() × CODES` request counts.
    requests: Box<[AtomicU64]>,
    request_bytes: [AtomicU64; Route::ALL.len()],
    response_bytes: [AtomicU64; Route::ALL.len()],
    gauges_ingested: AtomicU64,
    counters_ingested: AtomicU64,
    repeats: AtomicU64,
}

impl Default for HttpStats {
    fn default() -> Self {
        Self {
            requests: (0..Route::ALL.len() * CODES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            request_bytes: Default::default(),
            response_bytes: Default::default(),
            gauges_ingested: AtomicU64::new(0),
            counters_ingested: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
        }
    }
}

/// Request and sample counts since start (see [`HttpStats::totals`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Requests answered, whatever the status.
    pub requests: u64,
    /// Requests answered 4xx.
    pub client_errors: u64,
    /// Requests answered 5xx.
    pub server_errors: u64,
    /// Samples written to the store.
    pub samples: u64,
}

impl Totals {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Totals) -> Totals {
        Totals {
            requests: self.requests - earlier.requests,
            client_errors: self.client_errors - earlier.client_errors,
            server_errors: self.server_errors - earlier.server_errors,
            samples: self.samples - earlier.samples,
        }
    }
}

impl HttpStats {
    /// Counts one answered request: its route, status, body bytes read and sent on the wire.
    pub fn request(&self, route: Route, status: u16, read: usize, sent: usize) {
        let code = usize::from(status.clamp(100, 599)) - 100;
        self.requests[route.index() * CODES + code].fetch_add(1, Relaxed);
        self.request_bytes[route.index()].fetch_add(read as u64, Relaxed);
        self.response_bytes[route.index()].fetch_add(sent as u64, Relaxed);
    }

    /// Totals since start, for the periodic traffic summary in the log.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for (slot, count) in self.requests.iter().enumerate() {
            let count = count.load(Relaxed);
            totals.requests += count;
            match slot % CODES + 100 {
                400..=499 => totals.client_errors += count,
                500..=599 => totals.server_errors += count,
                _ => {}
            }
        }
        totals.samples = self.gauges_ingested.load(Relaxed) + self.counters_ingested.load(Relaxed);
        totals
    }

    /// Counts a keyed write answered as a repeat: nothing was applied again.
    pub fn repeat(&self) {
        self.repeats.fetch_add(1, Relaxed);
    }

    /// Counts samples written to the store (batch items before aggregation).
    pub fn ingested(&self, gauges: usize, counters: usize) {
        if gauges > 0 {
            self.gauges_ingested.fetch_add(gauges as u64, Relaxed);
        }
        if counters > 0 {
            self.counters_ingested.fetch_add(counters as u64, Relaxed);
        }
    }
}

impl Exporter for HttpStats {
    fn export(&self, out: &mut Exposition) {
        let mut family = out.family(
            "golectra_http_requests_total",
            "HTTP requests answered, by route and status code.",
            FamilyType::Counter,
        );
        let mut served = [false; Route::ALL.len()];
        for route in Route::ALL {
            for code in 0..CODES {
                let n = self.requests[route.index() * CODES + code].load(Relaxed);
                if n > 0 {
                    served[route.index()] = true;
                    let code = (code + 100).to_string();
                    family.sample(&[("route", route.label()), ("code", &code)], n);
                }
            }
        }
        for (name, help, bytes) in [
            (
                "golectra_http_request_body_bytes_total",
                "Request body bytes read, as sent on the wire (before gzip inflation), by route.",
                &self.request_bytes,
            ),
            (
                "golectra_http_response_body_bytes_total",
                "Response body bytes sent, as sent on the wire (after gzip), by route.",
                &self.response_bytes,
            ),
        ] {
            let mut family = out.family(name, help, FamilyType::Counter);
            for route in Route::ALL.into_iter().filter(|r| served[r.index()]) {
                family.sample(
                    &[("route", route.label())],
                    bytes[route.index()].load(Relaxed),
                );
            }
        }
        out.family(
            "golectra_samples_ingested_total",
            "Metric samples written to the store, by type (batch items count one each).",
            FamilyType::Counter,
        )
        .sample(&[("type", "gauge")], self.gauges_ingested.load(Relaxed))
        .sample(&[("type", "counter")], self.counters_ingested.load(Relaxed));
        out.family(
            "golectra_idempotent_repeats_total",
            "Writes whose Idempotency-Key had been applied before: answered with the first reply, nothing applied again.",
            FamilyType::Counter,
        )
        .sample(&[], self.repeats.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_every_route_and_class() {
        let stats = HttpStats::default();
        stats.request(Route::UpdateText, 200, 0, 2);
        stats.request(Route::Updates, 400, 10, 20);
        stats.request(Route::Other, 404, 0, 20);
        stats.request(Route::Ping, 503, 0, 20);
        stats.ingested(3, 2);
        let first = stats.totals();
        assert_eq!(
            first,
            Totals {
                requests: 4,
                client_errors: 2,
                server_errors: 1,
                samples: 5
            }
        );
        stats.request(Route::Metrics, 200, 0, 100);
        assert_eq!(
            stats.totals().since(first),
            Totals {
                requests: 1,
                client_errors: 0,
                server_errors: 0,
                samples: 0
            }
        );
    }

    #[test]
    fn routes_are_a_closed_set() {
        let cases = [
            ("/", Route::Dashboard),
            ("/update", Route::UpdateJson),
            ("/update/", Route::UpdateJson),
            ("/update/gauge/x/1", Route::UpdateText),
            ("/update/gauge", Route::UpdateText),
            ("/value/", Route::ValueJson),
            ("/value/counter/x", Route::ValueText),
            ("/updates/", Route::Updates),
            ("/ping", Route::Ping),
            ("/metrics/", Route::Metrics),
            ("/api/v1/snapshot", Route::Snapshot),
            ("/api/v1/history/gauge/x", Route::History),
            ("/wp-admin/login.php", Route::Other),
            ("/api/v1/snapshot/x", Route::Other),
        ];
        for (path, route) in cases {
            assert_eq!(Route::of(&Route::segments(path)), route, "{path}");
        }
        for (i, route) in Route::ALL.iter().enumerate() {
            assert_eq!(route.index(), i);
        }
    }

    #[test]
    fn counts_by_route_and_code() {
        let stats = HttpStats::default();
        stats.request(Route::UpdateText, 200, 0, 2);
        stats.request(Route::UpdateText, 200, 0, 2);
        stats.request(Route::UpdateText, 400, 0, 30);
        stats.request(Route::Other, 999, 5, 1);
        stats.ingested(2, 0);
        let mut out = Exposition::new();
        stats.export(&mut out);
        let text = out.into_string();
        for line in [
            "golectra_http_requests_total{route=\"/update/{type}/{name}/{value}\",code=\"200\"} 2\n",
            "golectra_http_requests_total{route=\"/update/{type}/{name}/{value}\",code=\"400\"} 1\n",
            "golectra_http_requests_total{route=\"other\",code=\"599\"} 1\n",
            "golectra_http_response_body_bytes_total{route=\"/update/{type}/{name}/{value}\"} 34\n",
            "golectra_http_request_body_bytes_total{route=\"other\"} 5\n",
            "golectra_samples_ingested_total{type=\"gauge\"} 2\n",
            "golectra_samples_ingested_total{type=\"counter\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        // Routes without traffic have no series.
        assert!(!text.contains("route=\"/ping\""), "{text}");
    }
}
