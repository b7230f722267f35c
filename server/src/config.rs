//! Server settings (SPEC §2): the table of every setting with its env name, flags and default,
//! and the conversion of raw values into one immutable [`Config`].

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use golectra_common::settings::{self, Arity, ConfigError, INTERVAL_BOUNDS, Setting};

use crate::audit::client_ip::{self, IpNet};
use crate::history::HistoryOptions;

/// Every server setting. The order is the order of `--help`.
pub static SETTINGS: &[Setting] = &[
    Setting {
        env: "ADDRESS",
        short: Some('a'),
        long: "address",
        default: ":8080",
        arity: Arity::Value,
        help: "listen address: host:port, :port (all IPv4 interfaces), port, or http://host:port",
    },
    Setting {
        env: "FILE_STORAGE_PATH",
        short: Some('f'),
        long: "file-storage-path",
        default: "metrics-db.json",
        arity: Arity::Value,
        help: "snapshot file of the memory store (ignored with a DSN)",
    },
    Setting {
        env: "DATABASE_DSN",
        short: Some('d'),
        long: "database-dsn",
        default: "",
        arity: Arity::Value,
        help: "PostgreSQL DSN (URL or key=value); empty selects the memory store",
    },
    Setting {
        env: "KEY",
        short: Some('k'),
        long: "key",
        default: "",
        arity: Arity::Value,
        help: "signing key: checks HashSHA256 on requests and signs responses",
    },
    Setting {
        env: "STORE_INTERVAL",
        short: Some('i'),
        long: "store-interval",
        default: "300",
        arity: Arity::Value,
        help: "time between snapshots, 10ms to 24h; 0 makes every write durable before it is acknowledged",
    },
    Setting {
        env: "RESTORE",
        short: Some('r'),
        long: "restore",
        default: "false",
        arity: Arity::Bool,
        help: "load the snapshot file at start",
    },
    Setting {
        env: "AUDIT_FILE",
        short: None,
        long: "audit-file",
        default: "",
        arity: Arity::Value,
        help: "append an NDJSON audit event per successful write to this file",
    },
    Setting {
        env: "AUDIT_URL",
        short: None,
        long: "audit-url",
        default: "",
        arity: Arity::Value,
        help: "POST an audit event per successful write to this http:// URL",
    },
    Setting {
        env: "TRUSTED_PROXIES",
        short: None,
        long: "trusted-proxies",
        default: "",
        arity: Arity::Value,
        help: "comma-separated IPs/CIDRs whose X-Real-IP / X-Forwarded-For name the audited client",
    },
    Setting {
        env: "REQUIRE_SIGNATURE",
        short: None,
        long: "require-signature",
        default: "false",
        arity: Arity::Bool,
        help: "strict mode: with a key, reject writes whose body carries no HashSHA256 (400)",
    },
    Setting {
        env: "WORKERS",
        short: Some('w'),
        long: "workers",
        default: "4 x CPU cores",
        arity: Arity::Value,
        help: "number of request worker threads (fixed pool)",
    },
    Setting {
        env: "MAX_BODY_SIZE",
        short: None,
        long: "max-body-size",
        default: "4MiB",
        arity: Arity::Value,
        help: "largest request body on the wire; larger gets 413",
    },
    Setting {
        env: "MAX_INFLATED_SIZE",
        short: None,
        long: "max-inflated-size",
        default: "32MiB",
        arity: Arity::Value,
        help: "largest request body after gzip inflation; larger gets 413",
    },
    Setting {
        env: "MAX_BATCH_ITEMS",
        short: None,
        long: "max-batch-items",
        default: "100000",
        arity: Arity::Value,
        help: "most metrics in one /updates batch; more gets 413",
    },
    Setting {
        env: "HISTORY_INTERVAL",
        short: None,
        long: "history-interval",
        default: "5s",
        arity: Arity::Value,
        help: "time between samples of the in-memory history behind the dashboard's sparklines, 10ms to 24h",
    },
    Setting {
        env: "HISTORY_POINTS",
        short: None,
        long: "history-points",
        default: "60",
        arity: Arity::Value,
        help: "samples kept per metric (16 bytes each); 0 turns the history off",
    },
    Setting {
        env: "SUMMARY_INTERVAL",
        short: None,
        long: "summary-interval",
        default: "60s",
        arity: Arity::Value,
        help: "time between the one-line traffic summaries in the log (only after traffic), 10ms to 24h; 0 turns them off",
    },
    Setting {
        env: "MAX_CONNECTIONS",
        short: None,
        long: "max-connections",
        default: "1024",
        arity: Arity::Value,
        help: "most open client connections; at the cap an idle one is closed (never-used first), or the newcomer gets 503",
    },
    Setting {
        env: "IDLE_TIMEOUT",
        short: None,
        long: "idle-timeout",
        default: "60s",
        arity: Arity::Value,
        help: "how long a keep-alive connection may wait for its next request before it is closed",
    },
    Setting {
        env: "HEADER_TIMEOUT",
        short: None,
        long: "header-timeout",
        default: "10s",
        arity: Arity::Value,
        help: "time allowed for a whole request head once it started; slower gets 408",
    },
    Setting {
        env: "BODY_TIMEOUT",
        short: None,
        long: "body-timeout",
        default: "30s",
        arity: Arity::Value,
        help: "time allowed for a whole request body (slower gets 408) and for writing a response",
    },
    Setting {
        env: "IO_TIMEOUT",
        short: None,
        long: "io-timeout",
        default: "10s",
        arity: Arity::Value,
        help: "longest wait of one socket read or write during a request",
    },
    Setting {
        env: "BODY_BUFFER_BUDGET",
        short: None,
        long: "body-buffer-budget",
        default: "256MiB",
        arity: Arity::Value,
        help: "most request-body bytes buffered across all connections; a body that cannot get its share in time gets 503",
    },
];

