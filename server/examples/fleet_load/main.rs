//! A fleet of simulated agents against one server, for `bench/fleet.sh` (docs/performance.md,
//! "Fleet"): N agents, each with its own keep-alive connection from its own loopback address
//! (127.10.x.y, so the per-peer caps apply as they would to N hosts), its own `host=sim-<i>`
//! tag on every metric name, the default metric set, and a gzip batch every report interval,
//! the agents' start times spread evenly over the first interval. A few threads drive a share of
//! the agents each.
//!
//! The first interval is the warm-up (every agent connects and creates its metrics); over the
//! measured window after it the simulator records each report's latency and, given `--pid`, the
//! server's CPU time and memory (and with `--pg-dsn` the CPU time of the database's backends).
//! At the end it checks exactness: every agent's `PollCount;host=sim-<i>` on the server
//! (`GET /api/v1/snapshot`) equals the deltas of its reports answered `2xx`. It exits 1 when
//! any agent's count differs or any report was refused or left in doubt.
//!
//! ```text
//! fleet_load run --server 127.0.0.1:8080 [--agents 1000] [--duration 60s] [--warmup 10s]
//!     [--report-interval 10s] [--poll-interval 2s] [--threads 8] [--cpus 2]
//!     [--pid SERVER_PID] [--pg-dsn DSN]
//! fleet_load fresh-db BASE_DSN          # prints the DSN of a new, empty database
//! fleet_load drop-db BASE_DSN FRESH_DSN # drops it again
//! ```

mod agent;
mod measure;
mod pg;
mod run;
mod wire;

use std::net::SocketAddr;
use std::time::Duration;

/// The settings of `run`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub server: SocketAddr,
    pub agents: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub report_interval: Duration,
    pub poll_interval: Duration,
    pub threads: usize,
    pub cpus: usize,
    pub pid: Option<u32>,
    pub pg_dsn: Option<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => parse_plan(&args[1..]).and_then(|plan| run::run(&plan)),
        Some("fresh-db") if args.len() == 2 => pg::fresh(&args[1]).map(|dsn| {
            println!("{dsn}");
            true
        }),
        Some("drop-db") if args.len() == 3 => pg::drop(&args[1], &args[2]).map(|()| true),
        _ => Err("usage: fleet_load run --server ADDR [options] | fresh-db BASE_DSN | drop-db BASE_DSN FRESH_DSN (see the file's docs)".into()),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("fleet_load: {e}");
            std::process::exit(2);
        }
    }
}

fn parse_plan(args: &[String]) -> Result<Plan, String> {
    let mut plan = Plan {
        server: "127.0.0.1:8080".parse().expect("a valid address"),
        agents: 1000,
        duration: Duration::from_secs(60),
        warmup: Duration::ZERO,
        report_interval: Duration::from_secs(10),
        poll_interval: Duration::from_secs(2),
        threads: 8,
        cpus: 2,
        pid: None,
        pg_dsn: None,
    };
    let mut warmup = None;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |min: usize, max: usize| -> Result<usize, String> {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    format!("{flag} {value:?}: expected a whole number in {min}..={max}")
                })
        };
        let duration = || -> Result<Duration, String> {
            humantime::parse_duration(value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("{flag} {value:?}: expected a duration such as 60s"))
        };
        match flag.as_str() {
            "--server" => {
                plan.server = value
                    .parse()
                    .map_err(|_| format!("--server {value:?}: expected host:port"))?
            }
            "--agents" => plan.agents = number(1, 60_000)?,
            "--duration" => plan.duration = duration()?,
            "--warmup" => warmup = Some(duration()?),
            "--report-interval" => plan.report_interval = duration()?,
            "--poll-interval" => plan.poll_interval = duration()?,
            "--threads" => plan.threads = number(1, 1024)?,
            "--cpus" => plan.cpus = number(1, 1024)?,
            "--pid" => plan.pid = Some(number(1, u32::MAX as usize)? as u32),
            "--pg-dsn" => plan.pg_dsn = Some(value.clone()),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if plan.poll_interval > plan.report_interval {
        return Err("--poll-interval must not be longer than --report-interval".into());
    }
    plan.warmup = warmup.unwrap_or(plan.report_interval);
    Ok(plan)
}
