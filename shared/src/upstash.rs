//! The Upstash Redis REST dialect, as the edge uses it: one `POST /multi-exec`
//! carrying every PUBLISH of a trigger, and the check of its reply.
//!
//! The bridge (`pushwire bridge`) and a hosted Upstash database both answer it.

use serde_json::Value;

/// The path of an atomic transaction.
pub const MULTI_EXEC_PATH: &str = "/multi-exec";

/// The JSON body of a transaction publishing each `(channel, payload)`:
/// `[["PUBLISH", channel, payload], …]`.
///
/// ```
/// let body = pushwire_shared::upstash::publish_transaction(&[("c".into(), "{}".into())]);
/// assert_eq!(body, r#"[["PUBLISH","c","{}"]]"#);
/// ```
pub fn publish_transaction(messages: &[(String, String)]) -> String {
    let commands: Vec<[&str; 3]> = messages
        .iter()
        .map(|(channel, payload)| ["PUBLISH", channel.as_str(), payload.as_str()])
        .collect();
    serde_json::to_string(&commands).expect("strings always serialise")
}

/// Why a transaction's reply does not confirm every publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstashReplyError {
    /// A non-200 status (with the reply's `error`, if it had one).
    #[error("the bridge answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The `error` field or the raw body.
        message: String,
    },
    /// The body is not JSON of the expected shape.
    #[error("the bridge sent an unexpected reply: {0}")]
    Malformed(String),
    /// A command failed.
    #[error("the bridge refused a command: {0}")]
    CommandFailed(String),
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(120).collect()
}

/// Checks that a `/multi-exec` reply confirms all `expected` commands: status 200,
/// an array of `expected` `{"result": <integer>}` items.
///
/// ```
/// use pushwire_shared::upstash::check_publish_reply;
/// assert!(check_publish_reply(200, br#"[{"result":1},{"result":0}]"#, 2).is_ok());
/// assert!(check_publish_reply(200, br#"[{"error":"ERR"}]"#, 1).is_err());
/// assert!(check_publish_reply(502, b"<html>", 1).is_err());
/// ```
pub fn check_publish_reply(
    status: u16,
    body: &[u8],
    expected: usize,
) -> Result<(), UpstashReplyError> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if status != 200 {
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| snippet(body));
        return Err(UpstashReplyError::Status { status, message });
    }
    let items = match parsed {
        Some(Value::Array(items)) => items,
        Some(Value::Object(obj)) => {
            let message = obj
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no result");
            return Err(UpstashReplyError::CommandFailed(message.to_owned()));
        }
        _ => return Err(UpstashReplyError::Malformed(snippet(body))),
    };
    if items.len() != expected {
        return Err(UpstashReplyError::Malformed(format!(
            "{} results for {expected} commands",
            items.len()
        )));
    }
    for item in items {
        if let Some(error) = item.get("error").and_then(Value::as_str) {
            return Err(UpstashReplyError::CommandFailed(error.to_owned()));
        }
        if !item.get("result").is_some_and(Value::is_i64) {
            return Err(UpstashReplyError::Malformed(format!(
                "unexpected item {item}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_escaped() {
        let body = publish_transaction(&[
            ("a".into(), "{\"x\":\"\\n\"}".into()),
            ("b".into(), String::new()),
        ]);
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed[0][2], "{\"x\":\"\\n\"}");
        assert_eq!(parsed[1], serde_json::json!(["PUBLISH", "b", ""]));
    }

    #[test]
    fn replies_that_do_not_confirm_everything_are_errors() {
        let cases: [(u16, &[u8], usize); 7] = [
            (401, br#"{"error":"Unauthorized"}"#, 1),
            (200, b"not json", 1),
            (200, br#"{"error":"EXECABORT"}"#, 1),
            (200, br#"[{"result":1}]"#, 2),
            (200, br#"[{"result":"OK"}]"#, 1),
            (200, br#"[{"result":1},{"error":"ERR wrong"}]"#, 2),
            (503, b"", 1),
        ];
        for (status, body, expected) in cases {
            assert!(
                check_publish_reply(status, body, expected).is_err(),
                "{status} {:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            check_publish_reply(401, br#"{"error":"Unauthorized"}"#, 1),
            Err(UpstashReplyError::Status {
                status: 401,
                message: "Unauthorized".into()
            })
        );
    }
}