/// The bounds of the connection timeouts: 1 ms to one day (a deadline further out would overflow
/// `Instant` arithmetic; nothing useful waits longer).
const TIMEOUT_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(24 * 60 * 60);

const INTRO: &str = "Golectra metrics server: stores gauges and counters pushed by agents and serves them over HTTP.";

/// Where metrics are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// The embedded memory store with its snapshot file.
    Memory {
        /// Snapshot file (`FILE_STORAGE_PATH`, default `metrics-db.json`).
        path: PathBuf,
        /// Time between snapshots (`STORE_INTERVAL`, default 300 s); zero = synchronous.
        interval: Duration,
        /// Load the snapshot at start (`RESTORE`, default false).
        restore: bool,
    },
    /// PostgreSQL (`DATABASE_DSN`, default empty = memory).
    Postgres {
        dsn: String,
        /// The file settings that were given but are ignored with a DSN, for a log line.
        ignored_file_settings: bool,
    },
}

/// Size limits of requests (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body on the wire (`MAX_BODY_SIZE`, default 4 MiB).
    pub max_body: usize,
    /// Largest body after inflation (`MAX_INFLATED_SIZE`, default 32 MiB).
    pub max_inflated: usize,
    /// Most items in one batch (`MAX_BATCH_ITEMS`, default 100 000).
    pub max_batch_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 4 << 20,
            max_inflated: 32 << 20,
            max_batch_items: 100_000,
        }
    }
}

/// Limits and timeouts of client connections (docs/limits.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Most open connections (`MAX_CONNECTIONS`, default 1024).
    pub max_connections: usize,
    /// Keep-alive wait for the next request (`IDLE_TIMEOUT`, default 60 s).
    pub idle_timeout: Duration,
    /// Whole request head once started (`HEADER_TIMEOUT`, default 10 s).
    pub header_timeout: Duration,
    /// Whole request body, and writing one response (`BODY_TIMEOUT`, default 30 s).
    pub body_timeout: Duration,
    /// One socket read or write during a request (`IO_TIMEOUT`, default 10 s).
    pub io_timeout: Duration,
    /// Request-body bytes buffered across all connections (`BODY_BUFFER_BUDGET`, default 256 MiB).
    pub body_buffer_budget: usize,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(10),
            body_buffer_budget: 256 << 20,
        }
    }
}

/// The server's configuration, immutable once parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Listen address (`ADDRESS`, default `:8080` = 0.0.0.0:8080).
    pub listen: SocketAddr,
    /// Memory or PostgreSQL store.
    pub storage: Storage,
    /// Signing key (`KEY`, default none).
    pub key: Option<Vec<u8>>,
    /// Reject unsigned writes when a key is set (`REQUIRE_SIGNATURE`, default false).
    pub require_signature: bool,
    /// Audit file (`AUDIT_FILE`, default none).
    pub audit_file: Option<PathBuf>,
    /// Audit URL (`AUDIT_URL`, default none); plain `http://` only.
    pub audit_url: Option<String>,
    /// Peers whose `X-Real-IP` / `X-Forwarded-For` are believed in audit events
    /// (`TRUSTED_PROXIES`, default none).
    pub trusted_proxies: Vec<IpNet>,
    /// Worker threads (`WORKERS`, default 4 × cores).
    pub workers: usize,
    pub limits: Limits,
    /// History behind the sparklines (`HISTORY_INTERVAL`, default 5 s; `HISTORY_POINTS`,
    /// default 60).
    pub history: HistoryOptions,
    /// Time between traffic summaries in the log (`SUMMARY_INTERVAL`, default 60 s; 0 = off).
    pub summary_interval: Duration,
    pub connections: Connections,
}

