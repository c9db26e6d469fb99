//! A lean Socket.IO v5 client over Engine.IO v4 WebSocket, written for load: no
//! automatic reconnection (the bench's churn reconnects explicitly), and no
//! per-message allocation beyond the frame itself (event fields are borrowed
//! from it).

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::HeaderName;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// How long each handshake step (connecting; subscribing) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a bench connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP or WebSocket failure.
    #[error("connect: {0}")]
    Connect(String),
    /// The server said something unexpected.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The connection or a subscribe was refused.
    #[error("subscribe refused: {0}")]
    Refused(String),
    /// Too slow.
    #[error("handshake timed out")]
    Timeout,
}

/// A connected Socket.IO socket.
pub type Socket = WebSocketStream<TcpStream>;

/// How a bench connection opens its session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handshake {
    /// Over long-polling first, then the upgrade to WebSocket, as stock clients
    /// do (`--polling-first`); otherwise WebSocket from the start.
    pub polling_first: bool,
    /// With a desktop browser's request headers ([`BROWSER_HEADERS`],
    /// `--browser-headers`): servers that keep each session's request head then
    /// pay for them as they would for real browser clients.
    pub browser_headers: bool,
    /// The client protocol spoken (`--protocol`).
    pub protocol: Protocol,
}

/// The client protocol a bench connection speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Socket.IO v5 over Engine.IO v4 WebSocket, at `/socket.io/`.
    #[default]
    Socketio,
    /// Pusher Channels protocol 7, at `/app/<key>?protocol=7` (see [`super::pusher`]).
    Pusher,
}

/// What a desktop Chromium sends with a Socket.IO request from a web page, besides
/// the request line, `Host` and the WebSocket handshake's own headers (names
/// lower-case; about 800 bytes, a third of it a typical analytics + session cookie).
pub const BROWSER_HEADERS: [(&str, &str); 7] = [
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/156.0.0.0 Safari/537.36",
    ),
    ("origin", "https://app.example.com"),
    ("accept-language", "en-GB,en-US;q=0.9,en;q=0.8,de;q=0.7"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("cache-control", "no-cache"),
    ("pragma", "no-cache"),
    (
        "cookie",
        "_ga=GA1.1.1234567890.1700000000; _ga_0A1B2C3D4E=GS1.1.1700000000.1.1.1700000100.0.0.0; \
         session=4f6a0c2e9b1d8a7c5e3f1b0d9c8a7e6f5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170; \
         theme=dark; consent=analytics%3Dtrue%26marketing%3Dfalse; locale=en-GB",
    ),
];

impl Handshake {
    /// The extra request header lines (`name: value\r\n` each) for a polling request.
    pub(super) fn header_lines(self) -> String {
        if !self.browser_headers {
            return String::new();
        }
        BROWSER_HEADERS
            .iter()
            .map(|(name, value)| format!("{name}: {value}\r\n"))
            .collect()
    }
}

pub(super) fn io(e: impl std::fmt::Display) -> ClientError {
    ClientError::Connect(e.to_string())
}

/// The next text frame, answering Engine.IO pings (`2` → `3`) and WebSocket pings on the way.
pub(super) async fn next_text(ws: &mut Socket) -> Result<Utf8Bytes, ClientError> {
    loop {
        let text = next_websocket_text(ws).await?;
        if text.as_str() != "2" {
            return Ok(text);
        }
        ws.send(Message::text("3")).await.map_err(io)?;
    }
}

/// The next WebSocket text frame, whatever protocol it carries, answering
/// WebSocket pings on the way.
pub(super) async fn next_websocket_text(ws: &mut Socket) -> Result<Utf8Bytes, ClientError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Ping(p))) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(ClientError::Connect("closed by the server".into()));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(io(e)),
        }
    }
}

