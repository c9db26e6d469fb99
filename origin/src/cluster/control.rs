//! `ControlClient`: the worker's side of the control socket: fire-and-forget
//! messages and requests that wait for the master's answer. It is the embedded
//! broker's [`Transport`] and the worker's [`SessionClaims`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot};

use super::ipc::{self, IpcError, RequestId, ToMaster, ToWorker};
use crate::broker::embedded::Transport;
use crate::broker::embedded::protocol::{Reply, Request};
use crate::broker::{BrokerError, BrokerFuture};
use crate::worker::SessionClaims;

/// Sends frames to the master and matches acks to requests.
#[derive(Debug)]
pub(crate) struct ControlClient {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    pending: Mutex<HashMap<RequestId, oneshot::Sender<ToWorker>>>,
    next_id: AtomicU64,
}

impl ControlClient {
    /// A client writing to `writer` from a background task.
    pub(crate) fn spawn(mut writer: impl AsyncWrite + Unpin + Send + 'static) -> Self {
        let (frames, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if ipc::write_frame(&mut writer, &frame).await.is_err() {
                    break;
                }
            }
        });
        ControlClient {
            frames,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, oneshot::Sender<ToWorker>>> {
        // Inserts and removes only: a poisoned map is still consistent.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a message that expects no answer.
    pub(crate) fn send(&self, message: &ToMaster) -> Result<(), IpcError> {
        self.frames
            .send(message.encode())
            .map_err(|_| IpcError::Closed)
    }

    /// Sends the message built from a fresh request id and waits for the answer
    /// carrying that id (an `Ack`, or the reply the request asks for).
    pub(crate) async fn request(
        &self,
        make: impl FnOnce(RequestId) -> ToMaster,
    ) -> Result<ToWorker, IpcError> {
        self.start(make)?.await.map_err(|_| IpcError::Closed)
    }

    /// Sends the message built from a fresh request id now; the receiver gets
    /// the answer carrying that id.
    fn start(
        &self,
        make: impl FnOnce(RequestId) -> ToMaster,
    ) -> Result<oneshot::Receiver<ToWorker>, IpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(id, tx);
        if let Err(e) = self.send(&make(id)) {
            self.pending().remove(&id);
            return Err(e);
        }
        Ok(rx)
    }

    /// Completes the request `id` with `answer` (called by the control reader).
    pub(crate) fn complete(&self, id: RequestId, answer: ToWorker) {
        if let Some(tx) = self.pending().remove(&id) {
            let _ = tx.send(answer);
        }
    }

    /// Fails every waiting request (the master is gone).
    pub(crate) fn close(&self) {
        self.pending().clear();
    }
}

impl SessionClaims for ControlClient {
    fn claim(&self, sid: String) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if let Err(e) = self.request(|id| ToMaster::Claim(id, sid)).await {
                tracing::warn!(error = %e, "could not claim a polling session");
            }
        })
    }
}

impl Transport for ControlClient {
    fn request(&self, request: Request) -> BrokerFuture<'_, Reply> {
        // Sent before the future is returned: the caller's order is the master's.
        let answer = self.start(|id| ToMaster::BrokerRequest(id, request));
        Box::pin(async move {
            let answer = answer.map_err(|_| BrokerError::Closed)?;
            match answer.await {
                Ok(ToWorker::BrokerReply(_, reply)) => Ok(reply),
                Ok(other) => Err(BrokerError::Unavailable(format!(
                    "the master answered a broker request with {}",
                    other.kind()
                ))),
                // Sent, and the master went away before answering: it may
                // have done it (a publish may have been delivered).
                Err(_) => Err(BrokerError::OutcomeUnknown(
                    "the master went away before answering".into(),
                )),
            }
        })
    }
}
