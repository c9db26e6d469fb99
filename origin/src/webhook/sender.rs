//! `WebhookSender`: one signed `POST` of one batch to one endpoint, and what
//! came of it.
//!
//! Safe by default: only the configured `http://` or `https://` URL is
//! requested (an https receiver's certificate and host name are always
//! verified, see [`super::tls`]), a redirect is never followed (a `3xx` is a
//! failure, retried like any other), at most [`MAX_RESPONSE_BYTES`] of a
//! response body are read and then dropped, and the answer never goes
//! further than the outcome's status code.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pushwire_shared::App;
use pushwire_shared::webhook::{SignedWebhook, WebhookEvent, WebhookUrl};
use rustls::RootCertStore;
use tokio::time::Instant;

use super::tls::{self, HttpsUnavailable};

/// How long one attempt may take, connecting and reading the answer included.
/// Pusher asks receivers to answer within 4 s; the extra second covers
/// connecting, so a receiver built for Pusher is never cut off.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a response body is read. The body means nothing to pushwire;
/// reading a little lets a short answer end cleanly and its connection be
/// reused, while a receiver that streams without end costs this much at most.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024;

/// The `User-Agent` sent, so that receivers' logs tell pushwire's requests apart.
const USER_AGENT: &str = concat!("pushwire/", env!("CARGO_PKG_VERSION"));

/// A receiver accepted the batch: it answered `2xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    /// The status it answered.
    pub(crate) status: u16,
}

/// Why an attempt did not deliver its batch.
///
/// Messages hold no URL: callers log the endpoint's URL themselves, through
/// its `Display`, which leaves out the query string (often a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    /// The URL is `https://`, and no receiver's certificate could be
    /// verified (no root certificate was loaded): nothing was sent.
    #[error("https webhooks cannot be sent: {0}")]
    HttpsUnavailable(HttpsUnavailable),
    /// The URL is one the HTTP client cannot request.
    #[error("the webhook URL cannot be requested: {0}")]
    InvalidUrl(String),
    /// Connecting, sending or reading the answer's head failed.
    #[error("webhook request failed: {0}")]
    Network(String),
    /// The TLS handshake failed: most often the receiver's certificate was
    /// refused (not signed by a trusted root, expired, or not for its host).
    #[error("TLS with the receiver failed: {0}")]
    Tls(String),
    /// No answer within the timeout.
    #[error("no answer to the webhook within {0:?}")]
    Timeout(Duration),
    /// The receiver answered with a redirect, which is not followed: the
    /// configured URL is the only place a webhook goes.
    #[error("the receiver answered {status} (a redirect, not followed)")]
    Redirect {
        /// The `3xx` status.
        status: u16,
    },
    /// The receiver answered with a status other than `2xx` or `3xx`.
    #[error("the receiver answered {status}")]
    Status {
        /// The status.
        status: u16,
    },
}

impl SendError {
    /// Whether a later attempt may succeed.
    ///
    /// Every answer but `2xx` is retried, `4xx` included, as Pusher does: the
    /// receivers pushwire serves were written for Pusher, and the `4xx` they
    /// answer in practice pass (`404` while a new version deploys, `401` while
    /// a secret rotates, `408`, `429`); retrying a lasting one costs a few
    /// requests over the retry window. A refused certificate is retried too:
    /// it is often mended within minutes (a renewal, a deployment). Only a
    /// URL this sender cannot request at all is final.
    pub(crate) fn is_retryable(&self) -> bool {
        !matches!(
            self,
            SendError::HttpsUnavailable(_) | SendError::InvalidUrl(_)
        )
    }
}

/// Sends webhook batches over pools of kept-alive HTTP/1.1 connections, one
/// for `http://` and one for `https://`.
#[derive(Debug, Clone)]
pub(crate) struct WebhookSender {
    http: Client<HttpConnector, Full<Bytes>>,
    /// The https client, or why there is none.
    https: Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>, HttpsUnavailable>,
    timeout: Duration,
}

