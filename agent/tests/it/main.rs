//! Integration tests of `golectra-agent` against the real `golectra-server` binary and, where a
//! misbehaving server is needed, fake tiny_http servers.

mod cli;
mod exactly_once;
mod fakes;
mod harness;
mod notify;
mod server;
mod tls;
