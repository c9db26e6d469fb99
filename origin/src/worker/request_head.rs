//! Detaching a Socket.IO request's head from the connection's read buffer.
//!
//! socketioxide keeps every session's request head (`req_parts`) for the
//! session's whole life. Hyper parses header values and the URI as slices of the
//! connection's read buffer (8–16 KiB), so keeping the head would keep that whole
//! buffer allocated per idle connection. Copying the head first lets it go.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};

/// Replaces the headers and URI of a `/socket.io/` request with owned copies.
pub(crate) async fn detach(mut request: Request) -> Request {
    if !request.uri().path().starts_with("/socket.io") {
        return request;
    }
    let mut headers = HeaderMap::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        // `from_bytes` copies: the new name and value own their bytes.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
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
    async fn socket_io_heads_keep_their_content() {
        let request = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket&sid=abc")
            .header("x-custom", "value")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(Body::empty())
            .unwrap();
        let detached = detach(request).await;
        assert_eq!(
            detached.uri().to_string(),
            "/socket.io/?EIO=4&transport=websocket&sid=abc"
        );
        assert_eq!(detached.headers()["x-custom"], "value");
        let cookies: Vec<_> = detached.headers().get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }
}
