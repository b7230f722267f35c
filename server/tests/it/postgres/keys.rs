//! Idempotency keys in the PostgreSQL store (docs/postgresql.md, "Idempotency keys"): repeats
//! apply nothing, a reused key is refused, concurrent writers of one key (two stores, like two
//! servers) apply it once, keyed batches share combiner rounds (also with the same key twice
//! in a round, and when a round overflows), keys expire after the retention whether pruned or
//! not, a connection broken after the commit is still exactly once, and the HTTP answers of
//! the real binary. Every test has its own database.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use golectra_common::metric::{MetricKind, Update};
use golectra_server::store::postgres::{PostgresOptions, PostgresStore};
use golectra_server::store::{Batch, Key, Store, StoreError, Value};
use golectra_testkit::{ServerProcess, TestDatabase, eventually, fresh_postgres_dsn};

fn c(name: &str, delta: i64) -> Update {
    Update::Counter {
        name: name.into(),
        delta,
    }
}

fn g(name: &str, value: f64) -> Update {
    Update::Gauge {
        name: name.into(),
        value,
    }
}

fn batch(items: Vec<Update>) -> Batch {
    Batch::aggregate(items).unwrap()
}

/// A batch key: the same `body` gives the same fingerprint.
fn key(text: &str, body: &str) -> Key {
    Key::new(text, "updates", "/updates/", body.as_bytes())
}

fn open(dsn: &str, pool: usize) -> Arc<PostgresStore> {
    let mut options = PostgresOptions::new(dsn, pool);
    options.retry_delays = vec![Duration::ZERO; 3];
    PostgresStore::open(&options).unwrap()
}

/// `Ok(repeat)` of a batch write.
fn apply(store: &PostgresStore, batch: &Batch, key: Option<&Key>) -> Result<bool, StoreError> {
    store.apply(batch, key).map(|w| {
        assert!(matches!(w.durable, golectra_server::store::Durable::Now));
        w.repeat
    })
}

/// `Ok((stored value, repeat))` of a single update.
fn update(
    store: &PostgresStore,
    u: &Update,
    key: Option<&Key>,
) -> Result<(Value, bool), StoreError> {
    store.update(u, key).map(|w| (w.value, w.repeat))
}

fn total(store: &PostgresStore, name: &str) -> Option<i64> {
    match store.get(MetricKind::Counter, name).unwrap() {
        Some(Value::Counter(n)) => Some(n),
        None => None,
        other => panic!("{name}: {other:?}"),
    }
}

