//! The statement of one group-commit round: every batch of the round, keyed or not, in one
//! statement — one round trip, one implicit transaction, all of it or nothing.
//!
//! It binds the round's keys (one per batch, NULL for an unkeyed batch) and its items twice:
//! merged in Rust (counter deltas summed, the last gauge value winning, sorted by name: what
//! the round writes when every batch is applied, the common case) and, for a round of several
//! keyed batches, each batch's own items with the number of their batch. Its CTEs:
//!
//! 1. `once` records the round's write token; when the token is already there (a retry of an
//!    attempt that committed before its connection broke), nothing else is written.
//! 2. `fresh` inserts the round's keys (in byte order, so that concurrent rounds wait for each
//!    other's keys in the same order and cannot deadlock) with `ON CONFLICT (key) DO UPDATE …
//!    WHERE applied_at <= now() - retention`: a key that is absent, or present but older than
//!    the retention, is claimed and returned; a key held by a younger write is not. `ON
//!    CONFLICT` waits for a concurrent inserter of the same key to finish, so of two servers
//!    writing the same key at once exactly one claims it.
//! 3. `live` marks the batches to apply (the unkeyed ones and those whose key is fresh), and
//!    whether that is all of them.
//! 4. `g` and `c` upsert, when every batch is live, the merged items; otherwise the items of
//!    the live batches, aggregated in SQL: the last gauge value by batch order (`DISTINCT
//!    ON`), counter deltas summed per name and cast to `bigint` (a sum out of range aborts the
//!    statement like a total out of range does). The merged items also give way to SQL's sum
//!    when their sum overflowed in Rust. Rows are written in byte order of their names, as
//!    every batch write does. (Aggregating every round in SQL would be simpler, but it about
//!    tripled the database's CPU per sample when many clients write the same names.)
//!
//! It returns whether the token was new and the fresh keys. When a key was not fresh, one more
//! query reads the rows of the round's other keys: the same fingerprint is a repeat, another
//! one a reused key, and a row carrying this round's own token was claimed by an earlier
//! attempt of this very statement (applied, not a repeat). Both run inside one retried call
//! under one token, so the retry of a round whose reply was lost applies nothing again and
//! still tells applied batches from repeats.
//!
//! A round holds at most one batch per worker thread (each submitter waits for its result), so
//! the per-batch joins stay small.

use std::collections::{BTreeMap, HashSet};

use postgres::Row;

use super::group::{Entry, Outcome, Round};
use super::keys::{self, Retention};
use super::pool::Conn;
use super::retry::{Failure, is_full, overflow_or};
use super::sql::find_overflow;
use super::statements::prepared;

