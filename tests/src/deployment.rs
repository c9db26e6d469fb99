//! A test deployment: a scratch directory, the chosen fan-out (a private Redis,
//! a private Redis Cluster, or the embedded broker) and the origins started on it.

use crate::origin::{Origin, OriginOptions, test_workers};
use crate::process::Scratch;
use crate::redis::RedisServer;
use crate::redis_cluster::RedisCluster;

/// How events cross worker processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// Through a redis-server started for the test.
    Redis,
    /// Through a Redis Cluster (3 primaries, 3 replicas) started for the
    /// test, with sharded pub/sub.
    RedisCluster,
    /// Through the master's embedded broker (no Redis).
    Embedded,
}

impl Fanout {
    /// Whether several origins can share it (Redis can; the embedded broker
    /// lives in one origin's master).
    pub fn spans_origins(self) -> bool {
        self != Fanout::Embedded
    }
}

/// Everything one test run needs; torn down on drop (origins first, then Redis, then the directory).
#[derive(Debug)]
pub struct Deployment {
    /// How events fan out.
    pub fanout: Fanout,
    redis: Option<RedisServer>,
    cluster: Option<RedisCluster>,
    /// Logs and data.
    pub scratch: Scratch,
}

impl Deployment {
    /// Starts the deployment's services (Redis for [`Fanout::Redis`], a
    /// cluster for [`Fanout::RedisCluster`]).
    pub fn start(name: &str, fanout: Fanout) -> Self {
        let scratch = Scratch::new(name);
        let redis = (fanout == Fanout::Redis).then(|| RedisServer::start(&scratch));
        let cluster = (fanout == Fanout::RedisCluster).then(|| RedisCluster::start(&scratch));
        Deployment {
            fanout,
            redis,
            cluster,
            scratch,
        }
    }

    /// Options for an origin of this deployment.
    pub fn options(&self) -> OriginOptions {
        match (&self.redis, &self.cluster) {
            (Some(redis), _) => OriginOptions::redis(&redis.url()),
            (_, Some(cluster)) => OriginOptions::redis(&cluster.seeds()),
            (None, None) => OriginOptions::embedded(),
        }
    }

    /// Starts an origin with [`Deployment::options`].
    pub fn origin(&self, name: &str) -> Origin {
        Origin::start(&self.scratch, name, self.options())
    }

    /// Two origins (`origin-a`, `origin-b`) where the fan-out spans origins;
    /// otherwise one, which [`OriginPair::b`] names again (its workers share
    /// the embedded broker).
    pub fn origin_pair(&self) -> OriginPair {
        OriginPair {
            a: self.origin("origin-a"),
            b: self.fanout.spans_origins().then(|| self.origin("origin-b")),
        }
    }
}

/// What [`Deployment::origin_pair`] started.
#[derive(Debug)]
pub struct OriginPair {
    a: Origin,
    b: Option<Origin>,
}

impl OriginPair {
    /// The first origin.
    pub fn a(&self) -> &Origin {
        &self.a
    }

    /// The second origin, or the first again when the fan-out spans no origins.
    pub fn b(&self) -> &Origin {
        self.b.as_ref().unwrap_or(&self.a)
    }

    /// Whether [`OriginPair::b`] is [`OriginPair::a`] again.
    pub fn is_one_origin(&self) -> bool {
        self.b.is_none()
    }
}

/// Runs `test` with Redis fan-out, with a Redis Cluster's (in the pass with
/// several workers: the suite runs twice, and once is enough for a cluster
/// that takes seconds to start) and with the embedded broker.
pub fn each_fanout(name: &str, test: impl Fn(&Deployment)) {
    run_each(name, &fanouts(), test);
}

/// Runs `test` with each fan-out several origins can share: Redis, and a
/// Redis Cluster (in the pass with several workers, as [`each_fanout`]).
pub fn each_shared_broker(name: &str, test: impl Fn(&Deployment)) {
    let shared: Vec<Fanout> = fanouts()
        .into_iter()
        .filter(|f| f.spans_origins())
        .collect();
    run_each(name, &shared, test);
}

fn fanouts() -> Vec<Fanout> {
    let cluster = (test_workers() > 1).then_some(Fanout::RedisCluster);
    [Some(Fanout::Redis), cluster, Some(Fanout::Embedded)]
        .into_iter()
        .flatten()
        .collect()
}

fn run_each(name: &str, fanouts: &[Fanout], test: impl Fn(&Deployment)) {
    for &fanout in fanouts {
        eprintln!("=== {name}, {fanout:?} fan-out");
        let deployment = Deployment::start(&format!("{name}-{fanout:?}"), fanout);
        test(&deployment);
    }
}
