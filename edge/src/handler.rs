//! What the edge does with a request, as plain functions: [`handle`] either
//! answers at once, asks for one publish to the bridge, or asks for a directory
//! read (channel queries, see [`crate::query`]); [`after_publish`] turns the
//! bridge's answer into the reply, or into the same publish carrying the
//! script's text when Redis did not have the script.

use pushwire_shared::api_error::ApiError;
use pushwire_shared::channel_query::ChannelQueryRoute;
use pushwire_shared::directory::Read;
use pushwire_shared::http::{EMPTY_OBJECT, HttpError};
use pushwire_shared::publishing::{self, ScriptRef};
use pushwire_shared::signing::RequestParts;
use pushwire_shared::trigger_request::{self, TriggerRoute, info_channels};
use pushwire_shared::upstash::{self, COMMAND_PATH};

use crate::bridge::BridgeError;
use crate::config::EdgeConfig;
use crate::query::{self, Query, Render};

/// An HTTP reply: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
    /// What the worker logs about a refusal but does not tell the caller
    /// (a stale timestamp's distance from the clock).
    pub log: Option<String>,
}

impl Reply {
    /// The answer to a failed request: its status and `{"error": …}` body.
    pub(crate) fn error(e: &ApiError) -> Self {
        let log = match e {
            ApiError::Signing(signing) => signing
                .skew()
                .map(|skew| format!("auth_timestamp is {skew} s away from the clock")),
            _ => None,
        };
        Reply {
            status: e.status(),
            body: e.body(),
            log,
        }
    }

    /// A `200` with this body.
    pub(crate) fn ok(body: String) -> Self {
        Reply {
            status: 200,
            body,
            log: None,
        }
    }
}

/// One request to the bridge: `POST {url}` with the bearer token and `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRequest {
    /// Full URL (the bridge's root).
    pub url: String,
    /// Bearer token.
    pub token: String,
    /// JSON body: the publish script call (history append + PUBLISH, atomic),
    /// naming the script by its digest.
    pub body: String,
    /// How many messages it publishes (the reply must confirm each).
    pub commands: usize,
    /// The read to run once the publish is confirmed (a trigger's `info`).
    pub then: Option<Query>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answer now.
    Reply(Reply),
    /// Publish, then answer with [`after_publish`].
    Publish(BridgeRequest),
    /// Read the directory through the bridge, then answer with [`render`].
    Query(Query),
}

/// What to do once the bridge has answered a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPublish {
    /// Answer the caller.
    Reply(Reply),
    /// The publish by digest was refused before anything ran (Redis did not
    /// have the script after a restart or a `SCRIPT FLUSH`, or the bridge does
    /// not take `EVALSHA`): send this instead, the same publish carrying the
    /// script's text (which also loads it for the next triggers).
    SendScript(BridgeRequest),
}

/// Whether a request's declared `Content-Length` is already over the body cap,
/// so it is refused before a byte of the body is read. A missing or unreadable
/// header is not: the read counts the bytes as they come.
pub fn declared_length_over_cap(content_length: Option<&str>, cap: usize) -> bool {
    let Some(digits) = content_length.map(str::trim) else {
        return false;
    };
    // All digits but too long for a u64 is over any cap.
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits
            .parse::<u64>()
            .map_or(true, |length| length > cap as u64)
}

