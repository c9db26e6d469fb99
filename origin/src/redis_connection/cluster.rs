//! The Redis Cluster form of a Redis URL: seed nodes, from which the cluster's
//! slot map (and every other node) is learnt, and the clients they make.
//!
//! Two forms: `redis+cluster://[[user]:password@]host:port[,host:port…][/]`,
//! and several plain URLs joined by commas
//! (`redis://host1:7000,redis://host2:7001`), as other clients take them.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::{ConnectionInfo, IntoConnectionInfo, ProtocolVersion};

use super::{CONNECT_TIMEOUT, InvalidRedisUrl, RESPONSE_TIMEOUT, RedisUnavailable, client};

/// The scheme of the cluster form of a Redis URL.
pub(crate) const CLUSTER_SCHEME: &str = "redis+cluster://";
/// The port a seed listens on when its address names none.
const DEFAULT_PORT: u16 = 6379;

/// The seed nodes of a Redis Cluster and what connecting to them takes.
#[derive(Debug)]
pub(crate) struct ClusterSeeds {
    seeds: Vec<ConnectionInfo>,
}

impl ClusterSeeds {
    /// The seeds of `url` when it names a cluster (either form), `None` for
    /// any other URL.
    pub(crate) fn parse(url: &str) -> Option<Result<Self, InvalidRedisUrl>> {
        if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
            return Some(Self::parse_hosts(rest));
        }
        if url.contains(',') && url.starts_with("redis://") {
            return Some(Self::parse_urls(url));
        }
        None
    }

    fn parse_hosts(rest: &str) -> Result<Self, InvalidRedisUrl> {
        let bad = |why: &str| InvalidRedisUrl::new(format!("Redis Cluster URL: {why}"));
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let seeds = hosts
            .split(',')
            .map(|host| {
                if host.is_empty() || host.contains(['/', '?', '#']) {
                    return Err(bad(
                        "an empty or malformed seed address (a cluster has no database to name)",
                    ));
                }
                let has_port = host.rfind(':').is_some_and(|i| !host[i..].contains(']'));
                let host = if has_port {
                    host.to_owned()
                } else {
                    format!("{host}:{DEFAULT_PORT}")
                };
                let url = match userinfo {
                    Some(userinfo) => format!("redis://{userinfo}@{host}"),
                    None => format!("redis://{host}"),
                };
                Self::seed(&url).map_err(|_| bad("a seed address does not parse"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClusterSeeds { seeds })
    }

    fn parse_urls(urls: &str) -> Result<Self, InvalidRedisUrl> {
        let seeds = urls
            .split(',')
            .map(|url| {
                let seed = Self::seed(url)?;
                if seed.redis_settings().db() != 0 {
                    return Err(InvalidRedisUrl::new(
                        "Redis Cluster URL: a cluster has only database 0".into(),
                    ));
                }
                Ok(seed)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClusterSeeds { seeds })
    }

    fn seed(url: &str) -> Result<ConnectionInfo, InvalidRedisUrl> {
        client(url)?
            .get_connection_info()
            .clone()
            .into_connection_info()
            .map_err(|e| InvalidRedisUrl::new(e.to_string()))
    }

    /// A client for commands: each is routed to the primary owning its key's
    /// slot, following `MOVED`/`ASK` and refreshing the slot map by itself.
    pub(crate) fn command_client(&self) -> Result<ClusterClient, RedisUnavailable> {
        self.builder()
            .build()
            .map_err(|e| RedisUnavailable(format!("redis cluster: {e}")))
    }

    /// A client for the publish script: like [`Self::command_client`] but
    /// never sending a command again by itself. After a lost connection the
    /// library would resend it, and a script that had run before the break
    /// would run twice; `MOVED` and the like come back to the caller, who may
    /// send again what Redis refused (the slot map is refreshed meanwhile).
    pub(crate) fn publish_client(&self) -> Result<ClusterClient, RedisUnavailable> {
        self.builder()
            .retries(0)
            .build()
            .map_err(|e| RedisUnavailable(format!("redis cluster: {e}")))
    }

    /// A client for sharded pub/sub: RESP3, every push (messages and
    /// subscription changes, of every node) sent to `pushes`.
    pub(crate) fn pubsub_client(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<ClusterClient, RedisUnavailable> {
        self.builder()
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()
            .map_err(|e| RedisUnavailable(format!("redis cluster: {e}")))
    }

    fn builder(&self) -> ClusterClientBuilder {
        ClusterClientBuilder::new(self.seeds.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            // Each call bounds itself (`within`, at most `PUBLISH_TIMEOUT`);
            // this one must come later: the client sends a timed-out command
            // again, and a publish script resent after a late reply would run
            // twice. A caller that stopped waiting is not retried for.
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(RETRIES)
            .min_retry_wait(RETRY_WAIT.as_millis() as u64)
            .max_retry_wait(RETRY_WAIT.as_millis() as u64 * 4)
    }
}

/// Why a cluster URL cannot be served, found at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClusterCheckError {
    /// No seed answered (each seed and why, without credentials).
    #[error("none of the Redis Cluster's seed nodes answered ({0})")]
    Unreachable(String),
    /// A seed answered but is not a cluster node.
    #[error(
        "{0} is not a Redis Cluster node (cluster support is disabled there); give a single server as redis://host:port"
    )]
    NotACluster(String),
}

impl ClusterSeeds {
    /// Asks the seeds, in turn, whether they are nodes of a cluster: the
    /// first that answers decides. A cluster that is only failing over at
    /// the moment passes (workers follow it); seeds that cannot be reached,
    /// or a node without cluster support, are a configuration to fix.
    pub(crate) async fn check(&self) -> Result<(), ClusterCheckError> {
        let mut unreachable = Vec::with_capacity(self.seeds.len());
        for seed in &self.seeds {
            let addr = seed.addr().to_string();
            let ask = async {
                let client = redis::Client::open(seed.clone())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async::<String>(&mut conn)
                    .await
            };
            match tokio::time::timeout(CHECK_TIMEOUT, ask).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) if e.code().is_some() => {
                    return Err(ClusterCheckError::NotACluster(addr));
                }
                Ok(Err(e)) => unreachable.push(format!("{addr}: {e}")),
                Err(_) => unreachable.push(format!("{addr}: no answer within {CHECK_TIMEOUT:?}")),
            }
        }
        Err(ClusterCheckError::Unreachable(unreachable.join("; ")))
    }
}

