//! `--polling-first`: connecting the way stock clients do by default. The
//! Engine.IO session is opened over HTTP long-polling, joins `/` there, and is
//! then upgraded to WebSocket (probe, then upgrade) on a second connection, which
//! a cluster must route to the worker holding the session. Slower than opening
//! WebSocket directly; it checks that path under load.

use std::net::{IpAddr, SocketAddr};

use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::client::{
    ClientError, Handshake, Socket, io, next_text, tcp_connect, websocket_handshake,
};

/// The largest polling response read (a handshake's payloads are a few hundred bytes).
const MAX_RESPONSE: usize = 64 * 1024;
/// Engine.IO's separator between packets in one polling payload.
const PACKET_SEPARATOR: char = '\u{1e}';

/// Opens a session over long-polling, joins `/` with `{"app_key": app_key}`,
/// and upgrades it to WebSocket; returns the upgraded socket.
pub(super) async fn connect(
    source: IpAddr,
    target: SocketAddr,
    app_key: &str,
    handshake: Handshake,
) -> Result<Socket, ClientError> {
    let headers = handshake.header_lines();
    let request = |method, path, body| request(source, target, &headers, method, path, body);
    let open = request("GET", "/socket.io/?EIO=4&transport=polling", "").await?;
    let sid = session_id(&open)?;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let auth = serde_json::json!({ "app_key": app_key });
    let join = format!("40{auth}");
    request("POST", &path, &join).await?;
    // Poll until the namespace answers, answering heartbeat pings meanwhile.
    'joined: loop {
        let payload = request("GET", &path, "").await?;
        for packet in payload.split(PACKET_SEPARATOR) {
            if packet == "2" {
                request("POST", &path, "3").await?;
            } else if packet.starts_with("40") {
                break 'joined;
            } else if packet.starts_with("44") || packet.starts_with('1') {
                return Err(ClientError::Refused(packet.to_owned()));
            }
        }
    }

    let stream = tcp_connect(source, target).await?;
    let url = format!("ws://{target}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let mut ws = websocket_handshake(url, stream, handshake).await?;
    ws.send(Message::text("2probe")).await.map_err(io)?;
    let probe = next_text(&mut ws).await?;
    if probe.as_str() != "3probe" {
        return Err(ClientError::Protocol(format!(
            "expected the probe's answer, got {probe:?}"
        )));
    }
    ws.send(Message::text("5")).await.map_err(io)?;
    Ok(ws)
}

/// The `sid` of an open packet `0{"sid":…}` (the first packet of the payload).
///
/// ```
/// use pushwire_bench::polling::session_id;
/// assert_eq!(session_id(r#"0{"sid":"abc","upgrades":["websocket"]}"#).unwrap(), "abc");
/// assert!(session_id("40").is_err());
/// ```
pub fn session_id(payload: &str) -> Result<String, ClientError> {
    #[derive(serde::Deserialize)]
    struct Open {
        sid: String,
    }
    let first = payload.split(PACKET_SEPARATOR).next().unwrap_or_default();
    first
        .strip_prefix('0')
        .and_then(|json| serde_json::from_str::<Open>(json).ok())
        .map(|open| open.sid)
        .ok_or_else(|| ClientError::Protocol(format!("expected an open packet, got {first:?}")))
}

/// One HTTP/1.1 request, on a connection of its own (pushwire answers polling
/// requests with `connection: close`, so that each is routed to its session's
/// worker); the body of a `200` answer.
async fn request(
    source: IpAddr,
    target: SocketAddr,
    headers: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<String, ClientError> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {target}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         {headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = tcp_connect(source, target).await?;
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body.as_bytes()).await.map_err(io)?;

    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        read_more(&mut stream, &mut buf).await?;
    };
    let (status, length) = parse_head(&buf[..head_end])?;
    while buf.len() < head_end + length {
        read_more(&mut stream, &mut buf).await?;
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    if status != 200 {
        return Err(ClientError::Refused(format!(
            "{method} {path}: {status} {body}"
        )));
    }
    Ok(body)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), ClientError> {
    if buf.len() >= MAX_RESPONSE {
        return Err(ClientError::Protocol("polling response too large".into()));
    }
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await.map_err(io)? {
        0 => Err(ClientError::Connect("closed by the server".into())),
        n => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

/// The status code and `Content-Length` of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, usize), ClientError> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("bad status line in {head:?}")))?;
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| ClientError::Protocol("a polling response without Content-Length".into()))?;
    Ok((status, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_and_length() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (200, 12));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
