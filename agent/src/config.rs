//! Agent settings (docs/agent.md): the table of every setting with its env name, flags and default,
//! and the conversion of raw values into one immutable [`Config`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use golectra_common::metric::MAX_NAME_BYTES;
use golectra_common::settings::{
    self, Arity, ConfigError, Fallback::Value, INTERVAL_BOUNDS, Setting,
};
use golectra_common::tags::parse_tag_list;
use golectra_common::tls_client::{ClientTls, TlsSettings};

/// Every agent setting. The order is the order of `--help`.
pub static SETTINGS: &[&Setting] = &[
    &ADDRESS,
    &KEY,
    &REPORT_INTERVAL,
    &POLL_INTERVAL,
    &RATE_LIMIT,
    &STATE_FILE,
    &TAGS,
    &CA_FILE,
    &TLS_CLIENT_CERT_FILE,
    &TLS_CLIENT_KEY_FILE,
];

/// Server to report to: `http[s]://host[:port][/prefix]`, `host[:port]` or `:port` (localhost).
pub static ADDRESS: Setting = Setting {
    env: "ADDRESS",
    short: Some('a'),
    long: "address",
    default: Value("http://localhost:8080"),
    arity: Arity::Value,
    help: "server to report to: http[s]://host[:port][/prefix], host[:port] or :port (localhost)",
};

/// Signing key: adds HashSHA256 (SHA-256 of body and key) to every request.
pub static KEY: Setting = Setting {
    env: "KEY",
    short: Some('k'),
    long: "key",
    default: Value(""),
    arity: Arity::Value,
    help: "signing key: adds HashSHA256 (SHA-256 of body and key) to every request",
};

/// Time between reports to the server, 10ms to 24h.
pub static REPORT_INTERVAL: Setting = Setting {
    env: "REPORT_INTERVAL",
    short: Some('r'),
    long: "report-interval",
    default: Value("10"),
    arity: Arity::Value,
    help: "time between reports to the server, 10ms to 24h",
};

/// Time between two samples of the metrics, 10ms to 24h.
pub static POLL_INTERVAL: Setting = Setting {
    env: "POLL_INTERVAL",
    short: Some('p'),
    long: "poll-interval",
    default: Value("2"),
    arity: Arity::Value,
    help: "time between two samples of the metrics, 10ms to 24h",
};

/// Number of sender workers, i.e. of reports in flight at once (at least 1).
pub static RATE_LIMIT: Setting = Setting {
    env: "RATE_LIMIT",
    short: Some('l'),
    long: "rate-limit",
    default: Value("1"),
    arity: Arity::Value,
    help: "number of sender workers, i.e. of reports in flight at once (at least 1)",
};

/// Where the agent keeps its instance id, sequence, pending deltas and reports in doubt across
/// restarts; empty = nothing survives the process.
pub static STATE_FILE: Setting = Setting {
    env: "STATE_FILE",
    short: Some('s'),
    long: "state-file",
    default: Value(""),
    arity: Arity::Value,
    help: "file keeping the instance id, pending deltas and reports in doubt across restarts; empty = none",
};

/// Tags added to every metric name in Graphite's tagged form (`host=web1,dc=eu` sends
/// `Alloc;dc=eu;host=web1`); empty = the original's plain names.
pub static TAGS: Setting = Setting {
    env: "TAGS",
    short: None,
    long: "tags",
    default: Value(""),
    arity: Arity::Value,
    help: "tags added to every metric name: host=web1,dc=eu sends Alloc;dc=eu;host=web1; empty = plain names",
};

/// With an `https://` address: verify the server against only the CA certificates of this PEM
/// file; empty = the system trust store.
pub static CA_FILE: Setting = Setting {
    env: "CA_FILE",
    short: None,
    long: "ca-file",
    default: Value(""),
    arity: Arity::Value,
    help: "https: trust only the CA certificates in this PEM file; empty = the system trust store",
};

/// With an `https://` address: the client certificate (PEM chain) for servers that require one.
pub static TLS_CLIENT_CERT_FILE: Setting = Setting {
    env: "TLS_CLIENT_CERT_FILE",
    short: None,
    long: "tls-client-cert-file",
    default: Value(""),
    arity: Arity::Value,
    help: "https: client certificate (PEM) for mTLS, with TLS_CLIENT_KEY_FILE",
};

