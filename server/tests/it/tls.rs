//! HTTPS on the listener, against the real binary (and in-process for the watchdog probe): the
//! API over TLS with keep-alive, a clear `400` for plain HTTP on the TLS port, client
//! certificates (mTLS) accepted and refused, a certificate re-read on `SIGHUP` seen by new
//! connections while an established one lives on, unusable files at start (exit 2 naming the
//! setting), a slow handshake closed at the header deadline without holding a worker, and the
//! watchdog's own probe over TLS and mTLS. Every certificate comes from a CA made at test time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use golectra_server::config::{Config, Storage, TlsFiles};
use golectra_server::health::{self, Health};
use golectra_testkit::tls::{Identity, IdentityFiles, TestCa};
use golectra_testkit::{ServerProcess, run, server_binary};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A server's certificate files, issued by `ca` for localhost and 127.0.0.1.
fn server_files(ca: &TestCa, dir: &Path, stem: &str) -> IdentityFiles {
    ca.server(&["localhost", "127.0.0.1"]).write(dir, stem)
}

fn tls_env(files: &IdentityFiles) -> Vec<(&str, &str)> {
    vec![
        ("TLS_CERT_FILE", files.cert.to_str().unwrap()),
        ("TLS_KEY_FILE", files.key.to_str().unwrap()),
    ]
}

/// A rustls client trusting only `ca`, presenting `client` when given.
fn client_config(ca: &TestCa, client: Option<&Identity>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(config)
}

/// A TLS connection to `addr` (the handshake happens with the first request).
fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    StreamOwned::new(ClientConnection::new(config, name).unwrap(), tcp)
}

/// One request on `stream`; the status line, the head and the body, or the TLS or I/O error.
fn exchange(
    stream: &mut TlsStream,
    method: &str,
    path: &str,
) -> Result<(u16, String, String), String> {
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    read_response(stream)
}

fn read_response(stream: &mut impl Read) -> Result<(u16, String, String), String> {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return Err(format!("closed after {:?}", String::from_utf8_lossy(&got))),
            Ok(_) => got.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let head = String::from_utf8_lossy(&got).into_owned();
    let status = head[9..12]
        .parse()
        .map_err(|_| format!("bad status line: {head}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        read_chunked(stream)?
    } else {
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).map_err(|e| e.to_string())?;
        body
    };
    Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
}

fn read_chunked(stream: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            stream.read_exact(&mut byte).map_err(|e| e.to_string())?;
            line.push(byte[0]);
        }
        let size = std::str::from_utf8(&line[..line.len() - 2]).unwrap_or("");
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        let mut chunk = vec![0u8; size + 2];
        stream.read_exact(&mut chunk).map_err(|e| e.to_string())?;
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