fn scalar(db: &TestDatabase, sql: &str) -> i64 {
    db.connect().query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn a_keyed_batch_is_applied_once_and_a_reused_key_is_refused() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let store = open(&db.dsn, 2);
    let body = batch(vec![c("c", 2), g("g", 1.5)]);
    let k = key("agent:1", "[1]");
    assert_eq!(apply(&store, &body, Some(&k)), Ok(false));
    assert_eq!(apply(&store, &body, Some(&k)), Ok(true), "the repeat");
    assert_eq!(total(&store, "c"), Some(2));
    // The same key with another request: refused, nothing applied.
    let other = batch(vec![c("c", 100), c("new", 1)]);
    assert_eq!(
        apply(&store, &other, Some(&key("agent:1", "[2]"))),
        Err(StoreError::KeyReused {
            key: "agent:1".into()
        })
    );
    assert_eq!(total(&store, "c"), Some(2));
    assert_eq!(total(&store, "new"), None);
    // The row: the fingerprint, no single value.
    let row = db
        .connect()
        .query_one(
            "SELECT fingerprint, gauge, counter FROM golectra_idempotency_keys WHERE key = 'agent:1'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), k.fingerprint);
    assert_eq!(row.get::<_, Option<f64>>(1), None);
    assert_eq!(row.get::<_, Option<i64>>(2), None);
    // A keyed empty batch records its key.
    let empty = key("agent:2", "[]");
    assert_eq!(apply(&store, &Batch::default(), Some(&empty)), Ok(false));
    assert_eq!(apply(&store, &Batch::default(), Some(&empty)), Ok(true));
    assert_eq!(
        apply(&store, &body, Some(&key("agent:2", "[1]"))),
        Err(StoreError::KeyReused {
            key: "agent:2".into()
        })
    );
    assert_eq!(total(&store, "c"), Some(2));
}

#[test]
fn a_keyed_update_repeats_with_the_first_stored_value() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let store = open(&db.dsn, 2);
    let k = Key::new("u:1", "update-text", "/update/counter/c/5", b"");
    assert_eq!(
        update(&store, &c("c", 5), Some(&k)),
        Ok((Value::Counter(5), false))
    );
    update(&store, &c("c", 1), None).unwrap();
    assert_eq!(
        update(&store, &c("c", 5), Some(&k)),
        Ok((Value::Counter(5), true)),
        "the total the first write stored, not the current one"
    );
    assert_eq!(total(&store, "c"), Some(6));
    let other = Key::new("u:1", "update-text", "/update/counter/c/7", b"");
    assert_eq!(
        update(&store, &c("c", 7), Some(&other)),
        Err(StoreError::KeyReused { key: "u:1".into() })
    );
    assert_eq!(total(&store, "c"), Some(6));

    let k = Key::new("u:2", "update-text", "/update/gauge/g/1.5", b"");
    assert_eq!(
        update(&store, &g("g", 1.5), Some(&k)),
        Ok((Value::Gauge(1.5), false))
    );
    update(&store, &g("g", 2.5), None).unwrap();
    assert_eq!(
        update(&store, &g("g", 1.5), Some(&k)),
        Ok((Value::Gauge(1.5), true))
    );
    assert_eq!(
        store.get(MetricKind::Gauge, "g"),
        Ok(Some(Value::Gauge(2.5)))
    );
    // A batch key is another request for a single update (and the other way round).
    let batch_key = key("b:1", "[1]");
    apply(&store, &batch(vec![c("c", 1)]), Some(&batch_key)).unwrap();
    assert!(matches!(
        update(&store, &c("c", 1), Some(&batch_key)),
        Err(StoreError::KeyReused { .. })
    ));
    // An overflow records nothing: the same key fails again, and the counter is unchanged.
    update(&store, &c("max", i64::MAX), None).unwrap();
    let k = Key::new("u:3", "update-text", "/update/counter/max/1", b"");
    for _ in 0..2 {
        assert_eq!(
            update(&store, &c("max", 1), Some(&k)),
            Err(StoreError::Overflow { name: "max".into() })
        );
    }
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM golectra_idempotency_keys WHERE key = 'u:3'"
        ),
        0
    );
}

