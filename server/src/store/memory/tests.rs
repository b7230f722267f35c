//! The memory store's tests: writes, durability modes, snapshots, idempotency keys and their
//! crash consistency, and sync mode's fail-fast.

use super::*;
use std::path::Path;

fn options(dir: &Path, interval: Duration, restore: bool) -> SnapshotOptions {
    SnapshotOptions {
        path: dir.join("db.json"),
        interval,
        restore,
        keys: KeyOptions::default(),
        max_metrics: MaxMetrics::DEFAULT,
    }
}

#[test]
fn overflow_rejects_the_whole_batch() {
    let store = MemoryStore::ephemeral();
    store
        .update(
            &Update::Counter {
                name: "c".into(),
                delta: i64::MAX,
            },
            None,
        )
        .unwrap()
        .wait()
        .unwrap();
    let batch = Batch::aggregate([
        Update::Gauge {
            name: "g".into(),
            value: 1.0,
        },
        Update::Counter {
            name: "c".into(),
            delta: 1,
        },
    ])
    .unwrap();
    assert_eq!(
        store.apply(&batch, None).and_then(Written::wait),
        Err(StoreError::Overflow { name: "c".into() })
    );
    assert_eq!(store.get(MetricKind::Gauge, "g"), Ok(None));
    assert_eq!(
        store.get(MetricKind::Counter, "c"),
        Ok(Some(Value::Counter(i64::MAX)))
    );
}

#[test]
fn gauge_and_counter_share_a_name() {
    let store = MemoryStore::ephemeral();
    store
        .update(
            &Update::Gauge {
                name: "x".into(),
                value: 2.5,
            },
            None,
        )
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        store
            .update(
                &Update::Counter {
                    name: "x".into(),
                    delta: 3
                },
                None
            )
            .and_then(Written::wait),
        Ok(Value::Counter(3))
    );
    assert_eq!(
        store
            .update(
                &Update::Counter {
                    name: "x".into(),
                    delta: 4
                },
                None
            )
            .and_then(Written::wait),
        Ok(Value::Counter(7))
    );
    assert_eq!(
        store.get(MetricKind::Gauge, "x"),
        Ok(Some(Value::Gauge(2.5)))
    );
}

#[test]
fn sync_mode_is_durable_on_return() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::open(options(dir.path(), Duration::ZERO, false)).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    store
                        .update(
                            &Update::Counter {
                                name: format!("c{t}"),
                                delta: 1,
                            },
                            None,
                        )
                        .and_then(Written::wait)
                        .unwrap();
                    // Acknowledged means on disk: the file holds at least this total.
                    let on_disk =
                        snapshot::decode(&std::fs::read(dir_path(&store)).unwrap()).unwrap();
                    let total = on_disk.iter().find_map(|u| match u {
                        Update::Counter { name, delta } if *name == format!("c{t}") => Some(*delta),
                        _ => None,
                    });
                    assert!(total.unwrap() > i);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    store.close().unwrap();
}

fn dir_path(store: &MemoryStore) -> PathBuf {
    store.file().expect("a snapshot file").path().to_owned()
}

