//! The one atomic publish on Redis: the Lua script that appends each event to
//! its channel's history and publishes it with its position, the script's
//! digest, and the commands that run it (by digest, or by text after Redis
//! answered `NOSCRIPT`).
//!
//! The edge builds the whole command ([`publish_command`]); origins send the
//! same keys and arguments ([`publish_call`]) through their Redis client; the
//! bridge runs no other script ([`is_publish_command`]).

use crate::history::{HistoryPolicy, IDLE_KEY_TTL_SECS, PublishMessage};
use crate::keys::KeySpace;
use crate::settings::HISTORY_MAX_EVENTS_BOUNDS;

macro_rules! publish_functions {
    () => {
        r#"-- pushwire publish v1
local function is_epoch(text)
  return type(text) == 'string' and #text <= 64 and string.match(text, '^[%w_-]+$') ~= nil
end
local function epoch_of(key, candidate)
  local epoch = redis.call('GET', key)
  if not is_epoch(epoch) then
    epoch = candidate
    redis.call('SET', key, epoch)
  end
  return epoch
end
local function publish(stream, channel, envelope, maxlen, minid, ttl, epoch)
  local id = redis.call('XADD', stream, 'MAXLEN', maxlen, '*', 'e', envelope)
  redis.call('XTRIM', stream, 'MINID', minid)
  redis.call('PEXPIRE', stream, ttl)
  redis.call('PUBLISH', channel, string.sub(envelope, 1, -2) .. ',"pos":"' .. epoch .. ':' .. id .. '"}')
end
"#
    };
}

/// The Lua functions every publishing script starts with: `is_epoch(text)`,
/// `epoch_of(key, candidate)` (the stored epoch, or `candidate` stored when
/// there is none or it is not 1 to 64 of `[A-Za-z0-9_-]`, as a broken epoch
/// would make every position undecodable) and `publish(stream, channel, envelope, maxlen, minid, ttl,
/// epoch)` (append to the history, trim, refresh its expiry, publish with `pos`).
/// Other scripts (presence) prepend them to publish exactly as triggers do.
pub const PUBLISH_FUNCTIONS: &str = publish_functions!();

