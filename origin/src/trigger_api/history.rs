//! `GET /apps/{app_id}/channels/{channel}/history`: a channel's retained events.
//!
//! Signed like a trigger. Answers `{"channel", "epoch", "events": [{"pos", "id",
//! "name", "data", "ts"}, …]}`, oldest first, `data` as it was triggered. With
//! `since=<pos>` it answers only what followed `since`, plus `"recovered"`:
//! `false` when the history no longer reaches back to it (then every retained
//! event is listed).

use pushwire_shared::api_error::ApiError;
use pushwire_shared::history::{self, Position, Recovery, StreamId};
use pushwire_shared::keys::KeySpace;
use pushwire_shared::{ChannelName, Envelope};
use serde_json::{Value, json};

use super::TriggerApi;

/// Answers one history query for `app`'s `channel`.
pub(super) async fn answer(
    api: &TriggerApi,
    app: &str,
    channel: &ChannelName,
    since: Option<Position>,
) -> Result<Value, ApiError> {
    let room = KeySpace::DEFAULT.channel(app, channel);
    let key = KeySpace::DEFAULT.history(app, channel);
    let from = since.as_ref().map(|s| s.id).unwrap_or_default();
    let mut snapshot = api.broker.history(&room, &key, from).await?;
    let mut recovered = None;
    if let Some(since) = &since {
        let entries = std::mem::take(&mut snapshot.entries);
        snapshot.entries = match history::recover(since, snapshot.epoch.as_deref(), entries) {
            Recovery::Recovered(after) => {
                recovered = Some(true);
                after
            }
            Recovery::Lost => {
                recovered = Some(false);
                api.broker
                    .history(&room, &key, StreamId::default())
                    .await?
                    .entries
            }
        };
    }
    let epoch = snapshot.epoch.unwrap_or_default();
    let events: Vec<Value> = snapshot
        .entries
        .into_iter()
        .filter_map(|(id, json)| {
            let envelope = Envelope::decode(json.as_bytes()).ok()?;
            Some(json!({
                "pos": Position { epoch: epoch.clone(), id }.to_string(),
                "id": envelope.id,
                "name": envelope.event.as_str(),
                "data": envelope.data,
                "ts": envelope.ts,
            }))
        })
        .collect();
    let mut body = json!({
        "channel": channel.as_str(),
        "epoch": Some(epoch).filter(|e| !e.is_empty()),
        "events": events,
    });
    if let Some(recovered) = recovered {
        body["recovered"] = Value::Bool(recovered);
    }
    Ok(body)
}
