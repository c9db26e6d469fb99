//! What the edge does with a request, as plain functions: [`handle`] either
//! answers at once, asks for one publish to the bridge, or asks for a directory
//! read (channel queries, see [`crate::query`]); [`after_publish`] turns the
//! bridge's answer into the reply.

use pushwire_shared::channel_query::ChannelQueryRoute;
use pushwire_shared::directory::Read;
use pushwire_shared::history;
use pushwire_shared::http::{EMPTY_OBJECT, HttpError, error_body};
use pushwire_shared::signing::RequestParts;
use pushwire_shared::trigger_request::{self, TriggerRequestError, TriggerRoute, info_channels};
use pushwire_shared::upstash::{self, COMMAND_PATH};

use crate::config::EdgeConfig;
use crate::query::{self, Query, Render};

/// An HTTP reply: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
}

impl Reply {
    pub(crate) fn error(e: &TriggerRequestError) -> Self {
        Reply {
            status: e.status(),
            body: error_body(&e.to_string()),
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
    /// JSON body: the publish script call (history append + PUBLISH, atomic).
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

/// Decides what to do with the incoming `request` at `now_ms`; `next_id` makes event ids.
pub fn handle(
    config: &EdgeConfig,
    request: RequestParts<'_>,
    now_ms: u64,
    mut next_id: impl FnMut() -> String,
) -> Outcome {
    if request.path == "/health" && request.method == "GET" {
        return Outcome::Reply(Reply {
            status: 200,
            body: r#"{"status":"ok"}"#.to_owned(),
        });
    }
    if let Some(route) = ChannelQueryRoute::parse(request.path) {
        return query::handle(config, route, request, now_ms);
    }
    let route = match TriggerRoute::parse(request.path) {
        Some(route) if request.method == "POST" => route,
        _ => return Outcome::Reply(Reply::error(&TriggerRequestError::NotFound)),
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
    let command = history::publish_command(&config.history, now_ms, &epoch_candidate, &messages);
    Outcome::Publish(BridgeRequest {
        url: format!("{}{COMMAND_PATH}", config.bridge_url),
        token: config.bridge_token.clone(),
        body: upstash::command_body(&command),
        commands: messages.len(),
        then,
    })
}

/// The reply once the bridge answered `Ok((status, body))` or could not be
/// reached (`Err(reason)`, including a timeout): `200 {}` only when every publish
/// was confirmed, else `503` saying why.
pub fn after_publish(request: &BridgeRequest, answer: Result<(u16, Vec<u8>), String>) -> Reply {
    let result = match answer {
        Ok((status, body)) => {
            upstash::check_publish_reply(status, &body, request.commands).map_err(|e| e.to_string())
        }
        Err(reason) => Err(format!("the bridge is unreachable: {reason}")),
    };
    match result {
        Ok(()) => Reply {
            status: 200,
            body: EMPTY_OBJECT.to_owned(),
        },
        Err(reason) => Reply::error(&TriggerRequestError::Unavailable(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushwire_shared::{Envelope, signing};

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
        assert!(history::is_publish_command(&command));
        // keys: epoch, two history streams; then 4 settings, the epoch candidate
        // being the id after the event's.
        assert_eq!(command[5], "pushwire:v1:1000001:hist:b");
        assert_eq!(command[9], "id-2");
        assert_eq!(command[12], "pushwire:v1:1000001:ch:b");
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
    }

    #[test]
    fn only_a_full_confirmation_is_a_200() {
        let request = BridgeRequest {
            url: "u".into(),
            token: "t".into(),
            body: "[]".into(),
            commands: 2,
            then: None,
        };
        assert_eq!(
            after_publish(&request, Ok((200, br#"{"result":2}"#.to_vec()))).status,
            200
        );
        for answer in [
            Ok((200, br#"{"result":1}"#.to_vec())),
            Ok((401, br#"{"error":"Unauthorized"}"#.to_vec())),
            Ok((200, b"<html>".to_vec())),
            Err("timed out after 3000 ms".to_owned()),
        ] {
            let reply = after_publish(&request, answer);
            assert_eq!(reply.status, 503, "{reply:?}");
            assert!(reply.body.contains("unavailable"), "{}", reply.body);
        }
    }
}
