//! Exactly-once delivery end to end (SPEC §3.6 and §7): the real agent and the real server, with
//! the test kit's [`FaultProxy`] between them where the network has to fail in the ways that
//! leave a write in doubt — a response lost or replaced by a 503 after the server applied the
//! batch, a response too late for the agent's deadline, connections refused — and `kill -9` of
//! either daemon. Every test asserts one exact equality: the server's `PollCount` is the number
//! of polls the agent says it made (its final `stopped after N polls; …` lines, summed over its
//! runs, minus what it says it lost after a `kill -9`). Nothing counted twice, nothing lost.
//!
//! What the tests rely on:
//! - the server applies each `Idempotency-Key` at most once and answers a repeat with the first
//!   reply, durably with the write it protects (sync memory store, PostgreSQL);
//! - the agent keys every batch `<instance>:<seq>`, re-sends a batch in doubt with the same key
//!   and body, never merges it back, and with `STATE_FILE` carries it (and its pending deltas)
//!   over a restart;
//! - the agent's log: the last info line `stopped after N polls; final report delivered` or
//!   `stopped after N polls; P polls pending, D polls in doubt, L polls lost`, and after a
//!   `kill -9` the warning `the previous run stopped without saving its state: it made M polls,
//!   L of them were not saved and are lost` at the next start.
//!
//! The agent binary comes from the same target directory (`cargo test --workspace` and
//! `.ci/run` build it first; without it the tests are skipped, and fail in CI).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use golectra_testkit::database::base_dsn;
use golectra_testkit::{
    Counts, DSN_ENV, Daemon, Exchange, Fault, FaultProxy, ServerProcess, agent_binary, eventually,
    fresh_postgres_dsn, require,
};

/// The longest any single condition of these tests may take (the agent's re-sends of a batch
/// in doubt come 1 s, 3 s and 5 s apart, then at each report).
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Short agent intervals that keep the tests fast.
pub(crate) const FAST: &[&str] = &["-p", "100ms", "-r", "300ms"];

/// How many exchanges a transient fault spoils.
const FAULTS: u64 = 3;

/// The agent's deadline for its final report at shutdown (retries included).
const FINAL_REPORT_DEADLINE: Duration = Duration::from_secs(5);

/// The header carrying a batch's key.
const KEY: &str = "Idempotency-Key";

/// The agent's last info line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped {
    /// Polls made in that run.
    pub polls: i64,
    /// `final report delivered`.
    pub delivered: bool,
    /// `P polls pending` (0 when delivered).
    pub pending: i64,
    /// `D polls in doubt`.
    pub in_doubt: i64,
    /// `L polls lost`.
    pub lost: i64,
}

/// The number just before `marker` in `text` (`12` in `"… 12 polls lost"` for `" polls lost"`).
fn number_before(text: &str, marker: &str) -> Option<i64> {
    let before = &text[..text.find(marker)?];
    before
        .rsplit(|c: char| !c.is_ascii_digit() && c != '-')
        .next()?
        .parse()
        .ok()
}

/// Parses a `stopped after N polls; …` line.
fn parse_stopped(line: &str) -> Option<Stopped> {
    let rest = &line[line.find("stopped after ")? + "stopped after ".len()..];
    let (polls, outcome) = rest.split_once(" polls; ")?;
    let polls = polls.trim().parse().ok()?;
    if outcome.starts_with("final report delivered") {
        return Some(Stopped {
            polls,
            delivered: true,
            pending: 0,
            in_doubt: 0,
            lost: 0,
        });
    }
    Some(Stopped {
        polls,
        delivered: false,
        pending: number_before(outcome, " polls pending")?,
        in_doubt: number_before(outcome, " polls in doubt")?,
        lost: number_before(outcome, " polls lost")?,
    })
}

