//! One simulated agent: its host tag, its loopback source address, the default metric set with
//! values that move like a live process's, and its reports as the real agent sends them — the
//! JSON batch (gauges in name order, then `PollCount`), gzip level 1, `POST /updates/` with the
//! agent's headers and `Idempotency-Key: <instance>:<sequence>`, re-sent with the same key and
//! bytes on a fresh connection when the outcome is unknown (docs/agent.md, "Delivery").

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use golectra_common::metric::RUNTIME_GAUGES;
use golectra_common::{Metric, gzip, tags};

use crate::wire::Connection;

/// Attempts per report before it is left in doubt.
const ATTEMPTS: u32 = 3;
/// Time allowed for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The loopback source address of agent `index`: 127.10.0.1, 127.10.0.2, … 127.10.0.254,
/// 127.10.1.1, … (no `.0` or `.255` host byte), so the server sees one peer per agent.
pub fn source_address(index: usize) -> SocketAddr {
    let (high, low) = (index / 254, index % 254 + 1);
    let a = 10 + high / 256;
    let ip = Ipv4Addr::new(127, a as u8, (high % 256) as u8, low as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, 0))
}

/// The gauge names of the default set on a host with `cpus` CPUs, untagged: the 27 runtime
/// gauges, `RandomValue`, `TotalMemory`, `FreeMemory` and `CPUutilization1…N`.
pub fn gauge_bases(cpus: usize) -> Vec<String> {
    let mut names: Vec<String> = RUNTIME_GAUGES.iter().map(|n| (*n).to_owned()).collect();
    names.extend(["RandomValue", "TotalMemory", "FreeMemory"].map(String::from));
    names.extend((1..=cpus).map(|i| format!("CPUutilization{i}")));
    names
}

/// The tagged name of metric `base` on agent `index` (the agent's `TAGS=host=sim-<index>`).
pub fn tagged(base: &str, index: usize) -> String {
    tags::with_tags(base, &[("host".to_owned(), format!("sim-{index}"))])
}

/// How one report went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `2xx`.
    Delivered,
    /// A definite refusal (a `4xx` but 408/429): its deltas are not on the server.
    Refused(u16),
    /// No definite answer after every attempt: applied or not.
    InDoubt,
}

/// What the sending of one report took besides its first attempt.
#[derive(Debug, Default, Clone, Copy)]
pub struct Effort {
    /// Attempts after the first.
    pub retries: u32,
    /// Connections opened (the first one of the agent included).
    pub connects: u32,
    /// Attempts that ended in an I/O error or an unknown status (the last error is printed).
    pub failures: u32,
}

/// The process the runtime gauges describe: a small daemon whose heap breathes.
struct Process {
    mallocs: u64,
    frees: u64,
    total_alloc: u64,
    live_bytes: u64,
    heap_sys: u64,
    rss: u64,
    total_memory: u64,
    free_memory: u64,
}

pub struct Agent {
    pub index: usize,
    source: SocketAddr,
    /// `(tagged name, base name)` of every gauge, sorted by tagged name.
    gauges: Vec<(String, String)>,
    poll_count: String,
    polls_per_report: i64,
    instance: String,
    sequence: u64,
    rng: fastrand::Rng,
    process: Process,
    conn: Option<Connection>,
    /// `PollCount` deltas of the reports answered `2xx`.
    pub delivered: i64,
    /// `PollCount` deltas of reports left in doubt.
    pub in_doubt: i64,
    /// The last error seen, for the summary.
    pub last_error: Option<String>,
}

impl Agent {
    pub fn new(index: usize, cpus: usize, polls_per_report: i64) -> Self {
        let mut rng = fastrand::Rng::with_seed(0x5eed_0000 + index as u64);
        let mut gauges: Vec<(String, String)> = gauge_bases(cpus)
            .into_iter()
            .map(|base| (tagged(&base, index), base))
            .collect();
        gauges.sort();
        let total_memory = [4u64, 8, 16, 32][rng.usize(..4)] << 30;
        let instance = format!("{:032x}", rng.u128(..));
        Self {
            index,
            source: source_address(index),
            gauges,
            poll_count: tagged("PollCount", index),
            polls_per_report,
            instance,
            sequence: 0,
            process: Process {
                mallocs: 20_000,
                frees: 15_000,
                total_alloc: 4 << 20,
                live_bytes: 1 << 20,
                heap_sys: 8 << 20,
                rss: 9 << 20,
                total_memory,
                free_memory: total_memory / 2,
            },
            rng,
            conn: None,
            delivered: 0,
            in_doubt: 0,
            last_error: None,
        }
    }

