//! One fleet run: the driver threads and their schedules, the measured window, the exactness
//! check against the server's snapshot, and the summary.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::Plan;
use crate::agent::{Agent, Outcome};
use crate::measure::{self, cpu_ticks, ms, percent_of_core, quantile, status_kib};
use crate::pg::Backends;
use crate::wire;

/// What one driver thread saw.
#[derive(Default)]
struct Tally {
    /// Reports due in the measured window.
    window_reports: u64,
    /// Latency (first write to the definite answer, retries included) of each report of the
    /// window answered `2xx`, in µs.
    latencies: Vec<u32>,
    /// How late each report of the window started against its schedule, in µs (the
    /// simulator's own lag).
    lateness: Vec<u32>,
    /// Over the whole run.
    reports: u64,
    refused: BTreeMap<u16, u64>,
    in_doubt: u64,
    retries: u64,
    connects: u64,
    failures: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.window_reports += other.window_reports;
        self.latencies.extend(other.latencies);
        self.lateness.extend(other.lateness);
        self.reports += other.reports;
        for (status, n) in other.refused {
            *self.refused.entry(status).or_default() += n;
        }
        self.in_doubt += other.in_doubt;
        self.retries += other.retries;
        self.connects += other.connects;
        self.failures += other.failures;
    }
}

fn sleep_until(at: Instant) {
    if let Some(left) = at.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// Drives `agents`: each reports at `first + k × interval` until `end`.
fn drive(
    mut agents: Vec<(Agent, Instant)>,
    plan: &Plan,
    measure_from: Instant,
    end: Instant,
) -> (Vec<Agent>, Tally) {
    let mut tally = Tally::default();
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = agents
        .iter()
        .enumerate()
        .map(|(slot, (_, first))| Reverse((*first, slot)))
        .collect();
    while let Some(Reverse((at, slot))) = due.pop() {
        if at >= end {
            break;
        }
        sleep_until(at);
        let started = Instant::now();
        let (outcome, effort) = agents[slot].0.report(plan.server);
        let took = started.elapsed();
        tally.reports += 1;
        tally.retries += u64::from(effort.retries);
        tally.connects += u64::from(effort.connects);
        tally.failures += u64::from(effort.failures);
        match outcome {
            Outcome::Delivered => {}
            Outcome::Refused(status) => *tally.refused.entry(status).or_default() += 1,
            Outcome::InDoubt => tally.in_doubt += 1,
        }
        if at >= measure_from {
            tally.window_reports += 1;
            tally.lateness.push(micros(started - at));
            if outcome == Outcome::Delivered {
                tally.latencies.push(micros(took));
            }
        }
        due.push(Reverse((at + plan.report_interval, slot)));
    }
    (agents.into_iter().map(|(agent, _)| agent).collect(), tally)
}

/// CPU ticks of a database's backends, by pid.
fn backend_ticks(backends: &mut Option<Backends>) -> HashMap<String, u64> {
    let Some(backends) = backends else {
        return HashMap::new();
    };
    backends
        .pids()
        .into_iter()
        .filter_map(|pid| cpu_ticks(&pid).map(|t| (pid, t)))
        .collect()
}

/// Runs the fleet; `Ok(false)` when the check failed.
pub fn run(plan: &Plan) -> Result<bool, String> {
    let polls = (plan.report_interval.as_nanos() / plan.poll_interval.as_nanos()).max(1) as i64;
    let mut backends = plan.pg_dsn.as_deref().map(Backends::new).transpose()?;
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let per_agent = Agent::new(0, plan.cpus, polls).metrics();
    println!(
        "fleet: {} agents × {per_agent} metrics ({} in all), one gzip batch per agent every {:?} \
         (PollCount +{polls}), {} threads; warm-up {:?}, measured {:?}",
        plan.agents,
        plan.agents * per_agent,
        plan.report_interval,
        plan.threads.min(plan.agents),
        plan.warmup,
        plan.duration
    );
    // Agent i's first report at start + i/N of the interval; thread t drives agents t, t+T, …
    let threads = plan.threads.min(plan.agents);
    let mut shares: Vec<Vec<(Agent, Instant)>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..plan.agents {
        let offset = plan.report_interval.mul_f64(i as f64 / plan.agents as f64);
        shares[i % threads].push((Agent::new(i, plan.cpus, polls), start + offset));
    }
    let (agents, tally, window) = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| scope.spawn(move || drive(share, plan, measure_from, end)))
            .collect();
        sleep_until(measure_from);
        let pid = plan.pid.map(|p| p.to_string());
        let server_before = pid.as_deref().and_then(cpu_ticks);
        let self_before = cpu_ticks("self");
        let pg_before = backend_ticks(&mut backends);
        let opened = Instant::now();
        sleep_until(end);
        let seconds = opened.elapsed().as_secs_f64();
        let server_after = pid.as_deref().and_then(cpu_ticks);
        let self_after = cpu_ticks("self");
        let pg_after = backend_ticks(&mut backends);
        let rss = pid.as_deref().and_then(|p| status_kib(p, "VmRSS"));
        let hwm = pid.as_deref().and_then(|p| status_kib(p, "VmHWM"));
        let mut agents = Vec::with_capacity(plan.agents);
        let mut tally = Tally::default();
        for handle in handles {
            let (share, t) = handle.join().expect("a driver thread panicked");
            agents.extend(share);
            tally.merge(t);
        }
        let pg = (!pg_after.is_empty()).then(|| {
            let ticks: u64 = pg_after
                .iter()
                .map(|(pid, t)| t - pg_before.get(pid).copied().unwrap_or(0).min(*t))
                .sum();
            (ticks, pg_after.len())
        });
        let window = Window {
            seconds,
            server: server_before.zip(server_after).map(|(a, b)| b - a),
            simulator: self_before.zip(self_after).map(|(a, b)| b - a),
            pg,
            rss,
            hwm,
        };
        (agents, tally, window)
    });
    report(&tally, &window, &agents);
    // While the agents' connections are still open.
    connections(plan)?;
    let exact = check(plan, &agents, per_agent)?;
    Ok(exact && tally.refused.is_empty() && tally.in_doubt == 0)
}

