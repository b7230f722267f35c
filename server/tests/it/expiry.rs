//! Last-write times and expiry (docs/storage.md, "Staleness and expiry"): each metric's time is
//! kept by both stores (the memory store's snapshot carries it across restarts, a file of the
//! original's counts as written when the file was), and an expiry pass removes gauges not
//! written within `METRIC_TTL` while counters stay unless `EXPIRE_COUNTERS`, in passes of
//! bounded size, logged and counted in `/metrics`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use golectra_server::expiry::{self, ExpiryOptions, ExpiryStats};
use golectra_server::store::{Cutoff, Store};
use golectra_testkit::{ServerProcess, eventually};

use crate::harness::{Backend, TestServer, backends};

const HOUR: Duration = Duration::from_secs(3600);

fn options(counters: bool) -> ExpiryOptions {
    ExpiryOptions {
        ttl: Some(HOUR),
        counters,
        ..ExpiryOptions::default()
    }
}

fn store(s: &TestServer) -> Arc<dyn Store> {
    s.server.as_ref().unwrap().store().clone()
}

fn write(s: &TestServer) {
    let body = r#"[
        {"id":"Alloc;host=gone","type":"gauge","value":1},
        {"id":"PollCount;host=gone","type":"counter","delta":7}
    ]"#;
    assert_eq!(s.client().post_json("/updates", body).status, 200);
}

#[test]
fn a_pass_removes_stale_gauges_and_keeps_counters_unless_asked() {
    for backend in backends() {
        let s = TestServer::start(backend);
        write(&s);
        let (store, stats) = (store(&s), ExpiryStats::default());
        let c = s.client();
        // Within the TTL: nothing goes.
        let now = SystemTime::now();
        let removed = expiry::pass(store.as_ref(), &options(false), &stats, now).unwrap();
        assert!(removed.is_empty(), "{backend:?}: {removed:?}");
        // Two hours on: the gauge goes, the counter stays.
        let later = now + 2 * HOUR;
        let removed = expiry::pass(store.as_ref(), &options(false), &stats, later).unwrap();
        assert_eq!(removed.gauges, ["Alloc;host=gone"], "{backend:?}");
        assert!(removed.counters.is_empty(), "{backend:?}");
        assert_eq!(c.get("/value/gauge/Alloc;host=gone").status, 404);
        assert_eq!(c.get("/value/counter/PollCount;host=gone").text(), "7");
        // With EXPIRE_COUNTERS the counter goes too.
        let removed = expiry::pass(store.as_ref(), &options(true), &stats, later).unwrap();
        assert_eq!(removed.counters, ["PollCount;host=gone"], "{backend:?}");
        assert_eq!(c.get("/value/counter/PollCount;host=gone").status, 404);
        // Counted: the families the server exports are fed by the same counters.
        let mut out = golectra_server::exposition::Exposition::with_room(4, 1024);
        stats.export(&mut out);
        let text = out.into_string();
        assert!(
            text.contains("golectra_metrics_expired_total{type=\"gauge\"} 1\n")
                && text.contains("golectra_metrics_expired_total{type=\"counter\"} 1\n"),
            "{text}"
        );
    }
}