/// Threads on two stores (two pools, as two servers would have) send the same keys at the
/// same moment: each key is applied by exactly one of them, the others are repeats that get
/// the same answer.
#[test]
fn concurrent_writers_of_one_key_on_two_stores_apply_it_once() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let stores = [open(&db.dsn, 4), open(&db.dsn, 4)];
    let threads = 8;
    let keys = 25;
    let barrier = Arc::new(Barrier::new(threads));
    let applied = Arc::new(Mutex::new(vec![0; keys]));
    let answers = Arc::new(Mutex::new(vec![Vec::new(); keys]));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = stores[t % 2].clone();
            let (barrier, applied, answers) = (barrier.clone(), applied.clone(), answers.clone());
            thread::spawn(move || {
                for i in 0..keys {
                    barrier.wait();
                    // Even keys are batches, odd ones single updates.
                    let repeat = if i % 2 == 0 {
                        let body = batch(vec![c("shared", 1), c(&format!("k{i}"), 1)]);
                        apply(&store, &body, Some(&key(&format!("k{i}"), "same"))).unwrap()
                    } else {
                        let k = Key::new(&format!("k{i}"), "update-text", "/u", b"");
                        let (value, repeat) = update(&store, &c("single", 1), Some(&k)).unwrap();
                        answers.lock().unwrap()[i].push(value);
                        repeat
                    };
                    if !repeat {
                        applied.lock().unwrap()[i] += 1;
                    }
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(
        *applied.lock().unwrap(),
        vec![1; keys],
        "applications per key"
    );
    let store = &stores[0];
    assert_eq!(total(store, "shared"), Some(13));
    assert_eq!(total(store, "single"), Some(12));
    for (i, values) in answers.lock().unwrap().iter().enumerate() {
        if i % 2 == 1 {
            assert_eq!(values.len(), threads);
            assert!(values.iter().all(|v| *v == values[0]), "k{i}: {values:?}");
        }
    }
}

/// Blocks both group-commit flushers of `store` on a row lock, runs `queue` (which starts the
/// submitters that should share the next round, in order, and returns their threads), then
/// releases the lock. Returns how many rounds were committed (write tokens recorded).
fn in_one_round<T: Send + 'static>(
    db: &TestDatabase,
    store: &Arc<PostgresStore>,
    queue: impl FnOnce() -> Vec<thread::JoinHandle<T>>,
) -> (Vec<T>, i64) {
    apply(store, &batch(vec![c("blocker", 1)]), None).unwrap();
    let tokens = || scalar(db, "SELECT count(*) FROM golectra_applied_batches");
    let before = tokens();
    let mut admin = db.connect();
    let mut lock = admin.transaction().unwrap();
    lock.execute(
        "SELECT 1 FROM golectra_counters WHERE name = 'blocker' FOR UPDATE",
        &[],
    )
    .unwrap();
    let waiting = || {
        scalar(
            db,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
    };
    let mut blocked = Vec::new();
    for n in 1..=2 {
        let store = store.clone();
        blocked.push(thread::spawn(move || {
            apply(&store, &batch(vec![c("blocker", 1)]), None).unwrap();
        }));
        eventually(Duration::from_secs(30), || (waiting() == n).then_some(()))
            .expect("the flusher waits for the lock");
    }
    let queued = queue();
    // The submitters only have to reach the queue.
    thread::sleep(Duration::from_millis(1500));
    lock.commit().unwrap();
    blocked.into_iter().for_each(|t| t.join().unwrap());
    let results = queued.into_iter().map(|t| t.join().unwrap()).collect();
    (results, tokens() - before - 2)
}

/// Starts the batch writes `writes`, one after the other so that they queue in this order.
fn submit_in_order(
    store: &Arc<PostgresStore>,
    writes: Vec<(Batch, Option<Key>)>,
) -> Vec<thread::JoinHandle<Result<bool, StoreError>>> {
    writes
        .into_iter()
        .map(|(b, k)| {
            let store = store.clone();
            let handle = thread::spawn(move || apply(&store, &b, k.as_ref()));
            thread::sleep(Duration::from_millis(150));
            handle
        })
        .collect()
}

#[test]
fn keyed_batches_share_a_round_and_a_duplicate_key_in_it_is_applied_once() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let store = open(&db.dsn, 4);
    let (results, rounds) = in_one_round(&db, &store, || {
        submit_in_order(
            &store,
            vec![
                (batch(vec![c("c", 1), g("g", 1.0)]), Some(key("k1", "a"))),
                (batch(vec![c("c", 1), g("g", 1.0)]), Some(key("k1", "a"))),
                (batch(vec![c("c", 10), g("g", 2.0)]), Some(key("k2", "b"))),
                (batch(vec![c("c", 100)]), None),
                (batch(vec![c("c", 1000)]), Some(key("k1", "other"))),
            ],
        )
    });
    assert_eq!(
        results,
        [
            Ok(false),
            Ok(true),
            Ok(false),
            Ok(false),
            Err(StoreError::KeyReused { key: "k1".into() })
        ]
    );
    assert_eq!(
        rounds, 3,
        "one round for k1, k2 and the unkeyed batch; one per later duplicate"
    );
    assert_eq!(total(&store, "c"), Some(111));
    // The last gauge value by batch order.
    assert_eq!(
        store.get(MetricKind::Gauge, "g"),
        Ok(Some(Value::Gauge(2.0)))
    );
}

/// When a round holds a repeat (or its merged sums overflow in memory), the statement applies
/// the other batches from their own items, aggregated in SQL: still one round.
#[test]
fn a_round_with_a_repeat_or_an_unmergeable_sum_is_aggregated_in_sql() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let store = open(&db.dsn, 4);
    let first = batch(vec![c("c", 1000), g("g", 9.0)]);
    assert_eq!(apply(&store, &first, Some(&key("k0", "z"))), Ok(false));
    let (results, rounds) = in_one_round(&db, &store, || {
        submit_in_order(
            &store,
            vec![
                (first.clone(), Some(key("k0", "z"))),
                (batch(vec![c("c", 1), g("g", 3.0)]), Some(key("k3", "a"))),
                (batch(vec![c("c", 10), g("g", 4.0), g("h", 1.0)]), None),
                (batch(vec![c("c", 100), g("h", 2.0)]), Some(key("k4", "b"))),
            ],
        )
    });
    assert_eq!(results, [Ok(true), Ok(false), Ok(false), Ok(false)]);
    assert_eq!(rounds, 1);
    assert_eq!(total(&store, "c"), Some(1111));
    // The last value of the applied batches, by batch order.
    assert_eq!(
        store.get(MetricKind::Gauge, "g"),
        Ok(Some(Value::Gauge(4.0)))
    );
    assert_eq!(
        store.get(MetricKind::Gauge, "h"),
        Ok(Some(Value::Gauge(2.0)))
    );

    // MAX + 1 overflows when merged in order, but the round's sum fits.
    let (results, rounds) = in_one_round(&db, &store, || {
        submit_in_order(
            &store,
            vec![
                (batch(vec![c("x", i64::MAX)]), Some(key("k5", "a"))),
                (batch(vec![c("x", 1)]), Some(key("k6", "a"))),
                (batch(vec![c("x", -1)]), None),
            ],
        )
    });
    assert_eq!(results, [Ok(false), Ok(false), Ok(false)]);
    assert_eq!(rounds, 1);
    assert_eq!(total(&store, "x"), Some(i64::MAX));
}

