//! `RedisTarget`: where the Redis primary is. Either one server named by its URL,
//! the primary a set of Sentinels names for a master name, looked up again at
//! every (re)connection so a failover is followed without a restart, or a
//! Redis Cluster, whose primaries are learnt from its seed nodes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::select_ok;
use pushwire_shared::publishing::PubSubMode;
use redis::{ConnectionAddr, ConnectionInfo};

use super::cluster::{ClusterCheckError, ClusterSeeds};
use super::{CONNECT_TIMEOUT, InvalidRedisUrl, RedisUnavailable, client};

/// The scheme of the Sentinel form of a Redis URL.
const SENTINEL_SCHEME: &str = "redis+sentinel://";
/// The port a sentinel listens on when its address names none.
const SENTINEL_PORT: u16 = 26379;
/// How long asking the sentinels, or checking a node's role, may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// The Redis server the broker, the directory and the bridge talk to.
#[derive(Debug, Clone)]
pub(crate) enum RedisTarget {
    /// One server, always the same address.
    Server(redis::Client),
    /// The current primary of a Sentinel-managed master.
    Sentinel(Arc<Sentinels>),
    /// A Redis Cluster: each key's primary, by its slot.
    Cluster(Arc<ClusterSeeds>),
}

/// The sentinels of one master and what connecting to its nodes takes.
#[derive(Debug)]
pub(crate) struct Sentinels {
    sentinels: Vec<redis::Client>,
    master: String,
    /// Credentials and database of the data nodes; the address is the primary's.
    node: ConnectionInfo,
}

/// A primary's address as the sentinels report it.
pub(crate) type PrimaryAddr = (String, u16);

impl RedisTarget {
    /// Parses `url`: a Redis URL the redis crate takes, or
    /// `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/master_name[/db]`
    /// (the credentials and database are the data nodes'; sentinels need none).
    pub(crate) fn parse(url: &str) -> Result<Self, InvalidRedisUrl> {
        if let Some(seeds) = ClusterSeeds::parse(url) {
            return seeds.map(|s| RedisTarget::Cluster(Arc::new(s)));
        }
        match url.strip_prefix(SENTINEL_SCHEME) {
            None => client(url).map(RedisTarget::Server),
            Some(rest) => Sentinels::parse(rest).map(|s| RedisTarget::Sentinel(Arc::new(s))),
        }
    }

    /// A client for the primary, checked to be one (`ROLE`) when the sentinels
    /// named it (right after a failover a sentinel may still name a replica),
    /// and then its address.
    pub(crate) async fn primary(
        &self,
    ) -> Result<(redis::Client, Option<PrimaryAddr>), RedisUnavailable> {
        match self {
            RedisTarget::Server(client) => Ok((client.clone(), None)),
            RedisTarget::Cluster(_) => Err(RedisUnavailable(
                "a Redis Cluster has no one primary".into(),
            )),
            RedisTarget::Sentinel(sentinels) => {
                let addr = sentinels.primary_addr().await?;
                let client = sentinels.client_for(&addr)?;
                let mut conn = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    client.get_multiplexed_async_connection(),
                )
                .await
                .map_err(|_| unavailable(&addr, "connect timed out"))?
                .map_err(|e| unavailable(&addr, e))?;
                check_primary(&mut conn, &addr).await?;
                Ok((client, Some(addr)))
            }
        }
    }
}

impl RedisTarget {
    /// The checks a target gets before the origin or the bridge listens: a
    /// single server or a Sentinel-managed primary may come up later (until
    /// then the origin answers `503`), but a cluster URL whose seeds do not
    /// answer, or that names a node without cluster support, is a
    /// configuration to fix.
    pub(crate) async fn check_at_start(&self) -> Result<(), ClusterCheckError> {
        match self {
            RedisTarget::Server(_) | RedisTarget::Sentinel(_) => Ok(()),
            RedisTarget::Cluster(seeds) => seeds.check().await,
        }
    }

    /// How events travel between publishers and subscribers on this target.
    pub(crate) fn pubsub_mode(&self) -> PubSubMode {
        match self {
            RedisTarget::Server(_) | RedisTarget::Sentinel(_) => PubSubMode::Classic,
            RedisTarget::Cluster(_) => PubSubMode::Sharded,
        }
    }

    /// False only when the sentinels name a primary other than `addr` (the one
    /// a connection was opened to): a sentinel that does not answer is no
    /// reason to drop a connection that may still work.
    pub(crate) async fn still_primary(&self, addr: &PrimaryAddr) -> bool {
        match self {
            RedisTarget::Server(_) | RedisTarget::Cluster(_) => true,
            RedisTarget::Sentinel(sentinels) => match sentinels.primary_addr().await {
                Ok(named) => named == *addr,
                Err(_) => true,
            },
        }
    }
}

