//! `golectra-server`: parse the configuration, start the server, wait for SIGTERM/SIGINT, shut
//! down cleanly. Exit codes: 0 clean stop, 2 bad configuration, 1 any other fatal error.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use golectra_server::config::{Command, Config};
use signal_hook::consts::{SIGINT, SIGTERM};

fn main() -> ExitCode {
    let config = match Config::from_sources(std::env::args_os().skip(1), |k| std::env::var(k).ok())
    {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help(text) | Command::Version(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("golectra-server: {e}");
            return ExitCode::from(2);
        }
    };
    golectra_common::logging::init("info");
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &Config) -> anyhow::Result<()> {
    // Signals are registered before any thread exists, so every thread inherits the mask.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("cannot register signal handlers")?;
    log::info!(
        "{} starting: {}",
        golectra_common::version::line("golectra-server"),
        golectra_server::describe(config)
    );
    let server = golectra_server::Server::start(config)?;
    log::info!("listening on http://{}", server.local_addr());
    let signal = signals.forever().next().unwrap_or(SIGTERM);
    // A second signal ends the process at once, without the final snapshot.
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::new(AtomicBool::new(true)))
            .context("cannot register the second-signal handler")?;
    }
    log::info!(
        "received {}, finishing requests in flight and writing the final snapshot",
        signal_name(signal)
    );
    server.shutdown().context("shutdown")?;
    log::info!("stopped");
    Ok(())
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        _ => "SIGTERM",
    }
}
