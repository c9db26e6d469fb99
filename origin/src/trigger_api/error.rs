//! `ApiError`: a failed trigger API request as an HTTP response
//! (`{"error": …}` with the status `shared` assigns).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pushwire_shared::http::{HttpError, error_body};
use pushwire_shared::trigger_request::TriggerRequestError;

use crate::broker::BrokerError;

/// A failed trigger API request.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(#[from] pub TriggerRequestError);

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let detail = match e {
            BrokerError::Unavailable(detail) => detail,
            BrokerError::Closed => "shutting down".to_owned(),
        };
        ApiError(TriggerRequestError::Unavailable(detail))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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