/// The final line of an agent's log; fails the test when there is none.
fn stopped_in(log: &str) -> Stopped {
    log.lines()
        .rev()
        .find(|l| l.contains("stopped after "))
        .and_then(parse_stopped)
        .unwrap_or_else(|| panic!("no parsable `stopped after N polls; …` line:\n{log}"))
}

/// The start-up warning after a `kill -9`.
const UNSAVED: &str = "the previous run stopped without saving its state";

/// `(made, lost)` from the warning of a run that followed a `kill -9`.
fn parse_unsaved(line: &str) -> Option<(i64, i64)> {
    let rest = &line[line.find(UNSAVED)?..];
    let made = number_before(rest, " polls, ")?;
    let lost = number_before(rest, " of them were not saved")?;
    Some((made, lost))
}

#[test]
fn the_agents_log_lines_parse() {
    let line =
        "2026-01-01T00:00:00Z INFO  golectra_agent] stopped after 42 polls; final report delivered";
    assert_eq!(
        parse_stopped(line),
        Some(Stopped {
            polls: 42,
            delivered: true,
            pending: 0,
            in_doubt: 0,
            lost: 0
        })
    );
    let line =
        "stopped after 17 polls; 3 polls pending, 12 polls in doubt, 2 polls lost (state saved)";
    assert_eq!(
        parse_stopped(line),
        Some(Stopped {
            polls: 17,
            delivered: false,
            pending: 3,
            in_doubt: 12,
            lost: 2
        })
    );
    assert_eq!(parse_stopped("stopped after 5 polls; nothing to say"), None);
    let line = "WARN the previous run stopped without saving its state: it made 30 polls, 4 of them were not saved and are lost";
    assert_eq!(parse_unsaved(line), Some((30, 4)));
}

/// Starts the agent in `dir` against `server` (with `STATE_FILE=state` when given) and waits
/// for its first poll.
pub(crate) fn start_agent(
    bin: &Path,
    dir: &Path,
    server: &str,
    state: Option<&Path>,
    args: &[&str],
) -> Daemon {
    let args = [&["-a", server][..], args].concat();
    let state = state.map(|p| p.to_str().expect("a UTF-8 path").to_owned());
    let env: Vec<(&str, &str)> = state.iter().map(|s| ("STATE_FILE", s.as_str())).collect();
    let mut agent = Daemon::spawn(bin, dir, &args, &env);
    agent.wait_for_log("collecting", WAIT);
    agent
}

/// SIGTERM, a clean exit and the final line.
pub(crate) fn stop_agent(agent: &mut Daemon) -> Stopped {
    let code = agent.terminate();
    let log = agent.log();
    assert_eq!(code, 0, "agent log:\n{log}");
    stopped_in(&log)
}

/// The server's `PollCount` (0 before the first report).
pub(crate) fn poll_count(server: &ServerProcess) -> i64 {
    counter(server, "PollCount")
}

/// A counter of the server, 0 when it does not exist yet.
fn counter(server: &ServerProcess, name: &str) -> i64 {
    let r = server.client().get(&format!("/value/counter/{name}"));
    match r.status {
        200 => r.text().trim().parse().expect("an integer"),
        404 => 0,
        status => panic!("GET /value/counter/{name}: {status} {}", r.text()),
    }
}

/// Waits until the server's `PollCount` exceeds `than`.
fn wait_poll_count_above(server: &ServerProcess, than: i64, agent: &Daemon) -> i64 {
    eventually(WAIT, || {
        let n = poll_count(server);
        (n > than).then_some(n)
    })
    .unwrap_or_else(|| {
        panic!(
            "PollCount stayed at {} (≤ {than}) for {WAIT:?}; agent log:\n{}",
            poll_count(server),
            agent.log()
        )
    })
}

