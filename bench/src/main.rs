//! The `pushwire-bench` binary: parses arguments and hands over to the library.
//!
//! The report goes to stdout (`--json` for machines); progress and diagnostics
//! go to stderr. Exit codes: 0 success, 2 usage error or a run that could not
//! be carried out.

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pushwire_bench::client::{Handshake, Protocol};
use pushwire_bench::{self as bench, BenchConfig};
use pushwire_shared::AppList;

/// Upper bounds that keep a run finite and on one box.
const MAX_CONNECTIONS: usize = 200_000;
const MAX_DURATION_SECS: f64 = 600.0;

/// pushwire-bench: load-test a server speaking pushwire's contract (loopback only).
#[derive(Debug, Parser)]
#[command(name = "pushwire-bench", version)]
struct BenchArgs {
    /// Socket.IO server to connect to (loopback).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Trigger API base URL [default: --url].
    #[arg(long)]
    trigger_url: Option<String>,
    /// Credentials as `id:key:secret`; with several apps listed, the first is used.
    #[arg(long = "app", env = "PUSHWIRE_APPS", hide_env_values = true, default_value = pushwire_origin::DEV_APPS)]
    app: String,
    /// Connections to open (raise `ulimit -n` above this).
    #[arg(long, short = 'c', default_value_t = 1000)]
    connections: usize,
    /// Channels the connections are spread over (connection i joins channel i mod K).
    #[arg(long, short = 'k', default_value_t = 1)]
    channels: usize,
    /// Triggers per second (0: hold idle connections for --duration).
    #[arg(long, short = 'r', default_value_t = 10.0)]
    rate: f64,
    /// Seconds to trigger (or to hold idle connections).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Bytes of padding in each event's data.
    #[arg(long, default_value_t = 16)]
    payload: usize,
    /// Loopback addresses to connect from, e.g. `127.0.0.1-127.0.0.16`.
    #[arg(long, default_value = "127.0.0.1")]
    source_ips: String,
    /// Server process to measure, with its descendants (repeat for several).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Redis node (`127.0.0.1:port`) whose CPU to report per phase from `INFO cpu`
    /// (repeat for each node of a cluster).
    #[arg(long = "redis-cpu")]
    redis_nodes: Vec<std::net::SocketAddr>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Reconnects per second across all connections while triggering (0: off): a
    /// random connection closes, reconnects and subscribes again with `since`.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Open each connection the way stock clients do: Engine.IO long-polling
    /// first, then the upgrade to WebSocket (slower; checks sticky routing and upgrades).
    #[arg(long)]
    polling_first: bool,
    /// Send a desktop browser's request headers (user agent, languages, a cookie…,
    /// about 800 bytes) when connecting, as browser clients do: servers keep them
    /// per session, so idle memory is then measured as for browsers.
    #[arg(long)]
    browser_headers: bool,
    /// Client protocol: Socket.IO, or Pusher Channels protocol 7 at
    /// `/app/<key>?protocol=7` (public channels; no --churn, --polling-first
    /// or --webhook-churn with it).
    #[arg(long, value_enum, default_value = "socketio")]
    protocol: Protocol,
    /// Webhook churn instead of triggers: channels occupied, and as many vacated,
    /// per second by a pool of rate × --webhook-hold sockets for --duration,
    /// timing each `channel_occupied` / `channel_vacated` (-c, -k, -r unused).
    #[arg(long, default_value_t = 0.0)]
    webhook_churn: f64,
    /// With --webhook-churn: seconds each channel stays occupied.
    #[arg(long, default_value_t = 1.0)]
    webhook_hold: f64,
    /// Measure the box's fan-out floor instead of a server: the sender CPU of
    /// one `--payload`-byte write to each of -c connected loopback sockets,
    /// for --duration (no server; --url unused).
    #[arg(long)]
    write_floor: bool,
    /// Receive the server's webhooks on this loopback `host:port` (the server's
    /// webhook URL points here); signatures are checked with --app's secret.
    #[arg(long)]
    webhook_listen: Option<std::net::SocketAddr>,
}

/// Parses the command line, runs the bench and turns the outcome into an exit code.
fn main() -> ExitCode {
    let args = BenchArgs::parse();
    pushwire_origin::telemetry::init(
        pushwire_origin::telemetry::LogFormat::Text,
        pushwire_origin::telemetry::Process::Command,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pushwire-bench: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Spawned, as `pushwire`'s commands are: a panic becomes an error and an exit code.
    let result = runtime.block_on(async {
        tokio::spawn(run(args))
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the bench panicked: {e}")))
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pushwire-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Validates the arguments, runs the bench and prints its report.
async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.write_floor {
        anyhow::ensure!(
            (1..=20_000).contains(&args.connections) && args.duration <= MAX_DURATION_SECS,
            "--write-floor takes 1 to 20000 connections and at most {MAX_DURATION_SECS} s"
        );
        let config = bench::write_floor::FloorConfig {
            connections: args.connections,
            bytes: args.payload,
            duration: Duration::from_secs_f64(args.duration),
        };
        // Blocking sockets and threads of its own: off the async runtime.
        let report = tokio::task::spawn_blocking(move || bench::write_floor::measure(config))
            .await?
            .context("measuring the write floor")?;
        print(args.json, &report, || {
            format!(
                "write floor    {:.2} µs of sender CPU per {}-byte write ({} writes to {} loopback sockets)",
                report.us_per_write, report.bytes, report.writes, report.connections
            )
        })?;
        return Ok(ExitCode::SUCCESS);
    }
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
    let source_ips = bench::parse_source_ips(&args.source_ips)?;
    anyhow::ensure!(
        args.protocol == Protocol::Socketio
            || (args.churn == 0.0 && !args.polling_first && args.webhook_churn == 0.0),
        "--protocol pusher takes no --churn, --polling-first or --webhook-churn"
    );
    if args.webhook_churn > 0.0 {
        anyhow::ensure!(
            (0.01..=60.0).contains(&args.webhook_hold),
            "--webhook-hold must be in [0.01, 60] seconds"
        );
        let config = bench::webhooks::WebhookChurnConfig {
            socket_addr,
            app,
            rate: args.webhook_churn,
            hold: Duration::from_secs_f64(args.webhook_hold),
            duration: Duration::from_secs_f64(args.duration),
            source_ips,
            server_pids: args.server_pids,
            listen: args.webhook_listen,
            handshake: Handshake {
                polling_first: args.polling_first,
                browser_headers: args.browser_headers,
                protocol: args.protocol,
            },
            progress: true,
        };
        let report = bench::webhooks::run(config).await?;
        print(args.json, &report, || report.summary())?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = BenchConfig {
        socket_addr,
        trigger_url: args.trigger_url.unwrap_or_else(|| args.url.clone()),
        app,
        connections: args.connections,
        channels: args.channels,
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration),
        payload: args.payload,
        source_ips,
        server_pids: args.server_pids,
        redis_nodes: args.redis_nodes,
        progress: true,
        churn: args.churn,
        handshake: Handshake {
            polling_first: args.polling_first,
            browser_headers: args.browser_headers,
            protocol: args.protocol,
        },
        webhook_listen: args.webhook_listen,
    };
    let report = bench::run(config).await?;
    print(args.json, &report, || report.summary())?;
    Ok(ExitCode::SUCCESS)
}

/// Prints `report` on stdout: as JSON, or as its summary.
fn print(
    json: bool,
    report: &impl serde::Serialize,
    summary: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{}", summary());
    }
    Ok(())
}
