//! `GET /pushwire-recovery.js`: the optional browser/Node helper that remembers
//! each channel's last position and subscribes again with `since` after every
//! reconnection (see `PROTOCOL.md`, "Recovery").

use axum::Router;
use axum::http::header;
use axum::routing::get;

/// The helper's source, served as is.
pub(crate) const RECOVERY_HELPER: &str = include_str!("../../assets/pushwire-recovery.js");

/// The route serving [`RECOVERY_HELPER`].
pub(crate) fn routes() -> Router {
    Router::new().route(
        "/pushwire-recovery.js",
        get(|| async {
            (
                [
                    (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                    (header::CACHE_CONTROL, "max-age=3600"),
                ],
                RECOVERY_HELPER,
            )
        }),
    )
}
