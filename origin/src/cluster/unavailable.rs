//! The master's own answer to a connection no worker can take.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most time spent answering one connection.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// The most request bytes read and dropped after the answer.
const DRAIN_BYTES: usize = 64 * 1024;

/// Answers `503 {"error": why}` on `stream` (whatever the request was: the
/// request line has only been peeked at) and closes it.
pub(super) async fn answer_unavailable(stream: std::net::TcpStream, why: &str) {
    let Ok(mut stream) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
    let body = pushwire_shared::http::error_body(why);
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Closing with the request still unread would reset the connection,
        // and the client could lose the answer: read until it closes.
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < DRAIN_BYTES {
            match stream.read(&mut buf).await? {
                0 => break,
                n => read += n,
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}
