//! The one atomic publish on Redis: the Lua script that appends a channel's
//! events to its history and publishes each with its position, the script's
//! digest, and the commands that run it (by digest, or by text after Redis
//! answered `NOSCRIPT`).
//!
//! One run publishes on one channel: every key it touches carries the
//! channel's hash tag (`keys`), so on a Redis Cluster it runs on the one shard
//! that owns the channel. A request naming several channels is one run per
//! channel ([`publish_calls`]).
//!
//! The edge builds the whole commands ([`publish_commands`]); origins send the
//! same keys and arguments ([`publish_calls`]) through their Redis client; the
//! bridge runs no other script (`publish_check`).

use crate::history::{HistoryPolicy, IDLE_KEY_TTL_SECS, PublishMessage};

macro_rules! publish_functions {
    () => {
        r#"-- pushwire publish v2
local function is_epoch(text)
  return type(text) == 'string' and #text <= 64 and string.match(text, '^[%w_-]+$') ~= nil
end
local function epoch_of(key, candidate, ttl)
  local epoch = redis.call('GET', key)
  if not is_epoch(epoch) then
    epoch = candidate
  end
  redis.call('SET', key, epoch, 'PX', ttl)
  return epoch
end
local function publish(stream, channel, envelope, maxlen, minid, ttl, epoch, command)
  local id = redis.call('XADD', stream, 'MAXLEN', maxlen, '*', 'e', envelope)
  redis.call('XTRIM', stream, 'MINID', minid)
  redis.call('PEXPIRE', stream, ttl)
  redis.call(command, channel, string.sub(envelope, 1, -2) .. ',"pos":"' .. epoch .. ':' .. id .. '"}')
end
"#
    };
}

/// The Lua functions every publishing script starts with: `is_epoch(text)`,
/// `epoch_of(key, candidate, ttl)` (the channel's stored epoch, or `candidate`
/// when there is none or it is not 1 to 64 of `[A-Za-z0-9_-]`, as a broken
/// epoch would make every position undecodable; stored again with the
/// history's idle ttl, so the two expire together) and `publish(stream,
/// channel, envelope, maxlen, minid, ttl, epoch, command)` (append to the
/// history, trim, refresh its expiry, publish with `pos` by `command`, `PUBLISH`
/// or `SPUBLISH`). Other scripts (presence) prepend them to publish exactly as
/// triggers do.
pub const PUBLISH_FUNCTIONS: &str = publish_functions!();

/// The Lua script appending a channel's messages to its history stream and
/// publishing each with its position, atomically. Arguments: see
/// [`publish_calls`]. It checks its keys and arguments itself (as
/// [`check_publish_command`](crate::publish_check::check_publish_command) does,
/// less the bounds) and answers a Redis error, having written nothing, if they
/// are not pushwire's.
pub const PUBLISH_SCRIPT: &str = concat!(
    publish_functions!(),
    r#"local prefix, tag = string.match(KEYS[1], '^(.+):({[%w_-]+:[^:{}]+}):epoch$')
if not prefix or KEYS[2] ~= prefix .. ':' .. tag .. ':hist' or ARGV[6] ~= prefix .. ':' .. tag .. ':ch'
    or #ARGV < 7 then
  return redis.error_reply('ERR pushwire publish: keys that are not one channel\'s epoch, history and pub/sub channel')
end
if not tonumber(ARGV[1]) or not tonumber(ARGV[2]) or not tonumber(ARGV[3]) or not is_epoch(ARGV[4])
    or (ARGV[5] ~= 'PUBLISH' and ARGV[5] ~= 'SPUBLISH') then
  return redis.error_reply('ERR pushwire publish: bad retention, epoch candidate or publish command')
end
local epoch = epoch_of(KEYS[1], ARGV[4], ARGV[3])
for i = 7, #ARGV do
  publish(KEYS[2], ARGV[6], ARGV[i], ARGV[1], ARGV[2], ARGV[3], epoch, ARGV[5])
end
return #ARGV - 6
"#
);