/// Waits until the proxy's counters satisfy `done`.
fn wait_counts(proxy: &FaultProxy, what: &str, done: impl Fn(&Counts) -> bool, agent: &Daemon) {
    eventually(WAIT, || done(&proxy.counts()).then_some(())).unwrap_or_else(|| {
        panic!(
            "{what}: not within {WAIT:?}: {:?}; agent log:\n{}",
            proxy.counts(),
            agent.log()
        )
    });
}

/// One line per exchange, for failure messages.
fn summary(exchanges: &[Exchange]) -> String {
    exchanges
        .iter()
        .map(|e| {
            format!(
                "{} {} key={:?} fault={:?} status={:?}\n",
                e.method,
                e.path,
                e.header(KEY),
                e.fault,
                e.status
            )
        })
        .collect()
}

/// Waits until every batch the proxy has seen without the agent getting its acknowledgement
/// (spoiled by a fault, or unanswered by a server that died) has been re-sent with its key and
/// acknowledged.
fn wait_settled(proxy: &FaultProxy, agent: &Daemon) {
    let unsettled: BTreeSet<String> = proxy
        .exchanges()
        .iter()
        .filter(|e| !e.acknowledged())
        .filter_map(|e| e.header(KEY).map(str::to_owned))
        .collect();
    let acknowledged = |key: &str, exchanges: &[Exchange]| {
        exchanges
            .iter()
            .any(|e| e.acknowledged() && e.header(KEY) == Some(key))
    };
    eventually(WAIT, || {
        let exchanges = proxy.exchanges();
        unsettled
            .iter()
            .all(|key| acknowledged(key, &exchanges))
            .then_some(())
    })
    .unwrap_or_else(|| {
        let exchanges = proxy.exchanges();
        let missing: Vec<&String> = unsettled
            .iter()
            .filter(|key| !acknowledged(key, &exchanges))
            .collect();
        panic!(
            "batches in doubt never acknowledged within {WAIT:?}: {missing:?}\nexchanges:\n{}agent log:\n{}",
            summary(&exchanges),
            agent.log()
        )
    });
}

/// Waits for an acknowledged exchange among those after the first `seen`.
fn wait_acknowledged_after(proxy: &FaultProxy, seen: usize, agent: &Daemon) {
    eventually(WAIT, || {
        proxy
            .exchanges()
            .iter()
            .skip(seen)
            .any(Exchange::acknowledged)
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no batch acknowledged within {WAIT:?}; exchanges:\n{}agent log:\n{}",
            summary(&proxy.exchanges()),
            agent.log()
        )
    });
}

/// The request body of `e`, gzip inflated.
fn inflated(e: &Exchange) -> Vec<u8> {
    if e.header("Content-Encoding") == Some("gzip") {
        golectra_common::gzip::inflate_unbounded(&e.body).expect("a valid gzip body")
    } else {
        e.body.clone()
    }
}

/// Every batch through the proxy carried a key `<instance>:<seq>`, and a key always came with
/// the same batch: a batch in doubt is re-sent as it was, never merged into another.
fn assert_keyed_batches(proxy: &FaultProxy) {
    let exchanges = proxy.exchanges();
    let mut bodies: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for e in exchanges.iter().filter(|e| e.method == "POST") {
        let key = e.header(KEY).unwrap_or_else(|| {
            panic!(
                "POST {} without an {KEY}; exchanges:\n{}",
                e.path,
                summary(&exchanges)
            )
        });
        let well_formed = key
            .rsplit_once(':')
            .is_some_and(|(instance, seq)| !instance.is_empty() && seq.parse::<u64>().is_ok());
        assert!(well_formed, "key {key:?} is not <instance>:<seq>");
        let body = inflated(e);
        match bodies.get(key) {
            Some(first) => assert_eq!(
                String::from_utf8_lossy(first),
                String::from_utf8_lossy(&body),
                "batch {key} was re-sent with another body"
            ),
            None => {
                bodies.insert(key, body);
            }
        }
    }
    assert!(!bodies.is_empty(), "no batch went through the proxy");
}

