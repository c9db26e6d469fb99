//! User authentication (Pusher's `signin`): a connection proves who its user
//! is with a signature from the app's backend, and then receives the events
//! sent to that user on the user's channel, `#server-to-user-<id>`.
//!
//! The backend signs `<socket_id>::user::<user_data>` with the app secret
//! (the npm `pusher` SDK's `authenticateUser(socketId, userData)` returns
//! `{auth, user_data}`); `user_data` is JSON text holding at least a string
//! `id`. Both protocols and the trigger API read user ids through here, so a
//! user's channel is named the same way everywhere.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::app::App;
use crate::channel::{ChannelName, USER_CHANNEL_PREFIX};
use crate::presence::MAX_USER_ID_LEN;

/// Why a sign-in (or a user id) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserAuthError {
    /// The sign-in payload is not `{"auth": "…", "user_data": "…"}`.
    #[error(
        "signin expects an object {{\"auth\": \"<key>:<signature>\", \"user_data\": \"<json>\"}}"
    )]
    Malformed,
    /// `auth` is not `key:signature`.
    #[error("auth must be \"<app_key>:<signature>\"")]
    MalformedAuth,
    /// `auth` names another app's key.
    #[error("auth is signed for another app key")]
    WrongKey,
    /// The signature does not match this socket and `user_data`.
    #[error("invalid signin signature for this socket and user_data")]
    BadSignature,
    /// `user_data` is not a JSON object.
    #[error("user_data must be the JSON text of an object with a string \"id\"")]
    UserDataNotObject,
    /// `user_data` has no string `id`.
    #[error("user_data has no string \"id\"")]
    NoId,
    /// The id is empty, too long or holds a character a channel name cannot.
    #[error(
        "user id {0:?} is invalid: 1 to {MAX_USER_ID_LEN} bytes of letters, digits and -_=@,.;"
    )]
    InvalidId(String),
}

/// A user who signed in: the id and the exact `user_data` text that was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// `user_data.id`.
    pub user_id: String,
    /// `user_data` as the client sent it (echoed back in the success message).
    pub user_data: String,
}

impl SignedIn {
    /// The user's channel, `#server-to-user-<id>`.
    pub fn channel(&self) -> ChannelName {
        user_channel(&self.user_id).expect("a signed-in id is a valid user id")
    }
}

/// Checks a user id: 1 to [`MAX_USER_ID_LEN`] bytes, each one a channel
/// name's character, so that `#server-to-user-<id>` is a channel name.
///
/// ```
/// use pushwire_shared::user_auth::validate_user_id;
/// assert!(validate_user_id("alice@example.com").is_ok());
/// assert!(validate_user_id("a b").is_err());
/// ```
pub fn validate_user_id(id: &str) -> Result<(), UserAuthError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_USER_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=@,.;".contains(c));
    if valid {
        Ok(())
    } else {
        Err(UserAuthError::InvalidId(crate::channel::truncate(id, 64)))
    }
}

/// The channel carrying events sent to user `id`.
///
/// ```
/// use pushwire_shared::user_auth::user_channel;
/// assert_eq!(user_channel("42").unwrap().as_str(), "#server-to-user-42");
/// assert!(user_channel("").is_err());
/// ```
pub fn user_channel(id: &str) -> Result<ChannelName, UserAuthError> {
    validate_user_id(id)?;
    ChannelName::new(&format!("{USER_CHANNEL_PREFIX}{id}"))
        .map_err(|_| UserAuthError::InvalidId(id.to_owned()))
}

fn mac(app: &App, socket_id: &str, user_data: &str) -> Hmac<Sha256> {
    let mut mac = crate::signing::hmac_sha256(&app.secret);
    mac.update(socket_id.as_bytes());
    mac.update(b"::user::");
    mac.update(user_data.as_bytes());
    mac
}

/// The `auth` a backend returns for signing `socket_id` in with `user_data`:
/// `"<key>:<hex HMAC-SHA256(secret, "<socket_id>::user::<user_data>")>"`.
///
/// ```
/// use pushwire_shared::{user_auth, AppList};
/// let apps = AppList::parse("1:key:secret").unwrap();
/// let app = apps.single().unwrap();
/// let user_data = r#"{"id":"42"}"#;
/// let auth = user_auth::sign(app, "1.2", user_data);
/// let signed_in = user_auth::verify(app, "1.2", &auth, user_data).unwrap();
/// assert_eq!(signed_in.user_id, "42");
/// assert_eq!(signed_in.channel().as_str(), "#server-to-user-42");
/// assert!(user_auth::verify(app, "1.3", &auth, user_data).is_err());
/// ```
pub fn sign(app: &App, socket_id: &str, user_data: &str) -> String {
    let signature = mac(app, socket_id, user_data).finalize().into_bytes();
    format!("{}:{}", app.key, hex::encode(signature))
}

/// Checks a sign-in of `socket_id` (in constant time), then reads the user id
/// from `user_data`.
pub fn verify(
    app: &App,
    socket_id: &str,
    auth: &str,
    user_data: &str,
) -> Result<SignedIn, UserAuthError> {
    let (key, signature) = auth.split_once(':').ok_or(UserAuthError::MalformedAuth)?;
    if key != app.key {
        return Err(UserAuthError::WrongKey);
    }
    let signature = hex::decode(signature).map_err(|_| UserAuthError::BadSignature)?;
    mac(app, socket_id, user_data)
        .verify_slice(&signature)
        .map_err(|_| UserAuthError::BadSignature)?;
    let user_id = user_id_of(user_data)?;
    Ok(SignedIn {
        user_id,
        user_data: user_data.to_owned(),
    })
}

