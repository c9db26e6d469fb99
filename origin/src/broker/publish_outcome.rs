//! What a trigger's publish on Redis did when it did not plainly succeed, and
//! what the caller is told: `BrokerError::Unavailable` (HTTP `503`) only when
//! no channel has the event, `BrokerError::OutcomeUnknown` (HTTP `504`) when
//! some channel has it, or may have it, or may still get it.
//!
//! Redis runs a script once it has read the command, whether or not anyone is
//! still waiting for its reply. So a call that timed out, or whose connection
//! broke after the command was written, may have published; a caller told
//! "unavailable" would trigger again and deliver the event twice.

use std::time::{Duration, Instant};

use pushwire_shared::keys::KeySpace;
use pushwire_shared::publishing::PublishCall;
use redis::ErrorKind;

use super::BrokerError;
use crate::backoff::Backoff;
use crate::redis_connection::{PUBLISH_TIMEOUT, RedisConn};

/// How long a run refused by a Redis Cluster in motion (`MOVED`, `ASK`,
/// `TRYAGAIN`, `CLUSTERDOWN`, a shard not reachable) is sent again before the
/// refusal is the answer. The publish connection's client does not resend by
/// itself (a resend after a lost reply would run the script twice); these
/// refusals ran nothing, so sending again is safe.
const CLUSTER_REFUSALS_FOR: Duration = Duration::from_secs(2);
/// Pauses between those sends, while the client refreshes its slot map.
const CLUSTER_REFUSAL_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(50), Duration::from_millis(400));

