//! `pushwire bridge`: an Upstash-compatible Redis REST server, so an edge worker
//! (which speaks HTTP, not the Redis protocol) can publish.
//!
//! - `POST /` with one command as a JSON array: `{"result": …}` (200), or
//!   `{"error": "…"}` (400) when Redis refuses it;
//! - `POST /pipeline` and `POST /multi-exec` (atomic) with an array of commands:
//!   an array of `{"result"}` / `{"error"}` items (200);
//! - `Authorization: Bearer <token>` (or `?_token=`), else 401;
//! - `Upstash-Encoding: base64`: strings in results are base64;
//! - only allow-listed commands run (default: what the edge needs: PING, PUBLISH,
//!   EVAL/EVALSHA of pushwire's publish script only, and ZRANGEBYSCORE/HGET/HGETALL/HLEN on
//!   pushwire's own keys only); a request naming any other is refused whole (400)
//!   before anything runs;
//! - bodies over the cap get 413, bodies slower than the body-read timeout 408;
//!   Redis unreachable gets 503;
//! - connections live under `ConnectionLimits` (header and body deadlines,
//!   idle timeout, a per-address cap), as on the origin.

mod command;
mod config;
mod reply;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pushwire_shared::http::error_body;
use pushwire_shared::upstash;
use serde_json::{Value, json};

pub(crate) use self::command::{DEFAULT_ALLOWED, RedisCommand};
pub(crate) use self::config::{BridgeConfig, BridgeSettings};
pub(crate) use self::reply::Encoding;

use crate::http_server::{self, body_deadline_of};
use crate::redis_connection::{
    CommandConnection, PUBLISH_TIMEOUT, RedisConn, RedisUnavailable, within,
};

/// Why a bridge request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BridgeError {
    /// Missing or wrong token.
    #[error("Unauthorized")]
    Unauthorized,
    /// The body is not a valid command or pipeline.
    #[error("ERR {0}")]
    BadRequest(String),
    /// The command is not on the allow-list.
    #[error("{}", upstash::not_allowed_error(.0))]
    NotAllowed(String),
    /// Redis answered with an error (single-command requests).
    #[error("{0}")]
    Redis(String),
    /// The body is over the cap.
    #[error("ERR request body is over the {0} byte limit")]
    TooLarge(usize),
    /// The body did not arrive within the body-read timeout.
    #[error("ERR the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// Redis cannot be reached.
    #[error("ERR redis unavailable: {0}")]
    Unavailable(#[from] RedisUnavailable),
}

impl IntoResponse for BridgeError {
    fn into_response(self) -> Response {
        let status = match self {
            BridgeError::Unauthorized => StatusCode::UNAUTHORIZED,
            BridgeError::BadRequest(_) | BridgeError::NotAllowed(_) | BridgeError::Redis(_) => {
                StatusCode::BAD_REQUEST
            }
            BridgeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BridgeError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            BridgeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, "bridge request failed");
        }
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            error_body(&self.to_string()),
        )
            .into_response()
    }
}

#[derive(Debug)]
struct Bridge {
    config: BridgeConfig,
    redis: CommandConnection,
}

/// Serves the bridge on `listener` until `shutdown` resolves.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    config: BridgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BridgeError> {
    let bridge = Arc::new(Bridge {
        redis: CommandConnection::new(config.redis.clone()),
        config,
    });
    tracing::info!(
        addr = %listener.local_addr().map_err(|e| BridgeError::Unavailable(RedisUnavailable(e.to_string())))?,
        allowed = %bridge.config.allowed.join(","),
        "bridge listening"
    );
    let app = Router::new()
        .route(
            "/health",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"status":"ok"}"#,
                )
            }),
        )
        .route("/", post(single))
        .route("/pipeline", post(|s, q, h, b| batch(s, q, h, b, false)))
        .route("/multi-exec", post(|s, q, h, b| batch(s, q, h, b, true)))
        .with_state(bridge.clone());
    let limits = bridge.config.connections;
    http_server::serve(listener, app, limits, shutdown)
        .await
        .map_err(|e| BridgeError::Unavailable(RedisUnavailable(e.to_string())))
}

