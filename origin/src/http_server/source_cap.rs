//! `SourceCap`: how many connections one client address may hold open.
//!
//! Every connection, including the WebSocket it may become, holds a descriptor;
//! without a cap, one host opening thousands of idle connections exhausts the
//! process's descriptors and every other client is refused with it. A
//! connection counts from its acceptance until its socket is closed: the
//! [`Admitted`] wrapper carries the count with the socket, also after hyper
//! hands an upgraded connection to the WebSocket code.
//!
//! IPv6 clients are counted per /64 network: one host usually holds a whole
//! /64, so counting single addresses would not limit it at all.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The key connections are counted under: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// An IPv4 address.
    V4(u32),
    /// An IPv6 /64 network prefix.
    V6(u64),
}

impl Source {
    /// The source `ip` counts under (an IPv4-mapped IPv6 address as its IPv4).
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.into()),
                None => Source::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Open connections per source, with a cap (`0`: no cap, nothing counted).
#[derive(Debug, Clone)]
pub(crate) struct SourceCap {
    limit: usize,
    open: Arc<Mutex<HashMap<Source, usize>>>,
}

impl SourceCap {
    /// At most `limit` open connections per source; `0` for no cap.
    pub(crate) fn new(limit: usize) -> Self {
        SourceCap {
            limit,
            open: Arc::default(),
        }
    }

    /// Counts a new connection from `ip`, or `None` when its source already
    /// holds the limit (the caller closes the connection).
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<SourceTicket> {
        if self.limit == 0 {
            return Some(SourceTicket(None));
        }
        let source = Source::of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(source).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(SourceTicket(Some((self.clone(), source))))
    }

    /// How many connections `ip`'s source holds.
    #[cfg(test)]
    pub(crate) fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&Source::of(ip)).copied().unwrap_or(0)
    }

    fn release(&self, source: Source) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                open.remove(&source);
            }
        }
    }
}

/// One admitted connection's place in its source's count, given back on drop.
#[derive(Debug)]
pub(crate) struct SourceTicket(Option<(SourceCap, Source)>);

impl Drop for SourceTicket {
    fn drop(&mut self) {
        if let Some((cap, source)) = self.0.take() {
            cap.release(source);
        }
    }
}

/// A connection with its [`SourceTicket`]: the count lasts as long as the socket.
#[derive(Debug)]
pub(crate) struct Admitted<T> {
    io: T,
    _ticket: SourceTicket,
}

impl<T> Admitted<T> {
    /// `io`, counted by `ticket`.
    pub(crate) fn new(io: T, ticket: SourceTicket) -> Self {
        Admitted {
            io,
            _ticket: ticket,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Admitted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Admitted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_holds_at_most_the_limit_until_it_closes_some() {
        let cap = SourceCap::new(2);
        let a = cap.admit(ip("10.0.0.1")).unwrap();
        let b = cap.admit(ip("::ffff:10.0.0.1")).unwrap();
        assert!(cap.admit(ip("10.0.0.1")).is_none());
        // Another source is unaffected.
        let other = cap.admit(ip("10.0.0.2")).unwrap();
        drop(a);
        let c = cap.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(cap.open_from(ip("10.0.0.1")), 2);
        drop((b, c, other));
        assert_eq!(cap.open_from(ip("10.0.0.1")), 0);
        assert!(
            cap.open.lock().unwrap().is_empty(),
            "emptied sources are forgotten"
        );
    }

    #[test]
    fn ipv6_counts_per_64() {
        assert_eq!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8::ffff:2"))
        );
        assert_ne!(
            Source::of(ip("2001:db8::1")),
            Source::of(ip("2001:db8:0:1::1"))
        );
        assert_ne!(Source::of(ip("::")), Source::of(ip("0.0.0.0")));
    }

    #[test]
    fn zero_means_no_cap() {
        let cap = SourceCap::new(0);
        let tickets: Vec<_> = (0..100)
            .map(|_| cap.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(tickets.len(), 100);
        assert_eq!(cap.open_from(ip("10.0.0.1")), 0);
    }
}
