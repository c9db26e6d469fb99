//! The `pushwire` command line: argument definitions and dispatch.
//!
//! Output meant for the user (a trigger's result) goes to stdout; diagnostics go
//! through `tracing` to stderr. Exit codes: 0 success, 1 the operation failed
//! (e.g. the server refused a trigger, or the port is taken), 2 usage or
//! configuration error ([`ConfigurationError`], reported before anything listens).

mod bridge;
mod serve;
mod trigger;
mod worker_process;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) use self::trigger::TriggerArgs;
use crate::bridge::BridgeSettings;
use crate::config::ServeSettings;

/// pushwire: realtime push over Socket.IO with a Pusher-compatible trigger API.
#[derive(Debug, Parser)]
#[command(
    name = "pushwire",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// What to run; without a subcommand, `serve`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve` flags, when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeSettings,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run an origin: Socket.IO clients, the trigger API and broker fan-out.
    Serve(Box<ServeSettings>),
    /// Send one signed trigger to a pushwire (or Pusher-compatible) endpoint.
    Trigger(TriggerArgs),
    /// Run the Upstash-compatible Redis REST bridge the edge worker publishes through.
    Bridge(BridgeSettings),
    /// Internal: a worker process, spawned by `serve`.
    #[command(hide = true)]
    WorkerProcess,
}

/// A setting that cannot be used, naming it and where it was given: exit
/// status 2, as clap gives a usage error. Every other failure exits 1.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub(crate) struct ConfigurationError(String);

impl ConfigurationError {
    /// The error `why` names the setting and its source.
    pub(crate) fn new(why: impl std::fmt::Display) -> Self {
        ConfigurationError(why.to_string())
    }
}

/// Parses the command line, runs it and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every log line of the cluster names its process: `master` or `worker-N`
    // (the runtime's thread name).
    let process = match &cli.command {
        Some(Command::WorkerProcess) => {
            let id = std::env::var(crate::cluster::WORKER_ID_ENV).unwrap_or_default();
            format!("worker-{id}")
        }
        None | Some(Command::Serve(_)) => "master".to_owned(),
        Some(_) => "pushwire".to_owned(),
    };
    // Each subcommand starts logging itself, once it knows the format: `serve`
    // after reading its config file, a worker after its settings arrive.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name(process)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pushwire: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Spawned, not run on the main thread, so every log line carries the runtime's thread name.
    let result = runtime.block_on(async {
        let command = tokio::spawn(async move {
            match cli.command {
                None => serve::run(cli.serve).await,
                Some(Command::Serve(args)) => serve::run(*args).await,
                Some(Command::Trigger(args)) => trigger::run(args).await,
                Some(Command::WorkerProcess) => worker_process::run().await,
                Some(Command::Bridge(args)) => bridge::run(args).await,
            }
        });
        command
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the command panicked: {e}")))
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            crate::telemetry::report_fatal(&e);
            if e.is::<ConfigurationError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::Cli;

    const README: &str = include_str!("../../../README.md");

    /// `(flag, variable)` of each setting `pushwire <subcommand> --help` lists.
    fn help_settings(subcommand: &str) -> BTreeSet<(String, String)> {
        let cli = Cli::command();
        let command = cli
            .find_subcommand(subcommand)
            .unwrap_or_else(|| panic!("no subcommand {subcommand}"));
        let help = command.clone().render_long_help().to_string();
        command
            .get_arguments()
            .filter(|arg| !arg.is_hide_set())
            .filter_map(|arg| {
                let long = format!("--{}", arg.get_long()?);
                (long != "--help").then(|| {
                    assert!(help.contains(&long), "{long} not in --help");
                    let env = arg
                        .get_env()
                        .map_or_else(String::new, |e| e.to_string_lossy().into_owned());
                    (long, env)
                })
            })
            .collect()
    }

    /// `(flag, variable)` of each row of the first README table after `marker`.
    fn readme_settings(marker: &str) -> BTreeSet<(String, String)> {
        let after = README
            .split_once(marker)
            .unwrap_or_else(|| panic!("README has no {marker:?}"))
            .1;
        let rows: BTreeSet<_> = after
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .filter(|line| line.starts_with("| `--"))
            .map(|line| {
                let cells: Vec<&str> = line
                    .split('|')
                    .map(|c| c.trim().trim_matches('`'))
                    .collect();
                (cells[1].to_owned(), cells[2].to_owned())
            })
            .collect();
        assert!(!rows.is_empty(), "no settings table after {marker:?}");
        rows
    }

    #[test]
    fn the_readme_documents_every_serve_setting_and_no_other() {
        assert_eq!(
            readme_settings("## Configuration"),
            help_settings("serve"),
            "README's configuration table (left) and `pushwire serve --help` (right) differ"
        );
    }

    #[test]
    fn the_readme_documents_every_bridge_setting_and_no_other() {
        assert_eq!(
            readme_settings("**Bridge**"),
            help_settings("bridge"),
            "README's bridge table (left) and `pushwire bridge --help` (right) differ"
        );
    }

    #[test]
    fn serve_help_states_the_shared_defaults_and_bounds() {
        use pushwire_shared::settings::*;
        let help = Cli::command()
            .find_subcommand("serve")
            .expect("serve")
            .clone()
            .render_long_help()
            .to_string();
        for text in [
            format!("at least {MIN_MAX_REQUEST_BYTES} [default: {DEFAULT_MAX_REQUEST_BYTES}]"),
            format!("1 to {MAX_HISTORY_EVENTS} [default: {DEFAULT_HISTORY_MAX_EVENTS}]"),
            format!("trimmed [default: {DEFAULT_HISTORY_MAX_AGE_SECS}]"),
            format!(
                "at most {} [default: {}]",
                crate::config::MAX_PING_MS,
                crate::config::DEFAULT_PING_INTERVAL_MS
            ),
        ] {
            assert!(help.contains(&text), "{text:?} not in {help}");
        }
    }
}
