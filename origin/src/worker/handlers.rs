//! Socket.IO handlers: handshake, `subscribe`, `unsubscribe`, disconnect.

use std::sync::Arc;

use pushwire_shared::channel_auth;
use pushwire_shared::client_protocol::{
    self, AckCode, AckError, CONNECTION_ESTABLISHED, SUBSCRIBE, SubscribeRequest, UNSUBSCRIBE,
    subscribed_ack,
};
use pushwire_shared::envelope::redis_channel;
use pushwire_shared::history::{self, Position, Recovery, history_key};
use pushwire_shared::{ChannelKind, ChannelName, Envelope};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;

use super::WorkerContext;
use super::catch_up::send_paced;
use super::session::{HandshakeError, SocketSession, handshake_channels, resolve_app};

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

/// What a successful `subscribe` reports: whether `since` was recovered, when given.
type Subscribed = Option<bool>;

fn subscribe_ack(result: &Result<Subscribed, AckError>) -> Value {
    match result {
        Ok(recovered) => subscribed_ack(*recovered),
        Err(e) => e.to_ack(),
    }
}

fn unavailable(e: impl std::fmt::Display) -> AckError {
    AckError::new(AckCode::Unavailable, e.to_string())
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
        tracing::debug!(socket_id = %session.socket_id, error = %e, "subscribe refused");
    }
    send_ack(ack, subscribe_ack(&result));
}

async fn subscribe(
    s: &SocketRef,
    payload: Option<&Value>,
    ctx: &WorkerContext,
    session: &SocketSession,
) -> Result<Subscribed, AckError> {
    let req = SubscribeRequest::parse(payload)?;
    authorize(&req, session)?;
    let mut channels = session.channels.lock().await;
    if channels.contains(&req.channel) {
        // Already subscribed: idempotent, and it has missed nothing since then.
        return Ok(None);
    }
    let room = redis_channel(&session.app.id, &req.channel);
    ctx.registry.join(&room).await.map_err(unavailable)?;
    let recovered = match &req.since {
        None => {
            s.join(room);
            None
        }
        Some(since) => match replay(s, ctx, session, &req.channel, &room, since).await {
            Ok(recovered) => Some(recovered),
            Err(e) => {
                ctx.registry.leave(&room).await;
                return Err(e);
            }
        },
    };
    channels.insert(req.channel);
    Ok(recovered)
}

/// Sends `s` every retained event of `channel` after `since`, then puts it in
/// the channel's room with no gap and no duplicate (see `catch_up`). Returns
/// whether everything after `since` was still retained.
async fn replay(
    s: &SocketRef,
    ctx: &WorkerContext,
    session: &SocketSession,
    channel: &ChannelName,
    room: &str,
    since: &Position,
) -> Result<bool, AckError> {
    ctx.catch_ups.begin(room, s.id).await;
    let result = async {
        let snapshot = ctx
            .broker
            .history(room, &history_key(&session.app.id, channel), since.id)
            .await
            .map_err(unavailable)?;
        // Every event in `snapshot` is now either delivered (before `begin`) or
        // kept; none can still reach the room after the socket joins it.
        ctx.broker.barrier().await.map_err(unavailable)?;
        let epoch = snapshot.epoch.clone();
        let (recovered, last) = match history::recover(since, epoch.as_deref(), snapshot.entries) {
            Recovery::Lost => (false, None),
            Recovery::Recovered(entries) => {
                let mut last = since.id;
                for (id, json) in entries {
                    last = id;
                    let Ok(mut envelope) = Envelope::decode(json.as_bytes()) else {
                        tracing::warn!(%room, %id, "skipping an undecodable history entry");
                        continue;
                    };
                    envelope.pos = Some(Position {
                        epoch: since.epoch.clone(),
                        id,
                    });
                    send_paced(s, &envelope, ctx.replay_patience)
                        .await
                        .map_err(unavailable)?;
                }
                (true, Some(last))
            }
        };
        Ok((recovered, last))
    }
    .await;
    let (recovered, last) = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            ctx.catch_ups.abort(room, s.id);
            return Err(e);
        }
    };
    ctx.catch_ups
        .complete(room, s, last, ctx.replay_patience)
        .await
        .map_err(unavailable)?;
    tracing::debug!(socket_id = %session.socket_id, %room, recovered, "caught up");
    Ok(recovered)
}

fn authorize(req: &SubscribeRequest, session: &SocketSession) -> Result<(), AckError> {
    let signed_data = match req.channel.kind() {
        ChannelKind::Public => return Ok(()),
        ChannelKind::Private => None,
        ChannelKind::Presence => {
            return Err(AckError::new(
                AckCode::Unauthorized,
                "presence channels are not available on this server yet",
            ));
        }
    };
    let auth = req.auth.as_deref().ok_or_else(|| {
        AckError::new(
            AckCode::Unauthorized,
            format!("{} requires \"auth\"", req.channel),
        )
    })?;
    channel_auth::verify(
        &session.app,
        session.socket_id.as_str(),
        req.channel.as_str(),
        signed_data,
        auth,
    )
    .map_err(|e| AckError::new(AckCode::Unauthorized, e.to_string()))
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
        let room = redis_channel(&session.app.id, channel);
        s.leave(room.clone());
        ctx.registry.leave(&room).await;
    }
}

async fn on_disconnect(s: SocketRef, ctx: Arc<WorkerContext>, session: Arc<SocketSession>) {
    let channels = std::mem::take(&mut *session.channels.lock().await);
    for channel in channels {
        ctx.registry
            .leave(&redis_channel(&session.app.id, &channel))
            .await;
    }
    tracing::debug!(sid = %s.id, socket_id = %session.socket_id, "disconnected");
}
