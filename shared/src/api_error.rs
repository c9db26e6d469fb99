//! Why a request to the Pusher-compatible HTTP API fails: [`ApiError`], for
//! the triggers and the channel queries alike, at the edge and at the origin.
//!
//! Its `Display` text is the `{"error": …}` message and [`HttpError::status`]
//! the status, both decided here once, so the edge and the origin answer every
//! failure with the same bytes.

use crate::channel::{ChannelName, ChannelNameError};
use crate::history::PositionError;
use crate::http::{HttpError, error_body};
use crate::signing::SigningError;
use crate::trigger::TriggerError;
use crate::user_auth::UserAuthError;

/// Why a trigger or channel query request fails. The `Display` text is the
/// response's `error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is over the request cap (`413`).
    #[error("request body is over the {0} byte limit")]
    BodyTooLarge(usize),
    /// The body could not be read, the client went away mid-request (`400`).
    #[error("could not read the request body")]
    BodyUnreadable,
    /// The body did not arrive within the server's body-read timeout (`408`).
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// No app has this id (`404`).
    #[error("unknown app {0:?}")]
    UnknownApp(String),
    /// No such route, or a method the route does not take (`404`).
    #[error("not found")]
    NotFound,
    /// A history read sent to the edge, which cannot read streams (`404`).
    #[error(
        "channel history is answered by the pushwire origins, not by the edge: send this request to an origin"
    )]
    HistoryNotAtTheEdge,
    /// The signature was refused (`401`, or `400` for an unreadable query).
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// The trigger's content is invalid (`400`, or `413` for `data` over its limit).
    #[error(transparent)]
    Trigger(#[from] TriggerError),
    /// A channel query's path or parameters are invalid (`400`).
    #[error(transparent)]
    Query(#[from] ChannelQueryError),
    /// The user id of a `/users/{user_id}/…` path is not one a user can
    /// sign in with (`400`).
    #[error(transparent)]
    User(#[from] UserAuthError),
    /// The broker (Redis, or the bridge in front of it) could not take the
    /// event or answer the read; the detail says why (`503`).
    #[error("the event broker is unavailable: {0}")]
    Unavailable(String),
    /// A trigger's publish was sent to the broker and not confirmed (`504`):
    /// the reply was lost or late, or only some channels' runs were
    /// confirmed. Unlike [`ApiError::Unavailable`], the event may have been
    /// published (or may be published still), so a blind retry could publish
    /// it twice; the message says to read the history first.
    #[error(
        "the publish's outcome is unknown: {0}; read each channel's history (GET /apps/<app_id>/channels/<channel>/history at an origin) before retrying"
    )]
    PublishOutcomeUnknown(String),
    /// The server cannot work as configured (the edge worker's settings); the
    /// message says what to fix (`503`).
    #[error("{0}")]
    Misconfigured(String),
}

impl HttpError for ApiError {
    fn status(&self) -> u16 {
        match self {
            ApiError::BodyTooLarge(_) => 413,
            ApiError::BodyTimeout(_) => 408,
            ApiError::BodyUnreadable | ApiError::Query(_) | ApiError::User(_) => 400,
            ApiError::UnknownApp(_) | ApiError::NotFound | ApiError::HistoryNotAtTheEdge => 404,
            ApiError::Signing(e) => e.status(),
            ApiError::Trigger(e) => e.status(),
            ApiError::Unavailable(_) | ApiError::Misconfigured(_) => 503,
            ApiError::PublishOutcomeUnknown(_) => 504,
        }
    }
}

impl ApiError {
    /// The response body: `{"error": "<message>"}`.
    ///
    /// ```
    /// use pushwire_shared::api_error::ApiError;
    /// use pushwire_shared::http::HttpError;
    /// let e = ApiError::UnknownApp("7".into());
    /// assert_eq!((e.status(), e.body().as_str()), (404, r#"{"error":"unknown app \"7\""}"#));
    /// ```
    pub fn body(&self) -> String {
        error_body(&self.to_string())
    }
}

