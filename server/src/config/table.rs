//! The table of every server setting (docs/configuration.md): environment variable, flags, default and help
//! line, each a `static` so that configuration code names settings by value and a misspelt
//! setting is a compile error. The defaults written here are the only ones in code; the env
//! file, `--help` and docs/configuration.md are checked against them by tests.

use golectra_common::settings::{
    Arity,
    Fallback::{Computed, Value},
    Setting,
};

/// Every server setting. The order is the order of `--help`.
pub static SETTINGS: &[&Setting] = &[
    &ADDRESS,
    &TLS_CERT_FILE,
    &TLS_KEY_FILE,
    &TLS_CLIENT_CA_FILE,
    &FILE_STORAGE_PATH,
    &DATABASE_DSN,
    &KEY,
    &STORE_INTERVAL,
    &RESTORE,
    &AUDIT_FILE,
    &AUDIT_URL,
    &AUDIT_CA_FILE,
    &AUDIT_TLS_CLIENT_CERT_FILE,
    &AUDIT_TLS_CLIENT_KEY_FILE,
    &TRUSTED_PROXIES,
    &REQUIRE_SIGNATURE,
    &WORKERS,
    &MAX_BODY_SIZE,
    &MAX_INFLATED_SIZE,
    &MAX_BATCH_ITEMS,
    &MAX_METRICS,
    &IDEMPOTENCY_RETENTION,
    &IDEMPOTENCY_MAX_KEYS,
    &HISTORY_INTERVAL,
    &HISTORY_POINTS,
    &HISTORY_MAX_BYTES,
    &STALE_AFTER,
    &METRIC_TTL,
    &EXPIRE_COUNTERS,
    &ADMIN_TOKEN,
    &SUMMARY_INTERVAL,
    &MAX_CONNECTIONS,
    &IDLE_TIMEOUT,
    &HEADER_TIMEOUT,
    &BODY_TIMEOUT,
    &IO_TIMEOUT,
    &BODY_BUFFER_BUDGET,
    &MIN_BODY_RATE,
    &MAX_CONNECTIONS_PER_PEER,
    &MAX_BUFFERED_PER_PEER,
];

/// Listen address: host:port, :port (all IPv4 interfaces), port, or http://host:port.
pub static ADDRESS: Setting = Setting {
    env: "ADDRESS",
    short: Some('a'),
    long: "address",
    default: Value(":8080"),
    arity: Arity::Value,
    help: "listen address: host:port, :port (all IPv4 interfaces), port, or http://host:port",
};

/// PEM certificate chain: with TLS_KEY_FILE, the listener speaks HTTPS (re-read on SIGHUP).
pub static TLS_CERT_FILE: Setting = Setting {
    env: "TLS_CERT_FILE",
    short: None,
    long: "tls-cert-file",
    default: Value(""),
    arity: Arity::Value,
    help: "PEM certificate chain: with TLS_KEY_FILE, the listener speaks HTTPS (re-read on SIGHUP)",
};

/// PEM private key of TLS_CERT_FILE.
pub static TLS_KEY_FILE: Setting = Setting {
    env: "TLS_KEY_FILE",
    short: None,
    long: "tls-key-file",
    default: Value(""),
    arity: Arity::Value,
    help: "PEM private key of TLS_CERT_FILE",
};

/// PEM CA certificates: clients must present a certificate signed by one of them (mTLS).
pub static TLS_CLIENT_CA_FILE: Setting = Setting {
    env: "TLS_CLIENT_CA_FILE",
    short: None,
    long: "tls-client-ca-file",
    default: Value(""),
    arity: Arity::Value,
    help: "PEM CA certificates: clients must present a certificate signed by one of them (mTLS)",
};

/// Snapshot file of the memory store (ignored with a DSN).
pub static FILE_STORAGE_PATH: Setting = Setting {
    env: "FILE_STORAGE_PATH",
    short: Some('f'),
    long: "file-storage-path",
    default: Value("metrics-db.json"),
    arity: Arity::Value,
    help: "snapshot file of the memory store (ignored with a DSN)",
};

/// PostgreSQL DSN (URL or key=value); empty selects the memory store.
pub static DATABASE_DSN: Setting = Setting {
    env: "DATABASE_DSN",
    short: Some('d'),
    long: "database-dsn",
    default: Value(""),
    arity: Arity::Value,
    help: "PostgreSQL DSN (URL or key=value); empty selects the memory store",
};

