//! The memory store's snapshot file (docs/storage.md): periodic and synchronous snapshots, restore of
//! the original's format, missing/empty/corrupt files, the final snapshot on SIGTERM, and crash
//! safety under `kill -9`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use std::net::SocketAddr;
use std::thread::JoinHandle;

use golectra_testkit::{ServerProcess, eventually};

fn read_snapshot(path: &std::path::Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "snapshot is not valid JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// `(type, id) -> value or delta` of a snapshot file.
fn snapshot_map(path: &std::path::Path) -> HashMap<(String, String), f64> {
    read_snapshot(path)
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|m| {
            let kind = m["type"].as_str().unwrap().to_owned();
            let value = if kind == "gauge" {
                m["value"].as_f64().unwrap()
            } else {
                m["delta"].as_i64().unwrap() as f64
            };
            ((kind, m["id"].as_str().unwrap().to_owned()), value)
        })
        .collect()
}

#[test]
fn periodic_snapshot_matches_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-i", "1"], &[]);
    let c = server.client();
    c.post("/update/gauge/g/2.5", b"");
    c.post("/update/counter/c/3", b"");
    c.post("/update/counter/g/1", b"");
    let path = dir.path().join("metrics-db.json");
    eventually(Duration::from_secs(10), || path.exists().then_some(()))
        .expect("timed out waiting for the periodic snapshot");
    let map = snapshot_map(&path);
    assert_eq!(map.len(), 3);
    assert_eq!(map[&("gauge".into(), "g".into())], 2.5);
    assert_eq!(map[&("counter".into(), "c".into())], 3.0);
    assert_eq!(map[&("counter".into(), "g".into())], 1.0);
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn restores_the_originals_format_and_writes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics-db.json");
    // As written by the Go original (note the optional "hash" field and integral gauge values).
    std::fs::write(
        &path,
        r#"[{"id":"Alloc","type":"gauge","value":12345},{"id":"PollCount","type":"counter","delta":42,"hash":""},{"id":"RandomValue","type":"gauge","value":0.123}]"#,
    )
    .unwrap();
    let server = ServerProcess::start(dir.path(), &["-r"], &[]);
    let c = server.client();
    assert_eq!(c.get("/value/gauge/Alloc").text(), "12345");
    assert_eq!(c.get("/value/counter/PollCount").text(), "42");
    c.post("/update/counter/PollCount/1", b"");
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    // Written back as an array of {"id","type","value"|"delta"} the original reads, plus the
    // last-write time "updated" (Unix ms), which the original's loader ignores.
    let written = read_snapshot(&path);
    for m in written.as_array().unwrap() {
        let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(
            keys == ["delta", "id", "type", "updated"]
                || keys == ["id", "type", "updated", "value"],
            "{m}"
        );
        assert!(
            m["updated"]
                .as_u64()
                .is_some_and(|ms| ms > 1_700_000_000_000),
            "{m}"
        );
    }
    assert_eq!(
        snapshot_map(&path)[&("counter".into(), "PollCount".into())],
        43.0
    );
}

#[test]
fn missing_and_empty_files_start_empty() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-r", "-f", "absent.json"], &[]);
    assert_eq!(
        server.client().get("/api/v1/snapshot").json(),
        serde_json::json!({"gauges":{},"counters":{}})
    );
    drop(server);
    std::fs::write(dir.path().join("empty.json"), "").unwrap();
    let server = ServerProcess::start(dir.path(), &["-r=true", "-f", "empty.json"], &[]);
    assert_eq!(
        server.client().get("/api/v1/snapshot").json(),
        serde_json::json!({"gauges":{},"counters":{}})
    );
}

#[test]
fn corrupt_file_is_moved_aside_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("metrics-db.json"),
        r#"[{"id":"Alloc","type":"gauge","val"#,
    )
    .unwrap();
    let server = ServerProcess::start(dir.path(), &["-r"], &[]);
    assert_eq!(server.client().get("/ping").status, 200);
    let log = server.log();
    assert!(log.contains("ERROR") && log.contains("corrupt"), "{log}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("metrics-db.json.corrupt-")),
        "{names:?}"
    );
}

#[test]
fn sigterm_writes_a_final_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-i", "1h"], &[]);
    let c = server.client();
    c.post_json(
        "/updates",
        r#"[{"id":"a","type":"counter","delta":5},{"id":"b","type":"gauge","value":-1.25}]"#,
    );
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("final snapshot"), "{log}");
    let map = snapshot_map(&dir.path().join("metrics-db.json"));
    assert_eq!(map[&("counter".into(), "a".into())], 5.0);
    assert_eq!(map[&("gauge".into(), "b".into())], -1.25);
}