/// The private key (PEM) of `TLS_CLIENT_CERT_FILE`.
pub static TLS_CLIENT_KEY_FILE: Setting = Setting {
    env: "TLS_CLIENT_KEY_FILE",
    short: None,
    long: "tls-client-key-file",
    default: Value(""),
    arity: Arity::Value,
    help: "https: private key (PEM) of TLS_CLIENT_CERT_FILE",
};

/// The agent's TLS settings, as the shared loader names them.
pub static TLS: TlsSettings = TlsSettings {
    ca_file: &CA_FILE,
    client_cert: &TLS_CLIENT_CERT_FILE,
    client_key: &TLS_CLIENT_KEY_FILE,
};

const INTRO: &str =
    "Golectra agent: samples process and host metrics and pushes them to a Golectra server.";

/// Most sender workers accepted; more would only open more idle connections.
const MAX_RATE_LIMIT: u64 = 64;

/// Most bytes `TAGS` may add to a name (`;key=value` per tag): the longest name a collector
/// makes, `CPUutilization` and a CPU number, stays under 24 bytes, and a name the server
/// accepts is at most [`MAX_NAME_BYTES`].
pub const MAX_TAGS_BYTES: usize = MAX_NAME_BYTES - 24;

/// The agent's configuration, immutable once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Base URL of the server without a trailing slash (`ADDRESS`, default
    /// `http://localhost:8080`).
    pub server: String,
    /// With an `https://` server: the trust roots (`CA_FILE`, default the system trust store)
    /// and the client certificate (`TLS_CLIENT_CERT_FILE`, `TLS_CLIENT_KEY_FILE`), read at
    /// start; `None` for `http://`.
    pub tls: Option<ClientTls>,
    /// Signing key (`KEY`, default none).
    pub key: Option<Vec<u8>>,
    /// Time between reports (`REPORT_INTERVAL`, default 10 s).
    pub report_interval: Duration,
    /// Time between polls (`POLL_INTERVAL`, default 2 s).
    pub poll_interval: Duration,
    /// Number of sender workers (`RATE_LIMIT`, default 1).
    pub rate_limit: usize,
    /// The state file (`STATE_FILE`, default none).
    pub state_file: Option<PathBuf>,
    /// Tags added to every metric name, in the order given (`TAGS`, default none).
    pub tags: Vec<(String, String)>,
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
            let server = values.parse(&ADDRESS, parse_server)?;
            let https = server.starts_with("https://");
            Ok(Config {
                tls: ClientTls::from_settings(values, &TLS, https, &ADDRESS)?,
                server,
                // Trimmed like the original, so a key with a stray newline or space signs
                // exactly as a Go peer configured with the same file does.
                key: Some(values.text(&KEY).trim().as_bytes().to_vec()).filter(|k| !k.is_empty()),
                report_interval: values.duration_in(&REPORT_INTERVAL, INTERVAL_BOUNDS, false)?,
                poll_interval: values.duration_in(&POLL_INTERVAL, INTERVAL_BOUNDS, false)?,
                rate_limit: values.number(&RATE_LIMIT, 1, MAX_RATE_LIMIT)? as usize,
                state_file: Some(values.string(&STATE_FILE))
                    .filter(|path| !path.is_empty())
                    .map(PathBuf::from),
                tags: values.parse(&TAGS, parse_tags)?,
            })
        })
    }

    /// One line for the start-up log; the key is masked.
    pub fn describe(&self) -> String {
        format!(
            "server {}{}, report every {:?}, poll every {:?}, {} sender(s), signing {}, state file {}, tags {}",
            self.server,
            self.tls
                .as_ref()
                .map_or(String::new(), |tls| format!(" ({})", tls.describe())),
            self.report_interval,
            self.poll_interval,
            self.rate_limit,
            if self.key.is_some() { "on" } else { "off" },
            self.state_file
                .as_deref()
                .map_or("none".into(), |p| p.display().to_string()),
            if self.tags.is_empty() {
                "none".to_owned()
            } else {
                let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                tags.join(",")
            }
        )
    }
}

/// Parses `TAGS` ([`parse_tag_list`]) and checks that the tagged names stay within the
/// server's name limit ([`MAX_TAGS_BYTES`]).
pub fn parse_tags(text: &str) -> Result<Vec<(String, String)>, String> {
    let tags = parse_tag_list(text)?;
    let added: usize = tags.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    if added > MAX_TAGS_BYTES {
        return Err(format!(
            "the tags add {added} bytes to every metric name: at most {MAX_TAGS_BYTES} (a name is at most {MAX_NAME_BYTES} bytes)"
        ));
    }
    Ok(tags)
}

