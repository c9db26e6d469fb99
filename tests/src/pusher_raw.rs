//! A minimal WebSocket client for the Pusher endpoint over `std::net`, for
//! what pusher-js never sends: another protocol version, no version at all.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};

use serde_json::Value;

/// What the server said to a connection it refused.
#[derive(Debug)]
pub struct Refusal {
    /// The `pusher:error` message, parsed.
    pub error: Value,
    /// The WebSocket close code that followed it.
    pub close_code: Option<u16>,
}

fn read_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let mut ext = [0u8; 2];
        stream.read_exact(&mut ext).ok()?;
        len = u64::from(u16::from_be_bytes(ext));
    } else if len == 127 {
        let mut ext = [0u8; 8];
        stream.read_exact(&mut ext).ok()?;
        len = u64::from_be_bytes(ext);
    }
    let mut payload = vec![0u8; usize::try_from(len).ok()?];
    stream.read_exact(&mut payload).ok()?;
    Some((head[0] & 0x0f, payload))
}

/// Opens a WebSocket on `path` (e.g. `/app/key?protocol=6`) and reads the
/// server's first message and the close code after it.
pub fn refused(addr: SocketAddr, path: &str) -> Refusal {
    let mut stream = crate::raw_ws::upgrade(addr, path);
    let (opcode, text) = read_frame(&mut stream).expect("a first message");
    assert_eq!(opcode, 1, "a text frame first");
    let error = serde_json::from_slice(&text).expect("JSON");
    let close_code = match read_frame(&mut stream) {
        Some((8, payload)) if payload.len() >= 2 => {
            Some(u16::from_be_bytes([payload[0], payload[1]]))
        }
        _ => None,
    };
    Refusal { error, close_code }
}