    /// Metrics in one report.
    pub fn metrics(&self) -> usize {
        self.gauges.len() + 1
    }

    /// The next report: its key and its uncompressed JSON.
    fn cut(&mut self) -> (String, Vec<u8>) {
        self.sequence += 1;
        self.step();
        let mut metrics: Vec<Metric<'_>> = Vec::with_capacity(self.metrics());
        for (name, base) in &self.gauges {
            let value = gauge(&self.process, &mut self.rng, base);
            metrics.push(Metric::gauge(name.as_str(), value));
        }
        metrics.push(Metric::counter(
            self.poll_count.as_str(),
            self.polls_per_report,
        ));
        let json = serde_json::to_vec(&metrics).expect("metrics always serialize");
        (format!("{}:{}", self.instance, self.sequence), json)
    }

    /// One report interval of the simulated process.
    fn step(&mut self) {
        let p = &mut self.process;
        let rng = &mut self.rng;
        let allocated = rng.u64(2_000..6_000);
        p.mallocs += allocated;
        let live_objects = rng.u64(3_000..6_000);
        p.frees = (p.mallocs - live_objects).max(p.frees);
        p.total_alloc += allocated * rng.u64(64..512);
        p.live_bytes = rng.u64(768 << 10..3 << 20);
        p.heap_sys = (p.live_bytes + rng.u64(1 << 20..6 << 20)).max(p.heap_sys / 2);
        p.rss = p.heap_sys + (4 << 20) + rng.u64(0..256) * 4096;
        let drift = rng.u64(0..64 << 20);
        p.free_memory = (p.free_memory + drift)
            .saturating_sub(32 << 20)
            .clamp(p.total_memory / 8, p.total_memory);
    }

