//! Idempotency keys over HTTP (docs/http-api.md, "Idempotency keys"), against every backend: a
//! keyed write applies once and its repeats get the first reply, a key reused with another
//! request is 422, bad keys are 400, unkeyed writes behave as the original's; and sync mode's
//! fail-fast, which makes the retries of writes in doubt exact.

use std::time::Duration;

use golectra_server::config::Storage;
use golectra_testkit::{Client, eventually};

use crate::harness::{Backend, TestServer, backends, gzip, keyed};

fn poll_count(c: &Client) -> String {
    c.get("/value/counter/PollCount").text()
}

const BATCH: &str =
    r#"[{"id":"PollCount","type":"counter","delta":5},{"id":"Alloc","type":"gauge","value":1.5}]"#;

#[test]
fn keyed_writes_apply_once_and_repeats_get_the_first_reply() {
    for backend in backends() {
        let s = TestServer::start(backend);
        let c = s.client();
        let first = keyed(&c, "/updates/", "agent-1:1", BATCH);
        assert_eq!(
            (first.status, first.text().as_str()),
            (200, r#"{"updated":2}"#)
        );
        for _ in 0..3 {
            let again = keyed(&c, "/updates/", "agent-1:1", BATCH);
            assert_eq!(
                (again.status, again.body.clone()),
                (200, first.body.clone()),
                "{backend:?}"
            );
        }
        // Gzip on the wire, the same uncompressed body: the same request.
        let zipped = c.request(
            "POST",
            "/updates/",
            &[
                ("Content-Encoding", "gzip"),
                ("Idempotency-Key", "agent-1:1"),
            ],
            &gzip(BATCH.as_bytes()),
        );
        assert_eq!(zipped.status, 200);
        assert_eq!(poll_count(&c), "5", "{backend:?}");
        // A new key is a new write.
        assert_eq!(keyed(&c, "/updates/", "agent-1:2", BATCH).status, 200);
        assert_eq!(poll_count(&c), "10");

        // Single-metric JSON writes: the repeat carries the total the first write left.
        let one = r#"{"id":"PollCount","type":"counter","delta":7}"#;
        let first = keyed(&c, "/update/", "agent-1:3", one);
        assert_eq!(first.json()["delta"], 17);
        assert_eq!(c.post("/update/counter/PollCount/1", b"").status, 200);
        let again = keyed(&c, "/update/", "agent-1:3", one);
        assert_eq!(
            (again.status, again.body.clone()),
            (200, first.body.clone())
        );
        assert_eq!(poll_count(&c), "18");
        // The text API.
        for _ in 0..2 {
            let r = c.request(
                "POST",
                "/update/counter/PollCount/2",
                &[("Idempotency-Key", "t-1")],
                b"",
            );
            assert_eq!((r.status, r.text().as_str()), (200, "ok"));
        }
        assert_eq!(poll_count(&c), "20", "{backend:?}");

        // A key reused with another body, or on another endpoint: 422, nothing applied.
        let other = BATCH.replace("\"delta\":5", "\"delta\":6");
        for (path, body) in [("/updates/", other.as_str()), ("/update/", one)] {
            let r = keyed(&c, path, "agent-1:1", body);
            assert_eq!(r.status, 422, "{path} on {backend:?}: {}", r.text());
            assert!(
                r.text()
                    .contains("Idempotency-Key \"agent-1:1\" was first used with another request"),
                "{}",
                r.text()
            );
        }
        assert_eq!(poll_count(&c), "20");
        assert_eq!(c.get("/value/gauge/Alloc").text(), "1.5");

        // Repeats are counted; the memory store says how many keys it holds.
        let metrics = c.get("/metrics").text();
        assert!(
            metrics.contains("golectra_idempotent_repeats_total 6\n"),
            "{metrics}"
        );
        if backend == Backend::Memory {
            assert!(
                metrics.contains("golectra_idempotency_keys 4\n"),
                "{metrics}"
            );
        }
    }
}

#[test]
fn bad_keys_are_refused_and_change_nothing() {
    let s = TestServer::start(Backend::Memory);
    let c = s.client();
    let long = "k".repeat(256);
    for (headers, why) in [
        (vec![("Idempotency-Key", "  ")], "empty"),
        (vec![("Idempotency-Key", long.as_str())], "256 bytes"),
        (
            vec![("Idempotency-Key", "a"), ("Idempotency-Key", "b")],
            "more than one",
        ),
    ] {
        let r = c.request("POST", "/updates/", &headers, BATCH.as_bytes());
        assert_eq!(r.status, 400, "{why}");
        assert!(r.text().contains(why), "{}", r.text());
    }
    assert_eq!(c.get("/value/counter/PollCount").status, 404);
    // The longest key allowed works.
    let longest = "k".repeat(255);
    assert_eq!(keyed(&c, "/updates/", &longest, BATCH).status, 200);
}

/// Sync mode (`STORE_INTERVAL=0`) on a disk that fails: the write that met the failure is in
/// doubt (503), later writes are refused before they are applied, `/ping` is 503; once a
/// snapshot succeeds again, the retry of the write in doubt is a repeat and the total exact.
#[test]
fn sync_mode_fails_fast_and_retries_with_keys_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let path = data.join("db.json");
    let s = TestServer::start_with(Backend::Memory, |config| {
        config.storage = Storage::Memory {
            path: path.clone(),
            interval: Duration::ZERO,
            restore: false,
        };
    });
    let c = s.client();
    assert_eq!(keyed(&c, "/updates/", "k1", BATCH).status, 200);
    std::fs::remove_dir_all(&data).unwrap();
    let in_doubt = keyed(&c, "/updates/", "k2", BATCH);
    assert_eq!(in_doubt.status, 503, "{}", in_doubt.text());
    let refused = keyed(&c, "/updates/", "k3", BATCH);
    assert_eq!(refused.status, 503);
    assert!(
        refused.text().contains("nothing was applied"),
        "{}",
        refused.text()
    );
    assert_eq!(c.post("/update/counter/PollCount/100", b"").status, 503);
    assert_eq!(c.get("/ping").status, 503);
    assert_eq!(poll_count(&c), "10", "k1 and the write in doubt only");
    std::fs::create_dir(&data).unwrap();
    eventually(Duration::from_secs(30), || {
        (c.get("/ping").status == 200).then_some(())
    })
    .expect("a snapshot succeeds again");
    // The client's retries: k2 was applied (a repeat), k3 was not (applied now).
    assert_eq!(keyed(&c, "/updates/", "k2", BATCH).status, 200);
    assert_eq!(keyed(&c, "/updates/", "k3", BATCH).status, 200);
    assert_eq!(poll_count(&c), "15");
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert!(
        on_disk.contains(r#"{"id":"PollCount","type":"counter","delta":15,"updated":"#),
        "{on_disk}"
    );
}

/// A real full disk under the real binary, sync mode: a tmpfs of 256 KiB in a private mount
/// namespace, filled from outside through `/proc/<pid>/root`. The write that meets the full
/// disk is in doubt, the next ones are refused before they are applied; once space is freed
/// the client's keyed retries give the exact total, on disk and after a `kill -9`.
#[test]
fn a_full_disk_in_sync_mode_loses_and_doubles_nothing() {
    use std::io::Write;
    if !golectra_testkit::require_root("to mount a small tmpfs in a private mount namespace")
        || !golectra_testkit::require_tool("unshare", "util-linux")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let snapshot = data.join("db.json");
    let env = [
        ("STORE_INTERVAL", "0"),
        ("RESTORE", "true"),
        ("FILE_STORAGE_PATH", snapshot.to_str().unwrap()),
    ];
    let mount = format!(
        "mount -t tmpfs -o size=256k golectra-test {} && exec \"$0\" \"$@\"",
        data.display()
    );
    let server =
        golectra_testkit::ServerProcess::start_in_private_mounts(&mount, dir.path(), &[], &env);
    let c = server.client();
    // The server's view of its data directory: the tmpfs.
    let inside = std::path::PathBuf::from(format!("/proc/{}/root", server.pid()))
        .join(data.strip_prefix("/").unwrap());
    let batch = |n: u32| keyed(&c, "/updates/", &format!("disk:{n}"), BATCH);
    assert_eq!(batch(1).status, 200);
    assert!(
        inside.join("db.json").exists(),
        "the snapshot is on the tmpfs"
    );
    // Fill the tmpfs to the last byte.
    let filler = inside.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    while file.write_all(&block[..1]).is_ok() {}
    drop(file);
    let statuses: Vec<u16> = (2..=5).map(|n| batch(n).status).collect();
    assert_eq!(statuses, [503, 503, 503, 503]);
    assert_eq!(c.get("/ping").status, 503);
    assert_eq!(
        poll_count(&c),
        "10",
        "batch 1 and the one in doubt; the others were refused"
    );
    std::fs::remove_file(&filler).unwrap();
    eventually(Duration::from_secs(30), || {
        (c.get("/ping").status == 200).then_some(())
    })
    .expect("a snapshot succeeds once space is freed");
    // The client retries 2–5 with their keys: 2 is a repeat, 3–5 are applied now.
    for n in 2..=5 {
        assert_eq!(batch(n).status, 200, "retry of disk:{n}");
    }
    assert_eq!(poll_count(&c), "25");
    let on_disk = std::fs::read_to_string(inside.join("db.json")).unwrap();
    assert!(on_disk.contains(r#""delta":25"#), "{on_disk}");
    // kill -9 and a restart on the same (ordinary) directory layout: keys came back with the
    // snapshot, so another retry of every batch applies nothing.
    let kept = std::fs::read(inside.join("db.json")).unwrap();
    let key_log = std::fs::read(inside.join("db.json.keys")).unwrap();
    server.kill9();
    std::fs::write(&snapshot, kept).unwrap();
    std::fs::write(data.join("db.json.keys"), key_log).unwrap();
    let again = golectra_testkit::ServerProcess::start(dir.path(), &[], &env);
    let c = again.client();
    for n in 1..=5 {
        let r = keyed(&c, "/updates/", &format!("disk:{n}"), BATCH);
        assert_eq!(r.status, 200);
    }
    assert_eq!(poll_count(&c), "25");
}
