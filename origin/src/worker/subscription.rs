//! The protocol-neutral half of a subscription: limits, auth, the registry's
//! count and the presence membership. Socket.IO's handlers and the Pusher
//! endpoint both go through here, so a channel has one set of rules and one
//! cluster-wide count whichever protocol its subscribers speak.

use std::collections::HashSet;
use std::time::Instant;

use pushwire_shared::channel_auth;
use pushwire_shared::client_protocol::{AckCode, AckError, SubscribeRequest};
use pushwire_shared::presence::Member;
use pushwire_shared::{ChannelKind, ChannelName};
use serde_json::Value;

use super::session::SocketSession;
use super::{WorkerContext, presence};

/// Admits `req` for a socket currently on `channels` (the caller holds that
/// lock until it has joined the channel locally): checks the socket's limits
/// and the channel's auth, counts the subscription and, on a presence
/// channel, adds the member. Returns the presence summary of the channel.
/// On error nothing was counted.
pub(crate) async fn admit(
    channels: &HashSet<ChannelName>,
    req: &SubscribeRequest,
    ctx: &WorkerContext,
    session: &SocketSession,
) -> Result<Option<Value>, AckError> {
    let cap = session.app.limits.max_channels_per_socket;
    if channels.len() >= cap {
        return Err(AckError::new(
            AckCode::TooManyChannels,
            format!("this socket is on {cap} channels, the most allowed; unsubscribe one first"),
        ));
    }
    // Counted only now, so that refusals and repeats cost no budget, while
    // everything past this point (signature check, broker round trip) does.
    session.allow_subscribe(Instant::now())?;
    let member = authorize(req, session)?;
    let app = session.app.id.as_str();
    ctx.registry
        .join(app, &req.channel)
        .await
        .map_err(AckError::unavailable)?;
    let Some(member) = member else {
        return Ok(None);
    };
    match presence::join(ctx, session, &req.channel, &member).await {
        Ok(summary) => {
            session.members().insert(req.channel.clone(), member);
            Ok(Some(summary))
        }
        Err(e) => {
            ctx.registry.leave(app, &req.channel).await;
            Err(e)
        }
    }
}

/// Checks a private or presence subscription's signature; returns the member
/// of a presence channel. A user channel is open only to a connection signed
/// in as that user (it is on it from its sign-in; pusher-js asks again).
fn authorize(req: &SubscribeRequest, session: &SocketSession) -> Result<Option<Member>, AckError> {
    if let Some(user) = req.channel.user_id() {
        return match session.user.get() {
            Some(signed_in) if signed_in == user => Ok(None),
            _ => Err(AckError::new(
                AckCode::Unauthorized,
                format!(
                    "{} is a user channel: sign in as that user to receive its events",
                    req.channel
                ),
            )),
        };
    }
    let kind = req.channel.kind();
    if kind == ChannelKind::Public {
        return Ok(None);
    }
    let required = |what: &str| {
        AckError::new(
            AckCode::Unauthorized,
            format!("{} requires \"{what}\"", req.channel),
        )
    };
    let auth = req.auth.as_deref().ok_or_else(|| required("auth"))?;
    let channel_data = match kind {
        ChannelKind::Presence => Some(
            req.channel_data
                .as_deref()
                .ok_or_else(|| required("channel_data"))?,
        ),
        _ => None,
    };
    channel_auth::verify(
        &session.app,
        session.socket_id.as_str(),
        req.channel.as_str(),
        channel_data,
        auth,
    )
    .map_err(|e| AckError::new(AckCode::Unauthorized, e.to_string()))?;
    channel_data
        .map(|data| Member::parse(data, &session.app.limits))
        .transpose()
}

/// Undoes a subscription's cluster-wide effects: its presence membership and its count.
pub(crate) async fn forget(ctx: &WorkerContext, session: &SocketSession, channel: &ChannelName) {
    let member = session.members().remove(channel);
    if let Some(member) = member {
        presence::leave(ctx, session, channel, &member).await;
    }
    ctx.registry.leave(&session.app.id, channel).await;
}
