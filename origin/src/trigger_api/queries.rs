//! Signed channel queries: `GET /apps/{id}/channels`, `/channels/{name}`,
//! `/channels/{name}/users` (Pusher's) and `/channels/{name}/history`; counts
//! and members are cluster-wide, from the broker's directory.

use axum::http::Uri;
use pushwire_shared::api_error::ApiError;
use pushwire_shared::channel_query::{
    self, ChannelQuery, ChannelQueryRoute, channel_body, channels_body, users_body,
};
use pushwire_shared::signing::RequestParts;
use serde_json::Value;

use super::{TriggerApi, history};

/// Answers one channel query.
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
    let accepted = channel_query::accept(route, &parts, &api.apps, crate::clock::now_secs())?;
    let app = accepted.app.id.as_str();
    match accepted.query {
        ChannelQuery::Channels { prefix, user_count } => {
            let channels = api.broker.occupied_channels(app, &prefix).await?;
            Ok(channels_body(&channels, user_count))
        }
        ChannelQuery::Channel { channel, info } => {
            let stats = api
                .broker
                .channel_stats(app, std::slice::from_ref(&channel))
                .await?;
            Ok(channel_body(
                &stats.first().copied().unwrap_or_default(),
                &info,
            ))
        }
        ChannelQuery::Users { channel } => {
            let members = api.broker.presence_members(app, &channel).await?;
            Ok(users_body(&members))
        }
        ChannelQuery::History { channel, since } => {
            history::answer(api, app, &channel, since).await
        }
    }
}
