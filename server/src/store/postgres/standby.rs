//! Primaries and standbys (docs/postgresql.md, "Several hosts and failover"): which host of a
//! multi-host DSN the server may write to, and how a connection to a read-only server (a hot
//! standby, or a primary with `default_transaction_read_only`) is recognised and replaced.
//!
//! - The pool connects with `target_session_attrs=read-write` unless the DSN chooses (`any`):
//!   the client library then tries the DSN's hosts in order and keeps the first that accepts
//!   writes, so after a failover new connections find the promoted standby by themselves.
//!   `read-only` is refused at start: this server writes.
//! - Migrations always connect with `read-write`, whatever the DSN says: they run only on a
//!   primary.
//! - A write refused with SQLSTATE `25006` (`read_only_sql_transaction`) is transient
//!   (`retry.rs`): the connection is dropped and the write retried on another one.
//! - A suspect connection (a retry's checkout, `/ping`) is tested with one more round trip,
//!   `SHOW transaction_read_only`; a read-only one is dropped, and `/ping` answers `503` "not
//!   ready: … is a read-only standby" when no writable connection is left.

use postgres::Client;
use postgres::SimpleQueryMessage;
use postgres::config::TargetSessionAttrs;

/// Sets `target_session_attrs=read-write` unless the DSN names the setting itself (`dsn_sets_it`:
/// the client library reports `any` for a DSN that does not); refuses `read-only`.
pub(super) fn apply_default(
    config: &mut postgres::Config,
    dsn_sets_it: bool,
) -> Result<(), String> {
    if !dsn_sets_it {
        config.target_session_attrs(TargetSessionAttrs::ReadWrite);
    } else if config.get_target_session_attrs() == TargetSessionAttrs::ReadOnly {
        return Err(
            "target_session_attrs=read-only: the server writes, use read-write (the default) or any"
                .into(),
        );
    }
    Ok(())
}

/// The configuration that migrations connect with: `config` restricted to a writable host.
pub(super) fn for_migrations(config: &postgres::Config) -> postgres::Config {
    let mut config = config.clone();
    config.target_session_attrs(TargetSessionAttrs::ReadWrite);
    config
}

/// The message of a connection that failed because no host accepted writes (the client
/// library's own words, "database does not allow writes"), with what it means here.
pub(super) fn explain(reason: String) -> String {
    if reason.contains("database does not allow writes") {
        format!(
            "{reason} (every host that answered is a read-only standby; writes and migrations wait for a primary)"
        )
    } else {
        reason
    }
}

/// `None` when the connection accepts writes; otherwise why not, naming the server as it
/// sees itself ("not ready: 127.0.0.1:5433 is a read-only standby"). One round trip when it
/// is writable; a second one, only for the message, when it is not.
pub(super) fn read_only(client: &mut Client) -> Result<Option<String>, postgres::Error> {
    if first_value(&client.simple_query("SHOW transaction_read_only")?).as_deref() != Some("on") {
        return Ok(None);
    }
    // Best effort: an engine without these functions still gets a clear message.
    let (standby, server) = match client.simple_query(
        "SELECT pg_is_in_recovery()::text, \
                coalesce(host(inet_server_addr()) || ':', 'socket:') || current_setting('port')",
    ) {
        Ok(messages) => row(&messages).map_or((None, None), |(a, b)| (Some(a), Some(b))),
        Err(_) => (None, None),
    };
    let server = server.unwrap_or_else(|| "the server".to_owned());
    Ok(Some(match standby.as_deref() {
        Some("true") => format!("not ready: {server} is a read-only standby"),
        _ => format!("not ready: {server} is read-only (transaction_read_only is on)"),
    }))
}

/// The first column of the first row.
fn first_value(messages: &[SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    })
}

/// The two columns of the first row.
fn row(messages: &[SimpleQueryMessage]) -> Option<(String, String)> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some((row.get(0)?.to_owned(), row.get(1)?.to_owned())),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_unless_the_dsn_chooses() {
        let mut config: postgres::Config = "host=a,b".parse().unwrap();
        apply_default(&mut config, false).unwrap();
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        let mut config: postgres::Config = "host=a,b target_session_attrs=any".parse().unwrap();
        apply_default(&mut config, true).unwrap();
        assert_eq!(config.get_target_session_attrs(), TargetSessionAttrs::Any);
        assert_eq!(
            for_migrations(&config).get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        let mut config: postgres::Config = "postgres://u@a,b/db?target_session_attrs=read-only"
            .parse()
            .unwrap();
        let err = apply_default(&mut config, true).unwrap_err();
        assert!(err.starts_with("target_session_attrs=read-only: "), "{err}");
    }

    #[test]
    fn no_writable_host_is_explained() {
        let why = explain("error connecting to server: database does not allow writes".into());
        assert!(
            why.ends_with("writes and migrations wait for a primary)"),
            "{why}"
        );
        assert_eq!(explain("refused".into()), "refused");
    }
}
