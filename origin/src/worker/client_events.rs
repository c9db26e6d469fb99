//! Client events: a subscriber of a private or presence channel emits
//! `client-*` with `{"channel", "data"}`; every other subscriber of the channel
//! (all workers, all origins) receives it, the sender does not. Not on
//! end-to-end encrypted channels (`private-encrypted-*`).

use std::sync::Arc;
use std::time::Instant;

use pushwire_shared::client_protocol::{self, AckCode, AckError, CLIENT_EVENT_PREFIX, ClientEvent};
use pushwire_shared::webhook::{WebhookEvent, WebhookEventKind};
use pushwire_shared::{ChannelKind, EventName};
use serde_json::Value;
use socketioxide::extract::AckSender;

use super::session::SocketSession;
use super::{WorkerContext, socket_events};

/// Handles an event with no handler of its own: a client event, or else an
/// error ack naming the event.
pub(crate) async fn on_event(
    name: String,
    payload: Option<Value>,
    ack: AckSender,
    ctx: Arc<WorkerContext>,
    session: Arc<SocketSession>,
) {
    let result = relay(&name, payload.as_ref(), &ctx, &session).await;
    // Without an ack callback there is nobody to answer; that is not an error.
    let _ = ack.send(&client_protocol::ack(&result));
}

/// Relays client event `name` with `payload` (`{"channel", "data"}`) from
/// `session`'s socket, whichever protocol it speaks, counting the outcome.
pub(crate) async fn relay(
    name: &str,
    payload: Option<&Value>,
    ctx: &WorkerContext,
    session: &SocketSession,
) -> Result<(), AckError> {
    let result = send(name, payload, ctx, session).await;
    let outcome = match &result {
        Ok(()) => "sent".to_owned(),
        Err(e) => (e.code as u16).to_string(),
    };
    crate::metrics::worker().client_event(&session.app.id, outcome);
    if let Err(e) = &result {
        tracing::debug!(
            socket_id = %session.socket_id,
            app = %session.app.id,
            channel = super::handlers::channel_named(payload),
            event = %name,
            error = %e,
            "client event refused"
        );
    }
    result
}

async fn send(
    name: &str,
    payload: Option<&Value>,
    ctx: &WorkerContext,
    session: &SocketSession,
) -> Result<(), AckError> {
    if !name.starts_with(CLIENT_EVENT_PREFIX) {
        return Err(AckError::new(
            AckCode::Malformed,
            format!("unknown event {name:?}: use subscribe, unsubscribe or client-*"),
        ));
    }
    let event =
        EventName::new(name).map_err(|e| AckError::new(AckCode::Malformed, e.to_string()))?;
    let ClientEvent { channel, data } = ClientEvent::parse(payload)?;
    if channel.kind() == ChannelKind::Public {
        return Err(AckError::new(
            AckCode::Unauthorized,
            "client events are only allowed on private and presence channels",
        ));
    }
    if channel.is_encrypted() {
        // Only the app's backend holds the key: a client event would reach the
        // others unencrypted and unauthenticated, so Pusher refuses them too.
        return Err(AckError::new(
            AckCode::Unauthorized,
            format!("client events are not allowed on encrypted channels such as {channel}"),
        ));
    }
    if !session.channels.lock().await.contains(&channel) {
        return Err(AckError::new(
            AckCode::Unauthorized,
            format!("subscribe to {channel} before sending client events on it"),
        ));
    }
    let text = data.to_string();
    if text.len() > session.app.limits.max_data_bytes {
        return Err(AckError::new(
            AckCode::OverLimit,
            format!(
                "data is {} bytes; the limit is {}",
                text.len(),
                session.app.limits.max_data_bytes
            ),
        ));
    }
    if !session.allow_client_event(Instant::now()) {
        return Err(AckError::new(
            AckCode::ClientEventRateLimited,
            format!(
                "more than {} client events per second",
                session.app.limits.max_client_events_per_sec
            ),
        ));
    }
    let webhook = ctx
        .wants_webhook(&session.app.id, WebhookEventKind::ClientEvent)
        .then(|| WebhookEvent::ClientEvent {
            channel: channel.clone(),
            event: event.clone(),
            // Pusher's `data` is a string: a string as sent, anything else as JSON text.
            data: match &data {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            },
            socket_id: session.socket_id.clone(),
            user_id: session
                .members()
                .get(&channel)
                .map(|member| member.user_id.clone()),
        });
    let message = socket_events::message(ctx, session, &channel, event, data);
    ctx.broker
        .publish(std::slice::from_ref(&message))
        .await
        .map_err(AckError::unavailable)?;
    if let Some(webhook) = webhook
        && let Err(e) = ctx.broker.webhook(&session.app.id, webhook).await
    {
        // Published already: the sender's ack says so; only the report is lost.
        tracing::warn!(app = %session.app.id, %channel, error = %e, "a client event's webhook was not queued");
    }
    Ok(())
}
