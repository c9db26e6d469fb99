//! The master's queue of control frames to one worker: bounded, and never
//! waited on.
//!
//! Delivering must not wait on one slow worker, and a queue without a bound
//! lets a worker that stopped reading grow the master's memory until it dies.
//! So a full queue marks its worker stuck: the master stops routing to it and
//! its supervisor kills it; it is restarted, and its clients reconnect and
//! recover what they missed from the channels' history.

use std::sync::Arc;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc};

/// Frames queued for one worker before it counts as stuck. A worker reading
/// normally keeps a handful queued; this many is seconds of a busy cluster's
/// deliveries that it did not read.
pub(super) const CONTROL_QUEUE_FRAMES: usize = 65_536;

/// The sending end of one worker's control frames.
#[derive(Debug)]
pub(super) struct ControlQueue {
    frames: mpsc::Sender<Vec<u8>>,
    stop: Arc<Notify>,
}

/// The worker's queue is full: it has stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stuck;

impl ControlQueue {
    /// A queue of at most `capacity` frames; the receiver feeds the worker's
    /// socket, and the [`Notify`] is signalled when the worker must be stopped.
    pub(super) fn new(capacity: usize) -> (Self, mpsc::Receiver<Vec<u8>>, Arc<Notify>) {
        let (frames, receiver) = mpsc::channel(capacity);
        let stop = Arc::new(Notify::new());
        let queue = ControlQueue {
            frames,
            stop: stop.clone(),
        };
        (queue, receiver, stop)
    }

    /// Queues `frame` without waiting. On a full queue the frame is dropped,
    /// the worker's stop is signalled and [`Stuck`] returned. A worker whose
    /// socket already closed is being forgotten elsewhere: its frames are dropped.
    pub(super) fn push(&self, frame: Vec<u8>) -> Result<(), Stuck> {
        match self.frames.try_send(frame) {
            Ok(()) | Err(TrySendError::Closed(_)) => Ok(()),
            Err(TrySendError::Full(_)) => {
                // A stored permit: the supervisor sees it even if it is not waiting yet.
                self.stop.notify_one();
                Err(Stuck)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_stops_its_worker_without_waiting() {
        let (queue, mut receiver, stop) = ControlQueue::new(2);
        assert_eq!(queue.push(vec![1]), Ok(()));
        assert_eq!(queue.push(vec![2]), Ok(()));
        assert_eq!(queue.push(vec![3]), Err(Stuck));
        // Signalled before anyone waited.
        tokio::time::timeout(std::time::Duration::from_secs(5), stop.notified())
            .await
            .expect("the stop is signalled");
        assert_eq!(receiver.recv().await, Some(vec![1]));
        drop(receiver);
        assert_eq!(queue.push(vec![4]), Ok(()), "a closed queue is not stuck");
    }
}
