//! Where an app's webhooks go: endpoints as the config file lists them, each a
//! URL, the event types it wants and an optional channel-name prefix, validated
//! when they are read so that a bad one stops the server at start.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::channel::{ChannelName, ChannelNameError, truncate};
use crate::webhook::WebhookUrl;

/// The event types a webhook endpoint can ask for, under Pusher's names.
///
/// Pusher's `cache_miss` and `subscription_count` are left out: cache misses
/// are told to the subscriber only (no webhook yet), and counts are read
/// through the channel queries.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEventKind {
    /// A channel got its first subscriber.
    ChannelOccupied,
    /// A channel lost its last subscriber.
    ChannelVacated,
    /// A user joined a presence channel (their first socket on it).
    MemberAdded,
    /// A user left a presence channel (their last socket on it).
    MemberRemoved,
    /// A client sent a `client-*` event on a private or presence channel.
    ClientEvent,
    /// A client subscribed to a cache channel that had no event to send it.
    CacheMiss,
}

impl WebhookEventKind {
    /// Every kind, in the order Pusher's documentation lists them.
    pub const ALL: [WebhookEventKind; 6] = [
        WebhookEventKind::ChannelOccupied,
        WebhookEventKind::ChannelVacated,
        WebhookEventKind::MemberAdded,
        WebhookEventKind::MemberRemoved,
        WebhookEventKind::ClientEvent,
        WebhookEventKind::CacheMiss,
    ];

    /// The name on the wire and in the config file: the event's `name` field.
    ///
    /// ```
    /// use pushwire_shared::webhook::WebhookEventKind;
    /// assert_eq!(WebhookEventKind::MemberAdded.name(), "member_added");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            WebhookEventKind::ChannelOccupied => "channel_occupied",
            WebhookEventKind::ChannelVacated => "channel_vacated",
            WebhookEventKind::MemberAdded => "member_added",
            WebhookEventKind::MemberRemoved => "member_removed",
            WebhookEventKind::ClientEvent => "client_event",
            WebhookEventKind::CacheMiss => "cache_miss",
        }
    }
}

impl fmt::Display for WebhookEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WebhookEventKind {
    type Err = WebhookConfigError;

    /// ```
    /// use pushwire_shared::webhook::WebhookEventKind;
    /// assert_eq!("client_event".parse::<WebhookEventKind>().unwrap(), WebhookEventKind::ClientEvent);
    /// assert!("channel-occupied".parse::<WebhookEventKind>().is_err());
    /// ```
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        WebhookEventKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| WebhookConfigError::UnknownEvent(truncate(name, 64)))
    }
}

/// Why a webhook endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookConfigError {
    /// The URL cannot be used. `url` is quoted without its query string, which
    /// often carries a receiver's token.
    #[error("webhook url {url:?} {why}")]
    InvalidUrl {
        /// The URL as given, shortened, its query left out.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The endpoint asks for no event.
    #[error(
        "a webhook endpoint must list at least one event (channel_occupied, channel_vacated, \
         member_added, member_removed, client_event, cache_miss)"
    )]
    NoEvents,
    /// An event type that is not one of Pusher's names.
    #[error(
        "unknown webhook event {0:?}; known are channel_occupied, channel_vacated, \
         member_added, member_removed, client_event, cache_miss"
    )]
    UnknownEvent(String),
    /// The channel prefix could start no channel name.
    #[error("webhook channel_prefix: {0}")]
    ChannelPrefix(ChannelNameError),
}

/// One receiver of an app's webhooks: where to send, which events, and
/// optionally only those on channels whose name starts with a prefix.
///
/// In the config file: `{"url": "https://…", "events": ["member_added"],
/// "channel_prefix": "presence-"}`. Reading one validates it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "EndpointFields", into = "EndpointFields")]
pub struct WebhookEndpoint {
    url: WebhookUrl,
    events: BTreeSet<WebhookEventKind>,
    channel_prefix: Option<String>,
}

/// [`WebhookEndpoint`] as written in the config file, before validation.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointFields {
    url: String,
    // Strings, not kinds: an unknown name then gets the error that lists the known ones.
    events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    channel_prefix: Option<String>,
}

