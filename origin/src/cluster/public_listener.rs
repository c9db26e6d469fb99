//! `bind_public`: the origin's public listening socket, with an accept queue
//! deep enough for a reconnect storm.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept queue asked for (the kernel caps it at `net.core.somaxconn`,
/// 4,096 by default on current Linux). Tokio's `TcpListener::bind` takes
/// mio's default, 128 in the version this build uses: a few hundred clients
/// reconnecting at once (after a worker restart, a network blip) overflowed
/// it and each waited a whole SYN retransmission (1 s, then 3 s).
pub(crate) const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` (address reuse on, as `TcpListener::bind` sets it) and
/// listens with [`LISTEN_BACKLOG`].
pub(crate) fn bind_public(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// More clients than the old default queue held connect at once, with
    /// nobody accepting yet: every connect completes at once (a full queue
    /// would drop the handshake and leave the extra ones waiting a second).
    #[tokio::test]
    async fn a_burst_of_connects_fits_the_accept_queue() {
        let listener = bind_public("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let burst = 600;
        let connected = tokio::task::spawn_blocking(move || {
            (0..burst)
                .map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .unwrap();
        assert_eq!(connected.expect("every connect completed").len(), burst);
        drop(listener);
    }
}
