//! The real `pushwire bridge` process.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::origin::{listening_addr, pushwire_bin};
use crate::process::{ChildGuard, Scratch};
use crate::{http, wait};

/// How long the bridge may take to listen and answer `/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running bridge; stopped on drop.
#[derive(Debug)]
pub struct Bridge {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its bearer token (test-only, generated).
    pub token: String,
    guard: ChildGuard,
}

/// A token for one test run: long, unique, and clearly not a real secret.
pub fn test_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("test-only-token-{}-{nanos}", std::process::id())
}

impl Bridge {
    /// Starts `pushwire bridge --port 0` in front of `redis_url`, with extra `args`.
    pub fn start(scratch: &Scratch, name: &str, redis_url: &str, args: &[&str]) -> Self {
        Self::start_on(scratch, name, redis_url, 0, args)
    }

    /// Same, on a given port (to restart a bridge where clients expect it).
    pub fn start_on(
        scratch: &Scratch,
        name: &str,
        redis_url: &str,
        port: u16,
        args: &[&str],
    ) -> Self {
        let token = test_token();
        Self::start_with_token(scratch, name, redis_url, port, &token, args)
    }

    /// Starts with a given token. Its log is checked for the token when the
    /// test ends ([`Scratch::watch_log`]).
    pub fn start_with_token(
        scratch: &Scratch,
        name: &str,
        redis_url: &str,
        port: u16,
        token: &str,
        args: &[&str],
    ) -> Self {
        let log = scratch.file(&format!("{name}.log"));
        scratch.watch_log(&log, [token.to_owned()]);
        let mut cmd = Command::new(pushwire_bin());
        cmd.args([
            "bridge",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--redis",
            redis_url,
        ])
        .args(args)
        .env("PUSHWIRE_BRIDGE_TOKEN", token)
        .env("RUST_LOG", "pushwire_origin=debug,warn")
        .env_remove("PUSHWIRE_LOG_FORMAT")
        .env_remove("PUSHWIRE_BRIDGE_ALLOW");
        let mut guard = ChildGuard::spawn(name, cmd, &log, false);
        let addr = wait::until(&format!("{name} to log its address"), READY_TIMEOUT, || {
            assert!(
                guard.is_running(),
                "{name} exited during start-up; see {}",
                log.display()
            );
            listening_addr(&std::fs::read_to_string(&log).ok()?)
        });
        wait::until(&format!("{name} /health"), READY_TIMEOUT, || {
            (http::request(addr, "GET", "/health", b"").status == 200).then_some(())
        });
        Bridge {
            addr,
            token: token.to_owned(),
            guard,
        }
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it.
    pub fn stop(&mut self) {
        self.guard.stop();
    }

    /// A request with the bearer token and optional extra header.
    pub fn post(&self, path: &str, body: &str, header: Option<(&str, &str)>) -> http::Response {
        let mut headers = vec![("Authorization".to_owned(), format!("Bearer {}", self.token))];
        if let Some((k, v)) = header {
            headers.push((k.to_owned(), v.to_owned()));
        }
        http::request_with_headers(self.addr, "POST", path, body.as_bytes(), &headers)
    }
}
