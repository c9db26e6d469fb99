//! What the edge does with a request, as plain functions: [`handle`] either
//! answers at once, asks for one publish to the bridge (a pipeline of one
//! publish script run per channel), or asks for a directory read (channel
//! queries, see [`crate::query`]); [`after_publish`] turns the bridge's answer
//! into the reply, or into the runs Redis refused for not having the script,
//! again with the script's text.

use pushwire_shared::api_error::ApiError;
use pushwire_shared::channel_query::ChannelQueryRoute;
use pushwire_shared::directory::Read;
use pushwire_shared::http::{EMPTY_OBJECT, HttpError};
use pushwire_shared::publishing::{self, ScriptRef};
use pushwire_shared::signing::RequestParts;
use pushwire_shared::trigger_request::{self, TriggerRoute, info_channels};
use pushwire_shared::upstash::{self, PIPELINE_PATH};

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
    /// Full URL (`/pipeline` under the bridge's root).
    pub url: String,
    /// Bearer token.
    pub token: String,
    /// JSON body: the pipeline's commands.
    pub body: String,
}

/// A trigger's publish: one run of the publish script per channel (history
/// append + `PUBLISH`, atomic per channel), as one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The request carrying [`commands`](Self::commands).
    pub request: BridgeRequest,
    /// The publish commands, as sent.
    pub commands: Vec<Vec<String>>,
    /// The read to run once the publish is confirmed (a trigger's `info`).
    pub then: Option<Query>,
}

