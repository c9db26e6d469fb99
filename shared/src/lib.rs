//! The pushwire protocol crate.
//!
//! Everything the edge worker and the origin must agree on lives here, once:
//!
//! - [`app`]: application credentials and the `PUSHWIRE_APPS` format;
//! - [`channel`] and [`event`]: validated channel and event names, and the
//!   names of pushwire's own events;
//! - [`trigger`]: the Pusher-compatible trigger bodies, their validation and limits;
//! - [`trigger_request`]: one trigger API request end to end (route, checks, envelopes);
//! - [`channel_query`]: signed reads of the trigger API (channel history);
//! - [`api_error`]: why a trigger or channel query fails, with its HTTP status and message;
//! - [`directory`]: reading the cluster-wide channel state from Redis (origin and edge);
//! - [`keys`]: every Redis key and pub/sub channel name, from one prefix;
//! - [`upstash`]: the Upstash REST dialect the edge speaks to the bridge;
//! - [`signing`]: Pusher HTTP request signing (verify and sign);
//! - [`presence`]: presence members, their events and the ack summary;
//! - [`channel_auth`]: private/presence subscription signatures;
//! - [`user_auth`]: user sign-in signatures and user channels;
//! - [`socket_id`]: Pusher-style socket ids;
//! - [`envelope`]: the versioned event envelope carried through Redis;
//! - [`event_id`]: the event ids every publisher issues;
//! - [`history`]: channel history positions, retention and recovery;
//! - [`publishing`]: the atomic publish script, its digest and the commands that run it;
//! - [`publish_check`]: the bridge's check that a command is that publish, with pushwire's own arguments;
//! - [`delivery`]: how a trigger's `data` becomes the Socket.IO argument clients receive;
//! - [`client_protocol`]: the Socket.IO `subscribe`/`unsubscribe` payloads and ack shapes;
//! - [`http`]: the JSON error body every HTTP endpoint uses;
//! - [`settings`]: defaults and bounds of the settings the edge and the origin share;
//! - [`slot`]: the Redis Cluster hash slot of a key, to route commands by shard;
//! - [`webhook`]: webhook endpoints, the events, body and signature Pusher's SDKs validate.
//!
//! The crate is pure: no runtime, no I/O, no clock or randomness. Callers pass the
//! current time and generated ids in, so it compiles to `wasm32-unknown-unknown`
//! unchanged and every rule can be unit-tested deterministically.

pub mod api_error;
pub mod app;
pub mod channel;
pub mod channel_auth;
pub mod channel_query;
pub mod client_protocol;
pub mod delivery;
pub mod directory;
pub mod envelope;
pub mod event;
pub mod event_id;
pub mod history;
pub mod http;
pub mod keys;
pub mod presence;
pub mod publish_check;
pub mod publishing;
pub mod settings;
pub mod signing;
pub mod slot;
pub mod socket_id;
pub mod trigger;
pub mod trigger_request;
pub mod upstash;
mod urlencoding;
pub mod user_auth;
pub mod webhook;

pub use app::{App, AppList, AppsParseError, Limits};
pub use channel::{ChannelKind, ChannelName, ChannelNameError};
pub use envelope::{Envelope, EnvelopeError};
pub use event::{EventName, EventNameError};
pub use socket_id::{SocketId, SocketIdError};
