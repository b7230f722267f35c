//! The PostgreSQL store (SPEC §5.2): every metric in the database, so that several servers can
//! share one set of counters.
//!
//! It owns the connection pool, the embedded schema migrations and the retry policy:
//! - **Pool**: r2d2 sized to the worker pool (one connection per worker, so a checkout never
//!   waits for a busy connection), `test_on_check_out(false)` (no extra round trip per request);
//!   a connection that broke is discarded when it is returned. Connect and statement timeouts
//!   bound every call.
//! - **Schema**: `golectra_gauges(name, value double precision)` and
//!   `golectra_counters(name, delta bigint)`, each keyed by name — the table is the type, so
//!   a metric is identified by (type, name). Migrations in `migrations/NNN_*.sql` are embedded,
//!   applied at start in one transaction that holds an advisory lock, and recorded in
//!   `golectra_schema_migrations`.
//! - **Writes**: a batch is one statement — one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT …
//!   DO UPDATE` per metric type, joined as data-modifying CTEs — so it is one round trip and one
//!   implicit transaction. Counters are incremented by the database, so concurrent servers never
//!   lose an increment. A `bigint` overflow aborts the statement (nothing applied); a follow-up
//!   query names the counter. Batches of concurrent requests are merged into one statement
//!   while the database is busy (a group commit, see `Combiner`).
//! - **Exactly once**: every counter write carries a random token, inserted in the same
//!   statement into `golectra_applied_batches`. If the connection breaks while a write commits,
//!   the outcome is unknown; the retry carries the same token and applies nothing when the
//!   first attempt did commit.
//! - **Retries**: transient failures (connection loss, serialization failure, deadlock, too many
//!   connections, shutdown, pool checkout timeout) are retried after the configured delays
//!   (1 s, 3 s, 5 s by default), then reported as [`StoreError::Unavailable`].
//!
//! The `postgres` crate drives each connection with a private single-threaded tokio runtime;
//! this module only sees its blocking API.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as _;
use std::hash::BuildHasher;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use golectra_common::metric::{MetricKind, Update};
use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};
use r2d2::{Pool, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;

use super::{Batch, Snapshot, Store, StoreError, StoreKind, Value, Written};

type Conn = PooledConnection<Manager>;

/// The pool's connection manager: `r2d2_postgres`'s, plus a `broken` mark. r2d2 discards a
/// connection only when `has_broken` says so, and the client library notices a closed socket a
/// moment *after* the server's FATAL message (`pg_terminate_backend`, a restart) has failed a
/// call; without the mark the pool would hand the same dead connection out again and again.
struct Manager(PostgresConnectionManager<NoTls>);

/// A pooled client that a failed call can mark broken.
struct Connection {
    client: Client,
    broken: bool,
}

impl std::ops::Deref for Connection {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Connection, postgres::Error> {
        Ok(Connection {
            client: self.0.connect()?,
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.broken || self.0.has_broken(&mut conn.client)
    }
}

/// One embedded schema migration.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Never edit one that has shipped: add a new file.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create_metrics",
        sql: include_str!("migrations/001_create_metrics.sql"),
    },
    Migration {
        version: 2,
        name: "applied_batches",
        sql: include_str!("migrations/002_applied_batches.sql"),
    },
];

/// Key of the transaction-level advisory lock that serializes migrations ("golectra" in ASCII).
const MIGRATION_LOCK: i64 = 0x676f_6c65_6374_7261;

/// The whole batch, guarded by its write token: when the token is already recorded (a retry of
/// an attempt that did commit), nothing is applied and the statement returns 0.
const APPLY_BATCH: &str = "\
WITH once AS (
    INSERT INTO golectra_applied_batches (token) VALUES ($5)
    ON CONFLICT (token) DO NOTHING
    RETURNING token
), g AS (
    INSERT INTO golectra_gauges AS t (name, value)
    SELECT u.name, u.value FROM UNNEST($1::text[], $2::float8[]) AS u(name, value)
    WHERE EXISTS (SELECT FROM once)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()
), c AS (
    INSERT INTO golectra_counters AS t (name, delta)
    SELECT u.name, u.delta FROM UNNEST($3::text[], $4::int8[]) AS u(name, delta)
    WHERE EXISTS (SELECT FROM once)
    ON CONFLICT (name) DO UPDATE SET delta = t.delta + excluded.delta, updated_at = now()
)
SELECT count(*) FROM once";

