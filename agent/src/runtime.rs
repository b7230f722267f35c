//! The 27 runtime gauges of the original (Go's `runtime.MemStats`), mapped to the nearest honest
//! quantity of this Rust process, plus `RandomValue` and the `PollCount` counter.
//!
//! Sources: the counting global allocator ([`crate::alloc`]) for what Go counts per object,
//! glibc's `mallinfo2()` for the heap as the allocator sees it, and `/proc/self/status` for what
//! the kernel sees. A Rust process has no garbage collector, no profiling buckets and no
//! span/mcache structures, so those gauges are truthfully 0. docs/agent.md lists every mapping.

use crate::accumulator::{Name, Sample};
use crate::alloc::{AllocStats, HeapStats};

/// Every runtime gauge name, in the original's order.
pub use golectra_common::metric::RUNTIME_GAUGES as GAUGES;

/// The counter incremented by every runtime poll.
pub const POLL_COUNT: Name = "PollCount";
/// A uniform random gauge in `[0, 1)`, as in the original.
pub const RANDOM_VALUE: Name = "RandomValue";

/// What the kernel says about the process (`/proc/self/status`), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcStatus {
    /// `VmRSS`: resident memory.
    pub rss: u64,
    /// `RssFile`: resident pages of the binary and shared libraries.
    pub rss_file: u64,
    /// `VmStk`: the main thread's stack.
    pub stack: u64,
    /// `Threads`.
    pub threads: u64,
}

impl ProcStatus {
    /// Reads `/proc/self/status`; zeros where it cannot be read (not Linux).
    pub fn read() -> Self {
        std::fs::read_to_string("/proc/self/status")
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> Self {
        let mut status = Self::default();
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            let number = || {
                let mut words = rest.split_whitespace();
                let n: u64 = words.next()?.parse().ok()?;
                Some(match words.next() {
                    Some("kB") => n * 1024,
                    _ => n,
                })
            };
            let slot = match key {
                "VmRSS" => &mut status.rss,
                "RssFile" => &mut status.rss_file,
                "VmStk" => &mut status.stack,
                "Threads" => &mut status.threads,
                _ => continue,
            };
            *slot = number().unwrap_or(0);
        }
        status
    }
}

/// Maps the three sources onto the 27 gauges (pure, for tests). `thread_stack` is the stack
/// size every agent thread is spawned with.
pub fn gauges(
    alloc: AllocStats,
    heap: HeapStats,
    proc: ProcStatus,
    thread_stack: u64,
) -> [(Name, f64); 27] {
    let spawned_threads = proc.threads.saturating_sub(1);
    let value = |name: Name| -> u64 {
        match name {
            "Alloc" | "HeapAlloc" => alloc.live_bytes(),
            "TotalAlloc" => alloc.total_allocated,
            "Mallocs" => alloc.mallocs,
            "Frees" => alloc.frees,
            "HeapObjects" => alloc.live_objects(),
            "HeapSys" => heap.system,
            "HeapInuse" => heap.in_use,
            "HeapIdle" => heap.idle,
            "Sys" => proc.rss,
            "OtherSys" => proc.rss_file,
            "StackInuse" => proc.stack,
            "StackSys" => proc.stack + spawned_threads * thread_stack,
            // No garbage collector, profiler, span or mcache structures; glibc gives memory
            // back by shrinking its arenas, which lowers HeapSys rather than raising a
            // "released" figure.
            _ => 0,
        }
    };
    GAUGES.map(|name| (name, value(name) as f64))
}

/// One runtime poll: the 27 gauges, `RandomValue` and `PollCount += 1`.
pub fn poll(thread_stack: u64) -> Sample {
    let mut gauges = Vec::with_capacity(GAUGES.len() + 1);
    // The /proc read allocates; read the allocator counters last so that they include it.
    let proc = ProcStatus::read();
    let heap = crate::alloc::heap_stats();
    let alloc = crate::ALLOCATOR.stats();
    gauges.extend(self::gauges(alloc, heap, proc, thread_stack));
    gauges.push((RANDOM_VALUE, fastrand::f64()));
    Sample {
        gauges,
        counters: vec![(POLL_COUNT, 1)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tgolectra-agent\nVmRSS:\t    3072 kB\nRssFile:\t    1024 kB\nVmStk:\t     132 kB\nThreads:\t5\n";

    #[test]
    fn parses_proc_status() {
        assert_eq!(
            ProcStatus::parse(STATUS),
            ProcStatus {
                rss: 3072 * 1024,
                rss_file: 1024 * 1024,
                stack: 132 * 1024,
                threads: 5
            }
        );
        assert_eq!(ProcStatus::parse("garbage"), ProcStatus::default());
    }

    #[test]
    fn maps_every_gauge() {
        let alloc = AllocStats {
            mallocs: 10,
            frees: 4,
            total_allocated: 1000,
            total_freed: 300,
        };
        let heap = HeapStats {
            system: 5000,
            in_use: 800,
            idle: 4200,
        };
        let got: std::collections::HashMap<_, _> =
            gauges(alloc, heap, ProcStatus::parse(STATUS), 1000)
                .into_iter()
                .collect();
        assert_eq!(got.len(), 27);
        assert_eq!(got["Alloc"], 700.0);
        assert_eq!(got["HeapAlloc"], 700.0);
        assert_eq!(got["HeapObjects"], 6.0);
        assert_eq!(got["Mallocs"], 10.0);
        assert_eq!(got["Frees"], 4.0);
        assert_eq!(got["TotalAlloc"], 1000.0);
        assert_eq!(got["HeapSys"], 5000.0);
        assert_eq!(got["HeapInuse"], 800.0);
        assert_eq!(got["HeapIdle"], 4200.0);
        assert_eq!(got["Sys"], 3072.0 * 1024.0);
        assert_eq!(got["OtherSys"], 1024.0 * 1024.0);
        assert_eq!(got["StackInuse"], 132.0 * 1024.0);
        assert_eq!(got["StackSys"], 132.0 * 1024.0 + 4.0 * 1000.0);
        for zero in [
            "BuckHashSys",
            "GCCPUFraction",
            "GCSys",
            "HeapReleased",
            "LastGC",
            "Lookups",
            "MCacheInuse",
            "MCacheSys",
            "MSpanInuse",
            "MSpanSys",
            "NextGC",
            "NumForcedGC",
            "NumGC",
            "PauseTotalNs",
        ] {
            assert_eq!(got[zero], 0.0, "{zero}");
        }
    }

    #[test]
    fn a_poll_counts_itself_and_draws_a_random_value() {
        let sample = poll(256 << 10);
        assert_eq!(sample.counters, vec![(POLL_COUNT, 1)]);
        assert_eq!(sample.gauges.len(), 28);
        let random = sample
            .gauges
            .iter()
            .find(|(n, _)| *n == RANDOM_VALUE)
            .unwrap()
            .1;
        assert!((0.0..1.0).contains(&random));
        let mallocs = sample
            .gauges
            .iter()
            .find(|(n, _)| *n == "Mallocs")
            .unwrap()
            .1;
        assert!(mallocs > 0.0, "the counting allocator is installed");
    }
}
