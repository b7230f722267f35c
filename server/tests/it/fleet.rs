//! A fleet on one server (SPEC §4.1, docs/agent.md "Tags and fleets"): real agents with
//! `TAGS=host=…` against the real server, whose metrics stay apart and whose `PollCount`s are
//! exact per host (the agent's `stopped after N polls; …` line, as in `exactly_once`), a `TAGS`
//! change across a restart with a state file, and tagged names through every API and store —
//! the text API raw and percent-encoded in any tag order, the JSON API, the snapshot file and
//! its restore, PostgreSQL.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use golectra_testkit::{
    Client, Daemon, ServerProcess, agent_binary, eventually, free_port, fresh_postgres_dsn,
};

use crate::exactly_once::{FAST, Stopped, WAIT, stop_agent};

/// Starts the agent with the short intervals and `env` (`TAGS`…) against `server` and waits for
/// its first poll.
fn start_tagged(bin: &Path, dir: &Path, server: &str, env: &[(&str, &str)]) -> Daemon {
    let args = [&["-a", server][..], FAST].concat();
    let mut agent = Daemon::spawn(bin, dir, &args, env);
    agent.wait_for_log("collecting", WAIT);
    agent
}

/// `GET /value/{kind}/{name}`: the text, or `None` for a 404.
fn value(c: &Client, kind: &str, name: &str) -> Option<String> {
    let r = c.get(&format!("/value/{kind}/{name}"));
    match r.status {
        200 => Some(r.text()),
        404 => None,
        status => panic!("GET /value/{kind}/{name}: {status} {}", r.text()),
    }
}

/// A counter's total, 0 when it does not exist.
fn counter(c: &Client, name: &str) -> i64 {
    value(c, "counter", name).map_or(0, |t| t.parse().expect("an integer"))
}

/// Waits until counter `name` is above 0.
fn wait_counted(c: &Client, name: &str, agent: &Daemon) {
    eventually(WAIT, || (counter(c, name) > 0).then_some(())).unwrap_or_else(|| {
        panic!(
            "no {name} on the server within {WAIT:?}; agent log:\n{}",
            agent.log()
        )
    });
}

/// Every name of `GET /api/v1/snapshot` as `(type, name)`.
fn stored_names(c: &Client) -> BTreeSet<(String, String)> {
    let snapshot = c.get("/api/v1/snapshot").json();
    let mut names = BTreeSet::new();
    for (kind, key) in [("gauge", "gauges"), ("counter", "counters")] {
        let map = snapshot[key].as_object().expect("a map of names");
        names.extend(map.keys().map(|name| (kind.to_owned(), name.clone())));
    }
    names
}

/// The base names the snapshot holds with the tag `;host=<host>` (the agent's only tag).
fn base_names_of(names: &BTreeSet<(String, String)>, host: &str) -> BTreeSet<(String, String)> {
    let suffix = format!(";host={host}");
    names
        .iter()
        .filter_map(|(kind, name)| Some((kind.clone(), name.strip_suffix(&suffix)?.to_owned())))
        .collect()
}

#[test]
fn two_tagged_agents_on_one_server_stay_apart_and_count_every_poll_once() {
    let Some(bin) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[], &[]);
    let c = server.client();
    let mut a = start_tagged(&bin, dir.path(), &server.url(), &[("TAGS", "host=a")]);
    let mut b = start_tagged(&bin, dir.path(), &server.url(), &[("TAGS", "host=b")]);
    wait_counted(&c, "PollCount;host=a", &a);
    wait_counted(&c, "PollCount;host=b", &b);
    let (run_a, run_b): (Stopped, Stopped) = (stop_agent(&mut a), stop_agent(&mut b));
    assert!(run_a.delivered, "{run_a:?}\n{}", a.log());
    assert!(run_b.delivered, "{run_b:?}\n{}", b.log());
    assert!(a.log().contains(", tags host=a\n"), "{}", a.log());

    // Each host's PollCount is its own, and exactly the polls that agent made.
    assert_eq!(counter(&c, "PollCount;host=a"), run_a.polls, "{}", a.log());
    assert_eq!(counter(&c, "PollCount;host=b"), run_b.polls, "{}", b.log());
    for host in ["a", "b"] {
        let alloc: f64 = value(&c, "gauge", &format!("Alloc;host={host}"))
            .expect("Alloc of each host")
            .parse()
            .unwrap();
        assert!(alloc > 0.0, "Alloc;host={host} = {alloc}");
    }
    // Every metric either agent sent carries its tag: nothing under a plain name, and both
    // hosts sent the same set of metrics.
    let names = stored_names(&c);
    let (of_a, of_b) = (base_names_of(&names, "a"), base_names_of(&names, "b"));
    assert_eq!(of_a.len() + of_b.len(), names.len(), "{names:#?}");
    assert_eq!(of_a, of_b);
    for (kind, base) in [
        ("counter", "PollCount"),
        ("gauge", "Alloc"),
        ("gauge", "RandomValue"),
        ("gauge", "TotalMemory"),
        ("gauge", "CPUutilization1"),
    ] {
        assert!(
            of_a.contains(&(kind.to_owned(), base.to_owned())),
            "{kind} {base}: {of_a:#?}"
        );
    }
    assert_eq!(of_a.len(), 27 + 1 + 2 + 1 + cpus(&of_a), "{of_a:#?}");
    assert_eq!(value(&c, "counter", "PollCount"), None);
    assert_eq!(value(&c, "gauge", "Alloc"), None);
}

