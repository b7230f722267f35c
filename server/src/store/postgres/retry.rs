//! Error classification and retries: which PostgreSQL failures are worth repeating, the retry
//! schedule (1 s, 3 s, 5 s by default) within a budget (no retry starts later than
//! [`RETRY_BUDGET`] after the first attempt, which bounds a write's time: docs/postgresql.md,
//! "How long one write can take"), and the counters of retried and failed calls.

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use golectra_common::metric::MetricKind;
use postgres::error::SqlState;

use crate::exposition::{Exposition, FamilyType};
use crate::store::StoreError;

/// Waits before the 2nd, 3rd and 4th attempt of a transiently failing call.
pub(super) const DEFAULT_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(5),
];

/// No retry starts later than this after the first attempt of a call began.
pub(super) const RETRY_BUDGET: Duration = Duration::from_secs(20);

/// Why an attempt failed.
pub(super) enum Failure {
    /// Another attempt may succeed (the connection broke, the server is restarting, …).
    Transient(String),
    /// Retrying cannot help (permissions, missing table, statement timeout, …).
    Permanent(String),
    /// The outcome is a client error, reported as is.
    Store(StoreError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        if let Some(full) = full(&e) {
            return Self::Store(full);
        }
        if is_transient(&e) {
            Self::Transient(describe(&e))
        } else {
            Self::Permanent(describe(&e))
        }
    }
}

/// Whether a failed call is worth repeating.
pub(super) fn is_transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                // A connection to a standby, or to a primary gone read-only: dropped, and the
                // write retried on a connection to a writable host.
                SqlState::READ_ONLY_SQL_TRANSACTION,
            ]
            .contains(code);
    }
    // No answer from the server: the socket failed, or the connect step timed out.
    e.source().is_some_and(|s| s.is::<std::io::Error>()) || is_timeout(e)
}

/// Whether a call gave up waiting for the server (a connect or a connection test that timed
/// out on the client's side).
pub(super) fn is_timeout(e: &postgres::Error) -> bool {
    e.to_string() == "timeout waiting for server"
}

/// The error with its cause: the `postgres` crate's own `Display` says only "db error".
pub(super) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// The SQLSTATE the count trigger raises when a statement would add names past the
/// session's `golectra.max_metrics` (migration `004_metric_count.sql`).
const FULL: &str = "GL001";

/// Whether a write failed because it would add names past `MAX_METRICS`.
pub(super) fn is_full(e: &postgres::Error) -> bool {
    e.code().is_some_and(|code| code.code() == FULL)
}

/// The [`StoreError::Full`] of a write the count trigger refused: the type from the table it
/// names, the numbers from its `DETAIL` ("limit stored adding"). `None` for any other error.
fn full(e: &postgres::Error) -> Option<StoreError> {
    if !is_full(e) {
        return None;
    }
    let db = e.as_db_error()?;
    let kind = match db.table()? {
        "golectra_gauges" => MetricKind::Gauge,
        "golectra_counters" => MetricKind::Counter,
        _ => return None,
    };
    let numbers: Vec<usize> = db
        .detail()?
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [limit, stored, adding] = numbers[..] else {
        return None;
    };
    Some(StoreError::Full {
        kind,
        limit,
        stored,
        adding,
    })
}

/// Whether a write failed because a counter total (or a sum of deltas) left the `bigint` range.
pub(super) fn is_overflow(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE)
}

/// Maps an error of a counter write: `bigint` out of range is the client's overflow, named by
/// `name` (which may fail in turn).
pub(super) fn overflow_or(
    e: postgres::Error,
    name: impl FnOnce() -> Result<String, Failure>,
) -> Failure {
    if is_overflow(&e) {
        match name() {
            Ok(name) => Failure::Store(StoreError::Overflow { name }),
            Err(failure) => failure,
        }
    } else {
        Failure::from(e)
    }
}

/// The retry policy of calls while the server runs, and what it has counted.
pub(super) struct Retries {
    delays: Vec<Duration>,
    /// No retry starts later than this after the first attempt.
    budget: Duration,
    /// Transient failures that were retried (`golectra_postgres_retries_total`).
    retried: AtomicU64,
    /// Calls that failed for good after their retries, answered 503.
    unavailable: AtomicU64,
    /// Calls that failed with an error no retry can fix, answered 503.
    permanent: AtomicU64,
}

