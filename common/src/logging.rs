//! Logging set-up shared by both daemons (docs/readme-operations.md).
//!
//! Logs go to stderr. Under journald — when `JOURNAL_STREAM` names the device and inode of our
//! stderr — every line starts with its syslog priority `<N>` and carries no timestamp (journald
//! adds its own), so `journalctl -p warning` filters correctly; multi-line messages repeat the
//! prefix on every line. Elsewhere each line carries an RFC 3339 timestamp and the level.
//! `RUST_LOG` overrides the default filter.

use std::io::Write;

use log::Level;

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<6>golectra_server: message` — for journald.
    Journald,
    /// `2026-11-25T01:34:17Z INFO  golectra_server: message` — for terminals and files.
    Plain,
}

/// Syslog priority of a log level: error 3, warn 4, info 6, debug and trace 7.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Decides the format from the value of `JOURNAL_STREAM` (`"<dev>:<ino>"`) and stderr's identity.
pub fn detect_format(journal_stream: Option<&str>, stderr_id: Option<(u64, u64)>) -> Format {
    let parsed = journal_stream.and_then(|v| {
        let (dev, ino) = v.trim().split_once(':')?;
        Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
    });
    match (parsed, stderr_id) {
        (Some(stream), Some(stderr)) if stream == stderr => Format::Journald,
        _ => Format::Plain,
    }
}

/// Renders one record as it is written to stderr, newline-terminated. Every line of a
/// multi-line message carries the `<N>` prefix under journald (journald splits on newlines and
/// would otherwise file the continuation lines at its default priority); in the plain format the
/// continuation lines are indented under the first.
pub fn render(
    format: Format,
    level: Level,
    target: &str,
    message: &str,
    now: std::time::SystemTime,
) -> String {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or("");
    let mut out = String::with_capacity(message.len() + 48);
    match format {
        Format::Journald => {
            let prio = syslog_priority(level);
            out.push_str(&format!("<{prio}>{target}: {first}\n"));
            for line in lines {
                out.push_str(&format!("<{prio}>{target}: {line}\n"));
            }
        }
        Format::Plain => {
            let ts = humantime::format_rfc3339_seconds(now);
            out.push_str(&format!("{ts} {level:<5} {target}: {first}\n"));
            for line in lines {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

/// Device and inode of this process's stderr.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The format of this process's stderr: [`Format::Journald`] when `JOURNAL_STREAM` names it.
pub fn stderr_format() -> Format {
    detect_format(
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_identity(),
    )
}

/// Writes an error that happens before the logger exists (a configuration error) to stderr:
/// `program: message` on a terminal, with the `<3>` prefix under journald so that
/// `journalctl -p err -u …` shows why the unit failed.
pub fn early_error(program: &str, message: &str) {
    let line = match stderr_format() {
        Format::Journald => render(
            Format::Journald,
            Level::Error,
            program,
            message,
            std::time::SystemTime::now(),
        ),
        Format::Plain => format!("{program}: {message}\n"),
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Renders a panic report under journald: every line (message, location, backtrace) at
/// priority 2 (critical), so none of it is filed at journald's default priority and
/// `journalctl -p err` shows all of it.
pub fn render_panic(
    target: &str,
    thread: &str,
    location: &str,
    message: &str,
    backtrace: &str,
) -> String {
    let mut text = format!("thread '{thread}' panicked at {location}: {message}");
    if !backtrace.trim().is_empty() {
        text.push_str("\nstack backtrace:\n");
        text.push_str(backtrace.trim_end());
    }
    text.lines()
        .map(|line| format!("<2>{target}: {line}\n"))
        .collect()
}

/// Under journald, replaces the default panic message (plain lines that journald would file at
/// its default priority) with [`render_panic`]'s prefixed lines. Elsewhere the default stays.
fn install_panic_hook(format: Format, target: &'static str) {
    if format != Format::Journald {
        return;
    }
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".to_owned());
        let location = info
            .location()
            .map(|l| l.to_string())
            .unwrap_or_else(|| "an unknown location".to_owned());
        let thread = std::thread::current();
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => backtrace.to_string(),
            _ => String::new(),
        };
        let text = render_panic(
            target,
            thread.name().unwrap_or("<unnamed>"),
            &location,
            &message,
            &backtrace,
        );
        let _ = std::io::stderr().write_all(text.as_bytes());
    }));
}

/// Installs the global logger, and under journald a panic hook that prefixes panic reports too.
/// `default_filter` applies when `RUST_LOG` is unset (e.g. `info`); `target` names the program
/// in panic lines (e.g. `golectra_server`).
pub fn init(default_filter: &str, target: &'static str) -> Format {
    let format = stderr_format();
    install_panic_hook(format, target);
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(default_filter);
    if let Ok(filters) = std::env::var("RUST_LOG") {
        builder.parse_filters(&filters);
    }
    builder.target(env_logger::Target::Stderr);
    builder.format(move |buf, record| {
        let line = render(
            format,
            record.level(),
            record.target(),
            &record.args().to_string(),
            std::time::SystemTime::now(),
        );
        // One write per record, so concurrent threads never interleave inside a message.
        buf.write_all(line.as_bytes())
    });
    // A second init (tests starting several servers in one process) keeps the first logger.
    let _ = builder.try_init();
    format
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_only_when_stream_matches_stderr() {
        assert_eq!(detect_format(Some("8:42"), Some((8, 42))), Format::Journald);
        assert_eq!(detect_format(Some("8:43"), Some((8, 42))), Format::Plain);
        assert_eq!(detect_format(None, Some((8, 42))), Format::Plain);
        assert_eq!(detect_format(Some("garbage"), Some((8, 42))), Format::Plain);
    }

    #[test]
    fn journald_lines_carry_the_priority_and_no_timestamp() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(
            render(
                Format::Journald,
                Level::Warn,
                "golectra_server",
                "disk slow\nsecond line",
                now
            ),
            "<4>golectra_server: disk slow\n<4>golectra_server: second line\n"
        );
        assert_eq!(
            render(Format::Journald, Level::Error, "t", "", now),
            "<3>t: \n",
            "an empty message still produces a line"
        );
        assert_eq!(
            render(Format::Journald, Level::Trace, "t", "x", now),
            "<7>t: x\n"
        );
    }

    #[test]
    fn plain_lines_carry_timestamp_and_level() {
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(
            render(
                Format::Plain,
                Level::Info,
                "golectra_server",
                "up\nmore",
                now
            ),
            "2023-11-14T22:13:20Z INFO  golectra_server: up\n    more\n"
        );
    }

    #[test]
    fn panic_reports_carry_the_priority_on_every_line() {
        assert_eq!(
            render_panic(
                "golectra_server",
                "worker-3",
                "src/x.rs:1:2",
                "boom\nmore",
                ""
            ),
            "<2>golectra_server: thread 'worker-3' panicked at src/x.rs:1:2: boom\n\
             <2>golectra_server: more\n"
        );
        let text = render_panic("t", "main", "a.rs:1:1", "x", "   0: f\n   1: g\n");
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.lines().all(|l| l.starts_with("<2>t: ")), "{text}");
    }

    #[test]
    fn priorities() {
        assert_eq!(syslog_priority(Level::Error), 3);
        assert_eq!(syslog_priority(Level::Warn), 4);
        assert_eq!(syslog_priority(Level::Info), 6);
        assert_eq!(syslog_priority(Level::Debug), 7);
    }
}
