//! What a subscriber receives for a triggered event.
//!
//! The Socket.IO event carries two arguments: the data, decoded by pusher-js's
//! rule, and [`DeliveryMeta`] naming the channel and the event id.

use serde_json::Value;

/// Applies pusher-js's rule to a trigger's `data`.
///
/// A string that is valid JSON (`JSON.parse` semantics: surrounding whitespace
/// allowed, `"null"` becomes null) is delivered parsed; any other string is
/// delivered as is. A non-string value is delivered unchanged.
///
/// ```
/// use pushwire_shared::delivery::client_data;
/// use serde_json::json;
/// assert_eq!(client_data(&json!(" {\"a\":1} ")), json!({"a": 1}));
/// assert_eq!(client_data(&json!("null")), json!(null));
/// assert_eq!(client_data(&json!("hello")), json!("hello"));
/// assert_eq!(client_data(&json!({"b": 2})), json!({"b": 2}));
/// ```
pub fn client_data(data: &Value) -> Value {
    match data {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| data.clone()),
        other => other.clone(),
    }
}

/// The second argument of every delivered event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryMeta<'a> {
    /// The channel the event was delivered on.
    pub channel: &'a str,
    /// The published event's id, the same on every channel it went to.
    pub id: &'a str,
    /// When the trigger was accepted, in milliseconds since the Unix epoch
    /// (clients compute delivery latency from it).
    pub ts: u64,
    /// The event's position in the channel's history: pass the last one seen as
    /// `since` when subscribing again to receive what was missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_parse_semantics() {
        assert_eq!(client_data(&json!("42")), json!(42));
        assert_eq!(client_data(&json!("\"quoted\"")), json!("quoted"));
        assert_eq!(client_data(&json!("\t[1, 2]\n")), json!([1, 2]));
        assert_eq!(client_data(&json!("")), json!(""));
        assert_eq!(client_data(&json!("{bad json")), json!("{bad json"));
        assert_eq!(client_data(&json!("1 2")), json!("1 2"));
        assert_eq!(client_data(&json!(true)), json!(true));
    }
}
