//! Signed trigger requests at a fixed rate, over a keep-alive connection pool.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pushwire_shared::{App, signing};

/// How long one trigger request may take before it counts as failed.
pub const TRIGGER_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled HTTP client for one app's trigger endpoint.
#[derive(Debug, Clone)]
pub struct TriggerClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    app: App,
}

impl TriggerClient {
    /// A client for `base` (`http://host:port`) signing as `app`.
    pub fn new(base: &str, app: App) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build_http();
        TriggerClient {
            client,
            base: base.trim_end_matches('/').to_owned(),
            app,
        }
    }

    /// Triggers `event` on `channel` with `data`; returns the HTTP status (0: no response).
    pub async fn trigger(&self, channel: &str, event: &str, data: String) -> u16 {
        let body =
            serde_json::json!({ "name": event, "channel": channel, "data": data }).to_string();
        let path = format!("/apps/{}/events", self.app.id);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let query = signing::sign("POST", &path, &[], body.as_bytes(), &self.app, now);
        let Ok(uri) = format!("{}{path}?{query}", self.base).parse::<hyper::Uri>() else {
            return 0;
        };
        let Ok(request) = hyper::Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
        else {
            return 0;
        };
        let exchange = async {
            let response = self.client.request(request).await.ok()?;
            let status = response.status().as_u16();
            // Drain the body so the connection returns to the pool.
            let _ = response.into_body().collect().await;
            Some(status)
        };
        tokio::time::timeout(TRIGGER_TIMEOUT, exchange)
            .await
            .ok()
            .flatten()
            .unwrap_or(0)
    }
}