/// A transient fault on a few exchanges of a running agent, then a healed network: the
/// batches in doubt are re-sent with their keys, and the total is exact.
fn transient_fault_then_heal(fault: Fault, spoiled: fn(&Counts) -> u64) {
    let Some(bin) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[], &[]);
    let proxy = FaultProxy::start(server.addr);
    let mut agent = start_agent(&bin, dir.path(), &proxy.url(), None, FAST);
    wait_poll_count_above(&server, 0, &agent);
    proxy.set_for(fault, FAULTS);
    wait_counts(
        &proxy,
        &format!("{FAULTS} exchanges spoiled by {fault:?}"),
        |c| spoiled(c) == FAULTS,
        &agent,
    );
    wait_settled(&proxy, &agent);
    let stopped = stop_agent(&mut agent);
    assert!(stopped.delivered, "{stopped:?}\n{}", agent.log());
    assert_eq!(poll_count(&server), stopped.polls, "{}", agent.log());
    assert_keyed_batches(&proxy);
}

#[test]
fn responses_dropped_after_the_write_count_it_once() {
    transient_fault_then_heal(Fault::DropResponse, |c| c.dropped);
}

#[test]
fn a_503_for_an_applied_write_counts_it_once() {
    transient_fault_then_heal(Fault::Answer503, |c| c.rewritten);
}

#[test]
fn a_final_report_in_doubt_is_resent_by_the_next_run_and_counted_once() {
    let Some(bin) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent-state.json");
    let server = ServerProcess::start(dir.path(), &[], &[]);
    let proxy = FaultProxy::start(server.addr);
    // The report interval is far away: the final report is the run's only batch.
    let mut first = start_agent(
        &bin,
        dir.path(),
        &proxy.url(),
        Some(&state),
        &["-p", "100ms", "-r", "1h"],
    );
    // A deliberate gap, not a wait: half a second of polls for the final report to carry.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(proxy.counts().forwarded, 0);
    // The server gets the final report at once; its answer comes after the deadline.
    proxy.set(Fault::DelayResponse(
        FINAL_REPORT_DEADLINE + Duration::from_secs(3),
    ));
    let first_run = stop_agent(&mut first);
    assert!(
        !first_run.delivered && first_run.in_doubt > 0 && first_run.lost == 0,
        "the final report must be in doubt, nothing lost: {first_run:?}\n{}",
        first.log()
    );
    // The server applied it although the agent could not know.
    eventually(WAIT, || {
        (poll_count(&server) == first_run.polls).then_some(())
    })
    .unwrap_or_else(|| panic!("PollCount {} ≠ {first_run:?}", poll_count(&server)));
    let exchanges = proxy.exchanges();
    let doubtful = exchanges
        .iter()
        .find(|e| matches!(e.fault, Fault::DelayResponse(_)))
        .unwrap_or_else(|| panic!("no delayed exchange:\n{}", summary(&exchanges)));
    let key = doubtful
        .header(KEY)
        .unwrap_or_else(|| panic!("the final report carried no {KEY}"))
        .to_owned();

    proxy.set(Fault::None);
    let mut second = start_agent(&bin, dir.path(), &proxy.url(), Some(&state), FAST);
    // The next run re-sends the batch in doubt with its key; the server answers it without
    // applying it again.
    eventually(WAIT, || {
        proxy
            .exchanges()
            .iter()
            .any(|e| e.acknowledged() && e.header(KEY) == Some(key.as_str()))
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the batch {key} in doubt was not re-sent; exchanges:\n{}agent log:\n{}",
            summary(&proxy.exchanges()),
            second.log()
        )
    });
    let second_run = stop_agent(&mut second);
    assert!(second_run.delivered, "{second_run:?}\n{}", second.log());
    assert!(!second.log().contains(UNSAVED), "{}", second.log());
    assert_eq!(
        poll_count(&server),
        first_run.polls + second_run.polls,
        "{first_run:?} then {second_run:?}"
    );
    assert_keyed_batches(&proxy);
}

