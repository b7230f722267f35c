//! The PostgreSQL store (docs/postgresql.md): every metric in the database, so that several servers can
//! share one set of counters. This file holds [`PostgresStore`] and its [`Store`] methods; each
//! concern has its own file:
//!
//! - `pool.rs` — session settings from the DSN, the r2d2 pool (one connection per worker, no
//!   test on checkout) and the `broken` mark that makes it discard a failed connection.
//! - `statements.rs` — each statement prepared once per connection.
//! - `migrate.rs` — the embedded migrations (`store/migrations/NNN_*.sql`), applied at start in
//!   one transaction under an advisory lock and recorded in `golectra_schema_migrations`.
//! - `open.rs` — connecting and migrating at start, retried, and [`OpenError`].
//! - `sql.rs` — the SQL: a batch is one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT … DO
//!   UPDATE` per metric type, joined as data-modifying CTEs (one round trip, one implicit
//!   transaction); counters are incremented by the database, so concurrent servers never lose
//!   an increment.
//! - `tokens.rs` — write tokens, so that a retried write applies at most once.
//! - `keys.rs` — idempotency keys in `golectra_idempotency_keys`: keyed single-metric writes
//!   (the key claimed in the same statement or transaction as the write), the retention (an
//!   older key counts as absent) and pruning.
//! - `standby.rs` — primaries and standbys: `target_session_attrs=read-write` by default, a
//!   read-only connection recognised (SQLSTATE `25006`, the test of a suspect connection) and
//!   replaced, migrations only on a primary.
//! - `retry.rs` — which failures are transient, the retry schedule (1 s, 3 s, 5 s by default,
//!   then [`StoreError::Unavailable`]) and its counters.
//! - `combiner.rs` — the group commit: batches of concurrent requests, keyed or not, applied
//!   as one round while the database is busy; `round.rs` — the one statement of a round (keys
//!   claimed, then the batches whose key is new or absent applied, aggregated in SQL);
//!   `group.rs` — what Rust adds: the same key twice in a round, the fallback to one batch at
//!   a time when a round overflows.
//!
//! The schema: `golectra_gauges(name, value double precision)` and
//! `golectra_counters(name, delta bigint)`, each keyed by name — the table is the type, so a
//! metric is identified by (type, name).
//!
//! `MAX_METRICS` is checked by the database, for every write path at once: statement triggers
//! keep the count of each table in `golectra_metric_count` and refuse (SQLSTATE `GL001`) a
//! statement whose new names pass the session's `golectra.max_metrics`, which `pool.rs` sets
//! from the setting. The statement is undone whole, its key and write token included; `retry.rs`
//! turns the error into [`StoreError::Full`]. The count is exact across servers: writers of new
//! names take turns on its row (docs/postgresql.md, "Size limit").
//!
//! The `postgres` crate drives each connection with a private single-threaded tokio runtime;
//! this module only sees its blocking API.

mod combiner;
mod group;
mod keys;
mod migrate;
mod open;
mod pool;
mod removal;
mod retry;
mod round;
mod sql;
mod standby;
mod statements;
mod tokens;

use std::sync::Arc;
use std::time::{Duration, Instant};

use golectra_common::metric::{MetricKind, Update};

use super::{
    Batch, Cutoff, Durable, Key, KeyOptions, MaxMetrics, Reading, Removed, Selection, Store,
    StoreError, StoreKind, Value, Written,
};
use combiner::Combiner;
use group::{Answer, Entry, Round};
use keys::Retention;
use pool::{Conn, ConnectionPool};
use retry::{Failure, Retries};

pub use open::OpenError;

/// Group-commit rounds applied concurrently.
const FLUSHERS: usize = 2;

/// Most metrics merged into one statement (a single larger batch still goes alone).
const GROUP_ITEMS: usize = 20_000;

/// How to reach the database and how patient to be with it.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The DSN, URL (`postgres://user:pass@host:5432/db`) or key=value (`host=h dbname=db`).
    pub dsn: String,
    /// Connections in the pool (the worker count).
    pub pool_size: u32,
    /// Waits before the 2nd, 3rd, … attempt of a transiently failing call; after the last one
    /// the call fails. Default 1 s, 3 s, 5 s.
    pub retry_delays: Vec<Duration>,
    /// TCP connect timeout, unless the DSN sets `connect_timeout`. Default 5 s.
    pub connect_timeout: Duration,
    /// How long sent data may stay unacknowledged before the kernel drops the connection
    /// (`TCP_USER_TIMEOUT`), unless the DSN sets `tcp_user_timeout`. Default 10 s.
    pub tcp_user_timeout: Duration,
    /// Idle time before the first keepalive probe, unless the DSN sets `keepalives_idle`
    /// (or turns keepalives off). Default 5 s.
    pub keepalives_idle: Duration,
    /// Time between unanswered keepalive probes, unless the DSN sets `keepalives_interval`.
    /// Default 1 s.
    pub keepalives_interval: Duration,
    /// Server-side limit of one statement (`statement_timeout`). Default 10 s: with the retry
    /// budget it bounds a write's time below the agent's response timeout.
    pub statement_timeout: Duration,
    /// Longest wait for a pooled connection (reached only while the database is unreachable).
    /// Default 2 s.
    pub checkout_timeout: Duration,
    /// How long idempotency keys are held (`retention`; `max_keys` is the memory store's and
    /// not used here). Default 1 h.
    pub keys: KeyOptions,
    /// The most gauges, and the most counters, this server lets the database hold
    /// (`MAX_METRICS`): sent as the session's `golectra.max_metrics`, which the count trigger
    /// checks. Default 1 000 000.
    pub max_metrics: MaxMetrics,
}

