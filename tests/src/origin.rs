//! The real `pushwire serve` process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::http;
use crate::process::{ChildGuard, Scratch};
use crate::wait;

/// How long `pushwire serve` may take to listen and answer `/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The apps every test origin hosts unless told otherwise (test-only credentials).
pub const TEST_APPS: &str = "1000001:app-key:app-secret";

/// The one app of [`TEST_APPS`], with its secret: for signing triggers and channel auth.
pub fn test_app() -> pushwire_shared::App {
    pushwire_shared::AppList::parse(TEST_APPS)
        .expect("TEST_APPS parses")
        .single()
        .expect("TEST_APPS holds one app")
        .clone()
}

/// Locates the `pushwire` binary: `$PUSHWIRE_BIN`, else next to this test's target dir.
pub fn pushwire_bin() -> PathBuf {
    workspace_bin("PUSHWIRE_BIN", "pushwire", "pushwire-origin")
}

/// Locates the `pushwire-bench` binary: `$PUSHWIRE_BENCH_BIN`, else next to this
/// test's target dir.
pub fn pushwire_bench_bin() -> PathBuf {
    workspace_bin("PUSHWIRE_BENCH_BIN", "pushwire-bench", "pushwire-bench")
}

/// The binary `name` of the workspace package `package`: `$env_var`, else next to
/// this test's target dir (the tests run the binaries, cargo does not build them).
fn workspace_bin(env_var: &str, name: &str, package: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env_var) {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .expect("test binary lives in target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p {package}` (or `cargo build --workspace`) first (the README test command does)",
        bin.display()
    );
    bin
}

/// A running `pushwire serve`; stopped on drop.
#[derive(Debug)]
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
    guard: ChildGuard,
}

/// How to start an origin.
#[derive(Debug, Clone)]
pub struct OriginOptions {
    /// Redis URL, or `None` for the embedded broker.
    pub redis_url: Option<String>,
    /// `PUSHWIRE_APPS`.
    pub apps: String,
    /// Worker processes (`--workers`).
    pub workers: usize,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// `--port`; 0 (the default) picks a free one.
    pub port: u16,
    /// A soft open-file limit to start with (`ulimit -Sn`), as a login shell's
    /// 1,024 would be; `None` inherits the test's.
    pub soft_open_files: Option<u64>,
    /// Log at the origin's own default level (no `RUST_LOG`: info), as in
    /// production, instead of the suite's (`$PUSHWIRE_TEST_LOG`, default debug).
    pub default_log_level: bool,
    /// The `pushwire` binary to run; `None` runs [`pushwire_bin`].
    pub binary: Option<PathBuf>,
    /// Environment variables set for it, over the test's and the suite's
    /// (`SSL_CERT_FILE` to trust a test CA, `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

/// The worker count tests run with: `$PUSHWIRE_TEST_WORKERS`, default 2 (a real cluster).
pub fn test_workers() -> usize {
    std::env::var("PUSHWIRE_TEST_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

impl OriginOptions {
    /// Redis-backed, with [`TEST_APPS`].
    pub fn redis(url: &str) -> Self {
        OriginOptions {
            redis_url: Some(url.to_owned()),
            apps: TEST_APPS.into(),
            workers: test_workers(),
            args: Vec::new(),
            port: 0,
            soft_open_files: None,
            default_log_level: false,
            binary: None,
            env: Vec::new(),
        }
    }

    /// Embedded broker, with [`TEST_APPS`].
    pub fn embedded() -> Self {
        OriginOptions {
            redis_url: None,
            apps: TEST_APPS.into(),
            workers: test_workers(),
            args: Vec::new(),
            port: 0,
            soft_open_files: None,
            default_log_level: false,
            binary: None,
            env: Vec::new(),
        }
    }

    /// The secrets of the apps it hosts (none configured: the development
    /// app, whose credentials are [`TEST_APPS`]'s).
    pub fn secrets(&self) -> Vec<String> {
        let apps = if self.apps.is_empty() {
            TEST_APPS
        } else {
            &self.apps
        };
        pushwire_shared::AppList::parse(apps)
            .map(|apps| apps.iter().map(|app| app.secret.clone()).collect())
            .unwrap_or_default()
    }
}

impl Origin {
    /// Starts `pushwire serve` and waits until `/health` answers. Its log is
    /// checked for its apps' secrets when the test ends ([`Scratch::watch_log`]).
    pub fn start(scratch: &Scratch, name: &str, options: OriginOptions) -> Self {
        let log = scratch.file(&format!("{name}.log"));
        scratch.watch_log(&log, options.secrets());
        let binary = options.binary.clone().unwrap_or_else(pushwire_bin);
        let mut cmd = match options.soft_open_files {
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -Sn {limit} && exec \"$0\" \"$@\""))
                    .arg(binary);
                sh
            }
            None => Command::new(binary),
        };
        cmd.args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            &options.port.to_string(),
            "--workers",
            &options.workers.to_string(),
            // Tests run many origins at once: each takes a free metrics port.
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(&options.args)
        .env("PUSHWIRE_APPS", &options.apps)
        .env(
            "RUST_LOG",
            std::env::var("PUSHWIRE_TEST_LOG")
                .unwrap_or_else(|_| "pushwire_origin=debug,warn".into()),
        )
        .env_remove("PUSHWIRE_LOG_FORMAT")
        .env_remove("PUSHWIRE_REDIS_URL")
        .env_remove("PUSHWIRE_CONFIG")
        .env_remove("PUSHWIRE_WORKERS")
        // Where the machine keeps its CA certificates is no test's business:
        // a test that trusts a CA says so through `env`.
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
        if options.apps.is_empty() {
            cmd.env_remove("PUSHWIRE_APPS");
        }
        if options.default_log_level {
            cmd.env_remove("RUST_LOG");
        }
        if let Some(url) = &options.redis_url {
            cmd.args(["--redis", url]);
        }
        cmd.envs(options.env.iter().map(|(name, value)| (name, value)));
        let mut guard = ChildGuard::spawn(name, cmd, &log, false);
        let addr = wait::until(
            &format!("{name} to log its listening address"),
            READY_TIMEOUT,
            || {
                assert!(
                    guard.is_running(),
                    "{name} exited during start-up; see {}",
                    log.display()
                );
                listening_addr(&std::fs::read_to_string(&log).ok()?)
            },
        );
        let origin = Origin { addr, log, guard };
        wait::until(&format!("{name} /health"), READY_TIMEOUT, || {
            (http::request(origin.addr, "GET", "/health", b"").status == 200).then_some(())
        });
        origin
    }

