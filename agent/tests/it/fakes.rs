//! The agent against fake servers that misbehave on purpose: no batch endpoint, transient
//! errors, connections closed at once; and the exact shape of its requests.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use golectra_common::signature;

use golectra_testkit::{Fake, Seen, eventually};

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(20);

/// Sum of the `PollCount` deltas of the acknowledged requests.
fn acknowledged_polls(seen: &[Seen]) -> i64 {
    seen.iter()
        .filter(|s| s.status == 200)
        .flat_map(|s| match s.json() {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        })
        .filter(|m| m["id"] == "PollCount")
        .map(|m| m["delta"].as_i64().expect("integer delta"))
        .sum()
}

#[test]
fn requests_are_gzipped_json_with_a_valid_signature() {
    let fake = Fake::start(|_, _| 200);
    let mut agent = Agent::start(&[&["-a", &fake.url(), "-k", "s3cret"][..], FAST].concat());
    let first = eventually(WAIT, || fake.seen().into_iter().next()).expect("a request");
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/updates/");
    assert_eq!(first.header("Content-Encoding"), Some("gzip"));
    assert_eq!(first.header("Content-Type"), Some("application/json"));
    assert_eq!(&first.raw[..2], &[0x1f, 0x8b], "gzip magic");
    let hash = first.header(signature::HEADER).expect("HashSHA256 header");
    assert_eq!(
        hash,
        signature::sign(&first.body, b"s3cret"),
        "signature over the JSON"
    );
    let items = first.json();
    let items = items.as_array().expect("a JSON array");
    for item in items {
        let kind = item["type"].as_str().unwrap();
        match kind {
            "gauge" => assert!(item["value"].is_number() && item.get("delta").is_none()),
            "counter" => assert!(item["delta"].is_i64() && item.get("value").is_none()),
            other => panic!("type {other}"),
        }
    }
    let polls = agent.stop_and_count_polls();
    assert_eq!(acknowledged_polls(&fake.seen()), polls);
}

/// The original keeps a path prefix of the address (a reverse proxy mounting the server under
/// `/golectra`): batches go to `{prefix}/updates/`, single metrics to `{prefix}/update/…`.
#[test]
fn a_path_prefix_in_the_address_is_kept() {
    // 404 on the batch endpoint makes the agent fall back to single metrics.
    let fake = Fake::start(|path, _| {
        if path.ends_with("/updates/") {
            404
        } else {
            200
        }
    });
    let address = format!(" {}/golectra/ ", fake.url());
    let mut agent = Agent::start(&[&["-a", &address][..], FAST].concat());
    let single = eventually(WAIT, || {
        fake.seen()
            .into_iter()
            .find(|s| s.path.starts_with("/golectra/update/"))
    })
    .expect("single-metric fallback under the prefix");
    assert_eq!(single.method, "POST");
    let seen = fake.seen();
    assert!(
        seen.iter().any(|s| s.path == "/golectra/updates/"),
        "{:?}",
        seen.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    assert!(
        seen.iter().all(|s| s.path.starts_with("/golectra/")),
        "every request under the prefix"
    );
    agent.stop_and_count_polls();
}

#[test]
fn unsigned_without_a_key() {
    let fake = Fake::start(|_, _| 200);
    let mut agent = Agent::start(&[&["-a", &fake.url()][..], FAST].concat());
    let first = eventually(WAIT, || fake.seen().into_iter().next()).expect("a request");
    assert_eq!(first.header(signature::HEADER), None);
    agent.stop_and_count_polls();
}

#[test]
fn a_server_without_batches_gets_every_metric_one_by_one() {
    let fake = Fake::start(|path, _| {
        if path.starts_with("/updates") {
            404
        } else {
            200
        }
    });
    let mut agent = Agent::start(&[&["-a", &fake.url(), "-k", "s3cret"][..], FAST].concat());
    let mut wanted: BTreeSet<String> = expected_gauges().into_iter().collect();
    wanted.insert("PollCount".into());
    eventually(WAIT, || {
        let got: BTreeSet<String> = fake
            .seen()
            .iter()
            .filter(|s| s.path == "/update/")
            .map(|s| s.json()["id"].as_str().unwrap().to_owned())
            .collect();
        (got == wanted).then_some(())
    })
    .expect("every metric on /update/");
    let polls = agent.stop_and_count_polls();
    let seen = fake.seen();
    for single in seen.iter().filter(|s| s.path == "/update/") {
        assert!(single.json().is_object(), "one metric per request");
        let hash = single.header(signature::HEADER).expect("signed");
        assert_eq!(hash, signature::sign(&single.body, b"s3cret"));
    }
    let singles: Vec<Seen> = seen.into_iter().filter(|s| s.path == "/update/").collect();
    assert_eq!(acknowledged_polls(&singles), polls);
}

#[test]
fn transient_errors_are_retried_and_the_batch_arrives_once() {
    let fake = Fake::start(|_, n| if n < 2 { 503 } else { 200 });
    let mut agent = Agent::start(&[&["-a", &fake.url()][..], FAST].concat());
    eventually(WAIT, || (fake.seen().len() >= 4).then_some(())).expect("retries, then more");
    let polls = agent.stop_and_count_polls();
    let seen = fake.seen();
    let statuses: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(&statuses[..3], &[503, 503, 200], "{statuses:?}");
    // The same batch, byte for byte and key for key, after 1 s and then 3 s.
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(seen[1].body, seen[2].body);
    let key = seen[0].header("Idempotency-Key").expect("a key");
    assert!(
        seen[..3]
            .iter()
            .all(|s| s.header("Idempotency-Key") == Some(key))
    );
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(950));
    assert!(seen[2].at - seen[1].at >= Duration::from_millis(2950));
    // Nothing counted twice, nothing lost.
    assert_eq!(acknowledged_polls(&seen), polls);
}

#[test]
fn connections_closed_at_once_do_not_crash_the_agent() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let closer = std::thread::spawn(move || {
        let mut accepted = 0;
        for stream in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            drop(stream);
            accepted += 1;
        }
        accepted
    });
    let mut agent = Agent::start(&[&["-a", &format!("http://{addr}")][..], FAST].concat());
    // After the fast retries (1 s, 3 s, 5 s) the report is in doubt.
    agent.wait_for_log("still in doubt after", WAIT);
    assert!(agent.is_running(), "{}", agent.log());
    let (code, log) = agent.terminate();
    assert_eq!(code, 0, "{log}");
    let outcome = outcome_in(&log).unwrap_or_else(|| panic!("{log}"));
    assert!(
        outcome.contains(" polls in doubt, ") && outcome.contains("no STATE_FILE"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    done.store(true, Ordering::SeqCst);
    let _ = std::net::TcpStream::connect(addr);
    assert!(closer.join().unwrap() >= 2);
}
