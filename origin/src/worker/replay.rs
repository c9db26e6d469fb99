//! Recovery: a `subscribe` with `since` replays the retained history after
//! `since` before the socket joins the channel's room (see `catch_up`).

use pushwire_shared::client_protocol::AckError;
use pushwire_shared::history::{self, Position, Recovery};
use pushwire_shared::keys::KeySpace;
use pushwire_shared::{ChannelName, Envelope};
use socketioxide::extract::SocketRef;

use super::WorkerContext;
use super::catch_up::send_paced;
use super::session::SocketSession;

/// Sends `s` every retained event of `channel` after `since`, then puts it in
/// the channel's room with no gap and no duplicate (see `catch_up`). Returns
/// whether everything after `since` was still retained.
pub(crate) async fn replay(
    s: &SocketRef,
    ctx: &WorkerContext,
    session: &SocketSession,
    channel: &ChannelName,
    room: &str,
    since: &Position,
) -> Result<bool, AckError> {
    let send = async {
        let snapshot = ctx
            .broker
            .history(
                room,
                &KeySpace::DEFAULT.history(&session.app.id, channel),
                since.id,
            )
            .await
            .map_err(AckError::unavailable)?;
        // Every event in `snapshot` is now either delivered (before `begin`) or
        // kept; none can still reach the room after the socket joins it.
        ctx.broker.barrier().await.map_err(AckError::unavailable)?;
        let epoch = snapshot.epoch.clone();
        let (recovered, last) = match history::recover(since, epoch.as_deref(), snapshot.entries) {
            Recovery::Lost => (false, None),
            Recovery::Recovered(entries) => {
                let mut last = since.id;
                for (id, json) in entries {
                    last = id;
                    let Ok(mut envelope) = Envelope::decode(json.as_bytes()) else {
                        tracing::warn!(
                            app = %session.app.id,
                            %channel,
                            %id,
                            "skipping an undecodable history entry"
                        );
                        continue;
                    };
                    envelope.pos = Some(Position {
                        epoch: since.epoch.clone(),
                        id,
                    });
                    send_paced(s, &envelope, ctx.replay_patience)
                        .await
                        .map_err(AckError::unavailable)?;
                }
                (true, Some(last))
            }
        };
        Ok((recovered, last))
    };
    let recovered = ctx
        .catch_ups
        .run(room, s, ctx.replay_patience, send)
        .await?;
    crate::metrics::worker()
        .history_replays
        .get_or_create(&crate::metrics::OutcomeLabels {
            outcome: if recovered {
                "recovered"
            } else {
                "not_recovered"
            },
        })
        .inc();
    tracing::debug!(
        socket_id = %session.socket_id,
        app = %session.app.id,
        %channel,
        recovered,
        "caught up"
    );
    Ok(recovered)
}
