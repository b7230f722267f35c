//! golectra: the machine's deadlines (which one comes next, what passing it does), which idle
//! connection may be evicted, and closing — the rules the `http-timer` thread and the accept
//! thread apply to a connection from outside its reading and writing.

use super::*;

impl Machine {
    /// The next time [`Machine::expire`] has something to do, if any.
    pub fn next_deadline(&self, now: Instant, env: &Env) -> Option<Instant> {
        let io = || self.progress_at + env.policy.io_timeout;
        match self.phase {
            Phase::Idle | Phase::Lingering => self.deadline,
            Phase::Head | Phase::Writing => Some(self.deadline.map_or_else(io, |d| d.min(io()))),
            Phase::Body => {
                let d = self.deadline.map_or_else(io, |d| d.min(io()));
                Some(self.pace_deadline(env).map_or(d, |pace| pace.min(d)))
            }
            Phase::BudgetWait => {
                let retry = now + env.retry;
                Some(self.deadline.map_or(retry, |d| d.min(retry)))
            }
            Phase::Dispatched | Phase::Closed => None,
        }
    }

    /// When the body being read falls under `min_body_rate`, if the rule is on.
    fn pace_deadline(&self, env: &Env) -> Option<Instant> {
        let p = self.pending.as_ref()?;
        p.pace_deadline(self.input.len(), env)
    }

    /// Applies the deadlines at `now`: idle → close; head or body (or `io_timeout` without
    /// progress) → `408`; a body under `min_body_rate` → `408`; budget (global or the peer's)
    /// still exhausted at the body deadline → `503`; a response not written in time → close;
    /// lingering over → close.
    pub fn expire(&mut self, now: Instant, env: &Env) -> Expiry {
        let io_deadline = self.progress_at + env.policy.io_timeout;
        let passed = |deadline: Option<Instant>| deadline.is_some_and(|d| now >= d);
        match self.phase {
            Phase::Idle if passed(self.deadline) => Expiry::Close,
            Phase::Head | Phase::Body if passed(self.deadline) || passed(Some(io_deadline)) => {
                let message = "request timeout: the request head or body came too slowly";
                self.refuse(408, message, now, env);
                Expiry::Refuse(408)
            }
            Phase::Body if passed(self.pace_deadline(env)) => {
                let message = format!(
                    "request timeout: the request body came slower than {} bytes/s",
                    env.policy.min_body_rate
                );
                self.refuse_counted(Some(&env.counters.too_slow), 408, &message, now, env);
                Expiry::Refuse(408)
            }
            Phase::BudgetWait => match self.reserve(env) {
                Ok(()) => {
                    self.phase = Phase::Body;
                    self.progress_at = now;
                    // The wait does not count against the body's rate.
                    if let Some(p) = self.pending.as_mut() {
                        p.pace = Pace::new(now, p.wire);
                    }
                    Expiry::Resume
                }
                Err(short) if passed(self.deadline) => {
                    let c = &env.counters;
                    let (counter, message) = match short {
                        Shortage::Global => (
                            &c.budget_exhausted,
                            "server busy: too many request bodies in flight, retry later",
                        ),
                        Shortage::Peer => (
                            &c.peer_budget_exhausted,
                            "server busy: too many request bodies in flight from this client, retry later",
                        ),
                    };
                    self.refuse_counted(Some(counter), 503, message, now, env);
                    Expiry::Refuse(503)
                }
                Err(_) => Expiry::Nothing,
            },
            Phase::Writing if passed(self.deadline) || passed(Some(io_deadline)) => Expiry::Close,
            Phase::Lingering if passed(self.deadline) => Expiry::Close,
            _ => Expiry::Nothing,
        }
    }

    /// The eviction key of an idle connection (nothing buffered): whether it ever sent a
    /// request, and since when it is idle. Lower keys are evicted first.
    pub fn eviction_key(&self) -> Option<(bool, Instant)> {
        (self.phase == Phase::Idle && self.input.is_empty())
            .then_some((self.served, self.idle_since))
    }

    /// The server is stopping: a connection whose request is with a worker closes after its
    /// response (returns false); any other closes now (true).
    pub fn close_for_shutdown(&mut self) -> bool {
        if self.phase == Phase::Dispatched {
            self.after_write = AfterWrite::Close;
            false
        } else {
            true
        }
    }

    /// Marks the connection closed and frees its buffers; false if it already was.
    pub fn close(&mut self) -> bool {
        if self.phase == Phase::Closed {
            return false;
        }
        self.phase = Phase::Closed;
        self.deadline = None;
        self.pending = None;
        self.input = Vec::new();
        self.output = Vec::new();
        true
    }
}
