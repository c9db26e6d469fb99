//! What a webhook request carries, byte for byte as Pusher sends it: the JSON
//! body `{"time_ms": …, "events": […]}` and the headers that sign it.
//!
//! The stock SDKs check more than the signature, and each check is kept here:
//! the npm `pusher` SDK parses the body only when `Content-Type` is exactly
//! `application/json` (no `charset`), and compares the signature as lower-case
//! hex; the PyPI `pusher` SDK refuses a body whose `time_ms` is more than
//! 300 s from its own clock, so each attempt of a retried batch is stamped and
//! signed anew ([`SignedWebhook::new`] with the attempt's time).

use hmac::Mac;

use crate::app::App;
use crate::channel::ChannelName;
use crate::event::EventName;
use crate::signing::hmac_sha256;
use crate::socket_id::SocketId;
use crate::webhook::WebhookEventKind;

/// The header naming the app key whose secret signed the body.
pub const KEY_HEADER: &str = "X-Pusher-Key";

/// The header holding the lower-case hex HMAC-SHA256 of the body under the app secret.
pub const SIGNATURE_HEADER: &str = "X-Pusher-Signature";

/// The body's media type, exactly: the npm SDK ignores a body sent as anything
/// else, `application/json; charset=utf-8` included.
pub const CONTENT_TYPE: &str = "application/json";

/// One event of a webhook, with Pusher's `name` and field names.
///
/// ```
/// use pushwire_shared::webhook::WebhookEvent;
/// use pushwire_shared::ChannelName;
/// let event = WebhookEvent::MemberAdded { channel: ChannelName::new("presence-room").unwrap(), user_id: "42".into() };
/// assert_eq!(
///     serde_json::to_string(&event).unwrap(),
///     r#"{"name":"member_added","channel":"presence-room","user_id":"42"}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum WebhookEvent {
    /// `channel` got its first subscriber.
    ChannelOccupied {
        /// The channel.
        channel: ChannelName,
    },
    /// `channel` lost its last subscriber.
    ChannelVacated {
        /// The channel.
        channel: ChannelName,
    },
    /// `user_id` joined the presence channel `channel`.
    MemberAdded {
        /// The presence channel.
        channel: ChannelName,
        /// The member's `user_id`, from its `channel_data`.
        user_id: String,
    },
    /// `user_id` left the presence channel `channel`.
    MemberRemoved {
        /// The presence channel.
        channel: ChannelName,
        /// The member's `user_id`.
        user_id: String,
    },
    /// A client sent `event` on the private or presence channel `channel`.
    ClientEvent {
        /// The channel it was sent on.
        channel: ChannelName,
        /// Its `client-…` name.
        event: EventName,
        /// Its data, as a string: JSON data is sent as its JSON text, as Pusher does.
        data: String,
        /// The sending socket.
        socket_id: SocketId,
        /// The sender's `user_id`, on presence channels only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    /// A client subscribed to the cache channel `channel`, which had no
    /// event to send it.
    CacheMiss {
        /// The cache channel.
        channel: ChannelName,
    },
}

impl WebhookEvent {
    /// The event's type, which endpoints choose by.
    pub fn kind(&self) -> WebhookEventKind {
        match self {
            WebhookEvent::ChannelOccupied { .. } => WebhookEventKind::ChannelOccupied,
            WebhookEvent::ChannelVacated { .. } => WebhookEventKind::ChannelVacated,
            WebhookEvent::MemberAdded { .. } => WebhookEventKind::MemberAdded,
            WebhookEvent::MemberRemoved { .. } => WebhookEventKind::MemberRemoved,
            WebhookEvent::ClientEvent { .. } => WebhookEventKind::ClientEvent,
            WebhookEvent::CacheMiss { .. } => WebhookEventKind::CacheMiss,
        }
    }

    /// The channel it happened on, which endpoints filter by.
    pub fn channel(&self) -> &ChannelName {
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::MemberAdded { channel, .. }
            | WebhookEvent::MemberRemoved { channel, .. }
            | WebhookEvent::ClientEvent { channel, .. }
            | WebhookEvent::CacheMiss { channel } => channel,
        }
    }
}

/// A webhook body as a receiver reads it back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookBody {
    /// When the request was made, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The events, oldest first.
    pub events: Vec<WebhookEvent>,
}