/// The number of `CPUutilizationN` gauges among `names`.
fn cpus(names: &BTreeSet<(String, String)>) -> usize {
    names
        .iter()
        .filter(|(_, n)| n.starts_with("CPUutilization"))
        .count()
}

#[test]
fn deltas_saved_under_old_tags_are_delivered_once_under_those_names_after_a_change() {
    let Some(bin) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agent-state.json");
    let state_env = ("STATE_FILE", state.to_str().expect("a UTF-8 path"));
    // Run 1 reports to a port nobody listens on: its first report goes in doubt, the polls after
    // it stay pending (a sender holds the report), and both are saved at the stop.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let env = [
        ("TAGS", "host=old"),
        ("RUST_LOG", "golectra_agent=debug"),
        state_env,
    ];
    let mut first = start_tagged(&bin, dir.path(), &nowhere, &env);
    // The first attempt and its re-send a second later: polls were made in between.
    let failed = format!("POST {nowhere}/updates/");
    eventually(WAIT, || {
        (first.log().matches(&failed).count() >= 2).then_some(())
    })
    .unwrap_or_else(|| panic!("no second {failed:?}:\n{}", first.log()));
    let run_1 = stop_agent(&mut first);
    assert!(
        !run_1.delivered && run_1.in_doubt > 0 && run_1.pending > 0 && run_1.lost == 0,
        "{run_1:?}\n{}",
        first.log()
    );
    assert_eq!(run_1.pending + run_1.in_doubt, run_1.polls);
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains(r#""PollCount;host=old": "#), "{saved}");

    // Run 2, with other tags, against a server: the report in doubt goes out as it was, the
    // pending deltas under their old name, the new polls under the new one.
    let server = ServerProcess::start(dir.path(), &[], &[]);
    let c = server.client();
    let env = [("TAGS", "host=new"), state_env];
    let mut second = start_tagged(&bin, dir.path(), &server.url(), &env);
    second.wait_for_log(
        &format!(
            "{} polls pending, 1 batches in doubt ({} polls)",
            run_1.pending, run_1.in_doubt
        ),
        WAIT,
    );
    eventually(WAIT, || {
        (counter(&c, "PollCount;host=old") == run_1.polls).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "PollCount;host=old is {}, not {run_1:?}; agent log:\n{}",
            counter(&c, "PollCount;host=old"),
            second.log()
        )
    });
    let run_2 = stop_agent(&mut second);
    assert!(run_2.delivered, "{run_2:?}\n{}", second.log());
    assert_eq!(counter(&c, "PollCount;host=old"), run_1.polls);
    assert_eq!(counter(&c, "PollCount;host=new"), run_2.polls);
    assert_eq!(value(&c, "counter", "PollCount"), None);
    // The report in doubt carried run 1's gauges under run 1's tags.
    assert!(value(&c, "gauge", "Alloc;host=old").is_some());
    assert!(value(&c, "gauge", "Alloc;host=new").is_some());
}

