//! `WebhookQueue` against fake receivers on 127.0.0.1, with short delays and
//! a short retry window: how batches form, stay in order, are retried or
//! dropped, and how one endpoint's trouble stays its own.

use std::time::Duration;

use pushwire_shared::webhook::{WebhookBody, WebhookEndpoint, WebhookEvent, WebhookEventKind};
use pushwire_shared::{App, ChannelName};
use tokio::time::Instant;

use super::https_tests::without_roots;
use super::tests::{FakeReceiver, Received, Reply, app};
use super::{DispatchSettings, DispatchStats, RetrySchedule, WebhookQueue};

/// Quick batches, a quick retry schedule with a window long enough never to
/// end within a test.
fn quick() -> DispatchSettings {
    DispatchSettings {
        max_batch_events: 50,
        max_batch_delay: Duration::from_millis(20),
        max_pending_events: 1000,
        timeout: Duration::from_secs(1),
        schedule: RetrySchedule::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
            Duration::from_secs(10),
        ),
    }
}

/// A receiver that accepts every request.
async fn accepting() -> FakeReceiver {
    FakeReceiver::start(Reply::FailFirst(0)).await
}

fn every_event(receiver: &FakeReceiver) -> WebhookEndpoint {
    WebhookEndpoint::all_events(receiver.url("/hooks?token=t").as_str()).unwrap()
}

fn queue(endpoints: Vec<WebhookEndpoint>, settings: DispatchSettings) -> WebhookQueue {
    WebhookQueue::start(vec![(app(), endpoints)], settings)
}

fn channel(name: &str) -> ChannelName {
    ChannelName::new(name).unwrap()
}

/// Event `n` of a numbered sequence, to check order by.
fn member(n: usize) -> WebhookEvent {
    WebhookEvent::MemberAdded {
        channel: channel("presence-room"),
        user_id: n.to_string(),
    }
}

fn members(range: std::ops::Range<usize>) -> Vec<WebhookEvent> {
    range.map(member).collect()
}

fn events_of(request: &Received) -> Vec<WebhookEvent> {
    serde_json::from_slice::<WebhookBody>(&request.body)
        .unwrap()
        .events
}

/// Every event the receiver got, request after request.
fn all_events(requests: &[Received]) -> Vec<WebhookEvent> {
    requests.iter().flat_map(events_of).collect()
}

/// Polls `done` until it holds; fails the test if it does not within 5 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_batch_goes_once_full() {
    let receiver = accepting().await;
    let settings = DispatchSettings {
        max_batch_events: 3,
        max_batch_delay: Duration::from_secs(60),
        ..quick()
    };
    let queue = queue(vec![every_event(&receiver)], settings);
    for event in members(0..7) {
        queue.push(&app().id, event);
    }
    until("two batches are sent", || queue.stats().batches_sent == 2).await;
    let requests = receiver.received();
    let sizes: Vec<usize> = requests.iter().map(|r| events_of(r).len()).collect();
    assert_eq!(sizes, [3, 3]);
    assert_eq!(all_events(&requests), members(0..6));
    // The seventh waits for two more events, or for the delay.
    let third = tokio::time::timeout(Duration::from_millis(100), async {
        until("a third request", || receiver.received().len() > 2).await;
    });
    assert!(third.await.is_err(), "a batch that is not full went early");
}

#[tokio::test]
async fn a_batch_not_full_goes_after_the_delay() {
    let receiver = accepting().await;
    let delay = Duration::from_millis(150);
    let settings = DispatchSettings {
        max_batch_delay: delay,
        ..quick()
    };
    let queue = queue(vec![every_event(&receiver)], settings);
    let pushed = Instant::now();
    queue.push(&app().id, member(0));
    queue.push(&app().id, member(1));
    until("the batch is sent", || queue.stats().batches_sent == 1).await;
    let waited = pushed.elapsed();
    assert!(waited >= delay, "sent after {waited:?}, before the delay");
    assert!(waited < delay * 10, "sent only after {waited:?}");
    let requests = receiver.received();
    assert_eq!(requests.len(), 1);
    assert_eq!(events_of(&requests[0]), members(0..2));
}

#[tokio::test]
async fn order_is_kept_across_batches() {
    let receiver = accepting().await;
    let settings = DispatchSettings {
        max_batch_events: 4,
        max_batch_delay: Duration::from_millis(5),
        ..quick()
    };
    let queue = queue(vec![every_event(&receiver)], settings);
    for n in 0..30 {
        queue.push(&app().id, member(n));
        if n % 7 == 0 {
            // Spreads the events over batches that are full and batches that are not.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    until("all 30 are delivered", || {
        queue.stats().delivered_events == 30
    })
    .await;
    let requests = receiver.received();
    assert!(requests.len() >= 8, "{} requests", requests.len());
    assert!(requests.iter().all(|r| events_of(r).len() <= 4));
    assert_eq!(all_events(&requests), members(0..30));
}

