//! Signed reads of the trigger API, Pusher's channel queries plus history:
//!
//! - `GET /apps/{app_id}/channels` (`filter_by_prefix`, `info=user_count`)
//! - `GET /apps/{app_id}/channels/{channel}` (`info=subscription_count,user_count`)
//! - `GET /apps/{app_id}/channels/{channel}/users` (presence channels)
//! - `GET /apps/{app_id}/channels/{channel}/history` (`since`)
//!
//! They are checked like triggers, in the same order: the app (404), the Pusher
//! signature over the `GET` request (401/400), then the parameters (400).

use serde_json::{Map, Value, json};

use crate::api_error::{ApiError, ChannelQueryError};
use crate::app::{App, AppList};
use crate::channel::{ChannelKind, ChannelName};
// Re-exported only until the embedded broker imports it from `directory`.
use crate::directory::ChannelStats;
use crate::history::Position;
use crate::signing::{self, QueryParams, RequestParts};
use crate::trigger::ChannelAttribute;
use crate::urlencoding;

/// What a channel query path asks for (the channel as written in the path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelQueryRoute<'a> {
    /// `/apps/{app_id}/channels`
    Channels {
        /// The app id from the path.
        app_id: &'a str,
    },
    /// `/apps/{app_id}/channels/{channel}`
    Channel {
        /// The app id from the path.
        app_id: &'a str,
        /// The channel, maybe percent-encoded.
        channel: &'a str,
    },
    /// `/apps/{app_id}/channels/{channel}/users`
    Users {
        /// The app id from the path.
        app_id: &'a str,
        /// The channel, maybe percent-encoded.
        channel: &'a str,
    },
    /// `/apps/{app_id}/channels/{channel}/history`
    History {
        /// The app id from the path.
        app_id: &'a str,
        /// The channel, maybe percent-encoded.
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
    /// assert_eq!(ChannelQueryRoute::parse("/apps/7/channels"), Some(ChannelQueryRoute::Channels { app_id: "7" }));
    /// assert_eq!(ChannelQueryRoute::parse("/apps/7/events"), None);
    /// ```
    pub fn parse(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix("/apps/")?;
        let (app_id, rest) = rest.split_once('/')?;
        if app_id.is_empty() {
            return None;
        }
        if rest == "channels" {
            return Some(ChannelQueryRoute::Channels { app_id });
        }
        let rest = rest.strip_prefix("channels/")?;
        let (channel, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if channel.is_empty() {
            return None;
        }
        match tail {
            "" => Some(ChannelQueryRoute::Channel { app_id, channel }),
            "users" => Some(ChannelQueryRoute::Users { app_id, channel }),
            "history" => Some(ChannelQueryRoute::History { app_id, channel }),
            _ => None,
        }
    }

    /// The app id named in the path.
    pub fn app_id(&self) -> &'a str {
        match self {
            ChannelQueryRoute::Channels { app_id }
            | ChannelQueryRoute::Channel { app_id, .. }
            | ChannelQueryRoute::Users { app_id, .. }
            | ChannelQueryRoute::History { app_id, .. } => app_id,
        }
    }
}

/// A validated channel query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelQuery {
    /// The occupied channels whose name starts with `prefix`.
    Channels {
        /// `filter_by_prefix` (empty: all).
        prefix: String,
        /// `info=user_count` (only with a `presence-` prefix).
        user_count: bool,
    },
    /// One channel's state.
    Channel {
        /// The channel.
        channel: ChannelName,
        /// The attributes asked for with `info`.
        info: Vec<ChannelAttribute>,
    },
    /// A presence channel's user ids.
    Users {
        /// The channel.
        channel: ChannelName,
    },
    /// A channel's retained history, optionally after `since`.
    History {
        /// The channel.
        channel: ChannelName,
        /// `since`.
        since: Option<Position>,
    },
}

/// A channel query that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedQuery<'a> {
    /// The app it is for.
    pub app: &'a App,
    /// What it asks.
    pub query: ChannelQuery,
}

