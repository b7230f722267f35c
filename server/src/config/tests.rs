//! Unit tests of the server configuration: precedence, forms, bounds and error messages.

use super::*;

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    match Config::from_sources(args.iter().copied(), settings::fixed_env(env))? {
        Command::Run(c) => Ok(*c),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn defaults() {
    let c = parse(&[], &[]).unwrap();
    assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(
        c.storage,
        Storage::Memory {
            path: "metrics-db.json".into(),
            interval: Duration::from_secs(300),
            restore: false
        }
    );
    assert_eq!(c.key, None);
    // The documented defaults (docs/configuration.md), written out once more on purpose.
    assert_eq!(
        c.limits,
        Limits {
            max_body: 4 << 20,
            max_inflated: 32 << 20,
            max_batch_items: 100_000,
        }
    );
    assert_eq!(
        c.connections,
        Connections {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(10),
            body_buffer_budget: 256 << 20,
            min_body_rate: 1024,
            max_connections_per_peer: 256,
            max_buffered_per_peer: 64 << 20,
        }
    );
    assert_eq!(c.workers, default_workers());
    assert_eq!(
        c.history,
        HistoryOptions {
            interval: Duration::from_secs(5),
            points: 60,
            max_bytes: 128 << 20,
        }
    );
    assert_eq!(c.summary_interval, Duration::from_secs(60));
    assert_eq!(c.max_metrics, MaxMetrics(1_000_000));
    assert_eq!(Config::defaults(), c);
}

#[test]
fn listen_forms() {
    assert_eq!(parse_listen(":9090"), Ok("0.0.0.0:9090".parse().unwrap()));
    assert_eq!(parse_listen("9090"), Ok("0.0.0.0:9090".parse().unwrap()));
    assert_eq!(
        parse_listen("127.0.0.1:9090"),
        Ok("127.0.0.1:9090".parse().unwrap())
    );
    assert_eq!(
        parse_listen("http://127.0.0.1:9090"),
        Ok("127.0.0.1:9090".parse().unwrap())
    );
    assert!(parse_listen("localhost:9090").is_ok());
    assert!(parse_listen("nonsense").is_err());
    assert!(parse_listen(":99999").is_err());
}

#[test]
fn each_setting_env_beats_flag() {
    let c = parse(
        &[
            "-a",
            ":1",
            "-f",
            "flag.json",
            "-i",
            "5",
            "-k",
            "flagkey",
            "-w",
            "3",
            "--max-body-size",
            "1KiB",
        ],
        &[
            ("ADDRESS", ":2"),
            ("FILE_STORAGE_PATH", "env.json"),
            ("STORE_INTERVAL", "0"),
            ("KEY", "envkey"),
            ("WORKERS", "7"),
            ("MAX_BODY_SIZE", "2KiB"),
        ],
    )
    .unwrap();
    assert_eq!(c.listen.port(), 2);
    assert_eq!(
        c.storage,
        Storage::Memory {
            path: "env.json".into(),
            interval: Duration::ZERO,
            restore: false
        }
    );
    assert_eq!(c.key.as_deref(), Some(&b"envkey"[..]));
    assert_eq!(c.workers, 7);
    assert_eq!(c.limits.max_body, 2048);
    let flags = parse(
        &["-a", ":1", "-i", "5", "-r", "-k", "flagkey", "-w", "3"],
        &[],
    )
    .unwrap();
    assert_eq!(flags.listen.port(), 1);
    assert_eq!(
        flags.storage,
        Storage::Memory {
            path: "metrics-db.json".into(),
            interval: Duration::from_secs(5),
            restore: true
        }
    );
    assert_eq!(flags.workers, 3);
    let restore = parse(&["-r"], &[("RESTORE", "false")]).unwrap();
    assert!(matches!(
        restore.storage,
        Storage::Memory { restore: false, .. }
    ));
}

#[test]
fn bad_dsn_is_a_config_error_without_the_password() {
    let err = parse(&["-d", "postgres://u:hunter2@h:notaport/db"], &[]).unwrap_err();
    assert!(
        err.0.starts_with("invalid DATABASE_DSN (-d) value"),
        "{err}"
    );
    assert!(!err.0.contains("hunter2"), "{err}");
}

#[test]
fn dsn_selects_postgres_and_notes_ignored_file_settings() {
    let c = parse(&["-d", "postgres://x@h/db"], &[]).unwrap();
    assert_eq!(
        c.storage,
        Storage::Postgres {
            dsn: "postgres://x@h/db".into(),
            ignored_file_settings: false
        }
    );
    let c = parse(&["-i", "1"], &[("DATABASE_DSN", "host=h")]).unwrap();
    assert_eq!(
        c.storage,
        Storage::Postgres {
            dsn: "host=h".into(),
            ignored_file_settings: true
        }
    );
}

#[test]
fn key_is_trimmed_like_the_original() {
    let c = parse(&[], &[("KEY", " s3cret\n")]).unwrap();
    assert_eq!(c.key.as_deref(), Some(&b"s3cret"[..]));
    assert_eq!(parse(&["-k", " \t"], &[]).unwrap().key, None);
}

#[test]
fn history_settings() {
    let c = parse(
        &["--history-interval=250ms", "--history-points", "7"],
        &[("HISTORY_POINTS", "0")],
    )
    .unwrap();
    assert_eq!(
        c.history,
        HistoryOptions {
            interval: Duration::from_millis(250),
            points: 0,
            max_bytes: 128 << 20,
        }
    );
}

#[test]
fn size_settings_env_beats_flag_and_are_checked() {
    let c = parse(
        &["--max-metrics", "5", "--history-max-bytes", "1MiB"],
        &[("MAX_METRICS", "10"), ("HISTORY_MAX_BYTES", "2MiB")],
    )
    .unwrap();
    assert_eq!(c.max_metrics, MaxMetrics(10));
    assert_eq!(c.history.max_bytes, 2 << 20);
    let c = parse(&["--max-metrics=7", "--history-max-bytes=3KiB"], &[]).unwrap();
    assert_eq!((c.max_metrics.0, c.history.max_bytes), (7, 3072));
    // One metric's history at the default 60 points: 960 bytes of points + name + bookkeeping.
    let err = parse(&["--history-max-bytes", "1000"], &[]).unwrap_err();
    assert_eq!(
        err.0,
        "invalid HISTORY_MAX_BYTES (--history-max-bytes) value \"1000\": must be at least the 1152 bytes one metric's history of HISTORY_POINTS=60 costs"
    );
    // Without history any budget will do.
    let c = parse(&["--history-points=0", "--history-max-bytes=1"], &[]).unwrap();
    assert_eq!(c.history.max_bytes, 1);
    for (args, setting) in [
        (&["--max-metrics", "0"][..], "MAX_METRICS"),
        (&["--max-metrics", "many"], "MAX_METRICS"),
        (&["--max-metrics", "-1"], "MAX_METRICS"),
        (&["--history-max-bytes", "0"], "HISTORY_MAX_BYTES"),
        (&["--history-max-bytes", "lots"], "HISTORY_MAX_BYTES"),
    ] {
        let err = parse(args, &[]).unwrap_err();
        assert!(
            err.0.starts_with(&format!("invalid {setting} (--")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn audit_settings() {
    let c = parse(
        &[
            "-audit-file=/tmp/a.ndjson",
            "--audit-url",
            "http://127.0.0.1:1/x",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.audit_file, Some("/tmp/a.ndjson".into()));
    assert_eq!(c.audit_url.as_deref(), Some("http://127.0.0.1:1/x"));
    assert!(
        parse(&["--audit-url", "ftp://x"], &[])
            .unwrap_err()
            .0
            .contains("AUDIT_URL")
    );
    assert_eq!(parse(&[], &[]).unwrap().audit_tls, None);
    assert_eq!(
        parse(&["--audit-url", "http://127.0.0.1:1/x"], &[])
            .unwrap()
            .audit_tls,
        None
    );
    let c = parse(
        &["--audit-file", "flag.ndjson", "--audit-url", "http://flag/"],
        &[("AUDIT_FILE", "env.ndjson"), ("AUDIT_URL", "http://env/")],
    )
    .unwrap();
    assert_eq!(c.audit_file, Some("env.ndjson".into()));
    assert_eq!(c.audit_url.as_deref(), Some("http://env/"));
    assert_eq!(parse(&[], &[]).unwrap().audit_url, None);
}

#[test]
fn audit_tls_settings() {
    use golectra_common::tls_client::Trust;
    let dir = tempfile::tempdir().unwrap();
    let (env_ca, flag_ca) = (
        golectra_testkit::tls::TestCa::new("env CA"),
        golectra_testkit::tls::TestCa::new("flag CA"),
    );
    let env_file = env_ca.write_cert(dir.path(), "env");
    let flag_file = flag_ca.write_cert(dir.path(), "flag");
    let client = env_ca.client("server").write(dir.path(), "client");
    let (env_file, flag_file) = (env_file.to_str().unwrap(), flag_file.to_str().unwrap());
    let https = ["--audit-url", "https://audit.example.com/hook"];
    let c = parse(
        &[&https[..], &["--audit-ca-file", flag_file]].concat(),
        &[("AUDIT_CA_FILE", env_file)],
    )
    .unwrap();
    assert_eq!(
        c.audit_url.as_deref(),
        Some("https://audit.example.com/hook")
    );
    let tls = c.audit_tls.as_ref().unwrap();
    assert_eq!(tls.trust(), &Trust::CaFile(env_file.into()));
    assert_eq!(tls.client_cert_file(), None);
    assert_eq!(c.audit().tls.as_ref(), Some(tls));
    let c = parse(
        &[
            &https[..],
            &[
                "--audit-ca-file",
                flag_file,
                "--audit-tls-client-cert-file",
                client.cert.to_str().unwrap(),
            ],
        ]
        .concat(),
        &[("AUDIT_TLS_CLIENT_KEY_FILE", client.key.to_str().unwrap())],
    )
    .unwrap();
    let tls = c.audit_tls.as_ref().unwrap();
    assert_eq!(tls.trust(), &Trust::CaFile(flag_file.into()));
    assert_eq!(tls.client_cert_file(), Some(client.cert.as_path()));
    // The scheme in any letter case is https: the roots are loaded.
    let c = parse(
        &[
            "--audit-url",
            "HTTPS://audit.example.com/",
            "--audit-ca-file",
            env_file,
        ],
        &[],
    )
    .unwrap();
    assert!(c.audit_tls.is_some());
    for (args, env, wanted) in [
        (
            &https[..],
            &[("AUDIT_CA_FILE", "/nonexistent/ca.pem")][..],
            "invalid AUDIT_CA_FILE (--audit-ca-file) value \"/nonexistent/ca.pem\": cannot open",
        ),
        (
            &https,
            &[
                ("AUDIT_CA_FILE", env_file),
                ("AUDIT_TLS_CLIENT_CERT_FILE", "c.crt"),
            ],
            "AUDIT_TLS_CLIENT_CERT_FILE (--audit-tls-client-cert-file) is set but AUDIT_TLS_CLIENT_KEY_FILE (--audit-tls-client-key-file) is not",
        ),
        (
            &["--audit-url", "http://127.0.0.1:1/x"],
            &[("AUDIT_CA_FILE", env_file)],
            "AUDIT_CA_FILE (--audit-ca-file) is set but AUDIT_URL (--audit-url) is not an https:// address",
        ),
        (
            &[],
            &[("AUDIT_CA_FILE", env_file)],
            "AUDIT_CA_FILE (--audit-ca-file) is set but AUDIT_URL (--audit-url) is not an https:// address",
        ),
    ] {
        let err = parse(args, env).unwrap_err();
        assert!(err.0.starts_with(wanted), "{args:?} {env:?}: {err}");
    }
}

#[test]
fn trusted_proxies() {
    assert!(parse(&[], &[]).unwrap().trusted_proxies.is_empty());
    let c = parse(&["--trusted-proxies", "10.0.0.0/8, 127.0.0.1,::1"], &[]).unwrap();
    assert_eq!(
        c.trusted_proxies,
        client_addr::parse_list("10.0.0.0/8,127.0.0.1/32,::1/128").unwrap()
    );
    let c = parse(
        &["-trusted-proxies=10.0.0.0/8"],
        &[("TRUSTED_PROXIES", "192.168.0.0/16")],
    )
    .unwrap();
    assert_eq!(
        c.trusted_proxies,
        client_addr::parse_list("192.168.0.0/16").unwrap()
    );
    let err = parse(&[], &[("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local")]).unwrap_err();
    assert!(
        err.0.contains("TRUSTED_PROXIES (--trusted-proxies)") && err.0.contains("proxy.local"),
        "{err}"
    );
}

#[test]
fn connection_settings_env_beats_flag() {
    let flags = [
        "--max-connections",
        "10",
        "--idle-timeout",
        "5",
        "--header-timeout=2s",
        "-body-timeout=3s",
        "--io-timeout",
        "500ms",
        "--body-buffer-budget",
        "1MiB",
        "--max-body-size",
        "1KiB",
        "--min-body-rate",
        "100",
        "--max-connections-per-peer",
        "0",
        "--max-buffered-per-peer=0",
    ];
    let c = parse(&flags, &[]).unwrap();
    assert_eq!(
        c.connections,
        Connections {
            max_connections: 10,
            idle_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_millis(500),
            body_buffer_budget: 1 << 20,
            min_body_rate: 100,
            max_connections_per_peer: 0,
            max_buffered_per_peer: 0,
        }
    );
    let env = parse(
        &flags,
        &[
            ("MAX_CONNECTIONS", "20"),
            ("IDLE_TIMEOUT", "1m"),
            ("HEADER_TIMEOUT", "4"),
            ("BODY_TIMEOUT", "6s"),
            ("IO_TIMEOUT", "1s"),
            ("BODY_BUFFER_BUDGET", "2MiB"),
            ("MIN_BODY_RATE", "0"),
            ("MAX_CONNECTIONS_PER_PEER", "8"),
            ("MAX_BUFFERED_PER_PEER", "1MiB"),
        ],
    )
    .unwrap();
    assert_eq!(
        env.connections,
        Connections {
            max_connections: 20,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(4),
            body_timeout: Duration::from_secs(6),
            io_timeout: Duration::from_secs(1),
            body_buffer_budget: 2 << 20,
            min_body_rate: 0,
            max_connections_per_peer: 8,
            max_buffered_per_peer: 1 << 20,
        }
    );
}

#[test]
fn bad_values_name_the_setting() {
    for (args, env, setting) in [
        (&["-i", "soon"][..], &[][..], "STORE_INTERVAL (-i)"),
        (
            &["-d", "postgres://u:pw@h:notaport/db"],
            &[],
            "DATABASE_DSN (-d)",
        ),
        (
            &[],
            &[("DATABASE_DSN", "host=h bogus_key=1")],
            "DATABASE_DSN (-d)",
        ),
        (&[], &[("STORE_INTERVAL", "-5")], "STORE_INTERVAL (-i)"),
        (&["-r=maybe"], &[], "RESTORE (-r)"),
        (&["-a", "nowhere"], &[], "ADDRESS (-a)"),
        (&["-w", "0"], &[], "WORKERS (-w)"),
        (&["--max-body-size", "lots"], &[], "MAX_BODY_SIZE"),
        (&["--max-batch-items", "0"], &[], "MAX_BATCH_ITEMS"),
        (&["--history-interval", "0"], &[], "HISTORY_INTERVAL"),
        (&["--history-points", "many"], &[], "HISTORY_POINTS"),
        (&["--max-connections", "0"], &[], "MAX_CONNECTIONS"),
        (&["--summary-interval", "often"], &[], "SUMMARY_INTERVAL"),
        (&[], &[("MAX_CONNECTIONS", "many")], "MAX_CONNECTIONS"),
        (&["--idle-timeout", "0"], &[], "IDLE_TIMEOUT"),
        (&["--header-timeout", "soon"], &[], "HEADER_TIMEOUT"),
        (&[], &[("BODY_TIMEOUT", "-1")], "BODY_TIMEOUT"),
        (&["--io-timeout=0s"], &[], "IO_TIMEOUT"),
        (&["--body-buffer-budget", "0"], &[], "BODY_BUFFER_BUDGET"),
        (&["--body-buffer-budget", "1MiB"], &[], "BODY_BUFFER_BUDGET"),
        (&["--min-body-rate", "fast"], &[], "MIN_BODY_RATE"),
        (&[], &[("MIN_BODY_RATE", "-1")], "MIN_BODY_RATE"),
        (
            &["--max-connections-per-peer", "many"],
            &[],
            "MAX_CONNECTIONS_PER_PEER",
        ),
        (
            &[],
            &[("MAX_CONNECTIONS_PER_PEER", "-1")],
            "MAX_CONNECTIONS_PER_PEER",
        ),
        (
            &["--max-buffered-per-peer", "lots"],
            &[],
            "MAX_BUFFERED_PER_PEER",
        ),
        // Below MAX_BODY_SIZE (4 MiB): no body of the largest size could be buffered.
        (
            &["--max-buffered-per-peer", "1MiB"],
            &[],
            "MAX_BUFFERED_PER_PEER",
        ),
        // Absurd intervals and timeouts: a spinning loop or an overflowing deadline.
        (&["-i", "1ns"], &[], "STORE_INTERVAL (-i)"),
        (&["-i", "6000000000000000000"], &[], "STORE_INTERVAL (-i)"),
        (&["--history-interval", "1ns"], &[], "HISTORY_INTERVAL"),
        (
            &[],
            &[("SUMMARY_INTERVAL", "9000000000000000000")],
            "SUMMARY_INTERVAL",
        ),
        (
            &["--idle-timeout", "6000000000000000000"],
            &[],
            "IDLE_TIMEOUT",
        ),
    ] {
        let err = parse(args, env).unwrap_err();
        assert!(err.0.contains(setting), "{args:?} {env:?}: {err}");
    }
}

#[test]
fn a_per_peer_budget_is_0_or_holds_the_largest_body() {
    let err = parse(&[], &[("MAX_BUFFERED_PER_PEER", "1MiB")]).unwrap_err();
    assert!(
        err.0.contains("MAX_BUFFERED_PER_PEER")
            && err
                .0
                .contains("must be 0 (no cap) or at least MAX_BODY_SIZE (4194304 bytes)"),
        "{err}"
    );
    let c = parse(&[], &[("MAX_BUFFERED_PER_PEER", "0")]).unwrap();
    assert_eq!(c.connections.max_buffered_per_peer, 0);
    let c = parse(&["--max-buffered-per-peer", "4MiB"], &[]).unwrap();
    assert_eq!(c.connections.max_buffered_per_peer, 4 << 20);
}

/// `docs/configuration.md` has one row per setting, with its flags and this default, and no
/// row for a setting that does not exist.
#[test]
fn the_settings_table_in_the_docs_matches_the_code() {
    let doc = include_str!("../../../docs/configuration.md");
    let wrong = settings::docs_table_mismatches(doc, SETTINGS);
    assert!(wrong.is_empty(), "docs/configuration.md: {wrong:#?}");
}

#[test]
fn help_lists_every_setting() {
    let Command::Help(help) = Config::from_sources(["--help"], |_| None).unwrap() else {
        panic!()
    };
    for s in SETTINGS {
        assert!(
            help.contains(s.env)
                && help.contains(&format!("--{}", s.long))
                && help.contains(s.default.shown()),
            "{}",
            s.env
        );
    }
    let Command::Version(v) = Config::from_sources(["--version"], |_| None).unwrap() else {
        panic!()
    };
    assert!(v.starts_with("golectra-server ") && v.contains("commit"));
}

/// Strict mode's time window must keep a replay within the key retention (docs/signing.md): a
/// request is accepted less than `2 × MAX_SKEW + 1 s` after its first acceptance, and that must
/// fit in the shortest retention with time to spare for clock differences (119 s).
#[test]
fn the_signature_window_fits_in_the_shortest_key_retention() {
    let accepted_for = 2 * golectra_common::signed_request::MAX_SKEW + Duration::from_secs(1);
    assert_eq!(accepted_for, Duration::from_secs(481));
    assert!(accepted_for + Duration::from_secs(119) <= *RETENTION_BOUNDS.start());
}