#[test]
fn an_overflowing_round_falls_back_to_one_batch_at_a_time_with_keys() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let store = open(&db.dsn, 4);
    apply(&store, &batch(vec![c("max", i64::MAX)]), None).unwrap();
    let overflowing = || batch(vec![c("c", 1), c("max", 1)]);
    let (results, rounds) = in_one_round(&db, &store, || {
        submit_in_order(
            &store,
            vec![
                (batch(vec![c("c", 1)]), Some(key("k1", "a"))),
                (overflowing(), Some(key("k2", "b"))),
                (batch(vec![c("c", 1)]), None),
                (batch(vec![c("c", 1)]), Some(key("k1", "a"))),
            ],
        )
    });
    let overflow = Err(StoreError::Overflow { name: "max".into() });
    assert_eq!(results, [Ok(false), overflow.clone(), Ok(false), Ok(true)]);
    assert_eq!(
        rounds, 3,
        "k1 alone, the unkeyed batch alone, the duplicate"
    );
    assert_eq!(total(&store, "c"), Some(2));
    // The overflowing batch's key was not recorded: the same request fails again.
    assert_eq!(
        apply(&store, &overflowing(), Some(&key("k2", "b"))),
        overflow
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM golectra_idempotency_keys WHERE key = 'k2'"
        ),
        0
    );
    assert_eq!(
        apply(&store, &batch(vec![c("c", 1)]), Some(&key("k1", "a"))),
        Ok(true)
    );
    assert_eq!(total(&store, "c"), Some(2));
}

