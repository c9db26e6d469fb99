//! `pushwire serve`.

use std::net::SocketAddr;
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
        config_file: args.config_file,
    })
    .context("configuration")?;
    if config.uses_dev_app {
        tracing::warn!(
            "no apps configured: using the development app {} (set PUSHWIRE_APPS in production)",
            crate::config::DEV_APPS
        );
    }
    let addr = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    crate::worker::run(listener, &config, shutdown_signal())
        .await
        .context("serving")?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