fn https_get(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<(u16, String), String> {
    let mut stream = connect(addr, config);
    exchange(&mut stream, "GET", path).map(|(status, _, body)| (status, body))
}

#[test]
fn the_api_over_https_with_keep_alive_and_plain_http_gets_a_clear_400() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Golectra test CA");
    let files = server_files(&ca, dir.path(), "server");
    let server = ServerProcess::start(dir.path(), &[], &tls_env(&files));
    assert_eq!(server.scheme, "https", "{}", server.log());

    // Several requests on one connection: keep-alive through the TLS session.
    let mut stream = connect(server.addr, client_config(&ca, None));
    for (method, path, status, body) in [
        ("POST", "/update/counter/PollCount/5", 200, ""),
        ("POST", "/update/counter/PollCount/7", 200, ""),
        ("POST", "/update/gauge/Alloc/1.5", 200, ""),
        ("GET", "/value/counter/PollCount", 200, "12"),
        ("GET", "/value/gauge/Alloc", 200, "1.5"),
        ("GET", "/ping", 200, ""),
    ] {
        let (got, head, text) = exchange(&mut stream, method, path).unwrap();
        assert_eq!(got, status, "{method} {path}: {head}{text}");
        if !body.is_empty() {
            assert_eq!(text, body, "{method} {path}");
        }
    }
    // A larger body through the session (several TLS records each way).
    let metrics: Vec<String> = (0..400)
        .map(|i| format!(r#"{{"id":"g{i}","type":"gauge","value":{i}}}"#))
        .collect();
    let batch = format!("[{}]", metrics.join(","));
    let request = format!(
        "POST /updates/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{batch}",
        batch.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (status, head, _) = read_response(&mut stream).unwrap();
    assert_eq!(status, 200, "{head}");
    let (status, _, value) = exchange(&mut stream, "GET", "/value/gauge/g399").unwrap();
    assert_eq!((status, value.as_str()), (200, "399"));
    let (status, _, page) = exchange(&mut stream, "GET", "/").unwrap();
    assert_eq!(status, 200);
    assert!(
        page.contains("g399"),
        "the whole dashboard came through: {page}"
    );

    // Plain HTTP on the TLS port: a plain-text 400 that says why, then the connection closes.
    let started = Instant::now();
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert!(answer.contains("Connection: close\r\n"), "{answer:?}");
    assert!(answer.contains("this port speaks HTTPS"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no hang: {:?}",
        started.elapsed()
    );

    let metrics = https_get(server.addr, client_config(&ca, None), "/metrics")
        .unwrap()
        .1;
    assert!(
        metrics.contains("golectra_tls_failures_total 1\n"),
        "{metrics}"
    );
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("TLS on (certificate "), "{log}");
}

#[test]
fn a_client_trusting_another_ca_refuses_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Golectra test CA");
    let other = TestCa::new("Some other CA");
    let files = server_files(&ca, dir.path(), "server");
    let server = ServerProcess::start(dir.path(), &[], &tls_env(&files));
    let refused = https_get(server.addr, client_config(&other, None), "/ping").unwrap_err();
    assert!(
        refused.contains("UnknownIssuer") || refused.contains("invalid peer certificate"),
        "{refused}"
    );
    assert_eq!(
        https_get(server.addr, client_config(&ca, None), "/ping")
            .unwrap()
            .0,
        200
    );
}

#[test]
fn client_certificates_signed_by_the_client_ca_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Golectra server CA");
    let clients = TestCa::new("Golectra agents CA");
    let strangers = TestCa::new("Not the agents CA");
    let files = server_files(&ca, dir.path(), "server");
    let client_ca = clients.write_cert(dir.path(), "clients-ca");
    let mut env = tls_env(&files);
    env.push(("TLS_CLIENT_CA_FILE", client_ca.to_str().unwrap()));
    let server = ServerProcess::start(dir.path(), &[], &env);

    let agent = clients.client("agent-1");
    let mut stream = connect(server.addr, client_config(&ca, Some(&agent)));
    let (status, _, _) = exchange(&mut stream, "POST", "/update/counter/c/3").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        exchange(&mut stream, "GET", "/value/counter/c").unwrap().2,
        "3"
    );

    // No certificate, or one from another CA: the handshake fails, nothing is applied.
    let mut anonymous = connect(server.addr, client_config(&ca, None));
    let refused = exchange(&mut anonymous, "POST", "/update/counter/c/100").unwrap_err();
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    let stranger = strangers.client("intruder");
    let mut intruder = connect(server.addr, client_config(&ca, Some(&stranger)));
    let refused = exchange(&mut intruder, "POST", "/update/counter/c/100").unwrap_err();
    assert!(!refused.is_empty());

    assert_eq!(
        exchange(&mut stream, "GET", "/value/counter/c").unwrap().2,
        "3"
    );
    let metrics = exchange(&mut stream, "GET", "/metrics").unwrap().2;
    assert!(
        metrics.contains("golectra_tls_failures_total 2\n"),
        "{metrics}"
    );
}

#[test]
fn sighup_rereads_the_certificate_for_new_connections_and_keeps_established_ones() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new("Golectra CA 2026");
    let new_ca = TestCa::new("Golectra CA 2027");
    let files = server_files(&old_ca, dir.path(), "server");
    let mut server = ServerProcess::start(dir.path(), &[], &tls_env(&files));
    let mut established = connect(server.addr, client_config(&old_ca, None));
    assert_eq!(exchange(&mut established, "GET", "/ping").unwrap().0, 200);

    // A renewal writes the new files in place (as certbot's deploy hooks do), then SIGHUP.
    let renewed = new_ca.server(&["localhost", "127.0.0.1"]);
    std::fs::write(&files.cert, &renewed.cert_pem).unwrap();
    std::fs::write(&files.key, &renewed.key_pem).unwrap();
    server.signal(libc::SIGHUP);
    server.daemon.wait_for_log(
        "SIGHUP: TLS certificate and key re-read",
        Duration::from_secs(10),
    );

    assert_eq!(
        https_get(server.addr, client_config(&new_ca, None), "/ping")
            .unwrap()
            .0,
        200,
        "a new connection gets the new certificate"
    );
    let stale = https_get(server.addr, client_config(&old_ca, None), "/ping").unwrap_err();
    assert!(
        stale.contains("UnknownIssuer") || stale.contains("invalid peer"),
        "{stale}"
    );
    // The connection made before the reload was not dropped.
    assert_eq!(exchange(&mut established, "GET", "/ping").unwrap().0, 200);

    // A broken renewal is refused and the certificate in use stays.
    std::fs::write(&files.key, "not a key\n").unwrap();
    server.signal(libc::SIGHUP);
    let log = server
        .daemon
        .wait_for_log("keeping the certificate in use", Duration::from_secs(10));
    assert!(log.contains("TLS_KEY_FILE"), "{log}");
    assert_eq!(
        https_get(server.addr, client_config(&new_ca, None), "/ping")
            .unwrap()
            .0,
        200
    );
    let (code, log) = server.terminate();
    assert_eq!(code, 0, "SIGHUP does not stop the server: {log}");
}

