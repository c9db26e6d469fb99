//! One bench connection over its whole life: connect and subscribe, read
//! deliveries into its [`ConnectionLog`], and, when churn picks it, close,
//! reconnect and subscribe again with `since` so nothing sent meanwhile is missed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::Run;
use super::churn::{Churn, Slot, State};
use super::client::{self, ClientError, Event, Handshake, Protocol, ReadEnd, Socket};
use super::deliveries::ConnectionLog;
use super::pusher;

/// Attempts per churn reconnect before the connection is given up.
const RECONNECT_ATTEMPTS: u32 = 5;
/// Pause between two attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// How long a churn close may wait for the close frame to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where and as whom to connect.
#[derive(Debug, Clone, Copy)]
pub(super) struct Endpoint<'a> {
    /// Local address to connect from (kept across reconnects).
    pub(super) source: IpAddr,
    /// The server.
    pub(super) target: SocketAddr,
    /// The app key for the handshake.
    pub(super) app_key: &'a str,
    /// How to open the session.
    pub(super) handshake: Handshake,
}

/// A channel the connection is on and the last position it received there.
#[derive(Debug)]
struct Subscription {
    channel: String,
    /// Reused buffer: no allocation once it holds the longest `pos` seen.
    pos: String,
    has_pos: bool,
}

/// What the deliveries update: the log, the positions, and whether every channel has one.
#[derive(Debug)]
struct Tracker<'a> {
    log: ConnectionLog<'a>,
    subscriptions: Vec<Subscription>,
    positioned: bool,
    run: Run,
}

impl Tracker<'_> {
    /// Records one event; whether it was the first delivery of its trigger here.
    fn on_event(&mut self, event: Event<'_>) -> bool {
        let first = self.log.record(event.delivery, self.run.micros());
        if let Some(pos) = event.pos {
            let channel = event.channel.as_deref();
            let subscription = match self.subscriptions.as_mut_slice() {
                // One channel per bench connection: no need to compare names.
                [only] => Some(only),
                many => many
                    .iter_mut()
                    .find(|s| Some(s.channel.as_str()) == channel),
            };
            if let Some(s) = subscription {
                s.pos.clear();
                s.pos.push_str(&pos);
                if !s.has_pos {
                    s.has_pos = true;
                    self.positioned = self.subscriptions.iter().all(|s| s.has_pos);
                }
            }
        }
        first
    }

    /// Subscribe frames for every channel, with `since` where a position is known.
    fn subscribe_frames(&self) -> Vec<String> {
        self.subscriptions
            .iter()
            .zip(1..)
            .map(|(s, ack)| {
                client::subscribe_frame(ack, &s.channel, s.has_pos.then_some(s.pos.as_str()))
            })
            .collect()
    }
}

/// An open bench connection.
#[derive(Debug)]
pub(super) struct Connection<'a> {
    endpoint: Endpoint<'a>,
    ws: Socket,
    tracker: Tracker<'a>,
}

impl<'a> Connection<'a> {
    /// Connects and subscribes to `channels`, recording deliveries into `log`.
    pub(super) async fn open(
        endpoint: Endpoint<'a>,
        channels: Vec<String>,
        log: ConnectionLog<'a>,
        run: Run,
    ) -> Result<Self, ClientError> {
        let tracker = Tracker {
            log,
            subscriptions: channels
                .into_iter()
                .map(|channel| Subscription {
                    channel,
                    pos: String::new(),
                    has_pos: false,
                })
                .collect(),
            positioned: false,
            run,
        };
        if endpoint.handshake.protocol == Protocol::Pusher {
            let (mut ws, _socket_id) = pusher::connect(
                endpoint.source,
                endpoint.target,
                endpoint.app_key,
                endpoint.handshake,
            )
            .await?;
            let mut tracker = tracker;
            let channels: Vec<String> = tracker
                .subscriptions
                .iter()
                .map(|s| s.channel.clone())
                .collect();
            let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
            pusher::subscribe(&mut ws, &channels, |event| {
                tracker.on_event(event);
            })
            .await?;
            return Ok(Connection {
                endpoint,
                ws,
                tracker,
            });
        }
        let ws = client::connect(
            endpoint.source,
            endpoint.target,
            endpoint.app_key,
            endpoint.handshake,
        )
        .await?;
        let mut connection = Connection {
            endpoint,
            ws,
            tracker,
        };
        let frames = connection.tracker.subscribe_frames();
        let tracker = &mut connection.tracker;
        client::subscribe(&mut connection.ws, &frames, |event| {
            tracker.on_event(event);
        })
        .await?;
        Ok(connection)
    }

    /// Reads deliveries until the connection closes, churning whenever `slot` is picked.
    pub(super) async fn run(mut self, slot: Option<&Slot>, churn: &Churn) {
        loop {
            if let Some(slot) = slot {
                // Only this task moves the state out of Busy or Churning.
                slot.set(if self.tracker.positioned {
                    State::Ready
                } else {
                    State::Busy
                });
            }
            let picked = async {
                match slot {
                    Some(slot) => slot.picked().await,
                    None => std::future::pending::<()>().await,
                }
            };
            let tracker = &mut self.tracker;
            let on_event = |event: Event<'_>| {
                let was = tracker.positioned;
                tracker.on_event(event);
                if let (false, true, Some(slot)) = (was, tracker.positioned, slot) {
                    slot.set(State::Ready);
                }
            };
            let end = match self.endpoint.handshake.protocol {
                Protocol::Socketio => client::read_events(&mut self.ws, picked, on_event).await,
                Protocol::Pusher => pusher::read_events(&mut self.ws, picked, on_event).await,
            };
            match end {
                ReadEnd::Stopped if self.churn(churn).await => {}
                ReadEnd::Stopped => {
                    if let Some(slot) = slot {
                        slot.gone();
                    }
                    return;
                }
                ReadEnd::Closed => {
                    if slot.is_some_and(Slot::gone) {
                        // Picked just as the server closed it: it will not come back.
                        churn.failed("closed by the server".into());
                    }
                    return;
                }
            }
        }
    }

    /// Closes the socket, reconnects from the same source address and
    /// subscribes again with `since`; false when every attempt failed.
    async fn churn(&mut self, churn: &Churn) -> bool {
        let started = Instant::now();
        churn.started();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close(None)).await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.reconnect(churn, started).await {
                Ok(()) => {
                    churn.finished();
                    return true;
                }
                Err(e) if attempt >= RECONNECT_ATTEMPTS => {
                    churn.failed(format!("{e} (after {attempt} attempts)"));
                    return false;
                }
                Err(_) => tokio::time::sleep(RECONNECT_PAUSE).await,
            }
        }
    }

    async fn reconnect(&mut self, churn: &Churn, started: Instant) -> Result<(), ClientError> {
        let endpoint = self.endpoint;
        self.ws = client::connect(
            endpoint.source,
            endpoint.target,
            endpoint.app_key,
            endpoint.handshake,
        )
        .await?;
        let frames = self.tracker.subscribe_frames();
        let tracker = &mut self.tracker;
        let mut replayed = 0;
        let acks = client::subscribe(&mut self.ws, &frames, |event| {
            if tracker.on_event(event) {
                replayed += 1;
            }
        })
        .await;
        churn.replayed(replayed);
        for ack in acks? {
            churn.acked(ack.recovered, ack.at.duration_since(started));
        }
        Ok(())
    }
}
