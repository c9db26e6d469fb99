//! Trigger request bodies (`/events` and `/batch_events`) and their validation.
//!
//! Bodies are parsed as JSON whatever the `Content-Type`. Validation follows
//! Pusher's limits ([`Limits`]); each failure is a [`TriggerError`] carrying
//! its HTTP status (400, or 413 for `data` over its limit).

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::app::Limits;
use crate::channel::{ChannelKind, ChannelName, ChannelNameError};
use crate::event::{EventName, EventNameError};
use crate::http::HttpError;
use crate::socket_id::{SocketId, SocketIdError};

/// A channel attribute a trigger may ask for with `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAttribute {
    /// Sockets subscribed to the channel, cluster-wide.
    SubscriptionCount,
    /// Distinct users on a presence channel.
    UserCount,
}

impl ChannelAttribute {
    /// The attribute's name in `info` and in responses.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelAttribute::SubscriptionCount => "subscription_count",
            ChannelAttribute::UserCount => "user_count",
        }
    }
}

/// One validated event, ready to publish on each of its channels.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerEvent {
    /// The event name subscribers receive.
    pub name: EventName,
    /// The data, as sent (string or JSON value).
    pub data: Value,
    /// Target channels, de-duplicated, in request order.
    pub channels: Vec<ChannelName>,
    /// A socket to leave out (the sender).
    pub exclude: Option<SocketId>,
    /// Attributes asked for with `info`.
    pub info: Vec<ChannelAttribute>,
}

/// Why a trigger body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// The body is not JSON.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body (or a batch item) is not a JSON object.
    #[error("request body must be a JSON object")]
    NotAnObject,
    /// A required field is absent.
    #[error("missing required field {0:?}")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field {field:?} must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// Both `channel` and `channels` were given.
    #[error("give either \"channel\" or \"channels\", not both")]
    ChannelAndChannels,
    /// `channels` is empty.
    #[error("\"channels\" must name at least one channel")]
    NoChannels,
    /// Too many channels for one event.
    #[error("event goes to {count} channels; the limit is {limit}")]
    TooManyChannels {
        /// Channels given.
        count: usize,
        /// The app's limit.
        limit: usize,
    },
    /// A channel name is invalid.
    #[error(transparent)]
    Channel(#[from] ChannelNameError),
    /// The event name is invalid.
    #[error(transparent)]
    Event(#[from] EventNameError),
    /// `data` is over the limit.
    #[error("data is {size} bytes; the limit is {limit}")]
    DataTooLarge {
        /// Bytes given.
        size: usize,
        /// The app's limit.
        limit: usize,
    },
    /// `socket_id` is not a Pusher socket id.
    #[error(transparent)]
    SocketId(#[from] SocketIdError),
    /// `info` asks for something that cannot be given.
    #[error("{0}")]
    Info(String),
    /// A batch with no events.
    #[error("\"batch\" must contain at least one event")]
    EmptyBatch,
    /// A batch with too many events.
    #[error("batch has {count} events; the limit is {limit}")]
    BatchTooLarge {
        /// Events given.
        count: usize,
        /// The app's limit.
        limit: usize,
    },
    /// One event of a batch is invalid.
    #[error("batch[{index}]: {source}")]
    InBatch {
        /// 0-based position in the batch.
        index: usize,
        /// What is wrong with it.
        source: Box<TriggerError>,
    },
}

impl HttpError for TriggerError {
    fn status(&self) -> u16 {
        match self {
            TriggerError::DataTooLarge { .. } => 413,
            TriggerError::InBatch { source, .. } => source.status(),
            _ => 400,
        }
    }
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, TriggerError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TriggerError::NotAnObject),
        Err(e) => Err(TriggerError::InvalidJson(e.to_string())),
    }
}