#[test]
fn unusable_tls_settings_exit_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Golectra test CA");
    let good = server_files(&ca, dir.path(), "good");
    let other = server_files(&ca, dir.path(), "other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN NOTHING-----\nxx\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let (cert, key) = (good.cert.to_str().unwrap(), good.key.to_str().unwrap());
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("TLS_CERT_FILE", cert)], "TLS_KEY_FILE"),
        (vec![("TLS_KEY_FILE", key)], "TLS_CERT_FILE"),
        (vec![("TLS_CLIENT_CA_FILE", cert)], "TLS_CLIENT_CA_FILE"),
        (
            vec![
                ("TLS_CERT_FILE", missing.to_str().unwrap()),
                ("TLS_KEY_FILE", key),
            ],
            "TLS_CERT_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", garbage.to_str().unwrap()),
                ("TLS_KEY_FILE", key),
            ],
            "TLS_CERT_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", cert),
                ("TLS_KEY_FILE", garbage.to_str().unwrap()),
            ],
            "TLS_KEY_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", cert),
                ("TLS_KEY_FILE", other.key.to_str().unwrap()),
            ],
            "TLS_KEY_FILE",
        ),
        (
            vec![
                ("TLS_CERT_FILE", cert),
                ("TLS_KEY_FILE", key),
                ("TLS_CLIENT_CA_FILE", garbage.to_str().unwrap()),
            ],
            "TLS_CLIENT_CA_FILE",
        ),
    ];
    for (env, setting) in cases {
        let mut env = env;
        let snapshot = dir.path().join("db.json");
        env.push(("FILE_STORAGE_PATH", snapshot.to_str().unwrap()));
        env.push(("ADDRESS", "127.0.0.1:0"));
        let (code, _, stderr) = run(server_binary(), &[], &env);
        assert_eq!(code, 2, "{env:?}: {stderr}");
        assert!(
            stderr.contains(setting),
            "{env:?} should name {setting}: {stderr}"
        );
        assert!(!snapshot.exists(), "nothing was started");
    }
}

#[test]
fn a_slow_handshake_is_closed_at_the_header_deadline_and_holds_no_worker() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Golectra test CA");
    let files = server_files(&ca, dir.path(), "server");
    let mut env = tls_env(&files);
    env.extend([("HEADER_TIMEOUT", "1s"), ("WORKERS", "1")]);
    let server = ServerProcess::start(dir.path(), &[], &env);

    // Each sends the first bytes of a TLS record and stops: a handshake that never ends.
    let stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    // The one worker still serves a real client at once.
    let (status, _) = https_get(server.addr, client_config(&ca, None), "/ping").unwrap();
    assert_eq!(status, 200);
    // And every stalled handshake is closed once the header deadline passed.
    let started = Instant::now();
    for mut s in stalled {
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_watchdog_probe_speaks_tls_and_presents_its_own_identity_under_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Golectra test CA");
    let clients = TestCa::new("Golectra agents CA");
    let files = server_files(&ca, dir.path(), "server");
    let client_ca = clients.write_cert(dir.path(), "clients");
    for mtls in [false, true] {
        let mut config = Config::for_tests(Storage::Memory {
            path: dir.path().join("db.json"),
            interval: Duration::from_secs(3600),
            restore: false,
        });
        config.tls = Some(TlsFiles {
            cert: files.cert.clone(),
            key: files.key.clone(),
            client_ca: mtls.then(|| client_ca.clone()),
        });
        let server = golectra_server::Server::start(&config).expect("starts");
        let target = server.probe_target();
        assert_eq!(target.scheme(), "https");
        assert_eq!(
            health::check(&target, Duration::from_secs(5)),
            Ok(Health::Serving),
            "mTLS {mtls}"
        );
        // Plain HTTP is not what this listener speaks: the plain probe gets the 400.
        let plain = health::probe(server.local_addr(), Duration::from_secs(5));
        assert!(plain.is_err(), "{plain:?}");
        if mtls {
            // The probe's identity is accepted; an ordinary client without one is not.
            let refused = https_get(server.local_addr(), client_config(&ca, None), "/ping");
            assert!(refused.is_err(), "{refused:?}");
        }
        server.shutdown().unwrap();
    }
}