/// Opens a Socket.IO connection from `source` to `target` and connects to
/// namespace `/` with `{"app_key": app_key}`: over WebSocket from the start, or,
/// with `polling_first`, the way stock clients do (see [`super::polling`]).
pub async fn connect(
    source: IpAddr,
    target: SocketAddr,
    app_key: &str,
    handshake: Handshake,
) -> Result<Socket, ClientError> {
    let connecting = async {
        if handshake.polling_first {
            super::polling::connect(source, target, app_key, handshake).await
        } else {
            connect_websocket(source, target, app_key, handshake).await
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// A TCP connection from `source` to `target`, without Nagle's delay.
pub(super) async fn tcp_connect(
    source: IpAddr,
    target: SocketAddr,
) -> Result<TcpStream, ClientError> {
    let socket = if source.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io)?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| ClientError::Connect(format!("bind {source}: {e}")))?;
    let stream = socket.connect(target).await.map_err(io)?;
    stream.set_nodelay(true).ok();
    Ok(stream)
}

/// Bytes a bench socket reads at most per `read`: a few events' frames.
///
/// tungstenite zero-fills its whole read buffer before every `read`, so its 128 KiB
/// default made the generator spend 40% of its CPU in `memset` while reading
/// 10,000 sockets' small frames. Larger frames still arrive whole: the buffer
/// grows to the frame's announced length.
const READ_BUFFER: usize = 4 * 1024;

/// The WebSocket handshake for `url` over an open TCP connection.
pub(super) async fn websocket_handshake(
    url: String,
    stream: TcpStream,
    handshake: Handshake,
) -> Result<Socket, ClientError> {
    let mut request = url.into_client_request().map_err(io)?;
    if handshake.browser_headers {
        for (name, value) in BROWSER_HEADERS {
            request.headers_mut().insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
    }
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(io)?;
    Ok(ws)
}

async fn connect_websocket(
    source: IpAddr,
    target: SocketAddr,
    app_key: &str,
    handshake: Handshake,
) -> Result<Socket, ClientError> {
    let stream = tcp_connect(source, target).await?;
    let url = format!("ws://{target}/socket.io/?EIO=4&transport=websocket");
    let mut ws = websocket_handshake(url, stream, handshake).await?;
    let open = next_text(&mut ws).await?;
    if !open.as_str().starts_with('0') {
        return Err(ClientError::Protocol(format!(
            "expected an open packet, got {open:?}"
        )));
    }
    let auth = serde_json::json!({ "app_key": app_key });
    ws.send(Message::text(format!("40{auth}")))
        .await
        .map_err(io)?;
    let connected = next_text(&mut ws).await?;
    if !connected.as_str().starts_with("40") {
        return Err(ClientError::Refused(connected.as_str().to_owned()));
    }
    Ok(ws)
}

/// The `subscribe` frame with ack id `ack`: `42{ack}["subscribe",{"channel","since"?}]`.
///
/// ```
/// use pushwire_bench::client::subscribe_frame;
/// assert_eq!(subscribe_frame(1, "c", None), r#"421["subscribe",{"channel":"c"}]"#);
/// assert_eq!(subscribe_frame(2, "c", Some("e:1-0")), r#"422["subscribe",{"channel":"c","since":"e:1-0"}]"#);
/// ```
pub fn subscribe_frame(ack: u64, channel: &str, since: Option<&str>) -> String {
    let payload = match since {
        Some(since) => serde_json::json!({ "channel": channel, "since": since }),
        None => serde_json::json!({ "channel": channel }),
    };
    format!("42{ack}{}", serde_json::json!(["subscribe", payload]))
}

/// A successful subscribe ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    /// `recovered`, present when the subscribe gave `since`.
    pub recovered: Option<bool>,
    /// When the ack arrived.
    pub at: Instant,
}

/// Sends `frames` (made by [`subscribe_frame`] with ack ids 1..=n, in order)
/// and waits for every ack, passing the events that arrive meanwhile (a
/// replay comes before its ack) to `on_event`. Returns the acks by ack id − 1.
pub async fn subscribe(
    ws: &mut Socket,
    frames: &[String],
    mut on_event: impl FnMut(Event<'_>),
) -> Result<Vec<Subscribed>, ClientError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        for frame in frames {
            ws.send(Message::text(frame.as_str())).await.map_err(io)?;
        }
        let mut acks: Vec<Option<Subscribed>> = vec![None; frames.len()];
        let mut pending = frames.len();
        while pending > 0 {
            let text = next_text(ws).await?;
            if let Some(event) = parse_event(text.as_str()) {
                on_event(event);
                continue;
            }
            // Anything else that is not an ack (connection_established) is fine.
            let Some((id, body)) = parse_ack(text.as_str()) else {
                continue;
            };
            let slot = usize::try_from(id)
                .ok()
                .and_then(|id| id.checked_sub(1))
                .and_then(|i| acks.get_mut(i))
                .ok_or_else(|| ClientError::Protocol(format!("unexpected ack {id}")))?;
            let (ack,): (AckBody,) = serde_json::from_str(body)
                .map_err(|_| ClientError::Protocol(format!("bad ack {body:?}")))?;
            if !ack.ok {
                return Err(ClientError::Refused(body.to_owned()));
            }
            if slot.is_none() {
                pending -= 1;
            }
            *slot = Some(Subscribed {
                recovered: ack.recovered,
                at: Instant::now(),
            });
        }
        Ok(acks.into_iter().flatten().collect())
    })
    .await
    .map_err(|_| ClientError::Timeout)?
}

