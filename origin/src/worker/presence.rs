//! Presence subscriptions: joining and leaving the cluster-wide member list of a
//! `presence-*` channel, with `pushwire:member_added` / `pushwire:member_removed`
//! published by the broker exactly when a user's membership changes.

use pushwire_shared::ChannelName;
use pushwire_shared::client_protocol::{AckCode, AckError};
use pushwire_shared::presence::{Member, summary};
use serde_json::Value;

use super::session::SocketSession;
use super::{WorkerContext, socket_events};
use crate::broker::directory::{JoinOutcome, PresenceChange};

/// The presence change of `session`'s socket as `member` on `channel`, with
/// its member event (never delivered to the socket itself).
fn change(
    ctx: &WorkerContext,
    session: &SocketSession,
    channel: &ChannelName,
    member: &Member,
    added: bool,
) -> PresenceChange {
    let (event, data) = if added {
        member.added_event()
    } else {
        member.removed_event()
    };
    PresenceChange {
        app: session.app.id.clone(),
        channel: channel.clone(),
        member: member.clone(),
        max_members: session.app.limits.max_presence_members,
        event: socket_events::message(ctx, session, channel, event, data),
    }
}

/// Adds the socket as `member`; returns the ack's `presence` summary.
pub(crate) async fn join(
    ctx: &WorkerContext,
    session: &SocketSession,
    channel: &ChannelName,
    member: &Member,
) -> Result<Value, AckError> {
    let change = change(ctx, session, channel, member, true);
    match ctx.broker.presence_join(&change).await {
        Ok(JoinOutcome::Joined(members)) => {
            crate::metrics::worker().presence_members.inc();
            Ok(summary(members))
        }
        Ok(JoinOutcome::Full) => Err(AckError::new(
            AckCode::OverLimit,
            format!(
                "{channel} already has {} members, the limit",
                session.app.limits.max_presence_members
            ),
        )),
        Err(e) => Err(AckError::unavailable(e)),
    }
}

/// Removes the socket as `member` (errors are logged: the node's heartbeat
/// expiry removes it anyway).
pub(crate) async fn leave(
    ctx: &WorkerContext,
    session: &SocketSession,
    channel: &ChannelName,
    member: &Member,
) {
    let change = change(ctx, session, channel, member, false);
    crate::metrics::worker().presence_members.dec();
    if let Err(e) = ctx.broker.presence_leave(&change).await {
        tracing::warn!(
            app = %session.app.id,
            %channel,
            user = %member.user_id,
            error = %e,
            "presence leave failed"
        );
    }
}
