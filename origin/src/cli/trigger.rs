//! `pushwire trigger`: one signed `POST /apps/{id}/events` from the shell.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pushwire_shared::{AppList, signing};

use super::TriggerArgs;
use crate::http_client;

pub(super) async fn run(args: TriggerArgs) -> anyhow::Result<ExitCode> {
    let apps = AppList::parse(&args.app).context("--app / PUSHWIRE_APPS")?;
    let app = apps.iter().next().context("no app given")?;
    let mut body = serde_json::json!({
        "name": args.event,
        "channels": args.channels,
        "data": args.data,
    });
    if let Some(socket_id) = args.socket_id {
        body["socket_id"] = socket_id.into();
    }
    let body = body.to_string();
    let path = format!("/apps/{}/events", app.id);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let query = signing::sign("POST", &path, &[], body.as_bytes(), app, now);
    let url = format!("{}{path}?{query}", args.url.trim_end_matches('/'));

    let response = http_client::post_json(&url, body)
        .await
        .with_context(|| format!("POST {}{path}", args.url))?;
    if response.status == 200 {
        println!("{}", response.body);
        Ok(ExitCode::SUCCESS)
    } else {
        let message = serde_json::from_str::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(response.body);
        eprintln!("pushwire: trigger refused ({}): {message}", response.status);
        Ok(ExitCode::FAILURE)
    }
}
