//! Deletes (docs/http-api.md, "Deletes"): by type and name, by matcher or by exact name of
//! either type, on both stores; who may delete (loopback peers without `ADMIN_TOKEN`, the
//! bearer token with it, never a forwarded request by loopback alone, never a remote peer
//! without the token — a real non-loopback peer through a veth pair into a network namespace);
//! and the audit event of each delete.

use std::path::Path;
use std::time::Duration;

use golectra_testkit::{Client, PrivateNetwork, eventually, require_root, require_tool};

use crate::harness::{Backend, TestServer, backends};

const TOKEN: &str = "s3cret-admin-token-42";

fn fleet(c: &Client) {
    let body = r#"[
        {"id":"Alloc;host=web1","type":"gauge","value":1.5},
        {"id":"Alloc;dc=eu;host=web2","type":"gauge","value":2.5},
        {"id":"Alloc","type":"gauge","value":3.5},
        {"id":"PollCount;host=web1","type":"counter","delta":4},
        {"id":"PollCount;host=web2","type":"counter","delta":5},
        {"id":"Alloc;host=web1","type":"counter","delta":6}
    ]"#;
    assert_eq!(c.post_json("/updates", body).status, 200);
}

fn delete(c: &Client, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = c.request("DELETE", path, headers, b"");
    (r.status, r.text())
}

