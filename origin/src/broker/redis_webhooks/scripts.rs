//! The Lua side of webhooks on Redis: queueing an event in a channel's
//! outboxes, a node's share of a channel's occupancy, and the due set's
//! claims and leases.
//!
//! Queueing runs inside the script that saw the transition (a presence join
//! or leave, an occupancy change), on the channel's slot, so "it happened"
//! and "its webhook is queued" cannot come apart. The due sets are in their
//! endpoint's slot; a sender claims channels there with a lease, so each
//! channel's events go out through one sender at a time, in order.

use std::sync::LazyLock;

/// `outbox(first, json, cap)`: appends `json` to each outbox in
/// `KEYS[first..]` that holds fewer than `cap` events; returns `{appended,
/// dropped}`. Shared by every script that queues webhooks.
pub(crate) const OUTBOX_FUNCTION: &str = r#"local function outbox(first, json, cap)
  local appended, dropped = 0, 0
  for i = first, #KEYS do
    if redis.call('XLEN', KEYS[i]) >= cap then
      dropped = dropped + 1
    else
      redis.call('XADD', KEYS[i], '*', 'e', json)
      appended = appended + 1
    end
  end
  return {appended, dropped}
end
"#;

/// KEYS: the channel's occupancy hash, then the outboxes of the endpoints
/// that want this change's event. ARGV: the node, `1` (it holds sockets
/// there now) or `0` (none left), the outbox cap, the event JSON.
///
/// Returns `{changed, appended, dropped}`: `changed` is 1 when the channel
/// went from no node to one, or from one to none, and the event was queued.
/// Running it twice changes nothing the second time.
pub(crate) static OCCUPANCY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        r#"{OUTBOX_FUNCTION}local changed
if ARGV[2] == '1' then
  changed = redis.call('HSET', KEYS[1], ARGV[1], 1) == 1 and redis.call('HLEN', KEYS[1]) == 1
else
  changed = redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[1]) == 0
end
if not changed then return {{0, 0, 0}} end
local q = outbox(2, ARGV[4], tonumber(ARGV[3]))
return {{1, q[1], q[2]}}
"#
    ))
});

/// KEYS: outboxes of one channel. ARGV: the outbox cap, the event JSON.
/// Returns `{appended, dropped}`.
pub(crate) static APPEND_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(&format!(
        "{OUTBOX_FUNCTION}return outbox(1, ARGV[2], tonumber(ARGV[1]))\n"
    ))
});

/// KEYS: an endpoint's due set. ARGV: the lease (ms), the most channels.
/// Takes the channels due now (score ≤ Redis's time), oldest first, and
/// leases them: their score moves past the lease, so no other sender takes
/// them meanwhile. Returns `{now_ms, {channel, …}}`.
pub(crate) static CLAIM_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, channel in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), channel)
end
return {now, due}
"#,
    )
});

/// KEYS: an endpoint's due set. ARGV: the lease (ms), then channels.
/// Extends the lease of those still in the set (a batch being retried), from
/// Redis's time now. Returns that time.
pub(crate) static RENEW_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
end
return now
"#,
    )
});
