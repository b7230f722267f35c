//! The settings parser both daemons share (docs/configuration.md).
//!
//! Each daemon declares its settings once as a table of [`Setting`]s; [`collect`] reads the
//! command line and the environment against that table and applies the precedence rule of the
//! original: **environment > flag > default**. An environment variable that is set but empty
//! counts as unset, as in the original. Accepted flag forms: `-a VALUE`, `-a=VALUE`,
//! `--audit-file VALUE`, `--audit-file=VALUE` and the Go-style `-audit-file VALUE` /
//! `-audit-file=VALUE`. Boolean flags take a bare `-r` (true) or an attached `-r=true|false`.
//!
//! Parsing is pure — arguments and environment come in as parameters — so tests never touch the
//! process environment.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::time::Duration;

/// How a setting takes its value on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// `-a VALUE` or `-a=VALUE`.
    Value,
    /// A bare `-r` means true; `-r=false` is accepted too.
    Bool,
}

/// What a setting is when neither the environment nor a flag gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// A default written as text and parsed like any other value; empty means "not set".
    Value(&'static str),
    /// A default the daemon computes at start (e.g. from the CPU count); the text describes it
    /// for `--help` and is never parsed. [`Values::given`] is `None` for such a setting.
    Computed(&'static str),
}

impl Fallback {
    /// The default as `--help`, the env files and the docs show it.
    pub fn shown(self) -> &'static str {
        match self {
            Fallback::Value(text) | Fallback::Computed(text) => text,
        }
    }
}

/// One setting of a daemon: its flag names, environment variable, default and meaning. Each
/// daemon declares every setting as a `static`, so configuration code names settings by value
/// (`values.bool(&RESTORE)`) and a misspelt setting is a compile error.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Environment variable, also the key used to look the value up.
    pub env: &'static str,
    /// Single-letter flag, if the original had one.
    pub short: Option<char>,
    /// Long flag name without dashes (`audit-file`).
    pub long: &'static str,
    /// The value when neither the environment nor a flag gives one: the only place a default
    /// is written in code.
    pub default: Fallback,
    /// One line for `--help`.
    pub help: &'static str,
    /// Whether the flag takes a value or is a boolean switch.
    pub arity: Arity,
}

impl Setting {
    /// How the setting is named in error messages: `STORE_INTERVAL (-i)`.
    pub fn label(&self) -> String {
        match self.short {
            Some(c) => format!("{} (-{c})", self.env),
            None => format!("{} (--{})", self.env, self.long),
        }
    }

    /// The one-line error for a bad value: `invalid STORE_INTERVAL (-i) value "x": why`.
    pub fn invalid(&self, text: &str, why: &str) -> ConfigError {
        ConfigError(format!("invalid {} value {text:?}: {why}", self.label()))
    }
}

/// A configuration error. Printed as one line; the daemons exit with code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these raw values.
    Run(Values),
    /// `--help` / `-h`.
    Help,
    /// `--version` / `-V`.
    Version,
}

/// Raw setting values after precedence was applied, to be converted by typed getters.
#[derive(Debug)]
pub struct Values {
    chosen: HashMap<&'static str, String>,
}

impl Values {
    /// The text given by the environment or a flag, if any.
    pub fn given(&self, setting: &Setting) -> Option<&str> {
        self.chosen.get(setting.env).map(String::as_str)
    }

    /// The raw text of a setting: given, else its default (empty for a computed default).
    pub fn text(&self, setting: &Setting) -> &str {
        self.given(setting).unwrap_or(match setting.default {
            Fallback::Value(text) => text,
            Fallback::Computed(_) => "",
        })
    }

    /// Whether the setting's text differs from its default (it was given with another value).
    pub fn changed(&self, setting: &Setting) -> bool {
        match (self.given(setting), setting.default) {
            (None, _) => false,
            (Some(text), Fallback::Value(default)) => text != default,
            (Some(_), Fallback::Computed(_)) => true,
        }
    }

    /// Converts a setting with `parse`; a failure becomes a one-line error naming the setting.
    pub fn parse<T>(
        &self,
        setting: &Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let text = self.text(setting);
        parse(text).map_err(|why| setting.invalid(text, &why))
    }

    /// The setting's text (given or default) as an owned string; empty when unset.
    pub fn string(&self, setting: &Setting) -> String {
        self.text(setting).to_owned()
    }

