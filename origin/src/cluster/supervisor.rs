//! Keeping each worker process running: spawn it, read what it says on its
//! control socket, restart it with back-off when it exits, and record why a
//! worker could not start.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::control_queue::{CONTROL_QUEUE_FRAMES, ControlQueue};
use super::error::ClusterError;
use super::ipc::{self, IpcError, ToMaster, ToWorker};
use super::master::{Link, Master, lock};
use super::sticky::WorkerId;
use crate::backoff::Backoff;

/// How long the supervisor waits, once a worker has exited, for the rest of
/// what it sent on its control socket (its reason, if it could not start).
const LAST_WORDS_WAIT: Duration = Duration::from_secs(1);
/// Pauses before restarting a worker that keeps dying.
const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// A worker that ran this long before dying restarts without accumulated back-off.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Keeps worker `id` running: spawns it, waits for it to exit, restarts it with
/// back-off, until the master stops.
pub(super) async fn supervise(master: Arc<Master>, id: WorkerId) {
    let mut stopping = master.stopping.subscribe();
    let mut attempt = 0u32;
    loop {
        let started = Instant::now();
        let failed_start = match spawn_worker(&master, id) {
            Ok((mut child, stuck, mut control)) => {
                let status = tokio::select! {
                    status = child.wait() => status,
                    _ = stuck.notified() => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                // Its control socket closed with it: the reader has all it sent.
                // A reader still running (another process holds the socket) is
                // stopped, or it would forget the next worker of this id.
                let life = match tokio::time::timeout(LAST_WORDS_WAIT, &mut control).await {
                    Ok(Ok(life)) => life,
                    _ => {
                        control.abort();
                        Life::default()
                    }
                };
                master.forget(id);
                if *stopping.borrow() {
                    tracing::info!(worker = id, "worker stopped");
                    return;
                }
                *lock(&master.restarts).entry(id).or_default() += 1;
                if life.ready {
                    tracing::warn!(worker = id, status = ?status, "worker exited; restarting it");
                    if started.elapsed() >= STABLE_AFTER {
                        attempt = 0;
                    }
                    None
                } else {
                    Some(life.failure.unwrap_or_else(|| match status {
                        Ok(status) => format!("the worker exited before it was ready ({status})"),
                        Err(e) => format!("the worker exited before it was ready ({e})"),
                    }))
                }
            }
            Err(e) => Some(format!("cannot start a worker process: {e}")),
        };
        if let Some(reason) = failed_start {
            master.start_failures.record(id, reason);
            // Connections waiting for a worker are answered with the reason now.
            master.ready.notify_waiters();
        }
        // A stop during the back-off ends it at once: a worker started after the
        // master's shutdown broadcast would never be told to stop.
        tokio::select! {
            _ = stopping.wait_for(|stopping| *stopping) => return,
            _ = tokio::time::sleep(RESTART_BACKOFF.pause(attempt)) => {}
        }
        if *stopping.borrow() {
            return;
        }
        attempt = attempt.saturating_add(1);
    }
}

/// What one worker process said on its control socket, in the end.
#[derive(Debug, Default)]
struct Life {
    /// It became ready.
    ready: bool,
    /// Why it could not start, as it said.
    failure: Option<String>,
}

/// Starts worker `id`: re-executes this binary with its control socket as stdin
/// and its hand-off socket as stdout, and sends it the settings. Returns the
/// child, what signals that it is stuck and must be killed, and the control
/// socket's reader, which ends when the worker's end closes.
fn spawn_worker(
    master: &Arc<Master>,
    id: WorkerId,
) -> Result<(Child, Arc<Notify>, JoinHandle<Life>), ClusterError> {
    let (control_master, control_worker) = std::os::unix::net::UnixStream::pair()?;
    let (handoff_master, handoff_worker) = std::os::unix::net::UnixDatagram::pair()?;
    let program = std::env::current_exe()?;
    let child = Command::new(&program)
        .arg("worker-process")
        .env(super::worker_process::WORKER_ID_ENV, id.to_string())
        .stdin(Stdio::from(OwnedFd::from(control_worker)))
        .stdout(Stdio::from(OwnedFd::from(handoff_worker)))
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ClusterError::Spawn { program, source })?;
    let pid = child.id().unwrap_or_default();
    if master.start_failures.reason().is_some() {
        tracing::debug!(worker = id, pid, "spawned worker (again)");
    } else {
        tracing::info!(worker = id, pid, "spawned worker");
    }

    control_master.set_nonblocking(true)?;
    handoff_master.set_nonblocking(true)?;
    let (reader, mut writer) = tokio::net::UnixStream::from_std(control_master)?.into_split();
    let handoff = Arc::new(UnixDatagram::from_std(handoff_master)?);
    let (control, mut frames, stuck) = ControlQueue::new(CONTROL_QUEUE_FRAMES);
    let _ = control.push(ToWorker::Init(master.settings.clone()).encode());
    lock(&master.links).insert(
        id,
        Link {
            control,
            handoff,
            pid,
        },
    );
    // The stop may have begun between the supervisor's check and the insert above,
    // so after the broadcast: this worker is told itself.
    if *master.stopping.borrow() {
        master.send(id, &ToWorker::Shutdown);
    }
    tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if ipc::write_frame(&mut writer, &frame).await.is_err() {
                break;
            }
        }
    });
    let control = tokio::spawn(read_worker(master.clone(), id, reader));
    Ok((child, stuck, control))
}

