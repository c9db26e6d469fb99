//! A deliberately minimal WebSocket Socket.IO client over `std::net`, for
//! behaviour stock clients cannot show: one that subscribes and then stops
//! reading (a stalled consumer), or one that sends what no stock client would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pushwire_shared::event::CONNECTION_ESTABLISHED;

/// Connects to `addr` and upgrades `path` to a WebSocket (reads time out
/// after 10 s); panics unless the server answers `101`.
pub fn upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("send upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read upgrade response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A subscribed connection that reads nothing more unless told to.
#[derive(Debug)]
pub struct StalledClient {
    stream: TcpStream,
}

impl StalledClient {
    /// Opens an Engine.IO session over WebSocket and stops there: the session
    /// has not asked to join any namespace yet.
    pub fn open_session(addr: SocketAddr) -> Self {
        let stream = upgrade(addr, "/socket.io/?EIO=4&transport=websocket");
        let mut client = StalledClient { stream };
        assert!(client.read_text().starts_with('0'), "open packet");
        client
    }

    /// Asks to join `/` and returns the server's answer: `40…` (connected),
    /// `44…` (refused), or `None` when the server closed the connection instead.
    pub fn join_root(&mut self) -> Option<String> {
        self.send_text("40");
        loop {
            match self.try_read_frame() {
                Ok(Some(frame)) if frame == "2" => self.send_text("3"),
                Ok(Some(frame)) => return Some(frame),
                Ok(None) => return None,
                Err(e) => panic!("no answer to a namespace connect: {e}"),
            }
        }
    }

    /// Connects over WebSocket, joins `/` and subscribes to `channel` (waits for
    /// the ack and the connection announcement).
    pub fn subscribe(addr: SocketAddr, channel: &str) -> Self {
        let mut client = Self::open_session(addr);
        client.send_text("40");
        assert!(client.read_text().starts_with("40"), "namespace connect");
        client.send_text(&format!(r#"421["subscribe",{{"channel":"{channel}"}}]"#));
        // The connect handler runs alongside the first events, so the ack and
        // `pushwire:connection_established` come in either order: wait for both,
        // so that everything read later is the channel's events.
        let (mut acked, mut established) = (false, false);
        while !(acked && established) {
            let frame = client.read_text();
            if let Some(ack) = frame.strip_prefix("431") {
                assert!(ack.contains(r#""ok":true"#), "{ack}");
                acked = true;
            } else if frame.starts_with(&format!("42[\"{CONNECTION_ESTABLISHED}\"")) {
                established = true;
            }
        }
        client
    }

    fn send_text(&mut self, text: &str) {
        self.send_frame(0x81, text.as_bytes()).expect("send frame");
    }

    /// Sends one WebSocket frame (`first_byte`: FIN bit and opcode), masked as a
    /// client must; an error when the server has closed the connection.
    fn send_frame(&mut self, first_byte: u8, payload: &[u8]) -> std::io::Result<()> {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![first_byte];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame)
    }

    /// Joins `/` and waits for the connection announcement.
    pub fn connect(addr: SocketAddr) -> Self {
        let mut client = Self::open_session(addr);
        client.send_text("40");
        assert!(client.read_text().starts_with("40"), "namespace connect");
        loop {
            if client
                .read_text()
                .starts_with(&format!("42[\"{CONNECTION_ESTABLISHED}\""))
            {
                return client;
            }
        }
    }

    /// Sends `text` as one message split in frames of `piece` bytes, stopping at
    /// the first write the server refuses; whether every frame was written.
    /// `finish: false` leaves the message open (no final frame).
    pub fn send_in_pieces(&mut self, text: &[u8], piece: usize, finish: bool) -> bool {
        let pieces: Vec<&[u8]> = text.chunks(piece).collect();
        for (i, chunk) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            let opcode = if i == 0 { 0x1 } else { 0x0 };
            let fin = if last && finish { 0x80 } else { 0 };
            if self.send_frame(fin | opcode, chunk).is_err() {
                return false;
            }
        }
        true
    }

    /// Sends every `(event, payload)` as a Socket.IO event with ack ids 1, 2, …,
    /// in one write, then returns the acks in that order.
    pub fn emit_all(&mut self, events: &[(&str, serde_json::Value)]) -> Vec<serde_json::Value> {
        for (i, (event, payload)) in events.iter().enumerate() {
            let packet = serde_json::json!([event, payload]);
            self.send_text(&format!("42{}{packet}", i + 1));
        }
        let mut acks = vec![serde_json::Value::Null; events.len()];
        let mut missing = events.len();
        while missing > 0 {
            let frame = self.read_text();
            let Some(rest) = frame.strip_prefix("43") else {
                continue;
            };
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (id, body) = rest.split_at(digits);
            let id: usize = id.parse().expect("ack id");
            let mut args: Vec<serde_json::Value> = serde_json::from_str(body).expect("ack body");
            acks[id - 1] = args.remove(0);
            missing -= 1;
        }
        acks
    }

    /// The next Engine.IO packet, answering heartbeat pings on the way (during the
    /// handshake the client is still a live one).
    fn read_text(&mut self) -> String {
        loop {
            let frame = self.read_frame();
            if frame != "2" {
                return frame;
            }
            self.send_text("3");
        }
    }

    fn read_frame(&mut self) -> String {
        let mut header = [0u8; 2];
        self.stream.read_exact(&mut header).expect("frame header");
        let len = match header[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).expect("length");
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).expect("length");
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).expect("payload");
        String::from_utf8_lossy(&payload).into_owned()
    }

    /// Starts reading again: collects the names of the events that were queued
    /// for it, answering pings, until the server disconnects it (a Socket.IO
    /// disconnect packet or the connection closing) or `timeout` passes.
    /// Returns the event names and whether it was disconnected.
    pub fn resume(mut self, timeout: Duration) -> (Vec<String>, bool) {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        while Instant::now() < deadline {
            let _ = self.stream.set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ));
            let frame = match self.try_read_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return (events, true),
                Err(_) => break, // nothing more within the timeout
            };
            if frame == "2" {
                self.send_text("3");
            } else if frame.starts_with("41") {
                return (events, true);
            } else if let Some(rest) = frame.strip_prefix("42[\"") {
                events.push(rest.split('"').next().unwrap_or_default().to_owned());
            }
        }
        (events, false)
    }

    /// One frame, `Ok(None)` when the server closed the connection, `Err` when
    /// nothing arrived within the read timeout.
    fn try_read_frame(&mut self) -> std::io::Result<Option<String>> {
        let mut header = [0u8; 2];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e),
        }
        if header[0] & 0x0f == 0x8 {
            return Ok(None); // a WebSocket close frame
        }
        let len = match header[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b)?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b)?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        Ok(Some(String::from_utf8_lossy(&payload).into_owned()))
    }

    /// Reads whatever the server had queued; true if the server closed the
    /// connection within `timeout`.
    pub fn closed_by_server_within(mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        while Instant::now() < deadline {
            let _ = self.stream.set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ));
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }
}
