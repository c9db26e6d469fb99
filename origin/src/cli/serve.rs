//! `pushwire serve`, also what `pushwire` alone runs.

use std::process::ExitCode;

use anyhow::Context;

use super::ConfigurationError;
use crate::config::{ServeConfig, ServeSettings};
use crate::redis_connection::RedisTarget;
use crate::telemetry::Process;

pub(super) async fn run(settings: ServeSettings) -> anyhow::Result<ExitCode> {
    // Every setting is checked here, before the port is bound: workers get only
    // settings that work. The configuration names the log format, so logging
    // starts once it is read; a configuration error is reported as plain text.
    let (config, readable_secrets) =
        ServeConfig::resolve(settings).map_err(ConfigurationError::new)?;
    if let Some(url) = &config.redis_url {
        redis_at_start(url).await?;
    }
    crate::telemetry::init(config.log_format, Process::Master);
    if let Some(readable) = readable_secrets {
        readable.warn();
    }
    if config.uses_dev_app {
        // Its id and key only: even a public secret has no place in a log.
        for app in config.apps.iter() {
            tracing::warn!(
                app = %app.id,
                key = %app.key,
                "no apps configured: using the development app, whose secret is public (set PUSHWIRE_APPS in production)"
            );
        }
    } else {
        for app in config.apps.iter().filter(|app| app.has_short_secret()) {
            tracing::warn!(
                app = %app.id,
                "the app's secret is shorter than {} bytes: anyone who guesses it can trigger; use a long random one",
                pushwire_shared::app::MIN_SECRET_LEN
            );
        }
    }
    // Each worker holds one descriptor per connection, so the soft limit (often
    // 1,024 in a login shell) would cap it long before memory does. Workers
    // inherit the raised limit.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(
            limit,
            "open-file limit per process (each worker holds up to about this many connections)"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    crate::cluster::run_master(&config, super::shutdown_signal())
        .await
        .context("serving")?;
    Ok(ExitCode::SUCCESS)
}

/// Checks the Redis `url` (already parsed once) the way a start needs
/// (`RedisTarget::check_at_start`), naming the setting in what it reports.
async fn redis_at_start(url: &str) -> Result<(), ConfigurationError> {
    let target = RedisTarget::parse(url).map_err(ConfigurationError::new)?;
    target
        .check_at_start()
        .await
        .map_err(|e| ConfigurationError::new(format!("--redis / PUSHWIRE_REDIS_URL: {e}")))
}
