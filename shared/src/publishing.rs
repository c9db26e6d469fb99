//! The one atomic publish on Redis: the Lua script that appends each event to
//! its channel's history and publishes it with its position, the script's
//! digest, and the commands that run it (by digest, or by text after Redis
//! answered `NOSCRIPT`).
//!
//! The edge builds the whole command ([`publish_command`]); origins send the
//! same keys and arguments ([`publish_call`]) through their Redis client; the
//! bridge runs no other script (`publish_check`).

use crate::history::{HistoryPolicy, IDLE_KEY_TTL_SECS, PublishMessage};
use crate::keys::KeySpace;

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
/// checks its keys and arguments itself (as [`check_publish_command`](crate::publish_check::check_publish_command) does, less
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
