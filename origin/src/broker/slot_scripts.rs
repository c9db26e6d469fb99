//! Scripts standing in for transactions. On a Redis Cluster a `MULTI` cannot
//! follow a slot that moved (the client gives up on the `MOVED` answers inside
//! it), while a script is one command: redirected, and retried, like any
//! other. Each touches the keys of one slot.

use std::sync::LazyLock;

/// KEYS: a channel's epoch, its history stream. ARGV: the first id, the most
/// entries. Returns `{epoch or false, entries}`: both read at one instant.
pub(super) static HISTORY_READ_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"return {redis.call('GET', KEYS[1]), redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])}
"#,
    )
});

/// KEYS: a node's counts hash. ARGV: its ttl in ms, then field and count
/// pairs. Replaces the hash whole and sets its expiry, so a reader never sees
/// it half written. The pairs go to `HSET` a thousand at a time: Lua's
/// `unpack` refuses more than about 8,000 values, and a worker may hold far
/// more channels.
pub(super) static NODE_COUNTS_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"redis.call('DEL', KEYS[1])
local i = 2
while i <= #ARGV do
  local last = math.min(i + 1999, #ARGV)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"#,
    )
});
