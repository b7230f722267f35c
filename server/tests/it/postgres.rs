//! The PostgreSQL store against a real database (docs/postgresql.md): persistence across restarts,
//! (type, name) identity, several servers sharing counters, connection loss, concurrent
//! migrations, an unreachable or vanished database. Every test creates its own database; all
//! of them are skipped loudly when `GOLECTRA_TEST_DATABASE_DSN` is not set.
//!
//! The HTTP API suite itself runs against PostgreSQL from `api.rs` (see `harness::backends`).
//! Idempotency keys have their own file, `postgres/keys.rs`; a black-holed database,
//! `postgres/black_hole.rs`; a replicated database (the test kit's `ReplicatedPostgres`), its
//! failover under traffic `postgres/failover.rs` and read-only servers `postgres/standby.rs`;
//! two servers behind HAProxy, `postgres/balancer.rs`.

mod balancer;
mod black_hole;
mod failover;
mod keys;
mod standby;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use golectra_common::metric::{MetricKind, Update};
use golectra_server::config::{Config, Storage};
use golectra_server::store::postgres::{PostgresOptions, PostgresStore};
use golectra_server::store::{Batch, Store, StoreError, Value, Written};

use golectra_testkit::{
    Client, DSN_ENV, Daemon, ServerProcess, TestDatabase, eventually, fresh_postgres_dsn,
};

use crate::harness::server_binary;

fn start_server(db: &TestDatabase) -> golectra_server::Server {
    let config = Config::for_tests(Storage::Postgres {
        dsn: db.dsn.clone(),
        ignored_file_settings: false,
    });
    golectra_server::Server::start(&config).expect("server starts on PostgreSQL")
}

/// Kills every other connection to the test database, like a database restart would.
fn terminate_backends(db: &TestDatabase) -> i64 {
    let mut admin = db.connect();
    admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .expect("terminate backends")
        .len() as i64
}

fn counter(client: &Client, name: &str) -> i64 {
    let r = client.get(&format!("/value/counter/{name}"));
    assert_eq!(r.status, 200, "{name}: {}", r.text());
    r.text().parse().unwrap()
}

#[test]
fn data_survives_a_restart() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let server = start_server(&db);
    let c = Client::new(server.local_addr());
    assert_eq!(c.post("/update/gauge/g/0.1", b"").status, 200);
    assert_eq!(c.post("/update/counter/c/41", b"").status, 200);
    server.shutdown().unwrap();

    let server = start_server(&db);
    let c = Client::new(server.local_addr());
    assert_eq!(c.get("/value/gauge/g").text(), "0.1");
    assert_eq!(c.post("/update/counter/c/1", b"").status, 200);
    assert_eq!(counter(&c, "c"), 42);
    server.shutdown().unwrap();
}

#[test]
fn type_and_name_identify_a_row_and_zero_delta_creates_it() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let server = start_server(&db);
    let c = Client::new(server.local_addr());
    assert_eq!(c.post("/update/counter/zero/0", b"").status, 200);
    assert_eq!(counter(&c, "zero"), 0);
    assert_eq!(c.post("/update/gauge/both/-2.5", b"").status, 200);
    assert_eq!(c.post("/update/counter/both/3", b"").status, 200);
    assert_eq!(c.get("/value/gauge/both").text(), "-2.5");
    assert_eq!(counter(&c, "both"), 3);
    // One row per (type, name), in the table of its type.
    let mut sql = db.connect();
    let gauges: i64 = sql
        .query_one("SELECT count(*) FROM golectra_gauges", &[])
        .unwrap()
        .get(0);
    let counters: Vec<(String, i64)> = sql
        .query(
            "SELECT name, delta FROM golectra_counters ORDER BY name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(gauges, 1);
    assert_eq!(counters, vec![("both".into(), 3), ("zero".into(), 0)]);
    server.shutdown().unwrap();
}