/// Signing key: checks HashSHA256 on requests and signs responses.
pub static KEY: Setting = Setting {
    env: "KEY",
    short: Some('k'),
    long: "key",
    default: Value(""),
    arity: Arity::Value,
    help: "signing key: checks HashSHA256 on requests and signs responses",
};

/// Time between snapshots, 10ms to 24h; 0 makes every write durable before it is acknowledged.
pub static STORE_INTERVAL: Setting = Setting {
    env: "STORE_INTERVAL",
    short: Some('i'),
    long: "store-interval",
    default: Value("300"),
    arity: Arity::Value,
    help: "time between snapshots, 10ms to 24h; 0 makes every write durable before it is acknowledged",
};

/// Load the snapshot file at start.
pub static RESTORE: Setting = Setting {
    env: "RESTORE",
    short: Some('r'),
    long: "restore",
    default: Value("false"),
    arity: Arity::Bool,
    help: "load the snapshot file at start",
};

/// Append an NDJSON audit event per successful write to this file.
pub static AUDIT_FILE: Setting = Setting {
    env: "AUDIT_FILE",
    short: None,
    long: "audit-file",
    default: Value(""),
    arity: Arity::Value,
    help: "append an NDJSON audit event per successful write to this file",
};

/// POST an audit event per successful write to this http:// or https:// URL.
pub static AUDIT_URL: Setting = Setting {
    env: "AUDIT_URL",
    short: None,
    long: "audit-url",
    default: Value(""),
    arity: Arity::Value,
    help: "POST an audit event per successful write to this http:// or https:// URL",
};

/// With an https:// `AUDIT_URL`: trust only the CA certificates of this PEM file; empty = the
/// system trust store.
pub static AUDIT_CA_FILE: Setting = Setting {
    env: "AUDIT_CA_FILE",
    short: None,
    long: "audit-ca-file",
    default: Value(""),
    arity: Arity::Value,
    help: "https AUDIT_URL: trust only the CA certificates in this PEM file; empty = the system trust store",
};

/// With an https:// `AUDIT_URL`: the client certificate (PEM chain) for a receiver that
/// requires one.
pub static AUDIT_TLS_CLIENT_CERT_FILE: Setting = Setting {
    env: "AUDIT_TLS_CLIENT_CERT_FILE",
    short: None,
    long: "audit-tls-client-cert-file",
    default: Value(""),
    arity: Arity::Value,
    help: "https AUDIT_URL: client certificate (PEM) for mTLS, with AUDIT_TLS_CLIENT_KEY_FILE",
};

/// The private key (PEM) of `AUDIT_TLS_CLIENT_CERT_FILE`.
pub static AUDIT_TLS_CLIENT_KEY_FILE: Setting = Setting {
    env: "AUDIT_TLS_CLIENT_KEY_FILE",
    short: None,
    long: "audit-tls-client-key-file",
    default: Value(""),
    arity: Arity::Value,
    help: "https AUDIT_URL: private key (PEM) of AUDIT_TLS_CLIENT_CERT_FILE",
};

/// The audit URL sink's TLS settings, as the shared loader names them.
pub static AUDIT_TLS: golectra_common::tls_client::TlsSettings =
    golectra_common::tls_client::TlsSettings {
        ca_file: &AUDIT_CA_FILE,
        client_cert: &AUDIT_TLS_CLIENT_CERT_FILE,
        client_key: &AUDIT_TLS_CLIENT_KEY_FILE,
    };

/// Comma-separated IPs/CIDRs whose X-Real-IP / X-Forwarded-For name the audited client.
pub static TRUSTED_PROXIES: Setting = Setting {
    env: "TRUSTED_PROXIES",
    short: None,
    long: "trusted-proxies",
    default: Value(""),
    arity: Arity::Value,
    help: "comma-separated IPs/CIDRs whose X-Real-IP / X-Forwarded-For name the audited client",
};

/// Strict mode: with a key, reject writes whose body carries no HashSHA256 (400).
pub static REQUIRE_SIGNATURE: Setting = Setting {
    env: "REQUIRE_SIGNATURE",
    short: None,
    long: "require-signature",
    default: Value("false"),
    arity: Arity::Bool,
    help: "strict mode: with a key, every write needs an Idempotency-Key and a Golectra-Signature (400 otherwise; docs/signing.md)",
};

/// Number of request worker threads (fixed pool).
pub static WORKERS: Setting = Setting {
    env: "WORKERS",
    short: Some('w'),
    long: "workers",
    default: Computed("4 x CPU cores"),
    arity: Arity::Value,
    help: "number of request worker threads (fixed pool)",
};

