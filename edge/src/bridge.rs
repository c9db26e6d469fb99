//! Why a call to the bridge (the Upstash REST endpoint in front of Redis) did
//! not give the edge what it needs: [`BridgeError`]. Every such failure is
//! answered `503`, its text being the detail after "the event broker is
//! unavailable: ".

use pushwire_shared::directory::DirectoryReadError;
use pushwire_shared::upstash::UpstashReplyError;

/// A failed bridge call: a publish's or a directory read's pipeline
/// (`POST /pipeline`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// The request did not reach the bridge or its answer did not come back;
    /// the runtime's reason.
    #[error("the bridge is unreachable: {0}")]
    Unreachable(String),
    /// No answer within `PUSHWIRE_BRIDGE_TIMEOUT_MS` (the milliseconds waited).
    #[error("the bridge is unreachable: no answer within {0} ms")]
    TimedOut(u32),
    /// The reply to a publish does not confirm every message: a status other
    /// than 200, a Redis error reply, or a body of another shape.
    #[error(transparent)]
    Publish(#[from] UpstashReplyError),
    /// A pipeline was answered with a status other than 200.
    #[error("the bridge answered {0}")]
    PipelineStatus(u16),
    /// A pipeline's body is not a JSON array.
    #[error("the bridge sent an unexpected reply")]
    PipelineMalformed,
    /// A pipeline's replies do not match its commands one for one.
    #[error("{replies} replies for {commands} commands")]
    PipelineLength {
        /// Replies received.
        replies: usize,
        /// Commands sent.
        commands: usize,
    },
    /// Redis answered one of a pipeline's reads with an error reply (its text).
    #[error("the bridge refused a read: {0}")]
    ReadRefused(String),
    /// A pipeline's replies do not fit the directory read they answer.
    #[error(transparent)]
    Directory(#[from] DirectoryReadError),
}

impl BridgeError {
    /// Whether a publish naming the script by its digest was refused before
    /// anything ran, so sending the script's text instead is safe
    /// ([`UpstashReplyError::asks_for_script_text`]: `NOSCRIPT`, or a bridge
    /// that does not take `EVALSHA`).
    pub fn asks_for_script_text(&self) -> bool {
        match self {
            BridgeError::Publish(reply) => reply.asks_for_script_text(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushwire_shared::upstash::{check_publish_replies, not_allowed_error};

    fn publish(status: u16, body: &str) -> BridgeError {
        check_publish_replies(status, body.as_bytes(), &[1])
            .remove(0)
            .map_err(BridgeError::from)
            .unwrap_err()
    }

    #[test]
    fn only_a_refused_digest_asks_for_the_script_text() {
        let refused = format!(r#"{{"error":"{}"}}"#, not_allowed_error("EVALSHA"));
        assert!(publish(400, &refused).asks_for_script_text());
        assert!(publish(400, r#"{"error":"NOSCRIPT No matching script."}"#).asks_for_script_text());
        assert!(
            publish(200, r#"[{"error":"NOSCRIPT No matching script."}]"#).asks_for_script_text()
        );
        for other in [
            publish(400, r#"{"error":"ERR wrong number of arguments"}"#),
            publish(200, "<html>"),
            BridgeError::ReadRefused("NOSCRIPT".into()),
            BridgeError::TimedOut(10),
        ] {
            assert!(!other.asks_for_script_text(), "{other:?}");
        }
    }

    #[test]
    fn each_failure_says_what_the_bridge_did() {
        let cases = [
            (
                BridgeError::Unreachable("connection refused".into()),
                "the bridge is unreachable: connection refused",
            ),
            (
                BridgeError::TimedOut(3000),
                "the bridge is unreachable: no answer within 3000 ms",
            ),
            (
                publish(401, r#"{"error":"Unauthorized"}"#),
                "the bridge answered 401: Unauthorized",
            ),
            (
                publish(200, r#"[{"error":"ERR OOM"}]"#),
                "the bridge refused a command: ERR OOM",
            ),
            (
                publish(200, r#"[{"result":"OK"}]"#),
                r#"the bridge sent an unexpected reply: result "OK" for 1 messages"#,
            ),
            (BridgeError::PipelineStatus(502), "the bridge answered 502"),
            (
                BridgeError::PipelineMalformed,
                "the bridge sent an unexpected reply",
            ),
            (
                BridgeError::PipelineLength {
                    replies: 0,
                    commands: 1,
                },
                "0 replies for 1 commands",
            ),
            (
                BridgeError::ReadRefused("ERR".into()),
                "the bridge refused a read: ERR",
            ),
            (
                DirectoryReadError("fewer replies than commands".into()).into(),
                "unexpected directory replies: fewer replies than commands",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
