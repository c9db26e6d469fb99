//! `GET /apps/{app_id}/channels/{channel}/history`: a channel's retained events.
//!
//! Signed like a trigger. Answers `{"channel", "epoch", "events": [{"pos", "id",
//! "name", "data", "ts"}, …]}`, oldest first, `data` as it was triggered. With
//! `since=<pos>` it answers only what followed `since`, plus `"recovered"`:
//! `false` when the history no longer reaches back to it (then every retained
//! event is listed).

use axum::http::Uri;
use pushwire_shared::Envelope;
use pushwire_shared::channel_query::{self, ChannelQueryRoute};
use pushwire_shared::envelope::redis_channel;
use pushwire_shared::history::{self, Position, Recovery, StreamId, history_key};
use pushwire_shared::signing::RequestParts;
use pushwire_shared::trigger_request::TriggerRequestError;
use serde_json::{Value, json};

use super::{ApiError, TriggerApi};

/// Answers one history query.
pub(super) async fn answer(
    api: &TriggerApi,
    route: ChannelQueryRoute<'_>,
    uri: &Uri,
) -> Result<Value, ApiError> {
    let parts = RequestParts {
        method: "GET",
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        body: b"",
    };
    let now_secs = crate::clock::now_ms() / 1000;
    let query = channel_query::accept(route, &parts, &api.apps, now_secs)?;
    let since: Option<Position> = query
        .params
        .get("since")
        .map(|text| {
            text.parse()
                .map_err(|e: history::PositionError| TriggerRequestError::BadQuery(e.to_string()))
        })
        .transpose()?;
    let room = redis_channel(&query.app.id, &query.channel);
    let key = history_key(&query.app.id, &query.channel);
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
        "channel": query.channel.as_str(),
        "epoch": Some(epoch).filter(|e| !e.is_empty()),
        "events": events,
    });
    if let Some(recovered) = recovered {
        body["recovered"] = Value::Bool(recovered);
    }
    Ok(body)
}