/// A key older than the retention counts as absent, also while its row is still in the table
/// (pruning runs only now and then).
#[test]
fn keys_expire_after_the_retention_whether_pruned_or_not() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let mut options = PostgresOptions::new(&db.dsn, 2);
    options.retry_delays = vec![];
    options.keys.retention = Duration::from_millis(1500);
    let store = PostgresStore::open(&options).unwrap();
    let body = batch(vec![c("c", 1)]);
    let k = key("e:1", "a");
    let single = Key::new("e:2", "update-text", "/u", b"");
    assert_eq!(apply(&store, &body, Some(&k)), Ok(false));
    assert_eq!(apply(&store, &body, Some(&k)), Ok(true));
    assert_eq!(
        update(&store, &c("s", 1), Some(&single)),
        Ok((Value::Counter(1), false))
    );
    thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM golectra_idempotency_keys"),
        2,
        "not pruned yet"
    );
    assert_eq!(
        apply(&store, &body, Some(&k)),
        Ok(false),
        "expired: applied again"
    );
    assert_eq!(apply(&store, &body, Some(&k)), Ok(true));
    assert_eq!(
        update(&store, &c("s", 1), Some(&single)),
        Ok((Value::Counter(2), false))
    );
    assert_eq!(total(&store, "c"), Some(2));
    // After another retention, even another request may use the key.
    thread::sleep(Duration::from_millis(1600));
    let other = batch(vec![c("c", 10)]);
    assert_eq!(apply(&store, &other, Some(&key("e:1", "b"))), Ok(false));
    assert_eq!(total(&store, "c"), Some(12));
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM golectra_idempotency_keys"),
        2
    );
}

/// A TCP proxy to the database that, once armed with a needle, forwards the client's packet
/// containing it, swallows the server's replies up to the end of that command
/// (ReadyForQuery, idle: the command completed and committed), and then closes both sides:
/// the write committed, but its reply never arrived.
struct CutProxy {
    port: u16,
    needle: Arc<Mutex<Option<Vec<u8>>>>,
    cuts: Arc<AtomicUsize>,
}

/// ReadyForQuery with status idle: no transaction open any more.
const READY_IDLE: &[u8] = b"Z\0\0\0\x05I";

