//! The largest message a client may send, which caps both transports.
//!
//! Engine.IO's own caps are 100 KB per polling request but 64 MiB per WebSocket
//! message (16 MiB per frame), and a worker buffers a message whole before
//! parsing it: an unauthenticated client could make it hold tens of megabytes.
//! The cap here is what the protocol needs: the largest message a client of the
//! most generous app can legally send, plus framing.

use pushwire_shared::channel::MAX_CHANNEL_NAME_LEN;
use pushwire_shared::event::MAX_EVENT_NAME_LEN;
use pushwire_shared::presence::MAX_USER_ID_LEN;
use pushwire_shared::{AppList, Limits};

use super::session::MAX_HANDSHAKE_CHANNELS;

/// The longest a byte of free-form content (event data, `user_info`, event names)
/// can grow on the wire: `\u00XX`, as stock encoders write control characters.
/// Channel names, positions and signatures are ASCII that no encoder escapes.
const WORST_ESCAPE: usize = 6;

/// Engine.IO and Socket.IO packet headers, ack ids, keys and punctuation of one
/// message: generous, since the content terms dominate.
const FRAMING: usize = 256;

/// A position's text at its longest: `<epoch of 64>:<u64>-<u64>`.
const POSITION_LEN: usize = 64 + 1 + 20 + 1 + 20;

/// A signature's text after the app key: `:` and 64 hex digits.
const SIGNATURE_LEN: usize = 1 + 64;

/// Never below Engine.IO's own polling default: one polling request may carry
/// several packets (python-socketio sends everything queued in one), and 100 KB
/// always worked.
const FLOOR: usize = 100_000;

/// The transport cap in bytes for these apps: the largest legal client message of
/// any of them, at least [`FLOOR`]. Applied to a polling request's body, a
/// WebSocket message and a WebSocket frame alike.
pub(crate) fn max_client_message_bytes(apps: &AppList) -> usize {
    apps.iter()
        .map(|app| largest_message(&app.limits, app.key.len()))
        .fold(FLOOR, usize::max)
}

/// The largest of the messages a client of an app with these limits may send.
fn largest_message(limits: &Limits, key_len: usize) -> usize {
    // `client-<name>` with `{"channel", "data"}`.
    let client_event =
        WORST_ESCAPE * (MAX_EVENT_NAME_LEN + limits.max_data_bytes) + MAX_CHANNEL_NAME_LEN;
    // `subscribe` to a presence channel, `since` included: `channel_data` is the
    // member's JSON text, `{"user_id", "user_info"}`.
    let channel_data = MAX_USER_ID_LEN + limits.max_presence_user_info_bytes + 32;
    let subscribe =
        MAX_CHANNEL_NAME_LEN + key_len + SIGNATURE_LEN + WORST_ESCAPE * channel_data + POSITION_LEN;
    // The handshake's `auth.channels`: public channels only (a private channel's
    // signature covers the socket id, which the handshake does not know yet),
    // each with `since`.
    let handshake_entry = MAX_CHANNEL_NAME_LEN + POSITION_LEN + 32;
    let handshake =
        key_len + MAX_HANDSHAKE_CHANNELS.min(limits.max_channels_per_socket) * handshake_entry;
    client_event.max(subscribe).max(handshake) + FRAMING
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limits_need_no_more_than_engine_io_polling_allows() {
        let apps = AppList::parse("1:app-key:s").unwrap();
        let largest = largest_message(&Limits::default(), "app-key".len());
        // A client event with 10 KiB of `data`, every byte escaped.
        assert_eq!(largest, 6 * (200 + 10 * 1024) + 200 + 256);
        assert_eq!(max_client_message_bytes(&apps), FLOOR);
    }

    #[test]
    fn the_most_generous_app_sets_the_cap() {
        let mut apps: Vec<_> = AppList::parse("1:k1:s,2:k2:s")
            .unwrap()
            .iter()
            .cloned()
            .collect();
        apps[1].limits.max_data_bytes = 1 << 20;
        let apps = AppList::new(apps).unwrap();
        assert_eq!(
            max_client_message_bytes(&apps),
            6 * (200 + (1 << 20)) + 200 + 256
        );
    }

    #[test]
    fn handshake_channels_count_up_to_the_channel_cap() {
        let limits = Limits {
            max_data_bytes: 0,
            max_presence_user_info_bytes: 0,
            ..Limits::default()
        };
        let handshake = 3 + 100 * (200 + POSITION_LEN + 32) + FRAMING;
        assert_eq!(largest_message(&limits, 3), handshake);
        let fewer = Limits {
            max_channels_per_socket: 10,
            ..limits
        };
        assert!(largest_message(&fewer, 3) < handshake);
    }
}