/// Turns every address form the original agent accepts into a base URL without a trailing
/// slash, to which endpoint paths (`/updates/`) are appended:
///
/// | given | base URL |
/// |---|---|
/// | `http://host:port`, `host:port` | `http://host:port` |
/// | `:port` | `http://localhost:port` |
/// | `http://host`, `host` | `http://host` (port 80) |
/// | `http://proxy:8080/golectra/` | `http://proxy:8080/golectra` (the prefix is kept) |
/// | `https://host[:port][/prefix]` | `https://host[:port][/prefix]` (port 443 by default) |
///
/// Surrounding whitespace is trimmed, as the original does. Only `https://` written out means
/// TLS: a form without a scheme is plain HTTP, as in the original. Other schemes, credentials,
/// queries and fragments are refused, which the original's endpoint building would not carry
/// either.
pub fn parse_server(text: &str) -> Result<String, String> {
    const FORMS: &str = "expected http[s]://host[:port][/prefix], host[:port] or :port";
    let trimmed = text.trim();
    let (scheme, rest) = match trimmed.strip_prefix("https://") {
        Some(rest) => ("https", rest),
        None => ("http", trimmed.strip_prefix("http://").unwrap_or(trimmed)),
    };
    if rest.contains("://") {
        return Err(format!("unsupported scheme: {FORMS}"));
    }
    if let Some(c) = rest
        .chars()
        .find(|c| matches!(c, '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "unexpected character {c:?} in the address: {FORMS}"
        ));
    }
    let (authority, prefix) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let prefix = prefix.trim_end_matches('/');
    let authority = match authority.strip_prefix(':') {
        Some(port) => format!("localhost:{port}"),
        None => authority.to_owned(),
    };
    let (host, port) = split_host_port(&authority).ok_or(FORMS)?;
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("invalid port {port:?}")),
        }
    }
    if host.is_empty() {
        return Err(format!("no host: {FORMS}"));
    }
    Ok(format!("{scheme}://{authority}{prefix}"))
}

