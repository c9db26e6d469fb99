//! The Lua scripts of the Redis directory: a presence join, a presence leave
//! and the removal of a dead node's members. Each publishes its member event
//! itself, with the history functions every publish shares, so "member
//! changed" and "event sent" cannot come apart. Scripts get every key through
//! `KEYS`, or, for the keys of members found while they run, as templates
//! (`keys::template`) through `ARGV`.

use std::sync::LazyLock;

use pushwire_shared::Envelope;
use pushwire_shared::event_id::reaped_member_id_prefix;
use pushwire_shared::keys::{self, APP_SLOT, KeySpace, channel_slot, slot};
use pushwire_shared::presence::Member;
use pushwire_shared::publishing::PUBLISH_FUNCTIONS;

/// KEYS: epoch, members, sockets, node presence, history stream.
/// ARGV: 4 retention args, user id, user_info, max members, node field,
/// pub/sub channel, member_added envelope.
pub(super) static JOIN_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"local user = ARGV[5]
if redis.call('HEXISTS', KEYS[2], user) == 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[7]) then
  return {0}
end
redis.call('HINCRBY', KEYS[4], ARGV[8], 1)
if redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
  redis.call('HSET', KEYS[2], user, ARGV[6])
  publish(KEYS[5], ARGV[9], ARGV[10], ARGV[1], ARGV[2], ARGV[3], epoch_of(KEYS[1], ARGV[4]))
end
return {1, redis.call('HGETALL', KEYS[2])}
"#,
    )
});

/// KEYS: as [`JOIN_SCRIPT`]. ARGV: 4 retention args, user id, node field,
/// pub/sub channel, member_removed envelope.
pub(super) static LEAVE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"local left = redis.call('HINCRBY', KEYS[4], ARGV[6], -1)
if left <= 0 then redis.call('HDEL', KEYS[4], ARGV[6]) end
if left < 0 then return 0 end
if redis.call('HINCRBY', KEYS[3], ARGV[5], -1) <= 0 then
  redis.call('HDEL', KEYS[3], ARGV[5])
  redis.call('HDEL', KEYS[2], ARGV[5])
  publish(KEYS[5], ARGV[7], ARGV[8], ARGV[1], ARGV[2], ARGV[3], epoch_of(KEYS[1], ARGV[4]))
  return 1
end
return 0
"#,
    )
});

/// KEYS: epoch, nodes, the dead node's presence, the dead node's subs.
/// ARGV: 4 retention args, dead node, id prefix ([`reaped_member_id_prefix`]),
/// then the templates ([`reap_args`]) of the members, member sockets, history
/// and pub/sub channel keys, and of the member_removed envelope.
/// Removes the node's presence sockets; publishes member_removed for users left
/// with none. Only the reaper that removes the node from `nodes` does it.
///
/// A key template's slots (`@app@`, `@channel@`) become the member's app and
/// channel; the envelope's JSON-quoted slots become the JSON of its values.
pub(super) static REAP_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        r#"local function fill(template, values)
  return (string.gsub(template, '@([%w_]+)@', values))
end
local function fill_json(template, values)
  return (string.gsub(template, '"@([%w_]+)@"', function(slot) return cjson.encode(values[slot]) end))
end
if redis.call('ZREM', KEYS[2], ARGV[5]) == 0 then return 0 end
local entries = redis.call('HGETALL', KEYS[3])
local removed = 0
for i = 1, #entries, 2 do
  local app, channel, user = string.match(entries[i], '^([^:]*):([^:]*):(.*)$')
  if app then
    local names = {app = app, channel = channel}
    local members, sockets = fill(ARGV[7], names), fill(ARGV[8], names)
    if redis.call('HINCRBY', sockets, user, -tonumber(entries[i + 1])) <= 0 then
      redis.call('HDEL', sockets, user)
      redis.call('HDEL', members, user)
      removed = removed + 1
      local envelope = fill_json(ARGV[11], {id = ARGV[6] .. removed, app = app, channel = channel, user_id = user})
      publish(fill(ARGV[9], names), fill(ARGV[10], names),
        envelope, ARGV[1], ARGV[2], ARGV[3], epoch_of(KEYS[1], ARGV[4]))
    end
  end
end
redis.call('DEL', KEYS[3], KEYS[4])
return removed
"#,
    )
});

/// [`REAP_SCRIPT`]'s arguments after the retention ones, for reaping
/// `dead_node` at `now` (ms): the node, the id prefix, the key templates, and
/// the member_removed envelope with slots for what only the script knows.
pub(super) fn reap_args(keys: &KeySpace, dead_node: &str, now: u64) -> [String; 7] {
    let member = Member {
        user_id: slot("user_id"),
        user_info: "null".into(),
    };
    let (event, data) = member.removed_event();
    let envelope = Envelope::new(
        slot("id"),
        APP_SLOT.into(),
        channel_slot(),
        event,
        data,
        now,
    );
    [
        dead_node.to_owned(),
        reaped_member_id_prefix(dead_node, now),
        keys::template(|app, channel| keys.members(app, channel)),
        keys::template(|app, channel| keys.member_sockets(app, channel)),
        keys::template(|app, channel| keys.history(app, channel)),
        keys::template(|app, channel| keys.channel(app, channel)),
        envelope.encode(),
    ]
}

/// A directory script: the history functions every publishing script shares
/// ([`PUBLISH_FUNCTIONS`]), then `body`. Run by digest (`EVALSHA`), loaded again
/// after a Redis restart.
fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PUBLISH_FUNCTIONS}{body}"))
}

#[cfg(test)]
mod tests {
    use pushwire_shared::ChannelName;

    use super::*;

    /// What the reap script's `fill` and `fill_json` do (cjson and serde_json
    /// quote these plain values alike).
    fn fill(template: &str, values: &[(&str, &str)], json: bool) -> String {
        values
            .iter()
            .fold(template.to_owned(), |text, (name, value)| {
                let (slot, value) = match json {
                    true => (
                        format!("\"{}\"", slot(name)),
                        serde_json::json!(value).to_string(),
                    ),
                    false => (slot(name), (*value).to_owned()),
                };
                text.replace(&slot, &value)
            })
    }

    #[test]
    fn the_reap_script_gets_the_keys_and_envelope_of_the_one_source() {
        let keys = KeySpace::new("t");
        let [
            node,
            id_prefix,
            members,
            sockets,
            history,
            channel,
            envelope,
        ] = reap_args(&keys, "17", 1000);
        assert_eq!((node.as_str(), id_prefix.as_str()), ("17", "r17-1000-"));
        let ch = ChannelName::new("presence-a").unwrap();
        let names = [("app", "1"), ("channel", "presence-a")];
        assert_eq!(fill(&members, &names, false), keys.members("1", &ch));
        assert_eq!(fill(&sockets, &names, false), keys.member_sockets("1", &ch));
        assert_eq!(fill(&history, &names, false), keys.history("1", &ch));
        assert_eq!(fill(&channel, &names, false), keys.channel("1", &ch));
        let id = format!("{id_prefix}1");
        let values = [
            ("id", id.as_str()),
            ("user_id", "u"),
            ("app", "1"),
            ("channel", "presence-a"),
        ];
        assert_eq!(
            fill(&envelope, &values, true),
            r#"{"v":1,"id":"r17-1000-1","app":"1","channel":"presence-a","event":"pushwire:member_removed","data":{"user_id":"u"},"ts":1000}"#
        );
    }
}
