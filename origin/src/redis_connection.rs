//! `CommandConnection`: a Redis connection for commands (not pub/sub), opened on
//! first use, re-opened by itself after failures, every wait bounded.
//!
//! Shared by the Redis broker (PUBLISH) and the REST bridge (any allowed command).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long connecting may take before the attempt counts as failed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command or pipeline may take before it counts as failed.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a trigger waits for the publish script's reply before answering `503`.
///
/// Longer than [`COMMAND_TIMEOUT`] because the outcome of a timed-out publish is
/// unknown: Redis may have run the script, and a caller retrying on the `503`
/// then publishes the event twice. A worker saturated by fan-out was seen reading
/// the reply after more than 2 s; an unreachable Redis still fails at once.
pub(crate) const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between the connection manager's reconnection attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);

/// Redis cannot be reached or did not answer in time: retrying later may work.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RedisUnavailable(pub String);

/// A Redis URL that does not parse; the URL itself is left out (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a Redis URL ({0}); expected redis://[[user]:password@]host[:port][/db] or redis+unix:///path"
)]
pub(crate) struct InvalidRedisUrl(String);

/// The client for `url`. Every Redis URL the origin and the bridge take goes
/// through here: the configuration checks it before anything listens with the
/// same parser that connects later, so a URL accepted at start never fails in
/// a worker.
pub(crate) fn client(url: &str) -> Result<redis::Client, InvalidRedisUrl> {
    redis::Client::open(url).map_err(|e| {
        // "<what> - <kind>[: <detail>]": the kind's name says nothing to a reader.
        let kind = format!(" - {:?}", e.kind());
        InvalidRedisUrl(e.to_string().replacen(&kind, "", 1))
    })
}

/// Awaits a Redis operation for at most `limit`; every failure is [`RedisUnavailable`].
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, RedisUnavailable> {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(limit, fut).await;
    crate::metrics::worker().broker_command(what, started.elapsed());
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RedisUnavailable(format!("redis {what}: {e}"))),
        Err(_) => Err(RedisUnavailable(format!(
            "redis {what} timed out after {limit:?}"
        ))),
    }
}

/// A lazily opened, auto-reconnecting command connection.
#[derive(Debug)]
pub(crate) struct CommandConnection {
    client: redis::Client,
    slot: tokio::sync::Mutex<Option<ConnectionManager>>,
}

impl CommandConnection {
    /// A connection to `client`'s server, opened on first use.
    pub(crate) fn new(client: redis::Client) -> Self {
        CommandConnection {
            client,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection, opening it if needed (at most [`CONNECT_TIMEOUT`] × 2).
    pub(crate) async fn get(&self) -> Result<ConnectionManager, RedisUnavailable> {
        let mut slot = self.slot.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // The longest any caller waits; each call bounds itself with `within`.
            .set_response_timeout(Some(PUBLISH_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(RECONNECT_DELAY_MAX);
        let conn = within(
            CONNECT_TIMEOUT * 2,
            "connect",
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }
}
