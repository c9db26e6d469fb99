//! The bridge's check of a publish command: pushwire's publish script, with
//! exactly the keys and arguments [`publish_commands`](crate::publishing::publish_commands) builds (one channel's
//! epoch key, history stream and pub/sub channel, retention within bounds, a
//! valid epoch candidate), so a token holder cannot run it on other keys or
//! with arguments that break the channels it touches.

use crate::history::IDLE_KEY_TTL_SECS;
use crate::keys::KeySpace;
use crate::publishing::{PubSubMode, names_publish_script};
use crate::settings::HISTORY_MAX_EVENTS_BOUNDS;

/// How far ahead of the checker's clock a publish's min id may be: the edge's
/// clock may run a little ahead of the bridge's, but a min id further in the
/// future would trim away the history it is meant to keep.
pub const MAX_MIN_ID_AHEAD_MS: u64 = 10_000;

/// The longest epoch candidate a publish may carry.
pub const MAX_EPOCH_CANDIDATE_LEN: usize = 64;

/// Why a command is not a [`publish_commands`](crate::publishing::publish_commands) pushwire would send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishCommandError {
    /// Not `EVAL` of [`PUBLISH_SCRIPT`](crate::publishing::PUBLISH_SCRIPT) or `EVALSHA` of its digest.
    #[error("a script other than pushwire's publish script")]
    OtherScript,
    /// The key count is not a number or does not match the arguments.
    #[error("argument counts that do not match the publish script's")]
    Shape,
    /// The first key is not a pushwire epoch key.
    #[error("a first key other than a pushwire epoch key")]
    EpochKey,
    /// The second key is not the history stream of the epoch key's channel.
    #[error("a key that is not the epoch's history stream")]
    HistoryKey,
    /// The pub/sub channel is not the one of the keys' app and channel.
    #[error("a channel that is not its history key's pub/sub channel")]
    Channel,
    /// The publishing command is neither `PUBLISH` nor `SPUBLISH`.
    #[error("a publishing command other than PUBLISH or SPUBLISH")]
    PubSubCommand,
    /// Max events is not a number within the history bounds.
    #[error("max events outside the history bounds")]
    MaxEvents,
    /// Min id is not a number, or lies too far in the future.
    #[error("a min id that is not a time up to now")]
    MinId,
    /// The idle ttl is not pushwire's.
    #[error("an idle ttl other than pushwire's")]
    Ttl,
    /// The epoch candidate is not 1 to 64 of `[A-Za-z0-9_-]`.
    #[error("an epoch candidate that is not 1 to 64 of [A-Za-z0-9_-]")]
    EpochCandidate,
    /// An envelope is not a JSON object with at least one member.
    #[error("an envelope that is not a non-empty JSON object")]
    Envelope,
}

