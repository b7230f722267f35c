//! Strict signatures (`REQUIRE_SIGNATURE`, docs/signing.md) against what an eavesdropper on a
//! plain-HTTP network can replay: a server's signed reply sent back as a write, a captured
//! signed write sent again (as is, without its key, with another key, to another path, after
//! the time window), and that a server without strict mode behaves exactly as before.

use golectra_common::signature;
use golectra_common::signed_request::{self, unix_now};
use golectra_testkit::Client;

use crate::harness::{Backend, TestServer, backends, gzip};

const KEY: &[u8] = b"sekrit";

fn strict(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| {
        c.key = Some(KEY.to_vec());
        c.require_signature = true;
    })
}

/// The headers a strict-mode client sends: the original's `HashSHA256`, the key and the
/// request signature made at `at`.
fn signed_headers(at: u64, path: &str, key: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        (signature::HEADER.into(), signature::sign(body, KEY)),
        ("Idempotency-Key".into(), key.into()),
        (
            signed_request::HEADER.into(),
            signed_request::sign(KEY, at, path, key, body),
        ),
    ]
}

fn send(c: &Client, path: &str, headers: &[(String, String)], body: &[u8]) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = c.request("POST", path, &headers, body);
    (r.status, r.text())
}

fn counter(c: &Client, name: &str) -> String {
    c.get(&format!("/value/counter/{name}")).text()
}

const NO_SIGNATURE: &str = "this server requires Golectra-Signature on every write (strict mode, REQUIRE_SIGNATURE): HashSHA256 alone can be replayed\n";
const MISMATCH: &str = "Golectra-Signature does not match this request: the key, the path, the Idempotency-Key, the time or the body differ from what was signed\n";

/// `POST /value` answers `{"id":"c","type":"counter","delta":TOTAL}` signed with the key; sent
/// back to `POST /update` it used to pass the strict check and double the counter.
#[test]
fn a_reply_replayed_as_a_write_is_refused() {
    for backend in backends() {
        let s = strict(backend);
        let c = s.client();
        let body = br#"{"id":"c","type":"counter","delta":5}"#;
        let headers = signed_headers(unix_now(), "/update", "client:1", body);
        assert_eq!(
            send(&c, "/update", &headers, body),
            (200, String::from_utf8_lossy(body).into_owned())
        );

        let reply = c.request("POST", "/value", &[], br#"{"id":"c","type":"counter"}"#);
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, r#"{"id":"c","type":"counter","delta":5}"#)
        );
        let reply_signature = reply.header("hashsha256").unwrap().to_owned();
        // Replies are still signed the original's way.
        assert_eq!(reply_signature, signature::sign(&reply.body, KEY));

        let replay = [(signature::HEADER.to_owned(), reply_signature.clone())];
        assert_eq!(
            send(&c, "/update", &replay, &reply.body),
            (400, NO_SIGNATURE.into()),
            "{backend:?}"
        );
        // Dressed up as a request signature, with a key of the attacker's choosing.
        let dressed = [
            (signature::HEADER.to_owned(), reply_signature.clone()),
            ("Idempotency-Key".to_owned(), "attacker:1".to_owned()),
            (
                signed_request::HEADER.to_owned(),
                format!("t={},v1={reply_signature}", unix_now()),
            ),
        ];
        assert_eq!(
            send(&c, "/update", &dressed, &reply.body),
            (400, MISMATCH.into())
        );
        assert_eq!(counter(&c, "c"), "5", "{backend:?}");
    }
}

