//! The schema migrations: embedded from `store/migrations/NNN_*.sql`, applied at start in one
//! transaction that holds an advisory lock, and recorded in `golectra_schema_migrations`.

use postgres::Client;

use super::retry::{Failure, describe};

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
        sql: include_str!("../migrations/001_create_metrics.sql"),
    },
    Migration {
        version: 2,
        name: "applied_batches",
        sql: include_str!("../migrations/002_applied_batches.sql"),
    },
    Migration {
        version: 3,
        name: "idempotency_keys",
        sql: include_str!("../migrations/003_idempotency_keys.sql"),
    },
    Migration {
        version: 4,
        name: "metric_count",
        sql: include_str!("../migrations/004_metric_count.sql"),
    },
];

/// Key of the transaction-level advisory lock that serializes migrations ("golectra" in ASCII).
const MIGRATION_LOCK: i64 = 0x676f_6c65_6374_7261;

/// The schema version this server brings (that of its last migration).
pub(super) fn schema_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Applies the migrations the database has not seen, inside one transaction that holds an
/// advisory lock: a second server starting at the same moment waits, then finds nothing to do.
/// Returns how many were applied.
pub(super) fn migrate(client: &mut Client) -> Result<usize, Failure> {
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
    let known = schema_version();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }
}
