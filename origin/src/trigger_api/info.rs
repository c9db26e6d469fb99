//! A trigger's `info`: the channel attributes it asked for, cluster-wide, read
//! right after the publish. One event answers `{"channels": {name: attrs}}`; a
//! batch answers `{"batch": [attrs, …]}` in request order (each event's channel).

use pushwire_shared::trigger_request::AcceptedTrigger;
use serde_json::{Map, Value, json};

use super::{ApiError, TriggerApi};

/// The `200` body of a trigger that asked for `info`.
pub(super) async fn answer(
    api: &TriggerApi,
    accepted: &AcceptedTrigger<'_>,
    batch: bool,
) -> Result<Value, ApiError> {
    let app = accepted.app.id.as_str();
    if batch {
        let mut items = Vec::with_capacity(accepted.events.len());
        for event in &accepted.events {
            let stats = api.broker.channel_stats(app, &event.channels).await?;
            let attrs = stats
                .first()
                .map_or_else(|| json!({}), |s| s.attributes(&event.info));
            items.push(attrs);
        }
        return Ok(json!({ "batch": items }));
    }
    let mut channels = Map::new();
    for event in &accepted.events {
        let stats = api.broker.channel_stats(app, &event.channels).await?;
        for (channel, stats) in event.channels.iter().zip(stats) {
            channels.insert(channel.to_string(), stats.attributes(&event.info));
        }
    }
    Ok(json!({ "channels": channels }))
}