#[derive(serde::Deserialize)]
struct AckBody {
    ok: bool,
    #[serde(default)]
    recovered: Option<bool>,
}

/// Splits an ack frame `43{id}[…]` into its id and argument array.
///
/// ```
/// use pushwire_bench::client::parse_ack;
/// assert_eq!(parse_ack(r#"4312[{"ok":true}]"#), Some((12, r#"[{"ok":true}]"#)));
/// assert_eq!(parse_ack(r#"43[{"ok":true}]"#), None);
/// ```
pub fn parse_ack(frame: &str) -> Option<(u64, &str)> {
    let rest = frame.strip_prefix("43")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = rest.get(..digits)?.parse().ok()?;
    Some((id, rest.get(digits..)?))
}

/// A delivered bench event: the trigger's sequence number and send time (µs since bench start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Trigger sequence number.
    pub seq: u64,
    /// Send time, µs since the bench's start.
    pub sent_us: u64,
}

/// A bench event as received: what was sent, and where it sits (borrowed from the frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// The trigger it came from.
    pub delivery: Delivery,
    /// The metadata's `channel`, when present.
    pub channel: Option<Cow<'a, str>>,
    /// The metadata's `pos`, when present (servers with channel history).
    pub pos: Option<Cow<'a, str>>,
}

/// Reads a `42["bench", {"s":…,"t":…}, {"channel","pos"?,…}]` frame; `None` for anything else.
///
/// ```
/// use pushwire_bench::client::{Delivery, parse_event};
/// let frame = r#"42["bench",{"s":7,"t":1234,"p":"xx"},{"channel":"c","id":"i","pos":"e:1-0"}]"#;
/// let event = parse_event(frame).unwrap();
/// assert_eq!(event.delivery, Delivery { seq: 7, sent_us: 1234 });
/// assert_eq!((event.channel.as_deref(), event.pos.as_deref()), (Some("c"), Some("e:1-0")));
/// assert_eq!(parse_event("3"), None);
/// ```
pub fn parse_event(frame: &str) -> Option<Event<'_>> {
    #[derive(serde::Deserialize)]
    struct Payload {
        s: u64,
        t: u64,
    }
    #[derive(serde::Deserialize)]
    struct Meta<'a> {
        #[serde(borrow, default)]
        channel: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pos: Option<Cow<'a, str>>,
    }
    let body = frame.strip_prefix("42")?;
    let (name, payload, meta): (&str, Payload, Meta<'_>) = serde_json::from_str(body).ok()?;
    (name == "bench").then_some(Event {
        delivery: Delivery {
            seq: payload.s,
            sent_us: payload.t,
        },
        channel: meta.channel,
        pos: meta.pos,
    })
}

/// Why [`read_events`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// The connection closed or failed.
    Closed,
    /// `stop` resolved; the socket is still open.
    Stopped,
}

/// Reads the socket until it closes or `stop` resolves, answering pings and
/// passing each bench event to `on_event`.
pub async fn read_events(
    ws: &mut Socket,
    stop: impl Future<Output = ()>,
    mut on_event: impl FnMut(Event<'_>),
) -> ReadEnd {
    read_frames(ws, stop, |text| {
        if text == "2" {
            return Some("3");
        }
        if let Some(event) = parse_event(text) {
            on_event(event);
        }
        None
    })
    .await
}

/// Reads the socket until it closes or `stop` resolves, answering WebSocket
/// pings; each text frame goes to `on_text`, whose answer (a protocol-level
/// pong), if any, is sent back. Both protocols' readers are this loop.
pub(crate) async fn read_frames(
    ws: &mut Socket,
    stop: impl Future<Output = ()>,
    mut on_text: impl FnMut(&str) -> Option<&'static str>,
) -> ReadEnd {
    let mut stop = std::pin::pin!(stop);
    loop {
        let message = tokio::select! {
            biased;
            () = &mut stop => return ReadEnd::Stopped,
            message = ws.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                if let Some(answer) = on_text(text.as_str())
                    && ws.send(Message::text(answer)).await.is_err()
                {
                    return ReadEnd::Closed;
                }
            }
            Some(Ok(Message::Ping(p))) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => return ReadEnd::Closed,
            Some(Ok(_)) => {}
        }
    }
}