impl PostgresOptions {
    /// The production defaults for `dsn` with `pool_size` connections.
    pub fn new(dsn: &str, pool_size: usize) -> Self {
        Self {
            dsn: dsn.to_owned(),
            pool_size: u32::try_from(pool_size.max(1)).unwrap_or(u32::MAX),
            retry_delays: retry::DEFAULT_DELAYS.to_vec(),
            connect_timeout: Duration::from_secs(5),
            tcp_user_timeout: Duration::from_secs(10),
            keepalives_idle: Duration::from_secs(5),
            keepalives_interval: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(10),
            checkout_timeout: Duration::from_secs(2),
            keys: KeyOptions::default(),
            max_metrics: MaxMetrics::DEFAULT,
        }
    }
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: ConnectionPool,
    tokens: tokens::Tokens,
    combiner: Combiner<Entry, Answer>,
    retries: Retries,
    retention: Retention,
    /// `host:port/dbname`, for messages.
    target: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects (retrying transient failures), applies pending migrations and builds the pool.
    /// The error names the database host and what went wrong.
    pub fn open(options: &PostgresOptions) -> Result<Arc<Self>, OpenError> {
        let config =
            pool::session_config(options).map_err(|reason| OpenError::InvalidDsn { reason })?;
        let target = pool::target(&config);
        let opened = open::connect_and_migrate(&config, &target, &options.retry_delays)?;
        let pool = ConnectionPool::new(config, options);
        log::info!(
            "PostgreSQL store at {target}: schema version {}{}, {}pool of {} connections",
            migrate::schema_version(),
            match opened.applied {
                0 => String::new(),
                n => format!(" ({n} migrations applied now)"),
            },
            match &opened.primary {
                Some(primary) if target.contains(',') => format!("primary {primary}, "),
                _ => String::new(),
            },
            options.pool_size
        );
        Ok(Arc::new(Self {
            pool,
            tokens: tokens::Tokens::new(),
            combiner: Combiner::new(FLUSHERS, GROUP_ITEMS, Entry::weight),
            retries: Retries::new(options.retry_delays.clone()),
            retention: Retention::new(options.keys.retention),
            target,
        }))
    }

    /// Runs `op` on a pooled connection, retrying transient failures after the configured
    /// delays; a connection that just failed transiently is not trusted again.
    fn run<T>(
        &self,
        what: &str,
        op: impl FnMut(&mut Conn) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.run_since(Instant::now(), what, op)
    }

    /// [`Self::run`] with the retry budget counted from `since` (no retry starts later than
    /// the budget after it; the first attempt is always made).
    fn run_since<T>(
        &self,
        since: Instant,
        what: &str,
        mut op: impl FnMut(&mut Conn) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.retries
            .run_since(since, what, &self.target, |attempt| {
                let mut conn = self.pool.checkout(attempt > 0)?;
                let result = op(&mut conn);
                conn.broken |= matches!(result, Err(Failure::Transient(_)));
                result
            })
    }

    /// Writes the batches of one round in one statement, under one write token for all
    /// attempts. The retry budget counts from the oldest batch's submission: a batch that
    /// waited behind a failing round gets one attempt of its own, not a second budget.
    fn write_round(&self, entries: &[&Entry]) -> Result<Round, StoreError> {
        let columns = round::Columns::new(entries);
        let mut races = 0;
        let (token, prune) = self.tokens.next();
        let since = entries
            .iter()
            .map(|e| e.submitted)
            .min()
            .unwrap_or_else(Instant::now);
        self.run_since(since, "batch write", |conn| {
            round::write(
                conn,
                entries,
                &columns,
                token,
                self.retention,
                prune,
                &mut races,
            )
        })
    }
}

impl Store for PostgresStore {
    /// Committed on return.
    fn update(&self, update: &Update, key: Option<&Key>) -> Result<Written<Value>, StoreError> {
        if let Some(key) = key {
            // The key guards retries; the token tells a retry its own earlier claim.
            let (token, prune) = self.tokens.next();
            let (value, repeat) = self.run("keyed update", |conn| {
                keys::update(conn, update, key, token, self.retention, prune)
            })?;
            return Ok(Written {
                value,
                durable: Durable::Now,
                repeat,
            });
        }
        let value = match update {
            Update::Gauge { name, value } => {
                self.run("gauge update", |conn| sql::update_gauge(conn, name, *value))
            }
            Update::Counter { name, delta } => {
                let (token, prune) = self.tokens.next();
                self.run("counter update", |conn| {
                    let prune = prune.then_some(self.retention);
                    sql::update_counter(conn, name, *delta, token, prune)
                })
            }
        }?;
        Ok(Written::now(value))
    }

