//! Integration tests of `golectra-server`: the HTTP API against every store, snapshots and
//! crash safety, configuration of the real binary.

mod api;
mod cli;
mod harness;
mod persistence;
mod resilience;
