//! HTTP behaviour that keeps sticky routing correct behind the cluster master.
//!
//! The master routes a connection by its first request only, so:
//! - a polling handshake's session id is claimed with the master before the
//!   response (which tells the client the id) leaves this worker;
//! - every response except the trigger API's and WebSocket upgrades carries
//!   `Connection: close`, so the next request, which may belong to another
//!   session (HTTP clients pool connections across sessions), arrives on a new
//!   connection and is routed by its own `sid`. The trigger API keeps keep-alive:
//!   SDKs reuse connections for throughput and never send Socket.IO requests.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::SessionClaims;

/// The largest handshake response read back to find its session id.
const MAX_HANDSHAKE_BYTES: usize = 64 * 1024;

fn is_polling_handshake(request: &Request) -> bool {
    let uri = request.uri();
    super::is_socket_io(uri.path())
        && uri.query().is_some_and(|q| {
            let mut pairs = q.split('&');
            pairs.clone().any(|p| p == "transport=polling") && !pairs.any(|p| p.starts_with("sid="))
        })
}

/// The `sid` of an Engine.IO v4 open packet: `0{"sid":"…",…}`.
fn open_packet_sid(body: &[u8]) -> Option<String> {
    let json = body.strip_prefix(b"0")?;
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    value.get("sid")?.as_str().map(str::to_owned)
}

/// The middleware (see the module docs).
pub(crate) async fn route_hints(
    State(claims): State<Arc<dyn SessionClaims>>,
    request: Request,
    next: Next,
) -> Response {
    let keep_alive = request.uri().path().starts_with("/apps/");
    let handshake = is_polling_handshake(&request);
    let mut response = next.run(request).await;
    if handshake && response.status() == StatusCode::OK {
        let (parts, body) = response.into_parts();
        response = match http_body_util::Limited::new(body, MAX_HANDSHAKE_BYTES)
            .collect()
            .await
        {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                if let Some(sid) = open_packet_sid(&bytes) {
                    claims.claim(sid).await;
                }
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(e) => {
                tracing::warn!(error = %e, "unreadable handshake response");
                (StatusCode::SERVICE_UNAVAILABLE, "handshake failed").into_response()
            }
        };
    }
    if !keep_alive && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_open_packet_sid() {
        let body = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(
            open_packet_sid(body).as_deref(),
            Some("lv_VI97HAXpY6yYWAAAC")
        );
        assert_eq!(open_packet_sid(b"40"), None);
        assert_eq!(open_packet_sid(b""), None);
    }

    #[test]
    fn recognises_polling_handshakes() {
        let req = |uri: &str| Request::builder().uri(uri).body(Body::empty()).unwrap();
        assert!(is_polling_handshake(&req(
            "/socket.io/?EIO=4&transport=polling&t=x"
        )));
        assert!(!is_polling_handshake(&req(
            "/socket.io/?EIO=4&transport=polling&sid=a"
        )));
        assert!(!is_polling_handshake(&req(
            "/socket.io/?EIO=4&transport=websocket"
        )));
        assert!(!is_polling_handshake(&req(
            "/apps/1/events?transport=polling"
        )));
    }
}