#[test]
fn two_servers_share_exact_counters() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = ServerProcess::start(dir.path(), &["-d", &db.dsn, "-w", "4"], &[]);
    let b = ServerProcess::start(dir.path(), &["-d", &db.dsn, "-w", "4"], &[]);
    let threads: Vec<_> = (0..12)
        .map(|t| {
            let clients = [a.client(), b.client()];
            std::thread::spawn(move || {
                for i in 0..60 {
                    let c = &clients[(t + i) % 2];
                    if i % 2 == 0 {
                        assert_eq!(c.post("/update/counter/hits/1", b"").status, 200);
                    } else {
                        let body = format!(
                            r#"[{{"id":"hits","type":"counter","delta":2}},{{"id":"t{t}","type":"counter","delta":1}},{{"id":"hits","type":"gauge","value":{i}}}]"#
                        );
                        let r = c.post_json("/updates", &body);
                        assert_eq!(r.status, 200, "{}", r.text());
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    for server in [&a, &b] {
        let c = server.client();
        assert_eq!(counter(&c, "hits"), 12 * (30 + 30 * 2));
        for t in 0..12 {
            assert_eq!(counter(&c, &format!("t{t}")), 30);
        }
    }
    for server in [a, b] {
        let (code, log) = server.terminate();
        assert_eq!(code, 0, "{log}");
    }
}

/// Backends are terminated while clients write: every acknowledged increment is in the
/// database, a failed one is answered 503 (never another error), and the server serves again
/// without a restart.
#[test]
fn connection_loss_mid_run_loses_nothing_acknowledged() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let server = start_server(&db);
    let addr = server.local_addr();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|t| {
            let (acknowledged, refused, stop) =
                (acknowledged.clone(), refused.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = Client::new(addr);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let r = if i.is_multiple_of(2) {
                        c.post("/update/counter/n/1", b"")
                    } else {
                        c.post_json(
                            "/updates",
                            &format!(
                                r#"[{{"id":"n","type":"counter","delta":1}},{{"id":"w{t}","type":"gauge","value":{i}}}]"#
                            ),
                        )
                    };
                    match r.status {
                        200 => acknowledged.fetch_add(1, Ordering::Relaxed),
                        503 => refused.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected {other}: {}", r.text()),
                    };
                    i += 1;
                }
            })
        })
        .collect();
    let mut terminated = 0;
    // Waits (generously) until the writers had 50 more writes acknowledged.
    let fifty_more = || {
        let before = acknowledged.load(Ordering::Relaxed);
        eventually(Duration::from_secs(120), || {
            (acknowledged.load(Ordering::Relaxed) >= before + 50).then_some(())
        })
        .expect("50 more acknowledged writes");
    };
    for _ in 0..3 {
        // Let the writers get going (and recover) between the terminations.
        fifty_more();
        terminated += terminate_backends(&db);
    }
    fifty_more();
    stop.store(true, Ordering::Relaxed);
    writers.into_iter().for_each(|t| t.join().unwrap());
    assert!(terminated > 0, "the server's connections were terminated");

    let c = Client::new(addr);
    assert_eq!(c.get("/ping").status, 200, "recovered without a restart");
    let total = counter(&c, "n") as u64;
    let acked = acknowledged.load(Ordering::Relaxed);
    let failed = refused.load(Ordering::Relaxed);
    assert!(
        total >= acked,
        "acknowledged increments lost: {total} < {acked}"
    );
    assert!(
        total <= acked + failed,
        "more increments than requests: {total} > {acked} + {failed}"
    );
    server.shutdown().unwrap();
}

/// The retry loop itself, with injected zero delays: a store whose every connection was killed
/// serves the next call without an error.
#[test]
fn retries_replace_dead_connections() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let mut options = PostgresOptions::new(&db.dsn, 3);
    options.retry_delays = vec![Duration::ZERO; 3];
    let store = PostgresStore::open(&options).unwrap();
    let one = |delta| Update::Counter {
        name: "c".into(),
        delta,
    };
    for _ in 0..3 {
        store.update(&one(1), None).and_then(Written::wait).unwrap();
    }
    for round in 0..3 {
        assert!(terminate_backends(&db) > 0);
        assert_eq!(store.ping(), Ok(()), "round {round}");
        assert!(terminate_backends(&db) > 0);
        assert_eq!(
            store.update(&one(1), None).and_then(Written::wait),
            Ok(Value::Counter(4 + round)),
            "round {round}"
        );
    }
    assert_eq!(
        store.get(MetricKind::Counter, "c"),
        Ok(Some(Value::Counter(6)))
    );
    // Every write after a termination met a dead connection first and was retried.
    let mut out = golectra_server::exposition::Exposition::new();
    store.export(&mut out);
    let text = out.into_string();
    let retries: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("golectra_postgres_retries_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no retry counter in:\n{text}"));
    assert!(retries >= 3, "{text}");
    assert!(
        text.contains("golectra_postgres_errors_total{kind=\"unavailable\"} 0"),
        "{text}"
    );
}

