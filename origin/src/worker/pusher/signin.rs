//! `pusher:signin`: the connection signs in as a user (`{auth, user_data}`,
//! as pusher-js sends what the app's user-authentication endpoint returned)
//! and joins the user's channel, where events sent to the user arrive.
//!
//! A refused sign-in is fatal, as with Pusher: a `pusher:error` with code
//! 4009 and a close with 4009, which pusher-js takes as "refused" (it does not
//! reconnect). A sign-in that fails because the broker is unavailable closes
//! with 4200 instead: pusher-js reconnects and signs in again.

use pushwire_shared::client_protocol::AckCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::frames::{self, ErrorCode};
use super::rooms::{PusherRooms, Subscriber};
use crate::worker::WorkerContext;
use crate::worker::session::SocketSession;
use crate::worker::users;

/// Handles a `pusher:signin`'s `data`; returns the frames to send (the
/// success), or orders the connection closed.
pub(super) async fn signin(
    data: &Value,
    ctx: &WorkerContext,
    session: &SocketSession,
    rooms: &PusherRooms,
    subscriber: &Subscriber,
) -> Vec<Utf8Bytes> {
    let joined = users::sign_in(Some(data), ctx, session, |room| {
        rooms.join(room, session.socket_id.clone(), subscriber.clone());
    })
    .await;
    match joined {
        Ok(signed_in) => vec![frames::signin_success(&signed_in.user_data).into()],
        Err(e) => {
            tracing::debug!(socket_id = %session.socket_id, app = %session.app.id, error = %e, "pusher signin refused");
            let (code, text) = match e.code {
                AckCode::Unavailable => (
                    ErrorCode::Reconnect,
                    format!("cannot sign in now; reconnect: {}", e.message),
                ),
                _ => (
                    ErrorCode::Unauthorized,
                    format!("connection is unauthorized: {}", e.message),
                ),
            };
            subscriber.close.order(code, text);
            Vec::new()
        }
    }
}
