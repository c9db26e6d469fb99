//! The connection loop's timers and closing, over an in-memory stream with
//! paused time: what an idle client sees at 120 s and 150 s, in milliseconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pushwire_shared::AppList;
use serde_json::Value;
use tokio::io::DuplexStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::connection;
use super::rooms::PusherRooms;
use crate::broker::embedded::protocol::{Reply, Request};
use crate::broker::embedded::{EmbeddedBroker, Transport};
use crate::broker::{Broker, BrokerError, BrokerFuture};
use crate::worker::{ChannelRegistry, SocketIdGenerator, WorkerContext, catch_up};

/// A broker whose server is gone: these tests never reach it.
#[derive(Debug)]
struct NoServer;

impl Transport for NoServer {
    fn request(&self, _: Request) -> BrokerFuture<'_, Reply> {
        Box::pin(async { Err(BrokerError::Closed) })
    }
}

const TIMEOUT: Duration = Duration::from_secs(120);

/// A connection served on one end of a pipe; the client's end, and the
/// sender that closes the worker.
async fn connected() -> (WebSocketStream<DuplexStream>, watch::Sender<bool>) {
    connected_with(WebSocketConfig::default()).await
}

/// [`connected`], the server's end configured by `config`.
async fn connected_with(
    config: WebSocketConfig,
) -> (WebSocketStream<DuplexStream>, watch::Sender<bool>) {
    let (inbound, _) = tokio::sync::mpsc::channel(1);
    let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new(Arc::new(NoServer), inbound));
    let apps = AppList::parse("1:key:secret").unwrap();
    let app = apps.single().unwrap().clone();
    let ctx = Arc::new(WorkerContext {
        apps: Arc::new(apps),
        registry: ChannelRegistry::new(broker.clone()),
        socket_ids: SocketIdGenerator::with_node(7),
        broker,
        catch_ups: catch_up::CatchUps::channel().0,
        event_ids: Default::default(),
        replay_patience: Duration::from_secs(1),
        wanted_webhooks: Arc::new(HashMap::new()),
        connections: crate::worker::app_connections::AppConnections::new(1),
    });
    let (server, client) = tokio::io::duplex(64 * 1024);
    let (closing_tx, closing) = watch::channel(false);
    tokio::spawn(async move {
        let ws = WebSocketStream::from_raw_socket(server, Role::Server, Some(config)).await;
        let rooms = Arc::new(PusherRooms::default());
        connection::run(ws, app, ctx, rooms, TIMEOUT, closing).await;
    });
    let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
    let hello = next(&mut client).await;
    assert_eq!(hello["event"], "pusher:connection_established");
    (client, closing_tx)
}

/// The next text message, parsed; `Null` for a close frame.
async fn next(client: &mut WebSocketStream<DuplexStream>) -> Value {
    match client.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).unwrap(),
        Some(Ok(Message::Close(frame))) => {
            serde_json::json!({"close": frame.map(|f| u16::from(f.code))})
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_pinged_then_closed_with_4201() {
    let (mut client, _closing) = connected().await;
    let start = Instant::now();
    assert_eq!(next(&mut client).await["event"], "pusher:ping");
    assert!(start.elapsed() >= TIMEOUT);
    let error = next(&mut client).await;
    assert_eq!(error["data"]["code"], 4201, "{error}");
    assert!(start.elapsed() >= TIMEOUT + Duration::from_secs(30));
    assert_eq!(next(&mut client).await["close"], 4201);
}

#[tokio::test(start_paused = true)]
async fn any_message_postpones_the_ping_and_pings_are_answered() {
    let (mut client, _closing) = connected().await;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(100)).await;
    let ping = r#"{"event":"pusher:ping","data":{}}"#;
    client.send(Message::text(ping)).await.unwrap();
    assert_eq!(next(&mut client).await["event"], "pusher:pong");
    assert_eq!(next(&mut client).await["event"], "pusher:ping");
    assert!(start.elapsed() >= Duration::from_secs(100) + TIMEOUT);
    // Answering keeps the connection: the next ping comes a timeout later.
    let pong = r#"{"event":"pusher:pong","data":{}}"#;
    client.send(Message::text(pong)).await.unwrap();
    assert_eq!(next(&mut client).await["event"], "pusher:ping");
}

#[tokio::test(start_paused = true)]
async fn a_closing_worker_tells_its_connections_to_reconnect() {
    let (mut client, closing) = connected().await;
    closing.send(true).unwrap();
    assert_eq!(next(&mut client).await["data"]["code"], 4200);
    assert_eq!(next(&mut client).await["close"], 4200);
}

#[tokio::test(start_paused = true)]
async fn a_message_over_the_cap_closes_with_1009() {
    let cap = WebSocketConfig::default()
        .max_message_size(Some(100))
        .max_frame_size(Some(100));
    let (mut client, _closing) = connected_with(cap).await;
    let big = format!(r#"{{"event":"pusher:ping","data":"{}"}}"#, "x".repeat(200));
    client.send(Message::text(big)).await.unwrap();
    let error = next(&mut client).await;
    assert_eq!(error["event"], "pusher:error", "{error}");
    assert_eq!(next(&mut client).await["close"], 1009);
}

#[tokio::test(start_paused = true)]
async fn a_refused_signin_closes_with_4009() {
    let (mut client, _closing) = connected().await;
    let signin =
        r#"{"event":"pusher:signin","data":{"auth":"key:00","user_data":"{\"id\":\"u\"}"}}"#;
    client.send(Message::text(signin)).await.unwrap();
    let error = next(&mut client).await;
    assert_eq!(error["data"]["code"], 4009, "{error}");
    let message = error["data"]["message"].as_str().unwrap();
    assert!(message.contains("invalid signin signature"), "{message}");
    assert_eq!(next(&mut client).await["close"], 4009);
}

#[tokio::test(start_paused = true)]
async fn a_signin_the_broker_cannot_take_closes_with_4200() {
    // A valid signature (the first connection's id is 7.1), but joining the
    // user's channel needs the broker, which is gone: reconnect and retry.
    let (mut client, _closing) = connected().await;
    let apps = AppList::parse("1:key:secret").unwrap();
    let user_data = r#"{"id":"u"}"#;
    let auth = pushwire_shared::user_auth::sign(apps.single().unwrap(), "7.1", user_data);
    let signin = serde_json::json!({
        "event": "pusher:signin",
        "data": {"auth": auth, "user_data": user_data},
    });
    client
        .send(Message::text(signin.to_string()))
        .await
        .unwrap();
    assert_eq!(next(&mut client).await["data"]["code"], 4200);
    assert_eq!(next(&mut client).await["close"], 4200);
}
