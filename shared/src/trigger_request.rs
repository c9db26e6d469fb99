//! One trigger API request, from its raw parts to the messages to publish:
//! routing, size cap, app lookup, signature, validation and envelopes. The edge
//! worker and the origin both call these, so they answer every request alike.

use serde_json::{Map, Value, json};

use crate::api_error::ApiError;
use crate::app::{App, AppList};
use crate::channel::ChannelName;
use crate::directory::ChannelStats;
use crate::envelope::Envelope;
use crate::event::{EventName, TERMINATE_CONNECTIONS};
use crate::history::PublishMessage;
use crate::signing::{self, RequestParts};
use crate::trigger::{self, ChannelAttribute, TriggerEvent};
use crate::user_auth;

/// What a trigger API path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerRoute<'a> {
    /// `POST /apps/{app_id}/events`
    Events {
        /// The app id from the path.
        app_id: &'a str,
    },
    /// `POST /apps/{app_id}/batch_events`
    BatchEvents {
        /// The app id from the path.
        app_id: &'a str,
    },
    /// `POST /apps/{app_id}/users/{user_id}/terminate_connections`: close every
    /// connection signed in as the user, published like an event on the
    /// user's channel.
    TerminateConnections {
        /// The app id from the path.
        app_id: &'a str,
        /// The user id from the path, as given (checked by [`accept`]).
        user_id: &'a str,
    },
}

impl<'a> TriggerRoute<'a> {
    /// Matches a raw path (any method; callers refuse non-POST as they see fit).
    ///
    /// ```
    /// use pushwire_shared::trigger_request::TriggerRoute;
    /// assert_eq!(TriggerRoute::parse("/apps/7/events"), Some(TriggerRoute::Events { app_id: "7" }));
    /// assert_eq!(TriggerRoute::parse("/apps/7/channels"), None);
    /// assert_eq!(
    ///     TriggerRoute::parse("/apps/7/users/42/terminate_connections"),
    ///     Some(TriggerRoute::TerminateConnections { app_id: "7", user_id: "42" })
    /// );
    /// ```
    pub fn parse(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix("/apps/")?;
        let (app_id, tail) = rest.split_once('/')?;
        if app_id.is_empty() {
            return None;
        }
        match tail {
            "events" => Some(TriggerRoute::Events { app_id }),
            "batch_events" => Some(TriggerRoute::BatchEvents { app_id }),
            _ => {
                let user_id = tail
                    .strip_prefix("users/")?
                    .strip_suffix("/terminate_connections")?;
                (!user_id.is_empty() && !user_id.contains('/'))
                    .then_some(TriggerRoute::TerminateConnections { app_id, user_id })
            }
        }
    }

    /// The app id named in the path.
    pub fn app_id(&self) -> &'a str {
        match self {
            TriggerRoute::Events { app_id }
            | TriggerRoute::BatchEvents { app_id }
            | TriggerRoute::TerminateConnections { app_id, .. } => app_id,
        }
    }
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedTrigger<'a> {
    /// The app it is for.
    pub app: &'a App,
    /// Its events, in request order.
    pub events: Vec<TriggerEvent>,
}

/// Runs every check on a trigger request, in SPEC order: the body cap (413), the
/// app (404), the signature (401/400), then the content (400/413).
pub fn accept<'a>(
    route: TriggerRoute<'_>,
    parts: &RequestParts<'_>,
    apps: &'a AppList,
    max_request_bytes: usize,
    now: u64,
) -> Result<AcceptedTrigger<'a>, ApiError> {
    if parts.body.len() > max_request_bytes {
        return Err(ApiError::BodyTooLarge(max_request_bytes));
    }
    let app = apps
        .by_id(route.app_id())
        .ok_or_else(|| ApiError::UnknownApp(route.app_id().to_owned()))?;
    signing::verify(parts, app, now)?;
    let events = match route {
        TriggerRoute::Events { .. } => vec![trigger::parse_event(parts.body, &app.limits)?],
        TriggerRoute::BatchEvents { .. } => trigger::parse_batch(parts.body, &app.limits)?,
        // The body (the SDKs send `{}`) says nothing: the path names the user.
        TriggerRoute::TerminateConnections { user_id, .. } => vec![TriggerEvent {
            name: EventName::server(TERMINATE_CONNECTIONS).expect("a server event"),
            data: json!({}),
            channels: vec![user_auth::user_channel(user_id)?],
            exclude: None,
            info: Vec::new(),
        }],
    };
    Ok(AcceptedTrigger { app, events })
}

