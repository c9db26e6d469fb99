//! The Pusher Channels protocol 7 side of the bench client (`--protocol pusher`):
//! the same sockets, timeouts and [`Event`]s as the Socket.IO client in
//! [`super::client`], over `ws://host:port/app/<key>?protocol=7`.
//!
//! Public channels only: a subscribe is `{"event":"pusher:subscribe","data":{"channel"}}`
//! and waits for `pusher_internal:subscription_succeeded`. Events are
//! `{"event","channel","data"}` with `data` a JSON string holding the trigger's
//! `{"s":…,"t":…}`. There is no `since` on this protocol, so no churn either.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::client::{
    ClientError, Delivery, Event, HANDSHAKE_TIMEOUT, Handshake, ReadEnd, Socket, io,
    next_websocket_text, read_frames, tcp_connect, websocket_handshake,
};

/// The client's answer to a `pusher:ping`.
const PONG: &str = r#"{"event":"pusher:pong","data":"{}"}"#;

/// The fields of a server frame the bench reads (borrowed where no escapes).
#[derive(Debug, serde::Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
}

/// What one server frame means to the bench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// `pusher:connection_established`, with its socket id.
    Established(String),
    /// `pusher_internal:subscription_succeeded` for this channel.
    Subscribed(Cow<'a, str>),
    /// `pusher:subscription_error` or `pusher:error`, with its data.
    Error(String),
    /// `pusher:ping`: answer with `pusher:pong`.
    Ping,
    /// A bench event.
    Event(Event<'a>),
    /// Anything else (another event, `pusher:pong`, unparsable).
    Other,
}

/// Reads one server frame.
///
/// ```
/// use pushwire_bench::client::Delivery;
/// use pushwire_bench::pusher::{Incoming, parse};
/// let frame = r#"{"event":"bench","channel":"c","data":"{\"s\":7,\"t\":1234,\"p\":\"xx\"}","id":"i"}"#;
/// let Incoming::Event(event) = parse(frame) else { panic!() };
/// assert_eq!(event.delivery, Delivery { seq: 7, sent_us: 1234 });
/// assert_eq!(event.channel.as_deref(), Some("c"));
/// assert_eq!(parse(r#"{"event":"pusher:ping","data":"{}"}"#), Incoming::Ping);
/// ```
pub fn parse(frame: &str) -> Incoming<'_> {
    let Ok(frame) = serde_json::from_str::<Frame<'_>>(frame) else {
        return Incoming::Other;
    };
    match frame.event.as_ref() {
        "pusher:connection_established" => {
            #[derive(serde::Deserialize)]
            struct Established {
                socket_id: String,
            }
            frame
                .data
                .and_then(|d| serde_json::from_str::<Established>(&d).ok())
                .map_or(Incoming::Other, |e| Incoming::Established(e.socket_id))
        }
        "pusher_internal:subscription_succeeded" => {
            frame.channel.map_or(Incoming::Other, Incoming::Subscribed)
        }
        "pusher:subscription_error" | "pusher:error" => {
            Incoming::Error(frame.data.unwrap_or_default().into_owned())
        }
        "pusher:ping" => Incoming::Ping,
        "bench" => {
            #[derive(serde::Deserialize)]
            struct Payload {
                s: u64,
                t: u64,
            }
            let Some(payload) = frame
                .data
                .and_then(|d| serde_json::from_str::<Payload>(&d).ok())
            else {
                return Incoming::Other;
            };
            Incoming::Event(Event {
                delivery: Delivery {
                    seq: payload.s,
                    sent_us: payload.t,
                },
                channel: frame.channel,
                pos: None,
            })
        }
        _ => Incoming::Other,
    }
}

/// The subscribe frame for a public `channel`.
///
/// ```
/// assert_eq!(
///     pushwire_bench::pusher::subscribe_frame("c"),
///     r#"{"data":{"channel":"c"},"event":"pusher:subscribe"}"#
/// );
/// ```
pub fn subscribe_frame(channel: &str) -> String {
    serde_json::json!({ "event": "pusher:subscribe", "data": { "channel": channel } }).to_string()
}

