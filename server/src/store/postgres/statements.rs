//! The per-connection statement cache: each statement is prepared once per pooled connection
//! (on first use) and kept in the pool's per-connection extensions.

use std::collections::HashMap;

use postgres::Statement;
use r2d2::PooledConnection;

use super::pool::Conn;

/// Prepared statements of one connection, by SQL text.
#[derive(Default)]
struct Prepared(HashMap<&'static str, Statement>);

/// Returns `sql` prepared on this connection, preparing it on first use.
pub(super) fn prepared(conn: &mut Conn, sql: &'static str) -> Result<Statement, postgres::Error> {
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
