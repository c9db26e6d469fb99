//! `Reporter`: a helper process (a browser driver, a Python client) that tells
//! what it saw as one JSON object per line on stdout, read as it arrives.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{ChildGuard, Scratch};

/// How long a reporter may take to send its next line.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// A running reporter; stopped (its process group) on drop.
#[derive(Debug)]
pub struct Reporter {
    reports: mpsc::Receiver<Value>,
    log: PathBuf,
    _guard: ChildGuard,
}

impl Reporter {
    /// Starts `cmd`, logging its stderr to `{name}.log` in `scratch`.
    pub fn spawn(scratch: &Scratch, name: &str, cmd: Command) -> Self {
        let log = scratch.file(&format!("{name}.log"));
        let mut guard = ChildGuard::spawn(name, cmd, &log, true);
        let stdout = guard.child_mut().stdout.take().expect("piped stdout");
        let (tx, reports) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let report =
                    serde_json::from_str(&line).unwrap_or_else(|_| json!({"unreadable": line}));
                if tx.send(report).is_err() {
                    break;
                }
            }
        });
        Reporter {
            reports,
            log,
            _guard: guard,
        }
    }

    /// The next report; panics (pointing at the log) if none comes in [`REPORT_TIMEOUT`].
    pub fn next(&self, waiting_for: &str) -> Value {
        self.reports
            .recv_timeout(REPORT_TIMEOUT)
            .unwrap_or_else(|_| {
                panic!(
                    "no report while waiting for {waiting_for}; see {}",
                    self.log.display()
                )
            })
    }
}
