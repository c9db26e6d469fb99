//! Child processes that cannot outlive their test, and the scratch directory their logs go to.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A per-test directory for data and logs. On drop after a panic it prints the
/// tail of every `*.log` in it; it is removed unless `PUSHWIRE_KEEP_LOGS` is set.
///
/// It also guards the logs of pushwire's own processes ([`Scratch::watch_log`]):
/// at the end of a test that passed, none may contain a secret the test gave
/// any of them (an app secret, a bridge token), or the test fails.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    watched: Mutex<Watched>,
}

/// The logs checked for secrets when the test ends, and the secrets.
#[derive(Debug, Default)]
struct Watched {
    logs: BTreeSet<PathBuf>,
    secrets: BTreeSet<String>,
}

/// One secret found in a watched log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The log.
    pub log: PathBuf,
    /// Its 1-based line number.
    pub line: usize,
    /// The secret found there.
    pub secret: String,
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} holds the secret {:?}",
            self.log.display(),
            self.line,
            self.secret
        )
    }
}

impl Scratch {
    /// A fresh, empty directory named after the test.
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("pushwire-e2e-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create scratch dir");
        Scratch {
            path,
            watched: Mutex::default(),
        }
    }

    /// Has `log`, a pushwire process's log, checked at the end of the test for
    /// `secrets` and those of every other watched process.
    pub fn watch_log(&self, log: &Path, secrets: impl IntoIterator<Item = String>) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched.logs.insert(log.to_owned());
        watched
            .secrets
            .extend(secrets.into_iter().filter(|s| !s.is_empty()));
    }

    /// Every line of a watched log that holds a watched secret, so far.
    pub fn leaks(&self) -> Vec<Leak> {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let mut leaks = Vec::new();
        for log in &watched.logs {
            let text = fs::read_to_string(log).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                for secret in watched.secrets.iter().filter(|s| line.contains(s.as_str())) {
                    leaks.push(Leak {
                        log: log.clone(),
                        line: n + 1,
                        secret: secret.clone(),
                    });
                }
            }
        }
        leaks
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file path inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The test's processes have stopped (they were declared after the
        // scratch directory, so they were dropped before it): their logs are whole.
        let leaks = if std::thread::panicking() {
            Vec::new()
        } else {
            self.leaks()
        };
        if !leaks.is_empty() {
            let list: Vec<String> = leaks.iter().map(ToString::to_string).collect();
            panic!(
                "a pushwire process logged a secret (logs kept in {}):\n{}",
                self.path.display(),
                list.join("\n")
            );
        }
        if std::thread::panicking() {
            let mut logs: Vec<PathBuf> = fs::read_dir(&self.path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            logs.sort();
            for log in logs {
                let text = fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!(
                    "---- {} (last {} lines) ----\n{}",
                    log.display(),
                    tail.len(),
                    tail.join("\n")
                );
            }
            eprintln!("---- logs kept in {} ----", self.path.display());
            return;
        }
        if std::env::var_os("PUSHWIRE_KEEP_LOGS").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A child process in its own process group. Drop sends SIGTERM to the group,
/// waits up to [`ChildGuard::STOP_GRACE`], then SIGKILLs it.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
}

impl ChildGuard {
    /// How long a stopped child may take to exit before it is killed.
    pub const STOP_GRACE: Duration = Duration::from_secs(5);

    /// Spawns `cmd` in a new process group, stdout and stderr appended to `log`
    /// unless the caller set them already.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path, pipe_stdout: bool) -> Self {
        use std::os::unix::process::CommandExt;
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log file");
        cmd.process_group(0)
            .stdin(if pipe_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(file.try_clone().expect("clone log handle"));
        if pipe_stdout {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(file);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard {
            child: Some(child),
            name: name.to_owned(),
        }
    }

    /// The child's pid (its process group id too).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child present").id()
    }

    /// The running child, e.g. to take its stdin/stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present")
    }

    /// Sends `signal` (e.g. `"TERM"`, `"KILL"`) to the whole group.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            signal_group(child.id(), signal);
        }
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child_mut().try_wait(), Ok(None))
    }

    /// Waits for the child to exit by itself; panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let name = self.name.clone();
        let child = self.child_mut();
        let status = crate::wait::until(&format!("{name} to exit"), timeout, || {
            child.try_wait().ok().flatten()
        });
        self.child = None;
        status
    }

    /// Stops the group (TERM, then KILL after the grace period) and returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        signal_group(child.id(), "TERM");
        let deadline = Instant::now() + Self::STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "{} did not stop within {:?}; killing it",
            self.name,
            Self::STOP_GRACE
        );
        signal_group(child.id(), "KILL");
        child.wait().ok()
    }
}

/// Sends `signal` to the single process `pid`.
pub fn signal_pid(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid` exists (and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Whether process `pid` is stopped by a signal (state `T` in `/proc`): a
/// SIGSTOP is delivered asynchronously, so `kill` returning does not mean it took.
pub fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| rest.starts_with('T'))
        })
        .unwrap_or(false)
}

/// The pids of the live children of `parent`, from `/proc`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(") ")?.1.to_owned();
                    let mut fields = rest.split(' ');
                    let state = fields.next()?;
                    let ppid: u32 = fields.next()?.parse().ok()?;
                    Some(ppid == parent && state != "Z")
                })
                .unwrap_or(false)
        })
        .collect();
    children.sort_unstable();
    children
}

/// Sends `signal` to process group `pgid` (only ever a group this harness created).
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}
