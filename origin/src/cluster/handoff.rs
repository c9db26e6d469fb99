//! Passing accepted TCP connections from the master to a worker (`SCM_RIGHTS`
//! over a Unix datagram socket: one datagram = one byte + one descriptor, so a
//! descriptor never arrives split from its message).
//!
//! This is the only module with `unsafe`: turning a received raw descriptor into
//! an owned socket.

#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::{Duration, Instant};

use sendfd::{RecvWithFd, SendWithFd};
use tokio::net::{TcpStream, UnixDatagram};

use crate::http_server::LogThrottle;

static MISSING_DESCRIPTOR: LogThrottle = LogThrottle::new();
static RECEIVE_FAILED: LogThrottle = LogThrottle::new();

/// Sends `stream` to the worker behind `socket`. The master keeps its copy
/// until it drops `stream`; the worker's copy is independent.
pub(super) async fn send_connection(
    socket: &UnixDatagram,
    stream: &std::net::TcpStream,
) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    loop {
        socket.writable().await?;
        match socket.send_with_fd(&[1], &[fd]) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Receives the next connection sent with [`send_connection`].
pub(super) async fn recv_connection(socket: &UnixDatagram) -> io::Result<TcpStream> {
    loop {
        socket.readable().await?;
        let mut byte = [0u8; 1];
        let mut fds: [RawFd; 1] = [-1];
        match socket.recv_with_fd(&mut byte, &mut fds) {
            Ok((0, 0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok((_, 1)) => {
                // SAFETY: the kernel just installed this descriptor in our table for this
                // message (SCM_RIGHTS); nothing else refers to it, so we take ownership.
                let stream = unsafe { std::net::TcpStream::from_raw_fd(fds[0]) };
                stream.set_nonblocking(true)?;
                return TcpStream::from_std(stream);
            }
            Ok((_, fds)) => {
                // Nothing to serve: the master sent a connection but the kernel
                // could not install it here (this process is out of
                // descriptors, or the message was truncated).
                if let Some(skipped) = MISSING_DESCRIPTOR.hit(Instant::now()) {
                    tracing::warn!(
                        descriptors = fds,
                        similar_since_last_report = skipped,
                        "a connection from the master arrived without its descriptor and was lost (out of descriptors?)"
                    );
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The worker's listener: yields the connections the master hands over.
#[derive(Debug)]
pub(super) struct HandoffListener {
    socket: UnixDatagram,
    /// Reported as the local address (the public address the master listens on).
    public_addr: SocketAddr,
}

impl HandoffListener {
    /// A listener receiving on `socket`.
    pub(super) fn new(socket: UnixDatagram, public_addr: SocketAddr) -> Self {
        HandoffListener {
            socket,
            public_addr,
        }
    }
}

impl axum::serve::Listener for HandoffListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match recv_connection(&self.socket).await {
                Ok(stream) => {
                    let peer = stream.peer_addr().unwrap_or(self.public_addr);
                    return (stream, peer);
                }
                Err(e) => {
                    // A connection that died in transit, or descriptors exhausted: keep going.
                    if let Some(skipped) = RECEIVE_FAILED.hit(Instant::now()) {
                        tracing::warn!(
                            error = %e,
                            similar_since_last_report = skipped,
                            "receiving a connection from the master failed"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.public_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_datagram_without_a_descriptor_is_skipped() {
        let (master, worker) = UnixDatagram::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // What the worker sees when the kernel could not install a descriptor.
        master.send(&[1]).await.unwrap();
        send_connection(&master, &client).await.unwrap();
        let received = recv_connection(&worker).await.unwrap();
        assert_eq!(received.local_addr().unwrap(), client.local_addr().unwrap());
    }
}
