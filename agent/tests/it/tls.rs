//! The agent over TLS (docs/agent.md, "TLS"): `https://` through the test kit's TLS front to
//! the real server, with `CA_FILE` or the system trust store; a server whose certificate does
//! not verify is rejected with one clear line and the report is kept until it does; mTLS
//! accepted and refused; bad TLS settings stop the agent at start with exit code 2.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use golectra_testkit::tls::IdentityFiles;
use golectra_testkit::{Handshake, ServerProcess, TestCa, TlsFront, eventually};

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(30);

/// The real server behind a TLS front presenting a certificate of `ca` for `localhost` and
/// `127.0.0.1`, requiring client certificates of `client_ca` when given.
struct Stack {
    server: ServerProcess,
    front: TlsFront,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(ca: &TestCa, client_ca: Option<&TestCa>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = ServerProcess::start(dir.path(), &[], &[]);
        let front = TlsFront::start(
            &ca.server(&["localhost", "127.0.0.1"]),
            client_ca,
            server.addr,
        );
        Self {
            server,
            front,
            _dir: dir,
        }
    }

    fn poll_count(&self) -> Option<i64> {
        snapshot(&self.server).counter("PollCount")
    }

    /// Waits until the front has seen `n` handshakes.
    fn handshakes(&self, n: usize) -> Vec<Handshake> {
        eventually(WAIT, || {
            let all = self.front.handshakes();
            (all.len() >= n).then_some(all)
        })
        .unwrap_or_else(|| panic!("fewer than {n} handshakes: {:?}", self.front.handshakes()))
    }
}

/// An agent reporting to `url` with these extra settings (env).
fn agent(url: &str, env: &[(&str, &str)]) -> Agent {
    Agent::start_with_env(&[&["-a", url][..], FAST].concat(), env)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Stops the agent and checks that the server holds exactly the polls it made.
fn stop_and_check_exact(agent: &mut Agent, stack: &Stack) {
    let polls = agent.stop_and_count_polls();
    assert!(polls > 0);
    assert_eq!(
        stack.poll_count(),
        Some(polls),
        "agent log:\n{}",
        agent.log()
    );
}

#[test]
fn https_with_ca_file_delivers_exact_poll_counts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Golectra test CA");
    let ca_file = ca.write_cert(dir.path(), "ca");
    let stack = Stack::start(&ca, None);
    // Both names the certificate carries: a DNS name (with SNI) and an IP address.
    for url in [stack.front.localhost_url(), stack.front.url()] {
        let before = stack.poll_count().unwrap_or(0);
        let mut agent = agent(&url, &[("CA_FILE", path(&ca_file))]);
        let line = agent.wait_for_line("starting", WAIT);
        assert!(
            line.contains(&format!(
                "server {url} (verifying the peer against only the CAs in {}, no client certificate)",
                ca_file.display()
            )),
            "{line}"
        );
        eventually(WAIT, || (stack.poll_count()? > before).then_some(()))
            .expect("reports arrive over https");
        let polls = agent.stop_and_count_polls();
        assert_eq!(stack.poll_count(), Some(before + polls), "{}", agent.log());
        assert!(!agent.log().contains("TLS handshake"), "{}", agent.log());
    }
    let all = stack.front.handshakes();
    assert!(!all.is_empty() && all.iter().all(Handshake::ok), "{all:?}");
}

