//! Socket.IO handlers: handshake, `subscribe`, `unsubscribe`, `signin`, client events, disconnect.

use std::sync::Arc;

use pushwire_shared::ChannelName;
use pushwire_shared::client_protocol::{
    self, AckError, SIGNIN, SUBSCRIBE, SubscribeRequest, UNSUBSCRIBE, subscribed_ack,
};
use pushwire_shared::event::CONNECTION_ESTABLISHED;
use pushwire_shared::keys::KeySpace;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;

use super::cache;
use super::replay::replay;
use super::session::{HandshakeError, SocketSession, handshake_channels, resolve_app};
use super::subscription::{admit, forget};
use super::{WorkerContext, client_events, users};

/// Installs the handlers of the `/` namespace.
pub(crate) fn register(io: &SocketIo, ctx: Arc<WorkerContext>) {
    let connect_ctx = ctx.clone();
    io.ns(
        "/",
        (move |s: SocketRef| on_connect(s, connect_ctx)).with(
            move |s: SocketRef, TryData(auth): TryData<Value>| authenticate(s, auth.ok(), ctx),
        ),
    );
}

/// The `subscribe` payloads of the handshake's `auth.channels`, waiting for `on_connect`.
#[derive(Debug, Clone)]
struct HandshakeChannels(Vec<Value>);

/// Connect middleware: picks the app (or refuses with `connect_error`) and installs
/// the event handlers. Handlers are installed here, before the server sends the
/// CONNECT packet, so a `subscribe` emitted the instant the client is connected
/// is never dropped.
async fn authenticate(
    s: SocketRef,
    auth: Option<Value>,
    ctx: Arc<WorkerContext>,
) -> Result<(), HandshakeError> {
    let refused =
        |e: &HandshakeError| tracing::debug!(sid = %s.id, error = %e, "handshake refused");
    let app = resolve_app(&ctx.apps, auth.as_ref())
        .inspect_err(refused)?
        .clone();
    let channels = handshake_channels(auth.as_ref()).inspect_err(refused)?;
    let slot = ctx
        .connections
        .open(&app)
        .map_err(HandshakeError::from)
        .inspect_err(refused)?;
    // Held as long as the socket: its extensions go with it.
    s.extensions.insert(Arc::new(slot));
    let session = Arc::new(SocketSession::new(app, ctx.socket_ids.next()));
    s.extensions.insert(session.clone());
    if !channels.is_empty() {
        s.extensions.insert(HandshakeChannels(channels));
    }

    s.on(SUBSCRIBE, {
        let (ctx, session) = (ctx.clone(), session.clone());
        move |s: SocketRef, TryData(payload): TryData<Value>, ack: AckSender| {
            on_subscribe(s, payload.ok(), ack, ctx, session)
        }
    });
    s.on(UNSUBSCRIBE, {
        let (ctx, session) = (ctx.clone(), session.clone());
        move |s: SocketRef, TryData(payload): TryData<Value>, ack: AckSender| {
            on_unsubscribe(s, payload.ok(), ack, ctx, session)
        }
    });
    s.on(SIGNIN, {
        let (ctx, session) = (ctx.clone(), session.clone());
        move |s: SocketRef, TryData(payload): TryData<Value>, ack: AckSender| {
            on_signin(s, payload.ok(), ack, ctx, session)
        }
    });
    s.on_fallback({
        let (ctx, session) = (ctx.clone(), session.clone());
        move |Event(name): Event, TryData(payload): TryData<Value>, ack: AckSender| {
            client_events::on_event(name, payload.ok(), ack, ctx, session)
        }
    });
    s.on_disconnect(move |s: SocketRef| on_disconnect(s, ctx, session));
    Ok(())
}

/// Joins the socket's own room, subscribes the handshake's channels, then
/// announces `pushwire:connection_established` (with each subscription's result
/// when channels were asked for), so a client that sees it is already subscribed.
async fn on_connect(s: SocketRef, ctx: Arc<WorkerContext>) {
    let Some(session) = s.extensions.get::<Arc<SocketSession>>() else {
        // The middleware always stores a session; without one the socket is unusable.
        tracing::error!(sid = %s.id, "socket connected without a session");
        let _ = s.disconnect();
        return;
    };
    // Its own room, so a trigger's `socket_id` can be left out of a broadcast.
    s.join(session.socket_id.to_string());
    tracing::debug!(sid = %s.id, socket_id = %session.socket_id, app = %session.app.id, "connected");
    let mut established = json!({ "socket_id": session.socket_id });
    if let Some(HandshakeChannels(requests)) = s.extensions.remove::<HandshakeChannels>() {
        let mut results = Vec::with_capacity(requests.len());
        for request in &requests {
            let mut entry = subscribe_ack(&subscribe(&s, Some(request), &ctx, &session).await);
            entry["channel"] = request.get("channel").cloned().unwrap_or(Value::Null);
            results.push(entry);
        }
        established["subscriptions"] = Value::Array(results);
    }
    let _ = s.emit(CONNECTION_ESTABLISHED, &established);
}

fn send_ack(ack: AckSender, reply: Value) {
    // Without an ack callback there is nobody to answer; that is not an error.
    let _ = ack.send(&reply);
}