impl WebhookSender {
    /// A sender whose attempts each take at most [`REQUEST_TIMEOUT`], with
    /// no root certificate (every https receiver's certificate is refused).
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_timeout(REQUEST_TIMEOUT)
    }

    /// A sender whose attempts each take at most `timeout`, with no root
    /// certificate (every https receiver's certificate is refused).
    #[cfg(test)]
    pub(crate) fn with_timeout(timeout: Duration) -> Self {
        Self::with_roots(timeout, Ok(RootCertStore::empty()))
    }

    /// A sender for `urls`, whose attempts each take at most `timeout`: the
    /// system's root certificates are loaded if any of them is https.
    pub(crate) fn for_urls<'a>(
        timeout: Duration,
        urls: impl Iterator<Item = &'a WebhookUrl>,
    ) -> Self {
        Self::with_roots(timeout, tls::roots_for(urls))
    }

    /// A sender whose attempts each take at most `timeout`, verifying https
    /// receivers against `roots`, or refusing every https URL with its error.
    pub(crate) fn with_roots(
        timeout: Duration,
        roots: Result<RootCertStore, HttpsUnavailable>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // The legacy client follows no redirect by itself; nothing here adds a layer that would.
        let http = Client::builder(TokioExecutor::new()).build(connector.clone());
        let https = roots.and_then(tls::client_config).map(|config| {
            // The TCP connector refuses `https://` URIs unless told that a TLS
            // layer above it takes care of them.
            connector.enforce_http(false);
            let connector = HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_only()
                .enable_http1()
                .wrap_connector(connector);
            Client::builder(TokioExecutor::new()).build(connector)
        });
        WebhookSender {
            http,
            https,
            timeout,
        }
    }

    /// Sends `events` to `url`, signed as `app` and stamped now.
    ///
    /// Each attempt is stamped and signed anew: the PyPI SDK refuses a body
    /// whose `time_ms` is more than 300 s old, and retries last longer.
    pub(crate) async fn send(
        &self,
        url: &WebhookUrl,
        app: &App,
        events: &[WebhookEvent],
    ) -> Result<Delivered, SendError> {
        let hook = SignedWebhook::new(app, crate::clock::now_ms(), events);
        let outcome = self.post(url, hook).await;
        match &outcome {
            Ok(delivered) => tracing::debug!(
                url = %url,
                status = delivered.status,
                events = events.len(),
                "webhook delivered"
            ),
            Err(error) => tracing::debug!(
                url = %url,
                %error,
                events = events.len(),
                "webhook not delivered"
            ),
        }
        outcome
    }

    /// Posts `hook` to `url`: one attempt, no retry.
    async fn post(&self, url: &WebhookUrl, hook: SignedWebhook) -> Result<Delivered, SendError> {
        let https = match (&self.https, url.is_https()) {
            (Err(unavailable), true) => {
                return Err(SendError::HttpsUnavailable(unavailable.clone()));
            }
            (Ok(https), true) => Some(https),
            (_, false) => None,
        };
        let uri: hyper::Uri = url
            .as_str()
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| SendError::InvalidUrl(e.to_string()))?;
        let mut request = hyper::Request::post(uri).header(hyper::header::USER_AGENT, USER_AGENT);
        for (name, value) in hook.headers() {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(hook.into_body())))
            .map_err(|e| SendError::InvalidUrl(e.to_string()))?;

        let deadline = Instant::now() + self.timeout;
        let response = match https {
            Some(https) => https.request(request),
            None => self.http.request(request),
        };
        let response = tokio::time::timeout_at(deadline, response)
            .await
            .map_err(|_| SendError::Timeout(self.timeout))?
            .map_err(|e| match tls::tls_cause(&e) {
                Some(tls) => SendError::Tls(tls.to_string()),
                None => SendError::Network(error_chain(&e)),
            })?;
        let status = response.status();
        // The status decides; the body is read only to end the exchange cleanly.
        drain(response.into_body(), deadline).await;
        if status.is_success() {
            Ok(Delivered {
                status: status.as_u16(),
            })
        } else if status.is_redirection() {
            Err(SendError::Redirect {
                status: status.as_u16(),
            })
        } else {
            Err(SendError::Status {
                status: status.as_u16(),
            })
        }
    }
}

/// Reads and drops `body` until [`MAX_RESPONSE_BYTES`] have come (give or take
/// one read of hyper's buffer), it ends, or `deadline` passes; dropping the
/// rest closes the connection instead of reading it.
async fn drain(mut body: Incoming, deadline: Instant) {
    let read = async {
        let mut seen = 0usize;
        while seen <= MAX_RESPONSE_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, read).await;
}

/// An error and its causes, `: `-separated: hyper's own message alone says
/// only "client error (Connect)".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