#[test]
fn the_system_trust_store_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("system CA");
    let bundle = ca.write_cert(dir.path(), "bundle");
    let stack = Stack::start(&ca, None);
    // SSL_CERT_FILE names the system trust store (as for OpenSSL): here, the test CA.
    let mut agent = agent(
        &stack.front.localhost_url(),
        &[("SSL_CERT_FILE", path(&bundle))],
    );
    let line = agent.wait_for_line("starting", WAIT);
    assert!(line.contains("the system trust store (1 CAs)"), "{line}");
    eventually(WAIT, || stack.poll_count()).expect("reports arrive over https");
    stop_and_check_exact(&mut agent, &stack);

    // A system store without a usable certificate and no CA_FILE: exit 2 at start.
    let (code, _, err) = golectra_testkit::run(
        agent_binary(),
        &["-a", &stack.front.localhost_url()],
        &[
            ("SSL_CERT_FILE", "/nonexistent/bundle.pem"),
            ("SSL_CERT_DIR", "/nonexistent/certs"),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "CA_FILE (--ca-file) is not set and the system trust store has no usable CA certificate"
        ) && err.contains("set CA_FILE (--ca-file) to the CA"),
        "{err}"
    );
}

#[test]
fn a_server_with_a_certificate_of_another_ca_is_rejected_and_the_report_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, other) = (TestCa::new("trusted CA"), TestCa::new("other CA"));
    let ca_file = trusted.write_cert(dir.path(), "ca");
    // The front presents a certificate the agent does not trust.
    let stack = Stack::start(&other, None);
    let url = stack.front.localhost_url();
    let mut agent = agent(&url, &[("CA_FILE", path(&ca_file))]);
    let line = agent.wait_for_line("TLS handshake with", WAIT);
    assert!(
        line.contains(&format!(
            "TLS handshake with {url} failed: certificate verify failed: UnknownIssuer (the peer's certificate is not accepted by the CAs in CA_FILE (--ca-file) {}); the report is kept and re-sent with the same key",
            ca_file.display()
        )),
        "{line}"
    );
    assert!(line.contains("ERROR"), "{line}");
    // Three failed handshakes (the first attempt and two retries): nothing reached the server,
    // and the failure was logged once.
    stack.handshakes(3);
    assert_eq!(stack.poll_count(), None);
    assert_eq!(agent.log().matches("TLS handshake with").count(), 1);
    // The server gets a certificate of the trusted CA: the kept report and the pending deltas
    // arrive, each poll exactly once.
    stack
        .front
        .set_identity(&trusted.server(&["localhost", "127.0.0.1"]));
    agent.wait_for_log("succeeds again", WAIT);
    eventually(WAIT, || stack.poll_count()).expect("reports arrive once trusted");
    stop_and_check_exact(&mut agent, &stack);
}

#[test]
fn an_https_address_of_a_plain_http_server_is_a_clear_tls_failure() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = TestCa::new("CA").write_cert(dir.path(), "ca");
    // A plain-HTTP server that answers what it cannot parse at once, as most do: the agent's
    // ClientHello gets a 400.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let answered = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut hello = [0u8; 512];
        let n = stream.read(&mut hello).unwrap();
        stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        hello[..n].to_vec()
    });
    let mut agent = agent(&url, &[("CA_FILE", path(&ca_file))]);
    let line = agent.wait_for_line("TLS handshake with", WAIT);
    assert!(
        line.contains(&format!(
            "TLS handshake with {url} failed: received corrupt message of type InvalidContentType (is the peer speaking plain HTTP? then use an http:// address)"
        )),
        "{line}"
    );
    // What the server got was a TLS handshake record, not a request.
    assert_eq!(answered.join().unwrap()[0], 0x16);
    agent.terminate();
}

/// The client identity `name` of `ca`, written to `dir`.
fn client_files(ca: &TestCa, dir: &Path, name: &str) -> IdentityFiles {
    ca.client(name).write(dir, name)
}