/// [`WebhookBody`] borrowing its events, so that encoding copies nothing.
#[derive(serde::Serialize)]
struct BodyRef<'a> {
    time_ms: u64,
    events: &'a [WebhookEvent],
}

/// The JSON body of a webhook carrying `events`, made at `time_ms`.
///
/// ```
/// use pushwire_shared::webhook::{encode_body, WebhookEvent};
/// use pushwire_shared::ChannelName;
/// let occupied = WebhookEvent::ChannelOccupied { channel: ChannelName::new("news").unwrap() };
/// assert_eq!(
///     encode_body(1_700_000_000_123, &[occupied]),
///     r#"{"time_ms":1700000000123,"events":[{"name":"channel_occupied","channel":"news"}]}"#
/// );
/// ```
pub fn encode_body(time_ms: u64, events: &[WebhookEvent]) -> String {
    serde_json::to_string(&BodyRef { time_ms, events })
        .expect("a webhook body has only string keys and plain values")
}

/// The `X-Pusher-Signature` of `body`: lower-case hex HMAC-SHA256 under `secret`.
///
/// ```
/// use pushwire_shared::webhook::{signature, verify_signature};
/// let sig = signature("app-secret", br#"{"time_ms":1,"events":[]}"#);
/// assert_eq!(sig.len(), 64);
/// assert!(verify_signature("app-secret", br#"{"time_ms":1,"events":[]}"#, &sig));
/// assert!(!verify_signature("app-secret", br#"{"time_ms":2,"events":[]}"#, &sig));
/// ```
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac_sha256(secret);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex, either case) is `body`'s under `secret`, compared
/// in constant time: what a receiver checks.
pub fn verify_signature(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(signature) = hex::decode(signature) else {
        return false;
    };
    let mut mac = hmac_sha256(secret);
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// One webhook request, ready to send: its body and the headers that go with it.
///
/// `Debug` shows the key and the body's length, never the body (event data)
/// or the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedWebhook {
    body: String,
    key: String,
    signature: String,
}

