//! A minimal HTTP/1.1 client for the CLI (plain `http://` only).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long one request may take in all.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response's status and body text.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body, lossily decoded as UTF-8.
    pub body: String,
}

/// Why a request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The URL is not a valid `http://` URL.
    #[error("invalid URL {0:?} (only http:// is supported)")]
    InvalidUrl(String),
    /// Connecting or exchanging failed.
    #[error("request failed: {0}")]
    Request(String),
    /// No response in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// POSTs `body` as JSON to `url`.
pub async fn post_json(url: &str, body: String) -> Result<Response, HttpClientError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| HttpClientError::InvalidUrl(url.to_owned()))?;
    if uri.scheme_str() != Some("http") {
        return Err(HttpClientError::InvalidUrl(url.to_owned()));
    }
    let request = hyper::Request::post(uri)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| HttpClientError::Request(e.to_string()))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| HttpClientError::Request(format!("{e:#}")))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| HttpClientError::Request(e.to_string()))?
            .to_bytes();
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| HttpClientError::Timeout(REQUEST_TIMEOUT))?
}