#[test]
fn mtls_accepts_a_certificate_of_the_client_ca_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mTLS CA");
    let ca_file = ca.write_cert(dir.path(), "ca");
    let stack = Stack::start(&ca, Some(&ca));
    let url = stack.front.localhost_url();

    // Without a client certificate: refused, logged with the settings to set.
    let mut without = agent(&url, &[("CA_FILE", path(&ca_file))]);
    let line = without.wait_for_line("TLS handshake with", WAIT);
    assert!(
        line.contains("the peer refused the handshake: received fatal alert CertificateRequired (the peer may require a client certificate: set TLS_CLIENT_CERT_FILE (--tls-client-cert-file) and TLS_CLIENT_KEY_FILE (--tls-client-key-file))"),
        "{line}"
    );
    // With a certificate of another CA: refused, naming the certificate file.
    let stranger = client_files(&TestCa::new("stranger CA"), dir.path(), "stranger");
    let mut foreign = agent(
        &url,
        &[
            ("CA_FILE", path(&ca_file)),
            ("TLS_CLIENT_CERT_FILE", path(&stranger.cert)),
            ("TLS_CLIENT_KEY_FILE", path(&stranger.key)),
        ],
    );
    let line = foreign.wait_for_line("TLS handshake with", WAIT);
    assert!(
        line.contains(&format!(
            "the peer does not accept the client certificate in TLS_CLIENT_CERT_FILE (--tls-client-cert-file) {}",
            stranger.cert.display()
        )),
        "{line}"
    );
    let refused = stack.handshakes(2);
    assert!(
        refused.iter().all(|h| !h.ok() && !h.client_cert),
        "{refused:?}"
    );
    assert_eq!(stack.poll_count(), None);
    without.terminate();
    foreign.terminate();

    // With a certificate of the client CA: every report arrives, each poll once.
    let client = client_files(&ca, dir.path(), "agent");
    let mut agent = agent(
        &url,
        &[
            ("CA_FILE", path(&ca_file)),
            ("TLS_CLIENT_CERT_FILE", path(&client.cert)),
            ("TLS_CLIENT_KEY_FILE", path(&client.key)),
        ],
    );
    eventually(WAIT, || stack.poll_count()).expect("reports arrive with the client certificate");
    stop_and_check_exact(&mut agent, &stack);
    let accepted: Vec<Handshake> = stack
        .front
        .handshakes()
        .into_iter()
        .filter(Handshake::ok)
        .collect();
    assert!(
        !accepted.is_empty() && accepted.iter().all(|h| h.client_cert),
        "{accepted:?}"
    );
}

