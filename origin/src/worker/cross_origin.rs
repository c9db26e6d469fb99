//! Which web pages may use an origin from a browser (CORS).
//!
//! A browser page on `https://app.example.com` that connects to pushwire on
//! `https://push.example.com` with a stock socket.io-client starts with HTTP
//! long-polling: cross-origin requests that the browser lets the page read only
//! when the answer carries `Access-Control-Allow-Origin`. Engine.IO servers leave
//! that to the application, so this layer adds it, answers preflight requests
//! (`OPTIONS`, sent when a client adds its own headers), and refuses Socket.IO
//! requests, WebSocket upgrades included (browsers apply no CORS to WebSocket),
//! and Pusher-protocol upgrades (`/app/{key}`) from pages whose origin is not
//! allowed.
//!
//! Requests without an `Origin` header (servers, apps, the Node and Python
//! clients) are never refused. The trigger API (`/apps/…`) is for servers only
//! and gets no CORS headers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pushwire_shared::http::error_body;

use crate::config::AllowedOrigins;

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "86400";

/// The middleware (see the module docs).
pub(crate) async fn cross_origin(
    State(allowed): State<Arc<AllowedOrigins>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path.starts_with("/apps/") {
        return next.run(request).await;
    }
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let origin_text = origin.to_str().unwrap_or("");
    if !allowed.allows(origin_text) {
        // Browsers apply no CORS to WebSockets, so the client endpoints refuse
        // such pages themselves; other paths only lose their CORS headers.
        if !super::is_socket_io(path) && !crate::paths::is_pusher(path) {
            return next.run(request).await; // no CORS headers: the browser keeps it from the page
        }
        tracing::debug!(
            origin = origin_text,
            path,
            "refused a client connection from a page of another origin"
        );
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/json")],
            error_body(&format!("origin {origin_text} is not allowed")),
        )
            .into_response();
    }
    let credentials = matches!(*allowed, AllowedOrigins::Listed(_));
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        preflight_answer(request.headers())
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// `204` allowing what Engine.IO's transports send: `GET` and `POST` with the
/// headers the preflight asks for.
fn preflight_answer(request: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        headers.append(
            header::VARY,
            HeaderValue::from_static("Access-Control-Request-Headers"),
        );
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn answer(allowed: AllowedOrigins, request: Request) -> Response {
        let app = Router::new()
            .route("/socket.io/", get(|| async { "engine.io" }))
            .route("/app/key", get(|| async { "pusher" }))
            .route("/apps/1/events", get(|| async { "trigger api" }))
            .route("/health", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(allowed),
                cross_origin,
            ));
        app.oneshot(request).await.unwrap()
    }

    fn get_from(path: &str, origin: Option<&str>) -> Request {
        let mut builder = Request::builder().uri(path);
        if let Some(origin) = origin {
            builder = builder.header(header::ORIGIN, origin);
        }
        builder.body(Body::empty()).unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> Option<&str> {
        response.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn any_origin_is_echoed_without_credentials() {
        let response = answer(
            AllowedOrigins::Any,
            get_from("/socket.io/", Some("https://a.example")),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://a.example")
        );
        assert_eq!(header_of(&response, header::VARY), Some("Origin"));
        assert_eq!(
            header_of(&response, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            None
        );
    }

    #[tokio::test]
    async fn a_listed_origin_may_send_credentials_and_others_are_refused() {
        let list = AllowedOrigins::parse("https://a.example").unwrap();
        let ok = answer(
            list.clone(),
            get_from("/socket.io/", Some("https://a.example")),
        )
        .await;
        assert_eq!(
            header_of(&ok, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );

        let refused = answer(
            list.clone(),
            get_from("/socket.io/", Some("https://b.example")),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            header_of(&refused, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            None
        );
        let pusher = answer(
            list.clone(),
            get_from("/app/key", Some("https://b.example")),
        )
        .await;
        assert_eq!(pusher.status(), StatusCode::FORBIDDEN);

        // Other pages are served, without CORS headers; requests without Origin pass.
        let health = answer(list.clone(), get_from("/health", Some("https://b.example"))).await;
        assert_eq!(health.status(), StatusCode::OK);
        assert_eq!(
            header_of(&health, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            None
        );
        let server = answer(list, get_from("/socket.io/", None)).await;
        assert_eq!(server.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn preflights_are_answered_and_the_trigger_api_is_left_alone() {
        let preflight = Request::builder()
            .method(Method::OPTIONS)
            .uri("/socket.io/?EIO=4&transport=polling&sid=x")
            .header(header::ORIGIN, "https://a.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type,x-token",
            )
            .body(Body::empty())
            .unwrap();
        let response = answer(AllowedOrigins::Any, preflight).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            header_of(&response, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://a.example")
        );
        assert_eq!(
            header_of(&response, header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some("content-type,x-token")
        );
        assert!(
            header_of(&response, header::ACCESS_CONTROL_ALLOW_METHODS)
                .unwrap()
                .contains("POST")
        );

        let api = answer(
            AllowedOrigins::Any,
            get_from("/apps/1/events", Some("https://a.example")),
        )
        .await;
        assert_eq!(header_of(&api, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
    }
}