#[test]
fn refused_connections_lose_and_double_nothing() {
    let Some(bin) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[], &[]);
    let proxy = FaultProxy::start(server.addr);
    let mut agent = start_agent(&bin, dir.path(), &proxy.url(), None, FAST);
    wait_poll_count_above(&server, 0, &agent);
    proxy.set(Fault::Refuse);
    wait_counts(&proxy, "three refusals", |c| c.refused >= 3, &agent);
    let seen = proxy.exchanges().len();
    proxy.set(Fault::None);
    wait_acknowledged_after(&proxy, seen, &agent);
    wait_settled(&proxy, &agent);
    let stopped = stop_agent(&mut agent);
    assert!(stopped.delivered, "{stopped:?}\n{}", agent.log());
    assert_eq!(poll_count(&server), stopped.polls, "{}", agent.log());
    assert_keyed_batches(&proxy);
}

/// `kill -9` of the server `ROUNDS` times while the agent reports through the proxy, each time
/// restarted on the same data (`env`); the total is exact.
fn server_kill_9_while_the_agent_reports(bin: &Path, env: &[(&str, &str)]) {
    const ROUNDS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[], env);
    let proxy = FaultProxy::start(server.addr);
    let mut agent = start_agent(bin, dir.path(), &proxy.url(), None, FAST);
    for round in 0..ROUNDS {
        // A few batches reach this server before it dies.
        let forwarded = proxy.counts().forwarded;
        wait_counts(
            &proxy,
            &format!("round {round}: three batches forwarded"),
            |c| c.forwarded >= forwarded + 3,
            &agent,
        );
        server.kill9();
        // The agent's reports fail while it is down.
        let errors = proxy.counts().upstream_errors;
        wait_counts(
            &proxy,
            &format!("round {round}: two reports failed"),
            |c| c.upstream_errors >= errors + 2,
            &agent,
        );
        server = ServerProcess::start(dir.path(), &[], env);
        proxy.set_upstream(server.addr);
    }
    let restored = poll_count(&server);
    wait_poll_count_above(&server, restored, &agent);
    wait_settled(&proxy, &agent);
    let stopped = stop_agent(&mut agent);
    assert!(stopped.delivered, "{stopped:?}\n{}", agent.log());
    assert_eq!(
        poll_count(&server),
        stopped.polls,
        "agent log:\n{}",
        agent.log()
    );
    assert_keyed_batches(&proxy);
}

#[test]
fn server_kill_9_in_sync_memory_mode_loses_and_doubles_nothing() {
    let Some(bin) = agent_binary() else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let snapshot = files.path().join("metrics-db.json");
    server_kill_9_while_the_agent_reports(
        &bin,
        &[
            ("STORE_INTERVAL", "0"),
            ("RESTORE", "true"),
            ("FILE_STORAGE_PATH", snapshot.to_str().unwrap()),
        ],
    );
}

#[test]
fn server_kill_9_on_postgresql_loses_and_doubles_nothing() {
    let Some(bin) = agent_binary() else {
        return;
    };
    if !require(
        &format!("PostgreSQL ({DSN_ENV})"),
        base_dsn().is_some(),
        &format!("set {DSN_ENV} as the README's test command does"),
    ) {
        return;
    }
    let db = fresh_postgres_dsn().expect("a DSN is set");
    server_kill_9_while_the_agent_reports(&bin, &[("DATABASE_DSN", &db.dsn)]);
}