#[test]
fn bad_tls_settings_exit_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("CA");
    let ca_file = ca.write_cert(dir.path(), "ca");
    let client = client_files(&ca, dir.path(), "agent");
    let other = client_files(&ca, dir.path(), "other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let https = ["-a", "https://localhost:1"];
    let (ca_file, garbage, missing) = (path(&ca_file), path(&garbage), path(&missing));
    for (args, env, wanted) in [
        (
            &https[..],
            &[("CA_FILE", missing)][..],
            format!("invalid CA_FILE (--ca-file) value {missing:?}: cannot open"),
        ),
        (
            &https,
            &[("CA_FILE", garbage)],
            format!("invalid CA_FILE (--ca-file) value {garbage:?}: no PEM certificate"),
        ),
        (
            &https,
            &[("CA_FILE", ca_file), ("TLS_CLIENT_CERT_FILE", path(&client.cert))],
            "TLS_CLIENT_CERT_FILE (--tls-client-cert-file) is set but TLS_CLIENT_KEY_FILE (--tls-client-key-file) is not".into(),
        ),
        (
            &["-a", "https://localhost:1", "--tls-client-key-file", path(&client.key)],
            &[("CA_FILE", ca_file)],
            "TLS_CLIENT_KEY_FILE (--tls-client-key-file) is set but TLS_CLIENT_CERT_FILE (--tls-client-cert-file) is not".into(),
        ),
        (
            &https,
            &[
                ("CA_FILE", ca_file),
                ("TLS_CLIENT_CERT_FILE", garbage),
                ("TLS_CLIENT_KEY_FILE", path(&client.key)),
            ],
            format!("invalid TLS_CLIENT_CERT_FILE (--tls-client-cert-file) value {garbage:?}: no PEM certificate"),
        ),
        (
            &https,
            &[
                ("CA_FILE", ca_file),
                ("TLS_CLIENT_CERT_FILE", path(&client.cert)),
                ("TLS_CLIENT_KEY_FILE", garbage),
            ],
            format!("invalid TLS_CLIENT_KEY_FILE (--tls-client-key-file) value {garbage:?}: no PEM private key"),
        ),
        (
            &https,
            &[
                ("CA_FILE", ca_file),
                ("TLS_CLIENT_CERT_FILE", path(&client.cert)),
                ("TLS_CLIENT_KEY_FILE", path(&other.key)),
            ],
            "the key does not belong to the certificate in TLS_CLIENT_CERT_FILE".into(),
        ),
        (
            &["-a", "http://localhost:1"],
            &[("CA_FILE", ca_file)],
            "CA_FILE (--ca-file) is set but ADDRESS (-a) is not an https:// address".into(),
        ),
    ] {
        let (code, _, err) = golectra_testkit::run(agent_binary(), args, env);
        assert_eq!(code, 2, "{args:?} {env:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(&wanted), "{args:?} {env:?}: wanted {wanted:?} in {err}");
    }
}

#[test]
fn end_to_end_over_the_servers_own_tls_listener_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Golectra server CA");
    let other = TestCa::new("Not the server's CA");
    let clients = TestCa::new("Golectra agents CA");
    let server_files = ca
        .server(&["localhost", "127.0.0.1"])
        .write(dir.path(), "server");
    let ca_file = ca.write_cert(dir.path(), "ca");
    let other_file = other.write_cert(dir.path(), "other");
    let clients_file = clients.write_cert(dir.path(), "clients");
    let agent_identity = clients.client("agent-1");
    let agent_files = agent_identity.write(dir.path(), "agent");
    let server = ServerProcess::start(
        dir.path(),
        &[],
        &[
            ("TLS_CERT_FILE", path(&server_files.cert)),
            ("TLS_KEY_FILE", path(&server_files.key)),
            ("TLS_CLIENT_CA_FILE", path(&clients_file)),
        ],
    );
    assert_eq!(server.scheme, "https");
    let url = format!("https://localhost:{}", server.addr.port());
    let poll_count = || {
        let reader = ca.https_client(Some(&agent_identity));
        let mut answer = reader
            .get(format!("{url}/value/counter/PollCount"))
            .call()
            .unwrap();
        let status = answer.status().as_u16();
        let body = answer.body_mut().read_to_string().unwrap();
        (status == 200).then(|| body.trim().parse::<i64>().unwrap())
    };
    let client_cert = [
        ("TLS_CLIENT_CERT_FILE", path(&agent_files.cert)),
        ("TLS_CLIENT_KEY_FILE", path(&agent_files.key)),
    ];

    // No client certificate: the server refuses the handshake, the agent says why.
    let mut anonymous = agent(&url, &[("CA_FILE", path(&ca_file))]);
    let line = anonymous.wait_for_line("TLS handshake with", WAIT);
    assert!(line.contains("CertificateRequired"), "{line}");
    // A server certificate the agent does not trust: the agent refuses it.
    let mut suspicious = agent(
        &url,
        &[&[("CA_FILE", path(&other_file))][..], &client_cert].concat(),
    );
    let line = suspicious.wait_for_line("TLS handshake with", WAIT);
    assert!(line.contains("UnknownIssuer"), "{line}");
    assert_eq!(poll_count(), None, "nothing was delivered");

    // The right CA and a client certificate: exact totals over the server's own TLS.
    let mut good = agent(
        &url,
        &[&[("CA_FILE", path(&ca_file))][..], &client_cert].concat(),
    );
    eventually(WAIT, poll_count).expect("reports arrive over the server's TLS listener");
    let polls = good.stop_and_count_polls();
    assert!(!good.log().contains("TLS handshake"), "{}", good.log());
    for refused in [&mut anonymous, &mut suspicious] {
        let (code, log) = refused.terminate();
        assert_eq!(code, 0, "{log}");
    }
    assert_eq!(
        poll_count(),
        Some(polls),
        "only the trusted agent's polls, exactly"
    );
}
