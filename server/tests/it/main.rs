//! Integration tests of `golectra-server`: the HTTP API against every store, snapshots and
//! crash safety, configuration of the real binary, the PostgreSQL store, the audit trail,
//! `/metrics` and the dashboard, and operations (systemd units, sd_notify, journald logging,
//! packaging).

mod api;
mod audit;
mod cli;
mod harness;
mod idempotency;
mod observability;
mod ops;
mod persistence;
mod postgres;
mod quickstart;
mod real_systemd;
mod resilience;
