//! `pushwire bench`.

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pushwire_shared::AppList;

use super::BenchArgs;
use crate::bench::client::Handshake;
use crate::bench::{self, BenchConfig};

/// Upper bounds that keep a run finite and on one box.
const MAX_CONNECTIONS: usize = 200_000;
const MAX_DURATION_SECS: f64 = 600.0;

pub(super) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let apps = AppList::parse(&args.app).context("--app / PUSHWIRE_APPS")?;
    let app = apps.iter().next().context("no app given")?.clone();
    let host = args
        .url
        .trim_end_matches('/')
        .strip_prefix("http://")
        .context("--url must be http://host:port")?;
    let socket_addr = host
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .context("--url resolves to no address")?;
    anyhow::ensure!(
        args.connections <= MAX_CONNECTIONS,
        "--connections is capped at {MAX_CONNECTIONS}"
    );
    // One descriptor per connection; a few to spare for triggers and /proc.
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if (args.connections as u64) + 64 > limit {
        tracing::warn!(
            limit,
            "the open-file limit is below --connections: run several bench processes"
        );
    }
    anyhow::ensure!(
        args.duration > 0.0 && args.duration <= MAX_DURATION_SECS,
        "--duration must be in (0, {MAX_DURATION_SECS}] seconds"
    );
    anyhow::ensure!(
        (0.0..=1_000_000.0).contains(&args.rate),
        "--rate must be in [0, 1000000]"
    );
    anyhow::ensure!(
        (0.0..=bench::MAX_CHURN_RATE).contains(&args.churn),
        "--churn must be in [0, {}] reconnects per second",
        bench::MAX_CHURN_RATE
    );
    let config = BenchConfig {
        socket_addr,
        trigger_url: args.trigger_url.unwrap_or_else(|| args.url.clone()),
        app,
        connections: args.connections,
        channels: args.channels,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        payload: args.payload,
        source_ips: bench::parse_source_ips(&args.source_ips)?,
        server_pids: args.server_pids,
        progress: true,
        churn: args.churn,
        handshake: Handshake {
            polling_first: args.polling_first,
            browser_headers: args.browser_headers,
        },
    };
    let report = bench::run(config).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.summary());
    }
    Ok(ExitCode::SUCCESS)
}
