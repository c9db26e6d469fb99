//! The Lua scripts of the Redis directory: a presence join, a presence leave,
//! the removal of a dead node's members from one channel, and the node's index
//! of its presence channels. The channel scripts publish their member event
//! themselves, with the history functions every publish shares, so "member
//! changed" and "event sent" cannot come apart.
//!
//! Every key a channel script touches is one of the channel's (its hash tag),
//! passed in `KEYS`, so on a Redis Cluster each runs on the channel's shard.
//! What a node holds in a channel is kept in the channel's slot too
//! (`KeySpace::node_members`): removing a dead node's members is then one
//! script per channel, and running it twice removes nothing the second time.

use std::sync::LazyLock;

use pushwire_shared::keys::{KeySpace, slot};
use pushwire_shared::presence::Member;
use pushwire_shared::publishing::PUBLISH_FUNCTIONS;
use pushwire_shared::webhook::WebhookEvent;
use pushwire_shared::{ChannelName, Envelope};

use super::redis_webhooks::event_json;
use super::redis_webhooks::scripts::OUTBOX_FUNCTION;

/// KEYS: epoch, members, sockets, the node's members, history stream, then
/// the webhook outboxes wanting `member_added`. ARGV: 5 retention args, user
/// id, user_info, max members, pub/sub channel, member_added envelope, the
/// outbox cap, the member_added webhook JSON.
///
/// Returns `{joined, members, queued, dropped}`: `joined` 0 when the channel
/// is full (then nothing else), the members after the join, and how many
/// webhook outboxes took or refused the event.
pub(super) static JOIN_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"local user = ARGV[6]
if redis.call('HEXISTS', KEYS[2], user) == 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[8]) then
  return {0, false, 0, 0}
end
redis.call('HINCRBY', KEYS[4], user, 1)
local q = {0, 0}
if redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
  redis.call('HSET', KEYS[2], user, ARGV[7])
  publish(KEYS[5], ARGV[9], ARGV[10], ARGV[1], ARGV[2], ARGV[3], epoch_of(KEYS[1], ARGV[4], ARGV[3]), ARGV[5])
  q = outbox(6, ARGV[12], tonumber(ARGV[11]))
end
return {1, redis.call('HGETALL', KEYS[2]), q[1], q[2]}
"#,
    )
});

/// KEYS: as [`JOIN_SCRIPT`], the outboxes wanting `member_removed`. ARGV: 5
/// retention args, user id, pub/sub channel, member_removed envelope, the
/// outbox cap, the member_removed webhook JSON. Returns `{queued, dropped}`.
pub(super) static LEAVE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"local left = redis.call('HINCRBY', KEYS[4], ARGV[6], -1)
if left <= 0 then redis.call('HDEL', KEYS[4], ARGV[6]) end
if left < 0 then return {0, 0} end
if redis.call('HINCRBY', KEYS[3], ARGV[6], -1) <= 0 then
  redis.call('HDEL', KEYS[3], ARGV[6])
  redis.call('HDEL', KEYS[2], ARGV[6])
  publish(KEYS[5], ARGV[7], ARGV[8], ARGV[1], ARGV[2], ARGV[3], epoch_of(KEYS[1], ARGV[4], ARGV[3]), ARGV[5])
  return outbox(6, ARGV[10], tonumber(ARGV[9]))
end
return {0, 0}
"#,
    )
});

/// KEYS: as [`LEAVE_SCRIPT`], the node's members being the dead node's.
/// ARGV: 5 retention args, the id prefix (`reaped_member_id_prefix`), how many
/// members this reap removed before, pub/sub channel, the member_removed
/// envelope with `"@id@"` and `"@user_id@"` where the script writes the JSON of
/// each value ([`reap_envelope`]), the outbox cap, and the member_removed
/// webhook JSON with `"@user_id@"` likewise ([`reap_webhook`]).
///
/// Subtracts the node's sockets from each of its members; removes and
/// announces those left with none; deletes the node's entry. Returns
/// `{removed, queued, dropped}`: how many members it removed, and how many
/// webhook outboxes took or refused their events.
pub(super) static REAP_CHANNEL_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"local entries = redis.call('HGETALL', KEYS[4])
local removed, queued, dropped = 0, 0, 0
local fill = function(template, values)
  return (string.gsub(template, '"@([%w_]+)@"', function(name) return cjson.encode(values[name]) end))
