//! Exactly-once delivery against scripted fake servers: a report whose outcome is unknown keeps
//! its `Idempotency-Key` and body until a definite answer, and the state file carries keys,
//! pending deltas and reports in doubt across a SIGTERM or a `kill -9`. Every total is exact:
//! the `PollCount` deltas of the distinct keys the fake acknowledged equal the polls made (minus
//! the polls a `kill -9` lost, which the next start reports).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use golectra_testkit::{Answer, Fake, Seen, eventually};

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(30);
const KEY: &str = "Idempotency-Key";

/// `PollCount` carried by one request (a batch or a single metric).
fn polls_of(seen: &Seen) -> i64 {
    match seen.json() {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    }
    .iter()
    .filter(|m| m["id"] == "PollCount")
    .map(|m| m["delta"].as_i64().expect("integer delta"))
    .sum()
}

/// The polls the fake applied, as a server honouring `Idempotency-Key` would: each key counts
/// once, at its first `2xx`. Asserts that a key never came with two bodies.
fn applied_polls(seen: &[Seen]) -> i64 {
    let mut bodies: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for s in seen {
        let key = s.header(KEY).expect("every request carries a key");
        let first = *bodies.entry(key).or_insert(&s.body);
        assert_eq!(first, &s.body[..], "key {key} re-sent with another body");
    }
    let mut applied: BTreeMap<&str, i64> = BTreeMap::new();
    for s in seen.iter().filter(|s| (200..300).contains(&s.status)) {
        applied.entry(s.header(KEY).unwrap()).or_insert(polls_of(s));
    }
    applied.values().sum()
}

/// `(instance, sequence)` of a batch key.
fn split_key(key: &str) -> (&str, u64) {
    let (instance, sequence) = key.split_once(':').expect("<instance>:<sequence>");
    assert!(
        instance.len() == 32
            && instance
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{key}"
    );
    (instance, sequence.parse().expect("a sequence number"))
}

/// A fake that answers 503 while `outage` is set, else 200.
fn switchable() -> (Fake, Arc<AtomicBool>) {
    let outage = Arc::new(AtomicBool::new(false));
    let down = outage.clone();
    let fake = Fake::scripted(move |_, _| {
        Answer::Status(if down.load(Ordering::SeqCst) {
            503
        } else {
            200
        })
    });
    (fake, outage)
}

fn agent_with_state(fake: &Fake, state: &Path) -> Agent {
    Agent::start(
        &[
            &["-a", &fake.url(), "-s", state.to_str().unwrap()][..],
            FAST,
        ]
        .concat(),
    )
}