/// Runs `call` (the publish script on one channel) on `conn` and says what it did.
pub(super) async fn run(conn: RedisConn, script: &redis::Script, call: &PublishCall) -> RunOutcome {
    let cluster = matches!(conn, RedisConn::Cluster(_));
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        match run_once(conn.clone(), script, call).await {
            Ok(outcome) => return outcome,
            Err(e)
                if cluster
                    && refused_by_a_cluster_in_motion(&e)
                    && started.elapsed() < CLUSTER_REFUSALS_FOR =>
            {
                tracing::debug!(error = %e, "publish refused by the cluster; sending it again");
                tokio::time::sleep(CLUSTER_REFUSAL_BACKOFF.pause(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
            Err(e) => return classify(&e),
        }
    }
}

/// One send of `call`: its outcome, or the client's error to classify.
async fn run_once(
    mut conn: RedisConn,
    script: &redis::Script,
    call: &PublishCall,
) -> Result<RunOutcome, redis::RedisError> {
    // By digest (EVALSHA): the script is not sent and hashed again for every
    // trigger. After a Redis restart, `invoke_async` loads it again (a
    // `NOSCRIPT` reply ran nothing).
    let mut invocation = script.prepare_invoke();
    invocation.key(&call.keys[..]).arg(&call.args);
    let started = Instant::now();
    let reply =
        tokio::time::timeout(PUBLISH_TIMEOUT, invocation.invoke_async::<usize>(&mut conn)).await;
    crate::metrics::worker().broker_command("publish script", started.elapsed());
    match reply {
        Ok(Ok(published)) => Ok(confirmed(published, call.message_count())),
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(timed_out(PUBLISH_TIMEOUT)),
    }
}

/// A refusal by a Redis Cluster whose slots are moving or failing over: it
/// ran nothing, and the same command may be accepted moments later.
fn refused_by_a_cluster_in_motion(e: &redis::RedisError) -> bool {
    e.is_cluster_error()
        || e.is_connection_refusal()
        || e.kind() == ErrorKind::ClusterConnectionNotFound
}

/// The channel `call` publishes on, as the trigger named it (its history key
/// is built from it).
pub(super) fn channel_of(call: &PublishCall) -> String {
    KeySpace::DEFAULT.parse_history(&call.keys[1]).map_or_else(
        || call.keys[1].clone(),
        |(_, channel)| channel.as_str().to_owned(),
    )
}

/// What one run of the publish script (one channel) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RunOutcome {
    /// Redis ran it and confirmed every message.
    Published,
    /// Redis did not run it: it answered with an error, or the command never
    /// left this process (no connection). The detail says why.
    NotPublished(String),
    /// The command was (or may have been) sent and no usable reply came: Redis
    /// may have run it, or may run it still. The detail says what happened.
    Unknown(String),
}

/// Classifies a failed call of the publish script.
///
/// An error reply means Redis ran nothing: its own refusals (`NOSCRIPT`,
/// `NOREPLICAS`, `READONLY`, `OOM`, `BUSY`, `MOVED`, `CLUSTERDOWN`…) come
/// before the script starts, the script checks its arguments before its first
/// write, and Redis refuses a write for memory or replicas at the script's
/// first write (the `SET` of the epoch), before any event is appended. A
/// refused connection, or a client that could not be set up, sent nothing.
/// Anything else happened with the command possibly on the wire: a connection
/// dropped (Redis may have read the command before), a timeout, a reply that
/// could not be read.
pub(super) fn classify(e: &redis::RedisError) -> RunOutcome {
    let detail = format!("redis publish script: {e}");
    match e.kind() {
        ErrorKind::Server(_) | ErrorKind::Extension => RunOutcome::NotPublished(detail),
        ErrorKind::Io if e.is_connection_refusal() => RunOutcome::NotPublished(detail),
        ErrorKind::AuthenticationFailed
        | ErrorKind::InvalidClientConfig
        | ErrorKind::Client
        | ErrorKind::MasterNameNotFoundBySentinel
        | ErrorKind::NoValidReplicasFoundBySentinel
        | ErrorKind::EmptySentinelList
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::RESP3NotSupported => RunOutcome::NotPublished(detail),
        // Io, Parse, UnexpectedReturnType and kinds added later: the command
        // may have run.
        _ => RunOutcome::Unknown(detail),
    }
}

/// The outcome of a run that got no reply within `limit`.
pub(super) fn timed_out(limit: Duration) -> RunOutcome {
    RunOutcome::Unknown(format!(
        "redis publish script: no reply within {limit:?} (Redis may run it still)"
    ))
}

/// The outcome of a run whose reply confirmed `published` messages of `expected`.
pub(super) fn confirmed(published: usize, expected: usize) -> RunOutcome {
    if published == expected {
        RunOutcome::Published
    } else {
        // The script ran: something was published, just not what was asked.
        RunOutcome::Unknown(format!(
            "the publish script confirmed {published} of {expected} messages"
        ))
    }
}

/// What the caller of a publish is told, from each channel's run (in the
/// order of `channels`, the pub/sub channel each run published on):
///
/// - every run published: `Ok`;
/// - no run published nor may have: `Unavailable` with the first reason,
///   nothing was published anywhere;
/// - anything else (a run of unknown outcome, or some channels published and
///   others not): `OutcomeUnknown`, naming the channels in each state, so the
///   caller can read their histories and publish again only where needed.
pub(super) fn combine(channels: &[&str], outcomes: &[RunOutcome]) -> Result<(), BrokerError> {
    let mut published = Vec::new();
    let mut not_published = Vec::new();
    let mut unknown = Vec::new();
    for (channel, outcome) in channels.iter().zip(outcomes) {
        match outcome {
            RunOutcome::Published => published.push(*channel),
            RunOutcome::NotPublished(why) => not_published.push((*channel, why.as_str())),
            RunOutcome::Unknown(why) => unknown.push((*channel, why.as_str())),
        }
    }
    if not_published.is_empty() && unknown.is_empty() {
        return Ok(());
    }
    if published.is_empty() && unknown.is_empty() {
        return Err(BrokerError::Unavailable(not_published[0].1.to_owned()));
    }
    if channels.len() == 1 {
        return Err(BrokerError::OutcomeUnknown(unknown[0].1.to_owned()));
    }
    let list = |states: &[(&str, &str)]| {
        states
            .iter()
            .map(|(channel, why)| format!("{channel} ({why})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !published.is_empty() {
        parts.push(format!("published on {}", published.join(", ")));
    }
    if !not_published.is_empty() {
        parts.push(format!("not published on {}", list(&not_published)));
    }
    if !unknown.is_empty() {
        parts.push(format!("unknown on {}", list(&unknown)));
    }
    Err(BrokerError::OutcomeUnknown(parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> redis::RedisError {
        std::io::Error::from(kind).into()
    }

    fn reply(text: &str) -> redis::RedisError {
        // Parsed from the wire, as the client sees an error reply.
        match redis::parse_redis_value(format!("-{text}\r\n").as_bytes()) {
            Ok(redis::Value::ServerError(e)) => e.into(),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    fn is_not_published(outcome: RunOutcome) -> bool {
        matches!(outcome, RunOutcome::NotPublished(_))
    }

    #[test]
    fn error_replies_and_refused_connections_published_nothing() {
        for text in [
            "NOSCRIPT No matching script",
            "NOREPLICAS Not enough good replicas to write.",
            "READONLY You can't write against a read only replica.",
            "OOM command not allowed when used memory > 'maxmemory'.",
            "BUSY Redis is busy running a script.",
            "MOVED 3999 127.0.0.1:6381",
            "CLUSTERDOWN The cluster is down",
            "ERR pushwire publish: bad retention, epoch candidate or publish command",
        ] {
            assert!(is_not_published(classify(&reply(text))), "{text}");
        }
        assert!(is_not_published(classify(&io(
            std::io::ErrorKind::ConnectionRefused
        ))));
    }

    #[test]
    fn a_lost_connection_or_a_timeout_leaves_the_outcome_unknown() {
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::TimedOut,
        ] {
            assert!(
                matches!(classify(&io(kind)), RunOutcome::Unknown(_)),
                "{kind:?}"
            );
        }
        assert!(matches!(
            timed_out(Duration::from_secs(10)),
            RunOutcome::Unknown(_)
        ));
    }

    #[test]
    fn only_refusals_of_a_cluster_in_motion_are_sent_again() {
        for text in [
            "MOVED 3999 127.0.0.1:6381",
            "ASK 3999 127.0.0.1:6381",
            "TRYAGAIN x",
            "CLUSTERDOWN x",
        ] {
            assert!(refused_by_a_cluster_in_motion(&reply(text)), "{text}");
        }
        assert!(refused_by_a_cluster_in_motion(&io(
            std::io::ErrorKind::ConnectionRefused
        )));
        for e in [
            reply("NOREPLICAS Not enough good replicas to write."),
            io(std::io::ErrorKind::ConnectionReset),
            io(std::io::ErrorKind::TimedOut),
        ] {
            assert!(!refused_by_a_cluster_in_motion(&e), "{e}");
        }
    }

    #[test]
    fn a_reply_confirming_other_than_asked_is_not_a_refusal() {
        assert_eq!(confirmed(2, 2), RunOutcome::Published);
        assert!(matches!(confirmed(1, 2), RunOutcome::Unknown(_)));
    }

    #[test]
    fn only_a_publish_that_reached_no_channel_is_unavailable() {
        let no = || RunOutcome::NotPublished("NOREPLICAS".into());
        let lost = || RunOutcome::Unknown("no reply".into());
        let yes = || RunOutcome::Published;
        assert!(combine(&["a", "b"], &[yes(), yes()]).is_ok());
        assert!(matches!(
            combine(&["a", "b"], &[no(), no()]),
            Err(BrokerError::Unavailable(why)) if why == "NOREPLICAS"
        ));
        assert!(matches!(
            combine(&["a"], &[lost()]),
            Err(BrokerError::OutcomeUnknown(why)) if why == "no reply"
        ));
        let Err(BrokerError::OutcomeUnknown(partial)) = combine(&["a", "b"], &[yes(), no()]) else {
            panic!("a partial publish is not a refusal");
        };
        assert_eq!(partial, "published on a; not published on b (NOREPLICAS)");
        let Err(BrokerError::OutcomeUnknown(mixed)) =
            combine(&["a", "b", "c"], &[no(), lost(), no()])
        else {
            panic!("a run of unknown outcome is not a refusal");
        };
        assert_eq!(
            mixed,
            "not published on a (NOREPLICAS), c (NOREPLICAS); unknown on b (no reply)"
        );
    }
}