impl Sentinels {
    fn parse(rest: &str) -> Result<Self, InvalidRedisUrl> {
        let bad = |why: &str| InvalidRedisUrl::new(format!("Sentinel URL: {why}"));
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no master name after the sentinels"))?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (master, db) = match path.split_once('/') {
            Some((master, db)) => (master, Some(db)),
            None => (path, None),
        };
        if master.is_empty() || master.contains(['?', '#']) {
            return Err(bad("no master name after the sentinels"));
        }
        let db = match db {
            None | Some("") => 0,
            Some(db) => db
                .parse::<i64>()
                .map_err(|_| bad("the database after the master name is not a number"))?,
        };
        let sentinels = hosts
            .split(',')
            .map(|host| {
                if host.is_empty() || host.contains(['/', '?', '#']) {
                    return Err(bad("an empty or malformed sentinel address"));
                }
                // `[::1]:26379`, `host:26379` or `host`.
                let has_port = match host.rfind(':') {
                    Some(i) => !host[i..].contains(']'),
                    None => false,
                };
                let addr = if has_port {
                    format!("redis://{host}")
                } else {
                    format!("redis://{host}:{SENTINEL_PORT}")
                };
                client(&addr).map_err(|_| bad("a sentinel address does not parse"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let node = match userinfo {
            Some(userinfo) => format!("redis://{userinfo}@127.0.0.1/{db}"),
            None => format!("redis://127.0.0.1/{db}"),
        };
        let node = client(&node)
            .map_err(|_| bad("the credentials do not parse"))?
            .get_connection_info()
            .clone();
        Ok(Sentinels {
            sentinels,
            master: master.to_owned(),
            node,
        })
    }

    /// The primary's address, from the first sentinel that knows it.
    pub(crate) async fn primary_addr(&self) -> Result<PrimaryAddr, RedisUnavailable> {
        let asks = self.sentinels.iter().map(|sentinel| {
            Box::pin(async move {
                let lookup = async {
                    let mut conn = sentinel.get_multiplexed_async_connection().await?;
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(&self.master)
                        .query_async::<Option<(String, u16)>>(&mut conn)
                        .await
                };
                match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                    Ok(Ok(Some(addr))) => Ok(addr),
                    Ok(Ok(None)) => Err(format!("knows no master named {}", self.master)),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            })
        });
        select_ok(asks)
            .await
            .map(|(addr, _)| addr)
            .map_err(|last| RedisUnavailable(format!("no sentinel named the primary: {last}")))
    }

    /// A client for the node at `addr`, with the URL's credentials and database.
    pub(crate) fn client_for(&self, addr: &PrimaryAddr) -> Result<redis::Client, RedisUnavailable> {
        let info = self
            .node
            .clone()
            .set_addr(ConnectionAddr::Tcp(addr.0.clone(), addr.1));
        redis::Client::open(info).map_err(|e| unavailable(addr, e))
    }
}

/// Fails unless the node behind `conn` is a primary: a replica refuses writes
/// (`READONLY`), so it counts as no primary at all.
pub(crate) async fn check_primary(
    conn: &mut impl redis::aio::ConnectionLike,
    addr: &PrimaryAddr,
) -> Result<(), RedisUnavailable> {
    let role = tokio::time::timeout(
        LOOKUP_TIMEOUT,
        redis::cmd("ROLE").query_async::<redis::Value>(conn),
    )
    .await
    .map_err(|_| unavailable(addr, "ROLE timed out"))?
    .map_err(|e| unavailable(addr, e))?;
    let is_primary = matches!(
        &role,
        redis::Value::Array(items)
            if matches!(items.first(), Some(redis::Value::BulkString(b)) if b == b"master")
    );
    if is_primary {
        Ok(())
    } else {
        Err(unavailable(addr, "not a primary (yet)"))
    }
}

fn unavailable(addr: &PrimaryAddr, e: impl std::fmt::Display) -> RedisUnavailable {
    RedisUnavailable(format!("redis primary {}:{}: {e}", addr.0, addr.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinels(url: &str) -> Arc<Sentinels> {
        match RedisTarget::parse(url) {
            Ok(RedisTarget::Sentinel(s)) => s,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn the_sentinel_form_names_sentinels_master_and_database() {
        let s = sentinels("redis+sentinel://:pw@10.0.0.1:26380,10.0.0.2,[::1]:5000/mymaster/3");
        assert_eq!(s.master, "mymaster");
        let addrs: Vec<_> = s
            .sentinels
            .iter()
            .map(|c| c.get_connection_info().addr().to_string())
            .collect();
        assert_eq!(addrs, ["10.0.0.1:26380", "10.0.0.2:26379", "::1:5000"]);
        assert_eq!(s.node.redis_settings().password(), Some("pw"));
        assert_eq!(s.node.redis_settings().db(), 3);
        let primary = s.client_for(&("10.0.0.9".into(), 6380)).unwrap();
        assert_eq!(
            primary.get_connection_info().addr().to_string(),
            "10.0.0.9:6380"
        );
        assert_eq!(primary.get_connection_info().redis_settings().db(), 3);
    }

    #[test]
    fn a_plain_url_is_one_server() {
        assert!(matches!(
            RedisTarget::parse("redis://127.0.0.1:6379/1"),
            Ok(RedisTarget::Server(_))
        ));
    }

    #[test]
    fn a_malformed_sentinel_url_is_refused() {
        for url in [
            "redis+sentinel://127.0.0.1:26379",
            "redis+sentinel://127.0.0.1:26379/",
            "redis+sentinel://127.0.0.1:26379,/m",
            "redis+sentinel://127.0.0.1:notaport/m",
            "redis+sentinel://127.0.0.1/m/x",
        ] {
            let err = RedisTarget::parse(url).unwrap_err().to_string();
            assert!(
                err.starts_with("not a Redis URL (Sentinel URL: "),
                "{url}: {err}"
            );
        }
    }
}
