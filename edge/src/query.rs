//! Channel queries at the edge, as plain functions: [`handle`] checks one and
//! turns it into a directory read ([`Query`]); the entry point runs the read's
//! steps as bridge `/pipeline` requests ([`pipeline_request`],
//! [`pipeline_replies`]) and answers with [`render`]. A trigger's `info` is the
//! same kind of read, run after its publish.

use pushwire_shared::channel_query::{
    self, ChannelQuery, ChannelQueryRoute, channel_body, channels_body, users_body,
};
use pushwire_shared::directory::{Found, Read, Reply as DirectoryReply};
use pushwire_shared::http::error_body;
use pushwire_shared::signing::RequestParts;
use pushwire_shared::trigger::ChannelAttribute;
use pushwire_shared::trigger_request::{InfoRequest, TriggerRequestError, info_body};
use serde_json::Value;

use crate::config::EdgeConfig;
use crate::handler::{BridgeRequest, Outcome, Reply};

/// The 404 message for history reads, which the edge cannot answer.
pub const HISTORY_AT_THE_ORIGIN: &str = "channel history is answered by the pushwire origins, not by the edge: send this request to an origin";

/// The path of a pipeline of commands.
const PIPELINE_PATH: &str = "/pipeline";

/// A directory read and what to make of its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The app.
    pub app: String,
    /// What to read.
    pub read: Read,
    /// How to answer.
    pub render: Render,
}

/// How a directory read becomes the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Render {
    /// `GET /channels`.
    Channels {
        /// `info=user_count`.
        user_count: bool,
    },
    /// `GET /channels/{name}`.
    Channel(Vec<ChannelAttribute>),
    /// `GET /channels/{name}/users`.
    Users,
    /// A trigger's `info`.
    Info {
        /// What the trigger asked for.
        request: InfoRequest,
        /// A `batch_events` request.
        batch: bool,
    },
}

/// A channel query: checked like a trigger, then a directory read. History is
/// answered by the origins only (the bridge does not read streams).
pub(crate) fn handle(
    config: &EdgeConfig,
    route: ChannelQueryRoute<'_>,
    request: RequestParts<'_>,
    now_ms: u64,
) -> Outcome {
    if request.method != "GET" {
        return Outcome::Reply(Reply::error(&TriggerRequestError::NotFound));
    }
    let accepted = match channel_query::accept(route, &request, &config.apps, now_ms / 1000) {
        Ok(accepted) => accepted,
        Err(e) => return Outcome::Reply(Reply::error(&e)),
    };
    let (read, render) = match accepted.query {
        ChannelQuery::Channels { prefix, user_count } => {
            (Read::Occupied(prefix), Render::Channels { user_count })
        }
        ChannelQuery::Channel { channel, info } => {
            (Read::Stats(vec![channel]), Render::Channel(info))
        }
        ChannelQuery::Users { channel } => (Read::Members(channel), Render::Users),
        ChannelQuery::History { .. } => {
            return Outcome::Reply(Reply {
                status: 404,
                body: error_body(HISTORY_AT_THE_ORIGIN),
            });
        }
    };
    Outcome::Query(Query {
        app: accepted.app.id.clone(),
        read,
        render,
    })
}

/// One pipeline of directory commands as a bridge request (`POST /pipeline`).
pub fn pipeline_request(config: &EdgeConfig, commands: &[Vec<String>]) -> BridgeRequest {
    BridgeRequest {
        url: format!("{}{PIPELINE_PATH}", config.bridge_url),
        token: config.bridge_token.clone(),
        body: serde_json::to_string(commands).expect("strings always serialise"),
        commands: commands.len(),
        then: None,
    }
}

/// The replies of a pipeline (`200 [{"result": …}, …]`, one per command), or why not.
pub fn pipeline_replies(
    answer: Result<(u16, Vec<u8>), String>,
    expected: usize,
) -> Result<Vec<DirectoryReply>, String> {
    let (status, body) = answer.map_err(|reason| format!("the bridge is unreachable: {reason}"))?;
    if status != 200 {
        return Err(format!("the bridge answered {status}"));
    }
    let items: Vec<Value> = serde_json::from_slice(&body)
        .map_err(|_| "the bridge sent an unexpected reply".to_owned())?;
    if items.len() != expected {
        return Err(format!("{} replies for {expected} commands", items.len()));
    }
    items
        .iter()
        .map(|item| match item.get("error").and_then(Value::as_str) {
            Some(error) => Err(format!("the bridge refused a read: {error}")),
            None => Ok(DirectoryReply::from_json(
                item.get("result").unwrap_or(&Value::Null),
            )),
        })
        .collect()
}

/// The reply for a finished read (or a 503 saying why it failed).
pub fn render(found: Result<Found, String>, render: &Render) -> Reply {
    let body = match (found, render) {
        (Ok(Found::Occupied(channels)), Render::Channels { user_count }) => {
            channels_body(&channels, *user_count)
        }
        (Ok(Found::Stats(stats)), Render::Channel(info)) => {
            channel_body(&stats.first().copied().unwrap_or_default(), info)
        }
        (Ok(Found::Members(members)), Render::Users) => users_body(&members),
        (Ok(Found::Stats(stats)), Render::Info { request, batch }) => {
            info_body(request, &stats, *batch)
        }
        (Ok(other), _) => {
            let reason = format!("unexpected directory result {other:?}");
            return Reply::error(&TriggerRequestError::Unavailable(reason));
        }
        (Err(reason), _) => return Reply::error(&TriggerRequestError::Unavailable(reason)),
    };
    Reply {
        status: 200,
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushwire_shared::{ChannelName, signing};

    use crate::config::test_config as config;

    #[test]
    fn channel_queries_become_directory_reads() {
        let config = config();
        let app = config.apps.single().unwrap().clone();
        let path = "/apps/1000001/channels/presence-a";
        let query = signing::sign(
            "GET",
            path,
            &[("info", "user_count")],
            b"",
            &app,
            1_700_000_000,
        );
        let request = RequestParts {
            method: "GET",
            path,
            query: &query,
            body: b"",
        };
        let Outcome::Query(q) =
            crate::handler::handle(&config, request, 1_700_000_000_000, || "x".into())
        else {
            panic!("expected a read");
        };
        assert_eq!(
            q.read,
            Read::Stats(vec![ChannelName::new("presence-a").unwrap()])
        );
        let pipeline = pipeline_request(&config, &[vec!["HLEN".into(), "k".into()]]);
        assert_eq!(
            (pipeline.url.as_str(), pipeline.body.as_str()),
            ("http://bridge/pipeline", r#"[["HLEN","k"]]"#)
        );
        let replies = pipeline_replies(Ok((200, br#"[{"result":2}]"#.to_vec())), 1).unwrap();
        assert_eq!(replies, [DirectoryReply::Int(2)]);
        assert!(pipeline_replies(Ok((200, br#"[{"error":"ERR"}]"#.to_vec())), 1).is_err());
        assert!(pipeline_replies(Ok((200, b"[]".to_vec())), 1).is_err());
        let stats = vec![pushwire_shared::directory::ChannelStats {
            subscription_count: 4,
            user_count: 2,
        }];
        let reply = render(Ok(Found::Stats(stats)), &q.render);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, r#"{"occupied":true,"user_count":2}"#)
        );
        assert_eq!(render(Err("down".into()), &q.render).status, 503);
    }
}
