//! `CommandConnection`: a Redis connection for commands (not pub/sub), opened on
//! first use, re-opened by itself after failures, every wait bounded; to a
//! Redis Cluster, one that routes each command to its key's shard.
//!
//! Shared by the Redis broker (PUBLISH) and the REST bridge (any allowed command).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;

mod cluster;
mod target;

pub(crate) use cluster::ClusterSeeds;
use target::Sentinels;
use target::check_primary;
pub(crate) use target::{PrimaryAddr, RedisTarget};

/// How long connecting may take before the attempt counts as failed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command or pipeline may take before it counts as failed.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a trigger waits for the publish script's reply before answering
/// `504` (outcome unknown).
///
/// Longer than [`COMMAND_TIMEOUT`] because the outcome of a timed-out publish is
/// unknown: Redis may have run the script, or run it still, so the caller must
/// read the history before publishing again. A slow reply is worth waiting
/// for: a worker saturated by fan-out was seen reading the reply after more
/// than 2 s. An unreachable Redis still fails at once (`503`).
pub(crate) const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// The client library's own bound on a reply: later than every caller's, so
/// it never fires first. The cluster client sends a timed-out command again,
/// which for a publish script would run it twice; it does not for a caller
/// that stopped waiting.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(PUBLISH_TIMEOUT.as_secs() + 2);
/// The longest pause between the connection manager's reconnection attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);
/// How often a connection to a Sentinel-named primary asks the sentinels again
/// whether it still is the primary: the bound on how long it keeps talking to a
/// node that failed over (its writes refused or lost meanwhile, answered `503`).
pub(crate) const SENTINEL_RECHECK: Duration = Duration::from_secs(1);

/// Redis cannot be reached or did not answer in time: retrying later may work.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RedisUnavailable(pub String);

/// A Redis URL that does not parse; the URL itself is left out (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a Redis URL ({0}); expected redis://[[user]:password@]host[:port][/db], redis+unix:///path, redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/master_name[/db] or redis+cluster://[[user]:password@]host[:port][,host[:port]…]"
)]
pub(crate) struct InvalidRedisUrl(String);

impl InvalidRedisUrl {
    /// Why a URL was refused, without the URL.
    pub(crate) fn new(why: String) -> Self {
        InvalidRedisUrl(why)
    }
}

/// The client for `url`. Every Redis URL the origin and the bridge take goes
/// through here (by way of [`RedisTarget::parse`]): the configuration checks it
/// before anything listens with the same parser that connects later, so a URL
/// accepted at start never fails in a worker.
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
    what: &'static str,
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

/// A lazily opened, auto-reconnecting command connection. Behind Sentinel it
/// follows the primary: a background task asks the sentinels every
/// [`SENTINEL_RECHECK`] and drops the connection when they name another node,
/// so the next command opens one to the new primary (once it says it is one).
/// Commands never wait for the sentinels while a connection is open.
#[derive(Debug)]
pub(crate) struct CommandConnection {
    target: RedisTarget,
    slot: Arc<tokio::sync::Mutex<Option<Current>>>,
    /// To a Redis Cluster, the connection of the publish script
    /// ([`CommandConnection::get_for_publish`]), opened on first use.
    publish_slot: tokio::sync::Mutex<Option<RedisConn>>,
}

/// An open command connection: to one server, or to a cluster (which routes
/// each command by its key's slot; a pipeline must then stay in one slot).
#[derive(Clone)]
pub(crate) enum RedisConn {
    /// One server (or the Sentinel-named primary).
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConn::Single(_) => "RedisConn::Single",
            RedisConn::Cluster(_) => "RedisConn::Cluster",
        })
    }
}

impl redis::aio::ConnectionLike for RedisConn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

#[derive(Debug)]
struct Current {
    conn: RedisConn,
    /// The primary it was opened to, when the sentinels named it.
    addr: Option<PrimaryAddr>,
}