/// Decides what to do with the incoming `request` at `now_ms`; `next_id` makes event ids.
pub fn handle(
    config: &EdgeConfig,
    request: RequestParts<'_>,
    now_ms: u64,
    mut next_id: impl FnMut() -> String,
) -> Outcome {
    if request.path == "/health" && request.method == "GET" {
        return Outcome::Reply(Reply::ok(r#"{"status":"ok"}"#.to_owned()));
    }
    if let Some(route) = ChannelQueryRoute::parse(request.path) {
        return query::handle(config, route, request, now_ms);
    }
    let route = match TriggerRoute::parse(request.path) {
        Some(route) if request.method == "POST" => route,
        _ => return Outcome::Reply(Reply::error(&ApiError::NotFound)),
    };
    let accepted = match trigger_request::accept(
        route,
        &request,
        &config.apps,
        config.max_request_bytes,
        now_ms / 1000,
    ) {
        Ok(accepted) => accepted,
        Err(e) => return Outcome::Reply(Reply::error(&e)),
    };
    let then = accepted.info_request().map(|request| Query {
        app: accepted.app.id.clone(),
        read: Read::Stats(info_channels(&request)),
        render: Render::Info {
            request,
            batch: matches!(route, TriggerRoute::BatchEvents { .. }),
        },
    });
    let messages = accepted.messages(now_ms, &mut next_id);
    // A fresh unique token: becomes the history epoch if Redis has none yet.
    let epoch_candidate = next_id();
    let command = publishing::publish_command(
        ScriptRef::Digest,
        &config.history,
        now_ms,
        &epoch_candidate,
        &messages,
    );
    Outcome::Publish(BridgeRequest {
        url: format!("{}{COMMAND_PATH}", config.bridge_url),
        token: config.bridge_token.clone(),
        body: upstash::command_body(&command),
        commands: messages.len(),
        then,
    })
}

/// What follows the bridge's answer to `request`: `Ok((status, body))`, or
/// why it could not be reached (including a timeout). `200 {}`
/// only when every publish was confirmed; a publish by digest refused before it
/// ran (`NOSCRIPT`, or a bridge without `EVALSHA`) asks for the same publish
/// with the script's text; anything else is `503` saying why.
pub fn after_publish(
    request: &BridgeRequest,
    answer: Result<(u16, Vec<u8>), BridgeError>,
) -> AfterPublish {
    let result = answer.and_then(|(status, body)| {
        upstash::check_publish_reply(status, &body, request.commands).map_err(BridgeError::from)
    });
    match result {
        Ok(()) => AfterPublish::Reply(Reply::ok(EMPTY_OBJECT.to_owned())),
        Err(e) => match e
            .asks_for_script_text()
            .then(|| with_script_text(request))
            .flatten()
        {
            Some(retry) => AfterPublish::SendScript(retry),
            None => AfterPublish::Reply(Reply::error(&ApiError::Unavailable(e.to_string()))),
        },
    }
}

/// `request` carrying the script's text instead of its digest; `None` when it
/// already does (or is not a publish by digest), so a retry happens once at most.
fn with_script_text(request: &BridgeRequest) -> Option<BridgeRequest> {
    let command: Vec<String> = serde_json::from_str(&request.body).ok()?;
    let by_text = publishing::with_script_text(command.clone());
    (by_text != command).then(|| BridgeRequest {
        body: upstash::command_body(&by_text),
        ..request.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushwire_shared::keys::KeySpace;
    use pushwire_shared::{ChannelName, Envelope, signing};

    use crate::config::test_config as config;

    fn signed(path: &str, body: &[u8], now: u64) -> String {
        let config = config();
        signing::sign("POST", path, &[], body, config.apps.single().unwrap(), now)
    }

    #[test]
    fn an_accepted_trigger_becomes_one_publish_script_call() {
        let body = br#"{"name":"e","channels":["a","b"],"data":"{}"}"#;
        let query = signed("/apps/1000001/events", body, 1_700_000_000);
        let request = RequestParts {
            method: "POST",
            path: "/apps/1000001/events",
            query: &query,
            body,
        };
        let mut n = 0;
        let next_id = || {
            n += 1;
            format!("id-{n}")
        };
        let Outcome::Publish(publish) = handle(&config(), request, 1_700_000_000_123, next_id)
        else {
            panic!("expected a publish");
        };
        assert_eq!(
            (
                publish.url.as_str(),
                publish.token.as_str(),
                publish.commands
            ),
            ("http://bridge/", "tok", 2)
        );
        let command: Vec<String> = serde_json::from_str(&publish.body).unwrap();
        assert!(pushwire_shared::publish_check::is_publish_command(&command));
        assert_eq!(command[..2], ["EVALSHA", publishing::PUBLISH_SCRIPT_SHA1]);
        // keys: epoch, two history streams; then 4 settings, the epoch candidate
        // being the id after the event's.
        let b = ChannelName::new("b").unwrap();
        assert_eq!(command[5], KeySpace::DEFAULT.history("1000001", &b));
        assert_eq!(command[9], "id-2");
        assert_eq!(command[12], KeySpace::DEFAULT.channel("1000001", &b));
        let envelope = Envelope::decode(command[11].as_bytes()).unwrap();
        assert_eq!(
            (envelope.id.as_str(), envelope.ts),
            ("id-1", 1_700_000_000_123)
        );
    }

    #[test]
    fn bad_requests_are_answered_at_once() {
        let config = config();
        let reply = |method, path, query, body: &[u8]| match handle(
            &config,
            RequestParts {
                method,
                path,
                query,
                body,
            },
            0,
            || "x".into(),
        ) {
            Outcome::Reply(reply) => reply,
            Outcome::Publish(_) => panic!("published"),
            Outcome::Query(_) => panic!("queried"),
        };
        assert_eq!(reply("GET", "/health", "", b"").status, 200);
        assert_eq!(reply("GET", "/apps/1000001/events", "", b"").status, 404);
        assert_eq!(reply("POST", "/apps/1000001/events", "", b"{}").status, 401);
        assert_eq!(reply("POST", "/apps/9/events", "", b"{}").status, 404);
        let unsigned = reply("GET", "/apps/1000001/channels/presence-x/users", "", b"");
        assert_eq!(unsigned.status, 401);
        let unauthorized = reply("POST", "/apps/1000001/events", "", b"{}");
        assert_eq!(
            unauthorized.body,
            r#"{"error":"missing auth_key query parameter"}"#
        );
        assert_eq!(unauthorized.log, None);
    }

    #[test]
    fn a_declared_length_over_the_cap_is_refused_before_reading() {
        assert!(declared_length_over_cap(Some("1025"), 1024));
        assert!(declared_length_over_cap(
            Some(" 99999999999999999999 "),
            1024
        ));
        assert!(declared_length_over_cap(Some("18446744073709551615"), 1024));
        assert!(!declared_length_over_cap(Some("1024"), 1024));
        assert!(!declared_length_over_cap(Some("ten"), 1024));
        assert!(!declared_length_over_cap(None, 1024));
    }

    #[test]
    fn a_stale_timestamp_is_logged_with_its_skew_but_answered_without() {
        let body = br#"{"name":"e","channel":"a","data":"{}"}"#;
        let query = signed("/apps/1000001/events", body, 1_700_000_000);
        let request = RequestParts {
            method: "POST",
            path: "/apps/1000001/events",
            query: &query,
            body,
        };
        let Outcome::Reply(reply) = handle(&config(), request, 1_700_004_321_000, || "x".into())
        else {
            panic!("not refused");
        };
        assert_eq!(reply.status, 401);
        assert!(!reply.body.contains("4321"), "{}", reply.body);
        assert_eq!(
            reply.log.as_deref(),
            Some("auth_timestamp is 4321 s away from the clock")
        );
    }

    fn publish_request() -> BridgeRequest {
        let command =
            publishing::publish_command(ScriptRef::Digest, &Default::default(), 0, "e", &[]);
        BridgeRequest {
            url: "u".into(),
            token: "t".into(),
            body: upstash::command_body(&command),
            commands: 2,
            then: None,
        }
    }

    fn reply_of(after: AfterPublish) -> Reply {
        match after {
            AfterPublish::Reply(reply) => reply,
            AfterPublish::SendScript(retry) => panic!("asked to retry with {retry:?}"),
        }
    }

    #[test]
    fn only_a_full_confirmation_is_a_200() {
        let request = publish_request();
        let confirmed = after_publish(&request, Ok((200, br#"{"result":2}"#.to_vec())));
        assert_eq!(reply_of(confirmed).status, 200);
        for answer in [
            Ok((200, br#"{"result":1}"#.to_vec())),
            Ok((401, br#"{"error":"Unauthorized"}"#.to_vec())),
            Ok((200, b"<html>".to_vec())),
            Err(BridgeError::TimedOut(3000)),
        ] {
            let reply = reply_of(after_publish(&request, answer));
            assert_eq!(reply.status, 503, "{reply:?}");
            assert!(reply.body.contains("unavailable"), "{}", reply.body);
        }
    }

    #[test]
    fn a_bridge_without_evalsha_gets_the_script_text() {
        let refused = br#"{"error":"ERR command 'EVALSHA' is not allowed by this bridge"}"#;
        let after = after_publish(&publish_request(), Ok((400, refused.to_vec())));
        assert!(matches!(after, AfterPublish::SendScript(_)), "{after:?}");
    }

    #[test]
    fn an_unknown_script_is_sent_once_with_its_text() {
        let request = publish_request();
        let noscript = || Ok((400, br#"{"error":"NOSCRIPT No matching script."}"#.to_vec()));
        let AfterPublish::SendScript(retry) = after_publish(&request, noscript()) else {
            panic!("expected a retry with the script's text");
        };
        let command: Vec<String> = serde_json::from_str(&retry.body).unwrap();
        assert_eq!(command[..2], ["EVAL", publishing::PUBLISH_SCRIPT]);
        assert!(pushwire_shared::publish_check::is_publish_command(&command));
        assert_eq!(
            (retry.url.as_str(), retry.commands),
            (request.url.as_str(), 2)
        );
        // The script's text cannot be unknown: no second retry.
        let reply = reply_of(after_publish(&retry, noscript()));
        assert_eq!(reply.status, 503, "{reply:?}");
    }
}
