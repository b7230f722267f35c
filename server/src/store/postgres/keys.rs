//! Idempotency keys in `golectra_idempotency_keys` (docs/postgresql.md, "Idempotency keys"):
//! the keyed single-metric writes, the retention, and pruning. Keyed batches are written by
//! the round statement (`round.rs`).
//!
//! A key is claimed with `INSERT … ON CONFLICT (key) DO UPDATE … WHERE applied_at <= now() -
//! retention RETURNING key`: it comes back when it was absent or older than the retention (an
//! expired key counts as absent whether or not it was pruned yet), and the write is applied
//! only then, in the same transaction. `ON CONFLICT` waits for a concurrent inserter of the
//! same key, so of two writers exactly one claims it. When the key is not claimed, its row
//! says what the write is answered: the same fingerprint is a repeat (with the value the first
//! write stored), another one [`StoreError::KeyReused`]; a row carrying this call's own token
//! was claimed by an earlier attempt of this call whose reply was lost (applied, not a repeat).
//!
//! - A gauge: one statement claims the key, recording the value (what a gauge stores is what
//!   was sent), and upserts the gauge only when the key was claimed.
//! - A counter: its stored value (the new total) is known only after the increment, and a
//!   statement cannot update a row that one of its own CTEs inserted, so it is a transaction:
//!   claim and increment (one statement, `RETURNING` the total), record the total in the key's
//!   row, commit — three round trips after `BEGIN`.
//!
//! Keys older than the retention are deleted now and then, together with old write tokens.

use std::time::Duration;

use golectra_common::metric::Update;

use super::pool::Conn;
use super::retry::{Failure, describe, overflow_or};
use super::statements::prepared;
use super::tokens;
use crate::store::{Key, StoreError, Value};

/// How long a key is held: older keys count as absent and are pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Retention(Duration);

impl Retention {
    pub(super) fn new(retention: Duration) -> Self {
        Self(retention)
    }

    /// Milliseconds, as the statements take it.
    pub(super) fn millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Claims the key with the gauge's value and writes the gauge when the claim succeeded: a row
/// when it did.
const CLAIM_GAUGE: &str = "\
WITH fresh AS (
    INSERT INTO golectra_idempotency_keys AS k (key, fingerprint, gauge, token)
    VALUES ($1, $2, $5, $3)
    ON CONFLICT (key) DO UPDATE
    SET fingerprint = excluded.fingerprint, gauge = excluded.gauge, counter = NULL,
        token = excluded.token, applied_at = now()
    WHERE k.applied_at <= now() - $4::int8 * interval '1 millisecond'
    RETURNING key
)
INSERT INTO golectra_gauges AS t (name, value)
SELECT $6::text, $5::float8 WHERE EXISTS (SELECT FROM fresh)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()
RETURNING value";

/// Claims the key and increments the counter when the claim succeeded: the new total when it did.
const CLAIM_COUNTER: &str = "\
WITH fresh AS (
    INSERT INTO golectra_idempotency_keys AS k (key, fingerprint, token)
    VALUES ($1, $2, $3)
    ON CONFLICT (key) DO UPDATE
    SET fingerprint = excluded.fingerprint, gauge = NULL, counter = NULL,
        token = excluded.token, applied_at = now()
    WHERE k.applied_at <= now() - $4::int8 * interval '1 millisecond'
    RETURNING key
)
INSERT INTO golectra_counters AS t (name, delta)
SELECT $6::text, $5::int8 WHERE EXISTS (SELECT FROM fresh)
ON CONFLICT (name) DO UPDATE SET delta = t.delta + excluded.delta, updated_at = now()
RETURNING delta";

/// Records the total a claimed key's counter write stored, in the claiming transaction.
const RECORD_COUNTER: &str = "UPDATE golectra_idempotency_keys SET counter = $2 WHERE key = $1";

/// The row of a key that was not claimed.
const HELD_KEY: &str =
    "SELECT fingerprint, token, gauge, counter FROM golectra_idempotency_keys WHERE key = $1";

const PRUNE_KEYS: &str = "DELETE FROM golectra_idempotency_keys \
WHERE applied_at <= now() - $1::int8 * interval '1 millisecond'";

/// Times a key that was held at the claim but gone at the look-up is claimed again.
const VANISHED_RETRIES: usize = 3;