#[test]
fn a_pass_removes_at_most_its_limit() {
    for backend in backends() {
        let s = TestServer::start(backend);
        let body: Vec<String> = (0..5)
            .map(|i| format!(r#"{{"id":"g{i}","type":"gauge","value":{i}}}"#))
            .collect();
        let body = format!("[{}]", body.join(","));
        assert_eq!(s.client().post_json("/updates", &body).status, 200);
        let cutoff = Cutoff {
            gauges: Some(SystemTime::now() + HOUR),
            counters: None,
            limit: 2,
        };
        let store = store(&s);
        let removed = store.expire(&cutoff).unwrap().wait().unwrap();
        assert_eq!(removed.gauges.len(), 2, "{backend:?}");
        assert_eq!(store.count().unwrap(), (3, 0), "{backend:?}");
        let removed = store
            .expire(&Cutoff {
                limit: 10,
                ..cutoff
            })
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(removed.gauges.len(), 3, "{backend:?}");
    }
}

/// The times a store reports, by name.
fn times(store: &dyn Store) -> Vec<(String, u128)> {
    let reading = store.read_all().unwrap();
    let ms = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis();
    reading
        .gauges
        .iter()
        .map(|(n, _, t)| (n.clone(), ms(*t)))
        .chain(reading.counters.iter().map(|(n, _, t)| (n.clone(), ms(*t))))
        .collect()
}

#[test]
fn the_memory_store_keeps_times_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics-db.json");
    let storage = |restore| golectra_server::config::Storage::Memory {
        path: path.clone(),
        interval: HOUR,
        restore,
    };
    let mut s = TestServer::start_with(Backend::Memory, |c| c.storage = storage(false));
    write(&s);
    let before = times(store(&s).as_ref());
    s.stop();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for entry in file.as_array().unwrap() {
        assert!(entry["updated"].as_u64().is_some(), "{entry}");
    }
    std::thread::sleep(Duration::from_millis(20));
    let s = TestServer::start_with(Backend::Memory, |c| c.storage = storage(true));
    assert_eq!(times(store(&s).as_ref()), before);
}

#[test]
fn postgresql_keeps_times_and_expires_by_them() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let s = TestServer::start(Backend::Postgres);
    write(&s);
    let dsn = &s.database.as_ref().unwrap().dsn;
    let mut db = postgres::Client::connect(dsn, postgres::NoTls).unwrap();
    db.batch_execute(
        "UPDATE golectra_gauges SET updated_at = now() - interval '2 hours';
         UPDATE golectra_counters SET updated_at = now() - interval '3 hours'",
    )
    .unwrap();
    let store = store(&s);
    let now = SystemTime::now();
    let ages: Vec<u64> = store
        .read_all()
        .unwrap()
        .gauges
        .iter()
        .map(|(_, _, t)| now.duration_since(*t).unwrap().as_secs())
        .collect();
    assert!(ages.iter().all(|a| (7190..7300).contains(a)), "{ages:?}");
    let stats = ExpiryStats::default();
    let removed = expiry::pass(store.as_ref(), &options(false), &stats, now).unwrap();
    assert_eq!(removed.gauges, ["Alloc;host=gone"]);
    assert!(removed.counters.is_empty());
    let (gauges, counters) = store.count().unwrap();
    assert_eq!((gauges, counters), (0, 1), "the trigger-kept count follows");
}

/// A snapshot whose entries carry old times (and one of the original's, without), restored by
/// the binary with `METRIC_TTL`: its first pass at start removes the stale gauge only.
#[test]
fn the_binary_expires_a_restored_stale_gauge_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let old = now_ms - 3 * 3_600_000;
    let snapshot = format!(
        r#"[{{"id":"Alloc;host=gone","type":"gauge","value":1,"updated":{old}}},
            {{"id":"Alloc;host=live","type":"gauge","value":2,"updated":{now_ms}}},
            {{"id":"Plain","type":"gauge","value":3}},
            {{"id":"PollCount;host=gone","type":"counter","delta":9,"updated":{old}}}]"#
    );
    std::fs::write(dir.path().join("metrics-db.json"), snapshot).unwrap();
    let mut server = ServerProcess::start(dir.path(), &["-r"], &[("METRIC_TTL", "1h")]);
    let c = server.client();
    eventually(Duration::from_secs(30), || {
        (c.get("/value/gauge/Alloc;host=gone").status == 404).then_some(())
    })
    .expect("the stale gauge expires at the first pass");
    assert_eq!(c.get("/value/gauge/Alloc;host=live").text(), "2");
    assert_eq!(
        c.get("/value/gauge/Plain").text(),
        "3",
        "the file's time: just now"
    );
    assert_eq!(c.get("/value/counter/PollCount;host=gone").text(), "9");
    let metrics = c.get("/metrics").text();
    assert!(
        metrics.contains("golectra_metrics_expired_total{type=\"gauge\"} 1\n"),
        "{metrics}"
    );
    server.daemon.wait_for_log(
        "expired 1 gauges and 0 counters not written for 1h",
        Duration::from_secs(10),
    );
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
}

#[test]
fn expiry_settings_are_checked() {
    for (env, says) in [
        (vec![("METRIC_TTL", "30s")], "METRIC_TTL"),
        (vec![("EXPIRE_COUNTERS", "true")], "needs METRIC_TTL"),
        (vec![("STALE_AFTER", "0")], "STALE_AFTER"),
        (vec![("ADMIN_TOKEN", "short")], "at least 16"),
        (
            vec![("ADMIN_TOKEN", "has a space in it ok")],
            "must not hold spaces",
        ),
    ] {
        let (code, _, err) = crate::harness::run_binary(&[], &env);
        assert_eq!(code, 2, "{env:?}: {err}");
        assert!(err.contains(says), "{env:?}: {err}");
        assert!(!err.contains("short\""), "the token is never echoed: {err}");
    }
}