/// Why a channel query's path or parameters are refused (always `400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelQueryError {
    /// The channel in the path is not valid percent-encoding (the raw segment).
    #[error("channel {0:?} is not valid percent-encoding")]
    ChannelEncoding(String),
    /// The channel in the path is not a valid channel name.
    #[error(transparent)]
    Channel(#[from] ChannelNameError),
    /// `info` names an attribute that does not exist.
    #[error("unknown info attribute {0:?}; use subscription_count or user_count")]
    UnknownInfo(String),
    /// `info=subscription_count` on the channel list.
    #[error("info=subscription_count is only available for one channel")]
    SubscriptionCountOfMany,
    /// `info=user_count` on a channel list not limited to presence channels.
    #[error("info=user_count needs filter_by_prefix=presence-")]
    UserCountWithoutPresencePrefix,
    /// `info=user_count` for a channel that is not a presence channel.
    #[error("info=user_count is only available for presence channels, not {:?}", .0.as_str())]
    UserCountOfNonPresence(ChannelName),
    /// `/users` of a channel that is not a presence channel.
    #[error("users are only available for presence channels, not {:?}", .0.as_str())]
    UsersOfNonPresence(ChannelName),
    /// `since` is not a position.
    #[error(transparent)]
    Since(#[from] PositionError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::TriggerError;

    fn answer(e: ApiError) -> (u16, String) {
        (e.status(), e.body())
    }

    #[test]
    fn each_failure_has_its_status_and_message() {
        let channel = |name: &str| ChannelName::new(name).unwrap();
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                ApiError::BodyTooLarge(1024),
                413,
                "request body is over the 1024 byte limit",
            ),
            (
                ApiError::BodyUnreadable,
                400,
                "could not read the request body",
            ),
            (
                ApiError::BodyTimeout(10_000),
                408,
                "the request body did not arrive within 10000 ms",
            ),
            (
                ApiError::UnknownApp("9".into()),
                404,
                r#"unknown app \"9\""#,
            ),
            (ApiError::NotFound, 404, "not found"),
            (
                ApiError::HistoryNotAtTheEdge,
                404,
                "channel history is answered by the pushwire origins, not by the edge: send this request to an origin",
            ),
            (
                SigningError::MissingParam("auth_key").into(),
                401,
                "missing auth_key query parameter",
            ),
            (
                SigningError::DuplicateParam("a".into()).into(),
                400,
                r#"query parameter \"a\" appears more than once"#,
            ),
            (
                TriggerError::Missing("name").into(),
                400,
                r#"missing required field \"name\""#,
            ),
            (
                ApiError::Unavailable("shutting down".into()),
                503,
                "the event broker is unavailable: shutting down",
            ),
            (
                ApiError::PublishOutcomeUnknown("no reply".into()),
                504,
                "the publish's outcome is unknown: no reply; read each channel's history (GET /apps/<app_id>/channels/<channel>/history at an origin) before retrying",
            ),
            (
                ApiError::Misconfigured("PUSHWIRE_APPS is not set".into()),
                503,
                "PUSHWIRE_APPS is not set",
            ),
            (
                ChannelQueryError::ChannelEncoding("a%zz".into()).into(),
                400,
                r#"channel \"a%zz\" is not valid percent-encoding"#,
            ),
            (
                ChannelQueryError::UnknownInfo("colour".into()).into(),
                400,
                r#"unknown info attribute \"colour\"; use subscription_count or user_count"#,
            ),
            (
                ChannelQueryError::SubscriptionCountOfMany.into(),
                400,
                "info=subscription_count is only available for one channel",
            ),
            (
                ChannelQueryError::UserCountWithoutPresencePrefix.into(),
                400,
                "info=user_count needs filter_by_prefix=presence-",
            ),
            (
                ChannelQueryError::UserCountOfNonPresence(channel("a")).into(),
                400,
                r#"info=user_count is only available for presence channels, not \"a\""#,
            ),
            (
                ChannelQueryError::UsersOfNonPresence(channel("a")).into(),
                400,
                r#"users are only available for presence channels, not \"a\""#,
            ),
        ];
        for (error, status, message) in cases {
            let expected = format!(r#"{{"error":"{message}"}}"#);
            assert_eq!(answer(error), (status, expected));
        }
    }

    #[test]
    fn wrapped_errors_keep_their_own_text() {
        let name = ChannelName::new("a b").unwrap_err();
        let since = "x".parse::<crate::history::Position>().unwrap_err();
        for (error, text) in [
            (
                ApiError::from(ChannelQueryError::from(name.clone())),
                name.to_string(),
            ),
            (
                ApiError::from(ChannelQueryError::from(since.clone())),
                since.to_string(),
            ),
        ] {
            assert_eq!((error.status(), error.to_string()), (400, text));
        }
    }
}