fn names(c: &Client) -> (Vec<String>, Vec<String>) {
    let snap = c.get("/api/v1/snapshot").json();
    let keys = |kind: &str| {
        snap[kind]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    (keys("gauges"), keys("counters"))
}

#[test]
fn one_metric_by_type_and_name_raw_or_percent_encoded() {
    for backend in backends() {
        let s = TestServer::start(backend);
        let c = s.client();
        fleet(&c);
        // The tags in another order and percent-encoded address the same metric.
        let path = "/value/gauge/Alloc%3Bhost%3Dweb2%3Bdc%3Deu";
        assert_eq!(delete(&c, path, &[]), (200, "1".into()), "{backend:?}");
        assert_eq!(c.get("/value/gauge/Alloc;dc=eu;host=web2").status, 404);
        assert_eq!(
            delete(&c, path, &[]),
            (200, "0".into()),
            "{backend:?}: idempotent"
        );
        // The counter of the same name stays when the gauge goes.
        assert_eq!(delete(&c, "/value/gauge/Alloc;host=web1", &[]).0, 200);
        assert_eq!(c.get("/value/counter/Alloc;host=web1").text(), "6");
        assert_eq!(
            names(&c),
            (
                vec!["Alloc".to_string()],
                vec![
                    "Alloc;host=web1".to_string(),
                    "PollCount;host=web1".into(),
                    "PollCount;host=web2".into()
                ]
            ),
            "{backend:?}"
        );
        // Bad requests change nothing.
        assert_eq!(delete(&c, "/value/histogram/Alloc", &[]).0, 400);
        assert_eq!(delete(&c, "/value/gauge/", &[]).0, 404);
        assert_eq!(c.get("/value/gauge/Alloc").text(), "3.5");
    }
}

#[test]
fn series_by_matcher_or_by_exact_name() {
    for backend in backends() {
        let s = TestServer::start(backend);
        let c = s.client();
        fleet(&c);
        let series = |query: &str| delete(&c, &format!("/api/v1/series?{query}"), &[]);
        // A host's gauges only; its counters stay.
        assert_eq!(
            series("match=host=web1&type=gauge"),
            (200, r#"{"removed":1}"#.into()),
            "{backend:?}"
        );
        // Two terms are ANDed, percent-encoded or raw.
        assert_eq!(
            series("match=host%3Dweb2&match=__name__=Alloc"),
            (200, r#"{"removed":1}"#.into())
        );
        assert_eq!(c.get("/value/counter/PollCount;host=web2").text(), "5");
        // Every metric of a host, both types.
        assert_eq!(series("match=host=web2"), (200, r#"{"removed":1}"#.into()));
        // One exact name, both types (the plain name, not its tagged relatives).
        assert_eq!(
            series("name=Alloc%3Bhost%3Dweb1"),
            (200, r#"{"removed":1}"#.into())
        );
        assert_eq!(
            names(&c),
            (
                vec!["Alloc".to_string()],
                vec!["PollCount;host=web1".to_string()]
            ),
            "{backend:?}"
        );
        assert_eq!(
            series("match=host=nowhere"),
            (200, r#"{"removed":0}"#.into())
        );
        // Never everything, never a malformed selection.
        for (query, says) in [
            ("", "never deletes everything"),
            ("type=gauge", "never deletes everything"),
            ("match=host", "not key=value"),
            ("match=ho-st=a", "must be a tag key"),
            ("match=host=a&name=Alloc", "not both"),
            ("type=histogram&name=Alloc", "unknown metric type"),
            ("everything=yes", "unknown parameter"),
        ] {
            let (status, text) = series(query);
            assert_eq!(status, 400, "{query}: {text}");
            assert!(text.contains(says), "{query}: {text}");
        }
        assert_eq!(names(&c).0, ["Alloc"], "{backend:?}");
        // Only DELETE.
        assert_eq!(c.get("/api/v1/series?match=host=web1").status, 405);
    }
}

#[test]
fn the_admin_token_is_required_when_set() {
    let s = TestServer::start_with(Backend::Memory, |c| c.admin_token = Some(TOKEN.into()));
    let c = s.client();
    fleet(&c);
    let path = "/value/gauge/Alloc";
    let r = c.request("DELETE", path, &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Bearer realm=\"golectra\"")
    );
    assert!(r.text().contains("Authorization: Bearer"), "{}", r.text());
    for header in [
        "Bearer wrong-token-of-some-length",
        "Bearer s3cret-admin-token-4",
        "Basic czNjcmV0",
        TOKEN,
    ] {
        let (status, text) = delete(&c, path, &[("Authorization", header)]);
        assert_eq!(status, 401, "{header}: {text}");
    }
    assert_eq!(c.get(path).text(), "3.5", "refused deletes change nothing");
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        delete(&c, path, &[("Authorization", &bearer)]),
        (200, "1".into())
    );
    // The scheme is case-insensitive; the token is not.
    let lower = format!("bearer {TOKEN}");
    let series = "/api/v1/series?match=host=web1";
    assert_eq!(
        delete(&c, series, &[("Authorization", &lower)]),
        (200, r#"{"removed":3}"#.into())
    );
}

#[test]
fn without_a_token_a_forwarded_request_is_not_local() {
    let s = TestServer::start(Backend::Memory);
    let c = s.client();
    fleet(&c);
    for header in ["X-Forwarded-For", "X-Real-IP"] {
        let (status, text) = delete(&c, "/value/gauge/Alloc", &[(header, "127.0.0.1")]);
        assert_eq!(status, 403, "{header}: {text}");
        assert!(text.contains("only from loopback peers"), "{text}");
    }
    assert_eq!(c.get("/value/gauge/Alloc").text(), "3.5");
}

#[test]
fn each_delete_is_an_audit_event() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.ndjson");
    let mut s = TestServer::start_with(Backend::Memory, |c| c.audit_file = Some(file.clone()));
    let c = s.client();
    fleet(&c);
    assert_eq!(
        delete(&c, "/api/v1/series?match=host=web1", &[]),
        (200, r#"{"removed":3}"#.into())
    );
    assert_eq!(delete(&c, "/value/gauge/Alloc;nothing=here", &[]).0, 200);
    s.stop();
    let lines = read_lines(&file);
    assert_eq!(
        lines.len(),
        2,
        "the write and the delete that removed something: {lines:?}"
    );
    let event: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(event["action"], "delete");
    assert_eq!(
        event["metrics"],
        serde_json::json!(["Alloc;host=web1", "PollCount;host=web1"])
    );
    assert_eq!(event["ip_address"], "127.0.0.1");
    let write: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        write.get("action"),
        None,
        "writes keep the original's event shape"
    );
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A peer that is not loopback: a client in a network namespace of its own, linked to the
/// test's by a veth pair, reaching the server on the pair's address.
#[test]
fn a_remote_peer_needs_the_token() {
    if !require_root("a network namespace with a veth pair")
        || !require_tool("unshare", "util-linux")
        || !require_tool("nsenter", "util-linux")
        || !require_tool("ip", "iproute2")
    {
        return;
    }
    let net = PrivateNetwork::create();
    let veth = net.veth();
    for token in [None, Some(TOKEN)] {
        let s = TestServer::start_with(Backend::Memory, |c| {
            c.listen = "0.0.0.0:0".parse().unwrap();
            c.admin_token = token.map(str::to_owned);
        });
        let local = Client::new(([127, 0, 0, 1], s.addr.port()).into());
        fleet(&local);
        let remote_addr = (veth.host, s.addr.port()).into();
        let (refused, allowed) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    net.enter();
                    let remote = Client::new(remote_addr);
                    // The link may take a moment to come up.
                    eventually(Duration::from_secs(10), || {
                        (remote.get("/ping").status == 200).then_some(())
                    })
                    .expect("the server is reachable through the veth pair");
                    let refused = delete(&remote, "/value/gauge/Alloc", &[]);
                    let bearer = format!("Bearer {TOKEN}");
                    let allowed =
                        delete(&remote, "/value/gauge/Alloc", &[("Authorization", &bearer)]);
                    (refused, allowed)
                })
                .join()
                .unwrap()
        });
        match token {
            None => {
                assert_eq!(refused.0, 403, "{refused:?}");
                assert_eq!(allowed.0, 403, "no token is configured: {allowed:?}");
                assert_eq!(local.get("/value/gauge/Alloc").text(), "3.5");
                // Loopback still may.
                assert_eq!(delete(&local, "/value/gauge/Alloc", &[]), (200, "1".into()));
            }
            Some(_) => {
                assert_eq!(refused.0, 401, "{refused:?}");
                assert_eq!(allowed, (200, "1".into()));
                assert_eq!(local.get("/value/gauge/Alloc").status, 404);
            }
        }
    }
    let peer = veth.inside;
    drop(veth);
    drop(net);
    eprintln!("remote deletes came from {peer}");
}
