//! The SQL of reads and writes, and the calls that run it on one connection (the caller adds
//! retries). A batch is one statement: one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT … DO
//! UPDATE` per metric type, joined as data-modifying CTEs and guarded by a write token — one
//! round trip, one implicit transaction. Counters are incremented by the database, so
//! concurrent servers never lose an increment; a `bigint` overflow aborts the statement
//! (nothing applied) and a follow-up query names the counter.

use std::time::SystemTime;

use golectra_common::metric::MetricKind;
use postgres::Row;

use super::pool::Conn;
use super::retry::{Failure, overflow_or};
use super::statements::prepared;
use super::tokens;
use crate::store::{Batch, Reading, Value};

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

pub(super) fn update_gauge(conn: &mut Conn, name: &str, value: f64) -> Result<Value, Failure> {
    let statement = prepared(conn, UPDATE_GAUGE)?;
    conn.execute(&statement, &[&name, &value])?;
    Ok(Value::Gauge(value))
}

/// Adds `delta` under `token` and returns the new total (also when an earlier attempt with the
/// same token had committed).
pub(super) fn update_counter(
    conn: &mut Conn,
    name: &str,
    delta: i64,
    token: i64,
    prune: bool,
) -> Result<Value, Failure> {
    let statement = prepared(conn, UPDATE_COUNTER)?;
    let row = conn
        .query_opt(&statement, &[&name, &delta, &token])
        .map_err(|e| overflow_or(e, || Ok(name.to_owned())))?;
    if prune {
        tokens::prune(conn);
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

/// A batch as the arrays its statement binds, built once for all attempts.
pub(super) struct BatchColumns<'a> {
    gauge_names: Vec<&'a str>,
    gauge_values: Vec<f64>,
    counter_names: Vec<&'a str>,
    counter_deltas: Vec<i64>,
}

impl<'a> BatchColumns<'a> {
    pub(super) fn new(batch: &'a Batch) -> Self {
        Self {
            gauge_names: batch.gauges.iter().map(|(n, _)| n.as_str()).collect(),
            gauge_values: batch.gauges.iter().map(|(_, v)| *v).collect(),
            counter_names: batch.counters.iter().map(|(n, _)| n.as_str()).collect(),
            counter_deltas: batch.counters.iter().map(|(_, d)| *d).collect(),
        }
    }
}

/// Applies a batch in one statement under `token`. `races` counts the overflows seen by the
/// statement but not by the follow-up query (another server moved the total in between): the
/// batch is then tried again, a few times.
pub(super) fn write_batch(
    conn: &mut Conn,
    batch: &BatchColumns<'_>,
    token: i64,
    prune: bool,
    races: &mut u32,
) -> Result<(), Failure> {
    let statement = prepared(conn, APPLY_BATCH)?;
    let e = match conn.query_one(
        &statement,
        &[
            &batch.gauge_names,
            &batch.gauge_values,
            &batch.counter_names,
            &batch.counter_deltas,
            &token,
        ],
    ) {
        Ok(row) => {
            if row.get::<_, i64>(0) == 0 {
                log::info!("a retried batch had already been committed; not applied twice");
            }
            if prune {
                tokens::prune(conn);
            }
            return Ok(());
        }
        Err(e) => e,
    };
    Err(overflow_or(e, || {
        let find = prepared(conn, FIND_OVERFLOW)?;
        match conn.query_opt(&find, &[&batch.counter_names, &batch.counter_deltas])? {
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
    }))
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
            snapshot.counters.push((row.get(1), row.get(3)));
        } else {
            snapshot.gauges.push((row.get(1), row.get(2)));
        }
    }
    // Byte order, like the memory store, whatever the database's collation.
    snapshot.gauges.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    snapshot.counters.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    snapshot
}