const UPDATE_GAUGE: &str = "\
INSERT INTO golectra_gauges AS t (name, value) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()";

/// One counter, guarded by its write token like [`APPLY_BATCH`]; no row means "already applied".
const UPDATE_COUNTER: &str = "\
WITH once AS (
    INSERT INTO golectra_applied_batches (token) VALUES ($3)
    ON CONFLICT (token) DO NOTHING
    RETURNING token
)
INSERT INTO golectra_counters AS t (name, delta)
SELECT $1::text, $2::int8 WHERE EXISTS (SELECT FROM once)
ON CONFLICT (name) DO UPDATE SET delta = t.delta + excluded.delta, updated_at = now()
RETURNING delta";

/// Write tokens are needed only while a write may still be retried (well under a minute).
const PRUNE_TOKENS: &str =
    "DELETE FROM golectra_applied_batches WHERE applied_at < now() - interval '10 minutes'";

/// Tokens are pruned after every this many token-carrying writes of one server.
const PRUNE_EVERY: u64 = 4096;

/// After an overflow aborted a batch: the first counter (in byte order, like the memory store)
/// whose total the batch would push out of range.
const FIND_OVERFLOW: &str = "\
SELECT t.name FROM golectra_counters AS t
JOIN UNNEST($1::text[], $2::int8[]) AS u(name, delta) ON t.name = u.name
WHERE t.delta::numeric + u.delta NOT BETWEEN -9223372036854775808 AND 9223372036854775807
ORDER BY t.name COLLATE \"C\" LIMIT 1";

const GET_GAUGE: &str = "SELECT value FROM golectra_gauges WHERE name = $1";
const GET_COUNTER: &str = "SELECT delta FROM golectra_counters WHERE name = $1";

/// Stored metrics by type, for status lines.
const COUNT: &str =
    "SELECT (SELECT count(*) FROM golectra_gauges), (SELECT count(*) FROM golectra_counters)";

/// Both tables in one statement, so the snapshot is consistent.
const SNAPSHOT: &str = "\
SELECT false, name, value, 0::int8, updated_at FROM golectra_gauges
UNION ALL
SELECT true, name, 0::float8, delta, updated_at FROM golectra_counters";

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
    /// Server-side limit of one statement (`statement_timeout`). Default 30 s.
    pub statement_timeout: Duration,
    /// Longest wait for a pooled connection (reached only while the database is unreachable).
    /// Default 2 s.
    pub checkout_timeout: Duration,
}

impl PostgresOptions {
    /// The production defaults for `dsn` with `pool_size` connections.
    pub fn new(dsn: &str, pool_size: usize) -> Self {
        Self {
            dsn: dsn.to_owned(),
            pool_size: u32::try_from(pool_size.max(1)).unwrap_or(u32::MAX),
            retry_delays: [1, 3, 5].map(Duration::from_secs).to_vec(),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            checkout_timeout: Duration::from_secs(2),
        }
    }
}

/// Why an attempt failed.
enum Failure {
    /// Another attempt may succeed (the connection broke, the server is restarting, …).
    Transient(String),
    /// Retrying cannot help (permissions, missing table, statement timeout, …).
    Permanent(String),
    /// The outcome is a client error, reported as is.
    Store(StoreError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        if is_transient(&e) {
            Self::Transient(describe(&e))
        } else {
            Self::Permanent(describe(&e))
        }
    }
}

/// Whether a failed call is worth repeating.
fn is_transient(e: &postgres::Error) -> bool {
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
            ]
            .contains(code);
    }
    // No answer from the server: the socket failed, or the connect step timed out.
    e.source().is_some_and(|s| s.is::<std::io::Error>())
        || e.to_string() == "timeout waiting for server"
}

