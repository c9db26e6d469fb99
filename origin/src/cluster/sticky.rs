//! `StickyRouter`: which worker gets a new connection.
//!
//! The master reads (peeks) the first request line of every accepted connection.
//! A Socket.IO request naming an Engine.IO session (`sid=` in the query) goes to
//! the worker that claimed that session; anything else (a new session, a
//! WebSocket-only handshake, the trigger API) goes to the next ready worker in
//! turn, so sessions spread evenly even when every client has the same IP.
//!
//! Workers claim a polling session's sid before its handshake response leaves
//! them, so the master always knows the sid before the client can use it.
//! Claims expire after [`SESSION_TTL`] without a request naming them: a live
//! polling session polls at least every ping interval, and a session that
//! upgraded to WebSocket no longer needs routing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(crate) use crate::broker::embedded::WorkerId;

/// How long a claimed session is remembered without a request naming it.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(120);

/// What a request line says about where it must go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteHint {
    /// A request of an existing Engine.IO session.
    Session(String),
    /// `/ready`: the master answers it itself.
    Readiness,
    /// Anything else.
    Fresh,
}

/// Reads the request line at the start of `head` (the bytes peeked so far).
/// Returns `None` while the line is incomplete.
pub(crate) fn route_hint(head: &[u8]) -> Option<RouteHint> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&head[..end]).unwrap_or("");
    let target = line.split(' ').nth(1).unwrap_or("");
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path == "/ready" {
        return Some(RouteHint::Readiness);
    }
    let Some((path, query)) = target.split_once('?') else {
        return Some(RouteHint::Fresh);
    };
    if !crate::paths::is_socket_io(path) {
        return Some(RouteHint::Fresh);
    }
    let sid = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sid="))
        .filter(|sid| !sid.is_empty());
    Some(match sid {
        Some(sid) => RouteHint::Session(sid.to_owned()),
        None => RouteHint::Fresh,
    })
}

/// Session → worker table plus round-robin over ready workers.
#[derive(Debug, Default)]
pub(crate) struct StickyRouter {
    sessions: HashMap<String, (WorkerId, Instant)>,
    ready: Vec<WorkerId>,
    next: usize,
}

impl StickyRouter {
    /// An empty router: no worker ready yet.
    pub(crate) fn new() -> Self {
        StickyRouter::default()
    }

    /// Marks `worker` ready for new connections.
    pub(crate) fn add_ready(&mut self, worker: WorkerId) {
        if !self.ready.contains(&worker) {
            self.ready.push(worker);
            self.ready.sort_unstable();
        }
    }

    /// The workers connections go to.
    pub(crate) fn ready_workers(&self) -> &[WorkerId] {
        &self.ready
    }

    /// Forgets `worker` (it died or is stopping) and every session it held.
    pub(crate) fn remove_worker(&mut self, worker: WorkerId) {
        self.ready.retain(|&w| w != worker);
        self.sessions.retain(|_, (w, _)| *w != worker);
    }

    /// Records that `worker` holds session `sid`.
    pub(crate) fn claim(&mut self, sid: String, worker: WorkerId, now: Instant) {
        self.sessions.insert(sid, (worker, now));
    }

    /// Picks the worker for a connection; `None` when no worker is ready.
    pub(crate) fn pick(&mut self, hint: &RouteHint, now: Instant) -> Option<WorkerId> {
        // An unknown session falls through: any worker answers "Session ID unknown".
        if let RouteHint::Session(sid) = hint
            && let Some((worker, seen)) = self.sessions.get_mut(sid.as_str())
        {
            *seen = now;
            return Some(*worker);
        }
        if self.ready.is_empty() {
            return None;
        }
        let worker = self.ready[self.next % self.ready.len()];
        self.next = self.next.wrapping_add(1);
        Some(worker)
    }

    /// Drops sessions not seen for [`SESSION_TTL`].
    pub(crate) fn expire(&mut self, now: Instant) {
        self.sessions
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < SESSION_TTL);
    }

    /// How many sessions are remembered.
    #[cfg(test)]
    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_names_its_session() {
        let hint = route_hint(b"GET /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\n");
        assert_eq!(hint, Some(RouteHint::Session("abc".into())));
        assert_eq!(
            route_hint(b"POST /apps/1/events HTTP/1.1\r\n"),
            Some(RouteHint::Fresh)
        );
        assert_eq!(route_hint(b"GET /socket.io/?sid="), None);
    }

    #[test]
    fn hints() {
        let hint = |s: &str| route_hint(s.as_bytes());
        assert_eq!(
            hint("GET /socket.io/?EIO=4&transport=websocket&sid=x1 HTTP/1.1\r\nHost: a\r\n"),
            Some(RouteHint::Session("x1".into()))
        );
        assert_eq!(
            hint("GET /socket.io/?EIO=4&transport=polling&t=1 HTTP/1.1\n"),
            Some(RouteHint::Fresh)
        );
        assert_eq!(
            hint("GET /socket.io/?EIO=4&sid= HTTP/1.1\n"),
            Some(RouteHint::Fresh)
        );
        assert_eq!(hint("GET /other?sid=x HTTP/1.1\n"), Some(RouteHint::Fresh));
        assert_eq!(hint("GET / HTTP/1.1\n"), Some(RouteHint::Fresh));
        assert_eq!(hint("GET /ready HTTP/1.1\n"), Some(RouteHint::Readiness));
        assert_eq!(
            hint("HEAD /ready?x=1 HTTP/1.1\n"),
            Some(RouteHint::Readiness)
        );
        assert_eq!(hint("GET /readyz HTTP/1.1\n"), Some(RouteHint::Fresh));
        assert_eq!(hint("\u{1}\u{2}garbage\n"), Some(RouteHint::Fresh));
        assert_eq!(hint("GET /socket.io/?EIO=4"), None);
    }

    #[test]
    fn fresh_connections_rotate_over_ready_workers() {
        let now = Instant::now();
        let mut router = StickyRouter::new();
        assert_eq!(router.pick(&RouteHint::Fresh, now), None);
        for w in [0, 1, 2] {
            router.add_ready(w);
        }
        let picks: Vec<_> = (0..6)
            .map(|_| router.pick(&RouteHint::Fresh, now).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn sessions_stick_until_their_worker_goes_or_they_expire() {
        let t0 = Instant::now();
        let mut router = StickyRouter::new();
        router.add_ready(0);
        router.add_ready(1);
        router.claim("s".into(), 1, t0);
        let s = RouteHint::Session("s".into());
        for _ in 0..5 {
            assert_eq!(router.pick(&s, t0), Some(1));
        }
        // Seen at t0 + 100 s, so still alive at t0 + 200 s.
        router.pick(&s, t0 + Duration::from_secs(100));
        router.expire(t0 + Duration::from_secs(200));
        assert_eq!(router.session_count(), 1);
        router.expire(t0 + Duration::from_secs(221));
        assert_eq!(router.session_count(), 0);

        router.claim("t".into(), 1, t0);
        router.remove_worker(1);
        assert_eq!(router.session_count(), 0);
        assert_eq!(router.pick(&RouteHint::Session("t".into()), t0), Some(0));
    }
}
