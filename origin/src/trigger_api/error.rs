//! `ApiError`: every way a trigger API request fails, as status + `{"error": …}`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pushwire_shared::http::{HttpError, error_body};
use pushwire_shared::signing::SigningError;
use pushwire_shared::trigger::TriggerError;

use crate::broker::BrokerError;

/// A failed trigger API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is over the request cap.
    #[error("request body is over the {0} byte limit")]
    BodyTooLarge(usize),
    /// The body could not be read.
    #[error("could not read the request body")]
    BodyUnreadable,
    /// No app has this id.
    #[error("unknown app {0:?}")]
    UnknownApp(String),
    /// The signature was refused.
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// The content is invalid.
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    /// The broker could not take the event.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// No such route.
    #[error("not found")]
    NotFound,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        let code = match self {
            ApiError::BodyTooLarge(_) => 413,
            ApiError::BodyUnreadable => 400,
            ApiError::UnknownApp(_) | ApiError::NotFound => 404,
            ApiError::Signing(e) => e.status(),
            ApiError::Trigger(e) => e.status(),
            ApiError::Broker(_) => 503,
        };
        StatusCode::from_u16(code).expect("every mapped status is valid")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "trigger refused: broker unavailable");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "trigger refused");
        }
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            error_body(&self.to_string()),
        )
            .into_response()
    }
}