/// One request on a raw socket, so the path reaches the server exactly as written: the status
/// and the body.
fn raw(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply[9..12].parse().unwrap();
    let body = reply
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// `Alloc;dc=eu;host=web1`, the canonical form every spelling below stands for.
const ALLOC: &str = "Alloc;dc=eu;host=web1";

/// Writes tagged names through the text and JSON APIs in both tag orders, raw and
/// percent-encoded, and reads them back in every spelling: each spelling is one metric.
fn round_trip(server: &ServerProcess) {
    let (addr, c) = (server.addr, server.client());
    assert_eq!(
        raw(addr, "POST", "/update/gauge/Alloc;host=web1;dc=eu/1.5").0,
        200
    );
    for path in [
        "/value/gauge/Alloc%3Bdc%3Deu%3Bhost%3Dweb1",
        "/value/gauge/Alloc%3bhost%3dweb1%3bdc%3deu",
        "/value/gauge/Alloc;dc=eu;host=web1",
        "/value/gauge/Alloc;host=web1;dc=eu",
    ] {
        assert_eq!(raw(addr, "GET", path), (200, "1.5".to_owned()), "{path}");
        assert_eq!(c.get(path).text(), "1.5", "{path}");
    }
    assert_eq!(
        raw(
            addr,
            "POST",
            "/update/counter/PollCount%3Bhost%3Dweb1%3Bdc%3Deu/2"
        )
        .0,
        200
    );
    assert_eq!(
        raw(addr, "POST", "/update/counter/PollCount;dc=eu;host=web1/3").0,
        200
    );
    assert_eq!(counter(&c, "PollCount;host=web1;dc=eu"), 5);
    // The JSON API answers with the canonical name.
    let r = c.post_json(
        "/update/",
        r#"{"id":"Hits;host=web1;dc=eu","type":"counter","delta":4}"#,
    );
    assert_eq!(
        r.json(),
        serde_json::json!({"id":"Hits;dc=eu;host=web1","type":"counter","delta":4})
    );
    let r = c.post_json(
        "/updates/",
        r#"[{"id":"Hits;dc=eu;host=web1","type":"counter","delta":1},
            {"id":"Temp;host=web1;dc=eu","type":"gauge","value":21.5},
            {"id":"Temp;dc=eu;host=web1","type":"gauge","value":22.5}]"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.post_json(
        "/value/",
        r#"{"id":"Hits;host=web1;dc=eu","type":"counter"}"#,
    );
    assert_eq!(
        r.json(),
        serde_json::json!({"id":"Hits;dc=eu;host=web1","type":"counter","delta":5})
    );
    let r = c.post_json("/value/", r#"{"id":"Temp;host=web1;dc=eu","type":"gauge"}"#);
    assert_eq!(
        r.json(),
        serde_json::json!({"id":"Temp;dc=eu;host=web1","type":"gauge","value":22.5}),
        "the last gauge of the batch wins, whatever its spelling"
    );
    // A name with ';' that is not tag syntax is plain, stored as sent.
    assert_eq!(raw(addr, "POST", "/update/gauge/odd;tag/7").0, 200);
    assert_eq!(value(&c, "gauge", "odd%3Btag").as_deref(), Some("7"));
    assert_eq!(stored_names(&c), expected_names());
}

/// What [`round_trip`] leaves, by `(type, name)`.
fn expected_names() -> BTreeSet<(String, String)> {
    [
        ("counter", "Hits;dc=eu;host=web1"),
        ("counter", "PollCount;dc=eu;host=web1"),
        ("gauge", ALLOC),
        ("gauge", "Temp;dc=eu;host=web1"),
        ("gauge", "odd;tag"),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n.to_owned()))
    .collect()
}

/// What [`round_trip`] wrote, read back after a restart.
fn read_back(c: &Client) {
    assert_eq!(
        value(c, "gauge", "Alloc;host=web1;dc=eu").as_deref(),
        Some("1.5")
    );
    assert_eq!(
        value(c, "gauge", "Alloc%3Bdc%3Deu%3Bhost%3Dweb1").as_deref(),
        Some("1.5")
    );
    assert_eq!(counter(c, "PollCount;host=web1;dc=eu"), 5);
    assert_eq!(counter(c, "Hits;dc=eu;host=web1"), 5);
    assert_eq!(
        value(c, "gauge", "Temp;host=web1;dc=eu").as_deref(),
        Some("22.5")
    );
    assert_eq!(stored_names(c), expected_names());
}

#[test]
fn tagged_names_round_trip_through_the_apis_the_snapshot_file_and_a_restore() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[], &[]);
    round_trip(&server);
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    // The snapshot keeps the original's format: the canonical name is an ordinary `id`.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("metrics-db.json")).unwrap())
            .unwrap();
    // Each entry also carries its last-write time, which the original's loader ignores.
    let entries: Vec<serde_json::Value> = file
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| {
            let mut e = e.clone();
            let updated = e.as_object_mut().unwrap().remove("updated");
            assert!(updated.is_some_and(|t| t.is_u64()), "{e}");
            e
        })
        .collect();
    assert!(
        entries.contains(&serde_json::json!({"id": ALLOC, "type": "gauge", "value": 1.5})),
        "{file}"
    );
    assert!(
        entries.contains(
            &serde_json::json!({"id": "PollCount;dc=eu;host=web1", "type": "counter", "delta": 5})
        ),
        "{file}"
    );
    assert_eq!(entries.len(), 5, "{file}");
    let server = ServerProcess::start(dir.path(), &["-r"], &[]);
    read_back(&server.client());
}

#[test]
fn tagged_names_round_trip_through_postgresql() {
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["-d", &db.dsn], &[]);
    round_trip(&server);
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    // One row per canonical name.
    let mut sql = db.connect();
    let mut names = |table: &str| -> Vec<String> {
        sql.query(&format!("SELECT name FROM {table} ORDER BY name"), &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    assert_eq!(
        names("golectra_gauges"),
        [ALLOC, "Temp;dc=eu;host=web1", "odd;tag"]
    );
    assert_eq!(
        names("golectra_counters"),
        ["Hits;dc=eu;host=web1", "PollCount;dc=eu;host=web1"]
    );
    let server = ServerProcess::start(dir.path(), &["-d", &db.dsn], &[]);
    read_back(&server.client());
}
