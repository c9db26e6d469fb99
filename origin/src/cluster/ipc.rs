//! Master ↔ worker messages on the control socket, and their framing.
//!
//! Each frame is a big-endian `u32` length followed by that many bytes: a tag
//! byte, then the fields. Integers are big-endian; strings are a `u32` length
//! and UTF-8 bytes (the embedded broker's directory messages: JSON in a string).
//! Binary rather than JSON so the embedded broker delivers envelopes without
//! re-escaping them.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::broker::embedded::protocol::{Reply, Request};

/// Frames larger than this are refused (a corrupt length must not allocate gigabytes).
pub(crate) const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// A request id, echoed in the answer.
pub(crate) type RequestId = u64;

/// Worker → master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToMaster {
    /// The worker serves: route connections to it.
    Ready,
    /// Route Engine.IO session `sid` to this worker from now on. Acked.
    Claim(RequestId, String),
    /// A request to the embedded broker's server, answered with
    /// [`ToWorker::BrokerReply`].
    BrokerRequest(RequestId, Request),
    /// The answer to [`ToWorker::MetricsRequest`]: the worker's exposition.
    Metrics(RequestId, String),
    /// Whether the worker's broker connection is up (sent after `Ready` and
    /// on every change), for the origin's readiness.
    BrokerState(bool),
    /// The worker cannot start, and why; it exits next. Sent instead of `Ready`.
    Failed(String),
}

/// Master → worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToWorker {
    /// The worker's settings, JSON (the first frame a worker receives).
    Init(String),
    /// The request with this id is done.
    Ack(RequestId),
    /// Stop gracefully.
    Shutdown,
    /// The embedded broker's answer to [`ToMaster::BrokerRequest`].
    BrokerReply(RequestId, Reply),
    /// The embedded broker: a payload published on a channel this worker subscribed to.
    BrokerDelivery(String),
    /// Asks for the worker's metrics, answered with [`ToMaster::Metrics`].
    MetricsRequest(RequestId),
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IpcError {
    /// The peer closed the socket.
    #[error("the peer closed the control socket")]
    Closed,
    /// Reading or writing failed.
    #[error("control socket I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid frame.
    #[error("malformed control frame: {0}")]
    Malformed(&'static str),
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn tag(mut self, tag: u8) -> Self {
        self.0.push(tag);
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(mut self, s: &str) -> Self {
        self.0.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn pairs(mut self, pairs: &[(String, String)]) -> Self {
        self.0
            .extend_from_slice(&(pairs.len() as u32).to_be_bytes());
        for (a, b) in pairs {
            self = self.str(a).str(b);
        }
        self
    }
    fn json(self, value: &impl serde::Serialize) -> Self {
        self.str(&serde_json::to_string(value).expect("a directory message always serialises"))
    }
    fn finish(self) -> Vec<u8> {
        let mut frame = (self.0.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&self.0);
        frame
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], IpcError> {
        if self.0.len() < n {
            return Err(IpcError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, IpcError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, IpcError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, IpcError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn str(&mut self) -> Result<String, IpcError> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| IpcError::Malformed("string is not UTF-8"))
    }
    fn pairs(&mut self) -> Result<Vec<(String, String)>, IpcError> {
        let n = self.u32()? as usize;
        // Bounded by the frame size, whatever a corrupt count says.
        let mut pairs = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            pairs.push((self.str()?, self.str()?));
        }
        Ok(pairs)
    }
    fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, IpcError> {
        serde_json::from_str(&self.str()?)
            .map_err(|_| IpcError::Malformed("directory message is not valid JSON"))
    }
    fn end<T>(self, value: T) -> Result<T, IpcError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(IpcError::Malformed("trailing bytes"))
        }
    }
}

impl ToMaster {
    /// The frame bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            ToMaster::Ready => Writer::default().tag(1),
            ToMaster::Claim(id, sid) => Writer::default().tag(2).u64(*id).str(sid),
            ToMaster::BrokerRequest(id, request) => match request {
                Request::Subscribe(ch) => Writer::default().tag(3).u64(*id).str(ch),
                Request::Unsubscribe(ch) => Writer::default().tag(4).u64(*id).str(ch),
                Request::Publish(messages) => Writer::default().tag(5).u64(*id).pairs(messages),
                Request::History { channel, from } => {
                    Writer::default().tag(6).u64(*id).str(channel).str(from)
                }
                Request::Barrier => Writer::default().tag(7).u64(*id),
                Request::Directory(request) => Writer::default().tag(8).u64(*id).json(request),
                Request::Webhook { app, event } => {
                    Writer::default().tag(12).u64(*id).str(app).json(event)
                }
            },
            ToMaster::Metrics(id, text) => Writer::default().tag(9).u64(*id).str(text),
            ToMaster::BrokerState(up) => Writer::default().tag(10).u64(u64::from(*up)),
            ToMaster::Failed(why) => Writer::default().tag(11).str(why),
        }
        .finish()
    }

    fn decode(body: &[u8]) -> Result<Self, IpcError> {
        let mut r = Reader(body);
        let broker = ToMaster::BrokerRequest;
        let msg = match r.u8()? {
            1 => ToMaster::Ready,
            2 => ToMaster::Claim(r.u64()?, r.str()?),
            3 => broker(r.u64()?, Request::Subscribe(r.str()?)),
            4 => broker(r.u64()?, Request::Unsubscribe(r.str()?)),
            5 => broker(r.u64()?, Request::Publish(r.pairs()?)),
            6 => broker(
                r.u64()?,
                Request::History {
                    channel: r.str()?,
                    from: r.str()?,
                },
            ),
            7 => broker(r.u64()?, Request::Barrier),
            8 => broker(r.u64()?, Request::Directory(r.json()?)),
            9 => ToMaster::Metrics(r.u64()?, r.str()?),
            10 => ToMaster::BrokerState(r.u64()? != 0),
            11 => ToMaster::Failed(r.str()?),
            12 => broker(
                r.u64()?,
                Request::Webhook {
                    app: r.str()?,
                    event: r.json()?,
                },
            ),
            _ => return Err(IpcError::Malformed("unknown tag")),
        };
        r.end(msg)
    }
}