    /// The setting as a Go-style boolean (see [`parse_bool`]).
    pub fn bool(&self, setting: &Setting) -> Result<bool, ConfigError> {
        self.parse(setting, parse_bool)
    }

    /// A duration in `bounds`, or exactly 0 when `zero_allowed` (a setting where 0 means off
    /// or "every write"). Intervals are bounded both ways: below the minimum a loop spins a
    /// core, and past the maximum the scheduler's `Instant` arithmetic would overflow.
    pub fn duration_in(
        &self,
        setting: &Setting,
        bounds: std::ops::RangeInclusive<Duration>,
        zero_allowed: bool,
    ) -> Result<Duration, ConfigError> {
        self.parse(setting, |s| {
            let d = parse_duration(s)?;
            if bounds.contains(&d) || (zero_allowed && d.is_zero()) {
                return Ok(d);
            }
            let (min, max) = (
                humantime::format_duration(*bounds.start()),
                humantime::format_duration(*bounds.end()),
            );
            Err(if zero_allowed {
                format!("must be 0 or between {min} and {max}")
            } else {
                format!("must be between {min} and {max}")
            })
        })
    }

    /// An integer in `min..=max`.
    pub fn number(&self, setting: &Setting, min: u64, max: u64) -> Result<u64, ConfigError> {
        self.parse(setting, |s| {
            let n: u64 = s
                .trim()
                .parse()
                .map_err(|_| "expected a whole number".to_owned())?;
            if (min..=max).contains(&n) {
                Ok(n)
            } else {
                Err(format!("must be between {min} and {max}"))
            }
        })
    }
}

/// A fixed environment for tests and fuzzing: looks `name` up in `pairs` (an empty value counts
/// as unset, as in the real environment).
pub fn fixed_env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// Parses Go's boolean forms: `1 t T TRUE true True 0 f F FALSE false False`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// The bounds of every interval setting (poll, report, snapshot, history, summary): 10 ms to
/// one day.
pub const INTERVAL_BOUNDS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(24 * 60 * 60);

/// Parses plain seconds (`10`) or a duration with a unit (`10s`, `500ms`, `2m`, `1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|_| "expected seconds or a duration like 10s, 500ms, 2m".to_owned())
}

/// Parses a byte size such as `4194304`, `4MiB`, `512KiB`, `1G`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| "expected a size like 4194304, 512KiB or 4MiB".to_owned())?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?}: use KiB, MiB or GiB")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| "size is too large".to_owned())
}

