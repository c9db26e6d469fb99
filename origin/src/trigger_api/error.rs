//! A failed trigger API request as an HTTP response: the shared [`ApiError`]
//! (`{"error": …}` with the status `shared` assigns), and the broker's
//! failures as one.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pushwire_shared::api_error::ApiError;
use pushwire_shared::http::HttpError;

use crate::broker::BrokerError;

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let detail = match e {
            BrokerError::Unavailable(detail) => detail,
            BrokerError::Closed => "shutting down".to_owned(),
        };
        ApiError::Unavailable(detail)
    }
}

/// An [`ApiError`] as the response axum sends (the shared crate knows no
/// HTTP framework, so the conversion lives here).
#[derive(Debug)]
pub(crate) struct ApiErrorResponse(pub ApiError);

impl From<ApiError> for ApiErrorResponse {
    fn from(e: ApiError) -> Self {
        ApiErrorResponse(e)
    }
}

impl IntoResponse for ApiErrorResponse {
    fn into_response(self) -> Response {
        let error = self.0;
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %error, "trigger refused: broker unavailable");
        } else if let ApiError::Signing(signing) = &error {
            // The reply leaves the clock difference out; the log keeps it.
            tracing::debug!(status = status.as_u16(), error = %error, skew_secs = signing.skew(), "trigger refused");
        } else {
            tracing::debug!(status = status.as_u16(), error = %error, "trigger refused");
        }
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            error.body(),
        )
            .into_response()
    }
}
