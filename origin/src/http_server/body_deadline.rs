//! `DeadlineBody`: a request body that must arrive whole within a deadline.
//!
//! Hyper's header-read timeout ends once the head is parsed; a client could
//! then send its body one byte a minute and hold the connection (and whatever
//! the handler buffered) for as long as it likes. Every request body is wrapped
//! in a `DeadlineBody`, which fails with [`BodyDeadlineExceeded`] once the
//! deadline, counted from the moment the head arrived, has passed. The handlers
//! answer that failure with `408 Request Timeout` (see [`body_deadline_of`]).

use std::error::Error;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use http_body::Frame;
use tokio::time::{Instant, Sleep};

use super::log_throttle::LogThrottle;

/// The error a [`DeadlineBody`] fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub(crate) struct BodyDeadlineExceeded(pub Duration);

/// The timeout a body read failed on, when `error` (or one of its sources: the
/// body reader's error chain wraps it once per layer) is a
/// [`BodyDeadlineExceeded`].
pub(crate) fn body_deadline_of(error: &(dyn Error + 'static)) -> Option<Duration> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(BodyDeadlineExceeded(timeout)) = e.downcast_ref() {
            return Some(*timeout);
        }
        next = e.source();
    }
    None
}

static EXPIRED: LogThrottle = LogThrottle::new();

/// A body that fails once `timeout` has passed since it was created.
#[derive(Debug)]
pub(crate) struct DeadlineBody {
    inner: Body,
    timeout: Duration,
    until: Instant,
    /// The timer, armed on the first poll that has to wait: a body that is
    /// never read, or read at once, costs no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    /// `inner`, due within `timeout` from now.
    pub(crate) fn new(inner: Body, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            timeout,
            until: Instant::now() + timeout,
            timer: None,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let until = this.until;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if let Some(skipped) = EXPIRED.hit(std::time::Instant::now()) {
            tracing::warn!(
                timeout = ?this.timeout,
                similar_since_last_report = skipped,
                "dropped a request whose body did not arrive in time"
            );
        }
        Poll::Ready(Some(Err(BodyDeadlineExceeded(this.timeout).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_body_that_stalls_fails_at_the_deadline() {
        use futures_util::StreamExt;
        // One byte, then nothing: a client that stopped sending.
        let stalled = futures_util::stream::once(async { Ok::<_, std::io::Error>("a") })
            .chain(futures_util::stream::pending());
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let body = DeadlineBody::new(Body::from_stream(stalled), timeout);
        let err = body.collect().await.unwrap_err();
        assert_eq!(body_deadline_of(err.as_ref()), Some(timeout), "{err}");
        assert!(started.elapsed() >= timeout);
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_whole() {
        let body = DeadlineBody::new(Body::from("hello"), Duration::from_secs(10));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello");
    }

    #[test]
    fn the_deadline_is_found_in_a_wrapped_error() {
        let wrapped = axum::Error::new(BodyDeadlineExceeded(Duration::from_secs(1)));
        assert_eq!(body_deadline_of(&wrapped), Some(Duration::from_secs(1)));
        let boxed: axum::BoxError = Box::new(wrapped);
        assert_eq!(
            body_deadline_of(boxed.as_ref()),
            Some(Duration::from_secs(1))
        );
        assert_eq!(body_deadline_of(&std::io::Error::other("x")), None);
    }
}