fn string_field<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, TriggerError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TriggerError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn channels(obj: &Map<String, Value>, limits: &Limits) -> Result<Vec<ChannelName>, TriggerError> {
    let names: Vec<&str> = match (obj.get("channel"), obj.get("channels")) {
        (Some(_), Some(_)) => return Err(TriggerError::ChannelAndChannels),
        (None, None) => return Err(TriggerError::Missing("channels")),
        (Some(_), None) => {
            vec![string_field(obj, "channel")?.ok_or(TriggerError::Missing("channel"))?]
        }
        (None, Some(Value::Array(items))) => items
            .iter()
            .map(|v| {
                v.as_str().ok_or(TriggerError::WrongType {
                    field: "channels",
                    expected: "an array of strings",
                })
            })
            .collect::<Result<_, _>>()?,
        (None, Some(_)) => {
            return Err(TriggerError::WrongType {
                field: "channels",
                expected: "an array of strings",
            });
        }
    };
    if names.is_empty() {
        return Err(TriggerError::NoChannels);
    }
    // Hashed, and counted before any name is validated: a body can hold tens of
    // thousands of names, and comparing each with every other is quadratic.
    let mut seen = HashSet::with_capacity(names.len());
    let distinct: Vec<&str> = names
        .into_iter()
        .filter(|name| seen.insert(*name))
        .collect();
    if distinct.len() > limits.max_channels_per_event {
        return Err(TriggerError::TooManyChannels {
            count: distinct.len(),
            limit: limits.max_channels_per_event,
        });
    }
    distinct
        .into_iter()
        .map(|name| ChannelName::new(name).map_err(TriggerError::from))
        .collect()
}

fn info(
    obj: &Map<String, Value>,
    channels: &[ChannelName],
) -> Result<Vec<ChannelAttribute>, TriggerError> {
    let Some(info) = string_field(obj, "info")? else {
        return Ok(Vec::new());
    };
    let mut attributes = Vec::new();
    for name in info.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let attribute = match name {
            "subscription_count" => ChannelAttribute::SubscriptionCount,
            "user_count" => {
                if let Some(c) = channels.iter().find(|c| c.kind() != ChannelKind::Presence) {
                    return Err(TriggerError::Info(format!(
                        "info=user_count is only available for presence channels, not {c:?}",
                        c = c.as_str()
                    )));
                }
                ChannelAttribute::UserCount
            }
            other => {
                return Err(TriggerError::Info(format!(
                    "unknown info attribute {other:?}; use subscription_count or user_count"
                )));
            }
        };
        if !attributes.contains(&attribute) {
            attributes.push(attribute);
        }
    }
    Ok(attributes)
}

fn event(obj: &Map<String, Value>, limits: &Limits) -> Result<TriggerEvent, TriggerError> {
    let name = EventName::new(string_field(obj, "name")?.ok_or(TriggerError::Missing("name"))?)?;
    let channels = channels(obj, limits)?;
    let data = obj.get("data").ok_or(TriggerError::Missing("data"))?;
    let size = match data {
        Value::String(s) => s.len(),
        other => other.to_string().len(),
    };
    if size > limits.max_data_bytes {
        return Err(TriggerError::DataTooLarge {
            size,
            limit: limits.max_data_bytes,
        });
    }
    let exclude = string_field(obj, "socket_id")?
        .map(str::parse)
        .transpose()?;
    let info = info(obj, &channels)?;
    Ok(TriggerEvent {
        name,
        data: data.clone(),
        channels,
        exclude,
        info,
    })
}

/// Parses and validates a `POST /apps/{id}/events` body.
///
/// ```
/// use pushwire_shared::{trigger, Limits};
/// let ev = trigger::parse_event(br#"{"name":"price","channels":["a","b","a"],"data":"1"}"#, &Limits::default()).unwrap();
/// assert_eq!(ev.channels.len(), 2);
/// let err = trigger::parse_event(br#"{"name":"price","data":"1"}"#, &Limits::default()).unwrap_err();
/// assert_eq!(err.to_string(), "missing required field \"channels\"");
/// ```
pub fn parse_event(body: &[u8], limits: &Limits) -> Result<TriggerEvent, TriggerError> {
    event(&parse_object(body)?, limits)
}

