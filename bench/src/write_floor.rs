//! The box's floor for fan-out (`pushwire-bench --write-floor`): the sender
//! CPU of one small `write()` to a connected loopback TCP socket, the least a
//! server can spend per delivered message here.
//!
//! A sender thread writes `bytes` to each of `connections` connected sockets
//! in turn (`TCP_NODELAY`, blocking: a full socket waits without CPU) while a
//! reader thread drains the other ends. Only the sender thread's CPU is
//! counted; on loopback it includes the receive path the kernel runs in the
//! sender's context, as a server's writes do.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct FloorConfig {
    /// Connected socket pairs.
    pub connections: usize,
    /// Bytes per write (about one small event frame).
    pub bytes: usize,
    /// How long the sender writes.
    pub duration: Duration,
}

/// The measurement.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FloorReport {
    /// Connected socket pairs.
    pub connections: usize,
    /// Bytes per write.
    pub bytes: usize,
    /// Writes made.
    pub writes: u64,
    /// The sender thread's CPU seconds (user + system).
    pub sender_cpu_seconds: f64,
    /// Sender CPU per write, microseconds: the floor.
    pub us_per_write: f64,
}

/// Opens the sockets, writes for `config.duration` and reports the sender's
/// CPU per write.
pub fn measure(config: FloorConfig) -> io::Result<FloorReport> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut senders = Vec::with_capacity(config.connections);
    let mut receivers = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let sender = TcpStream::connect(addr)?;
        sender.set_nodelay(true)?;
        let (receiver, _) = listener.accept()?;
        receiver.set_nonblocking(true)?;
        senders.push(sender);
        receivers.push(receiver);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn({
        let stop = stop.clone();
        move || drain(receivers, &stop)
    });
    let payload = vec![b'x'; config.bytes.max(1)];
    let cpu_before = crate::proc_stats::thread_cpu_seconds();
    let deadline = Instant::now() + config.duration;
    let mut writes = 0u64;
    'writing: loop {
        for socket in &mut senders {
            socket.write_all(&payload)?;
            writes += 1;
        }
        if Instant::now() >= deadline {
            break 'writing;
        }
    }
    let sender_cpu_seconds = crate::proc_stats::thread_cpu_seconds() - cpu_before;
    stop.store(true, Ordering::Relaxed);
    drop(senders);
    reader
        .join()
        .map_err(|_| io::Error::other("the reader thread panicked"))??;
    Ok(FloorReport {
        connections: config.connections,
        bytes: config.bytes,
        writes,
        sender_cpu_seconds,
        us_per_write: sender_cpu_seconds * 1e6 / writes.max(1) as f64,
    })
}

/// Reads whatever each socket holds, round after round, until told to stop.
fn drain(mut sockets: Vec<TcpStream>, stop: &AtomicBool) -> io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        for socket in &mut sockets {
            match socket.read(&mut buffer) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_some_writes() {
        let report = measure(FloorConfig {
            connections: 4,
            bytes: 80,
            duration: Duration::from_millis(50),
        })
        .unwrap();
        assert!(report.writes >= 4, "{report:?}");
        assert!(report.us_per_write >= 0.0);
    }
}
