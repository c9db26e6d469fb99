//! `WebhookSender` against a fake receiver on 127.0.0.1 that answers as told:
//! what it sends, and how each kind of answer (or none) is classified. The
//! receiver and `app()` serve the dispatcher's tests too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pushwire_shared::webhook::{WebhookBody, WebhookEvent, WebhookUrl, verify_signature};
use pushwire_shared::{App, ChannelName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Delivered, RetrySchedule, SendError, WebhookSender};

/// How the fake receiver answers every request.
#[derive(Debug, Clone)]
pub(super) enum Reply {
    /// These bytes, then the next request on the connection.
    Raw(String),
    /// Nothing, ever.
    Silence,
    /// `200` announcing a huge body, then as much of it as the client takes.
    Endless,
    /// `500` to the first this many requests, `204` to the others.
    FailFirst(usize),
}

/// One request as the receiver read it.
#[derive(Debug, Clone)]
pub(super) struct Received {
    /// Request line and headers, names as sent.
    head: String,
    pub(super) body: Vec<u8>,
}

impl Received {
    /// The value of header `name` (any case).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// A receiver on a free loopback port; stopped on drop.
pub(super) struct FakeReceiver {
    pub(super) addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl FakeReceiver {
    pub(super) async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, reply.clone(), seen.clone()));
            }
        });
        FakeReceiver {
            addr,
            received,
            task,
        }
    }

    pub(super) fn url(&self, path: &str) -> WebhookUrl {
        WebhookUrl::new(&format!("http://{}{path}", self.addr)).unwrap()
    }

    pub(super) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, reply: Reply, seen: Arc<Mutex<Vec<Received>>>) {
    let mut buf = Vec::new();
    loop {
        let request = loop {
            if let Some(request) = whole_request(&mut buf) {
                break request;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let count = {
            let mut seen = seen.lock().unwrap();
            seen.push(request);
            seen.len()
        };
        match &reply {
            Reply::FailFirst(failing) => {
                let status = if count <= *failing {
                    "500 Internal Server Error"
                } else {
                    "204 No Content"
                };
                let bytes = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                if stream.write_all(bytes.as_bytes()).await.is_err() {
                    return;
                }
            }
            Reply::Raw(bytes) => {
                if stream.write_all(bytes.as_bytes()).await.is_err() {
                    return;
                }
            }
            Reply::Silence => std::future::pending().await,
            Reply::Endless => {
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                while stream.write_all(&chunk).await.is_ok() {}
                return;
            }
        }
    }
}

/// Takes the first whole request (head and `Content-Length` body) off `buf`.
fn whole_request(buf: &mut Vec<u8>) -> Option<Received> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    if buf.len() < end + length {
        return None;
    }
    let body = buf[end..end + length].to_vec();
    buf.drain(..end + length);
    Some(Received { head, body })
}

pub(super) fn answer(status_line: &str, extra_headers: &str, body: &str) -> Reply {
    Reply::Raw(format!(
        "HTTP/1.1 {status_line}\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    ))
}

pub(super) fn app() -> App {
    App {
        id: "1000001".into(),
        key: "app-key".into(),
        secret: "app-secret".into(),
        limits: Default::default(),
    }
}

pub(super) fn events() -> Vec<WebhookEvent> {
    let channel = ChannelName::new("presence-room").unwrap();
    vec![
        WebhookEvent::ChannelOccupied {
            channel: channel.clone(),
        },
        WebhookEvent::MemberAdded {
            channel,
            user_id: "u1".into(),
        },
    ]
}

#[tokio::test]
async fn a_2xx_delivers_a_batch_signed_as_pusher_signs_it() {
    let receiver = FakeReceiver::start(answer("204 No Content", "", "")).await;
    let sender = WebhookSender::new();
    let before = crate::clock::now_ms();
    let outcome = sender
        .send(&receiver.url("/hooks?token=t"), &app(), &events())
        .await;
    assert_eq!(outcome, Ok(Delivered { status: 204 }));

    let [request] = &receiver.received()[..] else {
        panic!("expected one request: {:?}", receiver.received());
    };
    assert!(
        request.head.starts_with("POST /hooks?token=t HTTP/1.1\r\n"),
        "{}",
        request.head
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-pusher-key"), Some("app-key"));
    let signature = request.header("x-pusher-signature").expect("a signature");
    assert!(verify_signature("app-secret", &request.body, signature));
    let body: WebhookBody = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body.events, events());
    assert!(
        (before..=crate::clock::now_ms()).contains(&body.time_ms),
        "time_ms {} is not the time of sending",
        body.time_ms
    );
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let elsewhere = FakeReceiver::start(answer("200 OK", "", "")).await;
    for status in [
        "301 Moved Permanently",
        "302 Found",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let location = format!("location: http://{}/\r\n", elsewhere.addr);
        let receiver = FakeReceiver::start(answer(status, &location, "")).await;
        let error = WebhookSender::new()
            .send(&receiver.url("/"), &app(), &events())
            .await
            .unwrap_err();
        let code: u16 = status[..3].parse().unwrap();
        assert_eq!(error, SendError::Redirect { status: code });
        assert!(error.is_retryable());
        assert_eq!(receiver.received().len(), 1);
    }
    assert!(elsewhere.received().is_empty(), "a redirect was followed");
}

#[tokio::test]
async fn every_other_status_is_a_failure_to_retry() {
    for status in [
        "400 Bad Request",
        "401 Unauthorized",
        "404 Not Found",
        "429 Too Many Requests",
        "500 Internal Server Error",
        "503 Service Unavailable",
    ] {
        let receiver = FakeReceiver::start(answer(status, "", "{\"error\":\"no\"}")).await;
        let error = WebhookSender::new()
            .send(&receiver.url("/"), &app(), &events())
            .await
            .unwrap_err();
        assert_eq!(
            error,
            SendError::Status {
                status: status[..3].parse().unwrap()
            }
        );
        assert!(error.is_retryable(), "{error}");
        assert!(
            !error.to_string().contains("no\""),
            "the answer's body leaked: {error}"
        );
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    let receiver = FakeReceiver::start(Reply::Silence).await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let error = WebhookSender::with_timeout(timeout)
        .send(&receiver.url("/"), &app(), &events())
        .await
        .unwrap_err();
    assert_eq!(error, SendError::Timeout(timeout));
    assert!(error.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_unreachable_receiver_is_a_network_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = WebhookUrl::new(&format!("http://127.0.0.1:{port}/")).unwrap();
    let error = WebhookSender::new()
        .send(&url, &app(), &events())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SendError::Network(why) if why.contains("onnect")),
        "{error}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn an_endless_answer_is_cut_at_the_cap() {
    let receiver = FakeReceiver::start(Reply::Endless).await;
    let started = Instant::now();
    let outcome = WebhookSender::with_timeout(Duration::from_secs(20))
        .send(&receiver.url("/"), &app(), &events())
        .await;
    assert_eq!(outcome, Ok(Delivered { status: 200 }));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "read far past the cap: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_status_decides_even_when_the_body_never_comes() {
    let receiver = FakeReceiver::start(Reply::Raw(
        "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n".into(),
    ))
    .await;
    let outcome = WebhookSender::with_timeout(Duration::from_millis(300))
        .send(&receiver.url("/"), &app(), &events())
        .await;
    assert_eq!(outcome, Ok(Delivered { status: 200 }));
}

#[tokio::test]
async fn failed_attempts_are_retried_on_schedule_each_signed_anew() {
    let receiver = FakeReceiver::start(Reply::FailFirst(2)).await;
    let schedule = RetrySchedule::new(
        Duration::from_millis(10),
        Duration::from_millis(40),
        Duration::from_secs(10),
    );
    let sender = WebhookSender::new();
    let first = Instant::now();
    let mut failures = 0;
    let delivered = loop {
        match sender.send(&receiver.url("/"), &app(), &events()).await {
            Ok(delivered) => break delivered,
            Err(error) => {
                assert_eq!(error, SendError::Status { status: 500 });
                failures += 1;
                let pause = schedule
                    .next_pause(failures, first.elapsed(), 0.5)
                    .expect("well within the window");
                tokio::time::sleep(pause).await;
            }
        }
    };
    assert_eq!((delivered, failures), (Delivered { status: 204 }, 2));
    let attempts = receiver.received();
    assert_eq!(attempts.len(), 3);
    for attempt in &attempts {
        let signature = attempt.header("x-pusher-signature").unwrap();
        assert!(verify_signature("app-secret", &attempt.body, signature));
    }
}

#[test]
fn every_url_the_config_accepts_is_one_the_client_can_request() {
    for url in [
        "http://127.0.0.1:9000/hooks",
        "HTTP://hooks.example.com./a/b?token=x&y=%20z;k=v,w",
        "http://[::1]:8080/p?q=[a]",
        "http://my_host.internal:65535/~user/!$&'()*+,;=:@",
        "http://h?",
        "https://hooks.example.com:8443/p?q",
    ] {
        let url = WebhookUrl::new(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(url.as_str().parse::<hyper::Uri>().is_ok(), "{url:?}");
    }
}