/// Whether `candidate` may become the history epoch: 1 to
/// [`MAX_EPOCH_CANDIDATE_LEN`] of `[A-Za-z0-9_-]`, so a position (`epoch:id`)
/// stays unambiguous and its JSON needs no escaping.
///
/// ```
/// use pushwire_shared::publish_check::is_epoch_candidate;
/// assert!(is_epoch_candidate("k3x-9_Q"));
/// assert!(!is_epoch_candidate("x\"}"));
/// assert!(!is_epoch_candidate(""));
/// ```
pub fn is_epoch_candidate(candidate: &str) -> bool {
    (1..=MAX_EPOCH_CANDIDATE_LEN).contains(&candidate.len())
        && candidate
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks that a command is one of the [`publish_commands`](crate::publishing::publish_commands) pushwire would send: `EVAL` of
/// [`PUBLISH_SCRIPT`](crate::publishing::PUBLISH_SCRIPT) or `EVALSHA` of its digest; a pushwire epoch key, then
/// the history stream of the same app and channel; max events within
/// [`HISTORY_MAX_EVENTS_BOUNDS`]; pushwire's idle ttl; a valid epoch candidate
/// ([`is_epoch_candidate`]); `PUBLISH` or `SPUBLISH`; the channel's pub/sub
/// channel; at least one envelope, each a non-empty JSON object. With
/// `now_ms`, the min id may be at most [`MAX_MIN_ID_AHEAD_MS`] ahead of it. The
/// bridge runs no other script.
///
/// ```
/// use pushwire_shared::history::{HistoryPolicy, PublishMessage};
/// use pushwire_shared::publish_check::{check_publish_command, PublishCommandError};
/// use pushwire_shared::publishing::{publish_commands, ScriptRef};
/// use pushwire_shared::Envelope;
/// let raw = r#"{"v":1,"id":"e","app":"7","channel":"c","event":"x","data":"","ts":1}"#;
/// let msg = PublishMessage::of(&Envelope::decode(raw.as_bytes()).unwrap());
/// let cmd = publish_commands(ScriptRef::Digest, &HistoryPolicy::default(), 400_000, "e", &[msg]).remove(0);
/// assert_eq!(check_publish_command(&cmd, Some(400_000)), Ok(()));
/// assert_eq!(check_publish_command(&cmd, Some(0)), Err(PublishCommandError::MinId));
/// ```
pub fn check_publish_command(
    cmd: &[String],
    now_ms: Option<u64>,
) -> Result<(), PublishCommandError> {
    use PublishCommandError as E;
    let [_, _, numkeys, rest @ ..] = cmd else {
        return Err(E::Shape);
    };
    if !names_publish_script(cmd) {
        return Err(E::OtherScript);
    }
    let [
        epoch_key,
        history_key,
        max_events,
        min_id,
        ttl,
        epoch,
        command,
        channel,
        envelopes @ ..,
    ] = rest
    else {
        return Err(E::Shape);
    };
    if numkeys != "2" || envelopes.is_empty() {
        return Err(E::Shape);
    }
    let keys = KeySpace::DEFAULT;
    let owner = keys.parse_epoch(epoch_key).ok_or(E::EpochKey)?;
    if keys.parse_history(history_key).as_ref() != Some(&owner) {
        return Err(E::HistoryKey);
    }
    let number = |text: &str| text.parse::<u64>().ok().filter(|n| n.to_string() == text);
    if number(max_events).is_none_or(|n| HISTORY_MAX_EVENTS_BOUNDS.check(n).is_err()) {
        return Err(E::MaxEvents);
    }
    let latest_min_id = now_ms.map_or(u64::MAX, |now| now.saturating_add(MAX_MIN_ID_AHEAD_MS));
    if number(min_id).is_none_or(|n| n > latest_min_id) {
        return Err(E::MinId);
    }
    if number(ttl) != Some(IDLE_KEY_TTL_SECS * 1000) {
        return Err(E::Ttl);
    }
    if !is_epoch_candidate(epoch) {
        return Err(E::EpochCandidate);
    }
    let modes = [PubSubMode::Classic, PubSubMode::Sharded];
    if !modes.iter().any(|m| m.publish_command() == command) {
        return Err(E::PubSubCommand);
    }
    if keys.parse_channel(channel) != Some(owner) {
        return Err(E::Channel);
    }
    // The script splices the position in before the closing brace.
    for envelope in envelopes {
        if !(envelope.len() > 2 && envelope.starts_with('{') && envelope.ends_with('}')) {
            return Err(E::Envelope);
        }
    }
    Ok(())
}

/// Whether a command is a [`publish_commands`](crate::publishing::publish_commands) pushwire would send, by every
/// check of [`check_publish_command`] but the clock's.
///
/// ```
/// use pushwire_shared::history::{HistoryPolicy, PublishMessage};
/// use pushwire_shared::publish_check::is_publish_command;
/// use pushwire_shared::publishing::{publish_commands, ScriptRef};
/// use pushwire_shared::Envelope;
/// let raw = r#"{"v":1,"id":"e","app":"7","channel":"c","event":"x","data":"","ts":1}"#;
/// let msg = PublishMessage::of(&Envelope::decode(raw.as_bytes()).unwrap());
/// for script in [ScriptRef::Digest, ScriptRef::Text] {
///     let cmds = publish_commands(script, &HistoryPolicy::default(), 1, "e", &[msg.clone()]);
///     assert!(is_publish_command(&cmds[0]));
/// }
/// assert!(!is_publish_command(&["EVAL".into(), "return 1".into(), "0".into()]));
/// ```
pub fn is_publish_command(cmd: &[String]) -> bool {
    check_publish_command(cmd, None).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelName;
    use crate::history::{HistoryPolicy, PublishMessage};
    use crate::publishing::{
        PUBLISH_SCRIPT_SHA1, ScriptRef, publish_commands, with_pubsub_mode, with_script_text,
    };

    fn msg(channel: &str) -> PublishMessage {
        let channel = ChannelName::new(channel).unwrap();
        let keys = KeySpace::DEFAULT;
        PublishMessage {
            channel: keys.channel("1", &channel),
            history_key: keys.history("1", &channel),
            epoch_key: keys.epoch("1", &channel),
            envelope: r#"{"event":"e"}"#.into(),
        }
    }

    /// Index of `ARGV[n]` (1-based) in a publish command (two keys).
    fn argv(n: usize) -> usize {
        3 + 2 + n - 1
    }

    #[test]
    fn pushwire_s_own_publishes_pass_every_check() {
        let now = 1_700_000_000_000;
        for script in [ScriptRef::Digest, ScriptRef::Text] {
            let cmds = publish_commands(
                script,
                &HistoryPolicy::default(),
                now,
                "k3x-9_Q",
                &[msg("a"), msg("private-b"), msg("a")],
            );
            assert_eq!(cmds.len(), 2);
            for cmd in cmds {
                assert_eq!(check_publish_command(&cmd, Some(now)), Ok(()));
                let sharded = with_pubsub_mode(cmd, PubSubMode::Sharded);
                assert_eq!(check_publish_command(&sharded, Some(now)), Ok(()));
            }
        }
    }

    #[test]
    fn every_argument_an_attacker_could_bend_is_refused() {
        use PublishCommandError as E;
        let now = 1_700_000_000_000;
        let good = publish_commands(
            ScriptRef::Digest,
            &HistoryPolicy::default(),
            now,
            "e1",
            &[msg("a")],
        )
        .remove(0);
        let bent = |index: usize, value: &str| {
            let mut cmd = good.clone();
            cmd[index] = value.into();
            check_publish_command(&cmd, Some(now))
        };
        let keys = KeySpace::DEFAULT;
        let b = ChannelName::new("b").unwrap();
        let other_app_channel = keys.channel("2", &ChannelName::new("a").unwrap());
        let cases = [
            // A non-pushwire stream: XTRIM/PEXPIRE would wipe it.
            (4, "victim:orders", E::HistoryKey),
            (4, "pushwire:v2:{1:a}:presence", E::HistoryKey),
            (4, "pushwire:v2:{1:a b}:hist", E::HistoryKey),
            // Another channel's history: its epoch would not be the one read.
            (4, &keys.history("1", &b), E::HistoryKey),
            // PUBLISH to any channel, or another app's.
            (argv(6), "victim:orders", E::Channel),
            (argv(6), &other_app_channel, E::Channel),
            (argv(6), &keys.channel("1", &b), E::Channel),
            (argv(5), "DEL", E::PubSubCommand),
            (argv(5), "publish", E::PubSubCommand),
            (argv(1), "0", E::MaxEvents),
            (argv(1), "10000", E::MaxEvents),
            (argv(1), "1e9", E::MaxEvents),
            (argv(1), "+5", E::MaxEvents),
            (argv(2), "99999999999999", E::MinId),
            (argv(2), "-", E::MinId),
            (argv(3), "1", E::Ttl),
            (argv(3), "999999999999999", E::Ttl),
            (argv(4), "x\"}", E::EpochCandidate),
            (argv(4), "", E::EpochCandidate),
            (argv(4), &"e".repeat(65), E::EpochCandidate),
            (argv(7), "", E::Envelope),
            (argv(7), "{}", E::Envelope),
            (argv(7), "not json", E::Envelope),
            (3, "victim:epoch", E::EpochKey),
            (3, "pushwire:v1:epoch", E::EpochKey),
            (2, "1", E::Shape),
            (2, "3", E::Shape),
        ];
        for (index, value, expected) in cases {
            assert_eq!(bent(index, value), Err(expected), "{index} = {value}");
        }
        assert_eq!(
            bent(argv(2), &(now + MAX_MIN_ID_AHEAD_MS).to_string()),
            Ok(())
        );
        assert_eq!(bent(argv(4), &"e".repeat(64)), Ok(()));
    }

    #[test]
    fn the_publish_command_is_recognised_only_whole() {
        let cmd = publish_commands(
            ScriptRef::Text,
            &HistoryPolicy::default(),
            0,
            "e",
            &[msg("a"), msg("a")],
        )
        .remove(0);
        assert_eq!(cmd.len(), 3 + 2 + 6 + 2);
        assert!(is_publish_command(&cmd));
        let mut other_digest = with_script_text(cmd.clone());
        other_digest[0] = "EVALSHA".into();
        other_digest[1] = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db".into();
        assert!(!is_publish_command(&other_digest));
        let mut upper_digest = cmd.clone();
        upper_digest[0] = "evalsha".into();
        upper_digest[1] = PUBLISH_SCRIPT_SHA1.to_ascii_uppercase();
        assert!(is_publish_command(&upper_digest));
        assert_eq!(with_script_text(upper_digest), cmd);
        let mut no_envelope = cmd.clone();
        no_envelope.truncate(cmd.len() - 2);
        assert!(!is_publish_command(&no_envelope));
        let mut other_key = cmd.clone();
        other_key[3] = "somewhere:else".into();
        assert!(!is_publish_command(&other_key));
        let mut lower = cmd;
        lower[0] = "eval".into();
        assert!(is_publish_command(&lower));
    }
}