const WRITE_ROUND: &str = "\
WITH once AS (
    INSERT INTO golectra_applied_batches (token) VALUES ($1)
    ON CONFLICT (token) DO NOTHING
    RETURNING token
), batch AS (
    SELECT b.key, b.fingerprint, b.i
    FROM UNNEST($3::text[], $4::bytea[]) WITH ORDINALITY AS b(key, fingerprint, i)
), fresh AS (
    INSERT INTO golectra_idempotency_keys AS k (key, fingerprint, token)
    SELECT b.key, b.fingerprint, $1 FROM batch AS b
    WHERE b.key IS NOT NULL AND EXISTS (SELECT FROM once)
    ORDER BY b.key COLLATE \"C\"
    ON CONFLICT (key) DO UPDATE
    SET fingerprint = excluded.fingerprint, gauge = NULL, counter = NULL,
        token = excluded.token, applied_at = now()
    WHERE k.applied_at <= now() - $2::int8 * interval '1 millisecond'
    RETURNING key
), live AS (
    SELECT $9::bool AND bool_and(b.key IS NULL OR f.key IS NOT NULL) AS merged,
           array_agg(b.key IS NULL OR f.key IS NOT NULL ORDER BY b.i) AS batches
    FROM batch AS b LEFT JOIN fresh AS f ON f.key = b.key
    WHERE EXISTS (SELECT FROM once)
), g AS (
    INSERT INTO golectra_gauges AS t (name, value)
    SELECT m.name, m.value FROM UNNEST($5::text[], $6::float8[]) AS m(name, value)
    WHERE (SELECT merged FROM live)
    UNION ALL (
        SELECT DISTINCT ON (u.name COLLATE \"C\") u.name, u.value
        FROM UNNEST($10::text[], $11::float8[], $12::int8[]) AS u(name, value, b)
        WHERE NOT (SELECT merged FROM live) AND (SELECT batches FROM live)[u.b]
        ORDER BY u.name COLLATE \"C\", u.b DESC
    )
    ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()
), c AS (
    INSERT INTO golectra_counters AS t (name, delta)
    SELECT m.name, m.delta FROM UNNEST($7::text[], $8::int8[]) AS m(name, delta)
    WHERE (SELECT merged FROM live)
    UNION ALL (
        SELECT u.name, sum(u.delta)::int8
        FROM UNNEST($13::text[], $14::int8[], $15::int8[]) AS u(name, delta, b)
        WHERE NOT (SELECT merged FROM live) AND (SELECT batches FROM live)[u.b]
        GROUP BY u.name COLLATE \"C\", u.name
        ORDER BY u.name COLLATE \"C\"
    )
    ON CONFLICT (name) DO UPDATE SET delta = t.delta + excluded.delta, updated_at = now()
)
SELECT (SELECT count(*) FROM once), ARRAY(SELECT key FROM fresh)";

/// The rows of keys that were not fresh.
const HELD_KEYS: &str = "\
SELECT key, fingerprint, token FROM golectra_idempotency_keys WHERE key = ANY($1::text[])";

/// A round as the arrays its statement binds, built once for all attempts: the merged items
/// (what the round writes when every batch is applied) and, for a round of several batches,
/// each batch's items with its number (from 1, in round order).
pub(super) struct Columns<'a> {
    keys: Vec<Option<&'a str>>,
    fingerprints: Vec<Option<&'a [u8]>>,
    merged: Items<'a>,
    /// Whether the merged items may be used (their in-memory sum did not overflow).
    mergeable: bool,
    each: Items<'a>,
    gauge_batches: Vec<i64>,
    counter_batches: Vec<i64>,
}

#[derive(Default)]
struct Items<'a> {
    gauge_names: Vec<&'a str>,
    gauge_values: Vec<f64>,
    counter_names: Vec<&'a str>,
    counter_deltas: Vec<i64>,
}

impl<'a> Columns<'a> {
    pub(super) fn new(entries: &[&'a Entry]) -> Self {
        let mut columns = Self {
            keys: entries
                .iter()
                .map(|e| e.key.as_ref().map(|k| k.text.as_str()))
                .collect(),
            fingerprints: entries
                .iter()
                .map(|e| e.key.as_ref().map(|k| &k.fingerprint[..]))
                .collect(),
            merged: Items::default(),
            mergeable: true,
            each: Items::default(),
            gauge_batches: vec![],
            counter_batches: vec![],
        };
        if let [lone] = entries {
            columns.merged = Items::of(&lone.batch.gauges, &lone.batch.counters);
            return columns;
        }
        match merge(entries) {
            // Without keys every batch is applied (or none, on a retry): the merged items do.
            Some(merged) if entries.iter().all(|e| e.key.is_none()) => {
                columns.merged = merged;
                return columns;
            }
            Some(merged) => columns.merged = merged,
            None => columns.mergeable = false,
        }
        for (number, entry) in (1..).zip(entries) {
            for (name, value) in &entry.batch.gauges {
                columns.each.gauge_names.push(name);
                columns.each.gauge_values.push(*value);
                columns.gauge_batches.push(number);
            }
            for (name, delta) in &entry.batch.counters {
                columns.each.counter_names.push(name);
                columns.each.counter_deltas.push(*delta);
                columns.counter_batches.push(number);
            }
        }
        columns
    }
}

impl<'a> Items<'a> {
    fn of(gauges: &'a [(String, f64)], counters: &'a [(String, i64)]) -> Self {
        Self {
            gauge_names: gauges.iter().map(|(n, _)| n.as_str()).collect(),
            gauge_values: gauges.iter().map(|(_, v)| *v).collect(),
            counter_names: counters.iter().map(|(n, _)| n.as_str()).collect(),
            counter_deltas: counters.iter().map(|(_, d)| *d).collect(),
        }
    }
}

/// The batches as one, sorted by name: counter deltas add up, the last gauge value wins.
/// `None` when a sum overflows (the statement then sums each batch's items itself).
fn merge<'a>(entries: &[&'a Entry]) -> Option<Items<'a>> {
    let mut gauges: BTreeMap<&str, f64> = BTreeMap::new();
    let mut counters: BTreeMap<&str, i64> = BTreeMap::new();
    for entry in entries {
        for (name, value) in &entry.batch.gauges {
            gauges.insert(name, *value);
        }
        for (name, delta) in &entry.batch.counters {
            let sum = counters.entry(name).or_insert(0);
            *sum = sum.checked_add(*delta)?;
        }
    }
    Some(Items {
        gauge_names: gauges.keys().copied().collect(),
        gauge_values: gauges.values().copied().collect(),
        counter_names: counters.keys().copied().collect(),
        counter_deltas: counters.values().copied().collect(),
    })
}