#[test]
fn agent_kill_9_loses_only_what_it_says_it_lost() {
    let Some(bin) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent-state.json");
    let server = ServerProcess::start(dir.path(), &[], &[]);
    let mut first = start_agent(&bin, dir.path(), &server.url(), Some(&state), FAST);
    // A few reports, and the state they leave behind.
    let delivered = wait_poll_count_above(&server, 0, &first);
    wait_poll_count_above(&server, delivered, &first);
    eventually(WAIT, || state.exists().then_some(()))
        .unwrap_or_else(|| panic!("no {} after a report:\n{}", state.display(), first.log()));
    let before_kill = poll_count(&server);
    first.kill();

    let mut second = start_agent(&bin, dir.path(), &server.url(), Some(&state), FAST);
    let line = second.wait_for_line(UNSAVED, WAIT);
    let (made, lost) =
        parse_unsaved(&line).unwrap_or_else(|| panic!("cannot parse the warning {line:?}"));
    assert!(
        (0..=made).contains(&lost) && made >= before_kill,
        "made {made}, lost {lost}, the server had {before_kill} before the kill"
    );
    wait_poll_count_above(&server, poll_count(&server), &second);
    let second_run = stop_agent(&mut second);
    assert!(second_run.delivered, "{second_run:?}\n{}", second.log());
    assert_eq!(
        poll_count(&server),
        made - lost + second_run.polls,
        "first run: {made} polls made, {lost} lost; then {second_run:?}\n{}",
        second.log()
    );
}

#[test]
fn sigterm_mid_outage_and_a_restart_deliver_everything_once() {
    let Some(bin) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent-state.json");
    let server = ServerProcess::start(dir.path(), &[], &[]);
    let proxy = FaultProxy::start(server.addr);
    let mut first = start_agent(&bin, dir.path(), &proxy.url(), Some(&state), FAST);
    wait_poll_count_above(&server, 0, &first);
    proxy.set(Fault::Refuse);
    wait_counts(&proxy, "two refusals", |c| c.refused >= 2, &first);
    let first_run = stop_agent(&mut first);
    assert!(
        !first_run.delivered && first_run.lost == 0,
        "mid-outage, with a state file, nothing is delivered or lost: {first_run:?}\n{}",
        first.log()
    );

    // The outage goes on over the restart.
    let refused = proxy.counts().refused;
    let mut second = start_agent(&bin, dir.path(), &proxy.url(), Some(&state), FAST);
    wait_counts(
        &proxy,
        "two refusals of the second run",
        |c| c.refused >= refused + 2,
        &second,
    );
    let seen = proxy.exchanges().len();
    proxy.set(Fault::None);
    wait_acknowledged_after(&proxy, seen, &second);
    wait_settled(&proxy, &second);
    let second_run = stop_agent(&mut second);
    assert!(second_run.delivered, "{second_run:?}\n{}", second.log());
    assert!(!second.log().contains(UNSAVED), "{}", second.log());
    assert_eq!(
        poll_count(&server),
        first_run.polls + second_run.polls,
        "{first_run:?} then {second_run:?}"
    );
    assert_keyed_batches(&proxy);
}