/// The server's resources over the measured window.
struct Window {
    seconds: f64,
    server: Option<u64>,
    simulator: Option<u64>,
    pg: Option<(u64, usize)>,
    rss: Option<u64>,
    hwm: Option<u64>,
}

fn report(tally: &Tally, window: &Window, agents: &[Agent]) {
    let mut latencies = tally.latencies.clone();
    latencies.sort_unstable();
    let mut lateness = tally.lateness.clone();
    lateness.sort_unstable();
    let refused: u64 = tally.refused.values().sum();
    println!(
        "reports  : {} due in the window ({:.1}/s), {} answered 2xx; whole run {}: {} refused {:?}, {} in doubt, {} retries, {} failed attempts, {} connections opened",
        tally.window_reports,
        tally.window_reports as f64 / window.seconds,
        latencies.len(),
        tally.reports,
        refused,
        tally.refused,
        tally.in_doubt,
        tally.retries,
        tally.failures,
        tally.connects
    );
    println!(
        "latency  : p50 {}  p99 {}  max {}  (start lag of the simulator: p99 {}, max {})",
        ms(quantile(&latencies, 0.5)),
        ms(quantile(&latencies, 0.99)),
        ms(latencies.last().copied()),
        ms(quantile(&lateness, 0.99)),
        ms(lateness.last().copied()),
    );
    let cpu = |ticks: Option<u64>| {
        ticks.map_or("not measured".into(), |t| {
            format!(
                "{:.2} % of one core ({:.2} s CPU in {:.1} s)",
                percent_of_core(t, window.seconds),
                t as f64 / measure::clock_ticks() as f64,
                window.seconds
            )
        })
    };
    let mib =
        |kib: Option<u64>| kib.map_or("–".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "server   : CPU {}, RSS at the end {} (HWM {})",
        cpu(window.server),
        mib(window.rss),
        mib(window.hwm)
    );
    if let Some((ticks, n)) = window.pg {
        println!(
            "postgres : CPU of the database's {n} backends {}",
            cpu(Some(ticks))
        );
    }
    println!("simulator: CPU {}", cpu(window.simulator));
    let mut errors: Vec<&str> = agents
        .iter()
        .filter_map(|a| a.last_error.as_deref())
        .collect();
    errors.sort_unstable();
    errors.dedup();
    for error in errors.iter().take(5) {
        println!("error    : {error}");
    }
}

/// The server's connection counters and the idempotency keys it holds (`GET /metrics`).
fn connections(plan: &Plan) -> Result<(), String> {
    let body = wire::get(plan.server, "/metrics")?;
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map_or("–".to_owned(), |v| v.trim().to_owned())
    };
    println!(
        "conns    : {} open from {} peers (this scrape's included); {} accepted, {} evicted idle, {} refused ({} at the per-peer cap); idempotency keys held {}",
        value("golectra_connections_open"),
        value("golectra_connection_peers"),
        value("golectra_connections_accepted_total"),
        value("golectra_connections_evicted_total"),
        value("golectra_connections_refused_total"),
        value("golectra_connections_refused_per_peer_total"),
        value("golectra_idempotency_keys"),
    );
    Ok(())
}

/// Compares every agent's `PollCount` on the server with the deltas it delivered.
fn check(plan: &Plan, agents: &[Agent], per_agent: usize) -> Result<bool, String> {
    #[derive(serde::Deserialize)]
    struct Snapshot {
        gauges: HashMap<String, f64>,
        counters: HashMap<String, i64>,
    }
    let body = wire::get(plan.server, "/api/v1/snapshot")?;
    let snap: Snapshot = serde_json::from_slice(&body)
        .map_err(|e| format!("GET /api/v1/snapshot: not a snapshot: {e}"))?;
    let (mut exact, mut doubtful, mut wrong) = (0, 0, Vec::new());
    for agent in agents {
        let name = crate::agent::tagged("PollCount", agent.index);
        let got = snap.counters.get(&name).copied();
        if got == Some(agent.delivered) && agent.in_doubt == 0 {
            exact += 1;
        } else if got
            .is_some_and(|g| (agent.delivered..=agent.delivered + agent.in_doubt).contains(&g))
        {
            doubtful += 1;
        } else {
            wrong.push(format!(
                "{name}: server {got:?}, delivered {}",
                agent.delivered
            ));
        }
    }
    let stored = snap.gauges.len() + snap.counters.len();
    println!(
        "stored   : {stored} metrics ({} gauges, {} counters), expected {}",
        snap.gauges.len(),
        snap.counters.len(),
        plan.agents * per_agent
    );
    println!(
        "exact    : {exact} of {} agents' PollCount equal the deltas answered 2xx; {doubtful} within their reports in doubt; {} wrong{}",
        agents.len(),
        wrong.len(),
        if wrong.is_empty() {
            String::new()
        } else {
            format!(" (first: {})", wrong[..wrong.len().min(3)].join("; "))
        }
    );
    Ok(wrong.is_empty() && stored == plan.agents * per_agent)
}
