//! The master process: listener, router, supervisor, and the embedded broker's
//! server.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream, UnixDatagram};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::control_queue::{CONTROL_QUEUE_FRAMES, ControlQueue};
use super::drain::DRAIN_GRACE;
use super::error::ClusterError;
use super::handoff::send_connection;
use super::ipc::{self, IpcError, RequestId, ToMaster, ToWorker};
use super::start_failure::StartFailures;
use super::status;
use super::sticky::{RouteHint, StickyRouter, WorkerId, route_hint};
use super::unavailable::answer_unavailable;
use crate::backoff::Backoff;
use crate::broker::embedded::{Deliver, EmbeddedBrokerServer};
use crate::config::ServeConfig;
use crate::http_server::{ConnectionLimits, LogThrottle};

/// How long a client may take to send its request line before it is dropped.
const REQUEST_LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes peeked to find the request line.
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// How often one connection's hand-off is tried before it is dropped.
const HANDOFF_ATTEMPTS: u32 = 5;
/// The pause between those tries.
const HANDOFF_RETRY: Duration = Duration::from_millis(10);
/// How long a connection waits for a ready worker (at start-up, or when all
/// died) before the master answers it `503` itself. A failed start ends the
/// wait at once.
const WORKER_WAIT: Duration = Duration::from_secs(10);
/// How long the supervisor waits, once a worker has exited, for the rest of
/// what it sent on its control socket (its reason, if it could not start).
const LAST_WORDS_WAIT: Duration = Duration::from_secs(1);
/// Pauses before restarting a worker that keeps dying.
const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// A worker that ran this long before dying restarts without accumulated back-off.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How often expired sticky sessions are swept.
const SESSION_SWEEP_EVERY: Duration = Duration::from_secs(30);

static NO_REQUEST_LINE: LogThrottle = LogThrottle::new();

/// The master's end of one worker's sockets.
#[derive(Debug)]
pub(super) struct Link {
    control: ControlQueue,
    handoff: Arc<UnixDatagram>,
    /// The worker's process id.
    pub(super) pid: u32,
}

#[derive(Debug)]
pub(super) struct Master {
    settings: String,
    pub(super) router: Mutex<StickyRouter>,
    broker: EmbeddedBrokerServer,
    pub(super) links: Mutex<HashMap<WorkerId, Link>>,
    /// Woken when a worker becomes ready or fails to start.
    ready: Notify,
    pub(super) start_failures: StartFailures,
    /// `true` once the master is stopping: no worker is started or restarted after that.
    pub(super) stopping: watch::Sender<bool>,
    /// Whether each worker's broker connection is up, as it last said.
    pub(super) broker_up: Mutex<HashMap<WorkerId, bool>>,
    /// Restarts so far, by worker.
    pub(super) restarts: Mutex<HashMap<WorkerId, u64>>,
    /// Scrapes waiting for a worker's exposition, by request id.
    pub(super) scrapes: Mutex<HashMap<RequestId, oneshot::Sender<String>>>,
    /// The next id of a request from the master to a worker.
    pub(super) next_request: AtomicU64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few map operations that cannot leave a map
    // half-updated, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Master {
    pub(super) fn send(&self, worker: WorkerId, message: &ToWorker) {
        self.send_frame(&[worker], &message.encode());
    }

    fn broadcast(&self, message: &ToWorker) {
        let workers: Vec<WorkerId> = lock(&self.links).keys().copied().collect();
        self.send_frame(&workers, &message.encode());
    }

    /// Queues `frame` for each of `workers`. A worker whose queue is full has
    /// stopped reading: it gets no more connections or frames, and its queue
    /// has already asked its supervisor to kill it (which then forgets it).
    fn send_frame(&self, workers: &[WorkerId], frame: &[u8]) {
        let mut stuck = Vec::new();
        {
            let mut links = lock(&self.links);
            for &worker in workers {
                if let Some(link) = links.get(&worker)
                    && link.control.push(frame.to_vec()).is_err()
                {
                    links.remove(&worker);
                    stuck.push(worker);
                }
            }
        }
        for worker in stuck {
            tracing::error!(
                worker,
                queued = CONTROL_QUEUE_FRAMES,
                "worker stopped reading its control frames; stopping it (it restarts and its clients recover from history)"
            );
            lock(&self.router).remove_worker(worker);
        }
    }

    fn forget(&self, worker: WorkerId) {
        lock(&self.router).remove_worker(worker);
        lock(&self.links).remove(&worker);
        lock(&self.broker_up).remove(&worker);
        self.broker.remove_worker(worker, self);
    }
}

