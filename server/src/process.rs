//! The standard `process_*` metrics, read from `/proc/self` at scrape time (Linux). The names and
//! units are the ones every Prometheus client library uses, so existing dashboards and alerts
//! work unchanged.
//!
//! Each metric depends only on the source it is read from, and a source that cannot be read
//! drops only its own metrics (logged once, at debug level): the hardened unit's `ProcSubset=pid`
//! hides `/proc/stat`, and a sandbox may hide more. For that reason the start time does not use
//! `/proc/stat`'s `btime` (what client libraries read): the boot time is derived from the clocks
//! instead, `CLOCK_REALTIME - CLOCK_BOOTTIME`, which needs no file at all.
//!
//! | source | metrics |
//! |---|---|
//! | `/proc/self/stat` | `process_cpu_seconds_total`, `process_virtual_memory_bytes`, `process_threads`, `process_start_time_seconds` |
//! | `/proc/self/status` | `process_resident_memory_bytes` |
//! | `/proc/self/fd` | `process_open_fds` |
//! | `/proc/self/limits` | `process_max_fds` |

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exposition::{Exporter, Exposition, FamilyType, SampleValue};

/// Exports the server process's resource usage. One lives in a `static`, so "logged once"
/// means once per process.
#[derive(Debug)]
pub struct ProcessExporter {
    /// One flag per [`Source`]: set once its failure was logged.
    logged: [AtomicBool; Source::ALL.len()],
}

/// A file the exporter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Stat,
    Status,
    Fds,
    Limits,
}

impl Source {
    const ALL: [Source; 4] = [Source::Stat, Source::Status, Source::Fds, Source::Limits];

    fn path(self) -> &'static str {
        match self {
            Source::Stat => "/proc/self/stat",
            Source::Status => "/proc/self/status",
            Source::Fds => "/proc/self/fd",
            Source::Limits => "/proc/self/limits",
        }
    }

    fn metrics(self) -> &'static str {
        match self {
            Source::Stat => {
                "process_cpu_seconds_total, process_virtual_memory_bytes, process_threads, process_start_time_seconds"
            }
            Source::Status => "process_resident_memory_bytes",
            Source::Fds => "process_open_fds",
            Source::Limits => "process_max_fds",
        }
    }
}

/// What `/proc/self/stat` says about this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatFields {
    /// User plus system CPU time used so far, in seconds.
    pub cpu_seconds: f64,
    /// Size of the virtual address space, in bytes.
    pub virtual_bytes: u64,
    /// Threads in the process now.
    pub threads: u64,
    /// Seconds since boot at which the process started.
    pub started_after_boot: f64,
}

/// Everything the exporter could read; a `None` field's metric is left out.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// The fields of `/proc/self/stat`; `None` when it cannot be read or parsed.
    pub stat: Option<StatFields>,
    /// Start time in seconds since the Unix epoch; `None` without `stat` or the boot time.
    pub start_time_seconds: Option<f64>,
    /// Resident set size (`VmRSS`), in bytes; `None` when `/proc/self/status` cannot be read.
    pub resident_bytes: Option<u64>,
    /// Open file descriptors; `None` when `/proc/self/fd` cannot be listed.
    pub open_fds: Option<u64>,
    /// Soft limit of open files; `None` when unreadable or `unlimited`.
    pub max_fds: Option<u64>,
}

impl Default for ProcessExporter {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessExporter {
    /// An exporter that has logged nothing yet; `const` so it can live in a `static`.
    pub const fn new() -> Self {
        Self {
            logged: [const { AtomicBool::new(false) }; Source::ALL.len()],
        }
    }

    /// Reads every source; what cannot be read stays `None`.
    fn read(&self) -> ProcessStats {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let stat = self
            .source(Source::Stat, fs::read_to_string)
            .and_then(|text| parse_stat(&text, ticks));
        ProcessStats {
            stat,
            start_time_seconds: stat.and_then(|s| boot_time().map(|b| b + s.started_after_boot)),
            resident_bytes: self
                .source(Source::Status, fs::read_to_string)
                .and_then(|text| status_kib(&text, "VmRSS:"))
                .map(|kib| kib * 1024),
            open_fds: self.source(Source::Fds, |p| fs::read_dir(p).map(|d| d.count() as u64)),
            max_fds: self
                .source(Source::Limits, fs::read_to_string)
                .and_then(|text| max_open_files(&text)),
        }
    }

