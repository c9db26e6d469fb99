//! Signed reads of the trigger API: `GET /apps/{app_id}/channels/{name}/history`.
//!
//! They are checked like triggers, in the same order: the app (404), the Pusher
//! signature over the `GET` request (401/400), then the channel name (400).

use crate::app::{App, AppList};
use crate::channel::ChannelName;
use crate::signing::{self, QueryParams, RequestParts};
use crate::trigger_request::TriggerRequestError;
use crate::urlencoding;

/// What a channel query path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelQueryRoute<'a> {
    /// `GET /apps/{app_id}/channels/{channel}/history`
    History {
        /// The app id from the path.
        app_id: &'a str,
        /// The channel, as written in the path (maybe percent-encoded).
        channel: &'a str,
    },
}

impl<'a> ChannelQueryRoute<'a> {
    /// Matches a raw path.
    ///
    /// ```
    /// use pushwire_shared::channel_query::ChannelQueryRoute;
    /// assert_eq!(
    ///     ChannelQueryRoute::parse("/apps/7/channels/news/history"),
    ///     Some(ChannelQueryRoute::History { app_id: "7", channel: "news" })
    /// );
    /// assert_eq!(ChannelQueryRoute::parse("/apps/7/events"), None);
    /// ```
    pub fn parse(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix("/apps/")?;
        let (app_id, rest) = rest.split_once('/')?;
        let channel = rest.strip_prefix("channels/")?.strip_suffix("/history")?;
        if app_id.is_empty() || channel.is_empty() || channel.contains('/') {
            return None;
        }
        Some(ChannelQueryRoute::History { app_id, channel })
    }

    /// The app id named in the path.
    pub fn app_id(&self) -> &'a str {
        match self {
            ChannelQueryRoute::History { app_id, .. } => app_id,
        }
    }
}

/// A channel query that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedQuery<'a> {
    /// The app it is for.
    pub app: &'a App,
    /// The channel, decoded and validated.
    pub channel: ChannelName,
    /// The decoded query parameters (the signing ones included).
    pub params: QueryParams,
}

/// Runs every check on a channel query, in the trigger's order: the app (404),
/// the signature (401/400), then the channel name (400).
pub fn accept<'a>(
    route: ChannelQueryRoute<'_>,
    parts: &RequestParts<'_>,
    apps: &'a AppList,
    now: u64,
) -> Result<AcceptedQuery<'a>, TriggerRequestError> {
    let app = apps
        .by_id(route.app_id())
        .ok_or_else(|| TriggerRequestError::UnknownApp(route.app_id().to_owned()))?;
    let params = signing::verify(parts, app, now)?;
    let ChannelQueryRoute::History { channel, .. } = route;
    let decoded = urlencoding::decode(channel).ok_or_else(|| {
        TriggerRequestError::BadQuery(format!("channel {channel:?} is not valid percent-encoding"))
    })?;
    let channel =
        ChannelName::new(&decoded).map_err(|e| TriggerRequestError::BadQuery(e.to_string()))?;
    Ok(AcceptedQuery {
        app,
        channel,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpError;

    #[test]
    fn routes() {
        for path in [
            "/apps/1/channels//history",
            "/apps//channels/a/history",
            "/apps/1/channels/a/b/history",
            "/apps/1/channels/a",
            "/apps/1/channels/a/history/x",
        ] {
            assert_eq!(ChannelQueryRoute::parse(path), None, "{path}");
        }
    }

    #[test]
    fn checks_run_in_order() {
        let apps = AppList::parse("1:key:secret").unwrap();
        let app = apps.single().unwrap();
        let status = |path: &str, query: &str| {
            let parts = RequestParts {
                method: "GET",
                path,
                query,
                body: b"",
            };
            match accept(ChannelQueryRoute::parse(path).unwrap(), &parts, &apps, 100) {
                Ok(q) => (200, q.channel.to_string()),
                Err(e) => (e.status(), e.to_string()),
            }
        };
        let signed = |path: &str| signing::sign("GET", path, &[], b"", app, 100);
        let ok = "/apps/1/channels/a%40b/history";
        assert_eq!(status(ok, &signed(ok)), (200, "a@b".into()));
        assert_eq!(status("/apps/2/channels/a/history", "").0, 404);
        assert_eq!(status(ok, "").0, 401);
        let bad = "/apps/1/channels/a%20b/history";
        assert_eq!(status(bad, &signed(bad)).0, 400);
        // Signed for another path: refused.
        assert_eq!(status(ok, &signed("/apps/1/channels/x/history")).0, 401);
    }
}
