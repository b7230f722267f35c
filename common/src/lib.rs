//! Code shared by `golectra-server` and `golectra-agent`: the wire model of a metric, the
//! `HashSHA256` signature and the strict-mode `Golectra-Signature`, gzip with size limits, the
//! settings parser (env > flag > default), tags in metric names, logging set-up, build information, crash-safe file
//! replacement and the TLS of the HTTP clients.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod atomic_file;
pub mod gzip;
pub mod logging;
pub mod metric;
pub mod notify;
pub mod settings;
pub mod signature;
pub mod signed_request;
pub mod tags;
pub mod tls_client;
pub mod version;

pub use metric::{Metric, MetricKind, Update};
