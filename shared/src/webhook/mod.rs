//! Webhooks, as Pusher sends them: what an app's endpoints ask for
//! ([`WebhookEndpoint`]: a URL, event types, a channel prefix) and what each
//! request carries ([`SignedWebhook`]: the `{"time_ms", "events"}` body and
//! its `X-Pusher-Key` / `X-Pusher-Signature` headers).
//!
//! Receivers validate them with the stock SDKs (the npm `pusher` SDK's
//! `webhook(request).isValid()`, the PyPI `pusher` SDK's `validate_webhook`).
//! Sending, retrying and choosing the events are the origin's.

mod endpoint;
mod payload;
mod url;

pub use endpoint::{WebhookConfigError, WebhookEndpoint, WebhookEventKind};
pub use payload::{
    CONTENT_TYPE, KEY_HEADER, SIGNATURE_HEADER, SignedWebhook, WebhookBody, WebhookEvent,
    encode_body, signature, verify_signature,
};
pub use url::{MAX_WEBHOOK_URL_LEN, WebhookUrl};
