//! Integration tests of `golectra-server`: the HTTP API against every store, snapshots and
//! crash safety, configuration of the real binary, the PostgreSQL store (a black-holed database
//! included), the audit trail, `/metrics` and the dashboard, selecting metrics by tag
//! (`?match=`), strict signatures against replay, exactly-once delivery with the real agent
//! through a fault proxy and across `kill -9`, slow senders beside the agent and the per-peer
//! caps, request smuggling on raw sockets, bounded store size (`MAX_METRICS`, the paged
//! dashboard, the history cap), a fleet of tagged agents on one server and tagged names through
//! every API and store, deletes (a remote peer through a veth pair) and expiry, and operations
//! (systemd units, sd_notify, journald logging, packaging).

mod api;
mod audit;
mod cli;
mod deletes;
mod exactly_once;
mod expiry;
mod fleet;
mod harness;
mod idempotency;
mod limits_store;
mod observability;
mod ops;
mod persistence;
mod postgres;
mod quickstart;
mod real_systemd;
mod resilience;
mod selection;
mod signing;
mod slow_senders;
mod smuggling;
mod tls;