end
for i = 1, #entries, 2 do
  local user = entries[i]
  if redis.call('HINCRBY', KEYS[3], user, -tonumber(entries[i + 1])) <= 0 then
    redis.call('HDEL', KEYS[3], user)
    redis.call('HDEL', KEYS[2], user)
    removed = removed + 1
    local values = {id = ARGV[6] .. (tonumber(ARGV[7]) + removed), user_id = user}
    publish(KEYS[5], ARGV[8], fill(ARGV[9], values), ARGV[1], ARGV[2], ARGV[3], epoch_of(KEYS[1], ARGV[4], ARGV[3]), ARGV[5])
    local q = outbox(6, fill(ARGV[11], values), tonumber(ARGV[10]))
    queued, dropped = queued + q[1], dropped + q[2]
  end
end
redis.call('DEL', KEYS[4])
return {removed, queued, dropped}
"#,
    )
});

/// KEYS: a node's presence index. ARGV: `{app}:{channel}`.
/// Lowers the node's count of member sockets in the channel, removing the
/// field at zero: the index only ever overstates what the node holds (raised
/// before a join, lowered after a leave), so the reaper never misses a channel.
pub(super) static UNINDEX_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"#,
    )
});

/// The keys of a channel script for `node` in `app`'s `channel`: epoch,
/// members, sockets, the node's members, history stream.
pub(super) fn channel_keys(
    keys: &KeySpace,
    app: &str,
    channel: &ChannelName,
    node: &str,
) -> [String; 5] {
    [
        keys.epoch(app, channel),
        keys.members(app, channel),
        keys.member_sockets(app, channel),
        keys.node_members(app, channel, node),
        keys.history(app, channel),
    ]
}

/// The member_removed envelope of a reaped member of `app`'s `channel` at
/// `now` (ms), with the JSON strings `"@id@"` and `"@user_id@"` for the values
/// only the script knows.
pub(super) fn reap_envelope(app: &str, channel: &ChannelName, now: u64) -> String {
    let member = Member {
        user_id: slot("user_id"),
        user_info: "null".into(),
    };
    let (event, data) = member.removed_event();
    Envelope::new(slot("id"), app.into(), channel.clone(), event, data, now).encode()
}

/// The member_removed webhook of a reaped member of `channel`, with the
/// JSON string `"@user_id@"` where the script writes the user's id.
pub(super) fn reap_webhook(channel: &ChannelName) -> String {
    event_json(&WebhookEvent::MemberRemoved {
        channel: channel.clone(),
        user_id: slot("user_id"),
    })
}

/// A directory script: the history functions every publishing script shares
/// ([`PUBLISH_FUNCTIONS`]) and the webhook outbox's ([`OUTBOX_FUNCTION`]),
/// then `body`. Run by digest (`EVALSHA`), loaded again after a Redis restart.
fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PUBLISH_FUNCTIONS}{OUTBOX_FUNCTION}{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_script_touches_only_its_channel_s_slot() {
        let keys = KeySpace::new("t");
        let ch = ChannelName::new("presence-a").unwrap();
        for key in channel_keys(&keys, "1", &ch, "17") {
            assert!(key.starts_with("t:{1:presence-a}:"), "{key}");
        }
    }

    #[test]
    fn the_reap_envelope_holds_the_slots_the_script_fills() {
        let ch = ChannelName::new("presence-a").unwrap();
        let envelope = reap_envelope("1", &ch, 1000);
        // What the script's gsub does (cjson and serde_json quote these plain
        // values alike).
        let filled = envelope
            .replace("\"@id@\"", "\"r17-1000-1\"")
            .replace("\"@user_id@\"", "\"u\"");
        assert_eq!(
            filled,
            r#"{"v":1,"id":"r17-1000-1","app":"1","channel":"presence-a","event":"pushwire:member_removed","data":{"user_id":"u"},"ts":1000}"#
        );
        let webhook = reap_webhook(&ch).replace("\"@user_id@\"", "\"u\"");
        assert_eq!(
            webhook,
            r#"{"name":"member_removed","channel":"presence-a","user_id":"u"}"#
        );
    }
}
