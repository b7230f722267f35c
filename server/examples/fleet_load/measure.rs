//! What the simulator reads about processes — CPU time (`utime + stime` of `/proc/<pid>/stat`)
//! and memory (`VmRSS`, `VmHWM` of `/proc/<pid>/status`) — and the percentiles it prints.

/// Clock ticks per second of the `/proc` CPU times.
pub fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// `utime + stime` of process `pid` (`"self"` for this one), in clock ticks; `None` when the
/// process cannot be read (gone, or not on this machine).
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line are the 12th and 13th after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `/proc/<pid>/status` size field (`VmRSS`, `VmHWM`) in KiB.
pub fn status_kib(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The `q` quantile (0 < q ≤ 1) of sorted samples, nearest rank.
pub fn quantile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Microseconds as milliseconds for the summary.
pub fn ms(micros: Option<u32>) -> String {
    micros.map_or("–".into(), |us| {
        format!("{:.2} ms", f64::from(us) / 1000.0)
    })
}

/// CPU ticks over a wall-clock window as a percentage of one core.
pub fn percent_of_core(ticks: u64, seconds: f64) -> f64 {
    ticks as f64 / clock_ticks() as f64 / seconds * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&samples, 0.5), Some(50));
        assert_eq!(quantile(&samples, 0.99), Some(99));
        assert_eq!(quantile(&samples, 1.0), Some(100));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(ms(Some(1234)), "1.23 ms");
    }

    #[test]
    fn reads_this_process() {
        assert!(cpu_ticks("self").is_some());
        assert!(status_kib("self", "VmRSS").is_some_and(|k| k > 0));
        assert_eq!(cpu_ticks("0"), None);
    }
}
