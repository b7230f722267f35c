//! `golectra-server`: parse the configuration, start the server, tell systemd it is ready, wait
//! for SIGTERM/SIGINT, shut down cleanly. Exit codes: 0 clean stop, 2 bad configuration, 1 any
//! other fatal error.
//!
//! Under `Type=notify` systemd hears `READY=1` once the listener accepts connections,
//! `STOPPING=1` when shutdown starts, and `WATCHDOG=1` from the [`health::Watchdog`] thread only
//! while the HTTP pool answers its own `/ping`. Outside systemd all of that is a no-op.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use golectra_common::notify::Notifier;
use golectra_server::StartError;
use golectra_server::config::Config;
use golectra_server::health;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

fn main() -> ExitCode {
    let parsed = Config::from_sources(std::env::args_os().skip(1), |k| std::env::var(k).ok());
    let config = match golectra_common::settings::run_or_exit("golectra-server", parsed) {
        Ok(config) => config,
        Err(code) => return code,
    };
    golectra_common::logging::init("info", "golectra_server");
    let notifier = Arc::new(Notifier::from_env());
    match run(&config, &notifier) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            // An unusable TLS file is a configuration error, like any other: exit 2.
            if let Some(StartError::Tls(tls)) = e.downcast_ref::<StartError>() {
                notifier.status(&format!("failed: {tls}"));
                return ExitCode::from(2);
            }
            notifier.status(&format!("failed: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn run(config: &Config, notifier: &Arc<Notifier>) -> anyhow::Result<()> {
    // Signals are registered before any thread exists, so every thread inherits the mask.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot register signal handlers")?;
    log::info!(
        "{} starting: {}",
        golectra_common::version::line("golectra-server"),
        golectra_server::describe(config)
    );
    let server = golectra_server::Server::start(config)?;
    let target = server.probe_target();
    log::info!("listening on {}://{}", target.scheme(), target.addr);
    // The listener is bound and the workers run: connections are accepted from here on.
    notifier.ready(&health::status_line(&target, server.store().as_ref()));
    let watchdog = health::Watchdog::spawn(notifier.clone(), target, server.store().clone())
        .context("cannot start the watchdog thread")?;

    // SIGHUP re-reads the TLS files (certificate renewals); SIGTERM and SIGINT stop.
    let signal = loop {
        match signals.forever().next().unwrap_or(SIGTERM) {
            SIGHUP => reload_tls(&server),
            other => break other,
        }
    };
    // A second signal ends the process at once, without the final snapshot.
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::new(AtomicBool::new(true)))
            .context("cannot register the second-signal handler")?;
    }
    notifier.stopping();
    notifier.status("stopping: finishing requests in flight, writing the final snapshot");
    if let Some(watchdog) = watchdog {
        watchdog.stop();
    }
    log::info!(
        "received {}, finishing requests in flight and writing the final snapshot",
        signal_name(signal)
    );
    server.shutdown().context("shutdown")?;
    log::info!("stopped");
    Ok(())
}

fn reload_tls(server: &golectra_server::Server) {
    match server.reload_tls() {
        Ok(true) => log::info!("SIGHUP: TLS certificate and key re-read; new connections use them"),
        Ok(false) => log::info!("SIGHUP: nothing to reload (TLS is off)"),
        Err(e) => log::error!("SIGHUP: {e}; keeping the certificate in use"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        _ => "SIGTERM",
    }
}
