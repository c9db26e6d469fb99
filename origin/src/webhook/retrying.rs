//! `send_with_retries`: one batch to one endpoint, retried on the schedule
//! until it is accepted or given up, and counted either way.

use std::time::Duration;

use pushwire_shared::App;
use pushwire_shared::webhook::{WebhookEvent, WebhookUrl};
use tokio::time::Instant;

use super::{DeliveryCounters, DispatchSettings, WebhookSender};

/// Sends `batch` of `app` to `url` until it is accepted, or dropped: at once
/// when the error is final, or when `settings`' schedule gives up. Before
/// each pause, `before_pause` runs with its length (a Redis sender extends
/// its lease there to cover the pause and the attempt after it).
pub(crate) async fn send_with_retries<Renewed: Future<Output = ()>>(
    sender: &WebhookSender,
    app: &App,
    url: &WebhookUrl,
    batch: &[WebhookEvent],
    settings: &DispatchSettings,
    counters: &DeliveryCounters,
    mut before_pause: impl FnMut(Duration) -> Renewed,
) {
    let count = batch.len() as u64;
    let first_attempt = Instant::now();
    let mut failures = 0u32;
    loop {
        let error = match sender.send(url, app, batch).await {
            Ok(_) => {
                counters.delivered(count);
                return;
            }
            Err(error) => error,
        };
        if !error.is_retryable() {
            counters.not_retryable(count);
            tracing::warn!(
                app = %app.id,
                %url,
                %error,
                events = count,
                "webhook batch dropped: it cannot be sent"
            );
            return;
        }
        failures = failures.saturating_add(1);
        let jitter = rand::random::<f64>();
        let Some(pause) = settings
            .schedule
            .next_pause(failures, first_attempt.elapsed(), jitter)
        else {
            counters.given_up(count);
            tracing::warn!(
                app = %app.id,
                %url,
                %error,
                events = count,
                attempts = failures,
                "webhook batch dropped: still failing when the retry window ended"
            );
            return;
        };
        tracing::debug!(
            app = %app.id,
            %url,
            %error,
            ?pause,
            attempts = failures,
            "webhook batch will be retried"
        );
        before_pause(pause).await;
        tokio::time::sleep(pause).await;
    }
}
