//! `SlowClient`: a raw TCP client from a chosen loopback address, for the
//! attacks stock clients never make: a request head or body sent a byte at a
//! time, a connection left idle, many connections from one address.
//!
//! Binding the source address (anything in 127.0.0.0/8 is this machine) lets a
//! test attack from 127.0.0.2 while its well-behaved clients use 127.0.0.1, so
//! the per-address cap hits only the attacker.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One raw connection.
#[derive(Debug)]
pub struct SlowClient {
    stream: TcpStream,
    /// Everything read from the server so far.
    pub received: Vec<u8>,
}

impl SlowClient {
    /// Connects to `server` from `source` (port chosen by the kernel).
    pub fn connect_from(source: IpAddr, server: SocketAddr) -> Self {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(server),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .expect("bind the source address");
        socket.connect(&server.into()).expect("connect");
        SlowClient {
            stream: socket.into(),
            received: Vec::new(),
        }
    }

    /// Sends `bytes`; `false` when the server has closed the connection.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Sends `bytes` one at a time, `pause` apart, stopping early when the
    /// server closes the connection; `true` when every byte was sent.
    pub fn trickle(&mut self, bytes: &[u8], pause: Duration) -> bool {
        for byte in bytes {
            if !self.send(std::slice::from_ref(byte)) || self.closed_within(pause) {
                return false;
            }
        }
        true
    }

    /// Reads until the server closes the connection or `timeout` passes;
    /// `true` when it closed (what it sent first is in [`received`](Self::received)).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false;
                }
                Err(_) => return true, // reset
            }
        }
    }

    /// Opens an Engine.IO WebSocket session (a connection the server keeps,
    /// with no request deadline after the upgrade); `None` when the server
    /// closed the connection instead of answering `101`.
    pub fn websocket_from(source: IpAddr, server: SocketAddr) -> Option<Self> {
        let mut client = Self::connect_from(source, server);
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        if !client.send(request.as_bytes()) {
            return None;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 1024];
        while !client.received.windows(4).any(|w| w == b"\r\n\r\n") {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no answer to a WebSocket upgrade");
            client
                .stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            match client.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => client.received.extend_from_slice(&buf[..n]),
            }
        }
        client
            .received
            .starts_with(b"HTTP/1.1 101")
            .then_some(client)
    }

    /// What the server sent, as text.
    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}