/// Opens a protocol 7 connection from `source` to `target` for `app_key` and
/// waits for `pusher:connection_established`; returns the socket and its id.
pub async fn connect(
    source: IpAddr,
    target: SocketAddr,
    app_key: &str,
    handshake: Handshake,
) -> Result<(Socket, String), ClientError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let stream = tcp_connect(source, target).await?;
        let url = format!("ws://{target}/app/{app_key}?protocol=7&client=pushwire-bench&version=1");
        let mut ws = websocket_handshake(url, stream, handshake).await?;
        loop {
            let text = next_websocket_text(&mut ws).await?;
            match parse(text.as_str()) {
                Incoming::Established(socket_id) => return Ok((ws, socket_id)),
                Incoming::Error(e) => return Err(ClientError::Refused(e)),
                Incoming::Ping => ws.send(Message::text(PONG)).await.map_err(io)?,
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| ClientError::Timeout)?
}

/// Subscribes to `channels` and waits until each one succeeded, passing events
/// that arrive meanwhile to `on_event`.
pub async fn subscribe(
    ws: &mut Socket,
    channels: &[&str],
    mut on_event: impl FnMut(Event<'_>),
) -> Result<(), ClientError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        for channel in channels {
            ws.send(Message::text(subscribe_frame(channel)))
                .await
                .map_err(io)?;
        }
        let mut pending: Vec<&str> = channels.to_vec();
        while !pending.is_empty() {
            let text = next_websocket_text(ws).await?;
            match parse(text.as_str()) {
                Incoming::Subscribed(channel) => pending.retain(|c| *c != channel),
                Incoming::Error(e) => return Err(ClientError::Refused(e)),
                Incoming::Ping => ws.send(Message::text(PONG)).await.map_err(io)?,
                Incoming::Event(event) => on_event(event),
                Incoming::Established(_) | Incoming::Other => {}
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| ClientError::Timeout)?
}

/// Reads the socket until it closes or `stop` resolves, answering pings and
/// passing each bench event to `on_event`.
pub async fn read_events(
    ws: &mut Socket,
    stop: impl Future<Output = ()>,
    mut on_event: impl FnMut(Event<'_>),
) -> ReadEnd {
    read_frames(ws, stop, |text| match parse(text) {
        Incoming::Event(event) => {
            on_event(event);
            None
        }
        Incoming::Ping => Some(PONG),
        _ => None,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_handshake_frames() {
        let established = r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#;
        assert_eq!(parse(established), Incoming::Established("123.456".into()));
        let ok = r#"{"event":"pusher_internal:subscription_succeeded","channel":"bench-1-0","data":"{}"}"#;
        assert_eq!(parse(ok), Incoming::Subscribed("bench-1-0".into()));
        let refused =
            r#"{"event":"pusher:subscription_error","channel":"c","data":"{\"status\":429}"}"#;
        assert_eq!(parse(refused), Incoming::Error(r#"{"status":429}"#.into()));
    }

    #[test]
    fn reads_bench_events_and_skips_the_rest() {
        let frame = r#"{"event":"bench","channel":"c","data":"{\"s\":3,\"t\":99,\"p\":\"\"}","id":"x","pos":"1-0"}"#;
        let Incoming::Event(event) = parse(frame) else {
            panic!("not an event")
        };
        assert_eq!(
            event.delivery,
            Delivery {
                seq: 3,
                sent_us: 99
            }
        );
        assert_eq!(event.pos, None);
        assert_eq!(
            parse(r#"{"event":"other","channel":"c","data":"{}"}"#),
            Incoming::Other
        );
        assert_eq!(
            parse(r#"{"event":"bench","channel":"c","data":"nope"}"#),
            Incoming::Other
        );
        assert_eq!(parse("not json"), Incoming::Other);
        assert_eq!(
            parse(r#"{"event":"pusher:pong","data":"{}"}"#),
            Incoming::Other
        );
    }

    #[test]
    fn the_pong_is_a_pusher_pong() {
        assert_eq!(parse(PONG), Incoming::Other);
        let pong: serde_json::Value = serde_json::from_str(PONG).unwrap();
        assert_eq!(pong["event"], "pusher:pong");
    }
}