fn wait_for_status(fake: &Fake, status: u16, after: usize) {
    eventually(WAIT, || {
        fake.seen()[after.min(fake.seen().len())..]
            .iter()
            .any(|s| s.status == status)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no {status} answer in {:?}", statuses(fake)));
}

fn statuses(fake: &Fake) -> Vec<u16> {
    fake.seen().iter().map(|s| s.status).collect()
}

#[test]
fn a_report_in_doubt_keeps_its_key_and_body_until_a_definite_answer() {
    // 408, 429 and 5xx say nothing about whether the batch was applied.
    let script = [503, 408, 429, 500, 502];
    let fake = Fake::scripted(move |_, n| Answer::Status(script.get(n).copied().unwrap_or(200)));
    let mut agent = Agent::start(&[&["-a", &fake.url()][..], FAST].concat());
    // 1 s, 3 s, 5 s, then once per report interval.
    let line = agent.wait_for_line("still in doubt after", WAIT);
    eventually(WAIT, || {
        (fake.seen().len() > script.len() + 1).then_some(())
    })
    .expect("the answer, then the next reports");
    let polls = agent.stop_and_count_polls();
    let seen = fake.seen();
    let first = &seen[0];
    let key = first.header(KEY).expect("a key").to_owned();
    let (instance, sequence) = split_key(&key);
    assert_eq!(sequence, 1, "the first batch of a fresh instance");
    for again in &seen[1..=script.len()] {
        assert_eq!(again.header(KEY), Some(key.as_str()), "never re-keyed");
        assert_eq!(again.body, first.body, "the same JSON, byte for byte");
    }
    assert_eq!(seen[script.len()].status, 200);
    assert!(
        line.contains(&format!("report {key} ("))
            && line.contains(" metrics) still in doubt after ")
            && line.ends_with("; re-sending with the same key"),
        "{line}"
    );
    // Later reports: the same instance, the next sequence numbers, new bodies.
    let next = seen[script.len() + 1].header(KEY).unwrap();
    assert_eq!(split_key(next), (instance, 2));
    // Nothing merged back while in doubt, nothing lost.
    assert_eq!(applied_polls(&seen), polls);
    let sent_once: i64 = {
        let mut by_key: BTreeMap<&str, i64> = BTreeMap::new();
        for s in &seen {
            by_key.insert(s.header(KEY).unwrap(), polls_of(s));
        }
        by_key.values().sum()
    };
    assert_eq!(sent_once, polls, "no poll in two keys");
}

#[test]
fn a_connection_closed_without_an_answer_is_in_doubt_too() {
    let fake = Fake::scripted(|_, n| {
        if n < 2 {
            Answer::Drop
        } else {
            Answer::Status(200)
        }
    });
    let mut agent = Agent::start(&[&["-a", &fake.url()][..], FAST].concat());
    eventually(WAIT, || (fake.seen().len() >= 4).then_some(())).expect("the re-sends, then more");
    let polls = agent.stop_and_count_polls();
    let seen = fake.seen();
    assert_eq!(
        seen[..3].iter().map(|s| s.status).collect::<Vec<_>>(),
        [0, 0, 200]
    );
    assert!(
        seen[..3]
            .iter()
            .all(|s| s.header(KEY) == seen[0].header(KEY) && s.body == seen[0].body)
    );
    assert_eq!(applied_polls(&seen), polls);
}

#[test]
fn sigterm_mid_outage_saves_the_state_and_the_restart_resends_with_the_old_keys() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let (fake, outage) = switchable();
    let mut first = agent_with_state(&fake, &state);
    wait_for_status(&fake, 200, 0);
    outage.store(true, Ordering::SeqCst);
    wait_for_status(&fake, 503, 0);
    let (code, log) = first.terminate();
    assert_eq!(code, 0, "{log}");
    let made_first = polls_in(&log).unwrap();
    let outcome = outcome_in(&log).unwrap();
    let [pending, in_doubt, lost] =
        numbers_before(outcome, &["polls pending", "polls in doubt", "polls lost"])[..]
    else {
        unreachable!()
    };
    assert!(in_doubt > 0 && lost == 0, "{outcome}");
    assert!(
        outcome.contains(&format!("; saved to {}", state.display())),
        "{outcome}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let old_key = saved["in_doubt"][0]["key"].as_str().unwrap().to_owned();
    let instance = saved["instance"].as_str().unwrap().to_owned();
    let before_restart = fake.seen().len();
    let old_body = fake
        .seen()
        .into_iter()
        .find(|s| s.header(KEY) == Some(&old_key))
        .expect("the report in doubt was sent")
        .body;

    outage.store(false, Ordering::SeqCst);
    let mut second = agent_with_state(&fake, &state);
    let restored = second.wait_for_line("state restored from", WAIT);
    let batches = saved["in_doubt"].as_array().unwrap().len();
    assert!(
        restored.ends_with(&format!(
            "state restored from {}: instance {instance}, {pending} polls pending, {batches} batches in doubt ({in_doubt} polls)",
            state.display()
        )),
        "{restored}"
    );
    eventually(WAIT, || {
        (fake.seen().len() > before_restart + 2).then_some(())
    })
    .expect("reports after the restart");
    let made_second = second.stop_and_count_polls();
    assert!(
        !second.log().contains("stopped without saving"),
        "{}",
        second.log()
    );
    assert_eq!(outcome_in(&second.log()), Some("final report delivered"));
    let seen = fake.seen();
    let resent = &seen[before_restart];
    assert_eq!(
        resent.header(KEY),
        Some(old_key.as_str()),
        "in doubt goes first"
    );
    assert_eq!(resent.body, old_body);
    assert_eq!(resent.status, 200);
    let old_max = seen[..before_restart]
        .iter()
        .map(|s| split_key(s.header(KEY).unwrap()).1)
        .max()
        .unwrap();
    for s in &seen[before_restart + 1..] {
        let (id, sequence) = split_key(s.header(KEY).unwrap());
        assert_eq!(id, instance, "the same instance after a restart");
        assert!(sequence > old_max, "keys continue: {sequence} > {old_max}");
    }
    assert_eq!(applied_polls(&seen), made_first + made_second);
}

#[test]
fn kill_9_mid_outage_loses_only_what_the_next_start_reports() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let (fake, outage) = switchable();
    // Reports (and state writes) every 2 s, polls every 100 ms: a kill between two writes
    // loses polls.
    let slow_reports = [
        "-a",
        &fake.url(),
        "-s",
        state.to_str().unwrap(),
        "-p",
        "100ms",
        "-r",
        "2s",
    ];
    let mut first = Agent::start(&slow_reports);
    wait_for_status(&fake, 200, 0);
    outage.store(true, Ordering::SeqCst);
    wait_for_status(&fake, 503, 0);
    // Into the outage, with polls pending and a report in doubt.
    eventually(WAIT, || {
        let text = std::fs::read_to_string(&state).ok()?;
        let saved: serde_json::Value = serde_json::from_str(&text).ok()?;
        let pending = saved["pending"]["PollCount"].as_i64()?;
        (pending >= 5 && !saved["in_doubt"].as_array()?.is_empty()).then_some(())
    })
    .expect("a state with polls pending and a report in doubt");
    // A deliberate gap, not a wait: 700 ms of polls after that write, before the next one.
    std::thread::sleep(Duration::from_millis(700));
    let log = first.kill9();
    assert!(!log.contains("stopped after"), "{log}");

    outage.store(false, Ordering::SeqCst);
    let mut second = agent_with_state(&fake, &state);
    let line = second.wait_for_line("the previous run stopped without saving its state", WAIT);
    let [made, lost] = numbers_before(
        line.split_once("its state: ").unwrap().1,
        &["polls,", "of them"],
    )[..] else {
        unreachable!()
    };
    assert!(
        line.ends_with(&format!(
            "the previous run stopped without saving its state: it made {made} polls, {lost} of them were not saved and are lost"
        )),
        "{line}"
    );
    assert!(
        lost > 0 && lost < made,
        "polls since the last write are lost: {line}"
    );
    eventually(WAIT, || {
        fake.seen()
            .iter()
            .rev()
            .take(2)
            .all(|s| s.status == 200)
            .then_some(())
    })
    .expect("deliveries after the restart");
    let made_second = second.stop_and_count_polls();
    assert_eq!(outcome_in(&second.log()), Some("final report delivered"));
    assert_eq!(applied_polls(&fake.seen()), made - lost + made_second);
}

#[test]
fn a_state_file_in_a_directory_the_agent_cannot_write_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("missing/state.json");
    let (code, _, err) = golectra_testkit::run(
        agent_binary(),
        &["-s", state.to_str().unwrap(), "-a", ":1"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("STATE_FILE") && err.contains("cannot write in"),
        "{err}"
    );
}

#[test]
fn a_corrupt_state_file_is_moved_aside_and_the_agent_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, "{\"format\": 1, \"inst").unwrap();
    let (fake, _) = switchable();
    let mut agent = agent_with_state(&fake, &state);
    let line = agent.wait_for_line("is unreadable", WAIT);
    assert!(line.contains(&state.display().to_string()), "{line}");
    wait_for_status(&fake, 200, 0);
    let polls = agent.stop_and_count_polls();
    assert_eq!(applied_polls(&fake.seen()), polls);
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.json.corrupt-"))
        .count();
    assert_eq!(aside, 1);
}

