//! Servers behind a load balancer (docs/postgresql.md, "Servers behind a load balancer"): two
//! servers on one database behind HAProxy, run with the example configuration the project
//! ships (`docs/examples/haproxy.cfg`, its addresses replaced by this test's ports), two real
//! agents reporting through it. One server is killed (`kill -9`) mid-run: the health checks on
//! `/ping` take it out, the agents keep reporting through the other, and `PollCount` is exactly
//! the polls the agents say they made. The server started again is taken back.

use std::net::TcpStream;

use golectra_testkit::{
    Client, Daemon, ServerProcess, agent_binary, eventually, free_port, fresh_postgres_dsn,
    require_tool, workspace_root,
};

use crate::exactly_once::{FAST, WAIT, poll_count, start_agent, stop_agent};

/// The example configuration with the test's ports: front end, the two servers, statistics.
fn config(front: u16, a: &ServerProcess, b: &ServerProcess, stats: u16) -> String {
    let example = std::fs::read_to_string(workspace_root().join("docs/examples/haproxy.cfg"))
        .expect("docs/examples/haproxy.cfg");
    let replace = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "the example has no {from:?}");
        text.replace(from, to)
    };
    let text = replace(example, "bind :8080", &format!("bind 127.0.0.1:{front}"));
    let text = replace(text, "127.0.0.1:8081", &a.addr.to_string());
    let text = replace(text, "127.0.0.1:8082", &b.addr.to_string());
    let text = replace(text, "127.0.0.1:8404", &format!("127.0.0.1:{stats}"));
    // The test keeps a daemon's stderr, not its stdout.
    replace(text, "log stdout", "log stderr")
}

/// The status HAProxy gives each server (`UP`, `DOWN`, …), from its statistics in CSV.
fn states(stats: u16) -> Vec<(String, String)> {
    column_of_servers(stats, "status")
}

/// Sessions HAProxy sent to each server so far.
fn sessions(stats: u16) -> Vec<(String, u64)> {
    column_of_servers(stats, "stot")
        .into_iter()
        .map(|(server, n)| (server, n.parse().expect("a number")))
        .collect()
}

/// One column of HAProxy's statistics (CSV) for each server of the back end.
fn column_of_servers(stats: u16, name: &str) -> Vec<(String, String)> {
    let r = Client::new(([127, 0, 0, 1], stats).into()).get("/stats;csv");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let column = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (px, sv, status) = (column("pxname"), column("svname"), column(name));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&"golectra-servers"))
        .filter(|f| !matches!(f.get(sv), Some(&"FRONTEND" | &"BACKEND")))
        .map(|f| (f[sv].to_owned(), f[status].to_owned()))
        .collect()
}

fn wait_states(stats: u16, want: &[(&str, &str)], haproxy: &Daemon) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(s, st)| ((*s).to_owned(), (*st).to_owned()))
        .collect();
    eventually(WAIT, || (states(stats) == want).then_some(())).unwrap_or_else(|| {
        panic!(
            "HAProxy's servers are {:?}, not {want:?}:\n{}",
            states(stats),
            haproxy.log()
        )
    });
}

#[test]
fn agents_keep_reporting_through_the_balancer_when_a_server_is_killed() {
    if !require_tool("haproxy", "haproxy") {
        return;
    }
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let Some(agent_bin) = agent_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server_args = ["-d", db.dsn.as_str(), "-w", "4"];
    let a = ServerProcess::start(dir.path(), &server_args, &[]);
    let b = ServerProcess::start(dir.path(), &server_args, &[]);
    let (front, stats) = (free_port(), free_port());
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, config(front, &a, &b, stats)).unwrap();
    let mut haproxy = Daemon::spawn(
        "haproxy",
        dir.path(),
        &["-db", "-f", cfg.to_str().unwrap()],
        &[],
    );
    eventually(WAIT, || TcpStream::connect(("127.0.0.1", stats)).ok())
        .unwrap_or_else(|| panic!("HAProxy does not listen:\n{}", haproxy.log()));
    wait_states(
        stats,
        &[("golectra-a", "UP"), ("golectra-b", "UP")],
        &haproxy,
    );

    let balancer = format!("http://127.0.0.1:{front}");
    let mut agents = [
        start_agent(&agent_bin, dir.path(), &balancer, None, FAST),
        start_agent(&agent_bin, dir.path(), &balancer, None, FAST),
    ];
    let through = |above: i64| {
        eventually(WAIT, || {
            let n = poll_count(&b);
            (n > above).then_some(n)
        })
        .unwrap_or_else(|| panic!("PollCount stayed at {above}:\n{}", haproxy.log()))
    };
    let before = through(20);
    let served = sessions(stats);
    assert!(served.iter().all(|(_, n)| *n > 0), "{served:?}");

    // kill -9 of one server mid-run: out of the pool, reporting goes on through the other.
    let a_addr = a.addr;
    a.kill9();
    wait_states(
        stats,
        &[("golectra-a", "DOWN"), ("golectra-b", "UP")],
        &haproxy,
    );
    let after_kill = through(before + 20);

    // Started again on its address, it is taken back.
    let a = ServerProcess::start_on(dir.path(), &a_addr.to_string(), &server_args, &[]);
    wait_states(
        stats,
        &[("golectra-a", "UP"), ("golectra-b", "UP")],
        &haproxy,
    );
    through(after_kill + 10);

    let polls: i64 = agents
        .iter_mut()
        .map(|agent| {
            let stopped = stop_agent(agent);
            assert!(stopped.delivered, "{stopped:?}\n{}", agent.log());
            stopped.polls
        })
        .sum();
    assert_eq!(poll_count(&a), polls, "{}", haproxy.log());
    assert_eq!(poll_count(&b), polls);
    let _ = haproxy.terminate();
    for server in [a, b] {
        let (code, log) = server.terminate();
        assert_eq!(code, 0, "{log}");
    }
}