/// The error with its cause: the `postgres` crate's own `Display` says only "db error".
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Prepared statements of one connection, kept in the pool's per-connection extensions.
#[derive(Default)]
struct Prepared(HashMap<&'static str, Statement>);

/// Returns `sql` prepared on this connection, preparing it on first use.
fn prepared(conn: &mut Conn, sql: &'static str) -> Result<Statement, postgres::Error> {
    let cache = PooledConnection::extensions_mut(conn);
    if let Some(statement) = cache.get::<Prepared>().and_then(|p| p.0.get(sql)) {
        return Ok(statement.clone());
    }
    let statement = conn.prepare(sql)?;
    let cache = PooledConnection::extensions_mut(conn);
    if cache.get::<Prepared>().is_none() {
        cache.insert(Prepared::default());
    }
    cache
        .get_mut::<Prepared>()
        .expect("just inserted")
        .0
        .insert(sql, statement.clone());
    Ok(statement)
}

/// Logs pool errors (failed background connects) at debug level: the request that suffers
/// from them logs its own warning, and an outage must not flood the log.
#[derive(Debug)]
struct QuietErrors;

impl r2d2::HandleError<postgres::Error> for QuietErrors {
    fn handle_error(&self, error: postgres::Error) {
        log::debug!("PostgreSQL pool: {}", describe(&error));
    }
}

/// Unique write tokens: SipHash, keyed randomly per process, of a sequence number. Two
/// servers collide with probability ~n²/2⁶⁴ for n tokens alive in the same ten minutes.
struct Tokens {
    key: std::collections::hash_map::RandomState,
    next: AtomicU64,
}

impl Tokens {
    fn new() -> Self {
        Self {
            key: std::collections::hash_map::RandomState::new(),
            next: AtomicU64::new(0),
        }
    }

    /// A fresh token, and whether this write should also prune old tokens.
    fn next(&self) -> (i64, bool) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let token = self.key.hash_one((n, std::process::id())) as i64;
        (token, n % PRUNE_EVERY == PRUNE_EVERY - 1)
    }
}

/// Deletes expired write tokens; a failure only postpones it.
fn prune_tokens(conn: &mut Conn) {
    match conn.execute(PRUNE_TOKENS, &[]) {
        Ok(n) => log::debug!("pruned {n} expired write tokens"),
        Err(e) => log::debug!("pruning write tokens failed: {}", describe(&e)),
    }
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool<Manager>,
    tokens: Tokens,
    combiner: Combiner,
    retry_delays: Vec<Duration>,
    /// `host:port/dbname`, for messages.
    target: String,
    /// Transient failures that were retried (`golectra_postgres_retries_total`).
    retries: AtomicU64,
    /// Calls that failed for good after their retries, answered 503.
    unavailable: AtomicU64,
    /// Calls that failed with an error no retry can fix, answered 503.
    permanent: AtomicU64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// `host:port/dbname` of a connection configuration (never the password).
fn target(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    };
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{hosts}/{db}")
}

impl PostgresStore {
    /// Connects (retrying transient failures), applies pending migrations and builds the pool.
    /// The error names the database host and what went wrong.
    pub fn open(options: &PostgresOptions) -> Result<Arc<Self>, String> {
        let mut config = postgres::Config::from_str(&options.dsn)
            .map_err(|e| format!("invalid DATABASE_DSN: {}", describe(&e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("golectra-server");
        }
        // Sent with the start-up packet: no extra round trip per connection.
        let timeout = format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis()
        );
        let session_options = match config.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {timeout}"),
            _ => timeout,
        };
        config.options(&session_options);
        let target = target(&config);

        let mut attempt = 0;
        let applied = loop {
            let result = config
                .connect(NoTls)
                .map_err(Failure::from)
                .and_then(|mut client| migrate(&mut client));
            match result {
                Ok(applied) => break applied,
                Err(Failure::Transient(why)) if attempt < options.retry_delays.len() => {
                    let delay = options.retry_delays[attempt];
                    attempt += 1;
                    log::warn!(
                        "PostgreSQL at {target} is not reachable ({why}); attempt {} in {delay:?}",
                        attempt + 1
                    );
                    std::thread::sleep(delay);
                }
                Err(Failure::Transient(why)) => {
                    return Err(format!(
                        "PostgreSQL at {target} is unreachable after {} attempts: {why}",
                        attempt + 1
                    ));
                }
                Err(Failure::Permanent(why) | Failure::Store(StoreError::Unavailable(why))) => {
                    return Err(format!("PostgreSQL at {target}: {why}"));
                }
                Err(Failure::Store(e)) => return Err(format!("PostgreSQL at {target}: {e}")),
            }
        };

        let pool = Pool::builder()
            .max_size(options.pool_size)
            .test_on_check_out(false)
            .connection_timeout(options.checkout_timeout)
            .error_handler(Box::new(QuietErrors))
            .build_unchecked(Manager(PostgresConnectionManager::new(config, NoTls)));
        log::info!(
            "PostgreSQL store at {target}: schema version {}{}, pool of {} connections",
            MIGRATIONS.last().map_or(0, |m| m.version),
            match applied {
                0 => String::new(),
                n => format!(" ({n} migrations applied now)"),
            },
            options.pool_size
        );
        Ok(Arc::new(Self {
            pool,
            tokens: Tokens::new(),
            combiner: Combiner::new(),
            retry_delays: options.retry_delays.clone(),
            target,
            retries: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            permanent: AtomicU64::new(0),
        }))
    }

