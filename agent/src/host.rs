//! Host gauges through sysinfo: `TotalMemory`, `FreeMemory` (bytes, `MemTotal`/`MemFree`) and
//! `CPUutilization1…N`, the busy percentage of each logical CPU over the last poll period.
//!
//! Only the memory and CPU-usage parts of sysinfo are refreshed: no process table scans, which
//! would cost far more than everything else the agent does.

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

use crate::accumulator::{Name, Sample};

pub const TOTAL_MEMORY: Name = "TotalMemory";
pub const FREE_MEMORY: Name = "FreeMemory";

/// Keeps the previous CPU times so that each poll reports usage since the one before.
pub struct Host {
    system: System,
    cpu_names: Vec<Name>,
}

impl Host {
    /// Takes the first CPU reading, the baseline of the first poll.
    pub fn new() -> Result<Self, String> {
        let mut system = System::new().map_err(|e| format!("cannot read host metrics: {e:?}"))?;
        system.refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        // The names are made once and live as long as the process: one small string per CPU.
        let cpu_names = (1..=system.cpus().len())
            .map(|i| &*Box::leak(format!("CPUutilization{i}").into_boxed_str()))
            .collect();
        Ok(Self { system, cpu_names })
    }

    /// Names of the per-CPU gauges, `CPUutilization1…N`.
    #[cfg(test)]
    pub fn cpu_names(&self) -> &[Name] {
        &self.cpu_names
    }

    /// Reads memory and the CPU usage since the previous call.
    pub fn poll(&mut self) -> Sample {
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        self.system
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        let mut gauges = Vec::with_capacity(2 + self.cpu_names.len());
        gauges.push((TOTAL_MEMORY, self.system.total_memory() as f64));
        gauges.push((FREE_MEMORY, self.system.free_memory() as f64));
        gauges.extend(
            self.cpu_names
                .iter()
                .zip(self.system.cpus())
                .map(|(name, cpu)| (*name, f64::from(cpu.usage()))),
        );
        Sample {
            gauges,
            counters: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_memory_and_every_cpu() {
        let mut host = Host::new().unwrap();
        let sample = host.poll();
        let n = host.cpu_names().len();
        assert!(n >= 1);
        assert_eq!(sample.gauges.len(), 2 + n);
        assert_eq!(sample.gauges[2].0, "CPUutilization1");
        let total = sample.gauges[0].1;
        let free = sample.gauges[1].1;
        assert!(total > 0.0 && free > 0.0 && free <= total, "{total} {free}");
        for (name, usage) in &sample.gauges[2..] {
            assert!((0.0..=100.0).contains(usage), "{name} {usage}");
        }
        assert!(sample.counters.is_empty());
    }
}