fn channel_from_path(raw: &str) -> Result<ChannelName, ChannelQueryError> {
    let decoded = urlencoding::decode(raw)
        .ok_or_else(|| ChannelQueryError::ChannelEncoding(raw.to_owned()))?;
    Ok(ChannelName::new(&decoded)?)
}

fn info(params: &QueryParams) -> Result<Vec<ChannelAttribute>, ChannelQueryError> {
    let mut attributes = Vec::new();
    for name in params.get("info").unwrap_or("").split(',').map(str::trim) {
        let attribute = match name {
            "" => continue,
            "subscription_count" => ChannelAttribute::SubscriptionCount,
            "user_count" => ChannelAttribute::UserCount,
            other => return Err(ChannelQueryError::UnknownInfo(other.to_owned())),
        };
        if !attributes.contains(&attribute) {
            attributes.push(attribute);
        }
    }
    Ok(attributes)
}

/// Runs every check on a channel query, in the trigger's order: the app (404),
/// the signature (401/400), then the parameters (400).
pub fn accept<'a>(
    route: ChannelQueryRoute<'_>,
    parts: &RequestParts<'_>,
    apps: &'a AppList,
    now: u64,
) -> Result<AcceptedQuery<'a>, ApiError> {
    let app = apps
        .by_id(route.app_id())
        .ok_or_else(|| ApiError::UnknownApp(route.app_id().to_owned()))?;
    let params = signing::verify(parts, app, now)?;
    let query = match route {
        ChannelQueryRoute::Channels { .. } => {
            let prefix = params.get("filter_by_prefix").unwrap_or("").to_owned();
            let info = info(&params)?;
            if info.contains(&ChannelAttribute::SubscriptionCount) {
                return Err(ChannelQueryError::SubscriptionCountOfMany.into());
            }
            let user_count = info.contains(&ChannelAttribute::UserCount);
            if user_count && !prefix.starts_with("presence-") {
                return Err(ChannelQueryError::UserCountWithoutPresencePrefix.into());
            }
            ChannelQuery::Channels { prefix, user_count }
        }
        ChannelQueryRoute::Channel { channel, .. } => {
            let channel = channel_from_path(channel)?;
            let info = info(&params)?;
            if info.contains(&ChannelAttribute::UserCount)
                && channel.kind() != ChannelKind::Presence
            {
                return Err(ChannelQueryError::UserCountOfNonPresence(channel).into());
            }
            ChannelQuery::Channel { channel, info }
        }
        ChannelQueryRoute::Users { channel, .. } => {
            let channel = channel_from_path(channel)?;
            if channel.kind() != ChannelKind::Presence {
                return Err(ChannelQueryError::UsersOfNonPresence(channel).into());
            }
            ChannelQuery::Users { channel }
        }
        ChannelQueryRoute::History { channel, .. } => ChannelQuery::History {
            channel: channel_from_path(channel)?,
            since: params
                .get("since")
                .map(str::parse::<Position>)
                .transpose()
                .map_err(ChannelQueryError::from)?,
        },
    };
    Ok(AcceptedQuery { app, query })
}

/// `GET /channels`: `{"channels": {"<name>": {} | {"user_count": n}}}`.
pub fn channels_body(channels: &[(ChannelName, ChannelStats)], user_count: bool) -> Value {
    let info: &[ChannelAttribute] = if user_count {
        &[ChannelAttribute::UserCount]
    } else {
        &[]
    };
    let map: Map<String, Value> = channels
        .iter()
        .map(|(name, stats)| (name.to_string(), stats.attributes(info)))
        .collect();
    json!({ "channels": map })
}

/// `GET /channels/{name}`: `{"occupied", …the attributes asked for}`.
///
/// ```
/// use pushwire_shared::channel_query::channel_body;
/// use pushwire_shared::directory::ChannelStats;
/// use pushwire_shared::trigger::ChannelAttribute;
/// let stats = ChannelStats { subscription_count: 0, user_count: 0 };
/// assert_eq!(channel_body(&stats, &[ChannelAttribute::SubscriptionCount]).to_string(),
///            r#"{"occupied":false,"subscription_count":0}"#);
/// ```
pub fn channel_body(stats: &ChannelStats, info: &[ChannelAttribute]) -> Value {
    let mut body = stats.attributes(info);
    body["occupied"] = Value::Bool(stats.subscription_count > 0);
    body
}