/// The response timeout (30 s) outlasts a server that is slow to make a write durable: a late
/// `200` is an answer, not a reason for doubt.
#[test]
fn a_slow_answer_within_the_response_timeout_settles_the_report() {
    let fake = Fake::scripted(|_, n| {
        if n == 0 {
            Answer::After(Duration::from_secs(7), 200)
        } else {
            Answer::Status(200)
        }
    });
    let mut agent = Agent::start(&[&["-a", &fake.url()][..], FAST].concat());
    eventually(WAIT, || (fake.seen().len() >= 3).then_some(())).expect("the next reports");
    let polls = agent.stop_and_count_polls();
    let seen = fake.seen();
    let keys: Vec<&str> = seen.iter().map(|s| s.header(KEY).unwrap()).collect();
    assert_ne!(keys[0], keys[1], "no re-send of the slow report: {keys:?}");
    assert!(!agent.log().contains("in doubt"), "{}", agent.log());
    assert_eq!(applied_polls(&seen), polls);
}

/// At shutdown the agent does not wait for an answer that is long in coming: the report is
/// saved in doubt, and the next process re-sends it with its key.
#[test]
fn a_report_unanswered_at_shutdown_is_saved_in_doubt_and_re_sent_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let fake = Fake::scripted(|_, n| {
        if n == 0 {
            Answer::After(Duration::from_secs(14), 200)
        } else {
            Answer::Status(200)
        }
    });
    let mut first = agent_with_state(&fake, &state);
    eventually(WAIT, || (!fake.seen().is_empty()).then_some(())).expect("a first request");
    let started = std::time::Instant::now();
    let (code, log) = first.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "exit within the shutdown deadlines, not after the answer: {:?}",
        started.elapsed()
    );
    let outcome = outcome_in(&log).unwrap().to_owned();
    let [_, in_doubt, lost] =
        numbers_before(&outcome, &["polls pending", "polls in doubt", "polls lost"])[..]
    else {
        unreachable!()
    };
    assert!(in_doubt > 0 && lost == 0, "{outcome}");
    let made_first = polls_in(&log).unwrap();
    let slow_key = fake.seen()[0].header(KEY).unwrap().to_owned();

    let mut second = agent_with_state(&fake, &state);
    eventually(WAIT, || (fake.seen().len() >= 3).then_some(())).expect("the re-send and more");
    let made_second = second.stop_and_count_polls();
    let seen = fake.seen();
    assert_eq!(
        seen[1].header(KEY),
        Some(slow_key.as_str()),
        "re-sent first"
    );
    assert_eq!(seen[1].body, seen[0].body);
    // The fake applied the slow request too (its answer came too late): the key counts once.
    assert_eq!(applied_polls(&seen), made_first + made_second);
}

/// SIGTERM while the only sender waits to re-send: the final phase settles that report first,
/// then cuts the final one, and everything is delivered.
#[test]
fn a_report_in_doubt_at_shutdown_is_settled_and_then_the_final_report_cut() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let fake = Fake::scripted(|_, n| Answer::Status(if n == 0 { 503 } else { 200 }));
    let mut agent = agent_with_state(&fake, &state);
    wait_for_status(&fake, 503, 0);
    let polls = agent.stop_and_count_polls();
    assert_eq!(
        outcome_in(&agent.log()),
        Some("final report delivered"),
        "{}",
        agent.log()
    );
    let seen = fake.seen();
    assert_eq!(
        seen[1].header(KEY),
        seen[0].header(KEY),
        "the report in doubt first"
    );
    assert_eq!(applied_polls(&seen), polls);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["in_doubt"], serde_json::json!([]));
    assert_eq!(saved["pending"], serde_json::json!({}));
    assert_eq!(saved["run"]["clean"], true);
}