impl ToWorker {
    /// Its variant's name: what an error says of an unexpected frame, whose
    /// contents may be settings (app secrets) or event payloads.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ToWorker::Init(_) => "Init",
            ToWorker::Ack(_) => "Ack",
            ToWorker::Shutdown => "Shutdown",
            ToWorker::BrokerReply(_, reply) => reply.kind(),
            ToWorker::BrokerDelivery(_) => "BrokerDelivery",
            ToWorker::MetricsRequest(_) => "MetricsRequest",
        }
    }

    /// The frame bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            ToWorker::Init(settings) => Writer::default().tag(1).str(settings),
            ToWorker::Ack(id) => Writer::default().tag(2).u64(*id),
            ToWorker::BrokerDelivery(payload) => Writer::default().tag(3).str(payload),
            ToWorker::Shutdown => Writer::default().tag(4),
            ToWorker::BrokerReply(id, reply) => match reply {
                Reply::History { epoch, entries } => {
                    Writer::default().tag(5).u64(*id).str(epoch).pairs(entries)
                }
                Reply::Directory(reply) => Writer::default().tag(6).u64(*id).json(reply),
                Reply::Done => Writer::default().tag(7).u64(*id),
            },
            ToWorker::MetricsRequest(id) => Writer::default().tag(8).u64(*id),
        }
        .finish()
    }

    fn decode(body: &[u8]) -> Result<Self, IpcError> {
        let mut r = Reader(body);
        let broker = ToWorker::BrokerReply;
        let msg = match r.u8()? {
            1 => ToWorker::Init(r.str()?),
            2 => ToWorker::Ack(r.u64()?),
            3 => ToWorker::BrokerDelivery(r.str()?),
            4 => ToWorker::Shutdown,
            5 => broker(
                r.u64()?,
                Reply::History {
                    epoch: r.str()?,
                    entries: r.pairs()?,
                },
            ),
            6 => broker(r.u64()?, Reply::Directory(r.json()?)),
            7 => broker(r.u64()?, Reply::Done),
            8 => ToWorker::MetricsRequest(r.u64()?),
            _ => return Err(IpcError::Malformed("unknown tag")),
        };
        r.end(msg)
    }
}

