//! The Pusher-compatible trigger API: `POST /apps/{id}/events`,
//! `POST /apps/{id}/batch_events` and
//! `POST /apps/{id}/users/{user_id}/terminate_connections` (published as an
//! event on the user's channel), and the signed channel queries under
//! `GET /apps/{id}/channels` (`queries`).
//!
//! The checks and envelopes come from `pushwire_shared::trigger_request`, the
//! same code the edge worker runs: read the body under the request cap (413),
//! find the app (404), verify the Pusher signature (401), validate the content
//! (400/413), publish everything in one broker call (503 if the broker did
//! not take it, 504 if it may have: `error::publish_error`), and only then
//! answer `200 {}`.

mod error;
mod event_id;
mod history;
mod info;
mod queries;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pushwire_shared::AppList;
use pushwire_shared::api_error::ApiError;
use pushwire_shared::channel_query::ChannelQueryRoute;
use pushwire_shared::http::{EMPTY_OBJECT, HttpError};
use pushwire_shared::signing::RequestParts;
use pushwire_shared::trigger_request::{self, TriggerRoute};

pub(crate) use self::error::ApiErrorResponse;
pub(crate) use self::event_id::EventIdGenerator;

use crate::broker::Broker;
use crate::http_server::body_deadline_of;

/// The trigger API's shared state.
#[derive(Debug)]
pub(crate) struct TriggerApi {
    apps: Arc<AppList>,
    broker: Arc<dyn Broker>,
    max_request_bytes: usize,
    ids: EventIdGenerator,
}

impl TriggerApi {
    /// The API for `apps`, publishing through `broker`.
    pub(crate) fn new(
        apps: Arc<AppList>,
        broker: Arc<dyn Broker>,
        max_request_bytes: usize,
    ) -> Arc<Self> {
        Arc::new(TriggerApi {
            apps,
            broker,
            max_request_bytes,
            ids: EventIdGenerator::default(),
        })
    }
}

impl TriggerApi {
    /// Counts one trigger request in the worker's metrics. The app label is
    /// the path's app id only when such an app exists: ids from unauthenticated
    /// paths must not create series.
    fn count(&self, path: &str, result: &Result<Response, ApiError>, took: Duration) {
        let Some(route) = TriggerRoute::parse(path) else {
            return;
        };
        let (app_id, name) = match route {
            TriggerRoute::Events { app_id } => (app_id, "events"),
            TriggerRoute::BatchEvents { app_id } => (app_id, "batch_events"),
            TriggerRoute::TerminateConnections { app_id, .. } => (app_id, "terminate_connections"),
        };
        let app = if self.apps.by_id(app_id).is_some() {
            app_id
        } else {
            ""
        };
        let code = match result {
            Ok(response) => response.status().as_u16(),
            Err(e) => e.status(),
        };
        crate::metrics::worker().trigger_answered(app, name, code, took);
    }
}

/// The trigger API routes; any other path or method gets a JSON 404, as at the edge.
pub(crate) fn routes(api: Arc<TriggerApi>) -> Router {
    let queries = api.clone();
    let query = any(move |method: Method, uri: Uri| {
        let api = queries.clone();
        async move {
            match ChannelQueryRoute::parse(uri.path()) {
                Some(route) if method == Method::GET => {
                    let body = queries::answer(&api, route, &uri).await?;
                    Ok::<_, ApiErrorResponse>(json_response(body.to_string()))
                }
                _ => Err(ApiError::NotFound.into()),
            }
        }
    });
    // `any`, not `post`: `handle` answers other methods itself, with a JSON body.
    let trigger = any(move |method: Method, uri: Uri, body: Body| {
        let api = api.clone();
        async move {
            let started = Instant::now();
            let path = uri.path().to_owned();
            let result = handle(&api, method, uri, body).await;
            api.count(&path, &result, started.elapsed());
            result.map_err(ApiErrorResponse)
        }
    });
    Router::new()
        .route("/apps/{app_id}/events", trigger.clone())
        .route("/apps/{app_id}/batch_events", trigger.clone())
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            trigger,
        )
        .route("/apps/{app_id}/channels", query.clone())
        .route("/apps/{app_id}/channels/{channel}", query.clone())
        .route("/apps/{app_id}/channels/{channel}/users", query.clone())
        .route("/apps/{app_id}/channels/{channel}/history", query)
        .fallback(|| async { ApiErrorResponse(ApiError::NotFound) })
}

async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    // One byte over the cap is enough to know it is too large.
    match Limited::new(body, limit + 1).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ApiError::BodyTooLarge(limit)),
        Err(e) => Err(
            body_deadline_of(e.as_ref()).map_or(ApiError::BodyUnreadable, |d| {
                ApiError::BodyTimeout(d.as_millis() as u64)
            }),
        ),
    }
}

async fn handle(
    api: &TriggerApi,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let route = match TriggerRoute::parse(uri.path()) {
        Some(route) if method == Method::POST => route,
        _ => return Err(ApiError::NotFound),
    };
    let body = read_body(body, api.max_request_bytes).await?;
    let parts = RequestParts {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        body: &body,
    };
    // One reading: the signature's window and the envelopes' timestamp agree.
    let ts = crate::clock::now_ms();
    let accepted =
        trigger_request::accept(route, &parts, &api.apps, api.max_request_bytes, ts / 1000)?;
    let messages = accepted.messages(ts, || api.ids.next(ts));
    api.broker
        .publish(&messages)
        .await
        .map_err(error::publish_error)?;
    crate::metrics::worker()
        .events_published
        .get_or_create(&crate::metrics::AppLabels {
            app: accepted.app.id.clone(),
        })
        .inc_by(accepted.events.len() as u64);
    tracing::debug!(app = %accepted.app.id, events = accepted.events.len(), messages = messages.len(), "published");
    let Some(info) = accepted.info_request() else {
        return Ok(json_response(EMPTY_OBJECT.to_owned()));
    };
    let batch = matches!(route, TriggerRoute::BatchEvents { .. });
    // Published already: a failed read must not turn into a 503 (the caller
    // would retry and publish twice), so it answers without the attributes.
    match info::answer(api, &accepted.app.id, &info, batch).await {
        Ok(body) => Ok(json_response(body.to_string())),
        Err(e) => {
            tracing::warn!(error = %e, "published, but could not read the info attributes");
            Ok(json_response(EMPTY_OBJECT.to_owned()))
        }
    }
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
