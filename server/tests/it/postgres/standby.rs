//! A read-only server is never written to (docs/postgresql.md, "Several hosts and failover"),
//! on the test kit's [`ReplicatedPostgres`]: a DSN that lets the pool reach the standby
//! (`target_session_attrs=any`, standby first) gets `503`s and a `/ping` that names the
//! standby, while migrations still ran on the primary; the default (`read-write`) skips the
//! standby; a primary that goes read-only (`default_transaction_read_only`) is left too, and
//! taken again once it accepts writes; a DSN of the standby alone cannot start the store.

use std::time::Duration;

use golectra_common::metric::{MetricKind, Update};
use golectra_server::store::postgres::{OpenError, PostgresOptions, PostgresStore};
use golectra_server::store::{Batch, Store, StoreError, Value, Written};
use golectra_testkit::replica::{DATABASE, Replication};
use golectra_testkit::{ReplicatedPostgres, eventually};

fn batch(name: &str) -> Batch {
    Batch::aggregate(vec![Update::Counter {
        name: name.into(),
        delta: 1,
    }])
    .unwrap()
}

/// A store on `dsn` with zero retry delays (the schedule itself is tested elsewhere).
fn open(dsn: &str) -> Result<std::sync::Arc<PostgresStore>, OpenError> {
    let mut options = PostgresOptions::new(dsn, 2);
    options.retry_delays = vec![Duration::ZERO; 3];
    PostgresStore::open(&options)
}

fn unavailable(result: Result<(), StoreError>) -> String {
    match result {
        Err(StoreError::Unavailable(why)) => why,
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[test]
fn a_read_only_server_is_never_written_to() {
    let Some(bed) = ReplicatedPostgres::start_with(Replication::Asynchronous) else {
        return;
    };
    let (primary, standby) = (bed.primary_port, bed.standby_port);
    let both = |attrs: &str| {
        format!(
            "host=127.0.0.1,127.0.0.1 port={standby},{primary} user=postgres dbname={DATABASE}{attrs}"
        )
    };
    let counter = |port: u16, name: &str| -> Option<i64> {
        bed.connect(port, DATABASE)
            .query_opt(
                "SELECT delta FROM golectra_counters WHERE name = $1",
                &[&name],
            )
            .unwrap()
            .map(|r| r.get(0))
    };

    // (1) The standby first and `any`: migrations ran on the primary all the same, but the
    // pool's connections lead to the standby. Writes are refused (503, 25006), never applied,
    // and /ping says why.
    // The first attempt meets 25006 and is retried (a permanent error would be answered at
    // once, naming it); the retries find only standby connections.
    let store = open(&both(" target_session_attrs=any")).expect("migrated on the primary");
    // (Else the standby may not have the tables yet: a different refusal.)
    bed.wait_replayed();
    let not_ready = format!("not ready: 127.0.0.1:{standby} is a read-only standby");
    let why = unavailable(store.apply(&batch("c"), None).and_then(Written::wait));
    assert!(
        why.contains("failed after 4 attempts: ") && why.contains(&not_ready),
        "{why}"
    );
    let ping = unavailable(store.ping());
    assert!(
        ping.starts_with(&format!(
            "PostgreSQL at 127.0.0.1:{standby},127.0.0.1:{primary}/{DATABASE}: {not_ready}"
        )),
        "{ping}"
    );
    assert_eq!(counter(primary, "c"), None);
    drop(store);

    // (2) The default, read-write: the same hosts, the standby skipped.
    let store = open(&both("")).unwrap();
    store
        .apply(&batch("c"), None)
        .and_then(Written::wait)
        .unwrap();
    assert_eq!(store.ping(), Ok(()));
    assert_eq!(counter(primary, "c"), Some(1));

    // (3) The primary goes read-only while the pool holds connections to it: the write that
    // meets 25006 drops its connection; no host accepts writes, so the write gets 503 and
    // /ping names the reason. Once the primary accepts writes again, so does the store.
    // (The reload reaches the primary's backends a moment later: /ping tells when.)
    bed.set_read_only(primary, true);
    let ping = eventually(Duration::from_secs(30), || store.ping().err())
        .expect("/ping notices the read-only primary");
    let read_only = |why: &str| {
        why.contains(&format!(
            "not ready: 127.0.0.1:{primary} is read-only (transaction_read_only is on)"
        )) || why.contains(
            "database does not allow writes (every host that answered is a read-only standby",
        )
    };
    assert!(read_only(&ping.to_string()), "{ping}");
    let why = unavailable(store.apply(&batch("c"), None).and_then(Written::wait));
    assert!(read_only(&why), "{why}");
    assert_eq!(counter(primary, "c"), Some(1));
    bed.set_read_only(primary, false);
    eventually(Duration::from_secs(30), || store.ping().ok())
        .expect("the store takes the primary again");
    store
        .apply(&batch("c"), None)
        .and_then(Written::wait)
        .unwrap();
    assert_eq!(
        store.get(MetricKind::Counter, "c"),
        Ok(Some(Value::Counter(2)))
    );
    drop(store);

    // (4) The standby alone: migrations need a primary, the store does not open.
    let err = open(&bed.host_dsn(standby)).unwrap_err();
    let OpenError::Unreachable {
        target,
        attempts,
        reason,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(target, &format!("127.0.0.1:{standby}/{DATABASE}"));
    assert_eq!(*attempts, 4);
    assert!(
        reason.ends_with(
            "database does not allow writes (every host that answered is a read-only standby; writes and migrations wait for a primary)"
        ),
        "{reason}"
    );
    // `read-only` is refused before any connection.
    let err = open(&format!(
        "{} target_session_attrs=read-only",
        bed.host_dsn(standby)
    ));
    assert!(
        matches!(&err, Err(OpenError::InvalidDsn { reason }) if reason.starts_with("target_session_attrs=read-only")),
        "{err:?}"
    );
}