impl TryFrom<EndpointFields> for WebhookEndpoint {
    type Error = WebhookConfigError;

    fn try_from(fields: EndpointFields) -> Result<Self, Self::Error> {
        let events = fields
            .events
            .iter()
            .map(|name| name.parse())
            .collect::<Result<Vec<_>, _>>()?;
        WebhookEndpoint::new(&fields.url, events, fields.channel_prefix.as_deref())
    }
}

impl From<WebhookEndpoint> for EndpointFields {
    fn from(endpoint: WebhookEndpoint) -> Self {
        EndpointFields {
            url: endpoint.url.as_str().to_owned(),
            events: endpoint
                .events
                .iter()
                .map(|kind| kind.name().to_owned())
                .collect(),
            channel_prefix: endpoint.channel_prefix,
        }
    }
}

impl WebhookEndpoint {
    /// Validates an endpoint. A kind listed twice counts once; a prefix must be
    /// the start of some channel name (Pusher's characters, at most 200 bytes).
    ///
    /// ```
    /// use pushwire_shared::webhook::{WebhookEndpoint, WebhookEventKind::*};
    /// let hook = WebhookEndpoint::new("http://127.0.0.1:8080/hooks", [MemberAdded, MemberRemoved], Some("presence-")).unwrap();
    /// assert!(hook.wants(MemberAdded, "presence-room"));
    /// assert!(!hook.wants(MemberAdded, "private-room"));
    /// assert!(!hook.wants(ChannelOccupied, "presence-room"));
    /// assert!(WebhookEndpoint::new("http://127.0.0.1:8080/hooks", [], None).is_err());
    /// ```
    pub fn new(
        url: &str,
        events: impl IntoIterator<Item = WebhookEventKind>,
        channel_prefix: Option<&str>,
    ) -> Result<Self, WebhookConfigError> {
        let url = WebhookUrl::new(url)?;
        let events: BTreeSet<_> = events.into_iter().collect();
        if events.is_empty() {
            return Err(WebhookConfigError::NoEvents);
        }
        if let Some(prefix) = channel_prefix {
            // A prefix of a valid name is a valid name: the same characters, shorter.
            ChannelName::new(prefix).map_err(WebhookConfigError::ChannelPrefix)?;
        }
        Ok(WebhookEndpoint {
            url,
            events,
            channel_prefix: channel_prefix.map(str::to_owned),
        })
    }

    /// An endpoint for every event type on every channel: the form a single
    /// URL given as a flag or environment variable takes.
    ///
    /// ```
    /// use pushwire_shared::webhook::{WebhookEndpoint, WebhookEventKind};
    /// let hook = WebhookEndpoint::all_events("https://example.com/pusher").unwrap();
    /// assert!(WebhookEventKind::ALL.iter().all(|&kind| hook.wants(kind, "any")));
    /// ```
    pub fn all_events(url: &str) -> Result<Self, WebhookConfigError> {
        WebhookEndpoint::new(url, WebhookEventKind::ALL, None)
    }

    /// Where the webhooks go.
    pub fn url(&self) -> &WebhookUrl {
        &self.url
    }

