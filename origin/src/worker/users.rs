//! Signing a connection in as a user, for both protocols: the signature
//! check (`pushwire_shared::user_auth`), then the connection joins its user's
//! channel `#server-to-user-<id>` like any subscription (counted by the
//! registry, so the worker receives the channel from the broker, but not
//! reported to the directory). Events sent to the user, and the order to
//! terminate its connections, arrive there.

use pushwire_shared::client_protocol::{AckCode, AckError, SubscribeRequest};
use pushwire_shared::keys::KeySpace;
use pushwire_shared::user_auth::{self, SignedIn, UserAuthError};
use serde_json::Value;

use super::WorkerContext;
use super::session::SocketSession;
use super::subscription::admit;

/// What a terminated connection is told, with code 4009, before it is closed.
pub(crate) const TERMINATED_MESSAGE: &str =
    "the user's connections were terminated by the app's backend";

/// Signs `session` in with a `signin` payload `{"auth", "user_data"}` and
/// joins its user's channel; `join` adds the connection to the channel's room
/// (its protocol's way), called while the session's channels are locked. A
/// second sign-in as the same user succeeds again; as another user it is
/// refused (a connection is one user).
pub(crate) async fn sign_in(
    payload: Option<&Value>,
    ctx: &WorkerContext,
    session: &SocketSession,
    join: impl FnOnce(String),
) -> Result<SignedIn, AckError> {
    let signed_in =
        user_auth::signin(&session.app, session.socket_id.as_str(), payload).map_err(refusal)?;
    let user = session.user.get_or_init(|| signed_in.user_id.clone());
    if *user != signed_in.user_id {
        return Err(AckError::new(
            AckCode::Unauthorized,
            format!("this connection is signed in as {user:?} already"),
        ));
    }
    let channel = signed_in.channel();
    let mut channels = session.channels.lock().await;
    if !channels.contains(&channel) {
        let req = SubscribeRequest {
            channel: channel.clone(),
            auth: None,
            channel_data: None,
            since: None,
        };
        admit(&channels, &req, ctx, session).await?;
        join(KeySpace::DEFAULT.channel(&session.app.id, &channel));
        channels.insert(channel);
    }
    tracing::debug!(socket_id = %session.socket_id, app = %session.app.id, user = %signed_in.user_id, "signed in");
    Ok(signed_in)
}

/// The ack code of a refused sign-in: a payload of the wrong shape is
/// malformed (4000), anything about the signature or the user is 4009.
fn refusal(e: UserAuthError) -> AckError {
    let code = match e {
        UserAuthError::Malformed => AckCode::Malformed,
        _ => AckCode::Unauthorized,
    };
    AckError::new(code, e.to_string())
}
