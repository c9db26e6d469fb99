//! The Upstash Redis REST dialect, as the edge uses it: one `POST /pipeline`
//! carrying the trigger's [`publish_commands`](crate::publishing::publish_commands)
//! (one Lua script run per channel, named by its digest, so each channel's
//! history append and publish are one atomic step), and the check of its
//! replies.
//!
//! The bridge (`pushwire bridge`) and a hosted Upstash database both answer it.

use serde_json::Value;

/// The path of a pipeline of commands.
pub const PIPELINE_PATH: &str = "/pipeline";

/// The JSON body of a pipeline: the array of its commands' words.
///
/// ```
/// let body = pushwire_shared::upstash::pipeline_body(&[vec!["PUBLISH".into(), "c".into(), "{}".into()]]);
/// assert_eq!(body, r#"[["PUBLISH","c","{}"]]"#);
/// ```
pub fn pipeline_body(commands: &[Vec<String>]) -> String {
    serde_json::to_string(commands).expect("strings always serialise")
}

/// Why a publish's reply does not confirm every message.
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

impl UpstashReplyError {
    /// Whether a call naming the script by digest was refused before anything
    /// ran, so the same call with the script's text
    /// ([`with_script_text`](crate::publishing::with_script_text)) is safe and
    /// may succeed: Redis did not have the script (`NOSCRIPT`), or the bridge
    /// does not take `EVALSHA` (a bridge older than the edge).
    ///
    /// ```
    /// use pushwire_shared::upstash::check_publish_replies;
    /// let first = |status, body: &[u8]| check_publish_replies(status, body, &[1]).remove(0).unwrap_err();
    /// let noscript = br#"[{"error":"NOSCRIPT No matching script. Please use EVAL."}]"#;
    /// assert!(first(200, noscript).asks_for_script_text());
    /// let refused = br#"{"error":"ERR command 'EVALSHA' is not allowed by this bridge"}"#;
    /// assert!(first(400, refused).asks_for_script_text());
    /// assert!(!first(400, br#"{"error":"ERR"}"#).asks_for_script_text());
    /// ```
    pub fn asks_for_script_text(&self) -> bool {
        match self {
            UpstashReplyError::Status { message, .. }
            | UpstashReplyError::CommandFailed(message) => {
                message.starts_with("NOSCRIPT") || *message == not_allowed_error("EVALSHA")
            }
            UpstashReplyError::Malformed(_) => false,
        }
    }
}

/// The error a bridge answers for a command outside its allow-list; the edge
/// recognises a refused `EVALSHA` by it.
///
/// ```
/// let message = pushwire_shared::upstash::not_allowed_error("FLUSHALL");
/// assert_eq!(message, "ERR command 'FLUSHALL' is not allowed by this bridge");
/// ```
pub fn not_allowed_error(command: &str) -> String {
    format!("ERR command '{command}' is not allowed by this bridge")
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(120).collect()
}

/// Checks the reply to a pipeline of publish commands, one result per
/// command: `Ok` when the command's `{"result": n}` confirms its `expected[i]`
/// messages. A status other than 200, or a body that is not an array of one
/// reply per command, fails every command alike.
///
/// ```
/// use pushwire_shared::upstash::check_publish_replies;
/// let replies = check_publish_replies(200, br#"[{"result":2},{"error":"NOSCRIPT x"}]"#, &[2, 1]);
/// assert!(replies[0].is_ok());
/// assert!(replies[1].as_ref().unwrap_err().asks_for_script_text());
/// assert!(check_publish_replies(503, b"", &[1, 1]).iter().all(Result::is_err));
/// ```
pub fn check_publish_replies(
    status: u16,
    body: &[u8],
    expected: &[usize],
) -> Vec<Result<(), UpstashReplyError>> {
    let all = |e: UpstashReplyError| expected.iter().map(|_| Err(e.clone())).collect();
    if status != 200 {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map_or_else(|| snippet(body), str::to_owned);
        return all(UpstashReplyError::Status { status, message });
    }
    let items: Vec<Value> = match serde_json::from_slice(body) {
        Ok(Value::Array(items)) if items.len() == expected.len() => items,
        _ => return all(UpstashReplyError::Malformed(snippet(body))),
    };
    items
        .iter()
        .zip(expected)
        .map(|(item, &n)| {
            if let Some(message) = item.get("error").and_then(Value::as_str) {
                return Err(UpstashReplyError::CommandFailed(message.to_owned()));
            }
            match item.get("result") {
                Some(Value::Number(got)) if got.as_u64() == Some(n as u64) => Ok(()),
                Some(other) => Err(UpstashReplyError::Malformed(format!(
                    "result {other} for {n} messages"
                ))),
                None => Err(UpstashReplyError::Malformed(item.to_string())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_publish_of_a_pipeline_is_confirmed_on_its_own() {
        let ok = check_publish_replies(200, br#"[{"result":1},{"result":3}]"#, &[1, 3]);
        assert!(ok.iter().all(Result::is_ok));
        let cases: [(u16, &[u8]); 6] = [
            (200, br#"[{"result":1}]"#),
            (200, br#"{"result":1}"#),
            (200, br#"[{"result":1},{"result":2}]"#),
            (200, br#"[{"result":1},{"error":"ERR x"}]"#),
            (
                400,
                br#"{"error":"ERR command 'X' is not allowed by this bridge"}"#,
            ),
            (200, b"<html>"),
        ];
        for (status, body) in cases {
            let replies = check_publish_replies(status, body, &[1, 3]);
            assert_eq!(replies.len(), 2);
            assert!(
                replies[1].is_err(),
                "{status} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn payloads_are_json_escaped() {
        let body = pipeline_body(&[vec!["PUBLISH".into(), "a".into(), "{\"x\":\"\\n\"}".into()]]);
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed[0][2], "{\"x\":\"\\n\"}");
    }
}