    /// Joins the batches of concurrent requests, keyed or not, into one statement (see
    /// `combiner.rs`, `round.rs`). Committed on return.
    fn apply(&self, batch: &Batch, key: Option<&Key>) -> Result<Written<()>, StoreError> {
        if batch.is_empty() && key.is_none() {
            return Ok(Written::now(()));
        }
        let entry = Entry {
            batch: batch.clone(),
            key: key.cloned(),
            submitted: Instant::now(),
        };
        let repeat = self
            .combiner
            .submit(entry, |group| {
                group::apply_group(&group, |entries| self.write_round(entries))
            })
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "internal error while writing".into(),
                ))
            })?;
        Ok(Written {
            value: (),
            durable: Durable::Now,
            repeat,
        })
    }

    /// Committed on return. A retry after a commit whose answer was lost finds nothing left to
    /// remove: the names it returns are then fewer than were removed.
    fn delete(&self, selection: &Selection) -> Result<Written<Removed>, StoreError> {
        let removed = self.run("delete", |conn| removal::delete(conn, selection))?;
        Ok(Written::now(removed))
    }

    /// Committed on return.
    fn expire(&self, cutoff: &Cutoff) -> Result<Written<Removed>, StoreError> {
        let removed = self.run("expiry", |conn| removal::expire(conn, cutoff))?;
        Ok(Written::now(removed))
    }

    fn get(&self, kind: MetricKind, name: &str) -> Result<Option<Value>, StoreError> {
        self.run("read", |conn| sql::get(conn, kind, name))
    }

    fn count(&self) -> Result<(usize, usize), StoreError> {
        let row = self.run("count", sql::count)?;
        Ok(sql::counts(&row))
    }

    fn read_all(&self) -> Result<Reading, StoreError> {
        let rows = self.run("snapshot", sql::snapshot)?;
        Ok(sql::snapshot_of(rows))
    }

    /// A checkout that tests the connection (one round trip, then `SHOW
    /// transaction_read_only`: a read-only standby is "not ready"), without the retry delays
    /// (a health check must answer promptly).
    fn ping(&self) -> Result<(), StoreError> {
        match self.pool.checkout(true) {
            Ok(_) => Ok(()),
            Err(Failure::Transient(why) | Failure::Permanent(why)) => Err(StoreError::Unavailable(
                format!("PostgreSQL at {}: {why}", self.target),
            )),
            Err(Failure::Store(e)) => Err(e),
        }
    }

    /// Every acknowledged write is already committed; nothing to flush.
    fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
    }

    fn export(&self, out: &mut crate::exposition::Exposition) {
        self.retries.export(out);
        self.pool.export(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retries are counted and bounded without waiting: injected zero delays.
    #[test]
    fn unreachable_database_fails_after_the_retries() {
        let mut options = PostgresOptions::new("postgres://nobody@127.0.0.1:1/none", 2);
        options.retry_delays = vec![Duration::ZERO; 3];
        let err = PostgresStore::open(&options).unwrap_err();
        assert!(
            matches!(&err, OpenError::Unreachable { target, attempts: 4, .. } if target == "127.0.0.1:1/none"),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("127.0.0.1:1/none"), "{err}");
        assert!(err.contains("after 4 attempts"), "{err}");
        assert!(err.to_lowercase().contains("refused"), "{err}");
    }

    #[test]
    fn an_invalid_dsn_is_named() {
        let err =
            PostgresStore::open(&PostgresOptions::new("host=h port=notaport", 1)).unwrap_err();
        assert!(matches!(err, OpenError::InvalidDsn { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("invalid DATABASE_DSN: "),
            "{err}"
        );
    }

    /// A missing database is not transient: no retry, one message naming it.
    #[test]
    fn a_missing_database_stops_at_once() {
        let Some(dsn) = std::env::var("GOLECTRA_TEST_DATABASE_DSN")
            .ok()
            .filter(|v| !v.is_empty())
        else {
            eprintln!(
                "NOTE: GOLECTRA_TEST_DATABASE_DSN is not set: this PostgreSQL test is SKIPPED"
            );
            return;
        };
        let mut config: postgres::Config = dsn.parse().unwrap();
        config.dbname("golectra_no_such_database");
        let mut options = PostgresOptions::new(&dsn, 1);
        options.retry_delays = vec![Duration::ZERO; 3];
        let target = pool::target(&config);
        let err = open::connect_and_migrate(&config, &target, &options.retry_delays).unwrap_err();
        let OpenError::Connect { target, reason } = &err else {
            panic!("{err:?}");
        };
        assert!(target.ends_with("/golectra_no_such_database"), "{target}");
        assert!(reason.contains("3D000"), "{reason}");
        assert_eq!(err.to_string(), format!("PostgreSQL at {target}: {reason}"));
    }
}
