//! The `pushwire` command line: argument definitions and dispatch.
//!
//! Output meant for the user (a trigger's result) goes to stdout; diagnostics go
//! through `tracing` to stderr. Exit codes: 0 success, 1 the operation failed
//! (e.g. the server refused a trigger), 2 usage or configuration error.

mod serve;
mod trigger;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// pushwire: realtime push over Socket.IO with a Pusher-compatible trigger API.
#[derive(Debug, Parser)]
#[command(
    name = "pushwire",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to run; without a subcommand, `serve`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve` flags, when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an origin: Socket.IO clients, the trigger API and broker fan-out.
    Serve(ServeArgs),
    /// Send one signed trigger to a pushwire (or Pusher-compatible) endpoint.
    Trigger(TriggerArgs),
    /// Run the Upstash-compatible Redis REST bridge the edge worker publishes through.
    Bridge(BridgeArgs),
    /// Internal: a worker process, spawned by `serve`.
    #[command(hide = true)]
    WorkerProcess,
}

/// `pushwire serve` flags; each can also come from its environment variable.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "PUSHWIRE_HOST")]
    pub host: Option<IpAddr>,
    /// Port to listen on; 0 picks a free one [default: 3000].
    #[arg(long, env = "PUSHWIRE_PORT")]
    pub port: Option<u16>,
    /// Apps as `id:key:secret[,id:key:secret…]` [default: the dev app 1000001:app-key:app-secret].
    #[arg(long, env = "PUSHWIRE_APPS", hide_env_values = true)]
    pub apps: Option<String>,
    /// Redis URL; without it an embedded broker is used.
    #[arg(long = "redis", env = "PUSHWIRE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Worker processes [default: one per CPU].
    #[arg(long, env = "PUSHWIRE_WORKERS")]
    pub workers: Option<usize>,
    /// Serve the live demo page at `/` [default: true].
    #[arg(long, env = "PUSHWIRE_DEMO")]
    pub demo: Option<bool>,
    /// Heartbeat interval in ms [default: 25000].
    #[arg(long, env = "PUSHWIRE_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    /// Heartbeat timeout in ms; a client whose send buffer is full at a ping, or that
    /// does not answer in time, is disconnected [default: 20000].
    #[arg(long, env = "PUSHWIRE_PING_TIMEOUT_MS")]
    pub ping_timeout_ms: Option<u64>,
    /// Trigger API request body cap in bytes [default: 262144].
    #[arg(long, env = "PUSHWIRE_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// History kept per channel for recovery (`subscribe` with `since`) [default: 100].
    #[arg(long, env = "PUSHWIRE_HISTORY_MAX_EVENTS")]
    pub history_max_events: Option<u32>,
    /// Age in seconds after which history is trimmed [default: 300].
    #[arg(long, env = "PUSHWIRE_HISTORY_MAX_AGE_SECS")]
    pub history_max_age_secs: Option<u32>,
    /// Web origins whose browser pages may connect, comma-separated
    /// (`https://app.example.com,…`); pages of other origins are refused [default: * (any)].
    #[arg(long, env = "PUSHWIRE_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,
    /// JSON config file, read under flags and environment.
    #[arg(long = "config", env = "PUSHWIRE_CONFIG")]
    pub config_file: Option<PathBuf>,
}

/// `pushwire bridge` flags.
#[derive(Debug, clap::Args)]
pub struct BridgeArgs {
    /// Address to listen on.
    #[arg(long, env = "PUSHWIRE_BRIDGE_HOST", default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "PUSHWIRE_BRIDGE_PORT", default_value_t = 8079)]
    pub port: u16,
    /// Redis URL.
    #[arg(
        long = "redis",
        env = "PUSHWIRE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Bearer token clients must present (required).
    #[arg(long, env = "PUSHWIRE_BRIDGE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Allowed commands, comma-separated [default: PING,PUBLISH,EVAL,EVALSHA,
    /// ZRANGEBYSCORE,HGET,HGETALL,HLEN]; EVAL and EVALSHA run only pushwire's
    /// publish script (EVAL allows EVALSHA too), the reads only on `pushwire:` keys.
    #[arg(long, env = "PUSHWIRE_BRIDGE_ALLOW", value_delimiter = ',')]
    pub allow: Vec<String>,
    /// Request body cap in bytes.
    #[arg(long, env = "PUSHWIRE_BRIDGE_MAX_REQUEST_BYTES", default_value_t = 1024 * 1024)]
    pub max_request_bytes: usize,
}

/// `pushwire trigger` flags.
#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
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

/// Parses the command line, runs it and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every log line of the cluster names its process: `master` or `worker-N`
    // (the runtime's thread name).
    let process = match &cli.command {
        Some(Command::WorkerProcess) => {
            let id = std::env::var(crate::cluster::WORKER_ID_ENV).unwrap_or_default();
            format!("worker-{id}")
        }
        None | Some(Command::Serve(_)) => "master".to_owned(),
        Some(_) => "pushwire".to_owned(),
    };
    crate::telemetry::init(process != "pushwire");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name(process)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pushwire: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Spawned, not run on the main thread, so every log line carries the runtime's thread name.
    let result = runtime.block_on(async {
        let command = tokio::spawn(async move {
            match cli.command {
                None => serve::run(cli.serve).await,
                Some(Command::Serve(args)) => serve::run(args).await,
                Some(Command::Trigger(args)) => trigger::run(args).await,
                Some(Command::WorkerProcess) => serve::run_worker().await,
                Some(Command::Bridge(args)) => serve::run_bridge(args).await,
            }
        });
        command
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the command panicked: {e}")))
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pushwire: {e:#}");
            ExitCode::from(2)
        }
    }
}
