//! A real Prometheus server (Debian's `prometheus`) on loopback, scraping one
//! target every second, queried through its HTTP API.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::process::{ChildGuard, Scratch, free_port};
use crate::{http, wait};

/// How long Prometheus may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Prometheus; stopped on drop.
#[derive(Debug)]
pub struct Prometheus {
    addr: SocketAddr,
    _guard: ChildGuard,
}

impl Prometheus {
    /// Starts Prometheus scraping `target`'s `/metrics` every second.
    pub fn start(scratch: &Scratch, target: SocketAddr) -> Self {
        let config = scratch.file("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: pushwire\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                scratch.file("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn");
        let guard = ChildGuard::spawn("prometheus", cmd, &scratch.file("prometheus.log"), false);
        wait::until("prometheus to be ready", START_TIMEOUT, || {
            // Refused until it listens.
            std::net::TcpStream::connect(addr).ok()?;
            (http::request(addr, "GET", "/-/ready", b"").status == 200).then_some(())
        });
        Prometheus {
            addr,
            _guard: guard,
        }
    }

    /// The value of the instant query `expr`: `None` while it has no result
    /// (e.g. before the first scrape), else its single sample's value.
    pub fn scalar(&self, expr: &str) -> Option<f64> {
        let target = format!("/api/v1/query?query={}", encode(expr));
        let response = http::request(self.addr, "GET", &target, b"").json();
        assert_eq!(response["status"], "success", "{expr}: {response}");
        let result = response["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{expr} has several series: {response}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `expr` equals `expected`.
    pub fn wait_for(&self, expr: &str, expected: f64, timeout: Duration) {
        wait::until(&format!("{expr} == {expected}"), timeout, || {
            (self.scalar(expr) == Some(expected)).then_some(())
        });
    }
}

/// Percent-encodes a query parameter value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
