use std::time::Duration;

use super::*;
use crate::{Fake, eventually};

fn client(ca: &TestCa, client: Option<&Identity>) -> ureq::Agent {
    ca.https_client(client)
}

fn handshakes(front: &TlsFront, n: usize) -> Vec<Handshake> {
    eventually(Duration::from_secs(10), || {
        let all = front.handshakes();
        (all.len() >= n).then_some(all)
    })
    .unwrap_or_else(|| panic!("fewer than {n} handshakes: {:?}", front.handshakes()))
}

#[test]
fn forwards_https_to_the_plain_upstream_under_both_names() {
    let ca = TestCa::new("front test CA");
    let upstream = Fake::start(|_, _| 200);
    let front = TlsFront::start(&ca.server(&["localhost", "127.0.0.1"]), None, upstream.addr);
    let agent = client(&ca, None);
    for (i, url) in [front.url(), front.localhost_url()].iter().enumerate() {
        let mut response = agent
            .post(&format!("{url}/update/counter/c/{i}"))
            .send("body")
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.body_mut().read_to_string().unwrap(), "{}");
    }
    let seen = upstream.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/update/counter/c/0", "/update/counter/c/1"]);
    assert_eq!(seen[0].text(), "body");
    let all = front.handshakes();
    assert!(all.iter().all(|h| h.ok() && !h.client_cert), "{all:?}");
}

#[test]
fn a_client_that_does_not_trust_the_identity_fails_and_nothing_is_forwarded() {
    let (ca, other) = (TestCa::new("front CA"), TestCa::new("another CA"));
    let upstream = Fake::start(|_, _| 200);
    let front = TlsFront::start(&ca.server(&["127.0.0.1"]), None, upstream.addr);
    let err = client(&other, None)
        .get(&format!("{}/ping", front.url()))
        .call()
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // The client gives up (rustls says why on its side; the front sees an alert or the end).
    let all = handshakes(&front, 1);
    assert!(all[0].error.is_some(), "{all:?}");
    assert!(upstream.seen().is_empty());
    // Switched to an identity of the other CA, the same client gets through.
    front.set_identity(&other.server(&["127.0.0.1"]));
    let response = client(&other, None)
        .get(&format!("{}/ping", front.url()))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.seen().len(), 1);
}

#[test]
fn client_certificates_are_required_and_recorded() {
    let ca = TestCa::new("mTLS CA");
    let upstream = Fake::start(|_, _| 200);
    let front = TlsFront::start(&ca.server(&["127.0.0.1"]), Some(&ca), upstream.addr);
    let url = format!("{}/ping", front.url());
    let without = client(&ca, None).get(&url).call().unwrap_err();
    assert!(
        without.to_string().contains("CertificateRequired"),
        "{without}"
    );
    let stranger = TestCa::new("stranger").client("intruder");
    let foreign = client(&ca, Some(&stranger)).get(&url).call().unwrap_err();
    assert!(foreign.to_string().contains("fatal alert"), "{foreign}");
    let ok = client(&ca, Some(&ca.client("agent")))
        .get(&url)
        .call()
        .unwrap();
    assert_eq!(ok.status(), 200);
    let all = handshakes(&front, 3);
    assert_eq!(
        all.iter()
            .map(|h| (h.ok(), h.client_cert))
            .collect::<Vec<_>>(),
        [(false, false), (false, false), (true, true)],
        "{all:?}"
    );
    assert_eq!(all[0].error.as_deref(), Some("peer sent no certificates"));
    assert_eq!(
        all[1].error.as_deref(),
        Some("invalid peer certificate: UnknownIssuer")
    );
    assert_eq!(upstream.seen().len(), 1);
}

#[test]
fn plain_http_on_the_front_fails_the_handshake() {
    let ca = TestCa::new("front CA");
    let upstream = Fake::start(|_, _| 200);
    let front = TlsFront::start(&ca.server(&["127.0.0.1"]), None, upstream.addr);
    let mut tcp = TcpStream::connect(front.addr).unwrap();
    tcp.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    let all = handshakes(&front, 1);
    assert!(all[0].error.is_some(), "{all:?}");
    assert!(upstream.seen().is_empty());
}