impl Deliver for Master {
    fn deliver(&self, workers: &[WorkerId], payload: String) {
        // Encoded once for every subscriber.
        let frame = ToWorker::BrokerDelivery(payload).encode();
        self.send_frame(workers, &frame);
    }
}

/// Runs the master until `shutdown` resolves, then drains the workers and returns.
pub(crate) async fn run_master(
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ClusterError> {
    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ClusterError::Bind { addr, source })?;
    let broker = if config.redis_url.is_some() {
        "redis"
    } else {
        "embedded"
    };
    tracing::info!(addr = %listener.local_addr()?, workers = config.workers, broker, "listening");

    let mut public = config.clone();
    public.port = listener.local_addr()?.port();
    let master = Arc::new(Master {
        settings: serde_json::to_string(&public).expect("the config always serialises"),
        router: Mutex::new(StickyRouter::new()),
        broker: EmbeddedBrokerServer::new(config.history),
        links: Mutex::new(HashMap::new()),
        ready: Notify::new(),
        start_failures: StartFailures::default(),
        stopping: watch::Sender::new(false),
        broker_up: Mutex::default(),
        restarts: Mutex::default(),
        scrapes: Mutex::default(),
        next_request: AtomicU64::new(1),
    });
    let metrics_server = match config.metrics_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ClusterError::BindMetrics { addr, source })?;
            tracing::info!(addr = %listener.local_addr()?, "serving metrics and readiness");
            let routes = status::metrics_routes(master.clone());
            Some(tokio::spawn(crate::http_server::serve(
                listener,
                routes,
                ConnectionLimits::default(),
                std::future::pending(),
            )))
        }
        None => None,
    };

    let mut supervisors = JoinSet::new();
    for id in 0..config.workers {
        supervisors.spawn(supervise(master.clone(), id));
    }
    let sweeper = tokio::spawn({
        let master = master.clone();
        async move {
            loop {
                tokio::time::sleep(SESSION_SWEEP_EVERY).await;
                lock(&master.router).expire(Instant::now());
            }
        }
    });

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small realtime frames must not wait for Nagle; the option
                    // travels with the socket to the worker.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(route(master.clone(), stream));
                }
                Err(e) => {
                    // E.g. out of descriptors: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }

    drop(listener);
    sweeper.abort();
    tracing::info!("stopping: no longer accepting; draining workers");
    master.stopping.send_replace(true);
    master.broadcast(&ToWorker::Shutdown);
    let drained = tokio::time::timeout(DRAIN_GRACE, async {
        while supervisors.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("workers did not stop within {DRAIN_GRACE:?}; killing them");
        // Dropping the supervisors drops their `Child`ren, which kills them.
        supervisors.shutdown().await;
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Keeps worker `id` running: spawns it, waits for it to exit, restarts it with
/// back-off, until the master stops.
async fn supervise(master: Arc<Master>, id: WorkerId) {
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

/// Peeks at the connection's request line (leaving it unread for the worker).
async fn peek_route_hint(stream: &TcpStream) -> Option<RouteHint> {
    let mut buf = vec![0u8; MAX_REQUEST_LINE];
    let mut pause = Duration::from_millis(1);
    loop {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None; // closed before saying anything
        }
        if let Some(hint) = route_hint(&buf[..n]) {
            return Some(hint);
        }
        if n == buf.len() {
            return Some(RouteHint::Fresh); // no line end in 8 KiB: the worker will refuse it
        }
        // Part of the line has arrived; peeking again at once would return the same bytes.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Hands one accepted connection to the right worker.
async fn route(master: Arc<Master>, stream: TcpStream) {
    let hint = match tokio::time::timeout(REQUEST_LINE_TIMEOUT, peek_route_hint(&stream)).await {
        Ok(Some(hint)) => hint,
        Ok(None) => {
            tracing::debug!("connection closed or failed before its request line; dropped");
            return;
        }
        Err(_) => {
            // A client that never says what it wants is either broken or
            // holding a connection on purpose: visible, but not a flood.
            if let Some(skipped) = NO_REQUEST_LINE.hit(Instant::now()) {
                tracing::info!(
                    similar_since_last_report = skipped,
                    "dropped a connection that sent no request line within {REQUEST_LINE_TIMEOUT:?}"
                );
            }
            return;
        }
    };
    if hint == RouteHint::Readiness {
        let routes = status::readiness_routes(master.clone());
        crate::http_server::serve_one(stream, routes, ConnectionLimits::default()).await;
        return;
    }
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hand a connection over; dropped");
            return;
        }
    };
    let deadline = tokio::time::Instant::now() + WORKER_WAIT;
    let mut failures = 0;
    loop {
        let notified = master.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let picked = lock(&master.router).pick(&hint, Instant::now());
        let handoff =
            picked.and_then(|w| lock(&master.links).get(&w).map(|l| (w, l.handoff.clone())));
        if let Some((worker, handoff)) = handoff {
            match send_connection(&handoff, &stream).await {
                Ok(()) => {
                    tracing::trace!(worker, ?hint, "routed");
                    return;
                }
                Err(e) if worker_is_gone(&e) => {
                    tracing::warn!(worker, error = %e, "a worker's hand-off socket is closed; routing around it");
                    lock(&master.router).remove_worker(worker);
                    continue;
                }
                Err(e) => {
                    // Transient (e.g. no kernel buffers): the worker stays in
                    // rotation, with its sessions; this connection waits a
                    // moment and tries again.
                    failures += 1;
                    tracing::warn!(worker, error = %e, failures, "handing a connection to a worker failed");
                    if failures >= HANDOFF_ATTEMPTS {
                        let why = "no worker could take the connection";
                        return answer_unavailable(stream, why).await;
                    }
                    tokio::time::sleep(HANDOFF_RETRY).await;
                    continue;
                }
            }
        }
        // No worker to take it: never leave it hanging.
        if let Some(reason) = master.start_failures.reason() {
            return answer_unavailable(stream, &format!("no worker is ready: {reason}")).await;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            tracing::warn!("no worker ready within {WORKER_WAIT:?}; answering 503");
            return answer_unavailable(stream, "no worker is ready").await;
        }
    }
}

/// Whether a hand-off error means the worker's end is closed (it exited),
/// rather than a passing shortage.
fn worker_is_gone(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::BrokenPipe | ErrorKind::NotConnected
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> Master {
        Master {
            settings: String::new(),
            router: Mutex::new(StickyRouter::new()),
            broker: EmbeddedBrokerServer::new(Default::default()),
            links: Mutex::new(HashMap::new()),
            ready: Notify::new(),
            start_failures: StartFailures::default(),
            stopping: watch::Sender::new(false),
            broker_up: Mutex::default(),
            restarts: Mutex::default(),
            scrapes: Mutex::default(),
            next_request: AtomicU64::new(1),
        }
    }

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

    #[tokio::test]
    async fn a_worker_that_stops_reading_is_dropped_and_stopped() {
        let master = master();
        let (handoff, _other_end) = UnixDatagram::pair().unwrap();
        let (control, _frames_never_read, stuck) = ControlQueue::new(3);
        lock(&master.links).insert(
            7,
            Link {
                control,
                handoff: Arc::new(handoff),
                pid: 0,
            },
        );
        lock(&master.router).add_ready(7);
        for n in 0..3 {
            master.deliver(&[7], format!("event {n}"));
            assert!(lock(&master.links).contains_key(&7));
        }
        master.deliver(&[7], "one too many".to_owned());
        assert!(!lock(&master.links).contains_key(&7));
        assert_eq!(
            lock(&master.router).pick(&RouteHint::Fresh, Instant::now()),
            None
        );
        tokio::time::timeout(Duration::from_secs(5), stuck.notified())
            .await
            .expect("the supervisor is told to stop it");
    }

    #[tokio::test]
    async fn a_closed_worker_socket_reads_as_gone() {
        let (master_end, worker_end) = UnixDatagram::pair().unwrap();
        drop(worker_end);
        let stream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(stream.local_addr().unwrap()).unwrap();
        let error = send_connection(&master_end, &client).await.unwrap_err();
        assert!(worker_is_gone(&error), "{error:?}");
        assert!(!worker_is_gone(&std::io::Error::from_raw_os_error(105))); // ENOBUFS
    }

    #[test]
    fn restart_backoff_doubles_then_caps() {
        assert_eq!(RESTART_BACKOFF.pause(0), Duration::from_millis(100));
        assert_eq!(RESTART_BACKOFF.pause(2), Duration::from_millis(400));
        assert_eq!(RESTART_BACKOFF.pause(6), Duration::from_secs(5));
        assert_eq!(RESTART_BACKOFF.pause(u32::MAX), Duration::from_secs(5));
    }
}