/// Handles what worker `id` sends until its end of the control socket closes;
/// then forgets its routes and returns how its life went.
async fn read_worker(
    master: Arc<Master>,
    id: WorkerId,
    mut reader: impl tokio::io::AsyncRead + Unpin,
) -> Life {
    let mut life = Life::default();
    loop {
        match ipc::read_to_master(&mut reader).await {
            Ok(ToMaster::Failed(why)) => life.failure = Some(why),
            Ok(message) => {
                life.ready |= message == ToMaster::Ready;
                handle(&master, id, message);
            }
            Err(IpcError::Closed) => break,
            Err(e) => {
                tracing::warn!(worker = id, error = %e, "bad control frame; dropping the worker's routes");
                break;
            }
        }
    }
    master.forget(id);
    life
}

/// Handles one message from worker `id`.
fn handle(master: &Master, id: WorkerId, message: ToMaster) {
    match message {
        ToMaster::Ready => {
            lock(&master.router).add_ready(id);
            master.start_failures.ready(id);
            master.ready.notify_waiters();
            tracing::info!(worker = id, "worker ready");
        }
        ToMaster::Claim(req, sid) => {
            lock(&master.router).claim(sid, id, Instant::now());
            master.send(id, &ToWorker::Ack(req));
        }
        ToMaster::BrokerRequest(req, request) => {
            let reply = master.broker.handle(id, request, master);
            master.send(id, &ToWorker::BrokerReply(req, reply));
        }
        ToMaster::Metrics(req, text) => {
            if let Some(scrape) = lock(&master.scrapes).remove(&req) {
                let _ = scrape.send(text);
            }
        }
        ToMaster::BrokerState(up) => {
            lock(&master.broker_up).insert(id, up);
        }
        // Kept by the reader until the worker has exited (see `supervise`).
        ToMaster::Failed(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::master::tests::master;
    use crate::cluster::sticky::RouteHint;

    #[tokio::test]
    async fn a_worker_says_why_it_cannot_start_or_that_it_is_ready() {
        let master = Arc::new(master());
        let said = |messages: Vec<ToMaster>| {
            let master = master.clone();
            async move {
                let bytes: Vec<u8> = messages.iter().flat_map(ToMaster::encode).collect();
                read_worker(master, 3, bytes.as_slice()).await
            }
        };
        let life = said(vec![ToMaster::Failed("no broker".into())]).await;
        assert!(!life.ready);
        assert_eq!(life.failure.as_deref(), Some("no broker"));
        let life = said(vec![]).await;
        assert!(!life.ready && life.failure.is_none());
        let life = said(vec![ToMaster::Ready]).await;
        assert!(life.ready && life.failure.is_none());
        // Its routes go with it.
        assert_eq!(
            lock(&master.router).pick(&RouteHint::Fresh, Instant::now()),
            None
        );
    }

    #[test]
    fn restart_backoff_doubles_then_caps() {
        assert_eq!(RESTART_BACKOFF.pause(0), Duration::from_millis(100));
        assert_eq!(RESTART_BACKOFF.pause(2), Duration::from_millis(400));
        assert_eq!(RESTART_BACKOFF.pause(6), Duration::from_secs(5));
        assert_eq!(RESTART_BACKOFF.pause(u32::MAX), Duration::from_secs(5));
    }
}
