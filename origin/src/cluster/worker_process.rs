//! The worker process's start-up: `pushwire worker-process`, spawned by the master.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::control::ControlClient;
use super::drain::WORKER_DRAIN;
use super::error::ClusterError;
use super::handoff::HandoffListener;
use super::ipc::{self, IpcError, ToMaster, ToWorker};
use crate::broker::redis_webhooks::WebhookSettings;
use crate::broker::{Broker, EmbeddedBroker, Inbound, InboundSender, RedisBroker};
use crate::config::ServeConfig;
use crate::telemetry::Process;
use crate::worker::{self, INBOUND_QUEUE};

/// The environment variable carrying the worker's id.
pub(crate) const WORKER_ID_ENV: &str = "PUSHWIRE_WORKER_ID";
/// How long a worker that cannot start waits for the master to take its reason.
const REPORT_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs a worker: reads its settings from the master, starts logging in the
/// format they name, serves the connections the master hands over, and returns
/// when told to stop or when the master is gone. A worker that cannot start
/// tells the master why before it exits.
pub(crate) async fn run_worker_process() -> Result<(), ClusterError> {
    let id: usize = std::env::var(WORKER_ID_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The master set stdin up as the control socket and stdout as the hand-off socket.
    let (mut reader, mut writer) = inherited_stream(std::io::stdin().as_fd())?.into_split();
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let socket_ids = worker::SocketIdGenerator::random();
    let started = match start(id, &mut reader, socket_ids.node(), &inbound_tx).await {
        Ok(started) => started,
        Err(e) => {
            // Nothing else has been written to the control socket yet, so this
            // frame is whole. The master logs the reason once and answers 503
            // with it while no worker is ready, however often it retries.
            let reason = e.to_string();
            let frame = ToMaster::Failed(reason.clone()).encode();
            let report = ipc::write_frame(&mut writer, &frame);
            return match tokio::time::timeout(REPORT_TIMEOUT, report).await {
                Ok(Ok(())) => Err(ClusterError::StartFailed(reason)),
                _ => Err(e),
            };
        }
    };
    let span = tracing::info_span!("worker", id, pid = std::process::id());
    let channels = Channels {
        reader,
        writer,
        inbound_tx,
        inbound_rx,
    };
    run(id, socket_ids, started, channels)
        .instrument(span)
        .await
}

fn inherited_stream(
    fd: std::os::fd::BorrowedFd<'_>,
) -> Result<tokio::net::UnixStream, ClusterError> {
    let stream = std::os::unix::net::UnixStream::from(fd.try_clone_to_owned()?);
    stream.set_nonblocking(true)?;
    Ok(tokio::net::UnixStream::from_std(stream)?)
}

fn inherited_datagram(
    fd: std::os::fd::BorrowedFd<'_>,
) -> Result<tokio::net::UnixDatagram, ClusterError> {
    let socket = std::os::unix::net::UnixDatagram::from(fd.try_clone_to_owned()?);
    socket.set_nonblocking(true)?;
    Ok(tokio::net::UnixDatagram::from_std(socket)?)
}

/// What a worker needs before it can serve, as [`start`] gathers it.
struct Started {
    handoff: tokio::net::UnixDatagram,
    config: ServeConfig,
    /// The Redis broker, when the settings name one.
    redis: Option<RedisBroker>,
}

/// The worker's ends of the control socket and of its inbound queue.
struct Channels {
    reader: tokio::net::unix::OwnedReadHalf,
    writer: tokio::net::unix::OwnedWriteHalf,
    inbound_tx: InboundSender,
    inbound_rx: mpsc::Receiver<Inbound>,
}

/// Everything in a worker's start that can fail once the control socket is
/// open: reading its settings (then logging starts, in their format) and
/// starting its broker. The master checked the settings before it listened, so
/// a failure here is this process's environment; the master is told why.
async fn start(
    id: usize,
    reader: &mut tokio::net::unix::OwnedReadHalf,
    node: u64,
    inbound: &InboundSender,
) -> Result<Started, ClusterError> {
    let handoff = inherited_datagram(std::io::stdout().as_fd())?;
    let config: ServeConfig = match ipc::read_to_worker(reader).await? {
        ToWorker::Init(json) => {
            serde_json::from_str(&json).map_err(|e| ClusterError::Settings(e.to_string()))?
        }
        other => {
            return Err(ClusterError::Settings(format!(
                "expected Init first, got {}",
                other.kind()
            )));
        }
    };
    crate::telemetry::init(config.log_format, Process::Worker(id));
    crate::metrics::init_worker(id);
    let redis = match &config.redis_url {
        Some(url) => Some(RedisBroker::start(
            url,
            node.to_string(),
            config.history,
            inbound.clone(),
            Some(WebhookSettings {
                webhooks: config.webhooks.clone(),
                apps: config.apps.clone(),
                grace: Duration::from_millis(config.webhook_grace_ms),
                dispatch: config.webhook_dispatch(),
            }),
        )?),
        None => None,
    };
    Ok(Started {
        handoff,
        config,
        redis,
    })
}

async fn run(
    id: usize,
    socket_ids: worker::SocketIdGenerator,
    started: Started,
    channels: Channels,
) -> Result<(), ClusterError> {
    let Started {
        handoff,
        config,
        redis,
    } = started;
    let Channels {
        reader,
        writer,
        inbound_tx,
        inbound_rx,
    } = channels;
    let control = Arc::new(ControlClient::spawn(writer));
    let broker: Arc<dyn Broker> = match redis {
        Some(redis) => Arc::new(redis),
        None => Arc::new(EmbeddedBroker::new(control.clone(), inbound_tx.clone())),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(read_control(reader, control.clone(), inbound_tx, stop_tx));
    ignore_terminal_signals();

    let public_addr = SocketAddr::new(config.host, config.port);
    let listener = HandoffListener::new(handoff, public_addr);
    control.send(&ToMaster::Ready)?;
    tokio::spawn(report_broker_state(broker.clone(), control.clone()));
    let mut stopped = stop_rx.clone();
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let identity = worker::WorkerIdentity { id, socket_ids };
    let serving = worker::serve(
        listener, &config, identity, broker, inbound_rx, control, shutdown,
    );
    let mut stopped = stop_rx;
    let drain_deadline = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
        tokio::time::sleep(WORKER_DRAIN).await;
    };
    tokio::select! {
        result = serving => result?,
        _ = drain_deadline => tracing::warn!("drain took longer than {WORKER_DRAIN:?}; exiting"),
    }
    tracing::info!("worker exiting");
    Ok(())
}

/// How often the broker connection's state is checked for the master.
const BROKER_STATE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Tells the master whether the broker is reachable, now and on every change
/// (the origin's readiness depends on it).
async fn report_broker_state(broker: Arc<dyn Broker>, control: Arc<ControlClient>) {
    let mut told = None;
    loop {
        let up = broker.health().connected;
        if told != Some(up) {
            if control.send(&ToMaster::BrokerState(up)).is_err() {
                return;
            }
            told = Some(up);
        }
        tokio::time::sleep(BROKER_STATE_EVERY).await;
    }
}

/// Reads master → worker frames until the master says stop or goes away.
async fn read_control(
    mut reader: tokio::net::unix::OwnedReadHalf,
    control: Arc<ControlClient>,
    inbound: InboundSender,
    stop: watch::Sender<bool>,
) {
    loop {
        match ipc::read_to_worker(&mut reader).await {
            Ok(answer @ (ToWorker::Ack(id) | ToWorker::BrokerReply(id, _))) => {
                control.complete(id, answer)
            }
            Ok(ToWorker::BrokerDelivery(payload)) => {
                if inbound
                    .send(Inbound::Payload(payload.into_bytes()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Ok(ToWorker::Shutdown) => {
                tracing::info!("master asked to stop: draining");
                let _ = stop.send(true);
            }
            Ok(ToWorker::MetricsRequest(id)) => {
                let _ = control.send(&ToMaster::Metrics(id, crate::metrics::scrape_worker()));
            }
            Ok(ToWorker::Init(_)) => tracing::warn!("ignoring a second Init"),
            Err(e) => {
                if !matches!(e, IpcError::Closed) {
                    tracing::error!(error = %e, "control socket failed");
                }
                tracing::info!("the master is gone: stopping");
                control.close();
                let _ = stop.send(true);
                break;
            }
        }
    }
}

/// The master orchestrates shutdown; a Ctrl-C reaching the whole process group
/// must not make workers quit on their own ahead of it.
fn ignore_terminal_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
        if let Ok(mut stream) = signal(kind) {
            tokio::spawn(async move { while stream.recv().await.is_some() {} });
        }
    }
}