    /// Checks out a connection. After a failure, the pooled connections may all be dead (a
    /// restarted or terminated server): then each one is tested and the dead ones discarded,
    /// at most one pool's worth, before it is used.
    fn checkout(&self, suspect: bool) -> Result<Conn, Failure> {
        let tries = if suspect {
            self.pool.max_size() as usize + 1
        } else {
            1
        };
        let mut last = String::new();
        for _ in 0..tries {
            let mut conn = self
                .pool
                .get()
                .map_err(|e| Failure::Transient(format!("no database connection: {e}")))?;
            if !suspect {
                return Ok(conn);
            }
            match conn.is_valid(Duration::from_secs(2)) {
                Ok(()) => return Ok(conn),
                Err(e) => {
                    // Marked broken, the pool discards it when it is dropped here.
                    conn.broken = true;
                    last = describe(&e);
                }
            }
        }
        Err(Failure::Transient(last))
    }

    /// Runs `op` on a pooled connection, retrying transient failures after the configured
    /// delays.
    fn run<T>(
        &self,
        what: &str,
        mut op: impl FnMut(&mut Conn) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let mut attempt = 0;
        loop {
            let result = self.checkout(attempt > 0).and_then(|mut conn| {
                let result = op(&mut conn);
                // A connection that just failed transiently is not trusted again.
                conn.broken |= matches!(result, Err(Failure::Transient(_)));
                result
            });
            match result {
                Ok(value) => return Ok(value),
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Permanent(why)) => {
                    self.permanent.fetch_add(1, Ordering::Relaxed);
                    log::error!("PostgreSQL {what} failed: {why}");
                    return Err(StoreError::Unavailable(format!("PostgreSQL {what}: {why}")));
                }
                Err(Failure::Transient(why)) => {
                    let Some(delay) = self.retry_delays.get(attempt).copied() else {
                        self.unavailable.fetch_add(1, Ordering::Relaxed);
                        log::error!(
                            "PostgreSQL {what} failed after {} attempts: {why}",
                            attempt + 1
                        );
                        return Err(StoreError::Unavailable(format!(
                            "PostgreSQL at {} failed after {} attempts: {why}",
                            self.target,
                            attempt + 1
                        )));
                    };
                    attempt += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    log::warn!("PostgreSQL {what} failed ({why}); attempt {attempt} in {delay:?}");
                    std::thread::sleep(delay);
                }
            }
        }
    }
}

impl PostgresStore {
    /// Applies the batches of a group: merged into one statement when that is safe, and one by
    /// one when the merged statement overflows (so that only the guilty batches fail).
    fn apply_group(&self, group: &[Batch]) -> Vec<Result<(), StoreError>> {
        if let [batch] = group {
            return vec![self.apply_one(batch)];
        }
        let one_by_one = || group.iter().map(|b| self.apply_one(b)).collect();
        let Some(merged) = merge(group) else {
            return one_by_one();
        };
        match self.apply_one(&merged) {
            Ok(()) => vec![Ok(()); group.len()],
            Err(StoreError::Overflow { .. }) => one_by_one(),
            Err(e) => vec![Err(e); group.len()],
        }
    }