impl CutProxy {
    fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let needle: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let cuts = Arc::new(AtomicUsize::new(0));
        let (n, k) = (needle.clone(), cuts.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect((upstream.0.as_str(), upstream.1)).unwrap();
                Self::relay(client, server, n.clone(), k.clone());
            }
        });
        Self { port, needle, cuts }
    }

    fn relay(
        client: TcpStream,
        server: TcpStream,
        needle: Arc<Mutex<Option<Vec<u8>>>>,
        cuts: Arc<AtomicUsize>,
    ) {
        let cutting = Arc::new(AtomicBool::new(false));
        let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let flag = cutting.clone();
        thread::spawn(move || {
            let mut buf = vec![0; 1 << 16];
            while let Ok(n @ 1..) = c_in.read(&mut buf) {
                let chunk = &buf[..n];
                let mut armed = needle.lock().unwrap();
                if armed
                    .as_ref()
                    .is_some_and(|x| chunk.windows(x.len()).any(|w| w == x.as_slice()))
                {
                    *armed = None;
                    flag.store(true, Ordering::SeqCst);
                }
                drop(armed);
                if s_out.write_all(chunk).is_err() {
                    break;
                }
            }
        });
        thread::spawn(move || {
            let (mut s_in, mut c_out) = (server, client);
            let mut buf = vec![0; 1 << 16];
            let mut swallowed = Vec::new();
            while let Ok(n @ 1..) = s_in.read(&mut buf) {
                if cutting.load(Ordering::SeqCst) {
                    swallowed.extend_from_slice(&buf[..n]);
                    if swallowed.windows(READY_IDLE.len()).any(|w| w == READY_IDLE) {
                        cuts.fetch_add(1, Ordering::SeqCst);
                        let _ = c_out.shutdown(Shutdown::Both);
                        let _ = s_in.shutdown(Shutdown::Both);
                        break;
                    }
                } else if c_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }

    fn arm(&self, needle: &[u8]) {
        *self.needle.lock().unwrap() = Some(needle.to_vec());
    }
}

/// The reply of a committed write is lost (the connection breaks right after the commit): the
/// store retries, finds that the write was applied, and answers it as applied — once.
#[test]
fn a_connection_broken_after_the_commit_is_still_exactly_once() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let config: postgres::Config = db.dsn.parse().unwrap();
    let Some(postgres::config::Host::Tcp(host)) = config.get_hosts().first().cloned() else {
        eprintln!("NOTE: the test database is not reached over TCP: this test is SKIPPED");
        return;
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let proxy = CutProxy::start((host, port));
    let mut dsn = format!(
        "host=127.0.0.1 port={} dbname={} user={}",
        proxy.port,
        config.get_dbname().unwrap(),
        config.get_user().unwrap_or("postgres")
    );
    if let Some(password) = config.get_password() {
        dsn.push_str(&format!(" password={}", String::from_utf8_lossy(password)));
    }
    let store = open(&dsn, 1);
    let cuts = || proxy.cuts.load(Ordering::SeqCst);

    // A keyed batch: its round statement committed, the retry finds its own key.
    let body = batch(vec![c("c", 1), g("g", 2.0)]);
    let k = key("cut-batch-3f9a", "a");
    proxy.arm(k.text.as_bytes());
    assert_eq!(
        apply(&store, &body, Some(&k)),
        Ok(false),
        "applied, not a repeat"
    );
    assert_eq!(cuts(), 1);
    assert_eq!(total(&store, "c"), Some(1));
    assert_eq!(apply(&store, &body, Some(&k)), Ok(true));

    // An unkeyed batch: the write token guards it.
    proxy.arm(b"cut-unkeyed-77c1");
    assert_eq!(
        apply(&store, &batch(vec![c("cut-unkeyed-77c1", 1)]), None),
        Ok(false)
    );
    assert_eq!(cuts(), 2);
    assert_eq!(total(&store, "cut-unkeyed-77c1"), Some(1));

    // A keyed counter update: its transaction's COMMIT went through.
    let k = Key::new("cut-update-1", "update-text", "/u", b"");
    proxy.arm(b"COMMIT");
    assert_eq!(
        update(&store, &c("u", 5), Some(&k)),
        Ok((Value::Counter(5), false))
    );
    assert_eq!(cuts(), 3);
    assert_eq!(
        update(&store, &c("u", 5), Some(&k)),
        Ok((Value::Counter(5), true))
    );
    assert_eq!(total(&store, "u"), Some(5));

    // A keyed gauge update: one statement.
    let k = Key::new("cut-gauge-9e2b", "update-text", "/g", b"");
    proxy.arm(k.text.as_bytes());
    assert_eq!(
        update(&store, &g("h", 0.5), Some(&k)),
        Ok((Value::Gauge(0.5), false))
    );
    assert_eq!(cuts(), 4);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM golectra_idempotency_keys"),
        3
    );
}

/// Through the real binary: a keyed `/updates` sent twice applies once and gets the same
/// answer; the key with another body is 422; keyed single updates answer the first total.
#[test]
fn http_keyed_writes_through_the_binary() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-d", &db.dsn], &[]);
    let client = server.client();
    let body =
        r#"[{"id":"hits","type":"counter","delta":3},{"id":"t","type":"gauge","value":1.5}]"#;
    let send = |key: &str, path: &str, body: &str| {
        client.request(
            "POST",
            path,
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            body.as_bytes(),
        )
    };
    let first = send("agent-7:1", "/updates/", body);
    assert_eq!(first.status, 200, "{}", first.text());
    let again = send("agent-7:1", "/updates/", body);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.body, first.body);
    let other = send("agent-7:1", "/updates/", &body.replace('3', "4"));
    assert_eq!(other.status, 422, "{}", other.text());
    assert!(other.text().contains("agent-7:1"), "{}", other.text());
    assert_eq!(client.get("/value/counter/hits").text(), "3");

    assert_eq!(send("u-1", "/update/counter/hits/2", "").text(), "ok");
    let json = r#"{"id":"hits","type":"counter","delta":10}"#;
    let first = send("u-2", "/update/", json);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["delta"], 15);
    assert_eq!(send("u-1", "/update/counter/hits/2", "").status, 200);
    let again = send("u-2", "/update/", json);
    assert_eq!(again.body, first.body, "the first total again");
    assert_eq!(client.get("/value/counter/hits").text(), "15");
    let metrics = client.get("/metrics").text();
    assert!(
        metrics.contains("golectra_idempotent_repeats_total 3"),
        "{metrics}"
    );
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
}
