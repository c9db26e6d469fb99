//! `Reporter`: a helper process (the stock-client driver, a browser driver, a
//! Python client) that tells what it saw as one JSON object per line on stdout,
//! read as it arrives.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{ChildStdin, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::{ChildGuard, Scratch};

/// How long [`Reporter::next`] waits for the next line.
pub const NEXT_REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// A running reporter; stopped (its process group) on drop. A line that is not
/// JSON arrives as `{"type": "garbage", "line": …}`.
#[derive(Debug)]
pub struct Reporter {
    reports: mpsc::Receiver<Value>,
    log: PathBuf,
    guard: ChildGuard,
}

impl Reporter {
    /// Starts `cmd` with piped stdin and stdout, logging its stderr to
    /// `{name}.log` in `scratch`.
    pub fn spawn(scratch: &Scratch, name: &str, cmd: Command) -> Self {
        let log = scratch.file(&format!("{name}.log"));
        let mut guard = ChildGuard::spawn(name, cmd, &log, true);
        let stdout = guard.child_mut().stdout.take().expect("piped stdout");
        let (tx, reports) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let report = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"type": "garbage", "line": line}));
                if tx.send(report).is_err() {
                    break;
                }
            }
        });
        Reporter {
            reports,
            log,
            guard,
        }
    }

    /// The process's stdin (once), to send it commands.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.guard.child_mut().stdin.take().expect("piped stdin")
    }

    /// The next report; panics (pointing at the log) if none comes in [`NEXT_REPORT_TIMEOUT`].
    pub fn next(&self, waiting_for: &str) -> Value {
        self.recv_timeout(NEXT_REPORT_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "no report while waiting for {waiting_for}; see {}",
                self.log.display()
            )
        })
    }

    /// The next report within `timeout`, if one comes.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Value> {
        self.reports.recv_timeout(timeout).ok()
    }

    /// A report that has already arrived, if any.
    pub fn try_recv(&self) -> Option<Value> {
        self.reports.try_recv().ok()
    }

    /// Removes and returns the first report of `backlog` matching `pred`,
    /// moving arriving reports into `backlog` for up to `timeout` while none
    /// does. A report `fatal` says is a problem fails the test at once, as
    /// does the timeout (listing what is unconsumed).
    pub fn wait_in(
        &self,
        backlog: &mut Vec<Value>,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
        fatal: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = backlog.iter().position(&pred) {
                return backlog.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_timeout(left) {
                Some(report) => {
                    if fatal(&report) {
                        panic!("the driver reported a problem: {report}");
                    }
                    backlog.push(report);
                }
                None => panic!(
                    "timed out after {timeout:?} waiting for {what}; unconsumed reports: {backlog:#?}"
                ),
            }
        }
    }
}