#[tokio::test]
async fn failed_attempts_are_retried_and_later_events_wait_behind() {
    let receiver = FakeReceiver::start(Reply::FailFirst(2)).await;
    let queue = queue(vec![every_event(&receiver)], quick());
    for event in members(0..5) {
        queue.push(&app().id, event);
    }
    until("the first attempt", || !receiver.received().is_empty()).await;
    for event in members(5..10) {
        queue.push(&app().id, event);
    }
    until("all 10 are delivered", || {
        queue.stats().delivered_events == 10
    })
    .await;
    let requests = receiver.received();
    // The two refused attempts carried the first batch, unchanged.
    assert_eq!(events_of(&requests[0]), members(0..5));
    assert_eq!(events_of(&requests[1]), members(0..5));
    // The accepted ones carry every event once, in order.
    assert_eq!(all_events(&requests[2..]), members(0..10));
    let stats = queue.stats();
    assert_eq!(
        (stats.dropped_full, stats.dropped_given_up),
        (0, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_slows_no_other_and_its_queue_is_bounded() {
    let dead = FakeReceiver::start(Reply::Silence).await;
    let live = accepting().await;
    let settings = DispatchSettings {
        max_batch_events: 2,
        max_batch_delay: Duration::from_millis(5),
        max_pending_events: 5,
        timeout: Duration::from_secs(30),
        ..quick()
    };
    let queue = queue(vec![every_event(&dead), every_event(&live)], settings);
    let started = Instant::now();
    for n in 0..20 {
        queue.push(&app().id, member(n));
        tokio::task::yield_now().await;
    }
    until("the live receiver has all 20", || {
        queue.stats().delivered_events == 20
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(all_events(&live.received()), members(0..20));
    // The dead one holds at most one batch in flight and five waiting.
    let dropped = queue.stats().dropped_full;
    assert!(
        (20 - 2 - 5..=20 - 5).contains(&dropped),
        "{dropped} dropped"
    );
    assert!(dead.received().len() <= 1);
}

#[tokio::test]
async fn a_batch_still_failing_when_the_window_ends_is_dropped() {
    let receiver = FakeReceiver::start(Reply::FailFirst(usize::MAX)).await;
    let settings = DispatchSettings {
        schedule: RetrySchedule::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
            Duration::from_millis(150),
        ),
        ..quick()
    };
    let queue = queue(vec![every_event(&receiver)], settings);
    for event in members(0..3) {
        queue.push(&app().id, event);
    }
    until("the batch is given up", || {
        queue.stats().dropped_given_up == 3
    })
    .await;
    let attempts = receiver.received();
    assert!(attempts.len() >= 3, "{} attempts", attempts.len());
    assert!(attempts.iter().all(|a| events_of(a) == members(0..3)));
    // The endpoint goes on with the next events.
    queue.push(&app().id, member(3));
    until("the next batch is given up", || {
        queue.stats().dropped_given_up == 4
    })
    .await;
    assert_eq!(
        receiver.received().last().map(events_of),
        Some(members(3..4))
    );
    assert_eq!(
        queue.stats(),
        DispatchStats {
            dropped_given_up: 4,
            ..DispatchStats::default()
        }
    );
}

#[tokio::test]
async fn a_batch_that_cannot_be_sent_is_dropped_at_once() {
    let live = accepting().await;
    let https = WebhookEndpoint::all_events("https://127.0.0.1:9/hooks").unwrap();
    let endpoints = vec![https, every_event(&live)];
    let queue = WebhookQueue::start_with(vec![(app(), endpoints)], quick(), without_roots());
    for event in members(0..2) {
        queue.push(&app().id, event);
    }
    until("both endpoints are done", || {
        let stats = queue.stats();
        stats.dropped_not_retryable == 2 && stats.delivered_events == 2
    })
    .await;
    assert_eq!(queue.stats().dropped_given_up, 0);
}

#[tokio::test]
async fn each_endpoint_gets_the_kinds_and_channels_it_wants() {
    use WebhookEventKind::*;
    let (members_only, occupied_only, other_app) =
        (accepting().await, accepting().await, accepting().await);
    let members_hook = WebhookEndpoint::new(
        members_only.url("/").as_str(),
        [MemberAdded, MemberRemoved],
        Some("presence-a"),
    )
    .unwrap();
    let occupied_hook =
        WebhookEndpoint::new(occupied_only.url("/").as_str(), [ChannelOccupied], None).unwrap();
    let second = App {
        id: "2".into(),
        ..app()
    };
    let queue = WebhookQueue::start(
        vec![
            (app(), vec![members_hook, occupied_hook]),
            (second.clone(), vec![every_event(&other_app)]),
        ],
        quick(),
    );
    let added = |name: &str| WebhookEvent::MemberAdded {
        channel: channel(name),
        user_id: "u".into(),
    };
    let removed = WebhookEvent::MemberRemoved {
        channel: channel("presence-a2"),
        user_id: "u".into(),
    };
    let occupied = |name: &str| WebhookEvent::ChannelOccupied {
        channel: channel(name),
    };
    let vacated = WebhookEvent::ChannelVacated {
        channel: channel("news"),
    };
    for event in [
        added("presence-a1"),
        added("presence-b1"),
        occupied("presence-a1"),
        occupied("news"),
        removed.clone(),
    ] {
        queue.push(&app().id, event);
    }
    queue.push("no-such-app", occupied("news"));
    queue.push(&second.id, vacated.clone());
    until("five are delivered", || queue.stats().delivered_events == 5).await;
    assert_eq!(
        all_events(&members_only.received()),
        [added("presence-a1"), removed]
    );
    assert_eq!(
        all_events(&occupied_only.received()),
        [occupied("presence-a1"), occupied("news")]
    );
    assert_eq!(all_events(&other_app.received()), [vacated]);
}