/// What the acknowledgement handed to a write's ticket receives.
fn ack_of(written: Written<Value>) -> Result<(), StoreError> {
    let Durable::After(ticket) = written.durable else {
        panic!("a sync-mode write returns a ticket");
    };
    let (tx, rx) = std::sync::mpsc::channel();
    ticket.on_durable(move |outcome| {
        tx.send(outcome).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("acknowledged")
}

fn counter_on_disk(path: &Path, name: &str) -> Option<i64> {
    let on_disk = snapshot::decode(&std::fs::read(path).ok()?).ok()?;
    on_disk.iter().find_map(|u| match u {
        Update::Counter { name: n, delta } if n == name => Some(*delta),
        _ => None,
    })
}

#[test]
fn sync_writes_are_acknowledged_only_once_on_disk_or_with_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("d");
    std::fs::create_dir(&sub).unwrap();
    let store = MemoryStore::open(options(&sub, Duration::ZERO, false)).unwrap();
    let write = |delta| {
        store
            .update(
                &Update::Counter {
                    name: "c".into(),
                    delta,
                },
                None,
            )
            .unwrap()
    };
    // Applied at once (readable), acknowledged once the file holds it.
    let w1 = write(5);
    assert_eq!(w1.value, Value::Counter(5));
    assert_eq!(
        store.get(MetricKind::Counter, "c").unwrap(),
        Some(Value::Counter(5))
    );
    assert_eq!(ack_of(w1), Ok(()));
    assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(5));
    // A write that applies nothing (an overflow) returns no ticket: it is an error.
    assert!(
        store
            .update(
                &Update::Counter {
                    name: "c".into(),
                    delta: i64::MAX,
                },
                None
            )
            .is_err()
    );
    // A snapshot that cannot be written: the acknowledgement carries the error.
    std::fs::remove_dir_all(&sub).unwrap();
    match ack_of(write(1)) {
        Err(StoreError::Unavailable(why)) => assert!(why.contains("snapshot"), "{why}"),
        other => panic!("{other:?}"),
    }
    // The disk is back: the snapshot thread's next attempt makes the write in doubt durable,
    // and writes are accepted again (refused meanwhile: see the fail-fast test below).
    std::fs::create_dir(&sub).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.ping().is_err() {
        assert!(Instant::now() < deadline, "no snapshot succeeded again");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(6));
    assert_eq!(ack_of(write(1)), Ok(()));
    assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(7));
    // A caller without a reply to hand over waits on the ticket.
    assert_eq!(write(1).wait(), Ok(Value::Counter(8)));
    assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(8));
    store.close().unwrap();
}

#[test]
fn periodic_and_ephemeral_writes_are_durable_now() {
    let dir = tempfile::tempdir().unwrap();
    let periodic =
        MemoryStore::open(options(dir.path(), Duration::from_secs(3600), false)).unwrap();
    for store in [periodic.clone(), MemoryStore::ephemeral()] {
        let written = store
            .apply(
                &Batch::from(&Update::Gauge {
                    name: "g".into(),
                    value: 1.0,
                }),
                None,
            )
            .unwrap();
        assert!(matches!(written.durable, Durable::Now));
    }
    periodic.close().unwrap();
}

#[test]
fn periodic_snapshots_follow_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::open(options(dir.path(), Duration::from_millis(50), false)).unwrap();
    store
        .update(
            &Update::Counter {
                name: "c".into(),
                delta: 3,
            },
            None,
        )
        .unwrap()
        .wait()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter_on_disk(&dir_path(&store), "c") != Some(3) {
        assert!(Instant::now() < deadline, "no periodic snapshot");
        std::thread::sleep(Duration::from_millis(10));
    }
    store.close().unwrap();
}

#[test]
fn close_writes_and_restore_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::open(options(dir.path(), Duration::from_secs(3600), false)).unwrap();
    store
        .update(
            &Update::Gauge {
                name: "g".into(),
                value: 0.1,
            },
            None,
        )
        .unwrap()
        .wait()
        .unwrap();
    store
        .update(
            &Update::Counter {
                name: "g".into(),
                delta: 5,
            },
            None,
        )
        .unwrap()
        .wait()
        .unwrap();
    store.close().unwrap();
    let again = MemoryStore::open(options(dir.path(), Duration::from_secs(3600), true)).unwrap();
    assert_eq!(
        again.get(MetricKind::Gauge, "g"),
        Ok(Some(Value::Gauge(0.1)))
    );
    assert_eq!(
        again.get(MetricKind::Counter, "g"),
        Ok(Some(Value::Counter(5)))
    );
    again.close().unwrap();
}

fn counter(name: &str, delta: i64) -> Update {
    Update::Counter {
        name: name.into(),
        delta,
    }
}

