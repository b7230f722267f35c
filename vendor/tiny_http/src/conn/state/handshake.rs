//! golectra: the machine's rules for a TLS connection's handshake — its deadline, what follows
//! it, and the refusal of plain HTTP sent to a TLS port. The session itself lives in the
//! reactor (`reactor/transport.rs`); the machine sees only its plaintext.

use std::time::Instant;

use super::{Machine, Phase, Step, LINGER};
use crate::conn::Env;

impl Machine {
    /// golectra: a TLS connection: its handshake must be over by the header deadline (a slow
    /// handshake is closed like an idle connection, silently: no response can reach it).
    pub fn expect_handshake(&mut self, now: Instant, env: &Env) {
        self.deadline = Some(now + env.policy.header_timeout);
    }

    /// golectra: the TLS handshake is over; a connection with no request yet waits for one
    /// like any fresh connection.
    pub fn handshake_done(&mut self, now: Instant, env: &Env) {
        if self.phase == Phase::Idle && self.input.is_empty() {
            self.idle_since = now;
            self.deadline = Some(now + env.policy.idle_timeout);
        }
    }

    /// golectra: refuses the connection's input outright, before any request was parsed
    /// (plain HTTP on a TLS port); the connection lingers after the answer.
    pub fn refuse_now(&mut self, status: u16, message: &str, now: Instant, env: &Env) -> Step {
        self.refuse(status, message, now, env)
    }

    /// golectra: the TLS session failed and its alert was written: the connection half-closes
    /// and drains what the client still sends (like a refusal), so that the client reads the
    /// alert ("certificate required", "unknown CA") instead of a reset.
    pub fn linger_after_tls_failure(&mut self, now: Instant) {
        self.phase = Phase::Lingering;
        self.deadline = Some(now + LINGER);
        self.pending = None;
        self.lingered = 0;
        self.input = Vec::new();
    }
}
