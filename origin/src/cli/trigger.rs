//! `pushwire trigger`: one signed `POST /apps/{id}/events` from the shell.

use std::process::ExitCode;

use anyhow::Context;
use pushwire_shared::AppList;

use super::TriggerArgs;
use crate::trigger_client::TriggerClient;

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