/// A captured signed batch sent again is a repeat of the first (its key is held), and every way
/// of making it look like a new request breaks the signature or the time window.
#[test]
fn a_captured_signed_write_is_applied_once() {
    for backend in backends() {
        let s = strict(backend);
        let c = s.client();
        let batch = br#"[{"id":"PollCount","type":"counter","delta":7}]"#;
        let mut captured = signed_headers(unix_now(), "/updates/", "agent:1", batch);
        captured.push(("Content-Encoding".into(), "gzip".into()));
        let wire = gzip(batch);
        let first = send(&c, "/updates/", &captured, &wire);
        assert_eq!(first, (200, r#"{"updated":1}"#.into()));
        // The same bytes again: answered like the first, applied once.
        assert_eq!(
            send(&c, "/updates/", &captured, &wire),
            first,
            "{backend:?}"
        );
        assert_eq!(counter(&c, "PollCount"), "7");

        // Without its key it would be a new write: refused.
        let keyless: Vec<_> = captured
            .iter()
            .filter(|(k, _)| k != "Idempotency-Key")
            .cloned()
            .collect();
        assert_eq!(
            send(&c, "/updates/", &keyless, &wire),
            (
                400,
                "this server requires an Idempotency-Key on every write (strict mode, REQUIRE_SIGNATURE), covered by Golectra-Signature\n".into()
            )
        );
        // With another key: the key is signed.
        let rekeyed: Vec<_> = captured
            .iter()
            .map(|(k, v)| match k.as_str() {
                "Idempotency-Key" => (k.clone(), "agent:2".to_owned()),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        assert_eq!(
            send(&c, "/updates/", &rekeyed, &wire),
            (400, MISMATCH.into())
        );

        // A request captured longer ago than the window (and so, possibly, older than the key
        // retention) is refused whatever its key.
        let at = unix_now() - signed_request::MAX_SKEW.as_secs() - 1;
        let old = signed_headers(at, "/updates", "agent:0", batch);
        let (status, text) = send(&c, "/updates", &old, batch);
        assert_eq!(status, 400);
        assert!(
            text.starts_with(&format!("Golectra-Signature was made at {at}, "))
                && text.ends_with(" s away from the server's clock: the limit is 240 s (a replayed or delayed request, or a clock out of sync)\n"),
            "{text}"
        );
        assert_eq!(counter(&c, "PollCount"), "7", "{backend:?}");
    }
}

/// A text update carries its data in the path, which `HashSHA256` does not cover: any signed
/// body used to make any text update pass. `Golectra-Signature` covers the path.
#[test]
fn text_updates_need_a_signature_of_their_path() {
    let s = strict(Backend::Memory);
    let c = s.client();
    // The body of any signed reply ("ok" of a text update, say) with its signature.
    let borrowed = [(signature::HEADER.to_owned(), signature::sign(b"ok", KEY))];
    assert_eq!(
        send(&c, "/update/counter/c/100", &borrowed, b"ok"),
        (400, NO_SIGNATURE.into())
    );
    assert_eq!(c.post("/update/counter/c/100", b"").status, 400);
    let signed = signed_headers(unix_now(), "/update/counter/c/1", "curl:1", b"");
    assert_eq!(
        send(&c, "/update/counter/c/1", &signed, b""),
        (200, "ok".into())
    );
    // The same signature on another path (a larger value) does not match.
    assert_eq!(
        send(&c, "/update/counter/c/1000", &signed, b""),
        (400, MISMATCH.into())
    );
    // Unsigned JSON and malformed signatures are refused too.
    let body = br#"{"id":"x","type":"gauge","value":1}"#;
    assert_eq!(c.post("/update", body).status, 400);
    let malformed = [
        ("Idempotency-Key".to_owned(), "k".to_owned()),
        (signed_request::HEADER.to_owned(), "v1=00".to_owned()),
    ];
    assert_eq!(
        send(&c, "/update", &malformed, body),
        (
            400,
            "Golectra-Signature must be t=<unix seconds>,v1=<64 hex digits of HMAC-SHA256>\n"
                .into()
        )
    );
    assert_eq!(counter(&c, "c"), "1");
    assert_eq!(c.get("/value/gauge/x").status, 404);
    // Reads need no signature.
    assert_eq!(c.get("/value/counter/c").status, 200);
    assert_eq!(c.get("/ping").status, 200);
}

/// Without `REQUIRE_SIGNATURE` a server with a key checks `HashSHA256` exactly as the original
/// does and ignores `Golectra-Signature`, valid or not.
#[test]
fn without_strict_mode_nothing_changes() {
    let s = TestServer::start_with(Backend::Memory, |c| c.key = Some(KEY.to_vec()));
    let c = s.client();
    let body = br#"{"id":"c","type":"counter","delta":2}"#;
    assert_eq!(c.post("/update", body).status, 200);
    let legacy = [(signature::HEADER.to_owned(), signature::sign(body, KEY))];
    assert_eq!(send(&c, "/update", &legacy, body).0, 200);
    let bogus = [
        (signature::HEADER.to_owned(), signature::sign(body, KEY)),
        (signed_request::HEADER.to_owned(), "t=1,v1=00".to_owned()),
    ];
    assert_eq!(send(&c, "/update", &bogus, body).0, 200);
    assert_eq!(c.post("/update/counter/c/1", b"").status, 200);
    // A wrong HashSHA256 is refused, as before.
    let wrong = [(signature::HEADER.to_owned(), signature::sign(b"other", KEY))];
    assert_eq!(send(&c, "/update", &wrong, body).0, 400);
    assert_eq!(counter(&c, "c"), "7");
}