/// Parses and validates a `POST /apps/{id}/batch_events` body: `{"batch": [event, …]}`.
pub fn parse_batch(body: &[u8], limits: &Limits) -> Result<Vec<TriggerEvent>, TriggerError> {
    let obj = parse_object(body)?;
    let items = match obj.get("batch") {
        None => return Err(TriggerError::Missing("batch")),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(TriggerError::WrongType {
                field: "batch",
                expected: "an array",
            });
        }
    };
    if items.is_empty() {
        return Err(TriggerError::EmptyBatch);
    }
    if items.len() > limits.max_batch_events {
        return Err(TriggerError::BatchTooLarge {
            count: items.len(),
            limit: limits.max_batch_events,
        });
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let in_batch = |e: TriggerError| TriggerError::InBatch {
                index,
                source: Box::new(e),
            };
            match item {
                Value::Object(obj) => event(obj, limits).map_err(in_batch),
                _ => Err(in_batch(TriggerError::NotAnObject)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(body: Value) -> Result<TriggerEvent, TriggerError> {
        parse_event(body.to_string().as_bytes(), &Limits::default())
    }

    #[test]
    fn accepts_pusher_sdk_bodies() {
        let e = ev(json!({"name": "n", "channel": "c", "data": "{\"a\":1}", "socket_id": "1.2"}))
            .unwrap();
        assert_eq!(e.channels, vec![ChannelName::new("c").unwrap()]);
        assert_eq!(e.exclude.unwrap().as_str(), "1.2");
        assert_eq!(e.data, json!("{\"a\":1}"));
        let e = ev(json!({"name": "n", "channels": ["c"], "data": {"raw": true}})).unwrap();
        assert_eq!(e.data, json!({"raw": true}));
        assert!(ev(json!({"name": "n", "channel": "c", "data": ""})).is_ok());
    }

    #[test]
    fn encrypted_channels_take_any_data_beside_any_channel() {
        // The server SDKs refuse an event for an encrypted channel and others at
        // once (one body cannot be encrypted for each), but Pusher's HTTP API does
        // not: a payload meant for several encrypted channels is the sender's
        // business, and the server can read none of them anyway.
        let body = json!({
            "name": "n",
            "channels": ["private-encrypted-a", "private-encrypted-b", "news"],
            "data": "{\"nonce\":\"bm9uY2U=\",\"ciphertext\":\"Y2lwaGVy\"}",
        });
        let e = ev(body.clone()).unwrap();
        assert_eq!(e.channels.len(), 3);
        assert_eq!(e.data, body["data"], "relayed as given");
        assert!(
            ev(json!({"name": "n", "channel": "private-encrypted-a", "data": "plain"})).is_ok()
        );
    }

    #[test]
    fn refuses_bad_shapes_with_400() {
        let cases = [
            (json!([1]), TriggerError::NotAnObject),
            (
                json!({"channel": "c", "data": ""}),
                TriggerError::Missing("name"),
            ),
            (
                json!({"name": "n", "channel": "c"}),
                TriggerError::Missing("data"),
            ),
            (
                json!({"name": 5, "channel": "c", "data": ""}),
                TriggerError::WrongType {
                    field: "name",
                    expected: "a string",
                },
            ),
            (
                json!({"name": "n", "channel": "c", "channels": ["d"], "data": ""}),
                TriggerError::ChannelAndChannels,
            ),
            (
                json!({"name": "n", "channels": [], "data": ""}),
                TriggerError::NoChannels,
            ),
            (
                json!({"name": "n", "channels": "c", "data": ""}),
                TriggerError::WrongType {
                    field: "channels",
                    expected: "an array of strings",
                },
            ),
            (
                json!({"name": "n", "channels": [1], "data": ""}),
                TriggerError::WrongType {
                    field: "channels",
                    expected: "an array of strings",
                },
            ),
            (
                json!({"name": "n", "channel": 1, "data": ""}),
                TriggerError::WrongType {
                    field: "channel",
                    expected: "a string",
                },
            ),
        ];
        for (body, want) in cases {
            let got = ev(body.clone()).unwrap_err();
            assert_eq!(got, want, "{body}");
            assert_eq!(got.status(), 400);
        }
        let invalid = parse_event(b"{nope", &Limits::default()).unwrap_err();
        assert!(matches!(invalid, TriggerError::InvalidJson(_)));
        assert!(matches!(
            ev(json!({"name": "n", "channel": "a b", "data": ""})),
            Err(TriggerError::Channel(_))
        ));
        assert!(matches!(
            ev(json!({"name": "pusher:x", "channel": "c", "data": ""})),
            Err(TriggerError::Event(_))
        ));
        assert!(matches!(
            ev(json!({"name": "n", "channel": "c", "data": "", "socket_id": "x"})),
            Err(TriggerError::SocketId(_))
        ));
    }

    #[test]
    fn limits_apply() {
        let limit = Limits::default().max_data_bytes;
        assert!(ev(json!({"name": "n", "channel": "c", "data": "x".repeat(limit)})).is_ok());
        let big =
            ev(json!({"name": "n", "channel": "c", "data": "x".repeat(limit + 1)})).unwrap_err();
        assert_eq!(big.status(), 413);
        // A non-string value counts its JSON text.
        let value = json!({"name": "n", "channel": "c", "data": ["x".repeat(limit - 3)]});
        assert_eq!(
            ev(value).unwrap_err(),
            TriggerError::DataTooLarge {
                size: limit + 1,
                limit
            }
        );
        let channels: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
        assert_eq!(
            ev(json!({"name": "n", "channels": channels, "data": ""})).unwrap_err(),
            TriggerError::TooManyChannels {
                count: 101,
                limit: 100
            }
        );
        // Duplicates are counted once.
        let dup: Vec<&str> = vec!["c"; 150];
        assert_eq!(
            ev(json!({"name": "n", "channels": dup, "data": ""}))
                .unwrap()
                .channels
                .len(),
            1
        );
    }

    #[test]
    fn tens_of_thousands_of_channels_are_counted_before_they_are_compared() {
        // Found quadratic once: 33,000 distinct names took over a second to refuse.
        let channels: Vec<String> = (0..33_000).map(|i| format!("c{i}")).collect();
        let mut with_repeats = channels.clone();
        with_repeats.extend(channels.iter().take(1000).cloned());
        assert_eq!(
            ev(json!({"name": "n", "channels": with_repeats, "data": ""})).unwrap_err(),
            TriggerError::TooManyChannels {
                count: 33_000,
                limit: 100
            }
        );
        // The count comes first: an invalid name past the limit is not reached.
        let mut invalid = channels[..101].to_vec();
        invalid.push("a b".to_owned());
        assert!(matches!(
            ev(json!({"name": "n", "channels": invalid, "data": ""})),
            Err(TriggerError::TooManyChannels { count: 102, .. })
        ));
    }

    #[test]
    fn info_attributes() {
        let e = ev(json!({"name": "n", "channel": "presence-r", "data": "", "info": "user_count,subscription_count"})).unwrap();
        assert_eq!(
            e.info,
            vec![
                ChannelAttribute::UserCount,
                ChannelAttribute::SubscriptionCount
            ]
        );
        assert!(matches!(
            ev(json!({"name": "n", "channel": "c", "data": "", "info": "user_count"})),
            Err(TriggerError::Info(_))
        ));
        assert!(matches!(
            ev(json!({"name": "n", "channel": "c", "data": "", "info": "colour"})),
            Err(TriggerError::Info(_))
        ));
    }

    #[test]
    fn batches() {
        let limits = Limits::default();
        let item = json!({"name": "n", "channel": "c", "data": "d"});
        let ok = json!({"batch": [item, item]}).to_string();
        assert_eq!(parse_batch(ok.as_bytes(), &limits).unwrap().len(), 2);
        assert_eq!(
            parse_batch(br#"{"batch":[]}"#, &limits).unwrap_err(),
            TriggerError::EmptyBatch
        );
        assert_eq!(
            parse_batch(br#"{}"#, &limits).unwrap_err(),
            TriggerError::Missing("batch")
        );
        let eleven = json!({"batch": vec![item.clone(); 11]}).to_string();
        assert_eq!(
            parse_batch(eleven.as_bytes(), &limits).unwrap_err(),
            TriggerError::BatchTooLarge {
                count: 11,
                limit: 10
            }
        );
        let bad =
            json!({"batch": [item, {"name": "n", "channel": "c", "data": "x".repeat(20_000)}]})
                .to_string();
        let err = parse_batch(bad.as_bytes(), &limits).unwrap_err();
        assert_eq!(err.status(), 413);
        assert!(
            err.to_string().starts_with("batch[1]: data is 20000 bytes"),
            "{err}"
        );
        let not_obj = parse_batch(br#"{"batch":[1]}"#, &limits).unwrap_err();
        assert_eq!(
            not_obj.to_string(),
            "batch[0]: request body must be a JSON object"
        );
    }
}