/// Checks the token, reads and parses the body, and picks the reply encoding.
async fn prepare(
    bridge: &Bridge,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Value, Encoding), BridgeError> {
    let query_token = pushwire_shared::signing::QueryParams::parse(uri.query().unwrap_or(""))
        .ok()
        .and_then(|q| q.get("_token").map(str::to_owned));
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or(query_token);
    if !bearer.is_some_and(|t| constant_time_eq(t.as_bytes(), bridge.config.token.as_bytes())) {
        return Err(BridgeError::Unauthorized);
    }
    let limit = bridge.config.max_request_bytes;
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(BridgeError::TooLarge(limit)),
        Err(e) => {
            return Err(match body_deadline_of(e.as_ref()) {
                Some(timeout) => BridgeError::BodyTimeout(timeout.as_millis() as u64),
                None => BridgeError::BadRequest("could not read the request body".into()),
            });
        }
    };
    let value = serde_json::from_slice(&bytes)
        .map_err(|e| BridgeError::BadRequest(format!("body is not JSON: {e}")))?;
    let encoding = match headers
        .get("upstash-encoding")
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if v.eq_ignore_ascii_case("base64") => Encoding::Base64,
        _ => Encoding::Plain,
    };
    Ok((value, encoding))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One command's outcome: its reply, or Redis's error reply as Redis wrote it.
type CommandReply = Result<redis::Value, String>;

/// Runs `commands` as one pipeline (MULTI/EXEC when `atomic`), collecting each
/// command's reply or error. On a Redis Cluster a pipeline would have to stay
/// in one slot and could not follow a slot that moved: each command of a plain
/// pipeline is sent on its own (all at once, answered in order) to its key's
/// shard, following redirections; a transaction still must stay in one slot
/// (Redis refuses it otherwise, `CROSSSLOT`).
async fn execute(
    bridge: &Bridge,
    commands: &[RedisCommand],
    atomic: bool,
) -> Result<Vec<CommandReply>, BridgeError> {
    let mode = bridge.config.redis.pubsub_mode();
    let commands: Vec<RedisCommand> = commands
        .iter()
        .map(|command| command.clone().for_mode(mode))
        .collect();
    let mut conn = bridge.redis.get().await?;
    // The publish bound, not the 2 s one: the edge publishes through here, and a
    // timed-out publish may have happened (see `PUBLISH_TIMEOUT`).
    if atomic || matches!(conn, RedisConn::Single(_)) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        if atomic {
            pipe.atomic();
        }
        for command in &commands {
            pipe.add_command(command.to_cmd());
        }
        let replies = within(
            PUBLISH_TIMEOUT,
            "pipeline",
            pipe.query_async::<Vec<redis::Value>>(&mut conn),
        )
        .await?;
        return Ok(replies.into_iter().map(reply::of_value).collect());
    }
    let each = commands.iter().map(|command| {
        let mut conn = conn.clone();
        let cmd = command.to_cmd();
        async move {
            let answer =
                tokio::time::timeout(PUBLISH_TIMEOUT, cmd.query_async::<redis::Value>(&mut conn))
                    .await
                    .map_err(|_| {
                        RedisUnavailable(format!(
                            "redis command timed out after {PUBLISH_TIMEOUT:?}"
                        ))
                    })?;
            match answer {
                Ok(value) => Ok(reply::of_value(value)),
                // Redis answered with an error (`NOSCRIPT`, `CROSSSLOT`…): that
                // command's reply, as on a single server.
                Err(e) if e.code().is_some() => {
                    let code = e.code().unwrap_or_default();
                    Ok(Err(match e.detail() {
                        Some(detail) => format!("{code} {detail}"),
                        None => code.to_owned(),
                    }))
                }
                Err(e) => Err(RedisUnavailable(format!("redis command: {e}"))),
            }
        }
    });
    Ok(futures_util::future::try_join_all(each).await?)
}

fn json_response(value: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn single(
    State(bridge): State<Arc<Bridge>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, BridgeError> {
    let (value, encoding) = prepare(&bridge, &uri, &headers, body).await?;
    let command = RedisCommand::parse(&value, &bridge.config.allowed)?;
    let replies = execute(&bridge, std::slice::from_ref(&command), false).await?;
    let reply = replies
        .into_iter()
        .next()
        .ok_or_else(|| BridgeError::Redis("ERR no reply".into()))?;
    let result = reply
        .and_then(|value| reply::to_json(&value, encoding))
        .map_err(BridgeError::Redis)?;
    Ok(json_response(json!({ "result": result })))
}

async fn batch(
    State(bridge): State<Arc<Bridge>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    atomic: bool,
) -> Result<Response, BridgeError> {
    let (value, encoding) = prepare(&bridge, &uri, &headers, body).await?;
    let commands = RedisCommand::parse_many(&value, &bridge.config.allowed)?;
    let replies = execute(&bridge, &commands, atomic).await?;
    Ok(json_response(Value::Array(
        replies.iter().map(|r| reply::entry(r, encoding)).collect(),
    )))
}
