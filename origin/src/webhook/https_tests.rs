//! `WebhookSender` and `https://` URLs that fail before a request is made:
//! no root certificate to verify against, or a receiver that does not speak
//! TLS. Real handshakes, trusted and refused, are in the end-to-end tests.

use std::time::Duration;

use pushwire_shared::webhook::WebhookUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::tests::{FakeReceiver, answer, app, events};
use super::{Delivered, HttpsUnavailable, SendError, WebhookSender};

/// A sender that loaded no root certificate and says so for https URLs.
pub(super) fn without_roots() -> WebhookSender {
    let unavailable = HttpsUnavailable::NoRoots {
        from: "SSL_CERT_FILE=/nowhere.pem".into(),
        problems: String::new(),
    };
    WebhookSender::with_roots(Duration::from_secs(1), Err(unavailable))
}

#[tokio::test]
async fn without_roots_https_urls_are_refused_for_good_before_any_request() {
    let receiver = FakeReceiver::start(answer("200 OK", "", "")).await;
    let sender = without_roots();
    let https = WebhookUrl::new(&format!("https://{}/", receiver.addr)).unwrap();
    let error = sender.send(&https, &app(), &events()).await.unwrap_err();
    assert!(
        matches!(&error, SendError::HttpsUnavailable(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("SSL_CERT_FILE"), "{error}");
    assert!(!error.is_retryable());
    assert!(receiver.received().is_empty());
    // http:// still goes out.
    let outcome = sender.send(&receiver.url("/"), &app(), &events()).await;
    assert_eq!(outcome, Ok(Delivered { status: 200 }));
}

#[tokio::test]
async fn a_receiver_that_does_not_speak_tls_is_a_tls_error_to_retry() {
    // A plain-HTTP server, as when `https://` names an http port: it answers
    // the handshake with a plain-text response.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut hello = [0u8; 512];
                let _ = stream.read(&mut hello).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let url = WebhookUrl::new(&format!("https://{addr}/")).unwrap();
    let error = WebhookSender::new()
        .send(&url, &app(), &events())
        .await
        .unwrap_err();
    server.abort();
    assert!(matches!(&error, SendError::Tls(_)), "{error:?}");
    assert!(error.is_retryable());
}
