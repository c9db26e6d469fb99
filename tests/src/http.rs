//! A small blocking HTTP/1.1 client over `std::net`, so the tests control every
//! byte they send (malformed queries, huge bodies) independently of the server's stack.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushwire_shared::{App, signing};

/// A response: status, headers and body text.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Every header, names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Response {
    /// The first header called `name` (lower-case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub fn request(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> Response {
    request_with_headers(addr, method, target, body, &[])
}

/// [`request`] with extra headers.
pub fn request_with_headers(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
    headers: &[(String, String)],
) -> Response {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    request_exact(addr, method, target, body, &all)
}

/// Sends one request with these headers and no others but `Host`,
/// `Content-Length` and `Connection: close`, and reads the whole response.
pub fn request_exact(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .expect("write request head");
    // The server may answer (413) and stop reading before the body is through.
    let _ = stream.write_all(body);
    let raw = read_message(&mut stream);
    parse(&raw).unwrap_or_else(|| {
        panic!(
            "malformed response to {method} {target}: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// The session id in the body of a long-polling handshake: an Engine.IO open
/// packet, `0{"sid":…}` (panics with the body if it is not one).
pub fn open_packet_sid(body: &str) -> String {
    body.strip_prefix('0')
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .and_then(|open| open["sid"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("not an open packet: {body:?}"))
}

/// Reads one response: the head, then `Content-Length` bytes (some servers keep
/// the socket open after replying), or to the end when there is no length.
fn read_message(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(length) = length
                && raw.len() >= end + 4 + length
            {
                raw.truncate(end + 4 + length);
                return raw;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

fn parse(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
        headers.push((name, value));
    }
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A correctly signed request for `app` (signed with `pushwire_shared`).
pub fn signed(addr: SocketAddr, method: &str, path: &str, body: &[u8], app: &App) -> Response {
    signed_with(addr, method, path, &[], body, app)
}

/// [`signed`] with the request's own query parameters (`extra`), signed too.
pub fn signed_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    app: &App,
) -> Response {
    let query = signing::sign(method, path, extra, body, app, unix_now());
    request(addr, method, &format!("{path}?{query}"), body)
}

/// One kept-alive connection, for requests that must share it.
#[derive(Debug)]
pub struct KeepAlive {
    stream: TcpStream,
    addr: SocketAddr,
}

/// A request whose body is half sent; [`PendingRequest::finish`] sends the rest.
#[derive(Debug)]
pub struct PendingRequest {
    conn: KeepAlive,
    rest: Vec<u8>,
}

impl KeepAlive {
    /// Opens the connection.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        // Head and body go out in separate writes: without this, Nagle's
        // algorithm holds the body until the server's delayed ACK (~40 ms).
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        KeepAlive { stream, addr }
    }

    /// Waits up to `timeout` for each response (10 s unless set), for
    /// requests the server answers late on purpose.
    pub fn with_read_timeout(self, timeout: Duration) -> Self {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set timeout");
        self
    }

    fn head(&self, path: &str, body: &[u8], app: &App) -> String {
        let query = signing::sign("POST", path, &[], body, app, unix_now());
        format!(
            "POST {path}?{query} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
    }

    /// Sends a signed POST and reads its response; the connection stays open.
    pub fn signed_post(&mut self, path: &str, body: &[u8], app: &App) -> Response {
        let head = self.head(path, body, app);
        self.stream.write_all(head.as_bytes()).expect("write head");
        self.stream.write_all(body).expect("write body");
        self.read_response()
    }

    /// Sends a signed POST's head, waits until the server reads its body, and
    /// sends the first half of it.
    pub fn start_signed_post(mut self, path: &str, body: &[u8], app: &App) -> PendingRequest {
        // `Expect: 100-continue`: the server answers `100 Continue` once its
        // handler starts reading the body, so when this returns the request is
        // in the server's hands, not merely in a socket buffer it may never read.
        let head =
            self.head(path, body, app)
                .replacen("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n", 1);
        let half = body.len() / 2;
        self.stream.write_all(head.as_bytes()).expect("write head");
        let interim = read_head(&mut self.stream);
        assert!(
            interim.starts_with("HTTP/1.1 100"),
            "expected 100 Continue, got {interim:?}"
        );
        self.stream
            .write_all(&body[..half])
            .expect("write half the body");
        PendingRequest {
            conn: self,
            rest: body[half..].to_vec(),
        }
    }

    fn read_response(&mut self) -> Response {
        let raw = read_message(&mut self.stream);
        parse(&raw).expect("well-formed response")
    }
}

impl PendingRequest {
    /// Sends the rest of the body and reads the response.
    pub fn finish(mut self) -> Response {
        self.conn
            .stream
            .write_all(&self.rest)
            .expect("write the rest of the body");
        self.conn.read_response()
    }
}

/// Reads one response head, up to and including its blank line, and no further.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read a response head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}