/// Splits `host[:port]`, where an IPv6 host is bracketed (`[::1]:80`, `[::1]`). `None` for an
/// unbracketed IPv6 address, which is ambiguous.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(after) = authority.strip_prefix('[') {
        let (v6, rest) = after.split_once(']')?;
        if v6.is_empty() {
            return None;
        }
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':')?),
        };
        return Some((v6, port));
    }
    match authority.split_once(':') {
        Some((_, port)) if port.contains(':') => None,
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use golectra_common::tls_client::Trust;
    use golectra_testkit::tls::TestCa;

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
                tls: None,
                key: None,
                report_interval: Duration::from_secs(10),
                poll_interval: Duration::from_secs(2),
                rate_limit: 1,
                state_file: None,
                tags: Vec::new(),
            }
        );
    }

    fn tags(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tags_env_beats_flag_and_empty_means_plain_names() {
        let c = parse(&["--tags", "host=flag"], &[("TAGS", "host=web1, dc=eu")]).unwrap();
        assert_eq!(c.tags, tags(&[("host", "web1"), ("dc", "eu")]));
        assert!(
            c.describe().ends_with(", tags host=web1,dc=eu"),
            "{}",
            c.describe()
        );
        let c = parse(&["--tags=host=flag"], &[]).unwrap();
        assert_eq!(c.tags, tags(&[("host", "flag")]));
        let c = parse(&["-tags", "rack=r1=a"], &[]).unwrap();
        assert_eq!(c.tags, tags(&[("rack", "r1=a")]), "a value may hold '='");
        // An empty TAGS counts as unset (systemd's `TAGS=` in agent.env turns the unit's off).
        let c = parse(&["--tags", "host=flag"], &[("TAGS", "")]).unwrap();
        assert_eq!(c.tags, tags(&[("host", "flag")]));
        let c = parse(&["--tags", ""], &[]).unwrap();
        assert_eq!(c.tags, []);
        assert!(c.describe().ends_with(", tags none"), "{}", c.describe());
        assert_eq!(parse(&["--tags", " , "], &[]).unwrap().tags, []);
    }

    #[test]
    fn a_bad_tag_list_is_one_line_naming_tags() {
        let long = format!("host={}", "x".repeat(MAX_TAGS_BYTES));
        let fits = format!("host={}", "x".repeat(MAX_TAGS_BYTES - "host".len() - 2));
        for (value, why) in [
            (
                "host",
                "invalid TAGS (--tags) value \"host\": tag \"host\" is not key=value",
            ),
            ("1h=x", "tag key \"1h\" must match"),
            ("host=", "tag \"host\" needs a non-empty value"),
            ("host=a;b", "without ';'"),
            ("host=a\tb", "control characters"),
            ("host=a,host=b", "tag key \"host\" appears twice"),
            ("ho st=a", "tag key \"ho st\""),
            (
                long.as_str(),
                "the tags add 237 bytes to every metric name: at most 231",
            ),
        ] {
            for err in [
                parse(&[], &[("TAGS", value)]).unwrap_err(),
                parse(&["--tags", value], &[]).unwrap_err(),
            ] {
                assert!(err.0.contains(why), "{value:?}: {err}");
                assert!(err.0.starts_with("invalid TAGS (--tags) value "), "{err}");
                assert!(!err.0.contains('\n'), "one line: {err}");
            }
        }
        let c = parse(&[], &[("TAGS", fits.as_str())]).unwrap();
        let name = golectra_common::tags::with_tags("CPUutilization99999", &c.tags);
        assert!(name.len() <= MAX_NAME_BYTES, "{}", name.len());
    }

    #[test]
    fn address_forms() {
        for (given, wanted) in [
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://127.0.0.1:9090/", "http://127.0.0.1:9090"),
            ("example.org:80", "http://example.org:80"),
            (":9090", "http://localhost:9090"),
            ("[::1]:9090", "http://[::1]:9090"),
            (" http://localhost:8080 \n", "http://localhost:8080"),
            // The original's other forms: port 80 and a path prefix.
            ("http://example.org", "http://example.org"),
            ("http://example.org/", "http://example.org"),
            ("localhost", "http://localhost"),
            ("http://[::1]", "http://[::1]"),
            ("http://proxy:8080/golectra", "http://proxy:8080/golectra"),
            ("http://proxy:8080/golectra/", "http://proxy:8080/golectra"),
            ("proxy:8080/a/b", "http://proxy:8080/a/b"),
            ("http://proxy/golectra", "http://proxy/golectra"),
            ("https://h:1", "https://h:1"),
            ("https://metrics.example/", "https://metrics.example"),
            (
                "https://[::1]:8443/golectra/",
                "https://[::1]:8443/golectra",
            ),
            (" https://127.0.0.1:8443 ", "https://127.0.0.1:8443"),
        ] {
            assert_eq!(parse_server(given).as_deref(), Ok(wanted), "{given}");
        }
        for bad in [
            "",
            "http://",
            ":0",
            ":99999",
            "h:",
            "https://",
            "https://h:0",
            "https://u@h:1",
            "https://http://h:1",
            "ftp://h:1",
            "::1:80",
            "[]:80",
            "[::1]x",
            "http://user:pw@h:1",
            "http://h:1/?q=1",
            "http://h:1/#x",
            "http://h:1/a b",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_is_trimmed_like_the_original() {
        let c = parse(&[], &[("KEY", " s3cret\n")]).unwrap();
        assert_eq!(c.key.as_deref(), Some(&b"s3cret"[..]));
        let c = parse(&["-k", "\ts3cret "], &[]).unwrap();
        assert_eq!(c.key.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(parse(&["-k", "  "], &[]).unwrap().key, None);
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
    fn state_file_env_beats_flag_and_empty_means_none() {
        let c = parse(
            &["-s", "flag.json"],
            &[("STATE_FILE", "/var/lib/a/state.json")],
        )
        .unwrap();
        assert_eq!(c.state_file, Some(PathBuf::from("/var/lib/a/state.json")));
        let c = parse(&["--state-file=s.json"], &[]).unwrap();
        assert_eq!(c.state_file, Some(PathBuf::from("s.json")));
        assert_eq!(parse(&["-s", ""], &[]).unwrap().state_file, None);
    }

    #[test]
    fn tls_settings_env_beats_flag_and_are_read_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (env_ca, flag_ca) = (TestCa::new("env CA"), TestCa::new("flag CA"));
        let env_path = env_ca.write_cert(dir.path(), "env");
        let flag_path = flag_ca.write_cert(dir.path(), "flag");
        let client = env_ca.client("agent").write(dir.path(), "client");
        let (env_path, flag_path) = (env_path.to_str().unwrap(), flag_path.to_str().unwrap());
        let c = parse(
            &["-a", "https://h:1", "--ca-file", flag_path],
            &[("CA_FILE", env_path)],
        )
        .unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.trust(), &Trust::CaFile(env_path.into()));
        assert_eq!(tls.client_cert_file(), None);
        let c = parse(
            &[
                "-a=https://h:1",
                "--ca-file",
                flag_path,
                "--tls-client-cert-file",
                "/nonexistent.crt",
                "--tls-client-key-file",
                client.key.to_str().unwrap(),
            ],
            &[("TLS_CLIENT_CERT_FILE", client.cert.to_str().unwrap())],
        )
        .unwrap();
        let tls = c.tls.as_ref().unwrap();
        assert_eq!(tls.trust(), &Trust::CaFile(flag_path.into()));
        assert_eq!(tls.client_cert_file(), Some(client.cert.as_path()));
        assert!(c.describe().contains(&format!(
            "server https://h:1 (verifying the peer against only the CAs in {flag_path}, client certificate {})",
            client.cert.display()
        )));
        // Plain HTTP reads no TLS file at all.
        assert_eq!(parse(&["-a", "http://h:1"], &[]).unwrap().tls, None);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (args, env, setting) in [
            (&["-r", "0"][..], &[][..], "REPORT_INTERVAL (-r)"),
            (&[], &[("REPORT_INTERVAL", "soon")], "REPORT_INTERVAL (-r)"),
            (&["-p", "0s"], &[], "POLL_INTERVAL (-p)"),
            (&["-p", "-1"], &[], "POLL_INTERVAL (-p)"),
            (&["-p", "1ns"], &[], "POLL_INTERVAL (-p)"),
            (&["-p", "6000000000000000000"], &[], "POLL_INTERVAL (-p)"),
            (&["-r", "1ns"], &[], "REPORT_INTERVAL (-r)"),
            (
                &[],
                &[("REPORT_INTERVAL", "6000000000000000000")],
                "REPORT_INTERVAL (-r)",
            ),
            (&["-l", "0"], &[], "RATE_LIMIT (-l)"),
            (&["-l", "many"], &[], "RATE_LIMIT (-l)"),
            (&["-a", "ftp://nowhere:1"], &[], "ADDRESS (-a)"),
            (&["-a", "nowhere:"], &[], "ADDRESS (-a)"),
            (&[], &[("ADDRESS", "https://h:0")], "ADDRESS (-a)"),
            (
                &["-a", "http://h:1"],
                &[("CA_FILE", "/etc/ca.pem")],
                "CA_FILE (--ca-file)",
            ),
            (
                &["-a", "https://h:1", "--tls-client-cert-file", "c.crt"],
                &[],
                "TLS_CLIENT_KEY_FILE (--tls-client-key-file)",
            ),
            (
                &["-a", "https://h:1", "--ca-file", "/nonexistent/ca.pem"],
                &[],
                "CA_FILE (--ca-file)",
            ),
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
                    && help.contains(s.default.shown()),
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

    /// `docs/agent.md` has one row per setting, with its flags and this default.
    #[test]
    fn the_settings_table_in_the_docs_matches_the_code() {
        let doc = include_str!("../../docs/agent.md");
        let wrong = settings::docs_table_mismatches(doc, SETTINGS);
        assert!(wrong.is_empty(), "docs/agent.md: {wrong:#?}");
    }

    #[test]
    fn the_test_kit_scrubs_every_setting() {
        let scrubbed = golectra_testkit::env::scrubbed();
        for s in SETTINGS {
            assert!(
                golectra_testkit::env::AGENT_SETTINGS.contains(&s.env) && scrubbed.contains(&s.env),
                "{} is missing from golectra_testkit::env::AGENT_SETTINGS",
                s.env
            );
        }
    }

    #[test]
    fn key_is_masked_in_the_description() {
        let c = parse(&["-k", "s3cret"], &[]).unwrap();
        assert!(!c.describe().contains("s3cret"));
    }
}
