//! A failed trigger API request as an HTTP response: the shared [`ApiError`]
//! (`{"error": …}` with the status `shared` assigns), and the broker's
//! failures as one.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pushwire_shared::api_error::ApiError;
use pushwire_shared::http::HttpError;

use crate::broker::BrokerError;

/// A broker failure of a read (channel queries, info attributes): retrying a
/// read is harmless, so every failure is a `503`, a lost reply included.
impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let detail = match e {
            BrokerError::Unavailable(detail) | BrokerError::OutcomeUnknown(detail) => detail,
            BrokerError::Closed => "shutting down".to_owned(),
        };
        ApiError::Unavailable(detail)
    }
}

/// A broker failure of a trigger's publish: `503` only when nothing was
/// published, `504` when the broker may have published the event (a retry
/// could then publish it twice).
pub(super) fn publish_error(e: BrokerError) -> ApiError {
    match e {
        BrokerError::OutcomeUnknown(detail) => ApiError::PublishOutcomeUnknown(detail),
        other => other.into(),
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
        } else if status == StatusCode::GATEWAY_TIMEOUT {
            tracing::warn!(error = %error, "trigger's publish not confirmed: outcome unknown");
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

#[cfg(test)]
mod tests {
    use super::*;
    use pushwire_shared::http::HttpError;

    #[test]
    fn only_a_publish_of_unknown_outcome_is_a_504() {
        let lost = || BrokerError::OutcomeUnknown("no reply".into());
        assert_eq!(publish_error(lost()).status(), 504);
        assert_eq!(
            ApiError::from(lost()).status(),
            503,
            "a read may be retried"
        );
        for refused in [BrokerError::Unavailable("down".into()), BrokerError::Closed] {
            assert_eq!(publish_error(refused).status(), 503);
        }
    }
}
