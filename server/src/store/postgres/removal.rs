//! The SQL of removals: deletes (`DELETE /value/…`, `DELETE /api/v1/series`) and expiry
//! passes (`METRIC_TTL`). Rows are locked in byte order of their names (`COLLATE "C"`), the
//! order batches lock them in (`round.rs`), so a removal and a concurrent batch never deadlock.
//! The metric count (migration 004) follows by its delete trigger.
//!
//! A delete by matcher first reads the candidate names (narrowed in SQL by the matcher's first
//! term, a substring test no index needs), picks the exact ones with the same
//! [`golectra_common::tags::Matcher`] the memory store uses, then deletes those by name. An
//! expiry pass scans for rows whose `updated_at` is older than the cutoff, with no index:
//! an index on `updated_at` would change on every write and cost every write its HOT update,
//! while a pass runs at most once a minute (docs/storage.md, "Expiry").

use golectra_common::metric::MetricKind;
use golectra_common::tags::NAME_KEY;

use super::pool::Conn;
use super::retry::Failure;
use super::statements::prepared;
use crate::store::{Cutoff, Removed, Selection};

const DELETE_GAUGES: &str = "\
DELETE FROM golectra_gauges WHERE name IN (
    SELECT name FROM golectra_gauges WHERE name = ANY($1::text[])
    ORDER BY name COLLATE \"C\" FOR UPDATE)
RETURNING name";

const DELETE_COUNTERS: &str = "\
DELETE FROM golectra_counters WHERE name IN (
    SELECT name FROM golectra_counters WHERE name = ANY($1::text[])
    ORDER BY name COLLATE \"C\" FOR UPDATE)
RETURNING name";

/// Candidates of a matcher whose first term is a tag: names holding `;key=value`.
const GAUGES_WITH: &str = "SELECT name FROM golectra_gauges WHERE strpos(name, $1) > 0";
const COUNTERS_WITH: &str = "SELECT name FROM golectra_counters WHERE strpos(name, $1) > 0";

/// Candidates of a matcher whose first term is the base name: the name, tagged or not.
const GAUGES_NAMED: &str =
    "SELECT name FROM golectra_gauges WHERE name = $1 OR starts_with(name, $1 || ';')";
const COUNTERS_NAMED: &str =
    "SELECT name FROM golectra_counters WHERE name = $1 OR starts_with(name, $1 || ';')";

const EXPIRE_GAUGES: &str = "\
DELETE FROM golectra_gauges WHERE name IN (
    SELECT name FROM golectra_gauges WHERE updated_at < $1
    ORDER BY name COLLATE \"C\" LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING name";

const EXPIRE_COUNTERS: &str = "\
DELETE FROM golectra_counters WHERE name IN (
    SELECT name FROM golectra_counters WHERE updated_at < $1
    ORDER BY name COLLATE \"C\" LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING name";

fn table(kind: MetricKind) -> (&'static str, &'static str, &'static str, &'static str) {
    match kind {
        MetricKind::Gauge => (DELETE_GAUGES, GAUGES_WITH, GAUGES_NAMED, EXPIRE_GAUGES),
        MetricKind::Counter => (
            DELETE_COUNTERS,
            COUNTERS_WITH,
            COUNTERS_NAMED,
            EXPIRE_COUNTERS,
        ),
    }
}

/// Deletes the names of `kind` among `names`; returns those that were stored.
fn delete_names(
    conn: &mut Conn,
    kind: MetricKind,
    names: &[String],
) -> Result<Vec<String>, Failure> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let statement = prepared(conn, table(kind).0)?;
    let rows = conn.query(&statement, &[&names])?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The stored names of `kind` that `selection` (a matcher) selects.
fn matching(
    conn: &mut Conn,
    kind: MetricKind,
    selection: &Selection,
) -> Result<Vec<String>, Failure> {
    let Selection::Matching { matcher, .. } = selection else {
        return Ok(Vec::new());
    };
    let Some(first) = matcher.terms.first() else {
        return Ok(Vec::new());
    };
    let (_, with, named, _) = table(kind);
    let rows = if first.key == NAME_KEY {
        let statement = prepared(conn, named)?;
        conn.query(&statement, &[&first.value])?
    } else {
        let statement = prepared(conn, with)?;
        conn.query(&statement, &[&format!(";{}={}", first.key, first.value)])?
    };
    Ok(rows
        .iter()
        .map(|row| row.get::<_, String>(0))
        .filter(|name| selection.selects(kind, name))
        .collect())
}

/// Removes what `selection` names.
pub(super) fn delete(conn: &mut Conn, selection: &Selection) -> Result<Removed, Failure> {
    let mut removed = Removed::default();
    for kind in [MetricKind::Gauge, MetricKind::Counter] {
        let names = match (selection.name(), selection) {
            (Some((Some(k), _)), _) if k != kind => continue,
            (Some((_, name)), _) => vec![name.to_owned()],
            (None, Selection::Matching { kind: Some(k), .. }) if *k != kind => continue,
            (None, _) => matching(conn, kind, selection)?,
        };
        let gone = delete_names(conn, kind, &names)?;
        match kind {
            MetricKind::Gauge => removed.gauges = gone,
            MetricKind::Counter => removed.counters = gone,
        }
    }
    Ok(removed.sorted())
}

/// Removes at most `cutoff.limit` metrics older than their type's cutoff. Rows another
/// transaction holds are skipped (a write is renewing them).
pub(super) fn expire(conn: &mut Conn, cutoff: &Cutoff) -> Result<Removed, Failure> {
    let mut removed = Removed::default();
    let mut room = cutoff.limit as i64;
    for kind in [MetricKind::Gauge, MetricKind::Counter] {
        let Some(before) = cutoff.of(kind) else {
            continue;
        };
        if room == 0 {
            break;
        }
        let statement = prepared(conn, table(kind).3)?;
        let rows = conn.query(&statement, &[&before, &room])?;
        let gone: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        room -= gone.len() as i64;
        match kind {
            MetricKind::Gauge => removed.gauges = gone,
            MetricKind::Counter => removed.counters = gone,
        }
    }
    Ok(removed.sorted())
}
