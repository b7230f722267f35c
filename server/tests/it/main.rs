//! Integration tests of `golectra-server`: the HTTP API against every store, snapshots and
//! crash safety, configuration of the real binary, the PostgreSQL store.

mod api;
mod cli;
mod harness;
mod persistence;
mod postgres;
