//! `golectra-agent`: samples runtime and host metrics and pushes them to a Golectra server.
//! Exit codes: 0 clean stop, 2 bad configuration, 1 any other fatal error.

mod accumulator;
mod alloc;
mod config;
mod host;
mod in_doubt;
mod journal;
mod ledger;
mod pipeline;
mod report;
mod runtime;
mod scheduler;
mod sender;
mod state;
mod tagging;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use golectra_common::notify::Notifier;
use golectra_common::settings::ConfigError;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::config::{Config, STATE_FILE};
use crate::state::Restored;

/// Every heap allocation of the process goes through this counter (see [`alloc`]).
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting::new();

fn main() -> ExitCode {
    let parsed = Config::from_sources(std::env::args_os().skip(1), |k| std::env::var(k).ok());
    let config = match golectra_common::settings::run_or_exit("golectra-agent", parsed) {
        Ok(config) => config,
        Err(code) => return code,
    };
    golectra_common::logging::init("info", "golectra_agent");
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            if e.is::<ConfigError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(config: &Config) -> anyhow::Result<()> {
    // Signals are registered before any thread exists, so every thread inherits the mask.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("cannot register signal handlers")?;
    log::info!(
        "{} starting: {}",
        golectra_common::version::line("golectra-agent"),
        config.describe()
    );
    // A state file the agent cannot write is a configuration error (exit 2).
    let (state_file, restored) = match &config.state_file {
        None => (None, Restored::fresh()),
        Some(path) => {
            let (file, restored) = state::open(path)
                .map_err(|why| STATE_FILE.invalid(&path.display().to_string(), &why.0))?;
            (Some(file), restored)
        }
    };
    let notifier = Arc::new(Notifier::from_env());
    let pipeline = pipeline::Pipeline::start(config, notifier.clone(), restored, state_file)?;
    let signal = signals.forever().next().unwrap_or(SIGTERM);
    // A second signal ends the process at once, without the final report.
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::new(AtomicBool::new(true)))
            .context("cannot register the second-signal handler")?;
    }
    notifier.stopping();
    log::info!(
        "received {}: stopping polls, sending the final report",
        if signal == SIGINT {
            "SIGINT"
        } else {
            "SIGTERM"
        }
    );
    pipeline.shutdown();
    Ok(())
}
