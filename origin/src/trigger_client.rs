//! `TriggerClient`: signed `POST /apps/{id}/events` requests over a bounded pool
//! of keep-alive HTTP/1.1 connections (plain `http://`), for `pushwire trigger`
//! and the load generator `pushwire-bench`.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pushwire_shared::{App, signing};
use tokio::sync::Semaphore;

/// How long one request may take in all, waiting for a connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests in flight at once, each on a keep-alive connection of its own.
///
/// A bound keeps the connections reused: without it a burst of slow answers
/// made the pool open thousands of new connections (one per waiting request),
/// each costing more than the request, and at 10,000 triggers/s the generator
/// measured its own connection churn instead of the trigger API.
pub const DEFAULT_CONNECTIONS: usize = 64;

/// A response's status and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerResponse {
    /// HTTP status code.
    pub status: u16,
    /// Body, lossily decoded as UTF-8.
    pub body: String,
}

impl TriggerResponse {
    /// The `error` message of a refusal, or the raw body.
    pub fn error_message(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| self.body.clone())
    }
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum TriggerClientError {
    /// The base URL is not `http://…`.
    #[error("invalid URL {0:?} (only http:// is supported)")]
    InvalidUrl(String),
    /// Connecting or exchanging failed.
    #[error("request failed: {0}")]
    Request(String),
    /// No response in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// One app's trigger endpoint.
#[derive(Debug, Clone)]
pub struct TriggerClient {
    client: Client<HttpConnector, Full<Bytes>>,
    /// One permit per connection; a request holds one from sending to the end of its body.
    connections: Arc<Semaphore>,
    base: String,
    app: App,
}

impl TriggerClient {
    /// A client for `base` (`http://host:port`) signing as `app`, with at most
    /// [`DEFAULT_CONNECTIONS`] requests in flight.
    pub fn new(base: &str, app: App) -> Result<Self, TriggerClientError> {
        Self::with_connections(base, app, DEFAULT_CONNECTIONS)
    }

    /// As [`TriggerClient::new`], with at most `connections` (at least 1)
    /// requests in flight; more wait for a free connection.
    pub fn with_connections(
        base: &str,
        app: App,
        connections: usize,
    ) -> Result<Self, TriggerClientError> {
        if !base.starts_with("http://") {
            return Err(TriggerClientError::InvalidUrl(base.to_owned()));
        }
        let connections = connections.max(1);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(connections)
            .build(connector);
        Ok(TriggerClient {
            client,
            connections: Arc::new(Semaphore::new(connections)),
            base: base.trim_end_matches('/').to_owned(),
            app,
        })
    }

    /// Triggers `event` on `channels` with `data` (sent as the `data` string),
    /// leaving out `socket_id` if given.
    pub async fn trigger(
        &self,
        channels: &[String],
        event: &str,
        data: String,
        socket_id: Option<&str>,
    ) -> Result<TriggerResponse, TriggerClientError> {
        let mut body = serde_json::json!({ "name": event, "channels": channels, "data": data });
        if let Some(socket_id) = socket_id {
            body["socket_id"] = socket_id.into();
        }
        let body = body.to_string();
        let path = format!("/apps/{}/events", self.app.id);
        let now_secs = crate::clock::now_secs();
        let query = signing::sign("POST", &path, &[], body.as_bytes(), &self.app, now_secs);
        let url = format!("{}{path}?{query}", self.base);
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| TriggerClientError::InvalidUrl(url.clone()))?;
        let request = hyper::Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TriggerClientError::Request(e.to_string()))?;
        let exchange = async {
            let _connection = self
                .connections
                .acquire()
                .await
                .map_err(|e| TriggerClientError::Request(e.to_string()))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| TriggerClientError::Request(format!("{e:#}")))?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| TriggerClientError::Request(e.to_string()))?
                .to_bytes();
            Ok(TriggerResponse {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| TriggerClientError::Timeout(REQUEST_TIMEOUT))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Connections accepted, and the most requests being answered at once.
    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    /// The length of the first whole request in `buf` (head and body), if there is one.
    fn whole_request(buf: &[u8]) -> Option<usize> {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let body = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        (buf.len() >= end + body).then_some(end + body)
    }

    /// Answers `200 {}` to each request on `stream`, holding it for a moment so
    /// that concurrent requests overlap.
    async fn answer(mut stream: TcpStream, seen: Arc<Seen>) {
        let mut buf = Vec::new();
        loop {
            let len = loop {
                if let Some(len) = whole_request(&buf) {
                    break len;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            buf.drain(..len);
            let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            seen.in_flight.fetch_sub(1, Ordering::SeqCst);
            let response =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    #[tokio::test]
    async fn requests_beyond_the_bound_wait_for_a_kept_alive_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Seen::default());
        let server_seen = seen.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                server_seen.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(stream, server_seen.clone()));
            }
        });
        let app = App {
            id: "1".into(),
            key: "key".into(),
            secret: "secret".into(),
            limits: Default::default(),
        };
        let client = TriggerClient::with_connections(&base, app, 3).unwrap();
        let triggers: Vec<_> = (0..12)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    client
                        .trigger(&["c".to_owned()], "e", i.to_string(), None)
                        .await
                })
            })
            .collect();
        for trigger in triggers {
            assert_eq!(trigger.await.unwrap().unwrap().status, 200);
        }
        assert!(seen.most_in_flight.load(Ordering::SeqCst) <= 3);
        assert!(
            seen.most_in_flight.load(Ordering::SeqCst) >= 2,
            "requests should overlap"
        );
        assert!(
            seen.connections.load(Ordering::SeqCst) <= 3,
            "opened {} connections",
            seen.connections.load(Ordering::SeqCst)
        );
        server.abort();
    }
}