fn key(text: &str, body: &[u8]) -> Key {
    Key::new(text, "updates", "/updates/", body)
}

fn total(store: &MemoryStore, name: &str) -> Option<i64> {
    match store.get(MetricKind::Counter, name).unwrap() {
        Some(Value::Counter(v)) => Some(v),
        None => None,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_key_applies_once_and_repeats_get_the_first_result() {
    let store = MemoryStore::ephemeral();
    let k = key("agent:1", b"+5");
    let first = store.update(&counter("c", 5), Some(&k)).unwrap();
    assert_eq!((first.value, first.repeat), (Value::Counter(5), false));
    store
        .update(&counter("c", 1), None)
        .unwrap()
        .wait()
        .unwrap();
    // The repeat applies nothing and answers with the total the first write left.
    let again = store.update(&counter("c", 5), Some(&k)).unwrap();
    assert_eq!((again.value, again.repeat), (Value::Counter(5), true));
    assert_eq!(total(&store, "c"), Some(6));
    // The same key with another request: refused, nothing applied.
    assert_eq!(
        store
            .update(&counter("c", 5), Some(&key("agent:1", b"other")))
            .err(),
        Some(StoreError::KeyReused {
            key: "agent:1".into()
        })
    );
    assert_eq!(total(&store, "c"), Some(6));
    // Batches, empty ones included: the key is recorded either way.
    let batch = Batch::aggregate([counter("c", 2), counter("d", 3)]).unwrap();
    let kb = key("agent:2", b"batch");
    assert!(!store.apply(&batch, Some(&kb)).unwrap().repeat);
    assert!(store.apply(&batch, Some(&kb)).unwrap().repeat);
    assert_eq!((total(&store, "c"), total(&store, "d")), (Some(8), Some(3)));
    let empty = key("agent:3", b"[]");
    assert!(!store.apply(&Batch::default(), Some(&empty)).unwrap().repeat);
    assert!(matches!(
        store.apply(&batch, Some(&key("agent:3", b"not empty"))),
        Err(StoreError::KeyReused { .. })
    ));
}

#[test]
fn keys_are_restored_with_the_snapshot_they_belong_to() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::open(options(dir.path(), Duration::ZERO, false)).unwrap();
    let k = key("a:1", b"x");
    assert_eq!(
        ack_of(store.update(&counter("c", 4), Some(&k)).unwrap()),
        Ok(())
    );
    store.close().unwrap();
    let again = MemoryStore::open(options(dir.path(), Duration::ZERO, true)).unwrap();
    let repeat = again.update(&counter("c", 4), Some(&k)).unwrap();
    assert_eq!((repeat.value, repeat.repeat), (Value::Counter(4), true));
    // A restored key is durable: its repeat is acknowledged at once.
    assert!(matches!(repeat.durable, Durable::Now) || ack_of(repeat) == Ok(()));
    assert_eq!(total(&again, "c"), Some(4));
    again.close().unwrap();
    // One key log beside the snapshot, and no temporary file.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["db.json", "db.json.keys"]);
}

/// The files of a directory: `(name, bytes)`, sorted by name.
type Files = Vec<(String, Vec<u8>)>;

/// Every moment a `kill -9` can hit a snapshot write, rebuilt from the files two successive
/// snapshots leave (the key log only grows between them): whatever is restored, retrying both
/// keyed writes gives the exact total.
#[test]
fn every_crash_point_of_a_snapshot_write_restores_consistent_keys() {
    let dir = tempfile::tempdir().unwrap();
    let files = |d: &Path| -> Files {
        let mut files: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let (k1, k2) = (key("a:1", b"+1"), key("a:2", b"+2"));
    let store = MemoryStore::open(options(dir.path(), Duration::ZERO, false)).unwrap();
    assert_eq!(
        ack_of(store.update(&counter("c", 1), Some(&k1)).unwrap()),
        Ok(())
    );
    let a = files(dir.path());
    assert_eq!(
        ack_of(store.update(&counter("c", 2), Some(&k2)).unwrap()),
        Ok(())
    );
    let b = files(dir.path());
    store.close().unwrap();
    let snapshot_of = |set: &Files| {
        set.iter()
            .find(|(n, _)| n == "db.json")
            .expect("a snapshot")
            .1
            .clone()
    };
    let log_of = |set: &Files| {
        set.iter()
            .find(|(n, _)| n == "db.json.keys")
            .expect("a key log")
            .1
            .clone()
    };
    let with = |snapshot: Vec<u8>, log: Vec<u8>| -> Files {
        vec![
            ("db.json".to_owned(), snapshot),
            ("db.json.keys".to_owned(), log),
        ]
    };
    let (log_a, log_b) = (log_of(&a), log_of(&b));
    assert!(
        log_b.starts_with(&log_a),
        "the second snapshot appended to the log"
    );
    let torn = log_b[..log_a.len() + (log_b.len() - log_a.len()) / 2].to_vec();
    let crash_points: [(&str, Files); 4] = [
        ("before the new record", a.clone()),
        (
            "in the middle of the record's append",
            with(snapshot_of(&a), torn),
        ),
        (
            "record appended, old snapshot",
            with(snapshot_of(&a), log_b.clone()),
        ),
        ("new snapshot in place", b.clone()),
    ];
    for (moment, set) in crash_points {
        let crashed = tempfile::tempdir().unwrap();
        for (name, bytes) in &set {
            std::fs::write(crashed.path().join(name), bytes).unwrap();
        }
        let store = MemoryStore::open(options(crashed.path(), Duration::ZERO, true)).unwrap();
        // The client retries both writes, not knowing which were acknowledged.
        for (k, delta) in [(&k1, 1), (&k2, 2)] {
            assert_eq!(
                ack_of(store.update(&counter("c", delta), Some(k)).unwrap()),
                Ok(()),
                "{moment}"
            );
        }
        assert_eq!(total(&store, "c"), Some(3), "{moment}");
        store.close().unwrap();
    }
}

#[test]
fn sync_mode_refuses_writes_while_snapshots_fail_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("d");
    std::fs::create_dir(&sub).unwrap();
    let store = MemoryStore::open(options(&sub, Duration::ZERO, false)).unwrap();
    let (k1, k2, k3) = (key("a:1", b"1"), key("a:2", b"2"), key("a:3", b"3"));
    assert_eq!(
        ack_of(store.update(&counter("c", 1), Some(&k1)).unwrap()),
        Ok(())
    );
    // The disk goes away: the write is applied in memory but in doubt (503).
    std::fs::remove_dir_all(&sub).unwrap();
    assert!(matches!(
        ack_of(store.update(&counter("c", 10), Some(&k2)).unwrap()),
        Err(StoreError::Unavailable(_))
    ));
    // From now on writes are refused before they are applied, and /ping fails.
    match store.update(&counter("c", 100), Some(&k3)) {
        Err(StoreError::Unavailable(why)) => {
            assert!(why.contains("nothing was applied"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(store.apply(&Batch::default(), None).is_err());
    assert_eq!(
        total(&store, "c"),
        Some(11),
        "only the write in doubt is applied"
    );
    assert!(store.ping().is_err());
    // The disk is back: the next attempt (one a second) succeeds and writes are accepted.
    std::fs::create_dir(&sub).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.ping().is_err() {
        assert!(Instant::now() < deadline, "no snapshot succeeded again");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The retries of the client: the write in doubt is a repeat, the refused one is new.
    let repeat = store.update(&counter("c", 10), Some(&k2)).unwrap();
    assert!(repeat.repeat);
    assert_eq!(ack_of(repeat), Ok(()));
    assert_eq!(
        ack_of(store.update(&counter("c", 100), Some(&k3)).unwrap()),
        Ok(())
    );
    assert_eq!(total(&store, "c"), Some(111));
    assert_eq!(counter_on_disk(&dir_path(&store), "c"), Some(111));
    store.close().unwrap();
}

mod interleavings {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Any interleaving of duplicated, delayed and reordered deliveries of keyed batches
        /// (each delivered at least once) gives the totals of applying each batch once.
        #[test]
        fn duplicated_and_reordered_deliveries_count_once(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u8..4, -50i64..50), 0..6), 1..12),
            extra in proptest::collection::vec(any::<proptest::sample::Index>(), 0..24),
            order in any::<u64>(),
        ) {
            let store = MemoryStore::ephemeral();
            let keyed: Vec<(Key, Batch)> = batches.iter().enumerate().map(|(i, items)| {
                let updates = items.iter().map(|&(n, d)| counter(&format!("c{n}"), d));
                let body = format!("{items:?}");
                (key(&format!("agent:{i}"), body.as_bytes()), Batch::aggregate(updates).unwrap())
            }).collect();
            // Every batch once, plus duplicates, in a shuffled order.
            let mut deliveries: Vec<usize> = (0..keyed.len()).collect();
            deliveries.extend(extra.iter().map(|ix| ix.index(keyed.len())));
            let mut rng = order;
            for i in (1..deliveries.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                deliveries.swap(i, (rng >> 33) as usize % (i + 1));
            }
            let mut first = vec![true; keyed.len()];
            for i in deliveries {
                let (k, batch) = &keyed[i];
                let written = store.apply(batch, Some(k)).unwrap();
                prop_assert_eq!(written.repeat, !std::mem::replace(&mut first[i], false));
            }
            let mut expected: BTreeMap<String, i64> = BTreeMap::new();
            for items in &batches {
                for &(n, d) in items {
                    *expected.entry(format!("c{n}")).or_default() += d;
                }
            }
            let stored: BTreeMap<String, i64> = store.read_all().unwrap().counters.into_iter().map(|(n, v, _)| (n, v)).collect();
            prop_assert_eq!(stored, expected);
        }
    }
}

#[test]
fn the_key_log_grows_by_the_new_keys_only_and_not_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("db.json.keys");
    let key_files = || usize::from(log.exists());
    let store = MemoryStore::open(options(dir.path(), Duration::ZERO, false)).unwrap();
    assert_eq!(
        ack_of(store.update(&counter("c", 1), None).unwrap()),
        Ok(())
    );
    assert_eq!(key_files(), 0, "unkeyed writes pay for no key log");
    assert_eq!(
        ack_of(
            store
                .update(&counter("c", 1), Some(&key("k", b"")))
                .unwrap()
        ),
        Ok(())
    );
    assert_eq!(key_files(), 1);
    // Every later snapshot appends only the keys applied since the one before.
    let sizes: Vec<u64> = (0..3u8)
        .map(|i| {
            let k = key(&format!("n:{i}"), b"");
            assert_eq!(
                ack_of(store.update(&counter("c", 1), Some(&k)).unwrap()),
                Ok(())
            );
            std::fs::metadata(&log).unwrap().len()
        })
        .collect();
    assert_eq!(sizes[1] - sizes[0], sizes[2] - sizes[1], "{sizes:?}");
    store.close().unwrap();
}

fn gauge(name: &str, value: f64) -> Update {
    Update::Gauge {
        name: name.into(),
        value,
    }
}

fn batch(updates: &[Update]) -> Batch {
    Batch::aggregate(updates.iter().cloned()).unwrap()
}

/// `MAX_METRICS`: a write that would add a name past the limit is refused whole, with the
/// numbers, and records no key; writes to stored names pass; the types count separately.
#[test]
fn max_metrics_refuses_new_names_whole_and_records_no_key() {
    let store = MemoryStore::ephemeral_limited(KeyOptions::default(), MaxMetrics(3));
    let apply = |updates: &[Update], key: Option<&Key>| {
        store.apply(&batch(updates), key).and_then(Written::wait)
    };
    apply(
        &[gauge("g1", 1.0), gauge("g2", 2.0), counter("c1", 5)],
        None,
    )
    .unwrap();
    let refused = apply(
        &[
            gauge("g1", 9.0),
            gauge("g3", 3.0),
            gauge("g4", 4.0),
            counter("c1", 1),
        ],
        Some(&key("k", b"first")),
    );
    let full = StoreError::Full {
        kind: MetricKind::Gauge,
        limit: 3,
        stored: 2,
        adding: 2,
    };
    assert_eq!(refused, Err(full.clone()));
    assert_eq!(
        full.to_string(),
        "MAX_METRICS is 3 gauges: 2 are stored and this write would add 2 new gauge names; nothing was applied (writes to stored gauges still pass)"
    );
    // Nothing of it was applied.
    assert_eq!(
        store.get(MetricKind::Gauge, "g1"),
        Ok(Some(Value::Gauge(1.0)))
    );
    assert_eq!(store.get(MetricKind::Gauge, "g3"), Ok(None));
    assert_eq!(
        store.get(MetricKind::Counter, "c1"),
        Ok(Some(Value::Counter(5)))
    );
    // The key was not recorded: used again with another request it applies (no 422).
    let written = store
        .apply(&batch(&[gauge("g3", 3.0)]), Some(&key("k", b"second")))
        .unwrap();
    assert!(!written.repeat);
    written.wait().unwrap();
    assert_eq!(store.count(), Ok((3, 1)));
    // At the limit: stored names still take writes, single and batched; a new one is refused.
    let g1 = store.update(&gauge("g1", 7.5), None).unwrap().wait();
    assert_eq!(g1, Ok(Value::Gauge(7.5)));
    apply(
        &[gauge("g2", 0.5), gauge("g3", -1.0), counter("c1", 1)],
        None,
    )
    .unwrap();
    assert_eq!(
        store
            .update(&gauge("g4", 1.0), Some(&key("single", b"")))
            .map(|w| w.value),
        Err(StoreError::Full {
            kind: MetricKind::Gauge,
            limit: 3,
            stored: 3,
            adding: 1
        })
    );
    // Counters are counted on their own: two more fit, a third does not.
    apply(&[counter("c2", 1), counter("c3", 1)], None).unwrap();
    assert_eq!(
        store.update(&counter("c4", 1), None).map(|w| w.value),
        Err(StoreError::Full {
            kind: MetricKind::Counter,
            limit: 3,
            stored: 3,
            adding: 1
        })
    );
    assert_eq!(store.count(), Ok((3, 3)));
    assert_eq!(
        store.get(MetricKind::Counter, "c1"),
        Ok(Some(Value::Counter(6)))
    );
}

/// A snapshot holding more than `MAX_METRICS` (the limit was lowered) is restored whole; its
/// names keep taking writes, new names are refused.
#[test]
fn a_snapshot_over_the_limit_is_kept_and_new_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::open(options(dir.path(), Duration::from_secs(3600), false)).unwrap();
    store
        .apply(
            &batch(&[gauge("a", 1.0), gauge("b", 2.0), gauge("c", 3.0)]),
            None,
        )
        .unwrap()
        .wait()
        .unwrap();
    store.close().unwrap();
    let lowered = SnapshotOptions {
        max_metrics: MaxMetrics(2),
        ..options(dir.path(), Duration::from_secs(3600), true)
    };
    let store = MemoryStore::open(lowered).unwrap();
    assert_eq!(store.count(), Ok((3, 0)));
    store
        .update(&gauge("c", 30.0), None)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        store.get(MetricKind::Gauge, "c"),
        Ok(Some(Value::Gauge(30.0)))
    );
    assert!(matches!(
        store.update(&gauge("d", 1.0), None).map(|w| w.value),
        Err(StoreError::Full {
            limit: 2,
            stored: 3,
            adding: 1,
            ..
        })
    ));
    store.close().unwrap();
}
