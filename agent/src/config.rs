//! Agent settings (SPEC §2): the table of every setting with its env name, flags and default,
//! and the conversion of raw values into one immutable [`Config`].

use std::ffi::OsString;
use std::time::Duration;

use golectra_common::settings::{self, Arity, ConfigError, Setting};

/// Every agent setting. The order is the order of `--help`.
pub static SETTINGS: &[Setting] = &[
    Setting {
        env: "ADDRESS",
        short: Some('a'),
        long: "address",
        default: "http://localhost:8080",
        arity: Arity::Value,
        help: "server to report to: http://host:port, host:port or :port (localhost)",
    },
    Setting {
        env: "KEY",
        short: Some('k'),
        long: "key",
        default: "",
        arity: Arity::Value,
        help: "signing key: adds HashSHA256 (SHA-256 of body and key) to every request",
    },
    Setting {
        env: "REPORT_INTERVAL",
        short: Some('r'),
        long: "report-interval",
        default: "10",
        arity: Arity::Value,
        help: "time between reports to the server; must be greater than 0",
    },
    Setting {
        env: "POLL_INTERVAL",
        short: Some('p'),
        long: "poll-interval",
        default: "2",
        arity: Arity::Value,
        help: "time between two samples of the metrics; must be greater than 0",
    },
    Setting {
        env: "RATE_LIMIT",
        short: Some('l'),
        long: "rate-limit",
        default: "1",
        arity: Arity::Value,
        help: "number of sender workers, i.e. of reports in flight at once (at least 1)",
    },
];

const INTRO: &str =
    "Golectra agent: samples process and host metrics and pushes them to a Golectra server.";

/// Most sender workers accepted; more would only open more idle connections.
const MAX_RATE_LIMIT: u64 = 64;

/// The agent's configuration, immutable once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Base URL of the server without a trailing slash (`ADDRESS`, default
    /// `http://localhost:8080`).
    pub server: String,
    /// Signing key (`KEY`, default none).
    pub key: Option<Vec<u8>>,
    /// Time between reports (`REPORT_INTERVAL`, default 10 s).
    pub report_interval: Duration,
    /// Time between polls (`POLL_INTERVAL`, default 2 s).
    pub poll_interval: Duration,
    /// Number of sender workers (`RATE_LIMIT`, default 1).
    pub rate_limit: usize,
}

/// What the command line asks the agent to do.
pub type Command = settings::Command<Config>;