impl AcceptedTrigger<'_> {
    /// The messages to publish: one per event and channel, one id per event
    /// (from `next_id`), all stamped `ts_ms`.
    pub fn messages(&self, ts_ms: u64, mut next_id: impl FnMut() -> String) -> Vec<PublishMessage> {
        let mut messages = Vec::new();
        for event in &self.events {
            let id = next_id();
            for channel in &event.channels {
                let envelope = Envelope::new(
                    id.clone(),
                    self.app.id.clone(),
                    channel.clone(),
                    event.name.clone(),
                    event.data.clone(),
                    ts_ms,
                )
                .excluding(event.exclude.clone());
                messages.push(PublishMessage::of(&envelope));
            }
        }
        messages
    }
}

/// What answering a trigger's `info` needs: each event's channels and the
/// attributes it asked for (empty when none), in request order.
pub type InfoRequest = Vec<(Vec<ChannelName>, Vec<ChannelAttribute>)>;

impl AcceptedTrigger<'_> {
    /// The request's [`InfoRequest`]; `None` when no event asked for `info`.
    pub fn info_request(&self) -> Option<InfoRequest> {
        self.events.iter().any(|e| !e.info.is_empty()).then(|| {
            self.events
                .iter()
                .map(|e| (e.channels.clone(), e.info.clone()))
                .collect()
        })
    }
}

/// The distinct channels an `info` answer needs the stats of, in a fixed order.
pub fn info_channels(request: &InfoRequest) -> Vec<ChannelName> {
    let mut channels: Vec<ChannelName> = Vec::new();
    for (event_channels, info) in request {
        if info.is_empty() {
            continue;
        }
        for channel in event_channels {
            if !channels.contains(channel) {
                channels.push(channel.clone());
            }
        }
    }
    channels
}