impl PublishRequest {
    fn new(config: &EdgeConfig, commands: Vec<Vec<String>>, then: Option<Query>) -> Self {
        PublishRequest {
            request: BridgeRequest {
                url: format!("{}{PIPELINE_PATH}", config.bridge_url),
                token: config.bridge_token.clone(),
                body: upstash::pipeline_body(&commands),
            },
            commands,
            then,
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answer now.
    Reply(Reply),
    /// Publish, then answer with [`after_publish`].
    Publish(PublishRequest),
    /// Read the directory through the bridge, then answer with [`render`].
    Query(Query),
}

/// What to do once the bridge has answered a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPublish {
    /// Answer the caller.
    Reply(Reply),
    /// Some runs by digest were refused before they ran (Redis, or one shard
    /// of a cluster, did not have the script after a restart or a `SCRIPT
    /// FLUSH`, or the bridge does not take `EVALSHA`), and every other run was
    /// confirmed: send this, those runs carrying the script's text (which also
    /// loads it for the next triggers).
    SendScript(PublishRequest),
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
    let commands = publishing::publish_commands(
        ScriptRef::Digest,
        &config.history,
        now_ms,
        &epoch_candidate,
        &messages,
    );
    Outcome::Publish(PublishRequest::new(config, commands, then))
}

/// What follows the bridge's answer to `publish`: `Ok((status, body))`, or
/// why it could not be reached (including a timeout). `200 {}` only when every
/// run was confirmed; runs by digest refused before they ran (`NOSCRIPT`, or a
/// bridge without `EVALSHA`) are sent again with the script's text, once,
/// when nothing else failed; anything else is `503` saying why. Runs already
/// confirmed keep their event: a caller retrying a `503` may repeat it on
/// those channels (`PROTOCOL.md`).
pub fn after_publish(
    publish: &PublishRequest,
    answer: Result<(u16, Vec<u8>), BridgeError>,
) -> AfterPublish {
    let expected: Vec<usize> = publish
        .commands
        .iter()
        .map(|cmd| publishing::messages_in(cmd))
        .collect();
    let results: Vec<Result<(), BridgeError>> = match answer {
        Ok((status, body)) => upstash::check_publish_replies(status, &body, &expected)
            .into_iter()
            .map(|result| result.map_err(BridgeError::from))
            .collect(),
        Err(e) => vec![Err(e)],
    };
    let mut retry = Vec::new();
    for (cmd, result) in publish.commands.iter().zip(&results) {
        let Err(e) = result else { continue };
        let by_text = publishing::with_script_text(cmd.clone());
        if e.asks_for_script_text() && by_text != *cmd {
            retry.push(by_text);
        } else {
            return AfterPublish::Reply(Reply::error(&ApiError::Unavailable(e.to_string())));
        }
    }
    if retry.is_empty() {
        return AfterPublish::Reply(Reply::ok(EMPTY_OBJECT.to_owned()));
    }
    AfterPublish::SendScript(PublishRequest {
        request: BridgeRequest {
            body: upstash::pipeline_body(&retry),
            ..publish.request.clone()
        },
        commands: retry,
        then: publish.then.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushwire_shared::history::PublishMessage;
    use pushwire_shared::keys::KeySpace;
    use pushwire_shared::{ChannelName, Envelope, signing};

    use crate::config::test_config as config;

    fn signed(path: &str, body: &[u8], now: u64) -> String {
        let config = config();
        signing::sign("POST", path, &[], body, config.apps.single().unwrap(), now)
    }

    #[test]
    fn an_accepted_trigger_becomes_one_publish_script_run_per_channel() {
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
            (publish.request.url.as_str(), publish.request.token.as_str()),
            ("http://bridge/pipeline", "tok")
        );
        let commands: Vec<Vec<String>> = serde_json::from_str(&publish.request.body).unwrap();
        assert_eq!(commands, publish.commands);
        assert_eq!(commands.len(), 2);
        let keys = KeySpace::DEFAULT;
        for (command, channel) in commands.iter().zip(["a", "b"]) {
            let channel = ChannelName::new(channel).unwrap();
            assert!(pushwire_shared::publish_check::is_publish_command(command));
            assert_eq!(
                command[..3],
                ["EVALSHA", publishing::PUBLISH_SCRIPT_SHA1, "2"]
            );
            // keys: epoch, history; then 5 settings, the epoch candidate being
            // the id after the events'; the channel; the envelope.
            assert_eq!(command[3], keys.epoch("1000001", &channel));
            assert_eq!(command[4], keys.history("1000001", &channel));
            assert_eq!(command[8], "id-2");
            assert_eq!(command[10], keys.channel("1000001", &channel));
            let envelope = Envelope::decode(command[11].as_bytes()).unwrap();
            assert_eq!(
                (envelope.id.as_str(), envelope.ts, envelope.channel),
                ("id-1", 1_700_000_000_123, channel)
            );
        }
    }

    #[test]
    fn terminating_a_users_connections_publishes_the_order_on_its_channel() {
        let path = "/apps/1000001/users/alice/terminate_connections";
        let query = signed(path, b"{}", 1_700_000_000);
        let request = RequestParts {
            method: "POST",
            path,
            query: &query,
            body: b"{}",
        };
        let Outcome::Publish(publish) =
            handle(&config(), request, 1_700_000_000_123, || "id".into())
        else {
            panic!("expected a publish");
        };
        assert_eq!(publish.commands.len(), 1);
        let command = &publish.commands[0];
        assert!(pushwire_shared::publish_check::is_publish_command(command));
        let channel = ChannelName::new("#server-to-user-alice").unwrap();
        assert_eq!(command[10], KeySpace::DEFAULT.channel("1000001", &channel));
        let envelope = Envelope::decode(command[11].as_bytes()).unwrap();
        assert_eq!(
            envelope.event.as_str(),
            pushwire_shared::event::TERMINATE_CONNECTIONS
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

    fn publish_request() -> PublishRequest {
        let message = |channel: &str| {
            let raw = format!(
                r#"{{"v":1,"id":"e","app":"1","channel":"{channel}","event":"x","data":"","ts":1}}"#
            );
            PublishMessage::of(&Envelope::decode(raw.as_bytes()).unwrap())
        };
        let messages = [message("a"), message("b"), message("a")];
        let commands =
            publishing::publish_commands(ScriptRef::Digest, &Default::default(), 0, "e", &messages);
        PublishRequest::new(&config(), commands, None)
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
        let confirmed = after_publish(
            &request,
            Ok((200, br#"[{"result":2},{"result":1}]"#.to_vec())),
        );
        assert_eq!(reply_of(confirmed).status, 200);
        for answer in [
            Ok((200, br#"[{"result":1},{"result":1}]"#.to_vec())),
            Ok((200, br#"[{"result":2}]"#.to_vec())),
            Ok((200, br#"[{"result":2},{"error":"ERR oom"}]"#.to_vec())),
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
        let AfterPublish::SendScript(retry) = after else {
            panic!("expected a retry, got {after:?}");
        };
        assert_eq!(retry.commands.len(), 2);
    }

    #[test]
    fn only_the_runs_refused_for_their_digest_are_sent_again_with_the_text() {
        let request = publish_request();
        let answer = br#"[{"result":2},{"error":"NOSCRIPT No matching script."}]"#;
        let AfterPublish::SendScript(retry) = after_publish(&request, Ok((200, answer.to_vec())))
        else {
            panic!("expected a retry with the script's text");
        };
        let commands: Vec<Vec<String>> = serde_json::from_str(&retry.request.body).unwrap();
        assert_eq!(commands, retry.commands);
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0][..2], ["EVAL", publishing::PUBLISH_SCRIPT]);
        assert_eq!(commands[0][4], request.commands[1][4]);
        assert!(pushwire_shared::publish_check::is_publish_command(
            &commands[0]
        ));
        assert_eq!(retry.request.url, request.request.url);
        // The script's text cannot be unknown: no second retry.
        let again = br#"[{"error":"NOSCRIPT No matching script."}]"#;
        let reply = reply_of(after_publish(&retry, Ok((200, again.to_vec()))));
        assert_eq!(reply.status, 503, "{reply:?}");
        // A refusal beside another failure is a 503: the other may have run.
        let mixed = br#"[{"error":"ERR busy"},{"error":"NOSCRIPT No matching script."}]"#;
        let reply = reply_of(after_publish(&request, Ok((200, mixed.to_vec()))));
        assert_eq!(reply.status, 503, "{reply:?}");
    }
}
