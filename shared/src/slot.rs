//! Redis Cluster hash slots: which of the [`SLOTS`] slots a key belongs to.
//!
//! A Redis Cluster refuses a command whose keys live on another shard
//! (`MOVED`) and any multi-key command whose keys span slots (`CROSSSLOT`).
//! Whoever routes commands must therefore compute slots exactly as Redis does:
//! the REST bridge, to send each command to the shard that owns its keys, and
//! the tests, to pick channels that land on a given shard (or on different
//! ones).
//!
//! The rule, from the Redis Cluster specification: `CRC16(key) mod 16384`,
//! CRC16 being the XMODEM variant (polynomial `0x1021`, initial value 0, no
//! reflection). If the key holds a `{` and, after it, a `}` with at least one
//! byte between them, only those bytes (the hash tag) are hashed.
//!
//! These are not the script placeholders of [`keys::slot`](crate::keys::slot).
//!
//! ```
//! use pushwire_shared::slot::{SLOTS, key_slot};
//!
//! assert_eq!(key_slot(b"foo"), 12182);
//! // The hash tag decides: both keys land on the slot of `user1000`.
//! assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
//! assert_eq!(key_slot(b"{user1000}.followers"), key_slot(b"user1000"));
//! assert!(key_slot(b"anything") < SLOTS);
//! ```

/// How many hash slots a Redis Cluster has; every slot is below this.
pub const SLOTS: u16 = 16384;

/// The hash slot of `key`, as `CLUSTER KEYSLOT` gives it.
///
/// ```
/// use pushwire_shared::slot::key_slot;
///
/// assert_eq!(key_slot(b"bar"), 5061);
/// // Only the first `{`…`}` counts, and an empty one means no tag.
/// assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
/// assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
/// ```
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key).unwrap_or(key)) % SLOTS
}

/// The bytes between the first `{` and the first `}` after it, if there are any.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let rest = &key[open + 1..];
    let close = rest.iter().position(|&b| b == b'}')?;
    // `{}` is no tag: Redis hashes the whole key then, and a router that
    // hashed "" instead would send such keys to the wrong shard.
    (close > 0).then(|| &rest[..close])
}

/// CRC16-XMODEM. Bitwise rather than table-driven: keys are a few dozen
/// bytes, so a table would buy little and add 512 bytes to the wasm build.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        let mut crc = crc ^ (u16::from(byte) << 8);
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every expected slot below is what `CLUSTER KEYSLOT` answers on Redis 7.0.

    #[test]
    fn crc16_is_the_xmodem_variant_of_the_spec() {
        // The check value the Redis Cluster specification gives.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slot_of_plain_keys() {
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"a"), 15495);
        assert_eq!(key_slot(b""), 0);
        // Keys are bytes, not text.
        assert_eq!(key_slot(b"\xff"), 7920);
    }

    #[test]
    fn slot_of_a_tagged_key_is_the_slot_of_its_tag() {
        assert_eq!(key_slot(b"{user1000}.following"), 3443);
        assert_eq!(key_slot(b"{user1000}.followers"), 3443);
        assert_eq!(key_slot(b"user1000"), 3443);
        assert_eq!(key_slot(b"{a}"), key_slot(b"a"));
    }

    #[test]
    fn only_the_first_brace_pair_counts() {
        assert_eq!(key_slot(b"foo{bar}{zap}"), 5061);
        // The tag is what lies between the first `{` and the next `}`.
        assert_eq!(key_slot(b"foo{{bar}}zap"), 4015);
        assert_eq!(key_slot(b"{bar"), 4015);
        // A `}` before the first `{` is no closing brace.
        assert_eq!(key_slot(b"a}b{c}"), 7365);
        assert_eq!(key_slot(b"a}b{c}"), key_slot(b"c"));
    }

    #[test]
    fn without_a_non_empty_tag_the_whole_key_is_hashed() {
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_eq!(hash_tag(b"foo{}{bar}"), None);
        assert_eq!(key_slot(b"{}"), 15257);
        assert_eq!(key_slot(b"{"), 4092);
        assert_eq!(key_slot(b"}"), 12090);
        assert_eq!(key_slot(b"a{b"), 13340);
    }

    #[test]
    fn every_slot_is_below_slots() {
        for n in 0..100_000u32 {
            assert!(key_slot(n.to_string().as_bytes()) < SLOTS);
        }
    }
}
