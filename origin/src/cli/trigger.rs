//! `pushwire trigger`: one signed `POST /apps/{id}/events` from the shell.

use std::process::ExitCode;

use anyhow::Context;
use pushwire_shared::AppList;

use crate::trigger_client::TriggerClient;

/// `pushwire trigger` flags.
#[derive(Debug, clap::Args)]
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

pub(super) async fn run(args: TriggerArgs) -> anyhow::Result<ExitCode> {
    let apps = AppList::parse(&args.app).context("--app / PUSHWIRE_APPS")?;
    let app = apps.iter().next().context("no app given")?.clone();
    let client = TriggerClient::new(&args.url, app)?;
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
