//! A test deployment: a scratch directory, the chosen fan-out (a private Redis,
//! or the embedded broker) and the origins started on it.

use crate::origin::{Origin, OriginOptions};
use crate::process::Scratch;
use crate::redis::RedisServer;

/// How events cross worker processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// Through a redis-server started for the test.
    Redis,
    /// Through the master's embedded broker (no Redis).
    Embedded,
}

/// Everything one test run needs; torn down on drop (origins first, then Redis, then the directory).
#[derive(Debug)]
pub struct Deployment {
    /// How events fan out.
    pub fanout: Fanout,
    redis: Option<RedisServer>,
    /// Logs and data.
    pub scratch: Scratch,
}

impl Deployment {
    /// Starts the deployment's services (Redis for [`Fanout::Redis`]).
    pub fn start(name: &str, fanout: Fanout) -> Self {
        let scratch = Scratch::new(name);
        let redis = (fanout == Fanout::Redis).then(|| RedisServer::start(&scratch));
        Deployment {
            fanout,
            redis,
            scratch,
        }
    }

    /// Options for an origin of this deployment.
    pub fn options(&self) -> OriginOptions {
        match &self.redis {
            Some(redis) => OriginOptions::redis(&redis.url()),
            None => OriginOptions::embedded(),
        }
    }

    /// Starts an origin with [`Deployment::options`].
    pub fn origin(&self, name: &str) -> Origin {
        Origin::start(&self.scratch, name, self.options())
    }
}

/// Runs `test` once with Redis fan-out and once with the embedded broker.
pub fn each_fanout(name: &str, test: impl Fn(&Deployment)) {
    for fanout in [Fanout::Redis, Fanout::Embedded] {
        eprintln!("=== {name}, {fanout:?} fan-out");
        let deployment = Deployment::start(&format!("{name}-{fanout:?}"), fanout);
        test(&deployment);
    }
}