    /// Where the master serves `/metrics` and `/ready`.
    pub fn metrics_addr(&self) -> SocketAddr {
        wait::until("the metrics address in the log", READY_TIMEOUT, || {
            self.log()
                .lines()
                .filter(|l| l.contains("serving metrics"))
                .find_map(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("addr=")?.parse().ok())
                })
        })
    }

    /// Everything the origin (master and workers) has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).expect("origin log")
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `/health` document.
    pub fn health(&self) -> serde_json::Value {
        http::request(self.addr, "GET", "/health", b"").json()
    }

    /// Waits until every worker's `/health` satisfies `ok` (each `/health` request is a
    /// new connection, which the master hands to the workers in turn).
    pub fn wait_every_worker(
        &self,
        what: &str,
        workers: usize,
        mut ok: impl FnMut(&serde_json::Value) -> bool,
    ) {
        let mut good = std::collections::BTreeSet::new();
        wait::until(&format!("every worker: {what}"), READY_TIMEOUT, || {
            let health = self.health();
            let worker = health["worker"].as_u64().expect("health names its worker");
            if ok(&health) {
                good.insert(worker);
            } else {
                good.remove(&worker);
            }
            (good.len() == workers).then_some(())
        });
    }

    /// The pid of the master process.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Sends a signal (`"TERM"`, `"KILL"`, …) to the master only, not its workers.
    pub fn signal_master(&self, signal: &str) {
        crate::process::signal_pid(self.pid(), signal);
    }

    /// Waits for the master to exit; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.guard.wait_exit(timeout)
    }

    /// Stops the process (SIGTERM) and returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.guard.stop()
    }
}

/// Finds the address on the "listening" log line: `addr=127.0.0.1:PORT` in
/// text, `"addr":"127.0.0.1:PORT"` in JSON.
pub fn listening_addr(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter(|l| l.contains("listening"))
        .find_map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(line) => line["addr"].as_str()?.parse().ok(),
            Err(_) => l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr=")?.parse().ok()),
        })
}
