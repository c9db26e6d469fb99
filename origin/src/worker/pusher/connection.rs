//! One Pusher-protocol connection, from `pusher:connection_established` to
//! its close: the client's messages, the frames queued for it by delivery,
//! and the activity timeout.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pushwire_shared::App;
use pushwire_shared::client_protocol::{self, AckCode};
use pushwire_shared::keys::KeySpace;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::frames::{self, ErrorCode, Incoming};
use super::rooms::{PusherRooms, Subscriber};
use super::signin::signin;
use super::subscribe::subscribe;
use crate::worker::session::SocketSession;
use crate::worker::subscription::forget;
use crate::worker::{WorkerContext, client_events};

/// How many frames may wait for a connection before it counts as a slow consumer.
const SEND_QUEUE: usize = 1024;

/// The most queued frames written with one flush.
const WRITE_BATCH: usize = 64;

/// How long a pinged client has to answer before the connection is closed.
const PONG_TIMEOUT: Duration = Duration::from_secs(30);

/// Closes `ws` with a `pusher:error` and the same code as the close code,
/// which is what tells the SDKs whether to reconnect.
pub(crate) async fn refuse<S>(mut ws: WebSocketStream<S>, code: ErrorCode, text: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = ws
        .send(Message::text(frames::error(Some(code), text)))
        .await;
    let _ = ws.close(Some(close_frame(code, text))).await;
}

/// A close frame's reason may hold at most 123 bytes (a control frame's
/// payload is 125, two of which are the code); the full text went in the
/// `pusher:error` before it.
const MAX_CLOSE_REASON: usize = 123;

fn close_frame(code: ErrorCode, text: &str) -> CloseFrame {
    let mut end = text.len().min(MAX_CLOSE_REASON);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame {
        code: (code as u16).into(),
        reason: Utf8Bytes::from(text[..end].to_owned()),
    }
}

/// What ended a connection's loop.
enum End {
    /// The client closed or the transport failed.
    Gone,
    /// Close with this code and reason.
    Close(ErrorCode, String),
    /// The client sent a message over the cap: closed with WebSocket's 1009.
    TooBig,
}

/// Serves one accepted connection of `app` until it ends, then undoes its subscriptions.
pub(crate) async fn run<S>(
    mut ws: WebSocketStream<S>,
    app: App,
    ctx: Arc<WorkerContext>,
    rooms: Arc<PusherRooms>,
    activity_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let session = Arc::new(SocketSession::new(app, ctx.socket_ids.next()));
    let (queue, mut queued) = mpsc::channel(SEND_QUEUE);
    let subscriber = Subscriber {
        queue,
        evicted: Arc::new(Notify::new()),
        close: Arc::default(),
    };
    tracing::debug!(socket_id = %session.socket_id, app = %session.app.id, "pusher connection");
    let gauge = crate::metrics::worker()
        .connections
        .get_or_create(&crate::metrics::TransportLabels {
            transport: "pusher",
        })
        .clone();
    gauge.inc();
    let hello = frames::connection_established(&session.socket_id, activity_timeout.as_secs());
    let mut end = End::Gone;
    if ws.send(Message::text(hello)).await.is_ok() {
        let mut deadline = Instant::now() + activity_timeout;
        let mut pinged = false;
        end = loop {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        // Any message is activity (Pusher's rule), not only pongs.
                        deadline = Instant::now() + activity_timeout;
                        pinged = false;
                        let replies =
                            handle(&text, &ctx, &session, &rooms, &subscriber, &mut queued).await;
                        if send_all(&mut ws, replies).await.is_err() {
                            break End::Gone;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let reply = frames::error(None, "binary frames are not part of the protocol");
                        if ws.send(Message::text(reply)).await.is_err() {
                            break End::Gone;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break End::Gone,
                    // Pings are answered by the WebSocket layer; pongs are activity.
                    Some(Ok(_)) => deadline = Instant::now() + activity_timeout,
                    Some(Err(WsError::Capacity(e))) => {
                        tracing::debug!(socket_id = %session.socket_id, error = %e, "pusher message too large");
                        break End::TooBig;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(socket_id = %session.socket_id, error = %e, "pusher connection failed");
                        break End::Gone;
                    }
                },
                Some(frame) = queued.recv() => {
                    if send_queued(&mut ws, frame, &mut queued).await.is_err() {
                        break End::Gone;
                    }
                }
                _ = closing.changed() => {
                    break End::Close(ErrorCode::Reconnect, "the server is closing; reconnect".into());
                }
                () = subscriber.evicted.notified() => {
                    break End::Close(ErrorCode::Reconnect, "fell behind; reconnect".into());
                }
                (code, text) = subscriber.close.given() => break End::Close(code, text),
                () = tokio::time::sleep_until(deadline) => {
                    if pinged {
                        break End::Close(ErrorCode::PongTimeout, "no pong within the timeout".into());
                    }
                    pinged = true;
                    deadline = Instant::now() + PONG_TIMEOUT;
                    if ws.send(Message::text(frames::message(frames::PING, None, "{}"))).await.is_err() {
                        break End::Gone;
                    }
                }
            }
        };
    }
    match end {
        End::Close(code, text) => {
            let _ = ws
                .send(Message::text(frames::error(Some(code), &text)))
                .await;
            let _ = ws.close(Some(close_frame(code, &text))).await;
        }
        End::TooBig => {
            let text = "message too large";
            let _ = ws.send(Message::text(frames::error(None, text))).await;
            let frame = CloseFrame {
                code: CloseCode::Size,
                reason: Utf8Bytes::from_static(text),
            };
            let _ = ws.close(Some(frame)).await;
        }
        End::Gone => {}
    }
    let channels = std::mem::take(&mut *session.channels.lock().await);
    let app = session.app.id.clone();
    for channel in channels {
        rooms.leave(
            &KeySpace::DEFAULT.channel(&app, &channel),
            &session.socket_id,
        );
        forget(&ctx, &session, &channel).await;
    }
    gauge.dec();
    tracing::debug!(socket_id = %session.socket_id, "pusher connection closed");
}

