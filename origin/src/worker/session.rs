//! Per-socket state: the app a socket belongs to, its Pusher socket id and its channels.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pushwire_shared::client_protocol::{AckCode, AckError};
use pushwire_shared::presence::Member;
use pushwire_shared::{App, AppList, ChannelName, SocketId};
use serde_json::Value;

use super::subscribe_rate::SubscribeRate;

/// What a connected socket is, kept in its socketioxide extensions.
#[derive(Debug)]
pub(crate) struct SocketSession {
    /// The app chosen by the handshake.
    pub app: App,
    /// The Pusher-style id announced in `pushwire:connection_established`.
    pub socket_id: SocketId,
    /// The channels the socket is on. An async lock held across the broker round
    /// trip, so one socket's subscription changes apply one at a time: a second
    /// `subscribe` to a channel is only acknowledged once the first one took effect.
    pub channels: tokio::sync::Mutex<HashSet<ChannelName>>,
    /// The user this connection signed in as (Pusher's `signin`): set once,
    /// never changed, so a connection is one user for its whole life.
    pub user: OnceLock<String>,
    /// The member this socket is on each of its presence channels. Changed only
    /// while `channels` is held.
    pub members: Mutex<HashMap<ChannelName, Member>>,
    /// Client events sent in the current one-second window: `(window start, count)`.
    client_events: Mutex<(Instant, u32)>,
    /// The socket's subscribe budget.
    subscribes: Mutex<SubscribeRate>,
}

/// Why a handshake was refused (sent to the client as `connect_error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// No `app_key` and several apps configured.
    #[error("auth.app_key is required: this server hosts several apps")]
    AppKeyRequired,
    /// `app_key` names no configured app.
    #[error("unknown app_key {0:?}")]
    UnknownAppKey(String),
    /// `auth` is not an object or `app_key` is not a string.
    #[error("auth must be an object like {{\"app_key\": \"…\"}}")]
    MalformedAuth,
    /// `auth.channels` is not a list, or too long.
    #[error("auth.channels must be an array of at most {MAX_HANDSHAKE_CHANNELS} channels")]
    MalformedChannels,
    /// The app holds the most connections allowed.
    #[error(transparent)]
    OverCapacity(#[from] super::app_connections::OverCapacity),
}

/// The most channels a handshake may ask to subscribe.
pub(crate) const MAX_HANDSHAKE_CHANNELS: usize = 100;

/// The `subscribe` payloads a handshake asks for in `auth.channels`: each item a
/// channel name or a `subscribe` object (`{"channel", "auth"?, …}`).
pub(crate) fn handshake_channels(auth: Option<&Value>) -> Result<Vec<Value>, HandshakeError> {
    match auth.and_then(|a| a.get("channels")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_HANDSHAKE_CHANNELS => Ok(items
            .iter()
            .map(|item| match item {
                Value::String(name) => serde_json::json!({ "channel": name }),
                other => other.clone(),
            })
            .collect()),
        Some(_) => Err(HandshakeError::MalformedChannels),
    }
}

/// Picks the app for a handshake's `auth` payload.
pub(crate) fn resolve_app<'a>(
    apps: &'a AppList,
    auth: Option<&Value>,
) -> Result<&'a App, HandshakeError> {
    let key = match auth {
        None | Some(Value::Null) => None,
        Some(Value::Object(obj)) => match obj.get("app_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) => Some(key.as_str()),
            Some(_) => return Err(HandshakeError::MalformedAuth),
        },
        Some(_) => return Err(HandshakeError::MalformedAuth),
    };
    match key {
        Some(key) => apps
            .by_key(key)
            .ok_or_else(|| HandshakeError::UnknownAppKey(key.to_owned())),
        None => apps.single().ok_or(HandshakeError::AppKeyRequired),
    }
}

impl SocketSession {
    /// A session with no channels yet.
    pub(crate) fn new(app: App, socket_id: SocketId) -> Self {
        let subscribes = SubscribeRate::new(
            app.limits.max_channels_per_socket,
            app.limits.max_subscribes_per_sec,
            Instant::now(),
        );
        SocketSession {
            app,
            socket_id,
            channels: tokio::sync::Mutex::new(HashSet::new()),
            user: OnceLock::new(),
            members: Mutex::new(HashMap::new()),
            client_events: Mutex::new((Instant::now(), 0)),
            subscribes: Mutex::new(subscribes),
        }
    }

    /// Counts one subscribe; the refusal when the socket is over its rate.
    pub(crate) fn allow_subscribe(&self, now: Instant) -> Result<(), AckError> {
        let mut rate = self.subscribes.lock().unwrap_or_else(|e| e.into_inner());
        if rate.allow(now) {
            return Ok(());
        }
        Err(AckError::new(
            AckCode::SubscribeRateLimited,
            format!(
                "over {} subscribes per second; retry in {} ms",
                self.app.limits.max_subscribes_per_sec,
                rate.retry_after().as_millis().max(1)
            ),
        ))
    }

    /// Counts one client event; false when the socket is over its per-second limit.
    pub(crate) fn allow_client_event(&self, now: Instant) -> bool {
        let mut window = self.client_events.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(window.0) >= Duration::from_secs(1) {
            *window = (now, 0);
        }
        if window.1 >= self.app.limits.max_client_events_per_sec {
            return false;
        }
        window.1 += 1;
        true
    }

    /// The members map (a poisoned lock is still consistent: inserts and removes only).
    pub(crate) fn members(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelName, Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_events_are_limited_per_second() {
        let apps = AppList::parse("1:k:s").unwrap();
        let session = SocketSession::new(apps.single().unwrap().clone(), "1.1".parse().unwrap());
        let start = Instant::now();
        let allowed = (0..15)
            .filter(|_| session.allow_client_event(start))
            .count();
        assert_eq!(allowed, 10);
        assert!(session.allow_client_event(start + Duration::from_secs(1)));
    }

    #[test]
    fn app_selection() {
        let one = AppList::parse("1:k1:s1").unwrap();
        let two = AppList::parse("1:k1:s1,2:k2:s2").unwrap();
        assert_eq!(resolve_app(&one, None).unwrap().id, "1");
        assert_eq!(resolve_app(&one, Some(&json!({}))).unwrap().id, "1");
        assert_eq!(
            resolve_app(&two, Some(&json!({"app_key": "k2"})))
                .unwrap()
                .id,
            "2"
        );
        assert_eq!(resolve_app(&two, None), Err(HandshakeError::AppKeyRequired));
        assert_eq!(
            resolve_app(&two, Some(&json!({"app_key": "k3"}))),
            Err(HandshakeError::UnknownAppKey("k3".into()))
        );
        assert_eq!(
            resolve_app(&one, Some(&json!("k1"))),
            Err(HandshakeError::MalformedAuth)
        );
        assert_eq!(
            resolve_app(&one, Some(&json!({"app_key": 1}))),
            Err(HandshakeError::MalformedAuth)
        );
    }
}
