//! Trimming a Socket.IO request's head to what Engine.IO reads.
//!
//! socketioxide keeps every session's request head (`req_parts`) for the
//! session's whole life. Two things in it would cost memory per idle connection:
//! hyper parses header values and the URI as slices of the connection's read
//! buffer (8–16 KiB), so keeping them keeps that whole buffer; and browsers send
//! a dozen headers (user agent, languages, cookies…) that nothing here reads
//! after the handshake. So before socketioxide sees a `/socket.io/` request, its
//! URI is copied and its headers are cut to [`KEPT_HEADERS`], copied too.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};

/// The request headers Engine.IO reads: the WebSocket key (for the handshake's
/// answer) and the type of a long-polling body. Hyper decided whether the
/// connection upgrades when it parsed the request, so `Upgrade` and `Connection`
/// are not needed afterwards.
const KEPT_HEADERS: [HeaderName; 2] = [header::SEC_WEBSOCKET_KEY, header::CONTENT_TYPE];

/// Replaces the URI and headers of a `/socket.io/` request with owned copies of
/// the parts Engine.IO reads.
pub(crate) async fn detach(mut request: Request) -> Request {
    if !super::is_socket_io(request.uri().path()) {
        return request;
    }
    let mut headers = HeaderMap::with_capacity(KEPT_HEADERS.len());
    for name in KEPT_HEADERS {
        for value in request.headers().get_all(&name) {
            // `from_bytes` copies: the new value owns its bytes.
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                headers.append(name.clone(), value);
            }
        }
    }
    *request.headers_mut() = headers;
    if let Ok(uri) = Uri::try_from(request.uri().to_string()) {
        *request.uri_mut() = uri;
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[tokio::test]
    async fn socket_io_heads_keep_what_engine_io_reads_and_nothing_else() {
        let request = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket&sid=abc")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("content-type", "text/plain;charset=UTF-8")
            .header("user-agent", "Mozilla/5.0")
            .header("cookie", "a=1")
            .body(Body::empty())
            .unwrap();
        let detached = detach(request).await;
        assert_eq!(
            detached.uri().to_string(),
            "/socket.io/?EIO=4&transport=websocket&sid=abc"
        );
        let names: Vec<_> = detached.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["sec-websocket-key", "content-type"]);
        assert_eq!(
            detached.headers()["sec-websocket-key"],
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
    }

    #[tokio::test]
    async fn other_requests_are_left_alone() {
        let request = Request::builder()
            .uri("/apps/1/events")
            .header("cookie", "a=1")
            .body(Body::empty())
            .unwrap();
        assert_eq!(detach(request).await.headers()["cookie"], "a=1");
    }
}