    /// The event types it asked for, each once, in [`WebhookEventKind::ALL`] order.
    pub fn events(&self) -> impl Iterator<Item = WebhookEventKind> + '_ {
        self.events.iter().copied()
    }

    /// The channel-name prefix it is limited to, if any.
    pub fn channel_prefix(&self) -> Option<&str> {
        self.channel_prefix.as_deref()
    }

    /// The endpoint's name in Redis for app `app_id`: 16 hex digits of a
    /// SHA-256 over the app id, the URL, the event types and the prefix. Every
    /// origin configured alike derives the same id, so any of them can send
    /// what another queued; an endpoint changed in any of these is a new one.
    ///
    /// ```
    /// use pushwire_shared::webhook::WebhookEndpoint;
    /// let hook = WebhookEndpoint::all_events("http://127.0.0.1:8080/hooks").unwrap();
    /// let id = hook.outbox_id("1");
    /// assert_eq!(id.len(), 16);
    /// assert_eq!(id, hook.clone().outbox_id("1"));
    /// assert_ne!(id, hook.outbox_id("2"));
    /// ```
    pub fn outbox_id(&self, app_id: &str) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for part in [app_id, self.url.as_str()] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        for kind in &self.events {
            hash.update(kind.name().as_bytes());
            hash.update([0]);
        }
        if let Some(prefix) = &self.channel_prefix {
            hash.update(prefix.as_bytes());
        }
        hex::encode(&hash.finalize()[..8])
    }

    /// Whether an event of `kind` on `channel` goes to this endpoint.
    pub fn wants(&self, kind: WebhookEventKind, channel: &str) -> bool {
        self.events.contains(&kind)
            && self
                .channel_prefix
                .as_deref()
                .is_none_or(|prefix| channel.starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WebhookEventKind::*;

    #[test]
    fn event_kinds_have_pusher_s_names_both_ways() {
        for kind in WebhookEventKind::ALL {
            assert_eq!(kind.name().parse::<WebhookEventKind>().unwrap(), kind);
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.name())
            );
            assert_eq!(kind.to_string(), kind.name());
        }
        assert_eq!("cache_miss".parse::<WebhookEventKind>().unwrap(), CacheMiss);
        let error = "subscription_count"
            .parse::<WebhookEventKind>()
            .unwrap_err();
        assert_eq!(
            error,
            WebhookConfigError::UnknownEvent("subscription_count".into())
        );
        assert!(error.to_string().contains("cache_miss"), "{error}");
    }

    #[test]
    fn endpoints_read_from_the_config_are_validated() {
        let hook: WebhookEndpoint = serde_json::from_str(
            r#"{"url": "http://127.0.0.1:1/h", "events": ["client_event", "channel_vacated", "client_event"]}"#,
        )
        .unwrap();
        assert_eq!(
            hook.events().collect::<Vec<_>>(),
            [ChannelVacated, ClientEvent]
        );
        assert_eq!(hook.channel_prefix(), None);
        assert_eq!(hook.url().as_str(), "http://127.0.0.1:1/h");

        let refused = |json: &str| {
            serde_json::from_str::<WebhookEndpoint>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(refused(r#"{"url": "http://a/", "events": []}"#).contains("at least one event"));
        assert!(
            refused(r#"{"url": "http://a/", "events": ["member-added"]}"#)
                .contains("\"member-added\"")
        );
        assert!(
            refused(r#"{"url": "mailto:a@b", "events": ["member_added"]}"#).contains("http://")
        );
        assert!(
            refused(r#"{"url": "http://a/", "events": ["member_added"], "channel_prefix": "a b"}"#)
                .contains("channel_prefix")
        );
        assert!(
            refused(r#"{"url": "http://a/", "events": ["member_added"], "channel_prefix": ""}"#)
                .contains("empty")
        );
        assert!(
            refused(r#"{"url": "http://a/", "events": ["member_added"], "secret": "x"}"#)
                .contains("unknown field")
        );
        assert!(refused(r#"{"events": ["member_added"]}"#).contains("url"));
    }

    #[test]
    fn endpoints_are_written_back_as_they_are_read() {
        let json = r#"{"url":"https://h/p?t=1","events":["channel_occupied","member_removed"],"channel_prefix":"presence-"}"#;
        let hook: WebhookEndpoint = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&hook).unwrap(), json);
        let bare = WebhookEndpoint::new("http://h/", [ClientEvent], None).unwrap();
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"url":"http://h/","events":["client_event"]}"#
        );
    }

    #[test]
    fn the_prefix_filters_by_channel_name() {
        let hook =
            WebhookEndpoint::new("http://h/", WebhookEventKind::ALL, Some("private-")).unwrap();
        assert!(hook.wants(ClientEvent, "private-chat"));
        assert!(!hook.wants(ClientEvent, "presence-chat"));
        assert!(!hook.wants(ChannelOccupied, "private"));
        let every = WebhookEndpoint::all_events("http://h/").unwrap();
        assert!(every.wants(ChannelVacated, "x"));
    }
}
