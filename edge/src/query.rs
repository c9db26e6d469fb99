//! Channel queries at the edge, as plain functions: [`handle`] checks one and
//! turns it into a directory read ([`Query`]); the entry point runs the read's
//! steps as bridge `/pipeline` requests ([`pipeline_request`],
//! [`pipeline_replies`]) and answers with [`render`]. A trigger's `info` is the
//! same kind of read, run after its publish.

use pushwire_shared::api_error::ApiError;
use pushwire_shared::channel_query::{
    self, ChannelQuery, ChannelQueryRoute, channel_body, channels_body, users_body,
};
use pushwire_shared::directory::{Found, Read, Reply as DirectoryReply};
use pushwire_shared::signing::RequestParts;
use pushwire_shared::trigger::ChannelAttribute;
use pushwire_shared::trigger_request::{InfoRequest, info_body};
use serde_json::Value;

use crate::bridge::BridgeError;
use crate::config::EdgeConfig;
use crate::handler::{BridgeRequest, Outcome, Reply};
use pushwire_shared::upstash::{PIPELINE_PATH, pipeline_body};

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
        return Outcome::Reply(Reply::error(&ApiError::NotFound));
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
            return Outcome::Reply(Reply::error(&ApiError::HistoryNotAtTheEdge));
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
        body: pipeline_body(commands),
    }
}

/// The replies of a pipeline (`200 [{"result": …}, …]`, one per command), or why not.
pub fn pipeline_replies(
    answer: Result<(u16, Vec<u8>), BridgeError>,
    expected: usize,
) -> Result<Vec<DirectoryReply>, BridgeError> {
    let (status, body) = answer?;
    if status != 200 {
        return Err(BridgeError::PipelineStatus(status));
    }
    let items: Vec<Value> =
        serde_json::from_slice(&body).map_err(|_| BridgeError::PipelineMalformed)?;
    if items.len() != expected {
        return Err(BridgeError::PipelineLength {
            replies: items.len(),
            commands: expected,
        });
    }
    items
        .iter()
        .map(|item| match item.get("error").and_then(Value::as_str) {
            Some(error) => Err(BridgeError::ReadRefused(error.to_owned())),
            None => Ok(DirectoryReply::from_json(
                item.get("result").unwrap_or(&Value::Null),
            )),
        })
        .collect()
}

/// The reply for a finished read (or a 503 saying why it failed).
pub fn render(found: Result<Found, BridgeError>, render: &Render) -> Reply {
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
            return Reply::error(&ApiError::Unavailable(reason));
        }
        (Err(e), _) => return Reply::error(&ApiError::Unavailable(e.to_string())),
    };
    Reply::ok(body.to_string())
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
        assert_eq!(
            pipeline_replies(Ok((200, br#"[{"error":"ERR"}]"#.to_vec())), 1),
            Err(BridgeError::ReadRefused("ERR".into()))
        );
        assert_eq!(
            pipeline_replies(Ok((200, b"[]".to_vec())), 1),
            Err(BridgeError::PipelineLength {
                replies: 0,
                commands: 1
            })
        );
        assert_eq!(
            pipeline_replies(Ok((502, b"<html>".to_vec())), 1),
            Err(BridgeError::PipelineStatus(502))
        );
        assert_eq!(
            pipeline_replies(Ok((200, br#"{"result":2}"#.to_vec())), 1),
            Err(BridgeError::PipelineMalformed)
        );
        assert_eq!(
            pipeline_replies(Err(BridgeError::TimedOut(5)), 1),
            Err(BridgeError::TimedOut(5))
        );
        let stats = vec![pushwire_shared::directory::ChannelStats {
            subscription_count: 4,
            user_count: 2,
        }];
        let reply = render(Ok(Found::Stats(stats)), &q.render);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, r#"{"occupied":true,"user_count":2}"#)
        );
        let down = render(Err(BridgeError::PipelineStatus(502)), &q.render);
        assert_eq!(
            (down.status, down.body.as_str()),
            (
                503,
                r#"{"error":"the event broker is unavailable: the bridge answered 502"}"#
            )
        );
    }
}