/// Writes `first` and the frames queued behind it, up to [`WRITE_BATCH`],
/// with one flush: under a burst several frames leave in one write, instead
/// of one system call each.
async fn send_queued<S>(
    ws: &mut WebSocketStream<S>,
    first: Utf8Bytes,
    queued: &mut mpsc::Receiver<Utf8Bytes>,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.feed(Message::Text(first)).await?;
    for _ in 1..WRITE_BATCH {
        let Ok(frame) = queued.try_recv() else {
            break;
        };
        ws.feed(Message::Text(frame)).await?;
    }
    ws.flush().await
}

/// Sends `frames` in order.
async fn send_all<S>(ws: &mut WebSocketStream<S>, frames: Vec<Utf8Bytes>) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for frame in frames {
        ws.send(Message::Text(frame)).await?;
    }
    Ok(())
}

/// Handles one text message; returns the frames to send, in order: its
/// reply, if it has one, and after a subscribe's reply what follows it (a
/// recovery's replay or a cache channel's last event, then the live frames
/// queued meanwhile; `queued` is the connection's queue).
async fn handle(
    text: &str,
    ctx: &WorkerContext,
    session: &SocketSession,
    rooms: &PusherRooms,
    subscriber: &Subscriber,
    queued: &mut mpsc::Receiver<Utf8Bytes>,
) -> Vec<Utf8Bytes> {
    let incoming = match frames::parse(text) {
        Ok(incoming) => incoming,
        Err(e) => return vec![frames::error(None, &e.to_string()).into()],
    };
    if incoming.event == frames::SUBSCRIBE {
        return subscribe(&incoming.data, ctx, session, rooms, subscriber, queued).await;
    }
    if incoming.event == frames::SIGNIN {
        return signin(&incoming.data, ctx, session, rooms, subscriber).await;
    }
    reply(incoming, ctx, session, rooms)
        .await
        .map(Utf8Bytes::from)
        .into_iter()
        .collect()
}

/// Handles one message other than a subscribe; returns the reply, if it has one.
async fn reply(
    incoming: Incoming,
    ctx: &WorkerContext,
    session: &SocketSession,
    rooms: &PusherRooms,
) -> Option<String> {
    let Incoming {
        event,
        channel,
        data,
    } = incoming;
    match event.as_str() {
        frames::PING => Some(frames::message(frames::PONG, None, "{}")),
        frames::PONG => None,
        frames::UNSUBSCRIBE => match client_protocol::parse_unsubscribe(Some(&data)) {
            Ok(channel) => {
                let mut channels = session.channels.lock().await;
                if channels.remove(&channel) {
                    let room = KeySpace::DEFAULT.channel(&session.app.id, &channel);
                    rooms.leave(&room, &session.socket_id);
                    forget(ctx, session, &channel).await;
                }
                None
            }
            Err(e) => Some(frames::error(None, &e.message)),
        },
        name if name.starts_with(client_protocol::CLIENT_EVENT_PREFIX) => {
            let payload = json!({ "channel": channel, "data": data });
            client_events::relay(name, Some(&payload), ctx, session)
                .await
                .err()
                .map(|e| {
                    // Pusher's 4301 says "rate limited" without closing; other
                    // refusals have no Pusher code.
                    let code = (e.code == AckCode::ClientEventRateLimited)
                        .then_some(ErrorCode::ClientEventRateLimited);
                    frames::error(code, &e.message)
                })
        }
        other => Some(frames::error(
            None,
            &format!(
                "unknown event {other:?}: use pusher:subscribe, pusher:unsubscribe, pusher:signin, pusher:ping or client-*"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        let long = format!("unknown app key {:?}", "é".repeat(200));
        let frame = close_frame(ErrorCode::UnknownApp, &long);
        assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        assert!(long.starts_with(frame.reason.as_str()));
        assert_eq!(u16::from(frame.code), 4001);
    }
}