    /// Applies one batch in one statement.
    fn apply_one(&self, batch: &Batch) -> Result<(), StoreError> {
        let gauge_names: Vec<&str> = batch.gauges.iter().map(|(n, _)| n.as_str()).collect();
        let gauge_values: Vec<f64> = batch.gauges.iter().map(|(_, v)| *v).collect();
        let counter_names: Vec<&str> = batch.counters.iter().map(|(n, _)| n.as_str()).collect();
        let counter_deltas: Vec<i64> = batch.counters.iter().map(|(_, d)| *d).collect();
        // An overflow seen by the statement but not by the follow-up query means another server
        // moved the total in between; the batch is then simply tried again (a few times).
        let mut races = 0;
        let (token, prune) = self.tokens.next();
        self.run("batch write", |conn| {
            let statement = prepared(conn, APPLY_BATCH)?;
            let e = match conn.query_one(
                &statement,
                &[
                    &gauge_names,
                    &gauge_values,
                    &counter_names,
                    &counter_deltas,
                    &token,
                ],
            ) {
                Ok(row) => {
                    if row.get::<_, i64>(0) == 0 {
                        log::info!("a retried batch had already been committed; not applied twice");
                    }
                    if prune {
                        prune_tokens(conn);
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            Err(overflow_or(e, || {
                let find = prepared(conn, FIND_OVERFLOW)?;
                match conn.query_opt(&find, &[&counter_names, &counter_deltas])? {
                    Some(row) => Ok(row.get(0)),
                    None if races < 3 => {
                        races += 1;
                        Err(Failure::Transient(
                            "a counter total changed while an overflow was being located".into(),
                        ))
                    }
                    None => Err(Failure::Permanent(
                        "bigint out of range, but no counter of the batch overflows".into(),
                    )),
                }
            }))
        })
    }
}

/// The batches as one, in order: counter deltas add up, the last gauge value wins. `None` when
/// a sum overflows (the batches are then applied one by one).
fn merge(group: &[Batch]) -> Option<Batch> {
    let mut gauges = BTreeMap::new();
    let mut counters: BTreeMap<&str, i64> = BTreeMap::new();
    for batch in group {
        for (name, value) in &batch.gauges {
            gauges.insert(name.as_str(), *value);
        }
        for (name, delta) in &batch.counters {
            let sum = counters.entry(name.as_str()).or_insert(0);
            *sum = sum.checked_add(*delta)?;
        }
    }
    Some(Batch {
        gauges: gauges.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
        counters: counters
            .into_iter()
            .map(|(n, d)| (n.to_owned(), d))
            .collect(),
    })
}

/// Group commit for batches. Requests that arrive while the database is busy with earlier
/// batches queue here; the next free request thread takes the whole queue (up to
/// [`GROUP_ITEMS`] metrics), merges it and applies it with one statement, then hands every
/// request its result. With many clients writing the same names this turns many small
/// transactions that wait on each other's row locks into a few large ones, and it cuts the
/// database work per sample. At most [`FLUSHERS`] groups are in flight at once; a batch is
/// never delayed when the database is idle.
struct Combiner {
    state: Mutex<CombineState>,
    done: Condvar,
}

#[derive(Default)]
struct CombineState {
    next_ticket: u64,
    queue: Vec<(u64, Batch)>,
    results: HashMap<u64, Result<(), StoreError>>,
    flushing: usize,
}

/// Groups applied concurrently.
const FLUSHERS: usize = 2;

/// Most metrics merged into one statement (a single larger batch still goes alone).
const GROUP_ITEMS: usize = 20_000;

impl Combiner {
    fn new() -> Self {
        Self {
            state: Mutex::new(CombineState::default()),
            done: Condvar::new(),
        }
    }

    /// Queues `batch` and returns its result, applying groups (including other requests'
    /// batches) with `apply` while this thread waits.
    fn submit(
        &self,
        batch: &Batch,
        apply: impl Fn(&[Batch]) -> Vec<Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("poisoned");
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push((ticket, batch.clone()));
        loop {
            if let Some(result) = state.results.remove(&ticket) {
                return result;
            }
            if state.flushing < FLUSHERS && !state.queue.is_empty() {
                state.flushing += 1;
                let mut items = 0;
                let take = state
                    .queue
                    .iter()
                    .take_while(|(_, b)| {
                        items += b.len();
                        items <= GROUP_ITEMS
                    })
                    .count()
                    .max(1);
                let (tickets, group): (Vec<u64>, Vec<Batch>) = state.queue.drain(..take).unzip();
                drop(state);
                let mut flush = Flush {
                    combiner: self,
                    tickets,
                    results: None,
                };
                flush.results = Some(apply(&group));
                drop(flush);
                state = self.state.lock().expect("poisoned");
                continue;
            }
            state = self.done.wait(state).expect("poisoned");
        }
    }
}

/// Hands a group's results to its waiters — also when applying it panicked, so that no
/// request waits forever.
struct Flush<'a> {
    combiner: &'a Combiner,
    tickets: Vec<u64>,
    results: Option<Vec<Result<(), StoreError>>>,
}

impl Drop for Flush<'_> {
    fn drop(&mut self) {
        let results = self.results.take().unwrap_or_default();
        let mut state = self.combiner.state.lock().expect("poisoned");
        state.flushing -= 1;
        let failed = || {
            Err(StoreError::Unavailable(
                "internal error while writing".into(),
            ))
        };
        for (i, ticket) in self.tickets.drain(..).enumerate() {
            let result = results.get(i).cloned().unwrap_or_else(failed);
            state.results.insert(ticket, result);
        }
        self.combiner.done.notify_all();
    }
}

/// Applies the migrations the database has not seen, inside one transaction that holds an
/// advisory lock: a second server starting at the same moment waits, then finds nothing to do.
/// Returns how many were applied.
fn migrate(client: &mut Client) -> Result<usize, Failure> {
    let mut tx = client.transaction()?;
    // Waiting for another server's migrations is bounded by more than one statement's limit.
    tx.batch_execute("SET LOCAL statement_timeout = '120s'")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS golectra_schema_migrations (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM golectra_schema_migrations", &[])?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
        log::warn!(
            "the database schema is at version {newer}, newer than this server knows ({known}); continuing"
        );
    }
    let mut count = 0;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.batch_execute(migration.sql).map_err(|e| {
            Failure::Permanent(format!(
                "migration {:03}_{} failed: {}",
                migration.version,
                migration.name,
                describe(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO golectra_schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )?;
        log::info!(
            "applied migration {:03}_{}",
            migration.version,
            migration.name
        );
        count += 1;
    }
    tx.commit()?;
    Ok(count)
}

/// Maps an error of a counter write: `bigint` out of range is the client's overflow.
fn overflow_or(e: postgres::Error, name: impl FnOnce() -> Result<String, Failure>) -> Failure {
    if e.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) {
        match name() {
            Ok(name) => Failure::Store(StoreError::Overflow { name }),
            Err(failure) => failure,
        }
    } else {
        Failure::from(e)
    }
}

impl Store for PostgresStore {
    /// Committed on return.
    fn update(&self, update: &Update) -> Result<Written<Value>, StoreError> {
        let value = match update {
            Update::Gauge { name, value } => self.run("gauge update", |conn| {
                let statement = prepared(conn, UPDATE_GAUGE)?;
                conn.execute(&statement, &[name, value])?;
                Ok(Value::Gauge(*value))
            }),
            Update::Counter { name, delta } => {
                let (token, prune) = self.tokens.next();
                self.run("counter update", |conn| {
                    let statement = prepared(conn, UPDATE_COUNTER)?;
                    let row = conn
                        .query_opt(&statement, &[name, delta, &token])
                        .map_err(|e| overflow_or(e, || Ok(name.clone())))?;
                    if prune {
                        prune_tokens(conn);
                    }
                    match row {
                        Some(row) => Ok(Value::Counter(row.get(0))),
                        // An earlier attempt committed before its connection broke.
                        None => {
                            log::info!(
                                "a retried counter update had already been committed; not applied twice"
                            );
                            let statement = prepared(conn, GET_COUNTER)?;
                            Ok(Value::Counter(conn.query_one(&statement, &[name])?.get(0)))
                        }
                    }
                })
            }
        }?;
        Ok(Written::now(value))
    }

    /// Joins the batches of concurrent requests into one statement (see `Combiner`). Committed
    /// on return.
    fn apply(&self, batch: &Batch) -> Result<Written<()>, StoreError> {
        if batch.is_empty() {
            return Ok(Written::now(()));
        }
        self.combiner
            .submit(batch, |group| self.apply_group(group))
            .map(Written::now)
    }

    fn get(&self, kind: MetricKind, name: &str) -> Result<Option<Value>, StoreError> {
        self.run("read", |conn| {
            Ok(match kind {
                MetricKind::Gauge => {
                    let statement = prepared(conn, GET_GAUGE)?;
                    conn.query_opt(&statement, &[&name])?
                        .map(|row| Value::Gauge(row.get(0)))
                }
                MetricKind::Counter => {
                    let statement = prepared(conn, GET_COUNTER)?;
                    conn.query_opt(&statement, &[&name])?
                        .map(|row| Value::Counter(row.get(0)))
                }
            })
        })
    }

    fn count(&self) -> Result<(usize, usize), StoreError> {
        let row = self.run("count", |conn| {
            let statement = prepared(conn, COUNT)?;
            Ok(conn.query_one(&statement, &[])?)
        })?;
        let (gauges, counters): (i64, i64) = (row.get(0), row.get(1));
        Ok((gauges as usize, counters as usize))
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let rows = self.run("snapshot", |conn| {
            let statement = prepared(conn, SNAPSHOT)?;
            Ok(conn.query(&statement, &[])?)
        })?;
        let mut snapshot = Snapshot::default();
        for row in rows {
            let updated: SystemTime = row.get(4);
            if snapshot.updated_at.is_none_or(|t| t < updated) {
                snapshot.updated_at = Some(updated);
            }
            if row.get(0) {
                snapshot.counters.push((row.get(1), row.get(3)));
            } else {
                snapshot.gauges.push((row.get(1), row.get(2)));
            }
        }
        // Byte order, like the memory store, whatever the database's collation.
        snapshot.gauges.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        snapshot.counters.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(snapshot)
    }

    /// A checkout that tests the connection: one real round trip, without the retry delays (a
    /// health check must answer promptly).
    fn ping(&self) -> Result<(), StoreError> {
        match self.checkout(true) {
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
        use crate::exposition::FamilyType::Counter;
        out.family(
            "golectra_postgres_retries_total",
            "PostgreSQL calls retried after a transient error (connection loss, serialization failure, …).",
            Counter,
        )
        .sample(&[], self.retries.load(Ordering::Relaxed));
        out.family(
            "golectra_postgres_errors_total",
            "PostgreSQL calls that failed for good and were answered 503, by kind: unavailable (transient errors outlasted the retries) or permanent (an error no retry can fix).",
            Counter,
        )
        .sample(&[("kind", "unavailable")], self.unavailable.load(Ordering::Relaxed))
        .sample(&[("kind", "permanent")], self.permanent.load(Ordering::Relaxed));
        let state = self.pool.state();
        out.family(
            "golectra_postgres_pool_connections",
            "Connections held by the PostgreSQL pool, by state.",
            crate::exposition::FamilyType::Gauge,
        )
        .sample(&[("state", "idle")], state.idle_connections as u64)
        .sample(
            &[("state", "busy")],
            (state.connections - state.idle_connections) as u64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_host_port_and_database() {
        let url =
            postgres::Config::from_str("postgres://u:secret@db.example:6543/metrics").unwrap();
        assert_eq!(target(&url), "db.example:6543/metrics");
        let kv = postgres::Config::from_str("host=h1,h2 port=1,2 user=u password=p").unwrap();
        assert_eq!(target(&kv), "h1:1,h2:2/u");
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }

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

    /// Retries are counted and bounded without waiting: injected zero delays.
    #[test]
    fn unreachable_database_fails_after_the_retries() {
        let mut options = PostgresOptions::new("postgres://nobody@127.0.0.1:1/none", 2);
        options.retry_delays = vec![Duration::ZERO; 3];
        let err = PostgresStore::open(&options).unwrap_err();
        assert!(err.contains("127.0.0.1:1/none"), "{err}");
        assert!(err.contains("after 4 attempts"), "{err}");
        assert!(err.to_lowercase().contains("refused"), "{err}");
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
        let Err(e) = postgres::Client::connect("postgres://x@127.0.0.1:1/x", NoTls) else {
            panic!("nothing listens on port 1");
        };
        assert!(is_transient(&e), "{}", describe(&e));
    }
}