/// The seed of the crash test: `GOLECTRA_TEST_SEED` when set (to repeat a failure), else the
/// clock.
fn seed() -> u64 {
    std::env::var("GOLECTRA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// What the crash test's client reports: the deltas of its acknowledged batches, how many
/// batches that was, and how many attempts failed (and were retried).
struct Delivered {
    sum: i64,
    batches: u64,
    retries: u64,
}

/// What the crash test and its client share.
struct Traffic {
    /// Where the server listens now.
    addr: Mutex<SocketAddr>,
    /// Batches acknowledged so far.
    acked: AtomicU64,
    /// Finish the batch at hand, then stop.
    stop: AtomicBool,
    /// Stop at once (the test failed).
    abandon: AtomicBool,
}

/// Abandons the client's traffic when the test ends, failed or not.
struct AbandonOnDrop(Arc<Traffic>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.abandon.store(true, Ordering::SeqCst);
    }
}

/// Sends keyed batches (`t:<n>`, counter `exact` += `n % 7 + 1`) to the server one after the
/// other until told to stop, retrying each on any failure with the same key and body until it
/// gets a 2xx. A 4xx other than 408 and 429 fails the test (it would be a definite refusal).
fn keyed_client(traffic: &Traffic) -> Delivered {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let mut out = Delivered {
        sum: 0,
        batches: 0,
        retries: 0,
    };
    for n in 0u64.. {
        if traffic.stop.load(Ordering::SeqCst) {
            break;
        }
        let key = format!("t:{n}");
        let delta = (n % 7 + 1) as i64;
        let body = format!(r#"[{{"id":"exact","type":"counter","delta":{delta}}}]"#);
        loop {
            if traffic.abandon.load(Ordering::SeqCst) {
                return out;
            }
            let url = format!("http://{}/updates", traffic.addr.lock().unwrap());
            let sent = agent
                .post(&url)
                .header(KEY, &key)
                .content_type("application/json")
                .send(body.as_bytes());
            match sent {
                Ok(mut r) if r.status().is_success() => {
                    let _ = r.body_mut().read_to_string();
                    out.sum += delta;
                    out.batches += 1;
                    traffic.acked.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(mut r) => {
                    let status = r.status().as_u16();
                    let text = r.body_mut().read_to_string().unwrap_or_default();
                    assert!(
                        status == 408 || status == 429 || status >= 500,
                        "batch {key}: a definite {status}: {text}"
                    );
                }
                Err(_) => {}
            }
            out.retries += 1;
            // The pace of the retries, not a wait.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    out
}

#[test]
fn keyed_batches_retried_across_kill_9_of_a_sync_memory_server_count_once() {
    const ROUNDS: usize = 50;
    let seed = seed();
    eprintln!("exactly-once crash test: seed {seed} (GOLECTRA_TEST_SEED={seed} repeats it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let snapshot: PathBuf = dir.path().join("metrics-db.json");
    let env = [
        ("STORE_INTERVAL", "0"),
        ("RESTORE", "true"),
        ("FILE_STORAGE_PATH", snapshot.to_str().unwrap()),
    ];
    let mut server = ServerProcess::start(dir.path(), &[], &env);
    let traffic = Arc::new(Traffic {
        addr: Mutex::new(server.addr),
        acked: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        abandon: AtomicBool::new(false),
    });
    let _abandon = AbandonOnDrop(traffic.clone());
    let client = std::thread::Builder::new()
        .name("keyed-client".into())
        .spawn({
            let traffic = traffic.clone();
            move || keyed_client(&traffic)
        })
        .unwrap();
    let acked = || traffic.acked.load(Ordering::SeqCst);
    for round in 0..ROUNDS {
        // This server acknowledges writes before it dies.
        let before = acked();
        let progressed = eventually(WAIT, || {
            (client.is_finished() || acked() > before).then_some(())
        });
        if client.is_finished() {
            break;
        }
        assert!(
            progressed.is_some(),
            "round {round} (seed {seed}): nothing acknowledged within {WAIT:?}:\n{}",
            server.log()
        );
        // A deliberate gap, not a wait: the kill lands at a random moment of the traffic.
        std::thread::sleep(Duration::from_millis(rng.u64(0..30)));
        server.kill9();
        server = ServerProcess::start(dir.path(), &[], &env);
        *traffic.addr.lock().unwrap() = server.addr;
    }
    traffic.stop.store(true, Ordering::SeqCst);
    let delivered = client
        .join()
        .expect("the client's batches were all answered");
    eprintln!(
        "exactly-once crash test: {ROUNDS} kills, {} batches acknowledged, {} attempts retried",
        delivered.batches, delivered.retries
    );
    // Every kill made at least one attempt fail: the client never stops sending.
    assert!(delivered.retries >= ROUNDS as u64, "seed {seed}");
    assert_eq!(
        counter(&server, "exact"),
        delivered.sum,
        "seed {seed}: the counter is not the sum of the acknowledged batches"
    );
}