/// Writes `update` under `key` with the call's `token`: the stored value, and whether the write
/// was a repeat (nothing applied, the first write's value returned).
pub(super) fn update(
    conn: &mut Conn,
    update: &Update,
    key: &Key,
    token: i64,
    retention: Retention,
    prune: bool,
) -> Result<(Value, bool), Failure> {
    for _ in 0..VANISHED_RETRIES {
        if let Some(value) = claim(conn, update, key, token, retention)? {
            if prune {
                self::prune(conn, retention);
            }
            return Ok((value, false));
        }
        let statement = prepared(conn, HELD_KEY)?;
        let Some(row) = conn.query_opt(&statement, &[&key.text])? else {
            // Pruned at the end of its retention since the claim: claim it again.
            continue;
        };
        let reused = || {
            Failure::Store(StoreError::KeyReused {
                key: key.text.clone(),
            })
        };
        if row.get::<_, &[u8]>(0) != key.fingerprint {
            return Err(reused());
        }
        let ours = row.get::<_, Option<i64>>(1) == Some(token);
        if ours {
            log::info!("a retried keyed update had already been committed; not applied twice");
        }
        // A first write that stored nothing of this kind was another request (only a hash
        // collision of fingerprints gets here).
        let value = match update {
            Update::Gauge { .. } => row.get::<_, Option<f64>>(2).map(Value::Gauge),
            Update::Counter { .. } => row.get::<_, Option<i64>>(3).map(Value::Counter),
        };
        return value.map(|v| (v, !ours)).ok_or_else(reused);
    }
    Err(Failure::Store(StoreError::Unavailable(format!(
        "the idempotency key {:?} kept vanishing while it was checked; nothing was applied",
        key.text
    ))))
}

/// Claims the key and applies the update in one transaction: the stored value when the key
/// was claimed, `None` (nothing applied) when it is held.
fn claim(
    conn: &mut Conn,
    update: &Update,
    key: &Key,
    token: i64,
    retention: Retention,
) -> Result<Option<Value>, Failure> {
    let fingerprint = &key.fingerprint[..];
    let millis = retention.millis();
    match update {
        Update::Gauge { name, value } => {
            let statement = prepared(conn, CLAIM_GAUGE)?;
            let row = conn.query_opt(
                &statement,
                &[&key.text, &fingerprint, &token, &millis, value, name],
            )?;
            Ok(row.map(|row| Value::Gauge(row.get(0))))
        }
        Update::Counter { name, delta } => {
            let claim = prepared(conn, CLAIM_COUNTER)?;
            let record = prepared(conn, RECORD_COUNTER)?;
            let mut tx = conn.transaction()?;
            let row = tx
                .query_opt(
                    &claim,
                    &[&key.text, &fingerprint, &token, &millis, delta, name],
                )
                .map_err(|e| overflow_or(e, || Ok(name.clone())))?;
            // Not claimed: dropping the transaction rolls it back (it wrote nothing).
            let Some(row) = row else { return Ok(None) };
            let total: i64 = row.get(0);
            tx.execute(&record, &[&key.text, &total])?;
            tx.commit()?;
            Ok(Some(Value::Counter(total)))
        }
    }
}

/// Deletes the keys older than the retention and the expired write tokens; a failure only
/// postpones it.
pub(super) fn prune(conn: &mut Conn, retention: Retention) {
    tokens::prune(conn);
    match conn.execute(PRUNE_KEYS, &[&retention.millis()]) {
        Ok(n) => log::debug!("pruned {n} expired idempotency keys"),
        Err(e) => log::debug!("pruning idempotency keys failed: {}", describe(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_in_milliseconds_saturates() {
        assert_eq!(
            Retention::new(Duration::from_secs(3600)).millis(),
            3_600_000
        );
        assert_eq!(Retention::new(Duration::from_millis(1500)).millis(), 1500);
        assert_eq!(Retention::new(Duration::MAX).millis(), i64::MAX);
    }

    /// Pruning deletes the keys older than the retention and the expired write tokens, and
    /// nothing else.
    #[test]
    fn pruning_deletes_only_expired_keys_and_tokens() {
        let Some(db) = golectra_testkit::fresh_postgres_dsn() else {
            return;
        };
        let store =
            super::super::PostgresStore::open(&super::super::PostgresOptions::new(&db.dsn, 1))
                .unwrap();
        let mut sql = db.connect();
        sql.batch_execute(
            "INSERT INTO golectra_idempotency_keys (key, fingerprint, applied_at) VALUES
                ('old', '\\x00', now() - interval '61 minutes'),
                ('young', '\\x00', now() - interval '59 minutes');
             INSERT INTO golectra_applied_batches (token, applied_at) VALUES
                (1, now() - interval '11 minutes'), (2, now() - interval '9 minutes')",
        )
        .unwrap();
        let mut conn = store.pool.checkout(false).ok().unwrap();
        prune(&mut conn, Retention::new(Duration::from_secs(3600)));
        let keys: Vec<String> = sql
            .query("SELECT key FROM golectra_idempotency_keys", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(keys, ["young"]);
        let tokens: Vec<i64> = sql
            .query("SELECT token FROM golectra_applied_batches", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(tokens, [2]);
    }
}
