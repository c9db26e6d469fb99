//! Subscription signatures for `private-*` and `presence-*` channels.
//!
//! The app's backend signs `socket_id:channel` (private) or
//! `socket_id:channel:channel_data` (presence) with its secret; the client passes
//! the result as `auth` = `"{app_key}:{hex HMAC-SHA256}"` when it subscribes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::app::App;

/// Why a subscription signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelAuthError {
    /// `auth` is not `key:signature`.
    #[error("auth must be \"<app_key>:<signature>\"")]
    Malformed,
    /// `auth` names another app's key.
    #[error("auth is signed for another app key")]
    WrongKey,
    /// The signature does not match.
    #[error("invalid auth signature for this socket and channel")]
    BadSignature,
}

fn mac(app: &App, socket_id: &str, channel: &str, channel_data: Option<&str>) -> Hmac<Sha256> {
    let mut mac = crate::signing::hmac_sha256(&app.secret);
    mac.update(socket_id.as_bytes());
    mac.update(b":");
    mac.update(channel.as_bytes());
    if let Some(data) = channel_data {
        mac.update(b":");
        mac.update(data.as_bytes());
    }
    mac
}

/// The `auth` string a backend returns for this subscription.
///
/// ```
/// use pushwire_shared::{channel_auth, AppList};
/// let apps = AppList::parse("1:key:secret").unwrap();
/// let auth = channel_auth::sign(apps.single().unwrap(), "1.2", "private-a", None);
/// assert!(auth.starts_with("key:"));
/// ```
pub fn sign(app: &App, socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    let signature = mac(app, socket_id, channel, channel_data)
        .finalize()
        .into_bytes();
    format!("{}:{}", app.key, hex::encode(signature))
}

/// Checks `auth` for this subscription, in constant time.
pub fn verify(
    app: &App,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> Result<(), ChannelAuthError> {
    let (key, signature) = auth.split_once(':').ok_or(ChannelAuthError::Malformed)?;
    if key != app.key {
        return Err(ChannelAuthError::WrongKey);
    }
    let signature = hex::decode(signature).map_err(|_| ChannelAuthError::BadSignature)?;
    mac(app, socket_id, channel, channel_data)
        .verify_slice(&signature)
        .map_err(|_| ChannelAuthError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Limits;

    fn doc_app() -> App {
        App {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
            limits: Limits::default(),
        }
    }

    /// Pusher's documented private-channel example (socket 1234.1234, private-foobar).
    const DOC_AUTH: &str =
        "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";

    #[test]
    fn pusher_documentation_vector() {
        assert_eq!(
            sign(&doc_app(), "1234.1234", "private-foobar", None),
            DOC_AUTH
        );
        assert_eq!(
            verify(&doc_app(), "1234.1234", "private-foobar", None, DOC_AUTH),
            Ok(())
        );
    }

    #[test]
    fn refuses_other_sockets_channels_and_keys() {
        let app = doc_app();
        assert_eq!(
            verify(&app, "1234.1235", "private-foobar", None, DOC_AUTH),
            Err(ChannelAuthError::BadSignature)
        );
        assert_eq!(
            verify(&app, "1234.1234", "private-foobaz", None, DOC_AUTH),
            Err(ChannelAuthError::BadSignature)
        );
        assert_eq!(
            verify(&app, "1234.1234", "private-foobar", None, "nokey"),
            Err(ChannelAuthError::Malformed)
        );
        assert_eq!(
            verify(
                &app,
                "1234.1234",
                "private-foobar",
                None,
                &DOC_AUTH.replace("278d", "999d")
            ),
            Err(ChannelAuthError::WrongKey)
        );
        let presence = sign(&app, "1.1", "presence-x", Some(r#"{"user_id":"u"}"#));
        assert_eq!(
            verify(
                &app,
                "1.1",
                "presence-x",
                Some(r#"{"user_id":"u"}"#),
                &presence
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &app,
                "1.1",
                "presence-x",
                Some(r#"{"user_id":"v"}"#),
                &presence
            ),
            Err(ChannelAuthError::BadSignature)
        );
    }
}
