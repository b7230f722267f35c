//! The SQL of reads and of unkeyed single-metric writes, and the calls that run it on one
//! connection (the caller adds retries). Batches are written by `round.rs`, keyed single
//! writes by `keys.rs`. Counters are incremented by the database, so concurrent servers never
//! lose an increment; a `bigint` overflow aborts the statement (nothing applied) and a
//! follow-up query ([`find_overflow`]) names the counter.

use std::time::SystemTime;

use golectra_common::metric::MetricKind;
use postgres::Row;

use super::keys::{self, Retention};
use super::pool::Conn;
use super::retry::{Failure, overflow_or};
use super::statements::prepared;
use crate::store::{Reading, Value};

const UPDATE_GAUGE: &str = "\
INSERT INTO golectra_gauges AS t (name, value) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()";

/// One counter, guarded by its write token (see `tokens.rs`); no row means "already applied".
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

/// After an overflow aborted a batch: the first counter (in byte order, like the memory store)
/// whose total the batch would push out of range.
const FIND_OVERFLOW: &str = "\
SELECT t.name FROM golectra_counters AS t
JOIN UNNEST($1::text[], $2::int8[]) AS u(name, delta) ON t.name = u.name
WHERE t.delta::numeric + u.delta NOT BETWEEN -9223372036854775808 AND 9223372036854775807
ORDER BY t.name COLLATE \"C\" LIMIT 1";

const GET_GAUGE: &str = "SELECT value FROM golectra_gauges WHERE name = $1";
const GET_COUNTER: &str = "SELECT delta FROM golectra_counters WHERE name = $1";

/// Stored metrics by type, for status lines: the count the triggers keep (migration 004), not a
/// scan of the tables.
const COUNT: &str = "SELECT gauges, counters FROM golectra_metric_count";

/// Both tables in one statement, so the snapshot is consistent.
const SNAPSHOT: &str = "\
SELECT false, name, value, 0::int8, updated_at FROM golectra_gauges
UNION ALL
SELECT true, name, 0::float8, delta, updated_at FROM golectra_counters";

pub(super) fn update_gauge(conn: &mut Conn, name: &str, value: f64) -> Result<Value, Failure> {
    let statement = prepared(conn, UPDATE_GAUGE)?;
    conn.execute(&statement, &[&name, &value])?;
    Ok(Value::Gauge(value))
}

/// Adds `delta` under `token` and returns the new total (also when an earlier attempt with the
/// same token had committed); with `prune`, then deletes expired tokens and keys.
pub(super) fn update_counter(
    conn: &mut Conn,
    name: &str,
    delta: i64,
    token: i64,
    prune: Option<Retention>,
) -> Result<Value, Failure> {
    let statement = prepared(conn, UPDATE_COUNTER)?;
    let row = conn
        .query_opt(&statement, &[&name, &delta, &token])
        .map_err(|e| overflow_or(e, || Ok(name.to_owned())))?;
    if let Some(retention) = prune {
        keys::prune(conn, retention);
    }
    match row {
        Some(row) => Ok(Value::Counter(row.get(0))),
        // An earlier attempt committed before its connection broke.
        None => {
            log::info!("a retried counter update had already been committed; not applied twice");
            let statement = prepared(conn, GET_COUNTER)?;
            Ok(Value::Counter(conn.query_one(&statement, &[&name])?.get(0)))
        }
    }
}

/// After an overflow aborted a write of `names` and `deltas`: the counter it would push out of
/// range. `races` counts the overflows seen by the statement but not by this query (another
/// server moved the total in between): the write is then tried again, a few times.
pub(super) fn find_overflow(
    conn: &mut Conn,
    names: &[&str],
    deltas: &[i64],
    races: &mut u32,
) -> Result<String, Failure> {
    let find = prepared(conn, FIND_OVERFLOW)?;
    match conn.query_opt(&find, &[&names, &deltas])? {
        Some(row) => Ok(row.get(0)),
        None if *races < 3 => {
            *races += 1;
            Err(Failure::Transient(
                "a counter total changed while an overflow was being located".into(),
            ))
        }
        None => Err(Failure::Permanent(
            "bigint out of range, but no counter of the batch overflows".into(),
        )),
    }
}

pub(super) fn get(conn: &mut Conn, kind: MetricKind, name: &str) -> Result<Option<Value>, Failure> {
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
}

/// The row of gauge and counter counts; read with [`counts`].
pub(super) fn count(conn: &mut Conn) -> Result<Row, Failure> {
    let statement = prepared(conn, COUNT)?;
    Ok(conn.query_one(&statement, &[])?)
}

/// How many gauges and counters the [`count`] row holds.
pub(super) fn counts(row: &Row) -> (usize, usize) {
    let (gauges, counters): (i64, i64) = (row.get(0), row.get(1));
    (gauges as usize, counters as usize)
}

/// Every stored metric; turned into a [`Reading`] by [`snapshot_of`] once the connection is
/// back in the pool.
pub(super) fn snapshot(conn: &mut Conn) -> Result<Vec<Row>, Failure> {
    let statement = prepared(conn, SNAPSHOT)?;
    Ok(conn.query(&statement, &[])?)
}

pub(super) fn snapshot_of(rows: Vec<Row>) -> Reading {
    let mut snapshot = Reading::default();
    for row in rows {
        let updated: SystemTime = row.get(4);
        if snapshot.updated_at.is_none_or(|t| t < updated) {
            snapshot.updated_at = Some(updated);
        }
        if row.get(0) {
            snapshot.counters.push((row.get(1), row.get(3), updated));
        } else {
            snapshot.gauges.push((row.get(1), row.get(2), updated));
        }
    }
    // Byte order, like the memory store, whatever the database's collation.
    snapshot.gauges.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    snapshot.counters.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    snapshot
}