/// The `id` of `user_data` (JSON text of an object with a string `id`).
fn user_id_of(user_data: &str) -> Result<String, UserAuthError> {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(user_data) else {
        return Err(UserAuthError::UserDataNotObject);
    };
    let Some(Value::String(id)) = obj.get("id") else {
        return Err(UserAuthError::NoId);
    };
    validate_user_id(id)?;
    Ok(id.clone())
}

/// Reads a sign-in payload, `{"auth", "user_data"}` (an object or its JSON
/// text), and verifies it for `socket_id`.
///
/// ```
/// use pushwire_shared::{user_auth, AppList};
/// use serde_json::json;
/// let apps = AppList::parse("1:key:secret").unwrap();
/// let app = apps.single().unwrap();
/// let user_data = r#"{"id":"a"}"#;
/// let payload = json!({"auth": user_auth::sign(app, "1.2", user_data), "user_data": user_data});
/// assert_eq!(user_auth::signin(app, "1.2", Some(&payload)).unwrap().user_id, "a");
/// assert!(user_auth::signin(app, "1.2", Some(&json!("nope"))).is_err());
/// ```
pub fn signin(
    app: &App,
    socket_id: &str,
    payload: Option<&Value>,
) -> Result<SignedIn, UserAuthError> {
    let parsed;
    let obj = match payload {
        Some(Value::Object(obj)) => obj,
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(obj)) => {
                parsed = obj;
                &parsed
            }
            _ => return Err(UserAuthError::Malformed),
        },
        _ => return Err(UserAuthError::Malformed),
    };
    match (obj.get("auth"), obj.get("user_data")) {
        (Some(Value::String(auth)), Some(Value::String(user_data))) => {
            verify(app, socket_id, auth, user_data)
        }
        _ => Err(UserAuthError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Limits;
    use serde_json::json;

    fn app() -> App {
        App {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
            limits: Limits::default(),
        }
    }

    /// The npm `pusher` SDK 5.2.0's
    /// `authenticateUser("1234.1234", {id: "12345"})` with the app above.
    const SDK_USER_DATA: &str = r#"{"id":"12345"}"#;
    const SDK_AUTH: &str =
        "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba";

    #[test]
    fn signs_what_the_sdk_signs() {
        let auth = sign(&app(), "1234.1234", SDK_USER_DATA);
        assert_eq!(auth, SDK_AUTH);
        let signed_in = verify(&app(), "1234.1234", SDK_AUTH, SDK_USER_DATA).unwrap();
        assert_eq!(
            signed_in,
            SignedIn {
                user_id: "12345".into(),
                user_data: SDK_USER_DATA.into()
            }
        );
        assert_eq!(signed_in.channel().as_str(), "#server-to-user-12345");
    }

    #[test]
    fn refuses_other_sockets_data_keys_and_shapes() {
        let app = app();
        let auth = sign(&app, "1.1", SDK_USER_DATA);
        assert_eq!(
            verify(&app, "1.2", &auth, SDK_USER_DATA),
            Err(UserAuthError::BadSignature)
        );
        assert_eq!(
            verify(&app, "1.1", &auth, r#"{"id":"other"}"#),
            Err(UserAuthError::BadSignature)
        );
        assert_eq!(
            verify(&app, "1.1", "nokey", SDK_USER_DATA),
            Err(UserAuthError::MalformedAuth)
        );
        assert_eq!(
            verify(&app, "1.1", &auth.replace("278d", "999d"), SDK_USER_DATA),
            Err(UserAuthError::WrongKey)
        );
        assert_eq!(
            verify(&app, "1.1", "278d425bdf160c739803:zz", SDK_USER_DATA),
            Err(UserAuthError::BadSignature)
        );
        for (user_data, error) in [
            ("not json", UserAuthError::UserDataNotObject),
            ("[1]", UserAuthError::UserDataNotObject),
            (r#"{"name":"x"}"#, UserAuthError::NoId),
            (r#"{"id":42}"#, UserAuthError::NoId),
            (r#"{"id":""}"#, UserAuthError::InvalidId(String::new())),
            (r#"{"id":"a b"}"#, UserAuthError::InvalidId("a b".into())),
        ] {
            let auth = sign(&app, "1.1", user_data);
            assert_eq!(
                verify(&app, "1.1", &auth, user_data),
                Err(error),
                "{user_data}"
            );
        }
    }

    #[test]
    fn payloads() {
        let app = app();
        let auth = sign(&app, "1.1", SDK_USER_DATA);
        let object = json!({"auth": auth, "user_data": SDK_USER_DATA});
        assert!(signin(&app, "1.1", Some(&object)).is_ok());
        let text = Value::String(object.to_string());
        assert!(signin(&app, "1.1", Some(&text)).is_ok());
        for bad in [
            json!(null),
            json!({"auth": auth}),
            json!({"auth": auth, "user_data": {"id": "12345"}}),
            json!("{nope"),
        ] {
            assert_eq!(
                signin(&app, "1.1", Some(&bad)),
                Err(UserAuthError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(signin(&app, "1.1", None), Err(UserAuthError::Malformed));
    }

    #[test]
    fn user_ids_make_channel_names() {
        let longest = "u".repeat(MAX_USER_ID_LEN);
        assert!(user_channel(&longest).is_ok());
        assert!(user_channel(&format!("{longest}u")).is_err());
        for bad in ["", "a b", "a#b", "é", "a:b"] {
            assert!(validate_user_id(bad).is_err(), "{bad:?}");
        }
    }
}