/// Hammers a server from several threads until told to stop or the server dies; counts the
/// acknowledged counter increments per thread (counter `t{n}`), and writes many gauges so each
/// snapshot takes a while to write.
fn hammer(
    addr: SocketAddr,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<JoinHandle<()>>, Arc<Vec<AtomicU64>>) {
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..threads).map(|_| AtomicU64::new(0)).collect());
    let handles = (0..threads)
        .map(|t| {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(5)))
                    .build()
                    .into();
                let url = format!("http://{addr}/updates");
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let mut body = format!(r#"[{{"id":"t{t}","type":"counter","delta":1}}"#);
                    for k in 0..20 {
                        body.push_str(&format!(
                            r#",{{"id":"gauge_{t}_{}","type":"gauge","value":{i}}}"#,
                            (i * 20 + k) % 2000
                        ));
                    }
                    body.push(']');
                    match agent.post(&url).send(body.as_bytes()) {
                        Ok(r) if r.status() == 200 => {
                            acked[t].fetch_add(1, Ordering::SeqCst);
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    (handles, acked)
}

/// A pseudo-random delay in `0..max_ms` milliseconds (no RNG dependency needed).
fn jitter(round: u64, max_ms: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis((nanos ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % max_ms)
}

/// Hammers `server` from 4 threads and `kill -9`s it at a random moment (up to `max_jitter_ms`)
/// once writes are being acknowledged (a loaded machine may take a while to answer the first
/// one). Returns the acknowledged increments per thread.
fn hammer_then_kill9(server: ServerProcess, round: u64, max_jitter_ms: u64) -> Arc<Vec<AtomicU64>> {
    let stop = Arc::new(AtomicBool::new(false));
    let (handles, acked) = hammer(server.addr, 4, stop.clone());
    eventually(Duration::from_secs(30), || {
        acked
            .iter()
            .any(|a| a.load(Ordering::SeqCst) > 0)
            .then_some(())
    })
    .expect("timed out waiting for a first acknowledged write");
    // A deliberate gap, not a wait: the kill lands at a random moment of the hammering.
    std::thread::sleep(jitter(round, max_jitter_ms));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    handles.into_iter().for_each(|h| h.join().unwrap());
    acked
}

#[test]
fn kill_9_never_leaves_an_unreadable_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics-db.json");
    let mut previous_total = 0i64;
    for round in 0..50u64 {
        // Snapshots every 10 ms while 4 threads write; kill -9 at a random moment.
        let server = ServerProcess::start(dir.path(), &["-r", "-i", "10ms"], &[]);
        let _ = hammer_then_kill9(server, round, 120);
        if path.exists() {
            let map = snapshot_map(&path);
            let total: i64 = map
                .iter()
                .filter(|((k, _), _)| k == "counter")
                .map(|(_, v)| *v as i64)
                .sum();
            assert!(
                total >= previous_total,
                "round {round}: snapshot went back in time ({total} < {previous_total})"
            );
            previous_total = total;
        }
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("corrupt"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "round {round}: a snapshot was found corrupt: {leftovers:?}"
        );
    }
    assert!(previous_total > 0, "no snapshot was ever written");
}

#[test]
fn sync_mode_keeps_every_acknowledged_write_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected_min = [0u64; 4];
    for round in 0..10u64 {
        let server = ServerProcess::start(dir.path(), &["-r", "-i", "0"], &[]);
        if round > 0 {
            // Everything acknowledged before the previous kill -9 is there.
            let snap = server.client().get("/api/v1/snapshot").json();
            for (t, min) in expected_min.iter_mut().enumerate() {
                let stored = snap["counters"][format!("t{t}")].as_u64().unwrap_or(0);
                assert!(
                    stored >= *min,
                    "round {round}: counter t{t} is {stored}, but {min} increments were acknowledged"
                );
                *min = stored;
            }
        }
        let acked = hammer_then_kill9(server, round, 150);
        for (t, min) in expected_min.iter_mut().enumerate() {
            *min += acked[t].load(Ordering::SeqCst);
        }
        assert!(
            acked.iter().map(|a| a.load(Ordering::SeqCst)).sum::<u64>() > 0,
            "round {round}: nothing was acknowledged"
        );
    }
    let server = ServerProcess::start(dir.path(), &["-r", "-i", "0"], &[]);
    let snap = server.client().get("/api/v1/snapshot").json();
    for (t, min) in expected_min.iter().enumerate() {
        assert!(snap["counters"][format!("t{t}")].as_u64().unwrap() >= *min);
    }
}
