//! The URL paths that layers in front of the worker's router look at: the
//! master's sticky routing (on a peeked request line) and the worker's HTTP
//! layers (CORS, sticky-session claims, head trimming).

/// Whether `path` is Socket.IO's (socketioxide's default `/socket.io/`).
pub(crate) fn is_socket_io(path: &str) -> bool {
    path.starts_with("/socket.io")
}

/// Whether `path` is the Pusher-protocol endpoint's (`/app/{key}`; the
/// trigger API's `/apps/…` is not).
pub(crate) fn is_pusher(path: &str) -> bool {
    path.starts_with("/app/")
}
