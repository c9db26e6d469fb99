//! `pushwire trigger`: one signed `POST /apps/{id}/events` from the shell.

use std::process::ExitCode;

use anyhow::Context;
use pushwire_shared::AppList;

use super::ConfigurationError;
use crate::telemetry::{LogFormat, Process};
use crate::trigger_client::TriggerClient;

/// `pushwire trigger` flags. `Debug` leaves out the app's credentials and the
/// event data.
#[derive(clap::Args)]
pub(crate) struct TriggerArgs {
    /// Base URL of the trigger endpoint.
    #[arg(long, env = "PUSHWIRE_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Credentials as `id:key:secret`; with several apps listed, the first is used.
    #[arg(long = "app", env = "PUSHWIRE_APPS", hide_env_values = true, default_value = crate::config::DEV_APPS)]
    pub app: String,
    /// Target channel; repeat for several.
    #[arg(long = "channel", short = 'c', required = true)]
    pub channels: Vec<String>,
    /// Event name.
    #[arg(long, short = 'e')]
    pub event: String,
    /// Event data, sent as the `data` string (clients receive it JSON-parsed when it is JSON).
    #[arg(long, short = 'd', default_value = "")]
    pub data: String,
    /// Socket id to leave out.
    #[arg(long)]
    pub socket_id: Option<String>,
}

impl std::fmt::Debug for TriggerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerArgs")
            .field("url", &self.url)
            .field("app", &"<redacted>")
            .field("channels", &self.channels)
            .field("event", &self.event)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("socket_id", &self.socket_id)
            .finish()
    }
}

pub(super) async fn run(args: TriggerArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(LogFormat::Text, Process::Command);
    let apps = AppList::parse(&args.app)
        .map_err(|e| ConfigurationError::new(format_args!("--app / PUSHWIRE_APPS: {e}")))?;
    let app = apps.iter().next().context("no app given")?.clone();
    let client = TriggerClient::new(&args.url, app)
        .map_err(|e| ConfigurationError::new(format_args!("--url / PUSHWIRE_URL: {e}")))?;
    let response = client
        .trigger(
            &args.channels,
            &args.event,
            args.data,
            args.socket_id.as_deref(),
        )
        .await
        .with_context(|| format!("POST {}", args.url))?;
    if response.status == 200 {
        println!("{}", response.body);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "pushwire: trigger refused ({}): {}",
            response.status,
            response.error_message()
        );
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn debug_leaves_out_the_secret_and_the_data() {
        let cli = Cli::parse_from([
            "pushwire",
            "trigger",
            "--app",
            "1:k:the-app-secret",
            "-c",
            "a",
            "-e",
            "e",
            "-d",
            "the-payload",
        ]);
        assert!(matches!(cli.command, Some(Command::Trigger(_))));
        let debug = format!("{cli:?}");
        assert!(!debug.contains("the-app-secret"), "{debug}");
        assert!(!debug.contains("the-payload"), "{debug}");
        assert!(debug.contains("<11 bytes>"), "{debug}");
    }
}