impl Config {
    /// Builds the configuration from arguments (without the program name) and an environment.
    pub fn from_sources(
        args: impl IntoIterator<Item = impl Into<OsString>>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Command, ConfigError> {
        settings::parse("golectra-agent", INTRO, SETTINGS, args, env, |values| {
            Ok(Config {
                server: values.parse("ADDRESS", parse_server)?,
                key: Some(values.string("KEY").into_bytes()).filter(|k| !k.is_empty()),
                report_interval: values.positive_duration("REPORT_INTERVAL")?,
                poll_interval: values.positive_duration("POLL_INTERVAL")?,
                rate_limit: values.number("RATE_LIMIT", 1, MAX_RATE_LIMIT)? as usize,
            })
        })
    }

    /// One line for the start-up log; the key is masked.
    pub fn describe(&self) -> String {
        format!(
            "server {}, report every {:?}, poll every {:?}, {} sender(s), signing {}",
            self.server,
            self.report_interval,
            self.poll_interval,
            self.rate_limit,
            if self.key.is_some() { "on" } else { "off" }
        )
    }
}

/// Turns `http://host:port`, `host:port` or `:port` into a base URL `http://host:port`.
///
/// Only plain HTTP is supported (the agent is built without TLS), so `https://` is refused at
/// start rather than failing at every report.
pub fn parse_server(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    if trimmed.starts_with("https://") {
        return Err("https is not supported: use http:// (or a TLS-terminating proxy)".into());
    }
    let authority = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    if authority.contains("://") || authority.contains('/') {
        return Err("expected http://host:port, host:port or :port".into());
    }
    let authority = match authority.strip_prefix(':') {
        Some(port) => format!("localhost:{port}"),
        None => authority.to_owned(),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or("expected http://host:port, host:port or :port")?;
    let bracketed_v6 = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || (host.contains(':') && !bracketed_v6) {
        return Err("expected http://host:port, host:port or :port".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("http://{authority}")),
        _ => Err(format!("invalid port {port:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        match Config::from_sources(args.iter().copied(), settings::fixed_env(env))? {
            Command::Run(c) => Ok(c),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        assert_eq!(
            parse(&[], &[]).unwrap(),
            Config {
                server: "http://localhost:8080".into(),
                key: None,
                report_interval: Duration::from_secs(10),
                poll_interval: Duration::from_secs(2),
                rate_limit: 1,
            }
        );
    }

    #[test]
    fn address_forms() {
        for (given, wanted) in [
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://127.0.0.1:9090/", "http://127.0.0.1:9090"),
            ("example.org:80", "http://example.org:80"),
            (":9090", "http://localhost:9090"),
            ("[::1]:9090", "http://[::1]:9090"),
        ] {
            assert_eq!(parse_server(given).as_deref(), Ok(wanted), "{given}");
        }
        for bad in [
            "",
            "localhost",
            ":0",
            ":99999",
            "https://h:1",
            "ftp://h:1",
            "h:1/path",
            "::1:80",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn address_env_beats_flag() {
        let c = parse(&["-a", ":1"], &[("ADDRESS", ":2")]).unwrap();
        assert_eq!(c.server, "http://localhost:2");
        assert_eq!(parse(&["-a=:1"], &[]).unwrap().server, "http://localhost:1");
    }

    #[test]
    fn key_env_beats_flag() {
        let c = parse(&["-k", "flag"], &[("KEY", "env")]).unwrap();
        assert_eq!(c.key.as_deref(), Some(&b"env"[..]));
        let c = parse(&["--key=flag"], &[]).unwrap();
        assert_eq!(c.key.as_deref(), Some(&b"flag"[..]));
    }

    #[test]
    fn report_interval_env_beats_flag_and_takes_units() {
        let c = parse(&["-r", "5"], &[("REPORT_INTERVAL", "500ms")]).unwrap();
        assert_eq!(c.report_interval, Duration::from_millis(500));
        let c = parse(&["-report-interval=7s"], &[]).unwrap();
        assert_eq!(c.report_interval, Duration::from_secs(7));
    }

    #[test]
    fn poll_interval_env_beats_flag_and_takes_units() {
        let c = parse(&["-p", "5"], &[("POLL_INTERVAL", "100ms")]).unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(100));
        let c = parse(&["-p", "3"], &[]).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(3));
    }

    #[test]
    fn rate_limit_env_beats_flag() {
        let c = parse(&["-l", "2"], &[("RATE_LIMIT", "4")]).unwrap();
        assert_eq!(c.rate_limit, 4);
        assert_eq!(parse(&["-l=3"], &[]).unwrap().rate_limit, 3);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (args, env, setting) in [
            (&["-r", "0"][..], &[][..], "REPORT_INTERVAL (-r)"),
            (&[], &[("REPORT_INTERVAL", "soon")], "REPORT_INTERVAL (-r)"),
            (&["-p", "0s"], &[], "POLL_INTERVAL (-p)"),
            (&["-p", "-1"], &[], "POLL_INTERVAL (-p)"),
            (&["-l", "0"], &[], "RATE_LIMIT (-l)"),
            (&["-l", "many"], &[], "RATE_LIMIT (-l)"),
            (&["-a", "nowhere"], &[], "ADDRESS (-a)"),
            (&[], &[("ADDRESS", "https://h:1")], "ADDRESS (-a)"),
        ] {
            let err = parse(args, env).unwrap_err();
            assert!(err.0.contains(setting), "{args:?} {env:?}: {err}");
            assert!(!err.0.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn help_lists_every_setting_and_version_names_the_program() {
        let Command::Help(help) = Config::from_sources(["--help"], |_| None).unwrap() else {
            panic!("--help")
        };
        for s in SETTINGS {
            assert!(
                help.contains(s.env)
                    && help.contains(&format!("--{}", s.long))
                    && help.contains(s.default),
                "{}: {help}",
                s.env
            );
        }
        let Command::Version(v) = Config::from_sources(["--version"], |_| None).unwrap() else {
            panic!("--version")
        };
        assert!(
            v.starts_with("golectra-agent ") && v.contains("commit"),
            "{v}"
        );
    }

    #[test]
    fn key_is_masked_in_the_description() {
        let c = parse(&["-k", "s3cret"], &[]).unwrap();
        assert!(!c.describe().contains("s3cret"));
    }
}
