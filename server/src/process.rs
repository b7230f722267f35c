//! The standard `process_*` metrics, read from `/proc/self` at scrape time (Linux only; on other
//! systems the families are left out). The names and units are the ones every Prometheus client
//! library uses, so existing dashboards and alerts work unchanged.

use std::fs;

use crate::exposition::{Exporter, Exposition, FamilyType};

/// Clock ticks per second of `/proc/<pid>/stat` times. The kernel reports them in `USER_HZ`,
/// which is 100 on every Linux architecture the server targets (reading `sysconf` would need
/// `unsafe` FFI for a constant).
const USER_HZ: f64 = 100.0;

/// Exports the server process's resource usage.
#[derive(Debug, Default)]
pub struct ProcessExporter;

/// What `/proc` says about this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub start_time_seconds: f64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where `/proc` is unavailable.
    pub fn read() -> Option<Self> {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(boot_time_seconds)?;
        let mut stats = parse_stat(&stat, boot_time)?;
        stats.resident_bytes = status_kib(&status, "VmRSS:").unwrap_or(0) * 1024;
        stats.open_fds = fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
        stats.max_fds = fs::read_to_string("/proc/self/limits")
            .ok()
            .as_deref()
            .and_then(max_open_files);
        Some(stats)
    }
}

/// Parses `/proc/self/stat`. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &str, boot_time: u64) -> Option<ProcessStats> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0, so field N is index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime) = (field(14)?, field(15)?);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        threads: field(20)?,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / USER_HZ,
        virtual_bytes: field(23)?,
        ..ProcessStats::default()
    })
}

fn boot_time_seconds(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
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

impl Exporter for ProcessExporter {
    fn export(&self, out: &mut Exposition) {
        let Some(s) = ProcessStats::read() else {
            return;
        };
        out.family(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            FamilyType::Counter,
        )
        .sample(&[], s.cpu_seconds);
        out.family(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            FamilyType::Gauge,
        )
        .sample(&[], s.resident_bytes);
        out.family(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            FamilyType::Gauge,
        )
        .sample(&[], s.virtual_bytes);
        out.family(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            FamilyType::Gauge,
        )
        .sample(&[], s.start_time_seconds);
        out.family(
            "process_threads",
            "Number of OS threads in the process.",
            FamilyType::Gauge,
        )
        .sample(&[], s.threads);
        if let Some(fds) = s.open_fds {
            out.family(
                "process_open_fds",
                "Number of open file descriptors.",
                FamilyType::Gauge,
            )
            .sample(&[], fds);
        }
        if let Some(max) = s.max_fds {
            out.family(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                FamilyType::Gauge,
            )
            .sample(&[], max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (golectra (x) y) S 1 4242 4242 0 -1 4194560 1188 0 0 0 250 75 0 0 20 0 9 0 12345 104857600 2560 18446744073709551615";
        let s = parse_stat(stat, 1_700_000_000).unwrap();
        assert_eq!(s.cpu_seconds, 3.25);
        assert_eq!(s.threads, 9);
        assert_eq!(s.start_time_seconds, 1_700_000_123.45);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(
            boot_time_seconds("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            status_kib("Name:\tx\nVmRSS:\t   10240 kB\n", "VmRSS:"),
            Some(10240)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read().expect("tests run on Linux");
        assert!(s.resident_bytes > 0 && s.virtual_bytes >= s.resident_bytes);
        assert!(s.threads >= 1);
        assert!(s.open_fds.unwrap() >= 3 && s.max_fds.unwrap() >= s.open_fds.unwrap());
        assert!(s.start_time_seconds > 1_600_000_000.0);
    }
}