/// What the command line asks the server to do.
pub type Command = settings::Command<Box<Config>>;

impl Config {
    /// Builds the configuration from arguments (without the program name) and an environment.
    pub fn from_sources(
        args: impl IntoIterator<Item = impl Into<OsString>>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Command, ConfigError> {
        settings::parse("golectra-server", INTRO, SETTINGS, args, env, |values| {
            let listen = values.parse("ADDRESS", parse_listen)?;
            let dsn = values.string("DATABASE_DSN");
            let path = PathBuf::from(values.string("FILE_STORAGE_PATH"));
            let interval = values.duration_in("STORE_INTERVAL", INTERVAL_BOUNDS, true)?;
            let restore = values.bool("RESTORE")?;
            if path.as_os_str().is_empty() && dsn.is_empty() {
                return Err(ConfigError(
                    "invalid FILE_STORAGE_PATH (-f) value \"\": a snapshot path is required".into(),
                ));
            }
            let storage = if dsn.trim().is_empty() {
                Storage::Memory {
                    path,
                    interval,
                    restore,
                }
            } else {
                // A DSN that cannot be parsed is a configuration error (exit 2), caught before any
                // connection attempt. The message never echoes the DSN: it may hold a password.
                if let Err(e) = dsn.parse::<postgres::Config>() {
                    return Err(ConfigError(format!(
                        "invalid DATABASE_DSN (-d) value: {e} (expected postgres://user:password@host:port/db or key=value pairs such as host=h dbname=db)"
                    )));
                }
                let ignored_file_settings = ["FILE_STORAGE_PATH", "STORE_INTERVAL", "RESTORE"]
                    .iter()
                    .any(|env| {
                        values.text(env)
                            != SETTINGS
                                .iter()
                                .find(|s| s.env == *env)
                                .map_or("", |s| s.default)
                    });
                Storage::Postgres {
                    dsn,
                    ignored_file_settings,
                }
            };
            // Trimmed like the original, so a key with a stray newline or space checks and signs
            // exactly as a Go peer configured with the same file does.
            let key = Some(values.text("KEY").trim().as_bytes().to_vec()).filter(|k| !k.is_empty());
            let workers = if values.text("WORKERS") == "4 x CPU cores" {
                default_workers()
            } else {
                values.number("WORKERS", 1, 1024)? as usize
            };
            let limits = Limits {
                max_body: values
                    .parse("MAX_BODY_SIZE", |s| at_least(settings::parse_bytes(s)?, 1))?,
                max_inflated: values.parse("MAX_INFLATED_SIZE", |s| {
                    at_least(settings::parse_bytes(s)?, 1)
                })?,
                max_batch_items: values.number("MAX_BATCH_ITEMS", 1, u32::MAX as u64)? as usize,
            };
            let connections = Connections {
                max_connections: values.number("MAX_CONNECTIONS", 1, 1 << 20)? as usize,
                idle_timeout: values.duration_in("IDLE_TIMEOUT", TIMEOUT_BOUNDS, false)?,
                header_timeout: values.duration_in("HEADER_TIMEOUT", TIMEOUT_BOUNDS, false)?,
                body_timeout: values.duration_in("BODY_TIMEOUT", TIMEOUT_BOUNDS, false)?,
                io_timeout: values.duration_in("IO_TIMEOUT", TIMEOUT_BOUNDS, false)?,
                body_buffer_budget: values.parse("BODY_BUFFER_BUDGET", |s| {
                    at_least(settings::parse_bytes(s)?, 1)
                })?,
            };
            if connections.body_buffer_budget < limits.max_body {
                return Err(ConfigError(format!(
                    "invalid BODY_BUFFER_BUDGET (--body-buffer-budget) value {:?}: must be at least MAX_BODY_SIZE ({} bytes), or no body of the largest size could ever be buffered",
                    values.text("BODY_BUFFER_BUDGET"),
                    limits.max_body
                )));
            }
            let optional = |env: &str| Some(values.string(env)).filter(|s| !s.trim().is_empty());
            let audit_url = match optional("AUDIT_URL") {
                None => None,
                Some(_) => Some(values.parse("AUDIT_URL", |s| {
                    crate::audit::validate_url(s.trim())?;
                    Ok(s.trim().to_owned())
                })?),
            };
            let trusted_proxies = values.parse("TRUSTED_PROXIES", client_ip::parse_list)?;
            Ok(Box::new(Config {
                listen,
                storage,
                key,
                require_signature: values.bool("REQUIRE_SIGNATURE")?,
                audit_file: optional("AUDIT_FILE").map(PathBuf::from),
                audit_url,
                trusted_proxies,
                workers,
                limits,
                history: HistoryOptions {
                    interval: values.duration_in("HISTORY_INTERVAL", INTERVAL_BOUNDS, false)?,
                    points: values.number("HISTORY_POINTS", 0, 100_000)? as usize,
                },
                connections,
                summary_interval: values.duration_in("SUMMARY_INTERVAL", INTERVAL_BOUNDS, true)?,
            }))
        })
    }

    /// A configuration for tests: memory store without a file is not possible, so callers set
    /// `storage` themselves.
    pub fn for_tests(storage: Storage) -> Self {
        Self {
            listen: "127.0.0.1:0".parse().expect("valid"),
            storage,
            key: None,
            require_signature: false,
            audit_file: None,
            audit_url: None,
            trusted_proxies: Vec::new(),
            workers: 4,
            limits: Limits::default(),
            history: HistoryOptions::default(),
            summary_interval: Duration::ZERO,
            connections: Connections::default(),
        }
    }
}

fn at_least(n: usize, min: usize) -> Result<usize, String> {
    if n >= min {
        Ok(n)
    } else {
        Err(format!("must be at least {min}"))
    }
}

/// Default worker count: four per core. Workers block on the store (fsync in sync mode, the
/// database with PostgreSQL), so a few more threads than cores keep the CPUs busy.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 4
}