/// Reads `args` (without the program name) and `env` against `table`.
pub fn collect(
    table: &[&'static Setting],
    args: impl IntoIterator<Item = impl Into<OsString>>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Parsed, ConfigError> {
    let args = normalize_go_style(table, args.into_iter().map(Into::into));
    let mut parser = lexopt::Parser::from_args(args);
    let mut from_flags: HashMap<&'static str, String> = HashMap::new();
    loop {
        let arg = parser.next().map_err(|e| ConfigError(e.to_string()))?;
        let Some(arg) = arg else { break };
        use lexopt::Arg::{Long, Short, Value};
        let setting = match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Short(c) => table.iter().find(|s| s.short == Some(c)).ok_or_else(|| {
                ConfigError(format!("unknown flag {:?} (see --help)", format!("-{c}")))
            })?,
            Long(name) => table
                .iter()
                .find(|s| s.long == name)
                // Quoted: the name is the user's text and may hold control characters (the
                // message must stay one line).
                .ok_or_else(|| {
                    ConfigError(format!(
                        "unknown flag {:?} (see --help)",
                        format!("--{name}")
                    ))
                })?,
            Value(v) => {
                return Err(ConfigError(format!(
                    "unexpected argument {:?}: settings are given as flags (see --help)",
                    v.to_string_lossy()
                )));
            }
        };
        let value = match setting.arity {
            Arity::Value => parser.value(),
            Arity::Bool => Ok(parser.optional_value().unwrap_or_else(|| "true".into())),
        }
        .map_err(|e| ConfigError(format!("{}: {e}", setting.label())))?;
        let value = value
            .into_string()
            .map_err(|v| ConfigError(format!("{}: value {v:?} is not UTF-8", setting.label())))?;
        from_flags.insert(setting.env, value);
    }
    let mut chosen = HashMap::new();
    for setting in table {
        let from_env = env(setting.env).filter(|v| !v.is_empty());
        if let Some(v) = from_env.or_else(|| from_flags.remove(setting.env)) {
            chosen.insert(setting.env, v);
        }
    }
    Ok(Parsed::Run(Values { chosen }))
}

/// Rewrites Go-style `-audit-file=x` to `--audit-file=x` for known long names, so that lexopt
/// (which reads `-abc` as three short flags) sees them as long options. Values are left alone.
fn normalize_go_style(table: &[&Setting], args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest_are_values = false;
    for arg in args {
        if !rest_are_values {
            if arg == "--" {
                rest_are_values = true;
            } else if let Some(text) = arg.to_str()
                && let Some(body) = text.strip_prefix('-').filter(|b| !b.starts_with('-'))
            {
                let name = body.split('=').next().unwrap_or(body);
                let known = name.len() > 1 && table.iter().any(|s| s.long == name);
                if known || name == "help" || name == "version" {
                    out.push(format!("-{text}").into());
                    continue;
                }
            }
        }
        out.push(arg);
    }
    out
}

/// What a daemon's command line asks for: run with a configuration, or print a text and exit 0.
#[derive(Debug)]
pub enum Command<C> {
    /// Run the daemon with this configuration.
    Run(C),
    /// The rendered `--help`.
    Help(String),
    /// The `--version` line.
    Version(String),
}

/// Everything a daemon's `Config::from_sources` does besides building its own configuration:
/// reads `args` and `env` against `table` and renders `--help` and `--version`; `build` turns
/// the values into the daemon's configuration.
pub fn parse<C>(
    program: &str,
    intro: &str,
    table: &[&'static Setting],
    args: impl IntoIterator<Item = impl Into<OsString>>,
    env: impl Fn(&str) -> Option<String>,
    build: impl FnOnce(&Values) -> Result<C, ConfigError>,
) -> Result<Command<C>, ConfigError> {
    match collect(table, args, env)? {
        Parsed::Help => Ok(Command::Help(help_text(program, intro, table))),
        Parsed::Version => Ok(Command::Version(crate::version::line(program))),
        Parsed::Run(values) => build(&values).map(Command::Run),
    }
}

/// The start of a daemon's `main`: the configuration to run with, or the exit code after
/// printing `--help`/`--version` (0) or a one-line configuration error (2).
pub fn run_or_exit<C>(
    program: &str,
    parsed: Result<Command<C>, ConfigError>,
) -> Result<C, std::process::ExitCode> {
    match parsed {
        Ok(Command::Run(config)) => Ok(config),
        Ok(Command::Help(text) | Command::Version(text)) => {
            println!("{text}");
            Err(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            // Before the logger exists; under journald this still carries the <3> prefix.
            crate::logging::early_error(program, &e.to_string());
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// Checks a Markdown settings table (`| meaning | `ENV` | `-f`, `--flag` | default | … |`) of
/// the docs against `table`: one row per setting, its flags, and its default as shown (``
/// `text` `` with an optional ` (s)` unit, `empty` for an empty default). Returns every
/// mismatch, one line each; the daemons' unit tests assert that it is empty.
pub fn docs_table_mismatches(doc: &str, table: &[&Setting]) -> Vec<String> {
    let rows: Vec<Vec<&str>> = doc
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(" | `"))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .filter(|r: &Vec<&str>| r.len() >= 4 && r[2].contains("`-"))
        .collect();
    let mut wrong = Vec::new();
    if rows.len() != table.len() {
        wrong.push(format!("{} rows for {} settings", rows.len(), table.len()));
    }
    for s in table {
        let env = format!("`{}`", s.env);
        let Some(row) = rows.iter().find(|r| r[1] == env) else {
            wrong.push(format!("no row for {}", s.env));
            continue;
        };
        let mut flags = vec![format!("`--{}`", s.long)];
        flags.extend(s.short.map(|c| format!("`-{c}`")));
        for flag in flags.iter().filter(|f| !row[2].contains(f.as_str())) {
            wrong.push(format!("{}: flag {flag} missing in {:?}", s.env, row[2]));
        }
        let shown = row[3].trim_end_matches(" (s)").trim_matches('`');
        let wanted = match s.default.shown() {
            "" => "empty".to_owned(),
            d => d.replace(" x ", " × "),
        };
        if shown != wanted {
            wrong.push(format!(
                "{}: default {shown:?}, the code says {wanted:?}",
                s.env
            ));
        }
    }
    wrong
}

/// Renders `--help`: a hand-written introduction followed by every setting of the table with
/// its flags, environment variable and default.
pub fn help_text(program: &str, intro: &str, table: &[&Setting]) -> String {
    let mut out = format!(
        "{program} {}\n{intro}\n\nUsage: {program} [FLAGS]\n\n",
        crate::version::VERSION
    );
    out.push_str(
        "Every setting can be given as an environment variable or a flag; the environment wins.\n",
    );
    out.push_str("Durations are seconds (10) or take a unit (10s, 500ms, 2m).\n\n");
    for s in table {
        let flags = match (s.short, s.arity) {
            (Some(c), Arity::Value) => format!("-{c}, --{} VALUE", s.long),
            (Some(c), Arity::Bool) => format!("-{c}, --{}[=BOOL]", s.long),
            (None, Arity::Value) => format!("    --{} VALUE", s.long),
            (None, Arity::Bool) => format!("    --{}[=BOOL]", s.long),
        };
        let default = match s.default.shown() {
            "" => "(empty)",
            shown => shown,
        };
        let _ = writeln!(
            out,
            "  {flags}\n        env {}, default {default}\n        {}",
            s.env, s.help
        );
    }
    out.push_str("  -h, --help\n        print this help\n  -V, --version\n        print version, commit and build date\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    static ADDRESS: Setting = Setting {
        env: "ADDRESS",
        short: Some('a'),
        long: "address",
        default: Fallback::Value(":8080"),
        help: "listen",
        arity: Arity::Value,
    };
    static RESTORE: Setting = Setting {
        env: "RESTORE",
        short: Some('r'),
        long: "restore",
        default: Fallback::Value("false"),
        help: "restore",
        arity: Arity::Bool,
    };
    static AUDIT_FILE: Setting = Setting {
        env: "AUDIT_FILE",
        short: None,
        long: "audit-file",
        default: Fallback::Value(""),
        help: "audit",
        arity: Arity::Value,
    };
    static WORKERS: Setting = Setting {
        env: "WORKERS",
        short: None,
        long: "workers",
        default: Fallback::Computed("4 x CPU cores"),
        help: "workers",
        arity: Arity::Value,
    };
    static TABLE: &[&Setting] = &[&ADDRESS, &RESTORE, &AUDIT_FILE, &WORKERS];

    fn run(args: &[&str], env: &[(&str, &str)]) -> Values {
        match collect(TABLE, args.iter().copied(), fixed_env(env)).unwrap() {
            Parsed::Run(v) => v,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn every_flag_form() {
        for args in [
            &["-a", "x:1"][..],
            &["-a=x:1"],
            &["--address", "x:1"],
            &["--address=x:1"],
            &["-address=x:1"],
            &["-address", "x:1"],
        ] {
            assert_eq!(run(args, &[]).text(&ADDRESS), "x:1", "{args:?}");
        }
        for args in [
            &["--audit-file", "f"][..],
            &["--audit-file=f"],
            &["-audit-file=f"],
            &["-audit-file", "f"],
        ] {
            assert_eq!(run(args, &[]).text(&AUDIT_FILE), "f", "{args:?}");
        }
    }

    #[test]
    fn unknown_flags_are_named_on_one_line() {
        for (arg, shown) in [("--nope\nX=1", "\"--nope\\nX\""), ("-z", "\"-z\"")] {
            let Err(e) = collect(TABLE, [arg], |_| None) else {
                panic!("{arg:?} accepted")
            };
            assert!(!e.0.contains('\n') && e.0.contains(shown), "{e}");
        }
    }

    #[test]
    fn bool_flags() {
        assert!(!run(&[], &[]).bool(&RESTORE).unwrap());
        assert!(run(&["-r"], &[]).bool(&RESTORE).unwrap());
        assert!(run(&["-r=true"], &[]).bool(&RESTORE).unwrap());
        assert!(!run(&["-r=false"], &[]).bool(&RESTORE).unwrap());
        assert!(!run(&["--restore=false"], &[]).bool(&RESTORE).unwrap());
        // A bare bool flag does not swallow the next argument.
        let v = run(&["-r", "-a", "y:2"], &[]);
        assert!(v.bool(&RESTORE).unwrap());
        assert_eq!(v.text(&ADDRESS), "y:2");
    }

    #[test]
    fn env_beats_flag_beats_default() {
        assert_eq!(run(&[], &[]).text(&ADDRESS), ":8080");
        assert_eq!(run(&["-a", "flag:1"], &[]).text(&ADDRESS), "flag:1");
        assert_eq!(
            run(&["-a", "flag:1"], &[("ADDRESS", "env:2")]).text(&ADDRESS),
            "env:2"
        );
        assert_eq!(
            run(&["-a", "flag:1"], &[("ADDRESS", "")]).text(&ADDRESS),
            "flag:1"
        );
        assert!(
            !run(&["-r"], &[("RESTORE", "false")])
                .bool(&RESTORE)
                .unwrap()
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let err = run(&["-r=maybe"], &[]).bool(&RESTORE).unwrap_err();
        assert_eq!(
            err.0,
            r#"invalid RESTORE (-r) value "maybe": expected true or false"#
        );
        let unknown = collect(TABLE, ["-x"], |_| None).unwrap_err();
        assert!(unknown.0.contains("-x"), "{unknown}");
        let missing = collect(TABLE, ["-a"], |_| None).unwrap_err();
        assert!(missing.0.contains("ADDRESS (-a)"), "{missing}");
        let stray = collect(TABLE, ["stray"], |_| None).unwrap_err();
        assert!(stray.0.contains("stray"), "{stray}");
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(
            collect(TABLE, ["--help"], |_| None),
            Ok(Parsed::Help)
        ));
        assert!(matches!(
            collect(TABLE, ["-help"], |_| None),
            Ok(Parsed::Help)
        ));
        assert!(matches!(
            collect(TABLE, ["--version"], |_| None),
            Ok(Parsed::Version)
        ));
        let help = help_text("prog", "intro", TABLE);
        for s in TABLE {
            assert!(help.contains(s.env) && help.contains(s.long), "{help}");
        }
    }

    #[test]
    fn docs_tables_are_checked_against_the_table() {
        let good = "| listen | `ADDRESS` | `-a`, `--address` | `:8080` | x |\n\
                    | restore | `RESTORE` | `-r`, `--restore` | `false` | x |\n\
                    | audit | `AUDIT_FILE` | `--audit-file` | empty | x |\n\
                    | workers | `WORKERS` | `--workers` | 4 × CPU cores | x |\n";
        assert_eq!(docs_table_mismatches(good, TABLE), Vec::<String>::new());
        let bad = good.replace("`:8080`", "`:9090`").replace("`-r`, ", "");
        let wrong = docs_table_mismatches(&bad, TABLE);
        assert_eq!(wrong.len(), 2, "{wrong:?}");
        let missing = good.lines().take(3).collect::<Vec<_>>().join("\n");
        assert!(
            docs_table_mismatches(&missing, TABLE)
                .iter()
                .any(|w| w.contains("WORKERS"))
        );
    }

    #[test]
    fn computed_defaults_are_never_parsed() {
        let v = run(&[], &[]);
        assert_eq!(v.given(&WORKERS), None);
        assert_eq!(v.text(&WORKERS), "");
        assert_eq!(run(&["--workers", "3"], &[]).given(&WORKERS), Some("3"));
        assert!(!v.changed(&ADDRESS));
        assert!(!run(&["-a", ":8080"], &[]).changed(&ADDRESS));
        assert!(run(&["-a", ":9"], &[]).changed(&ADDRESS));
        assert!(help_text("p", "i", TABLE).contains("default 4 x CPU cores"));
        assert!(help_text("p", "i", TABLE).contains("default (empty)"));
    }

    #[test]
    fn intervals_are_bounded() {
        let ok = |v: &str, zero| {
            run(&[], &[("ADDRESS", v)]).duration_in(&ADDRESS, INTERVAL_BOUNDS, zero)
        };
        assert_eq!(ok("10ms", false), Ok(Duration::from_millis(10)));
        assert_eq!(ok("24h", false), Ok(Duration::from_secs(86_400)));
        assert_eq!(ok("0", true), Ok(Duration::ZERO));
        for bad in ["1ns", "9ms", "0", "25h", "6000000000000000000"] {
            let e = ok(bad, false).unwrap_err();
            assert!(e.0.contains("must be between 10ms and 1day"), "{bad}: {e}");
        }
        let e = ok("1ns", true).unwrap_err();
        assert!(e.0.contains("must be 0 or between 10ms and 1day"), "{e}");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("4XB").is_err());
    }
}