    /// Cuts the next report and sends it until it gets a definite answer or every attempt is
    /// spent.
    pub fn report(&mut self, server: SocketAddr) -> (Outcome, Effort) {
        let (key, json) = self.cut();
        let body = gzip::compress(&json);
        let mut request = format!(
            "POST /updates/ HTTP/1.1\r\nHost: {server}\r\nUser-Agent: golectra-agent/{}\r\n\
             Accept: */*\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n\
             Accept-Encoding: identity\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n",
            golectra_common::version::VERSION,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let mut effort = Effort::default();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                effort.retries += 1;
            }
            let conn = match &mut self.conn {
                Some(conn) => conn,
                None => match Connection::open(Some(self.source), server, ANSWER_TIMEOUT) {
                    Ok(conn) => {
                        effort.connects += 1;
                        self.conn.insert(conn)
                    }
                    Err(e) => {
                        effort.failures += 1;
                        self.last_error = Some(format!("connect from {}: {e}", self.source));
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                },
            };
            match conn.exchange(&request) {
                Ok(answer) => {
                    if answer.close {
                        self.conn = None;
                    }
                    match answer.status {
                        200..=299 => {
                            self.delivered += self.polls_per_report;
                            return (Outcome::Delivered, effort);
                        }
                        408 | 429 | 500..=599 => {
                            effort.failures += 1;
                            self.last_error = Some(format!(
                                "{} {}",
                                answer.status,
                                String::from_utf8_lossy(&answer.body).trim()
                            ));
                            // The server's `Retry-After: 1`.
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        status => {
                            self.last_error = Some(format!(
                                "{status} {}",
                                String::from_utf8_lossy(&answer.body).trim()
                            ));
                            return (Outcome::Refused(status), effort);
                        }
                    }
                }
                Err(e) => {
                    // A broken keep-alive connection: the same report again on a fresh one.
                    effort.failures += 1;
                    self.last_error = Some(format!("POST /updates/: {e}"));
                    self.conn = None;
                }
            }
        }
        self.in_doubt += self.polls_per_report;
        (Outcome::InDoubt, effort)
    }
}

/// The value of gauge `base` for process `p`.
fn gauge(p: &Process, rng: &mut fastrand::Rng, base: &str) -> f64 {
    let stack = 132u64 << 10;
    let value = match base {
        "Alloc" | "HeapAlloc" => p.live_bytes,
        "TotalAlloc" => p.total_alloc,
        "Mallocs" => p.mallocs,
        "Frees" => p.frees,
        "HeapObjects" => p.mallocs - p.frees,
        "HeapSys" => p.heap_sys,
        "HeapInuse" => p.live_bytes + (p.heap_sys - p.live_bytes) / 4,
        "HeapIdle" => p.heap_sys - p.live_bytes - (p.heap_sys - p.live_bytes) / 4,
        "Sys" => p.rss,
        "OtherSys" => 3 << 20,
        "StackInuse" => stack,
        "StackSys" => stack + 4 * (256 << 10),
        "TotalMemory" => p.total_memory,
        "FreeMemory" => p.free_memory,
        "RandomValue" => return rng.f64(),
        // sysinfo's per-CPU usage is an f32 percentage.
        cpu if cpu.starts_with("CPUutilization") => {
            return f64::from(rng.f32() * 100.0);
        }
        // No garbage collector, profiler, span or mcache structures (docs/agent.md).
        _ => 0,
    };
    value as f64
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_agent_has_its_own_loopback_host() {
        assert_eq!(source_address(0).to_string(), "127.10.0.1:0");
        assert_eq!(source_address(253).to_string(), "127.10.0.254:0");
        assert_eq!(source_address(254).to_string(), "127.10.1.1:0");
        let all: HashSet<SocketAddr> = (0..60_000).map(source_address).collect();
        assert_eq!(all.len(), 60_000);
        for addr in all {
            let SocketAddr::V4(v4) = addr else {
                panic!("{addr}")
            };
            assert!(v4.ip().is_loopback(), "{addr}");
            assert!(!matches!(v4.ip().octets()[3], 0 | 255), "{addr}");
        }
    }

    #[test]
    fn a_report_is_the_default_set_under_the_agents_tag() {
        let mut agent = Agent::new(7, 2, 5);
        let (key, json) = agent.cut();
        assert_eq!(key, format!("{}:1", agent.instance));
        assert_eq!(agent.instance.len(), 32);
        let metrics: Vec<Metric<'_>> = serde_json::from_slice(&json).unwrap();
        assert_eq!(metrics.len(), 33);
        assert_eq!(agent.metrics(), 33);
        let mut bases: Vec<&str> = metrics
            .iter()
            .map(|m| m.id.strip_suffix(";host=sim-7").expect("tagged"))
            .collect();
        let last = metrics.last().unwrap();
        assert_eq!(
            (last.id.as_ref(), last.kind.as_ref(), last.delta),
            ("PollCount;host=sim-7", "counter", Some(5))
        );
        for m in &metrics[..32] {
            assert_eq!(m.kind, "gauge", "{}", m.id);
            assert!(m.value.is_some_and(f64::is_finite), "{}", m.id);
        }
        bases.sort_unstable();
        let mut expected = gauge_bases(2);
        expected.push("PollCount".into());
        expected.sort_unstable();
        assert_eq!(bases, expected);
        let value = |json: &[u8], name: &str| {
            let metrics: Vec<Metric<'_>> = serde_json::from_slice(json).unwrap();
            metrics
                .iter()
                .find(|m| m.id == name)
                .unwrap()
                .value
                .unwrap()
        };
        let (key2, json2) = agent.cut();
        assert_eq!(key2, format!("{}:2", agent.instance));
        assert!(value(&json2, "Mallocs;host=sim-7") > value(&json, "Mallocs;host=sim-7"));
        assert_eq!(value(&json2, "NumGC;host=sim-7"), 0.0);
    }
}
