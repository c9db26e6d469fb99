//! `pushwire bridge`: the Upstash-compatible Redis REST bridge.

use std::process::ExitCode;

use anyhow::Context;

use super::ConfigurationError;
use crate::bridge::BridgeSettings;
use crate::telemetry::Process;

pub(super) async fn run(settings: BridgeSettings) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(settings.log_format, Process::Bridge);
    let config = settings.validate().map_err(ConfigurationError::new)?;
    config
        .redis
        .check_at_start()
        .await
        .map_err(|e| ConfigurationError::new(format!("--redis / PUSHWIRE_REDIS_URL: {e}")))?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    crate::bridge::run(listener, config, super::shutdown_signal())
        .await
        .context("bridge")?;
    Ok(ExitCode::SUCCESS)
}
