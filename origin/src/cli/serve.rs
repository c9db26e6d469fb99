//! `pushwire serve` (also what `pushwire` alone runs) and the hidden `pushwire worker-process`.

use std::process::ExitCode;

use anyhow::Context;

use super::ServeArgs;
use crate::config::{ServeConfig, ServeOverrides};

pub(super) async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig::resolve(ServeOverrides {
        host: args.host,
        port: args.port,
        apps: args.apps,
        redis_url: args.redis_url,
        max_request_bytes: args.max_request_bytes,
        workers: args.workers,
        demo: args.demo,
        ping_interval_ms: args.ping_interval_ms,
        ping_timeout_ms: args.ping_timeout_ms,
        history_max_events: args.history_max_events,
        history_max_age_secs: args.history_max_age_secs,
        allowed_origins: args.allowed_origins,
        config_file: args.config_file,
    })
    .context("configuration")?;
    if config.uses_dev_app {
        tracing::warn!(
            "no apps configured: using the development app {} (set PUSHWIRE_APPS in production)",
            crate::config::DEV_APPS
        );
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
    crate::cluster::run_master(&config, shutdown_signal())
        .await
        .context("serving")?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run_worker() -> anyhow::Result<ExitCode> {
    crate::cluster::run_worker_process()
        .await
        .context("worker")?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run_bridge(args: super::BridgeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.token.len() >= 16,
        "--token / PUSHWIRE_BRIDGE_TOKEN must be at least 16 characters"
    );
    let allowed: Vec<String> = if args.allow.is_empty() {
        crate::bridge::DEFAULT_ALLOWED
            .iter()
            .map(|c| c.to_string())
            .collect()
    } else {
        args.allow
            .iter()
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty())
            .collect()
    };
    let addr = std::net::SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let config = crate::bridge::BridgeConfig {
        addr,
        redis_url: args.redis_url,
        token: args.token,
        allowed,
        max_request_bytes: args.max_request_bytes,
    };
    crate::bridge::run(listener, config, shutdown_signal())
        .await
        .context("bridge")?;
    Ok(ExitCode::SUCCESS)
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