#[test]
fn overflow_names_the_counter_and_applies_nothing() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let mut options = PostgresOptions::new(&db.dsn, 2);
    options.retry_delays = vec![];
    let store = PostgresStore::open(&options).unwrap();
    let batch = |items: Vec<Update>| Batch::aggregate(items).unwrap();
    let c = |name: &str, delta| Update::Counter {
        name: name.into(),
        delta,
    };
    store
        .apply(&batch(vec![c("max", i64::MAX), c("min", i64::MIN)]), None)
        .and_then(Written::wait)
        .unwrap();
    let err = store
        .apply(
            &batch(vec![
                c("a", 1),
                c("min", -1),
                c("max", 1),
                Update::Gauge {
                    name: "g".into(),
                    value: 1.0,
                },
            ]),
            None,
        )
        .unwrap_err();
    assert_eq!(err, StoreError::Overflow { name: "max".into() });
    assert_eq!(store.get(MetricKind::Counter, "a"), Ok(None));
    assert_eq!(store.get(MetricKind::Gauge, "g"), Ok(None));
    assert_eq!(
        store.update(&c("min", -1), None).and_then(Written::wait),
        Err(StoreError::Overflow { name: "min".into() })
    );
    assert_eq!(
        store.get(MetricKind::Counter, "min"),
        Ok(Some(Value::Counter(i64::MIN)))
    );
}

#[test]
fn migrations_are_idempotent_and_safe_in_parallel() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let starters = 4;
    let barrier = Arc::new(Barrier::new(starters));
    let threads: Vec<_> = (0..starters)
        .map(|_| {
            let (barrier, dsn) = (barrier.clone(), db.dsn.clone());
            std::thread::spawn(move || {
                let options = PostgresOptions::new(&dsn, 1);
                barrier.wait();
                PostgresStore::open(&options).map(drop)
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().expect("every concurrent start succeeds");
    }
    // Once more on the migrated database: nothing to do, nothing duplicated.
    let store = PostgresStore::open(&PostgresOptions::new(&db.dsn, 1)).unwrap();
    store
        .update(
            &Update::Counter {
                name: "c".into(),
                delta: 1,
            },
            None,
        )
        .and_then(Written::wait)
        .unwrap();
    let mut sql = db.connect();
    let rows: Vec<(i32, String)> = sql
        .query(
            "SELECT version, name FROM golectra_schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, "create_metrics".to_owned()),
            (2, "applied_batches".to_owned()),
            (3, "idempotency_keys".to_owned()),
            (4, "metric_count".to_owned())
        ]
    );
}

/// Two real processes starting at the same moment on an empty database.
#[test]
fn two_binaries_migrate_one_empty_database() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ServerProcess::start(dir.path(), &["-d", &db.dsn], &[]));
        let b = s.spawn(|| ServerProcess::start(dir.path(), &["-d", &db.dsn], &[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.client().post("/update/counter/x/1", b"").status, 200);
    assert_eq!(b.client().post("/update/counter/x/1", b"").status, 200);
    assert_eq!(counter(&a.client(), "x"), 2);
    for server in [a, b] {
        assert_eq!(server.terminate().0, 0);
    }
}

#[test]
fn unreachable_database_at_start_exits_non_zero_with_the_host() {
    // No database needed: nothing listens on port 1.
    let dir = tempfile::tempdir().unwrap();
    let mut server = Daemon::spawn(
        server_binary(),
        dir.path(),
        &[
            "-a",
            "127.0.0.1:0",
            "-d",
            "postgres://golectra@127.0.0.1:1/metrics",
        ],
        &[],
    );
    let code = server.wait_exit(Duration::from_secs(60));
    let log = server.log();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("127.0.0.1:1/metrics"), "{log}");
    assert!(log.contains("Connection refused"), "{log}");
    assert!(log.contains("after 4 attempts"), "{log}");
    assert!(
        !log.contains("listening on"),
        "no fallback to memory: {log}"
    );
}