/// How events reach subscribers: the classic pub/sub of a single Redis (or
/// Sentinel primary), or a Redis Cluster's sharded pub/sub, where only the
/// shard owning a channel's slot carries its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PubSubMode {
    /// `PUBLISH` / `SUBSCRIBE`.
    #[default]
    Classic,
    /// `SPUBLISH` / `SSUBSCRIBE` (Redis 7+).
    Sharded,
}

impl PubSubMode {
    /// The publishing command, as the publish script's argument takes it.
    ///
    /// ```
    /// use pushwire_shared::publishing::PubSubMode;
    /// assert_eq!(PubSubMode::Sharded.publish_command(), "SPUBLISH");
    /// ```
    pub fn publish_command(self) -> &'static str {
        match self {
            PubSubMode::Classic => "PUBLISH",
            PubSubMode::Sharded => "SPUBLISH",
        }
    }
}

/// The five arguments every publishing script takes first, in order: max
/// events, min id (`now_ms` minus the max age), idle key ttl in ms, the epoch
/// to set if the channel has none, and the publishing command of `mode`.
///
/// ```
/// use pushwire_shared::history::HistoryPolicy;
/// use pushwire_shared::publishing::{retention_args, PubSubMode};
/// assert_eq!(
///     retention_args(&HistoryPolicy::default(), 400_000, "e", PubSubMode::Classic),
///     ["100", "100000", "86400000", "e", "PUBLISH"]
/// );
/// ```
pub fn retention_args(
    policy: &HistoryPolicy,
    now_ms: u64,
    epoch_candidate: &str,
    mode: PubSubMode,
) -> [String; 5] {
    let min_id = now_ms.saturating_sub(u64::from(policy.max_age_secs) * 1000);
    [
        policy.max_events.max(1).to_string(),
        min_id.to_string(),
        (IDLE_KEY_TTL_SECS * 1000).to_string(),
        epoch_candidate.to_owned(),
        mode.publish_command().to_owned(),
    ]
}

/// The keys and arguments of one run of [`PUBLISH_SCRIPT`]: one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishCall {
    /// `KEYS`: the channel's epoch key, then its history key.
    pub keys: [String; 2],
    /// `ARGV`: the five [`retention_args`], the pub/sub channel, then each
    /// message's envelope, in order.
    pub args: Vec<String>,
}

impl PublishCall {
    /// How many messages the run publishes (what its reply must be).
    ///
    /// ```
    /// use pushwire_shared::history::{HistoryPolicy, PublishMessage};
    /// use pushwire_shared::publishing::{publish_calls, PubSubMode};
    /// let msg = PublishMessage {
    ///     channel: "c".into(), history_key: "h".into(), epoch_key: "k".into(), envelope: "{}".into(),
    /// };
    /// let calls = publish_calls(&HistoryPolicy::default(), 1, "e", PubSubMode::Classic, &[msg.clone(), msg]);
    /// assert_eq!(calls[0].message_count(), 2);
    /// ```
    pub fn message_count(&self) -> usize {
        // The retention arguments, then the pub/sub channel.
        self.args.len().saturating_sub(6)
    }
}

