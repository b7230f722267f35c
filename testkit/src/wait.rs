//! Waiting for a condition: the kit's only waiting helper.

use std::time::{Duration, Instant};

/// How often [`eventually`] asks again.
const POLL: Duration = Duration::from_millis(20);

/// Asks `probe` every 20 ms until it returns `Some`, and returns that; `None` once `limit` has
/// passed without. The probe runs at least once, and once more at the deadline, so a slow
/// machine gets the whole `limit`.
///
/// ```no_run
/// # use std::time::Duration;
/// let log = golectra_testkit::eventually(Duration::from_secs(10), || {
///     let log = std::fs::read_to_string("server.stderr").ok()?;
///     log.contains("listening on").then_some(log)
/// })
/// .expect("the server starts within 10 s");
/// ```
pub fn eventually<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_some() {
        let mut n = 0;
        let found = eventually(Duration::from_secs(5), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(found, Some(3));
    }

    #[test]
    fn gives_up_after_the_limit_having_probed_at_the_deadline() {
        let started = Instant::now();
        let mut probes = 0;
        let found: Option<()> = eventually(Duration::from_millis(100), || {
            probes += 1;
            None
        });
        assert_eq!(found, None);
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(probes >= 2, "{probes}");
    }
}