/// What a successful `subscribe` reports: whether `since` was recovered (when
/// given), the members of a presence channel, and a cache channel's miss.
#[derive(Debug, Default)]
struct Subscribed {
    recovered: Option<bool>,
    presence: Option<Value>,
    /// A cache channel had no event to send on subscribe.
    cache_miss: bool,
}

fn subscribe_ack(result: &Result<Subscribed, AckError>) -> Value {
    match result {
        Ok(subscribed) => {
            let mut ack = subscribed_ack(subscribed.recovered);
            if let Some(presence) = &subscribed.presence {
                ack["presence"] = presence.clone();
            }
            if subscribed.cache_miss {
                ack["cache_miss"] = Value::Bool(true);
            }
            ack
        }
        Err(e) => e.to_ack(),
    }
}

async fn on_subscribe(
    s: SocketRef,
    payload: Option<Value>,
    ack: AckSender,
    ctx: Arc<WorkerContext>,
    session: Arc<SocketSession>,
) {
    let result = subscribe(&s, payload.as_ref(), &ctx, &session).await;
    if let Err(e) = &result {
        tracing::debug!(
            socket_id = %session.socket_id,
            app = %session.app.id,
            channel = channel_named(payload.as_ref()),
            error = %e,
            "subscribe refused"
        );
    }
    send_ack(ack, subscribe_ack(&result));
}

/// The `channel` a refused request named, if it named one (for its log line).
pub(crate) fn channel_named(payload: Option<&Value>) -> Option<&str> {
    payload?.get("channel")?.as_str()
}

/// Subscribes, counting a refusal by its code.
async fn subscribe(
    s: &SocketRef,
    payload: Option<&Value>,
    ctx: &WorkerContext,
    session: &SocketSession,
) -> Result<Subscribed, AckError> {
    let result = try_subscribe(s, payload, ctx, session).await;
    if let Err(e) = &result {
        crate::metrics::worker().subscribe_refused(&session.app.id, e.code as u16);
    }
    result
}

async fn try_subscribe(
    s: &SocketRef,
    payload: Option<&Value>,
    ctx: &WorkerContext,
    session: &SocketSession,
) -> Result<Subscribed, AckError> {
    let req = SubscribeRequest::parse(payload)?;
    let mut channels = session.channels.lock().await;
    if channels.contains(&req.channel) {
        // Already subscribed: idempotent, and it has missed nothing since then.
        return Ok(Subscribed::default());
    }
    let presence = admit(&channels, &req, ctx, session).await?;
    let app = session.app.id.as_str();
    let room = KeySpace::DEFAULT.channel(app, &req.channel);
    let mut cache_miss = false;
    let recovered = match &req.since {
        None if req.channel.is_cache() => {
            match cache::serve(s, ctx, session, &req.channel, &room).await {
                Ok(cached) => cache_miss = !cached,
                Err(e) => {
                    forget(ctx, session, &req.channel).await;
                    return Err(e);
                }
            }
            None
        }
        None => {
            s.join(room);
            None
        }
        Some(since) => match replay(s, ctx, session, &req.channel, &room, since).await {
            Ok(recovered) => Some(recovered),
            Err(e) => {
                forget(ctx, session, &req.channel).await;
                return Err(e);
            }
        },
    };
    channels.insert(req.channel);
    Ok(Subscribed {
        recovered,
        presence,
        cache_miss,
    })
}

/// `signin`: acks `{"ok": true, "user_data"}` once the socket is on its
/// user's channel, or an error ack; a refused socket stays connected.
async fn on_signin(
    s: SocketRef,
    payload: Option<Value>,
    ack: AckSender,
    ctx: Arc<WorkerContext>,
    session: Arc<SocketSession>,
) {
    let reply = match users::sign_in(payload.as_ref(), &ctx, &session, |room| s.join(room)).await {
        Ok(signed_in) => json!({ "ok": true, "user_data": signed_in.user_data }),
        Err(e) => {
            tracing::debug!(socket_id = %session.socket_id, app = %session.app.id, error = %e, "signin refused");
            e.to_ack()
        }
    };
    send_ack(ack, reply);
}

async fn on_unsubscribe(
    s: SocketRef,
    payload: Option<Value>,
    ack: AckSender,
    ctx: Arc<WorkerContext>,
    session: Arc<SocketSession>,
) {
    let result = match client_protocol::parse_unsubscribe(payload.as_ref()) {
        Ok(channel) => {
            leave(&s, &ctx, &session, &channel).await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    send_ack(ack, client_protocol::ack(&result));
}

async fn leave(s: &SocketRef, ctx: &WorkerContext, session: &SocketSession, channel: &ChannelName) {
    // Held until the registry is updated, like `subscribe`: a subscribe of the same
    // channel racing this unsubscribe must not find the room half left.
    let mut channels = session.channels.lock().await;
    if channels.remove(channel) {
        s.leave(KeySpace::DEFAULT.channel(&session.app.id, channel));
        forget(ctx, session, channel).await;
    }
}

async fn on_disconnect(s: SocketRef, ctx: Arc<WorkerContext>, session: Arc<SocketSession>) {
    let channels = std::mem::take(&mut *session.channels.lock().await);
    for channel in channels {
        forget(&ctx, &session, &channel).await;
    }
    tracing::debug!(sid = %s.id, socket_id = %session.socket_id, "disconnected");
}