/// The `200` body of a trigger that asked for `info`, given the stats of
/// [`info_channels`] in that order: `{"channels": {name: attributes}}` for one
/// event, `{"batch": [attributes of each event's channel]}` for a batch.
pub fn info_body(request: &InfoRequest, stats: &[ChannelStats], batch: bool) -> Value {
    let order = info_channels(request);
    let of = |c: &ChannelName| {
        order
            .iter()
            .position(|x| x == c)
            .and_then(|i| stats.get(i).copied())
            .unwrap_or_default()
    };
    if batch {
        let items: Vec<Value> = request
            .iter()
            .map(|(channels, info)| {
                channels
                    .first()
                    .map_or_else(|| json!({}), |c| of(c).attributes(info))
            })
            .collect();
        return json!({ "batch": items });
    }
    let mut map = Map::new();
    for (channels, info) in request {
        for channel in channels {
            map.insert(channel.to_string(), of(channel).attributes(info));
        }
    }
    json!({ "channels": map })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpError;
    use crate::keys::KeySpace;
    use crate::trigger::TriggerError;

    fn apps() -> AppList {
        AppList::parse("1:key:secret").unwrap()
    }

    fn parts<'a>(path: &'a str, query: &'a str, body: &'a [u8]) -> RequestParts<'a> {
        RequestParts {
            method: "POST",
            path,
            query,
            body,
        }
    }

    #[test]
    fn checks_run_in_spec_order() {
        let apps = apps();
        let app = apps.single().unwrap();
        let big = format!(
            r#"{{"name":"e","channel":"c","data":"{}"}}"#,
            "x".repeat(20_000)
        );
        let route = TriggerRoute::parse("/apps/1/events").unwrap();
        // Over the cap: 413 before the (missing) signature.
        let err = accept(
            route,
            &parts("/apps/1/events", "", big.as_bytes()),
            &apps,
            1024,
            0,
        )
        .unwrap_err();
        assert_eq!(err.status(), 413);
        // Unknown app: 404.
        let other = TriggerRoute::parse("/apps/2/events").unwrap();
        assert_eq!(
            accept(
                other,
                &parts("/apps/2/events", "", b"{}"),
                &apps,
                1 << 20,
                0
            )
            .unwrap_err()
            .status(),
            404
        );
        // Bad signature on oversized data: 401, not 413.
        let query = signing::sign("POST", "/apps/1/events", &[], big.as_bytes(), app, 100)
            .replace("auth_signature=", "auth_signature=0");
        let err = accept(
            route,
            &parts("/apps/1/events", &query, big.as_bytes()),
            &apps,
            1 << 20,
            100,
        )
        .unwrap_err();
        assert_eq!(err.status(), 401);
        // Correctly signed oversized data: 413 from content validation.
        let query = signing::sign("POST", "/apps/1/events", &[], big.as_bytes(), app, 100);
        let err = accept(
            route,
            &parts("/apps/1/events", &query, big.as_bytes()),
            &apps,
            1 << 20,
            100,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ApiError::Trigger(TriggerError::DataTooLarge { .. })
        ));
    }

    #[test]
    fn messages_share_one_id_per_event() {
        let apps = apps();
        let app = apps.single().unwrap();
        let body = br#"{"batch":[{"name":"a","channel":"x","data":"1"},{"name":"b","channel":"y","data":"2"}]}"#;
        let path = "/apps/1/batch_events";
        let query = signing::sign("POST", path, &[], body, app, 5);
        let accepted = accept(
            TriggerRoute::parse(path).unwrap(),
            &parts(path, &query, body),
            &apps,
            1 << 20,
            5,
        )
        .unwrap();
        let mut n = 0;
        let messages = accepted.messages(42, || {
            n += 1;
            format!("id{n}")
        });
        assert_eq!(messages.len(), 2);
        let x = ChannelName::new("x").unwrap();
        assert_eq!(messages[0].channel, KeySpace::DEFAULT.channel("1", &x));
        assert_eq!(messages[0].history_key, KeySpace::DEFAULT.history("1", &x));
        let first = Envelope::decode(messages[0].envelope.as_bytes()).unwrap();
        let second = Envelope::decode(messages[1].envelope.as_bytes()).unwrap();
        assert_eq!(
            (first.id.as_str(), second.id.as_str(), first.ts),
            ("id1", "id2", 42)
        );
    }

    #[test]
    fn info_bodies_follow_pushers_shapes() {
        let ch = |n: &str| ChannelName::new(n).unwrap();
        let users = vec![ChannelAttribute::UserCount];
        let request: InfoRequest = vec![
            (vec![ch("presence-a")], users.clone()),
            (vec![ch("b")], vec![]),
            (vec![ch("presence-a")], users),
        ];
        assert_eq!(info_channels(&request), [ch("presence-a")]);
        let stats = [ChannelStats {
            subscription_count: 3,
            user_count: 2,
        }];
        assert_eq!(
            info_body(&request, &stats, true),
            json!({"batch": [{"user_count": 2}, {}, {"user_count": 2}]})
        );
        assert_eq!(
            info_body(&request[..1].to_vec(), &stats, false),
            json!({"channels": {"presence-a": {"user_count": 2}}})
        );
    }

    #[test]
    fn terminate_connections_is_an_event_on_the_users_channel() {
        let apps = apps();
        let app = apps.single().unwrap();
        let path = "/apps/1/users/alice/terminate_connections";
        let route = TriggerRoute::parse(path).unwrap();
        let query = signing::sign("POST", path, &[], b"{}", app, 5);
        let accepted = accept(route, &parts(path, &query, b"{}"), &apps, 1 << 20, 5).unwrap();
        let messages = accepted.messages(42, || "id".into());
        let envelope = Envelope::decode(messages[0].envelope.as_bytes()).unwrap();
        assert_eq!(envelope.channel.as_str(), "#server-to-user-alice");
        assert_eq!(envelope.event.as_str(), TERMINATE_CONNECTIONS);
        // Signed like every call: a bad signature is 401, a bad user id 400.
        let unsigned = accept(route, &parts(path, "", b"{}"), &apps, 1 << 20, 5).unwrap_err();
        assert_eq!(unsigned.status(), 401);
        let bad = "/apps/1/users/a%20b/terminate_connections";
        let query = signing::sign("POST", bad, &[], b"{}", app, 5);
        let err = accept(
            TriggerRoute::parse(bad).unwrap(),
            &parts(bad, &query, b"{}"),
            &apps,
            1 << 20,
            5,
        )
        .unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
    }

    #[test]
    fn routes() {
        assert_eq!(
            TriggerRoute::parse("/apps/1/batch_events"),
            Some(TriggerRoute::BatchEvents { app_id: "1" })
        );
        for path in [
            "/apps//events",
            "/apps/1",
            "/apps/1/events/x",
            "/app/1/events",
            "/apps/1/users//terminate_connections",
            "/apps/1/users/a/b/terminate_connections",
            "/apps/1/users/a",
            "/",
        ] {
            assert_eq!(TriggerRoute::parse(path), None, "{path}");
        }
    }
}