impl CommandConnection {
    /// A connection to `target`'s primary, opened on first use. Behind
    /// Sentinel, starts the task that follows the primary (it ends with the
    /// connection).
    pub(crate) fn new(target: RedisTarget) -> Self {
        let slot = Arc::new(tokio::sync::Mutex::new(None));
        if let RedisTarget::Sentinel(sentinels) = &target {
            tokio::spawn(follow_primary(sentinels.clone(), Arc::downgrade(&slot)));
        }
        CommandConnection {
            target,
            slot,
            publish_slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection, opening it if needed (at most [`CONNECT_TIMEOUT`] × 2,
    /// plus the sentinels' answer behind Sentinel).
    pub(crate) async fn get(&self) -> Result<RedisConn, RedisUnavailable> {
        let mut slot = self.slot.lock().await;
        if let Some(current) = slot.as_ref() {
            return Ok(current.conn.clone());
        }
        let current = match &self.target {
            RedisTarget::Server(client) => Current {
                conn: RedisConn::Single(open(client.clone()).await?),
                addr: None,
            },
            RedisTarget::Cluster(seeds) => Current {
                conn: RedisConn::Cluster(
                    within(
                        CONNECT_TIMEOUT * 2,
                        "connect",
                        seeds.command_client()?.get_async_connection(),
                    )
                    .await?,
                ),
                addr: None,
            },
            RedisTarget::Sentinel(sentinels) => {
                let addr = sentinels.primary_addr().await?;
                let mut conn = open(sentinels.client_for(&addr)?).await?;
                check_primary(&mut conn, &addr).await?;
                tracing::info!(primary = %format_args!("{}:{}", addr.0, addr.1), "connected to the primary the sentinels name");
                Current {
                    conn: RedisConn::Single(conn),
                    addr: Some(addr),
                }
            }
        };
        let conn = current.conn.clone();
        *slot = Some(current);
        Ok(conn)
    }
}

impl CommandConnection {
    /// The connection to send the publish script on: [`CommandConnection::get`]'s,
    /// except to a Redis Cluster, where it is one whose client never sends a
    /// command again by itself (`ClusterSeeds::publish_client`): a resend after
    /// a lost reply would run the script twice.
    pub(crate) async fn get_for_publish(&self) -> Result<RedisConn, RedisUnavailable> {
        let RedisTarget::Cluster(seeds) = &self.target else {
            return self.get().await;
        };
        let mut slot = self.publish_slot.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = within(
            CONNECT_TIMEOUT * 2,
            "connect",
            seeds.publish_client()?.get_async_connection(),
        )
        .await?;
        let conn = RedisConn::Cluster(conn);
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

/// Every [`SENTINEL_RECHECK`], asks the sentinels for the primary and drops the
/// connection in `slot` when it was opened to another node. A sentinel that does
/// not answer is no reason to drop a connection that may still work. Ends when
/// the connection is dropped.
async fn follow_primary(
    sentinels: Arc<Sentinels>,
    slot: std::sync::Weak<tokio::sync::Mutex<Option<Current>>>,
) {
    let mut recheck = tokio::time::interval(SENTINEL_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        recheck.tick().await;
        let Some(slot) = slot.upgrade() else { return };
        // Read without holding the lock across the sentinels' answer.
        let Some(opened_to) = slot.lock().await.as_ref().and_then(|c| c.addr.clone()) else {
            continue;
        };
        match sentinels.primary_addr().await {
            Ok(addr) if addr != opened_to => {
                let mut current = slot.lock().await;
                if current.as_ref().and_then(|c| c.addr.as_ref()) == Some(&opened_to) {
                    // Failed over: the next command opens a connection to the new primary.
                    *current = None;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot ask the sentinels; keeping the connection")
            }
        }
    }
}

async fn open(client: redis::Client) -> Result<ConnectionManager, RedisUnavailable> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        // Each call bounds itself with `within`; see `RESPONSE_TIMEOUT`.
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(RECONNECT_DELAY_MAX);
    within(
        CONNECT_TIMEOUT * 2,
        "connect",
        ConnectionManager::new_with_config(client, config),
    )
    .await
}
