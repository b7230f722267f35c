//! golectra: one connection's HTTP/1.1 protocol, without sockets — the request-head parser
//! (`httparse`), the body framing rules, the chunked decoder and the connection state machine
//! that turns bytes read and the time into steps (need input, dispatch, refuse, close). The
//! reactor (`reactor/`) does the I/O the steps ask for.

use std::sync::Arc;
use std::time::Duration;

use crate::policy::{Budget, ConnectionPolicy, Counters};

pub(crate) mod body;
pub(crate) mod chunked;
pub(crate) mod framing;
pub(crate) mod fuzzing;
pub(crate) mod head;
pub(crate) mod refusal;
pub(crate) mod state;
#[cfg(test)]
mod tests;

pub(crate) use state::{Expiry, Machine, Next, Parsed, Phase, Step, CONTINUE, READ_CHUNK};

/// What every connection of one server shares: its policy, the body buffer budget, the retry
/// interval of a body waiting for budget and (golectra) the counters its refusals bump.
pub(crate) struct Env {
    pub policy: ConnectionPolicy,
    pub budget: Arc<Budget>,
    pub counters: Counters,
    /// How often a connection waiting for budget tries again (1/8 of the shortest timeout,
    /// 5–100 ms); also how soon a deadline is looked at again when its connection was busy.
    pub retry: Duration,
}

impl Env {
    pub fn new(policy: ConnectionPolicy) -> Self {
        let shortest = [
            policy.idle_timeout,
            policy.header_timeout,
            policy.body_timeout,
            policy.io_timeout,
        ]
        .iter()
        .copied()
        .min()
        .unwrap_or(Duration::from_secs(1));
        Self {
            budget: Arc::new(Budget::new(policy.prefetch_budget)),
            counters: Counters::default(),
            policy,
            retry: (shortest / 8).clamp(Duration::from_millis(5), Duration::from_millis(100)),
        }
    }
}