/// Largest request body on the wire; larger gets 413.
pub static MAX_BODY_SIZE: Setting = Setting {
    env: "MAX_BODY_SIZE",
    short: None,
    long: "max-body-size",
    default: Value("4MiB"),
    arity: Arity::Value,
    help: "largest request body on the wire; larger gets 413",
};

/// Largest request body after gzip inflation; larger gets 413.
pub static MAX_INFLATED_SIZE: Setting = Setting {
    env: "MAX_INFLATED_SIZE",
    short: None,
    long: "max-inflated-size",
    default: Value("32MiB"),
    arity: Arity::Value,
    help: "largest request body after gzip inflation; larger gets 413",
};

/// Most metrics in one /updates batch; more gets 413.
pub static MAX_BATCH_ITEMS: Setting = Setting {
    env: "MAX_BATCH_ITEMS",
    short: None,
    long: "max-batch-items",
    default: Value("100000"),
    arity: Arity::Value,
    help: "most metrics in one /updates batch; more gets 413",
};

/// Most gauges, and separately most counters, stored; a write adding a name past it gets 409.
pub static MAX_METRICS: Setting = Setting {
    env: "MAX_METRICS",
    short: None,
    long: "max-metrics",
    default: Value("1000000"),
    arity: Arity::Value,
    help: "most gauges, and separately most counters, stored; a write that would add a name past it gets 409 and applies nothing",
};

/// How long an applied Idempotency-Key is remembered, 10m to 7d.
pub static IDEMPOTENCY_RETENTION: Setting = Setting {
    env: "IDEMPOTENCY_RETENTION",
    short: None,
    long: "idempotency-retention",
    default: Value("1h"),
    arity: Arity::Value,
    help: "how long an applied Idempotency-Key is remembered (a retry within it is answered, not applied), 10m to 7d",
};

/// Most Idempotency-Keys held at once (about 160 bytes each in memory); when full, new keyed writes get 503.
pub static IDEMPOTENCY_MAX_KEYS: Setting = Setting {
    env: "IDEMPOTENCY_MAX_KEYS",
    short: None,
    long: "idempotency-max-keys",
    default: Value("1000000"),
    arity: Arity::Value,
    help: "most Idempotency-Keys the memory store holds (about 160 bytes each); when full, new keyed writes get 503",
};

/// Time between samples of the in-memory history behind the dashboard's sparklines, 10ms to 24h.
pub static HISTORY_INTERVAL: Setting = Setting {
    env: "HISTORY_INTERVAL",
    short: None,
    long: "history-interval",
    default: Value("5s"),
    arity: Arity::Value,
    help: "time between samples of the in-memory history behind the dashboard's sparklines, 10ms to 24h",
};

/// Samples kept per metric (16 bytes each); 0 turns the history off.
pub static HISTORY_POINTS: Setting = Setting {
    env: "HISTORY_POINTS",
    short: None,
    long: "history-points",
    default: Value("60"),
    arity: Arity::Value,
    help: "samples kept per metric (16 bytes each); 0 turns the history off",
};

/// Memory for the whole history (rings and bookkeeping); metrics past it get no history.
pub static HISTORY_MAX_BYTES: Setting = Setting {
    env: "HISTORY_MAX_BYTES",
    short: None,
    long: "history-max-bytes",
    default: Value("128MiB"),
    arity: Arity::Value,
    help: "memory for the whole history (rings and bookkeeping); metrics first seen once it is full get no history",
};

/// Age after which the dashboard marks a metric stale.
pub static STALE_AFTER: Setting = Setting {
    env: "STALE_AFTER",
    short: None,
    long: "stale-after",
    default: Value("5m"),
    arity: Arity::Value,
    help: "age after which the dashboard marks a metric stale (1s to 365d)",
};

/// Gauges not written within it are removed (0 = never); counters too with EXPIRE_COUNTERS.
pub static METRIC_TTL: Setting = Setting {
    env: "METRIC_TTL",
    short: None,
    long: "metric-ttl",
    default: Value("0"),
    arity: Arity::Value,
    help: "gauges not written within it are removed, 1m to 365d (0 = never); counters too with EXPIRE_COUNTERS",
};

/// With METRIC_TTL: counters not written within it are removed too.
pub static EXPIRE_COUNTERS: Setting = Setting {
    env: "EXPIRE_COUNTERS",
    short: None,
    long: "expire-counters",
    default: Value("false"),
    arity: Arity::Value,
    help: "with METRIC_TTL, counters not written within it are removed too (their totals are lost)",
};