#[test]
fn ping_is_503_when_the_database_is_gone() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let server = start_server(&db);
    let c = Client::new(server.local_addr());
    assert_eq!(c.get("/ping").status, 200);
    assert_eq!(c.post("/update/counter/c/1", b"").status, 200);
    let mut admin =
        postgres::Client::connect(&std::env::var(DSN_ENV).unwrap(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name))
        .unwrap();
    for _ in 0..3 {
        let r = c.get("/ping");
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.text().contains("PostgreSQL"), "{}", r.text());
    }
    assert_eq!(c.post("/update/counter/c/1", b"").status, 503);
    server.shutdown().unwrap();
}

#[test]
fn start_up_log_masks_the_password_and_notes_ignored_file_settings() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    // Trust authentication ignores the password, which is only here to be masked.
    let dsn = db.dsn.replacen("://postgres@", "://postgres:hunter2@", 1);
    assert_ne!(dsn, db.dsn, "the test DSN names user postgres");
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-d", &dsn, "-f", "other.json", "-r"], &[]);
    assert_eq!(server.client().get("/ping").status, 200);
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("hunter2"), "{log}");
    assert!(log.contains("postgres:***@"), "{log}");
    assert!(log.contains("are ignored"), "{log}");
    assert!(!dir.path().join("other.json").exists());
}

/// Concurrent batches may be merged into one statement; an overflowing one still fails alone
/// and every other batch is applied exactly once.
#[test]
fn concurrent_batches_fail_and_succeed_independently() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let mut options = PostgresOptions::new(&db.dsn, 4);
    options.retry_delays = vec![];
    let store = PostgresStore::open(&options).unwrap();
    let c = |name: &str, delta| Update::Counter {
        name: name.into(),
        delta,
    };
    store
        .update(&c("max", i64::MAX), None)
        .and_then(Written::wait)
        .unwrap();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let mut items = vec![c("shared", 1), c(&format!("own{t}"), 1)];
                    let overflowing = t % 4 == 0 && i % 5 == 0;
                    if overflowing {
                        items.push(c("max", 1));
                    }
                    let result = store
                        .apply(&Batch::aggregate(items).unwrap(), None)
                        .and_then(Written::wait);
                    if overflowing {
                        assert_eq!(result, Err(StoreError::Overflow { name: "max".into() }));
                    } else {
                        assert_eq!(result, Ok(()));
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    // 4 threads had 4 of their 20 batches rejected.
    assert_eq!(
        store.get(MetricKind::Counter, "shared"),
        Ok(Some(Value::Counter(16 * 20 - 4 * 4)))
    );
    for t in 0..16 {
        let expected = if t % 4 == 0 { 16 } else { 20 };
        assert_eq!(
            store.get(MetricKind::Counter, &format!("own{t}")),
            Ok(Some(Value::Counter(expected))),
            "own{t}"
        );
    }
    assert_eq!(
        store.get(MetricKind::Counter, "max"),
        Ok(Some(Value::Counter(i64::MAX)))
    );
}
