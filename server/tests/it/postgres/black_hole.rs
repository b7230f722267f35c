//! A database behind a network that silently drops every packet (docs/postgresql.md, "When the
//! database goes away"). The server runs in a private network namespace and reaches PostgreSQL
//! through a TCP relay listening on `127.0.0.2` there; the test makes the namespace's kernel drop
//! everything to and from that address. Then every write must get a definite `503` within a
//! bounded time, the watchdog's own health probe must keep getting definite answers, and once
//! packets flow again every write re-sent with its key must be applied exactly once.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use golectra_server::health::{self, Health};
use golectra_testkit::database::through;
use golectra_testkit::{
    Client, PrivateNetwork, ServerProcess, TcpRelay, eventually, fresh_postgres_dsn, require_root,
    require_tool,
};

/// The loopback address whose packets are dropped.
const HOLE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Workers of the server: 3 store slots, one worker in reserve.
const WORKERS: &str = "4";

/// Concurrent writers while the database is unreachable (more than the slots).
const WRITERS: usize = 6;

/// Writes each writer sends, one after another.
const WRITES_EACH: usize = 2;

/// The longest a write may take to be answered (docs/postgresql.md, "How long one write can
/// take": 35 s for one call on a silent network, 48 s for a batch that queued behind a round).
const WRITE_BOUND: Duration = Duration::from_secs(48);

/// The longest a health probe may take: less than the watchdog's own probe timeout (half of
/// `WatchdogSec=30s`) with room to spare (docs/postgresql.md: a wait of at most 5 s for a store
/// slot, then at most 4 s for the connection test).
const PROBE_BOUND: Duration = Duration::from_secs(10);

fn upstream(dsn: &str) -> SocketAddr {
    let config: postgres::Config = dsn.parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host.as_str(), port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .expect("the test database's address")
}

fn batch(key: &str) -> (Vec<(String, String)>, Vec<u8>) {
    (
        vec![("Idempotency-Key".into(), key.into())],
        br#"[{"id":"hits","type":"counter","delta":1}]"#.to_vec(),
    )
}

fn post_keyed(c: &Client, key: &str) -> (u16, String) {
    let (headers, body) = batch(key);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = c.request("POST", "/updates", &headers, &body);
    (r.status, r.text())
}

#[test]
fn a_black_holed_database_gets_bounded_503s_while_ping_answers() {
    if !require_root("a private network namespace")
        || !require_tool("unshare", "util-linux")
        || !require_tool("nsenter", "util-linux")
        || !require_tool("ip", "iproute2")
    {
        return;
    }
    let Some(db) = fresh_postgres_dsn() else {
        return;
    };
    let net = PrivateNetwork::create();
    let relay = TcpRelay::start(net.bind(SocketAddr::from((HOLE, 0))), upstream(&db.dsn));
    let dsn = through(&db.dsn, relay.addr());
    // From here on everything runs in the namespace: the server and the clients that reach it.
    std::thread::scope(|s| {
        s.spawn(|| {
            net.enter();
            scenario(&net, &dsn);
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
    drop(relay);
}

fn scenario(net: &PrivateNetwork, dsn: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &["-d", dsn, "-w", WORKERS], &[]);
    let c = server.client();
    assert_eq!(post_keyed(&c, "before").0, 200);
    assert_eq!(health::probe(server.addr, PROBE_BOUND), Ok(Health::Serving));

    net.drop_packets(HOLE, true);
    let stop = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(Mutex::new(Vec::new()));
    let pinger = {
        let (stop, probes, addr) = (stop.clone(), probes.clone(), server.addr);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let started = Instant::now();
                let answer = health::probe(addr, PROBE_BOUND * 2);
                probes.lock().unwrap().push((started.elapsed(), answer));
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let c = server.client();
            std::thread::spawn(move || {
                (0..WRITES_EACH)
                    .map(|i| {
                        let key = format!("writer{w}.{i}");
                        let started = Instant::now();
                        let answer = post_keyed(&c, &key);
                        (key, started.elapsed(), answer)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let writes: Vec<_> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, Ordering::Release);
    pinger.join().unwrap();
    let longest = writes.iter().map(|(_, took, _)| *took).max().unwrap();
    eprintln!(
        "black hole: the slowest of {} writes was answered after {longest:?}",
        writes.len()
    );

    // (1) Every write got a definite 503 within the bound, some from the store slots at once.
    for (key, took, (status, text)) in &writes {
        assert_eq!(*status, 503, "{key}: {text}");
        assert!(*took <= WRITE_BOUND, "{key} took {took:?}: {text}");
    }
    let refused_at_once = writes
        .iter()
        .filter(|(_, _, (_, text))| text.contains("requests the store may serve at once"))
        .count();
    let gave_up = writes
        .iter()
        .filter(|(_, _, (_, text))| text.starts_with("store unavailable: PostgreSQL at "))
        .count();
    assert!(refused_at_once > 0 && gave_up > 0, "{writes:?}");
    assert_eq!(refused_at_once + gave_up, writes.len(), "{writes:?}");

    // (2) The watchdog's probe never went unanswered: a prompt 503 every time.
    let probes = probes.lock().unwrap();
    let slowest = probes
        .iter()
        .map(|(took, _)| *took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "black hole: the slowest of {} health probes took {slowest:?}",
        probes.len()
    );
    assert!(probes.len() >= 10, "{probes:?}");
    for (took, answer) in probes.iter() {
        assert!(
            matches!(answer, Ok(Health::StoreUnavailable(_))),
            "{answer:?} after {took:?}"
        );
        assert!(*took <= PROBE_BOUND, "{answer:?} after {took:?}");
    }
    assert!(server.daemon.is_running());

    // (3) Packets flow again: each write is re-sent with its key until it is applied, as the
    // agent does, and the total counts every write once.
    net.drop_packets(HOLE, false);
    for (key, _, _) in &writes {
        eventually(Duration::from_secs(60), || {
            (post_keyed(&c, key).0 == 200).then_some(())
        })
        .unwrap_or_else(|| panic!("{key} not applied after the database came back"));
    }
    assert_eq!(health::probe(server.addr, PROBE_BOUND), Ok(Health::Serving));
    assert_eq!(
        c.get("/value/counter/hits").text(),
        (1 + writes.len()).to_string()
    );
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
}