    /// Reads one source; the first failure of each source is logged at debug level.
    fn source<T>(
        &self,
        source: Source,
        read: impl FnOnce(&'static str) -> std::io::Result<T>,
    ) -> Option<T> {
        match read(source.path()) {
            Ok(value) => Some(value),
            Err(e) => {
                if !self.logged[source as usize].swap(true, Ordering::Relaxed) {
                    log::debug!(
                        "cannot read {} ({e}): leaving out {} (logged once)",
                        source.path(),
                        source.metrics()
                    );
                }
                None
            }
        }
    }
}

/// The boot time in Unix seconds: the wall clock minus the time since boot (`CLOCK_BOOTTIME`
/// counts suspend too, like the kernel's `btime`).
fn boot_time() -> Option<f64> {
    let since_boot = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let since_boot = Duration::new(
        u64::try_from(since_boot.tv_sec).ok()?,
        u32::try_from(since_boot.tv_nsec).ok()?,
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Some(now.checked_sub(since_boot)?.as_secs_f64())
}

/// Parses `/proc/self/stat`; times are in clock ticks (`ticks` per second). The command name
/// (field 2) may hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str, ticks: f64) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0, so field N is index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime) = (field(14)?, field(15)?);
    Some(StatFields {
        cpu_seconds: (utime + stime) as f64 / ticks,
        threads: field(20)?,
        started_after_boot: field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
    })
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Writes the metrics that were read; the others are left out.
fn export_stats(s: &ProcessStats, out: &mut Exposition) {
    if let Some(stat) = s.stat {
        out.family(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            FamilyType::Counter,
        )
        .sample(&[], stat.cpu_seconds);
        out.family(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            FamilyType::Gauge,
        )
        .sample(&[], stat.virtual_bytes);
        out.family(
            "process_threads",
            "Number of OS threads in the process.",
            FamilyType::Gauge,
        )
        .sample(&[], stat.threads);
    }
    let gauges: [(_, _, Option<SampleValue>); 4] = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            s.resident_bytes.map(Into::into),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            s.start_time_seconds.map(Into::into),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            s.open_fds.map(Into::into),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            s.max_fds.map(Into::into),
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(value) = value {
            out.family(name, help, FamilyType::Gauge).sample(&[], value);
        }
    }
}

impl Exporter for ProcessExporter {
    fn export(&self, out: &mut Exposition) {
        export_stats(&self.read(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (golectra (x) y) S 1 4242 4242 0 -1 4194560 1188 0 0 0 250 75 0 0 20 0 9 0 12345 104857600 2560 18446744073709551615";
        let s = parse_stat(stat, 100.0).unwrap();
        assert_eq!(s.cpu_seconds, 3.25);
        assert_eq!(s.threads, 9);
        assert_eq!(s.started_after_boot, 123.45);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(parse_stat("4242 (truncated", 100.0), None);
        assert_eq!(
            status_kib("Name:\tx\nVmRSS:\t   10240 kB\n", "VmRSS:"),
            Some(10240)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn reads_this_process_without_proc_stat() {
        let s = ProcessExporter::new().read();
        let stat = s.stat.expect("tests run on Linux");
        let resident = s.resident_bytes.unwrap();
        assert!(resident > 0 && stat.virtual_bytes >= resident);
        assert!(stat.threads >= 1);
        assert!(s.open_fds.unwrap() >= 3 && s.max_fds.unwrap() >= s.open_fds.unwrap());
        // The start time comes from the clocks, not /proc/stat: it is within the last hour and
        // not in the future (tests are younger than that).
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let start = s.start_time_seconds.unwrap();
        assert!(
            start <= now.as_secs_f64() + 1.0 && start > now.as_secs_f64() - 3600.0,
            "{start}"
        );
        // And it agrees with the kernel's btime to within rounding.
        let btime: f64 = fs::read_to_string("/proc/stat")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let derived = boot_time().unwrap();
        assert!((derived - btime).abs() < 2.0, "{derived} vs btime {btime}");
    }

    #[test]
    fn a_missing_source_drops_only_its_own_metrics() {
        let exporter = ProcessExporter::new();
        let unreadable = |_: &'static str| -> std::io::Result<String> {
            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
        };
        assert_eq!(exporter.source(Source::Limits, unreadable), None);
        assert!(exporter.logged[Source::Limits as usize].load(Ordering::Relaxed));
        assert!(!exporter.logged[Source::Stat as usize].load(Ordering::Relaxed));

        let mut s = exporter.read();
        s.max_fds = None;
        s.resident_bytes = None;
        let mut out = Exposition::default();
        export_stats(&s, &mut out);
        let text = out.into_string();
        for present in [
            "process_cpu_seconds_total ",
            "process_start_time_seconds ",
            "process_open_fds ",
            "process_threads ",
        ] {
            assert!(text.contains(present), "{present} missing:\n{text}");
        }
        for absent in ["process_max_fds", "process_resident_memory_bytes"] {
            assert!(!text.contains(absent), "{absent} present:\n{text}");
        }

        s.stat = None;
        s.start_time_seconds = None;
        let mut out = Exposition::default();
        export_stats(&s, &mut out);
        let text = out.into_string();
        assert!(text.contains("process_open_fds "), "{text}");
        assert!(!text.contains("process_cpu_seconds_total"), "{text}");
    }
}