/// Parses `host:port`, `:port`, `port` or `http://host:port`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let trimmed = text.trim();
    let without_scheme = trimmed
        .strip_prefix("http://")
        .unwrap_or(trimmed)
        .trim_end_matches('/');
    let candidate = if let Some(port) = without_scheme.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if !without_scheme.is_empty() && without_scheme.bytes().all(|b| b.is_ascii_digit()) {
        format!("0.0.0.0:{without_scheme}")
    } else {
        without_scheme.to_owned()
    };
    let port_ok = candidate
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    if !port_ok {
        return Err("expected host:port, :port, port or http://host:port".into());
    }
    candidate
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "the host resolves to no address".into())
}

#[cfg(test)]
mod tests {
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
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.connections, Connections::default());
        assert!(c.workers >= 4);
        assert_eq!(c.history, HistoryOptions::default());
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
                points: 0
            }
        );
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
        let https = parse(&["--audit-url", "https://audit.example.com/hook"], &[]).unwrap_err();
        assert!(
            https.0.contains("AUDIT_URL (--audit-url)")
                && https.0.contains("https is not supported"),
            "{https}"
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
    fn trusted_proxies() {
        assert!(parse(&[], &[]).unwrap().trusted_proxies.is_empty());
        let c = parse(&["--trusted-proxies", "10.0.0.0/8, 127.0.0.1,::1"], &[]).unwrap();
        assert_eq!(
            c.trusted_proxies,
            client_ip::parse_list("10.0.0.0/8,127.0.0.1/32,::1/128").unwrap()
        );
        let c = parse(
            &["-trusted-proxies=10.0.0.0/8"],
            &[("TRUSTED_PROXIES", "192.168.0.0/16")],
        )
        .unwrap();
        assert_eq!(
            c.trusted_proxies,
            client_ip::parse_list("192.168.0.0/16").unwrap()
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

    /// `docs/configuration.md` has one row per setting, with its flags and this default, and no
    /// row for a setting that does not exist.
    #[test]
    fn the_settings_table_in_the_docs_matches_the_code() {
        let doc = include_str!("../../docs/configuration.md");
        let rows: Vec<Vec<&str>> = doc
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains(" | `"))
            .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        assert_eq!(rows.len(), SETTINGS.len(), "one row per setting");
        for s in SETTINGS {
            let env = format!("`{}`", s.env);
            let row = rows
                .iter()
                .find(|r| r[1] == env)
                .unwrap_or_else(|| panic!("docs/configuration.md lacks {}", s.env));
            assert!(
                row[2].contains(&format!("`--{}`", s.long)),
                "{}: {row:?}",
                s.env
            );
            if let Some(c) = s.short {
                assert!(row[2].contains(&format!("`-{c}`")), "{}: {row:?}", s.env);
            }
            let default = row[3].trim_matches('`');
            let wanted = match s.default {
                "" => "empty",
                "4 x CPU cores" => "4 × CPU cores",
                d => d,
            };
            assert_eq!(
                default, wanted,
                "default of {} in docs/configuration.md",
                s.env
            );
        }
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
                    && help.contains(s.default),
                "{}",
                s.env
            );
        }
        let Command::Version(v) = Config::from_sources(["--version"], |_| None).unwrap() else {
            panic!()
        };
        assert!(v.starts_with("golectra-server ") && v.contains("commit"));
    }
}
