//! A lean Socket.IO v5 client over Engine.IO v4 WebSocket, written for load: no
//! reconnection, no per-message allocation beyond parsing the event name and
//! the bench payload.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// How long the whole handshake (TCP, WebSocket, Engine.IO, Socket.IO, subscribe) may take.
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
    /// The subscribe was refused.
    #[error("subscribe refused: {0}")]
    Refused(String),
    /// Too slow.
    #[error("handshake timed out")]
    Timeout,
}

/// A connected, subscribed socket.
pub type Socket = WebSocketStream<TcpStream>;

async fn next_text(ws: &mut Socket) -> Result<String, ClientError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                if text.as_str() == "2" {
                    ws.send(Message::text("3"))
                        .await
                        .map_err(|e| ClientError::Connect(e.to_string()))?;
                    continue;
                }
                return Ok(text.as_str().to_owned());
            }
            Some(Ok(Message::Ping(p))) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
            None => return Err(ClientError::Connect("closed during handshake".into())),
        }
    }
}

/// Opens a WebSocket-only Socket.IO connection from `source` to `target`,
/// authenticates with `app_key` and subscribes to `channel` (waiting for the ack).
pub async fn connect(
    source: IpAddr,
    target: SocketAddr,
    app_key: &str,
    channel: &str,
) -> Result<Socket, ClientError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let socket = if source.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| ClientError::Connect(e.to_string()))?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| ClientError::Connect(format!("bind {source}: {e}")))?;
        let stream = socket
            .connect(target)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        stream.set_nodelay(true).ok();
        let url = format!("ws://{target}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let open = next_text(&mut ws).await?;
        if !open.starts_with('0') {
            return Err(ClientError::Protocol(format!(
                "expected an open packet, got {open:?}"
            )));
        }
        let auth = serde_json::json!({ "app_key": app_key });
        ws.send(Message::text(format!("40{auth}")))
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let connected = next_text(&mut ws).await?;
        if !connected.starts_with("40") {
            return Err(ClientError::Refused(connected));
        }
        let subscribe = serde_json::json!(["subscribe", { "channel": channel }]);
        ws.send(Message::text(format!("421{subscribe}")))
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        loop {
            let frame = next_text(&mut ws).await?;
            if let Some(ack) = frame.strip_prefix("431") {
                if ack.contains("\"ok\":true") {
                    return Ok(ws);
                }
                return Err(ClientError::Refused(ack.to_owned()));
            }
            // Anything else before the ack (connection_established) is fine.
        }
    })
    .await
    .map_err(|_| ClientError::Timeout)?
}

/// A delivered bench event: the trigger's sequence number and send time (µs since bench start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Trigger sequence number.
    pub seq: u64,
    /// Send time, µs since the bench's start.
    pub sent_us: u64,
}

/// Reads a `42["bench", {"s":…,"t":…}, …]` frame; `None` for anything else.
///
/// ```
/// use pushwire_origin::bench::client::{Delivery, parse_delivery};
/// let frame = r#"42["bench",{"s":7,"t":1234,"p":"xx"},{"channel":"c","id":"i"}]"#;
/// assert_eq!(parse_delivery(frame), Some(Delivery { seq: 7, sent_us: 1234 }));
/// assert_eq!(parse_delivery("3"), None);
/// ```
pub fn parse_delivery(frame: &str) -> Option<Delivery> {
    #[derive(serde::Deserialize)]
    struct Payload {
        s: u64,
        t: u64,
    }
    let body = frame.strip_prefix("42")?;
    let (name, payload, _meta): (&str, Payload, serde::de::IgnoredAny) =
        serde_json::from_str(body).ok()?;
    (name == "bench").then_some(Delivery {
        seq: payload.s,
        sent_us: payload.t,
    })
}

/// Reads the socket until it closes, answering pings and passing each bench
/// delivery to `on_delivery`.
pub async fn read_deliveries(mut ws: Socket, mut on_delivery: impl FnMut(Delivery)) {
    while let Some(message) = ws.next().await {
        match message {
            Ok(Message::Text(text)) => {
                let text = text.as_str();
                if text == "2" {
                    if ws.send(Message::text("3")).await.is_err() {
                        return;
                    }
                } else if let Some(delivery) = parse_delivery(text) {
                    on_delivery(delivery);
                }
            }
            Ok(Message::Ping(p)) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