/// Bearer token that authorises deletes; empty = deletes only from loopback peers.
pub static ADMIN_TOKEN: Setting = Setting {
    env: "ADMIN_TOKEN",
    short: None,
    long: "admin-token",
    default: Value(""),
    arity: Arity::Value,
    help: "bearer token that authorises deletes (at least 16 characters); empty = deletes only from loopback peers",
};

/// Time between the one-line traffic summaries in the log (only after traffic), 10ms to 24h; 0 turns them off.
pub static SUMMARY_INTERVAL: Setting = Setting {
    env: "SUMMARY_INTERVAL",
    short: None,
    long: "summary-interval",
    default: Value("60s"),
    arity: Arity::Value,
    help: "time between the one-line traffic summaries in the log (only after traffic), 10ms to 24h; 0 turns them off",
};

/// Most open client connections; at the cap an idle one is closed (never-used first), or the newcomer gets 503.
pub static MAX_CONNECTIONS: Setting = Setting {
    env: "MAX_CONNECTIONS",
    short: None,
    long: "max-connections",
    default: Value("1024"),
    arity: Arity::Value,
    help: "most open client connections; at the cap an idle one is closed (never-used first), or the newcomer gets 503",
};

/// How long a keep-alive connection may wait for its next request before it is closed.
pub static IDLE_TIMEOUT: Setting = Setting {
    env: "IDLE_TIMEOUT",
    short: None,
    long: "idle-timeout",
    default: Value("60s"),
    arity: Arity::Value,
    help: "how long a keep-alive connection may wait for its next request before it is closed",
};

/// Time allowed for a whole request head once it started; slower gets 408.
pub static HEADER_TIMEOUT: Setting = Setting {
    env: "HEADER_TIMEOUT",
    short: None,
    long: "header-timeout",
    default: Value("10s"),
    arity: Arity::Value,
    help: "time allowed for a whole request head once it started; slower gets 408",
};

/// Time allowed for a whole request body (slower gets 408) and for writing a response.
pub static BODY_TIMEOUT: Setting = Setting {
    env: "BODY_TIMEOUT",
    short: None,
    long: "body-timeout",
    default: Value("30s"),
    arity: Arity::Value,
    help: "time allowed for a whole request body (slower gets 408) and for writing a response",
};

/// Longest wait of one socket read or write during a request.
pub static IO_TIMEOUT: Setting = Setting {
    env: "IO_TIMEOUT",
    short: None,
    long: "io-timeout",
    default: Value("10s"),
    arity: Arity::Value,
    help: "longest wait of one socket read or write during a request",
};

/// Most request-body bytes buffered across all connections; a body that cannot get its share in time gets 503.
pub static BODY_BUFFER_BUDGET: Setting = Setting {
    env: "BODY_BUFFER_BUDGET",
    short: None,
    long: "body-buffer-budget",
    default: Value("256MiB"),
    arity: Arity::Value,
    help: "most request-body bytes buffered across all connections; a body that cannot get its share in time gets 503",
};

/// Slowest acceptable request body, bytes per second on average after its first 5 s; slower gets 408.
pub static MIN_BODY_RATE: Setting = Setting {
    env: "MIN_BODY_RATE",
    short: None,
    long: "min-body-rate",
    default: Value("1KiB"),
    arity: Arity::Value,
    help: "slowest acceptable request body, bytes per second on average after its first 5 s (slower gets 408); 0 turns it off",
};

/// Most open connections from one client address; over it an idle one of that client's makes room, or 503.
pub static MAX_CONNECTIONS_PER_PEER: Setting = Setting {
    env: "MAX_CONNECTIONS_PER_PEER",
    short: None,
    long: "max-connections-per-peer",
    default: Value("256"),
    arity: Arity::Value,
    help: "most open connections from one client address (behind a reverse proxy every client is the proxy); over it an idle one of that client's is closed, or the newcomer gets 503; 0 = no cap",
};

/// Most request-body bytes buffered for one client address; a body that cannot get its share in time gets 503.
pub static MAX_BUFFERED_PER_PEER: Setting = Setting {
    env: "MAX_BUFFERED_PER_PEER",
    short: None,
    long: "max-buffered-per-peer",
    default: Value("64MiB"),
    arity: Arity::Value,
    help: "most request-body bytes buffered for one client address (behind a reverse proxy every client is the proxy); a body that cannot get its share in time gets 503; 0 = no cap",
};