/// The runs of [`PUBLISH_SCRIPT`] publishing `messages`: one per channel, in
/// the order of each channel's first message, each carrying that channel's
/// messages in their order. Each run is atomic; together they are not (they
/// may run on different shards).
///
/// `now_ms` sets the age trim; `epoch_candidate` becomes a channel's epoch when
/// it has none (any fresh unique token of `[A-Za-z0-9_-]`). Each run's reply is
/// the number of messages it published.
///
/// ```
/// use pushwire_shared::history::{HistoryPolicy, PublishMessage};
/// use pushwire_shared::publishing::{publish_calls, PubSubMode};
/// let msg = |key: &str, envelope: &str| PublishMessage {
///     channel: format!("{key}:ch"),
///     history_key: format!("{key}:hist"),
///     epoch_key: format!("{key}:epoch"),
///     envelope: envelope.into(),
/// };
/// let messages = [msg("a", "{1}"), msg("b", "{2}"), msg("a", "{3}")];
/// let calls = publish_calls(&HistoryPolicy::default(), 400_000, "e1", PubSubMode::Classic, &messages);
/// assert_eq!(calls.len(), 2);
/// assert_eq!(calls[0].keys, ["a:epoch", "a:hist"]);
/// assert_eq!(calls[0].args, ["100", "100000", "86400000", "e1", "PUBLISH", "a:ch", "{1}", "{3}"]);
/// assert_eq!(calls[1].args[5..], ["b:ch", "{2}"]);
/// ```
pub fn publish_calls(
    policy: &HistoryPolicy,
    now_ms: u64,
    epoch_candidate: &str,
    mode: PubSubMode,
    messages: &[PublishMessage],
) -> Vec<PublishCall> {
    let retention = retention_args(policy, now_ms, epoch_candidate, mode);
    let mut calls: Vec<PublishCall> = Vec::new();
    for m in messages {
        // Requests name a handful of channels: a scan beats a map.
        match calls.iter_mut().find(|c| c.keys[1] == m.history_key) {
            Some(call) => call.args.push(m.envelope.clone()),
            None => {
                let mut args = Vec::with_capacity(retention.len() + 2);
                args.extend(retention.iter().cloned());
                args.push(m.channel.clone());
                args.push(m.envelope.clone());
                calls.push(PublishCall {
                    keys: [m.epoch_key.clone(), m.history_key.clone()],
                    args,
                });
            }
        }
    }
    calls
}

/// The SHA-1 digest of [`PUBLISH_SCRIPT`], by which Redis knows it once loaded
/// (`EVALSHA`). The origin's unit tests check it against the script's text.
pub const PUBLISH_SCRIPT_SHA1: &str = "90f977d5d25198fdf6a156064da19a9431cd0b1f";

/// How a [`publish_commands`] names [`PUBLISH_SCRIPT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptRef {
    /// `EVALSHA` with [`PUBLISH_SCRIPT_SHA1`]: small, but Redis answers
    /// `NOSCRIPT` when it does not have the script (after a restart or a
    /// `SCRIPT FLUSH`), having run nothing.
    Digest,
    /// `EVAL` with the script's text, which also loads it for later digests.
    Text,
}

/// The same [`publish_calls`] as Redis commands, one per channel (what the
/// edge sends through the REST bridge as one pipeline): `EVALSHA <digest>` or
/// `EVAL <script>`, then `2 <epoch key> <history key> <max events> <min id>
/// <idle ttl ms> <epoch if none> PUBLISH <channel> <envelopes…>`. A bridge in
/// front of a Redis Cluster publishes them with `SPUBLISH` instead
/// ([`with_pubsub_mode`]).
///
/// ```
/// use pushwire_shared::history::{HistoryPolicy, PublishMessage};
/// use pushwire_shared::publishing::{publish_commands, ScriptRef, PUBLISH_SCRIPT_SHA1};
/// let msg = PublishMessage {
///     channel: "c".into(), history_key: "h".into(), epoch_key: "k".into(), envelope: "{}".into(),
/// };
/// let cmds = publish_commands(ScriptRef::Digest, &HistoryPolicy::default(), 400_000, "e1", &[msg]);
/// assert_eq!(cmds.len(), 1);
/// assert_eq!(cmds[0][..2], ["EVALSHA", PUBLISH_SCRIPT_SHA1]);
/// assert_eq!(cmds[0][2..], ["2", "k", "h", "100", "100000", "86400000", "e1", "PUBLISH", "c", "{}"]);
/// ```
pub fn publish_commands(
    script: ScriptRef,
    policy: &HistoryPolicy,
    now_ms: u64,
    epoch_candidate: &str,
    messages: &[PublishMessage],
) -> Vec<Vec<String>> {
    publish_calls(
        policy,
        now_ms,
        epoch_candidate,
        PubSubMode::Classic,
        messages,
    )
    .into_iter()
    .map(|PublishCall { keys, args }| {
        let mut cmd = Vec::with_capacity(3 + keys.len() + args.len());
        match script {
            ScriptRef::Digest => cmd.extend(["EVALSHA".to_owned(), PUBLISH_SCRIPT_SHA1.to_owned()]),
            ScriptRef::Text => cmd.extend(["EVAL".to_owned(), PUBLISH_SCRIPT.to_owned()]),
        }
        cmd.push(keys.len().to_string());
        cmd.extend(keys);
        cmd.extend(args);
        cmd
    })
    .collect()
}