/// `GET /channels/{name}/users` from a presence channel's members
/// (`(user_id, user_info)`): `{"users": [{"id"}, …]}`, sorted by id.
pub fn users_body(members: &[(String, String)]) -> Value {
    let mut ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    json!({ "users": users })
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
            "/apps/1/channels/",
            "/apps/1/channels/a/history/x",
        ] {
            assert_eq!(ChannelQueryRoute::parse(path), None, "{path}");
        }
        assert_eq!(
            ChannelQueryRoute::parse("/apps/1/channels/presence-a/users"),
            Some(ChannelQueryRoute::Users {
                app_id: "1",
                channel: "presence-a"
            })
        );
    }

    #[test]
    fn checks_run_in_order() {
        let apps = AppList::parse("1:key:secret").unwrap();
        let app = apps.single().unwrap();
        let answer = |path: &str, extra: &[(&str, &str)], signed: bool| {
            let query = if signed {
                signing::sign("GET", path, extra, b"", app, 100)
            } else {
                String::new()
            };
            let parts = RequestParts {
                method: "GET",
                path,
                query: &query,
                body: b"",
            };
            match accept(ChannelQueryRoute::parse(path).unwrap(), &parts, &apps, 100) {
                Ok(q) => Ok(q.query),
                Err(e) => Err(e.status()),
            }
        };
        assert_eq!(
            answer("/apps/1/channels/a%40b/history", &[], true),
            Ok(ChannelQuery::History {
                channel: ChannelName::new("a@b").unwrap(),
                since: None
            })
        );
        assert_eq!(answer("/apps/2/channels/a/history", &[], true), Err(404));
        assert_eq!(answer("/apps/1/channels/a/history", &[], false), Err(401));
        assert_eq!(
            answer("/apps/1/channels/a%20b/history", &[], true),
            Err(400)
        );
        assert_eq!(
            answer("/apps/1/channels/a/history", &[("since", "x")], true),
            Err(400)
        );
        assert_eq!(answer("/apps/1/channels/a/users", &[], true), Err(400));
        assert_eq!(
            answer("/apps/1/channels/a", &[("info", "user_count")], true),
            Err(400)
        );
        assert_eq!(
            answer("/apps/1/channels/a", &[("info", "colour")], true),
            Err(400)
        );
        assert_eq!(
            answer("/apps/1/channels", &[("info", "user_count")], true),
            Err(400)
        );
        assert_eq!(
            answer(
                "/apps/1/channels",
                &[("info", "user_count"), ("filter_by_prefix", "presence-")],
                true
            ),
            Ok(ChannelQuery::Channels {
                prefix: "presence-".into(),
                user_count: true
            })
        );
        assert_eq!(
            answer(
                "/apps/1/channels/presence-r",
                &[("info", "user_count,subscription_count")],
                true
            ),
            Ok(ChannelQuery::Channel {
                channel: ChannelName::new("presence-r").unwrap(),
                info: vec![
                    ChannelAttribute::UserCount,
                    ChannelAttribute::SubscriptionCount
                ]
            })
        );
    }

    #[test]
    fn bodies_have_pushers_shapes() {
        let stats = ChannelStats {
            subscription_count: 2,
            user_count: 1,
        };
        let list = [(ChannelName::new("presence-a").unwrap(), stats)];
        assert_eq!(
            channels_body(&list, true),
            json!({"channels": {"presence-a": {"user_count": 1}}})
        );
        assert_eq!(
            channels_body(&list, false),
            json!({"channels": {"presence-a": {}}})
        );
        let members = [("v".into(), "null".into()), ("u".into(), "{}".into())];
        assert_eq!(
            users_body(&members),
            json!({"users": [{"id": "u"}, {"id": "v"}]})
        );
    }
}