/// Writes the round `entries` (distinct keys) under `token` and says what became of each batch.
/// An overflow of a lone batch is its error, naming the counter (`races` counts the times the
/// counter could not be found, see [`find_overflow`]), and so are new names past `MAX_METRICS`;
/// of several, [`Round::Aborted`].
pub(super) fn write(
    conn: &mut Conn,
    entries: &[&Entry],
    columns: &Columns<'_>,
    token: i64,
    retention: Retention,
    prune: bool,
    races: &mut u32,
) -> Result<Round, Failure> {
    let statement = prepared(conn, WRITE_ROUND)?;
    let result = conn.query_one(
        &statement,
        &[
            &token,
            &retention.millis(),
            &columns.keys,
            &columns.fingerprints,
            &columns.merged.gauge_names,
            &columns.merged.gauge_values,
            &columns.merged.counter_names,
            &columns.merged.counter_deltas,
            &columns.mergeable,
            &columns.each.gauge_names,
            &columns.each.gauge_values,
            &columns.gauge_batches,
            &columns.each.counter_names,
            &columns.each.counter_deltas,
            &columns.counter_batches,
        ],
    );
    let row = match result {
        Ok(row) => row,
        Err(e) if entries.len() > 1 && (super::retry::is_overflow(&e) || is_full(&e)) => {
            return Ok(Round::Aborted);
        }
        Err(e) => {
            return Err(overflow_or(e, || {
                let merged = &columns.merged;
                find_overflow(conn, &merged.counter_names, &merged.counter_deltas, races)
            }));
        }
    };
    let token_was_new = row.get::<_, i64>(0) > 0;
    let fresh: Vec<String> = row.get(1);
    if !token_was_new {
        log::info!("a retried batch write had already been committed; not applied twice");
    }
    let outcomes = outcomes(conn, entries, token, token_was_new, &fresh)?;
    if prune {
        keys::prune(conn, retention);
    }
    Ok(Round::Done(outcomes))
}

/// The outcome of each batch after the statement: applied when unkeyed or fresh, otherwise
/// what the row of its key says.
fn outcomes(
    conn: &mut Conn,
    entries: &[&Entry],
    token: i64,
    token_was_new: bool,
    fresh: &[String],
) -> Result<Vec<Outcome>, Failure> {
    let fresh: HashSet<&str> = fresh.iter().map(String::as_str).collect();
    let held: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.key.as_ref())
        .map(|k| k.text.as_str())
        .filter(|k| !fresh.contains(k))
        .collect();
    let rows: Vec<Row> = if held.is_empty() {
        vec![]
    } else {
        let statement = prepared(conn, HELD_KEYS)?;
        conn.query(&statement, &[&held])?
    };
    Ok(entries
        .iter()
        .map(|entry| {
            let Some(key) = &entry.key else {
                // Applied now, or by the committed attempt whose token this retry found.
                return Outcome::Applied;
            };
            if fresh.contains(key.text.as_str()) {
                return Outcome::Applied;
            }
            let Some(row) = rows.iter().find(|r| r.get::<_, &str>(0) == key.text) else {
                return Outcome::Vanished;
            };
            let same = row.get::<_, &[u8]>(1) == key.fingerprint;
            let ours = !token_was_new && row.get::<_, Option<i64>>(2) == Some(token);
            match (same, ours) {
                (true, true) => Outcome::Applied,
                (true, false) => Outcome::Repeat,
                (false, _) => Outcome::Reused,
            }
        })
        .collect())
}