/// How long a seed may take to answer the start check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a command is retried (on `MOVED`, `TRYAGAIN`, a lost
/// connection…) before it fails: a failover takes a couple of seconds, longer
/// than the callers wait anyway.
const RETRIES: u32 = 8;
/// The first pause between retries.
const RETRY_WAIT: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(url: &str) -> Vec<String> {
        match ClusterSeeds::parse(url) {
            Some(Ok(s)) => s.seeds.iter().map(|i| i.addr().to_string()).collect(),
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn both_cluster_forms_name_their_seeds() {
        assert_eq!(
            seeds("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2,[::1]:7002/"),
            ["10.0.0.1:7000", "10.0.0.2:6379", "::1:7002"]
        );
        assert_eq!(
            seeds("redis://10.0.0.1:7000,redis://:pw@10.0.0.2:7001"),
            ["10.0.0.1:7000", "10.0.0.2:7001"]
        );
        let Some(Ok(with_password)) = ClusterSeeds::parse("redis+cluster://u:pw@h:1") else {
            panic!("not parsed");
        };
        let settings = with_password.seeds[0].redis_settings();
        assert_eq!(
            (settings.username(), settings.password()),
            (Some("u"), Some("pw"))
        );
    }

    #[test]
    fn other_urls_are_not_clusters_and_bad_ones_are_refused() {
        assert!(ClusterSeeds::parse("redis://127.0.0.1:6379/1").is_none());
        for url in [
            "redis+cluster://",
            "redis+cluster://a:1,,b:2",
            "redis+cluster://a:1/0",
            "redis+cluster://a:notaport",
            "redis://a:1,redis://b:2/3",
            "redis://a:1,nonsense",
        ] {
            assert!(
                matches!(ClusterSeeds::parse(url), Some(Err(_))),
                "{url} was accepted"
            );
        }
    }
}