/// Where a [`publish_commands`] command names its publishing command.
const PUBLISH_COMMAND_INDEX: usize = 3 + 2 + 4;

/// Where a [`publish_commands`] command's envelopes start.
const FIRST_ENVELOPE_INDEX: usize = PUBLISH_COMMAND_INDEX + 2;

/// How many messages a [`publish_commands`] command publishes (what its reply
/// must confirm).
///
/// ```
/// use pushwire_shared::history::{HistoryPolicy, PublishMessage};
/// use pushwire_shared::publishing::{messages_in, publish_commands, ScriptRef};
/// let msg = PublishMessage {
///     channel: "c".into(), history_key: "h".into(), epoch_key: "k".into(), envelope: "{}".into(),
/// };
/// let cmds = publish_commands(ScriptRef::Digest, &HistoryPolicy::default(), 1, "e", &[msg.clone(), msg]);
/// assert_eq!(messages_in(&cmds[0]), 2);
/// ```
pub fn messages_in(cmd: &[String]) -> usize {
    cmd.len().saturating_sub(FIRST_ENVELOPE_INDEX)
}

/// The same publish command publishing by `mode`'s command; any other command
/// is returned unchanged. The edge cannot know whether the Redis behind its
/// bridge is a cluster; the bridge does, and sets it.
///
/// ```
/// use pushwire_shared::history::HistoryPolicy;
/// use pushwire_shared::publishing::{publish_commands, with_pubsub_mode, PubSubMode, ScriptRef};
/// use pushwire_shared::history::PublishMessage;
/// let msg = PublishMessage {
///     channel: "c".into(), history_key: "h".into(), epoch_key: "k".into(), envelope: "{}".into(),
/// };
/// let cmd = publish_commands(ScriptRef::Digest, &HistoryPolicy::default(), 1, "e", &[msg]).remove(0);
/// assert_eq!(with_pubsub_mode(cmd, PubSubMode::Sharded)[9], "SPUBLISH");
/// ```
pub fn with_pubsub_mode(mut cmd: Vec<String>, mode: PubSubMode) -> Vec<String> {
    if names_publish_script(&cmd) && cmd.len() > PUBLISH_COMMAND_INDEX {
        cmd[PUBLISH_COMMAND_INDEX] = mode.publish_command().to_owned();
    }
    cmd
}

/// Whether `cmd` starts `EVALSHA <the script's digest>` (either case) or
/// `EVAL <the script's text>`.
pub(crate) fn names_publish_script(cmd: &[String]) -> bool {
    cmd.len() >= 2
        && ((cmd[0].eq_ignore_ascii_case("EVALSHA")
            && cmd[1].eq_ignore_ascii_case(PUBLISH_SCRIPT_SHA1))
            || (cmd[0].eq_ignore_ascii_case("EVAL") && cmd[1] == PUBLISH_SCRIPT))
}

/// The same command naming the script by its text instead of its digest (what
/// to send after a `NOSCRIPT` answer); any other command is returned unchanged.
///
/// ```
/// use pushwire_shared::history::{HistoryPolicy, PublishMessage};
/// use pushwire_shared::publishing::{publish_commands, with_script_text, ScriptRef};
/// let msg = PublishMessage {
///     channel: "c".into(), history_key: "h".into(), epoch_key: "k".into(), envelope: "{}".into(),
/// };
/// let by_digest = publish_commands(ScriptRef::Digest, &HistoryPolicy::default(), 1, "e", &[msg.clone()]);
/// let by_text = publish_commands(ScriptRef::Text, &HistoryPolicy::default(), 1, "e", &[msg]);
/// assert_eq!(with_script_text(by_digest[0].clone()), by_text[0]);
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