/// The Lua script appending each message to its history stream and publishing
/// it with its position, atomically. Arguments: see [`publish_command`]. It
/// checks its keys and arguments itself (as [`check_publish_command`] does, less
/// the bounds) and answers a Redis error, having written nothing, if they are
/// not pushwire's.
pub const PUBLISH_SCRIPT: &str = concat!(
    publish_functions!(),
    r#"local prefix = string.match(KEYS[1], '^(.+):epoch$')
if not prefix or not tonumber(ARGV[1]) or not tonumber(ARGV[2]) or not tonumber(ARGV[3])
    or not is_epoch(ARGV[4]) then
  return redis.error_reply('ERR pushwire publish: bad epoch key, retention or epoch candidate')
end
for i = 2, #KEYS do
  local app, channel = string.match(string.sub(KEYS[i], #prefix + 1), '^:([^:@]+):hist:([^:]+)$')
  if string.sub(KEYS[i], 1, #prefix) ~= prefix or not app
      or ARGV[2 * i + 1] ~= prefix .. ':' .. app .. ':ch:' .. channel then
    return redis.error_reply('ERR pushwire publish: a key that is not a history stream paired with its channel')
  end
end
local epoch = epoch_of(KEYS[1], ARGV[4])
for i = 1, #KEYS - 1 do
  publish(KEYS[i + 1], ARGV[3 + 2 * i], ARGV[4 + 2 * i], ARGV[1], ARGV[2], ARGV[3], epoch)
end
return #KEYS - 1
"#
);

/// The four retention arguments every publishing script takes, in order: max
/// events, min id (`now_ms` minus the max age), idle key ttl in ms, and the
/// epoch to set if Redis has none.
///
/// ```
/// use pushwire_shared::history::HistoryPolicy;
/// use pushwire_shared::publishing::retention_args;
/// assert_eq!(retention_args(&HistoryPolicy::default(), 400_000, "e"), ["100", "100000", "86400000", "e"]);
/// ```
pub fn retention_args(policy: &HistoryPolicy, now_ms: u64, epoch_candidate: &str) -> [String; 4] {
    let min_id = now_ms.saturating_sub(u64::from(policy.max_age_secs) * 1000);
    [
        policy.max_events.max(1).to_string(),
        min_id.to_string(),
        (IDLE_KEY_TTL_SECS * 1000).to_string(),
        epoch_candidate.to_owned(),
    ]
}

/// The keys and arguments of one run of [`PUBLISH_SCRIPT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishCall {
    /// `KEYS`: the epoch key, then each message's history key.
    pub keys: Vec<String>,
    /// `ARGV`: the four [`retention_args`], then each message's channel and envelope.
    pub args: Vec<String>,
}

/// The keys and arguments publishing `messages` atomically with [`PUBLISH_SCRIPT`],
/// for a client that sends the script by its digest (`EVALSHA`).
///
/// `now_ms` sets the age trim; `epoch_candidate` becomes the epoch when Redis has
/// none (any fresh unique token of `[A-Za-z0-9_-]`). The script's reply is the
/// number of messages published.
///
/// ```
/// use pushwire_shared::history::{HistoryPolicy, PublishMessage};
/// use pushwire_shared::keys::KeySpace;
/// use pushwire_shared::publishing::publish_call;
/// let msg = PublishMessage { channel: "c".into(), history_key: "h".into(), envelope: "{}".into() };
/// let call = publish_call(&HistoryPolicy::default(), 400_000, "e1", &[msg]);
/// assert_eq!(call.keys, [KeySpace::DEFAULT.epoch(), "h".into()]);
/// assert_eq!(call.args, ["100", "100000", "86400000", "e1", "c", "{}"]);
/// ```
pub fn publish_call(
    policy: &HistoryPolicy,
    now_ms: u64,
    epoch_candidate: &str,
    messages: &[PublishMessage],
) -> PublishCall {
    let mut keys = Vec::with_capacity(1 + messages.len());
    keys.push(KeySpace::DEFAULT.epoch());
    keys.extend(messages.iter().map(|m| m.history_key.clone()));
    let mut args = Vec::with_capacity(4 + 2 * messages.len());
    args.extend(retention_args(policy, now_ms, epoch_candidate));
    for m in messages {
        args.push(m.channel.clone());
        args.push(m.envelope.clone());
    }
    PublishCall { keys, args }
}

/// The SHA-1 digest of [`PUBLISH_SCRIPT`], by which Redis knows it once loaded
/// (`EVALSHA`). The origin's unit tests check it against the script's text.
pub const PUBLISH_SCRIPT_SHA1: &str = "7058e3ef702e8847960fba5b9d8da18e2b6e6e6e";

/// How a [`publish_command`] names [`PUBLISH_SCRIPT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptRef {
    /// `EVALSHA` with [`PUBLISH_SCRIPT_SHA1`]: small, but Redis answers
    /// `NOSCRIPT` when it does not have the script (after a restart or a
    /// `SCRIPT FLUSH`), having run nothing.
    Digest,
    /// `EVAL` with the script's text, which also loads it for later digests.
    Text,
}

/// The same [`publish_call`] as one Redis command (what the edge sends through
/// the REST bridge): `EVALSHA <digest>` or `EVAL <script>`, then `<1 + n> <epoch
/// key> <history keys…> <max events> <min id> <idle ttl ms> <epoch if none>
/// (<channel> <envelope>)…`.
///
/// ```
/// use pushwire_shared::history::{HistoryPolicy, PublishMessage};
/// use pushwire_shared::keys::KeySpace;
/// use pushwire_shared::publishing::{publish_command, ScriptRef, PUBLISH_SCRIPT_SHA1};
/// let msg = PublishMessage { channel: "c".into(), history_key: "h".into(), envelope: "{}".into() };
/// let cmd = publish_command(ScriptRef::Digest, &HistoryPolicy::default(), 400_000, "e1", &[msg]);
/// assert_eq!(cmd[..2], ["EVALSHA", PUBLISH_SCRIPT_SHA1]);
/// assert_eq!(cmd[3], KeySpace::DEFAULT.epoch());
/// assert_eq!(cmd[2..], ["2", &cmd[3], "h", "100", "100000", "86400000", "e1", "c", "{}"]);
/// ```
pub fn publish_command(
    script: ScriptRef,
    policy: &HistoryPolicy,
    now_ms: u64,
    epoch_candidate: &str,
    messages: &[PublishMessage],
) -> Vec<String> {
    let PublishCall { keys, args } = publish_call(policy, now_ms, epoch_candidate, messages);
    let mut cmd = Vec::with_capacity(3 + keys.len() + args.len());
    match script {
        ScriptRef::Digest => cmd.extend(["EVALSHA".to_owned(), PUBLISH_SCRIPT_SHA1.to_owned()]),
        ScriptRef::Text => cmd.extend(["EVAL".to_owned(), PUBLISH_SCRIPT.to_owned()]),
    }
    cmd.push(keys.len().to_string());
    cmd.extend(keys);
    cmd.extend(args);
    cmd
}

/// The same command naming the script by its text instead of its digest (what
/// to send after a `NOSCRIPT` answer); any other command is returned unchanged.
///
/// ```
/// use pushwire_shared::history::HistoryPolicy;
/// use pushwire_shared::publishing::{publish_command, with_script_text, ScriptRef};
/// let by_digest = publish_command(ScriptRef::Digest, &HistoryPolicy::default(), 1, "e", &[]);
/// let by_text = publish_command(ScriptRef::Text, &HistoryPolicy::default(), 1, "e", &[]);
/// assert_eq!(with_script_text(by_digest), by_text);
/// ```
pub fn with_script_text(mut cmd: Vec<String>) -> Vec<String> {
    if cmd.len() >= 2
        && cmd[0].eq_ignore_ascii_case("EVALSHA")
        && cmd[1].eq_ignore_ascii_case(PUBLISH_SCRIPT_SHA1)
    {
        cmd[0] = "EVAL".to_owned();
        cmd[1] = PUBLISH_SCRIPT.to_owned();
    }
    cmd
}

/// How far ahead of the checker's clock a publish's min id may be: the edge's
/// clock may run a little ahead of the bridge's, but a min id further in the
/// future would trim away the history it is meant to keep.
pub const MAX_MIN_ID_AHEAD_MS: u64 = 10_000;

/// The longest epoch candidate a publish may carry.
pub const MAX_EPOCH_CANDIDATE_LEN: usize = 64;

/// Why a command is not a [`publish_command`] pushwire would send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishCommandError {
    /// Not `EVAL` of [`PUBLISH_SCRIPT`] or `EVALSHA` of its digest.
    #[error("a script other than pushwire's publish script")]
    OtherScript,
    /// The key count is not a number or does not match the arguments.
    #[error("argument counts that do not match the publish script's")]
    Shape,
    /// The first key is not pushwire's epoch key.
    #[error("a first key other than pushwire's epoch key")]
    EpochKey,
    /// A history key is not one of pushwire's history streams.
    #[error("a key that is not a pushwire history stream")]
    HistoryKey,
    /// A pub/sub channel is not the one of its history key's app and channel.
    #[error("a channel that is not its history key's pub/sub channel")]
    Channel,
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
/// use pushwire_shared::publishing::is_epoch_candidate;
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

/// Checks that a command is a [`publish_command`] pushwire would send: `EVAL` of
/// [`PUBLISH_SCRIPT`] or `EVALSHA` of its digest; pushwire's epoch key; each
/// history key one of pushwire's streams, paired with the pub/sub channel of
/// the same app and channel; max events within
/// [`HISTORY_MAX_EVENTS_BOUNDS`](crate::settings::HISTORY_MAX_EVENTS_BOUNDS);
/// pushwire's idle ttl; a valid epoch candidate ([`is_epoch_candidate`]);
/// non-empty JSON object envelopes. With `now_ms`, the min id may be at most
/// [`MAX_MIN_ID_AHEAD_MS`] ahead of it. The bridge runs no other script.
///
/// ```
/// use pushwire_shared::history::HistoryPolicy;
/// use pushwire_shared::publishing::{check_publish_command, publish_command, ScriptRef, PublishCommandError};
/// let cmd = publish_command(ScriptRef::Digest, &HistoryPolicy::default(), 400_000, "e", &[]);
/// assert_eq!(check_publish_command(&cmd, Some(400_000)), Ok(()));
/// assert_eq!(check_publish_command(&cmd, Some(0)), Err(PublishCommandError::MinId));
/// ```
pub fn check_publish_command(
    cmd: &[String],
    now_ms: Option<u64>,
) -> Result<(), PublishCommandError> {
    use PublishCommandError as E;
    let [name, script, numkeys, rest @ ..] = cmd else {
        return Err(E::Shape);
    };
    let names_the_script = (name.eq_ignore_ascii_case("EVAL") && script == PUBLISH_SCRIPT)
        || (name.eq_ignore_ascii_case("EVALSHA")
            && script.eq_ignore_ascii_case(PUBLISH_SCRIPT_SHA1));
    if !names_the_script {
        return Err(E::OtherScript);
    }
    let numkeys = numkeys.parse::<usize>().map_err(|_| E::Shape)?;
    if numkeys == 0 || rest.len() != numkeys + 4 + 2 * (numkeys - 1) {
        return Err(E::Shape);
    }
    let (keys, args) = rest.split_at(numkeys);
    if keys[0] != KeySpace::DEFAULT.epoch() {
        return Err(E::EpochKey);
    }
    let [max_events, min_id, ttl, epoch, messages @ ..] = args else {
        return Err(E::Shape);
    };
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
    for (history_key, message) in keys[1..].iter().zip(messages.chunks_exact(2)) {
        let history = KeySpace::DEFAULT
            .parse_history(history_key)
            .ok_or(E::HistoryKey)?;
        if KeySpace::DEFAULT.parse_channel(&message[0]) != Some(history) {
            return Err(E::Channel);
        }
        // The script splices the position in before the closing brace.
        let envelope = &message[1];
        if !(envelope.len() > 2 && envelope.starts_with('{') && envelope.ends_with('}')) {
            return Err(E::Envelope);
        }
    }
    Ok(())
}

/// Whether a command is a [`publish_command`] pushwire would send, by every
/// check of [`check_publish_command`] but the clock's.
///
/// ```
/// use pushwire_shared::history::HistoryPolicy;
/// use pushwire_shared::publishing::{is_publish_command, publish_command, ScriptRef};
/// for script in [ScriptRef::Digest, ScriptRef::Text] {
///     assert!(is_publish_command(&publish_command(script, &HistoryPolicy::default(), 1, "e", &[])));
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

    fn msg(channel: &str) -> PublishMessage {
        let channel = ChannelName::new(channel).unwrap();
        PublishMessage {
            channel: KeySpace::DEFAULT.channel("1", &channel),
            history_key: KeySpace::DEFAULT.history("1", &channel),
            envelope: r#"{"event":"e"}"#.into(),
        }
    }

    /// Index of `ARGV[n]` (1-based) in a command with `numkeys` keys.
    fn argv(numkeys: usize, n: usize) -> usize {
        3 + numkeys + n - 1
    }

    #[test]
    fn pushwire_s_own_publish_passes_every_check() {
        let now = 1_700_000_000_000;
        for script in [ScriptRef::Digest, ScriptRef::Text] {
            let cmd = publish_command(
                script,
                &HistoryPolicy::default(),
                now,
                "k3x-9_Q",
                &[msg("a"), msg("private-b")],
            );
            assert_eq!(check_publish_command(&cmd, Some(now)), Ok(()));
        }
    }

    #[test]
    fn every_argument_an_attacker_could_bend_is_refused() {
        use PublishCommandError as E;
        let now = 1_700_000_000_000;
        let good = publish_command(
            ScriptRef::Digest,
            &HistoryPolicy::default(),
            now,
            "e1",
            &[msg("a")],
        );
        let bent = |index: usize, value: &str| {
            let mut cmd = good.clone();
            cmd[index] = value.into();
            check_publish_command(&cmd, Some(now))
        };
        let other_app_channel = KeySpace::DEFAULT.channel("2", &ChannelName::new("a").unwrap());
        let cases = [
            // A non-pushwire stream: XTRIM/PEXPIRE would wipe it.
            (4, "victim:orders", E::HistoryKey),
            (4, "pushwire:v1:1:presence:a", E::HistoryKey),
            (4, "pushwire:v1:1:hist:a b", E::HistoryKey),
            // PUBLISH to any channel, or another app's.
            (argv(2, 5), "victim:orders", E::Channel),
            (argv(2, 5), &other_app_channel, E::Channel),
            (argv(2, 5), "pushwire:v1:1:ch:b", E::Channel),
            (argv(2, 1), "0", E::MaxEvents),
            (argv(2, 1), "10000", E::MaxEvents),
            (argv(2, 1), "1e9", E::MaxEvents),
            (argv(2, 1), "+5", E::MaxEvents),
            (argv(2, 2), "99999999999999", E::MinId),
            (argv(2, 2), "-", E::MinId),
            (argv(2, 3), "1", E::Ttl),
            (argv(2, 3), "999999999999999", E::Ttl),
            (argv(2, 4), "x\"}", E::EpochCandidate),
            (argv(2, 4), "", E::EpochCandidate),
            (argv(2, 4), &"e".repeat(65), E::EpochCandidate),
            (argv(2, 6), "", E::Envelope),
            (argv(2, 6), "{}", E::Envelope),
            (argv(2, 6), "not json", E::Envelope),
            (3, "victim:epoch", E::EpochKey),
            (2, "1", E::Shape),
        ];
        for (index, value, expected) in cases {
            assert_eq!(bent(index, value), Err(expected), "{index} = {value}");
        }
        assert_eq!(
            bent(argv(2, 2), &(now + MAX_MIN_ID_AHEAD_MS).to_string()),
            Ok(())
        );
        assert_eq!(bent(argv(2, 4), &"e".repeat(64)), Ok(()));
    }

    #[test]
    fn the_publish_command_is_recognised_only_whole() {
        let cmd = publish_command(
            ScriptRef::Text,
            &HistoryPolicy::default(),
            0,
            "e",
            &[msg("a"), msg("b")],
        );
        assert_eq!(cmd.len(), 3 + 3 + 4 + 4);
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
        let mut short = cmd.clone();
        short.pop();
        assert!(!is_publish_command(&short));
        let mut other_key = cmd.clone();
        other_key[3] = "somewhere:else".into();
        assert!(!is_publish_command(&other_key));
        let mut lower = cmd;
        lower[0] = "eval".into();
        assert!(is_publish_command(&lower));
    }
}