impl SignedWebhook {
    /// Encodes `events` made at `time_ms` and signs them as `app`.
    ///
    /// ```
    /// use pushwire_shared::webhook::{verify_signature, SignedWebhook, WebhookEvent, SIGNATURE_HEADER};
    /// use pushwire_shared::{AppList, ChannelName};
    /// let apps = AppList::parse("1000001:app-key:app-secret").unwrap();
    /// let vacated = WebhookEvent::ChannelVacated { channel: ChannelName::new("news").unwrap() };
    /// let hook = SignedWebhook::new(apps.single().unwrap(), 1_700_000_000_000, &[vacated]);
    /// let headers = hook.headers();
    /// assert_eq!(headers[0], ("Content-Type", "application/json"));
    /// assert_eq!(headers[1], ("X-Pusher-Key", "app-key"));
    /// assert_eq!(headers[2].0, SIGNATURE_HEADER);
    /// assert!(verify_signature("app-secret", hook.body().as_bytes(), headers[2].1));
    /// ```
    pub fn new(app: &App, time_ms: u64, events: &[WebhookEvent]) -> Self {
        let body = encode_body(time_ms, events);
        let signature = signature(&app.secret, body.as_bytes());
        SignedWebhook {
            body,
            key: app.key.clone(),
            signature,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The body, for the request.
    pub fn into_body(self) -> String {
        self.body
    }

    /// `Content-Type`, [`KEY_HEADER`] and [`SIGNATURE_HEADER`] with their values,
    /// in that order.
    pub fn headers(&self) -> [(&'static str, &str); 3] {
        [
            ("Content-Type", CONTENT_TYPE),
            (KEY_HEADER, &self.key),
            (SIGNATURE_HEADER, &self.signature),
        ]
    }
}

impl std::fmt::Debug for SignedWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedWebhook")
            .field("key", &self.key)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::app::Limits;

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    /// One event of every kind, as the delivery code will make them.
    fn every_kind() -> Vec<WebhookEvent> {
        vec![
            WebhookEvent::ChannelOccupied {
                channel: channel("presence-room"),
            },
            WebhookEvent::MemberAdded {
                channel: channel("presence-room"),
                user_id: "u1".into(),
            },
            WebhookEvent::ClientEvent {
                channel: channel("presence-room"),
                event: EventName::new("client-typing").unwrap(),
                data: r#"{"text":"hé \"quoted\""}"#.into(),
                socket_id: "123.456".parse().unwrap(),
                user_id: Some("u1".into()),
            },
            WebhookEvent::ClientEvent {
                channel: channel("private-chat"),
                event: EventName::new("client-ping").unwrap(),
                data: "plain".into(),
                socket_id: "1.2".parse().unwrap(),
                user_id: None,
            },
            WebhookEvent::MemberRemoved {
                channel: channel("presence-room"),
                user_id: "u1".into(),
            },
            WebhookEvent::ChannelVacated {
                channel: channel("presence-room"),
            },
        ]
    }

    #[test]
    fn the_body_has_pusher_s_shapes() {
        let body: serde_json::Value =
            serde_json::from_str(&encode_body(1_396_258_618_139, &every_kind())).unwrap();
        assert_eq!(
            body,
            json!({"time_ms": 1_396_258_618_139_u64, "events": [
                {"name": "channel_occupied", "channel": "presence-room"},
                {"name": "member_added", "channel": "presence-room", "user_id": "u1"},
                {"name": "client_event", "channel": "presence-room", "event": "client-typing",
                 "data": "{\"text\":\"hé \\\"quoted\\\"\"}", "socket_id": "123.456", "user_id": "u1"},
                {"name": "client_event", "channel": "private-chat", "event": "client-ping",
                 "data": "plain", "socket_id": "1.2"},
                {"name": "member_removed", "channel": "presence-room", "user_id": "u1"},
                {"name": "channel_vacated", "channel": "presence-room"},
            ]})
        );
    }

    #[test]
    fn a_body_reads_back_as_it_was_written() {
        let events = every_kind();
        let read: WebhookBody = serde_json::from_str(&encode_body(7, &events)).unwrap();
        assert_eq!(read, WebhookBody { time_ms: 7, events });
        let kinds: Vec<_> = read.events.iter().map(WebhookEvent::kind).collect();
        use WebhookEventKind::*;
        assert_eq!(
            kinds,
            [
                ChannelOccupied,
                MemberAdded,
                ClientEvent,
                ClientEvent,
                MemberRemoved,
                ChannelVacated
            ]
        );
        assert!(
            read.events
                .iter()
                .all(|e| e.channel().as_str().starts_with("pr"))
        );
        assert!(
            serde_json::from_str::<WebhookEvent>(r#"{"name":"subscription_count","channel":"a"}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<WebhookEvent>(
                r#"{"name":"member_added","channel":"a b","user_id":"u"}"#
            )
            .is_err()
        );
    }

    /// Pusher's webhook signature is HMAC-SHA256 of the raw body, as any HMAC
    /// implementation computes it: RFC 4231's first test case, with a text key.
    #[test]
    fn the_signature_is_hex_hmac_sha256_of_the_body() {
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let sig = signature("secret", b"body");
        assert!(verify_signature("secret", b"body", &sig.to_uppercase()));
        assert!(!verify_signature("other", b"body", &sig));
        assert!(!verify_signature("secret", b"body", "not hex"));
        assert!(!verify_signature("secret", b"body", &sig[..62]));
    }

    #[test]
    fn a_signed_webhook_signs_its_own_body_and_keeps_secrets_out_of_debug() {
        let app = App {
            id: "1".into(),
            key: "the-key".into(),
            secret: "the-secret".into(),
            limits: Limits::default(),
        };
        let hook = SignedWebhook::new(&app, 1, &every_kind());
        let [content_type, key, sig] = hook.headers();
        assert_eq!(content_type, ("Content-Type", "application/json"));
        assert_eq!(key, ("X-Pusher-Key", "the-key"));
        assert_eq!(sig.0, "X-Pusher-Signature");
        assert_eq!(sig.1, signature("the-secret", hook.body().as_bytes()));
        assert_eq!(sig.1, sig.1.to_lowercase());
        let debug = format!("{hook:?}");
        assert!(
            !debug.contains(sig.1) && !debug.contains("typing") && !debug.contains("the-secret"),
            "{debug}"
        );
        assert_eq!(hook.clone().into_body(), hook.body());
    }
}