async fn read_body(reader: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, IpcError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(IpcError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(IpcError::Malformed("frame too large"));
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads one worker → master frame.
pub(crate) async fn read_to_master(
    reader: &mut (impl AsyncRead + Unpin),
) -> Result<ToMaster, IpcError> {
    ToMaster::decode(&read_body(reader).await?)
}

/// Reads one master → worker frame.
pub(crate) async fn read_to_worker(
    reader: &mut (impl AsyncRead + Unpin),
) -> Result<ToWorker, IpcError> {
    ToWorker::decode(&read_body(reader).await?)
}

/// Writes one frame.
pub(crate) async fn write_frame(
    writer: &mut (impl AsyncWrite + Unpin),
    frame: &[u8],
) -> Result<(), IpcError> {
    writer.write_all(frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::embedded::protocol::{DirectoryReply, DirectoryRequest};

    #[tokio::test]
    async fn every_message_round_trips() {
        let to_master = [
            ToMaster::Ready,
            ToMaster::Claim(1, "sid".into()),
            ToMaster::BrokerRequest(2, Request::Subscribe("pushwire:v2:{1:é}:ch".into())),
            ToMaster::BrokerRequest(3, Request::Unsubscribe("c".into())),
            ToMaster::BrokerRequest(
                4,
                Request::Publish(vec![
                    ("a".into(), "{\"v\":1}".into()),
                    ("b".into(), String::new()),
                ]),
            ),
            ToMaster::BrokerRequest(5, Request::Publish(vec![])),
            ToMaster::BrokerRequest(
                12,
                Request::Webhook {
                    app: "1".into(),
                    event: pushwire_shared::webhook::WebhookEvent::ChannelOccupied {
                        channel: pushwire_shared::ChannelName::new("c").unwrap(),
                    },
                },
            ),
            ToMaster::BrokerRequest(
                6,
                Request::History {
                    channel: "c".into(),
                    from: "0-0".into(),
                },
            ),
            ToMaster::BrokerRequest(7, Request::Barrier),
            ToMaster::BrokerRequest(
                8,
                Request::Directory(DirectoryRequest::Members {
                    app: "1".into(),
                    channel: "presence-é".into(),
                }),
            ),
            ToMaster::Metrics(9, "# EOF\n".into()),
            ToMaster::BrokerState(true),
            ToMaster::BrokerState(false),
            ToMaster::Failed("the event broker is unavailable: é".into()),
        ];
        let to_worker = [
            ToWorker::Init("{}".into()),
            ToWorker::Ack(u64::MAX),
            ToWorker::BrokerDelivery("x".repeat(70_000)),
            ToWorker::Shutdown,
            ToWorker::BrokerReply(
                7,
                Reply::History {
                    epoch: "e1".into(),
                    entries: vec![("1-0".into(), "{}".into())],
                },
            ),
            ToWorker::BrokerReply(8, Reply::Directory(DirectoryReply::Joined(None))),
            ToWorker::BrokerReply(9, Reply::Done),
            ToWorker::MetricsRequest(10),
        ];
        let mut bytes = Vec::new();
        for m in &to_master {
            bytes.extend(m.encode());
        }
        let mut reader = bytes.as_slice();
        for m in &to_master {
            assert_eq!(&read_to_master(&mut reader).await.unwrap(), m);
        }
        assert!(matches!(
            read_to_master(&mut reader).await,
            Err(IpcError::Closed)
        ));
        let mut bytes = Vec::new();
        for m in &to_worker {
            bytes.extend(m.encode());
        }
        let mut reader = bytes.as_slice();
        for m in &to_worker {
            assert_eq!(&read_to_worker(&mut reader).await.unwrap(), m);
        }
    }

    #[tokio::test]
    async fn malformed_frames_are_errors_not_panics() {
        for bad in [
            &[0, 0, 0, 1, 99][..],                                       // unknown tag
            &[0, 0, 0, 2, 2, 0],                                         // truncated id
            &[0, 0, 0, 2, 1, 0],                                         // trailing byte
            &[0xff, 0xff, 0xff, 0xff],                                   // too large
            &[0, 0, 0, 7, 4, 0, 0, 0, 1, 0xff, 0],                       // wrong tag contents
            &[0, 0, 0, 14, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'x'], // not JSON
        ] {
            let mut reader = bad;
            assert!(read_to_master(&mut reader).await.is_err(), "{bad:?}");
        }
        let mut invalid_utf8: &[u8] = &[0, 0, 0, 6, 3, 0, 0, 0, 1, 0xff];
        assert!(matches!(
            read_to_worker(&mut invalid_utf8).await,
            Err(IpcError::Malformed(_))
        ));
    }
}
