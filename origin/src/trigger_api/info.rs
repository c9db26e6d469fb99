//! A trigger's `info`: the channel attributes it asked for, cluster-wide, read
//! right after the publish (the body's shape is `trigger_request::info_body`).

use pushwire_shared::api_error::ApiError;
use pushwire_shared::trigger_request::{InfoRequest, info_body, info_channels};
use serde_json::Value;

use super::TriggerApi;

/// The `200` body of a trigger of `app` that asked for `info`.
pub(super) async fn answer(
    api: &TriggerApi,
    app: &str,
    request: &InfoRequest,
    batch: bool,
) -> Result<Value, ApiError> {
    let stats = api
        .broker
        .channel_stats(app, &info_channels(request))
        .await?;
    Ok(info_body(request, &stats, batch))
}
