//! The Upstash Redis REST dialect, as the edge uses it: one `POST /` carrying
//! the trigger's [`publish_command`](crate::publishing::publish_command) (a Lua
//! script named by its digest, so history append and publish are one atomic
//! step), and the check of its reply.
//!
//! The bridge (`pushwire bridge`) and a hosted Upstash database both answer it.

use serde_json::Value;

/// The path of a single command.
pub const COMMAND_PATH: &str = "/";

/// The JSON body of a single command: the array of its words.
///
/// ```
/// let body = pushwire_shared::upstash::command_body(&["PUBLISH".into(), "c".into(), "{}".into()]);
/// assert_eq!(body, r#"["PUBLISH","c","{}"]"#);
/// ```
pub fn command_body(command: &[String]) -> String {
    serde_json::to_string(command).expect("strings always serialise")
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
    /// use pushwire_shared::upstash::check_publish_reply;
    /// let noscript = br#"{"error":"NOSCRIPT No matching script. Please use EVAL."}"#;
    /// assert!(check_publish_reply(400, noscript, 1).unwrap_err().asks_for_script_text());
    /// let refused = br#"{"error":"ERR command 'EVALSHA' is not allowed by this bridge"}"#;
    /// assert!(check_publish_reply(400, refused, 1).unwrap_err().asks_for_script_text());
    /// assert!(!check_publish_reply(400, br#"{"error":"ERR"}"#, 1).unwrap_err().asks_for_script_text());
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

/// Checks that the reply to a publish command confirms all `expected`
/// messages: status 200 and `{"result": <expected>}`.
///
/// ```
/// use pushwire_shared::upstash::check_publish_reply;
/// assert!(check_publish_reply(200, br#"{"result":2}"#, 2).is_ok());
/// assert!(check_publish_reply(200, br#"{"error":"ERR"}"#, 1).is_err());
/// assert!(check_publish_reply(502, b"<html>", 1).is_err());
/// ```
pub fn check_publish_reply(
    status: u16,
    body: &[u8],
    expected: usize,
) -> Result<(), UpstashReplyError> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if status != 200 {
        let message = error.unwrap_or_else(|| snippet(body));
        return Err(UpstashReplyError::Status { status, message });
    }
    if let Some(message) = error {
        return Err(UpstashReplyError::CommandFailed(message));
    }
    match parsed.as_ref().and_then(|v| v.get("result")) {
        Some(Value::Number(n)) if n.as_u64() == Some(expected as u64) => Ok(()),
        Some(other) => Err(UpstashReplyError::Malformed(format!(
            "result {other} for {expected} messages"
        ))),
        None => Err(UpstashReplyError::Malformed(snippet(body))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_json_escaped() {
        let body = command_body(&["PUBLISH".into(), "a".into(), "{\"x\":\"\\n\"}".into()]);
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed[2], "{\"x\":\"\\n\"}");
    }

    #[test]
    fn replies_that_do_not_confirm_everything_are_errors() {
        let cases: [(u16, &[u8], usize); 7] = [
            (401, br#"{"error":"Unauthorized"}"#, 1),
            (200, b"not json", 1),
            (200, br#"{"error":"NOSCRIPT"}"#, 1),
            (200, br#"{"result":1}"#, 2),
            (200, br#"{"result":"OK"}"#, 1),
            (200, br#"[{"result":1}]"#, 1),
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
