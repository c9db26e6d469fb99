//! The Pusher-compatible trigger API: `POST /apps/{id}/events` and
//! `POST /apps/{id}/batch_events`.
//!
//! Every request goes through the same steps, in the order SPEC §1 fixes: read
//! the body under the request cap (413), find the app (404), verify the Pusher
//! signature (401), validate the content (400/413), publish all of it in one
//! broker call (503 if the broker cannot take it), and only then answer `200 {}`.

mod error;
mod event_id;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{Method, Uri, header};
use axum::response::IntoResponse;
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pushwire_shared::envelope::{ENVELOPE_VERSION, redis_channel};
use pushwire_shared::signing::{self, RequestParts};
use pushwire_shared::trigger::{self, TriggerEvent};
use pushwire_shared::{App, AppList, Envelope, http::EMPTY_OBJECT};

pub use self::error::ApiError;
pub use self::event_id::EventIdGenerator;

use crate::broker::{Broker, Outbound};

/// The trigger API's shared state.
#[derive(Debug)]
pub struct TriggerApi {
    apps: Arc<AppList>,
    broker: Arc<dyn Broker>,
    max_request_bytes: usize,
    ids: EventIdGenerator,
}

impl TriggerApi {
    /// The API for `apps`, publishing through `broker`.
    pub fn new(apps: Arc<AppList>, broker: Arc<dyn Broker>, max_request_bytes: usize) -> Arc<Self> {
        Arc::new(TriggerApi {
            apps,
            broker,
            max_request_bytes,
            ids: EventIdGenerator::default(),
        })
    }
}

/// The trigger API routes; unknown paths get a JSON 404.
pub fn routes(api: Arc<TriggerApi>) -> Router {
    Router::new()
        .route("/apps/{app_id}/events", post(post_events))
        .route("/apps/{app_id}/batch_events", post(post_batch_events))
        .fallback(|| async { ApiError::NotFound })
        .with_state(api)
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::BodyTooLarge(limit)),
        Err(_) => Err(ApiError::BodyUnreadable),
    }
}

/// Reads the body, finds the app and checks the signature.
async fn authenticate<'a>(
    api: &'a TriggerApi,
    app_id: &str,
    method: &Method,
    uri: &Uri,
    body: Body,
) -> Result<(&'a App, Bytes), ApiError> {
    let body = read_body(body, api.max_request_bytes).await?;
    let app = api
        .apps
        .by_id(app_id)
        .ok_or_else(|| ApiError::UnknownApp(app_id.to_owned()))?;
    let parts = RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        body: &body,
    };
    signing::verify(&parts, app, unix_now().as_secs())?;
    Ok((app, body))
}

/// Publishes `events` in one broker call: one envelope per (event, channel),
/// one id per event.
async fn publish(api: &TriggerApi, app: &App, events: &[TriggerEvent]) -> Result<(), ApiError> {
    let ts = u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX);
    let mut messages: Vec<Outbound> = Vec::new();
    for event in events {
        let id = api.ids.next(ts);
        for channel in &event.channels {
            let envelope = Envelope {
                v: ENVELOPE_VERSION,
                id: id.clone(),
                app: app.id.clone(),
                channel: channel.clone(),
                event: event.name.clone(),
                data: event.data.clone(),
                exclude: event.exclude.clone(),
                ts,
            };
            messages.push((redis_channel(&app.id, channel), envelope.encode()));
        }
    }
    api.broker.publish(&messages).await?;
    tracing::debug!(app = %app.id, events = events.len(), messages = messages.len(), "published");
    Ok(())
}

fn ok_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], EMPTY_OBJECT)
}

async fn post_events(
    State(api): State<Arc<TriggerApi>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let (app, body) = authenticate(&api, &app_id, &method, &uri, body).await?;
    let event = trigger::parse_event(&body, &app.limits)?;
    publish(&api, app, std::slice::from_ref(&event)).await?;
    Ok(ok_json())
}

async fn post_batch_events(
    State(api): State<Arc<TriggerApi>>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let (app, body) = authenticate(&api, &app_id, &method, &uri, body).await?;
    let events = trigger::parse_batch(&body, &app.limits)?;
    publish(&api, app, &events).await?;
    Ok(ok_json())
}
