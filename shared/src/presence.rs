//! Presence channels: who is on a `presence-*` channel.
//!
//! A subscriber names itself in `channel_data` (`{"user_id", "user_info"?}`,
//! the JSON text its auth signature covers). A user is one member however many
//! sockets it has on the channel, on whichever workers and origins: members are
//! added on their first socket and removed after their last, and the others
//! receive [`MEMBER_ADDED`] / [`MEMBER_REMOVED`] once per change.

use serde_json::{Map, Value, json};

use crate::app::Limits;
use crate::client_protocol::{AckCode, AckError};
use crate::event::{EventName, MEMBER_ADDED, MEMBER_REMOVED};

fn server_event(name: &str) -> EventName {
    EventName::server(name).expect("the member events are server events")
}

/// The longest user id accepted, in bytes (Pusher's limit).
pub const MAX_USER_ID_LEN: usize = 128;

/// A presence member, as its `channel_data` declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The user id (a JSON number is taken as its decimal text).
    pub user_id: String,
    /// `user_info` as compact JSON text; `null` when absent.
    pub user_info: String,
}

impl Member {
    /// Parses `channel_data` under `limits`.
    ///
    /// ```
    /// use pushwire_shared::{presence::Member, Limits};
    /// let m = Member::parse(r#"{"user_id": 42, "user_info": {"name": "Ada"}}"#, &Limits::default()).unwrap();
    /// assert_eq!((m.user_id.as_str(), m.user_info.as_str()), ("42", r#"{"name":"Ada"}"#));
    /// assert!(Member::parse(r#"{"user_info": {}}"#, &Limits::default()).is_err());
    /// ```
    pub fn parse(channel_data: &str, limits: &Limits) -> Result<Self, AckError> {
        let malformed = |why: &str| {
            AckError::new(
                AckCode::Malformed,
                format!(
                    "channel_data must be JSON like {{\"user_id\": \"…\", \"user_info\": {{…}}}}: {why}"
                ),
            )
        };
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(channel_data) else {
            return Err(malformed("not a JSON object"));
        };
        let user_id = match obj.get("user_id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(malformed("user_id must be a non-empty string or a number")),
        };
        if user_id.len() > MAX_USER_ID_LEN {
            return Err(AckError::new(
                AckCode::OverLimit,
                format!("user_id is over {MAX_USER_ID_LEN} bytes"),
            ));
        }
        let user_info = obj
            .get("user_info")
            .cloned()
            .unwrap_or(Value::Null)
            .to_string();
        if user_info.len() > limits.max_presence_user_info_bytes {
            return Err(AckError::new(
                AckCode::OverLimit,
                format!(
                    "user_info is {} bytes; the limit is {}",
                    user_info.len(),
                    limits.max_presence_user_info_bytes
                ),
            ));
        }
        Ok(Member { user_id, user_info })
    }

    /// The [`MEMBER_ADDED`] event and its data, `{"user_id", "user_info"}`.
    pub fn added_event(&self) -> (EventName, Value) {
        let info = serde_json::from_str(&self.user_info).unwrap_or(Value::Null);
        let data = json!({ "user_id": self.user_id, "user_info": info });
        (server_event(MEMBER_ADDED), data)
    }

    /// The [`MEMBER_REMOVED`] event and its data, `{"user_id"}`.
    pub fn removed_event(&self) -> (EventName, Value) {
        (
            server_event(MEMBER_REMOVED),
            json!({ "user_id": self.user_id }),
        )
    }
}

/// The members of a presence channel, as the subscribe ack reports them:
/// `{"count", "ids", "hash": {id: user_info}}`.
///
/// ```
/// use pushwire_shared::presence::summary;
/// let s = summary(vec![("b".into(), "null".into()), ("a".into(), r#"{"n":1}"#.into())]);
/// assert_eq!(s.to_string(), r#"{"count":2,"hash":{"a":{"n":1},"b":null},"ids":["a","b"]}"#);
/// ```
pub fn summary(mut members: Vec<(String, String)>) -> Value {
    members.sort();
    let ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
    let hash: Map<String, Value> = members
        .iter()
        .map(|(id, info)| {
            (
                id.clone(),
                serde_json::from_str(info).unwrap_or(Value::Null),
            )
        })
        .collect();
    json!({ "count": members.len(), "ids": ids, "hash": hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_rules() {
        let limits = Limits::default();
        let code = |text: &str| Member::parse(text, &limits).unwrap_err().code;
        assert_eq!(code("nope"), AckCode::Malformed);
        assert_eq!(code(r#"{"user_id": ""}"#), AckCode::Malformed);
        assert_eq!(code(r#"{"user_id": true}"#), AckCode::Malformed);
        assert_eq!(
            code(&format!(r#"{{"user_id": "{}"}}"#, "u".repeat(129))),
            AckCode::OverLimit
        );
        let big = format!(r#"{{"user_id": "u", "user_info": "{}"}}"#, "x".repeat(1100));
        assert_eq!(code(&big), AckCode::OverLimit);
        let plain = Member::parse(r#"{"user_id": "u"}"#, &limits).unwrap();
        assert_eq!(plain.user_info, "null");
        let (added, data) = plain.added_event();
        assert_eq!(
            (added.as_str(), data),
            (MEMBER_ADDED, json!({"user_id": "u", "user_info": null}))
        );
        let (removed, data) = plain.removed_event();
        assert_eq!(
            (removed.as_str(), data),
            (MEMBER_REMOVED, json!({"user_id": "u"}))
        );
    }
}