impl Retries {
    pub(super) fn new(delays: Vec<Duration>) -> Self {
        Self::with_budget(delays, RETRY_BUDGET)
    }

    /// Retries after `delays`, none starting later than `budget` after the first attempt.
    pub(super) fn with_budget(delays: Vec<Duration>, budget: Duration) -> Self {
        Self {
            delays,
            budget,
            retried: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            permanent: AtomicU64::new(0),
        }
    }

    /// Calls `attempt` with the number of earlier attempts until it succeeds, fails for good,
    /// or has failed transiently once more than there are delays (or when the next retry would
    /// start past the budget). `what` names the call in logs, `target` the database in the
    /// error. The budget counts from now (the store itself uses [`Retries::run_since`]).
    #[cfg(test)]
    pub(super) fn run<T>(
        &self,
        what: &str,
        target: &str,
        attempt: impl FnMut(usize) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.run_since(Instant::now(), what, target, attempt)
    }

    /// [`Retries::run`] with the budget counted from `started` (which may lie in the past: a
    /// write that waited for its turn). The first attempt is always made.
    pub(super) fn run_since<T>(
        &self,
        started: Instant,
        what: &str,
        target: &str,
        mut attempt: impl FnMut(usize) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let mut done = 0;
        loop {
            match attempt(done) {
                Ok(value) => return Ok(value),
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Permanent(why)) => {
                    self.permanent.fetch_add(1, Ordering::Relaxed);
                    log::error!("PostgreSQL {what} failed: {why}");
                    return Err(StoreError::Unavailable(format!("PostgreSQL {what}: {why}")));
                }
                Err(Failure::Transient(why)) => {
                    let next = self.delays.get(done).copied();
                    let Some(delay) = next.filter(|d| started.elapsed() + *d <= self.budget) else {
                        let why = match next {
                            Some(_) => format!(
                                "{why} (no retry starts later than {:?} after the first attempt)",
                                self.budget
                            ),
                            None => why,
                        };
                        self.unavailable.fetch_add(1, Ordering::Relaxed);
                        log::error!(
                            "PostgreSQL {what} failed after {} attempts: {why}",
                            done + 1
                        );
                        return Err(StoreError::Unavailable(format!(
                            "PostgreSQL at {target} failed after {} attempts: {why}",
                            done + 1
                        )));
                    };
                    done += 1;
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    log::warn!("PostgreSQL {what} failed ({why}); attempt {done} in {delay:?}");
                    std::thread::sleep(delay);
                }
            }
        }
    }

    /// `golectra_postgres_retries_total` and `golectra_postgres_errors_total`.
    pub(super) fn export(&self, out: &mut Exposition) {
        out.family(
            "golectra_postgres_retries_total",
            "PostgreSQL calls retried after a transient error (connection loss, serialization failure, …).",
            FamilyType::Counter,
        )
        .sample(&[], self.retried.load(Ordering::Relaxed));
        out.family(
            "golectra_postgres_errors_total",
            "PostgreSQL calls that failed for good and were answered 503, by kind: unavailable (transient errors outlasted the retries) or permanent (an error no retry can fix).",
            FamilyType::Counter,
        )
        .sample(&[("kind", "unavailable")], self.unavailable.load(Ordering::Relaxed))
        .sample(&[("kind", "permanent")], self.permanent.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres::NoTls;

    fn test_dsn() -> Option<String> {
        let dsn = std::env::var("GOLECTRA_TEST_DATABASE_DSN")
            .ok()
            .filter(|v| !v.is_empty());
        if dsn.is_none() {
            eprintln!(
                "NOTE: GOLECTRA_TEST_DATABASE_DSN is not set: this PostgreSQL test is SKIPPED"
            );
        }
        dsn
    }

    fn counts(retries: &Retries) -> [u64; 3] {
        [&retries.retried, &retries.unavailable, &retries.permanent]
            .map(|c| c.load(Ordering::Relaxed))
    }

    #[test]
    fn transient_failures_are_retried_once_per_delay_then_unavailable() {
        let retries = Retries::new(vec![Duration::ZERO; 3]);
        let mut calls = Vec::new();
        let result: Result<(), _> = retries.run("read", "h:1/db", |attempt| {
            calls.push(attempt);
            Err(Failure::Transient("gone".into()))
        });
        assert_eq!(calls, [0, 1, 2, 3]);
        assert_eq!(
            result,
            Err(StoreError::Unavailable(
                "PostgreSQL at h:1/db failed after 4 attempts: gone".into()
            ))
        );
        assert_eq!(counts(&retries), [3, 1, 0]);

        // A success on a later attempt ends the retries.
        let result = retries.run("read", "h:1/db", |attempt| match attempt {
            0 | 1 => Err(Failure::Transient("gone".into())),
            n => Ok(n),
        });
        assert_eq!(result, Ok(2));
        assert_eq!(counts(&retries), [5, 1, 0]);
    }

    #[test]
    fn permanent_failures_and_client_errors_are_not_retried() {
        let retries = Retries::new(vec![Duration::ZERO; 3]);
        let result: Result<(), _> = retries.run("read", "h:1/db", |_| {
            Err(Failure::Permanent("denied".into()))
        });
        assert_eq!(
            result,
            Err(StoreError::Unavailable("PostgreSQL read: denied".into()))
        );
        assert_eq!(counts(&retries), [0, 0, 1]);
        let overflow = StoreError::Overflow { name: "c".into() };
        let result: Result<(), _> = retries.run("batch write", "h:1/db", |_| {
            Err(Failure::Store(overflow.clone()))
        });
        assert_eq!(result, Err(overflow));
        assert_eq!(counts(&retries), [0, 0, 1]);
    }

    #[test]
    fn no_retry_starts_past_the_budget() {
        let retries = Retries::with_budget(
            vec![Duration::from_millis(50); 3],
            Duration::from_millis(120),
        );
        let mut calls = Vec::new();
        let result: Result<(), _> = retries.run("batch write", "h:1/db", |attempt| {
            calls.push(attempt);
            // The second attempt itself is slow: a third would start past the budget.
            if attempt == 1 {
                std::thread::sleep(Duration::from_millis(60));
            }
            Err(Failure::Transient("gone".into()))
        });
        assert_eq!(calls, [0, 1]);
        match result {
            Err(StoreError::Unavailable(why)) => {
                assert!(
                    why.contains("after 2 attempts: gone (no retry starts later than"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    /// A write that waited (behind another round) has used up part of its budget: with all of
    /// it gone it gets its one attempt and no retry.
    #[test]
    fn the_budget_counts_from_when_the_write_arrived() {
        let retries = Retries::with_budget(vec![Duration::ZERO; 3], Duration::from_millis(100));
        let arrived = Instant::now() - Duration::from_millis(150);
        let mut calls = 0;
        let result: Result<(), _> = retries.run_since(arrived, "batch write", "h:1/db", |_| {
            calls += 1;
            Err(Failure::Transient("gone".into()))
        });
        assert_eq!(calls, 1);
        assert!(
            matches!(&result, Err(StoreError::Unavailable(why)) if why.contains("after 1 attempts")),
            "{result:?}"
        );
    }

    #[test]
    fn the_default_schedule_is_1_3_5_seconds() {
        assert_eq!(DEFAULT_DELAYS.map(|d| d.as_secs()), [1, 3, 5]);
    }

    #[test]
    fn classification_of_real_errors() {
        let Some(dsn) = test_dsn() else { return };
        let mut client = postgres::Client::connect(&dsn, NoTls).unwrap();
        let e = client.batch_execute("SELECT 1/0").unwrap_err();
        assert!(!is_transient(&e));
        assert!(describe(&e).contains("22012"), "{}", describe(&e));
        let e = client
            .batch_execute("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40001'; END $$")
            .unwrap_err();
        assert!(is_transient(&e));
        let e = client
            .batch_execute("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '08006'; END $$")
            .unwrap_err();
        assert!(is_transient(&e));
        // A write on a read-only server (a standby): the connection is dropped, the write
        // retried elsewhere.
        let e = client
            .batch_execute("BEGIN READ ONLY; CREATE TABLE golectra_never (a int)")
            .unwrap_err();
        assert_eq!(e.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
        assert!(is_transient(&e));
        client.batch_execute("ROLLBACK").unwrap();
        let Err(e) = postgres::Client::connect("postgres://x@127.0.0.1:1/x", NoTls) else {
            panic!("nothing listens on port 1");
        };
        assert!(is_transient(&e), "{}", describe(&e));
    }
}
