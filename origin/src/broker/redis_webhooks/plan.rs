//! What a sender does with the events it read from one channel's outbox:
//! which to send now, which to discard, and whether the rest must wait.

use pushwire_shared::webhook::WebhookEvent;

/// One event read from an outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    /// Its stream id, which removes it once handled.
    pub id: String,
    /// When it was queued (ms, Redis's clock: the id's first part).
    pub at_ms: u64,
    /// The event, or `None` when the entry could not be read (it is discarded).
    pub event: Option<WebhookEvent>,
}

impl Queued {
    /// An outbox entry: its id and its `e` field.
    pub(crate) fn parse(id: String, json: Option<&str>) -> Self {
        let at_ms = id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .unwrap_or(0);
        let event = json.and_then(|json| serde_json::from_str(json).ok());
        Queued { id, at_ms, event }
    }
}

/// The rules a channel's events are handled by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanRules {
    /// Redis's time now, ms.
    pub now_ms: u64,
    /// How long a `channel_vacated` waits for the channel to fill again (0: not at all).
    pub grace_ms: u64,
    /// Events queued longer ago than this are dropped unsent.
    pub max_age_ms: u64,
    /// The most events to send from this channel now.
    pub budget: usize,
}

/// What to do with a channel's events, read oldest first.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Send these, in this order.
    pub send: Vec<(String, WebhookEvent)>,
    /// Remove these unsent: a vacancy and its refill within the grace
    /// period, entries that could not be read.
    pub discard: Vec<String>,
    /// Remove these unsent, counted as dropped: older than the age limit.
    pub expired: Vec<String>,
    /// The channel's next events wait until then (ms): a `channel_vacated`
    /// still within its grace period holds them.
    pub hold_until: Option<u64>,
}

impl Plan {
    /// The plan for `events` (a prefix of the outbox, oldest first) under `rules`.
    ///
    /// A `channel_vacated` followed by the channel's next `channel_occupied`
    /// within the grace period is reported as nothing (both discarded); one
    /// younger than the grace period with no refill read yet holds itself and
    /// everything after it, so per-channel order is kept.
    pub(crate) fn new(events: &[Queued], rules: PlanRules) -> Self {
        let mut plan = Plan::default();
        let mut skip_refill: Option<usize> = None;
        for (i, queued) in events.iter().enumerate() {
            if plan.send.len() >= rules.budget {
                break;
            }
            if skip_refill == Some(i) {
                continue;
            }
            let Some(event) = &queued.event else {
                plan.discard.push(queued.id.clone());
                continue;
            };
            if queued.at_ms.saturating_add(rules.max_age_ms) < rules.now_ms {
                plan.expired.push(queued.id.clone());
                continue;
            }
            if rules.grace_ms > 0 && matches!(event, WebhookEvent::ChannelVacated { .. }) {
                let refill = events[i + 1..].iter().position(|later| {
                    matches!(
                        later.event,
                        Some(
                            WebhookEvent::ChannelOccupied { .. }
                                | WebhookEvent::ChannelVacated { .. }
                        )
                    )
                });
                let refill = refill.map(|at| i + 1 + at).filter(|&at| {
                    matches!(events[at].event, Some(WebhookEvent::ChannelOccupied { .. }))
                        && events[at].at_ms <= queued.at_ms.saturating_add(rules.grace_ms)
                });
                if let Some(at) = refill {
                    // Both at once: a budget reached in between must not
                    // leave the refill queued without its vacancy.
                    plan.discard.push(queued.id.clone());
                    plan.discard.push(events[at].id.clone());
                    skip_refill = Some(at);
                    continue;
                }
                let ends = queued.at_ms.saturating_add(rules.grace_ms);
                if ends > rules.now_ms {
                    plan.hold_until = Some(ends);
                    break;
                }
            }
            plan.send.push((queued.id.clone(), event.clone()));
        }
        plan
    }

    /// The ids to remove from the outbox once the batch is done with.
    pub(crate) fn handled(&self) -> impl Iterator<Item = &str> {
        self.send
            .iter()
            .map(|(id, _)| id.as_str())
            .chain(self.discard.iter().map(String::as_str))
            .chain(self.expired.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushwire_shared::ChannelName;

    fn ch() -> ChannelName {
        ChannelName::new("room").unwrap()
    }

    fn at(ms: u64, event: WebhookEvent) -> Queued {
        Queued {
            id: format!("{ms}-0"),
            at_ms: ms,
            event: Some(event),
        }
    }

    fn occupied(ms: u64) -> Queued {
        at(ms, WebhookEvent::ChannelOccupied { channel: ch() })
    }

    fn vacated(ms: u64) -> Queued {
        at(ms, WebhookEvent::ChannelVacated { channel: ch() })
    }

    fn member(ms: u64) -> Queued {
        at(
            ms,
            WebhookEvent::MemberAdded {
                channel: ch(),
                user_id: "u".into(),
            },
        )
    }

    fn rules(now_ms: u64, grace_ms: u64) -> PlanRules {
        PlanRules {
            now_ms,
            grace_ms,
            max_age_ms: 300_000,
            budget: 50,
        }
    }

    fn sent(plan: &Plan) -> Vec<&str> {
        plan.send.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn without_grace_everything_goes_in_order() {
        let events = [occupied(1), vacated(2), occupied(3)];
        let plan = Plan::new(&events, rules(10, 0));
        assert_eq!(sent(&plan), ["1-0", "2-0", "3-0"]);
        assert_eq!(plan.hold_until, None);
        assert_eq!(plan.handled().count(), 3);
    }

    #[test]
    fn a_refill_within_the_grace_period_is_nothing_and_later_events_still_go() {
        let events = [
            occupied(1),
            vacated(100),
            member(120),
            occupied(150),
            member(160),
        ];
        let plan = Plan::new(&events, rules(1000, 100));
        assert_eq!(sent(&plan), ["1-0", "120-0", "160-0"]);
        assert_eq!(plan.discard, ["100-0", "150-0"]);
    }

    #[test]
    fn a_budget_reached_between_a_vacancy_and_its_refill_discards_both() {
        let events = [occupied(1), vacated(100), member(120), occupied(150)];
        let plan = Plan::new(
            &events,
            PlanRules {
                budget: 2,
                ..rules(1000, 100)
            },
        );
        assert_eq!(sent(&plan), ["1-0", "120-0"]);
        assert_eq!(plan.discard, ["100-0", "150-0"]);
    }

    #[test]
    fn a_young_vacancy_holds_itself_and_what_follows() {
        let events = [occupied(1), vacated(100), member(120)];
        let plan = Plan::new(&events, rules(150, 100));
        assert_eq!(sent(&plan), ["1-0"]);
        assert_eq!(plan.hold_until, Some(200));
        assert_eq!(plan.handled().count(), 1);
        // Once the grace period is over, it goes.
        let plan = Plan::new(&events[1..], rules(201, 100));
        assert_eq!(sent(&plan), ["100-0", "120-0"]);
    }

    #[test]
    fn a_late_refill_is_both_events() {
        let events = [vacated(100), occupied(300)];
        let plan = Plan::new(&events, rules(400, 100));
        assert_eq!(sent(&plan), ["100-0", "300-0"]);
    }

    #[test]
    fn old_and_unreadable_entries_are_removed_unsent() {
        let mut broken = Queued::parse("5-0".into(), Some("{not json"));
        assert_eq!(broken.at_ms, 5);
        assert_eq!(broken.event, None);
        broken.id = "5-0".into();
        let events = [occupied(1), broken, occupied(400_000)];
        let plan = Plan::new(&events, rules(400_100, 0));
        assert_eq!(plan.expired, ["1-0"]);
        assert_eq!(plan.discard, ["5-0"]);
        assert_eq!(sent(&plan), ["400000-0"]);
    }

    #[test]
    fn the_budget_stops_the_plan_and_leaves_the_rest_queued() {
        let events = [occupied(1), vacated(2), occupied(3)];
        let plan = Plan::new(
            &events,
            PlanRules {
                budget: 2,
                ..rules(10, 0)
            },
        );
        assert_eq!(sent(&plan), ["1-0", "2-0"]);
        assert_eq!(plan.handled().count(), 2);
    }

    #[test]
    fn an_entry_reads_back_as_queued() {
        let json = serde_json::to_string(&WebhookEvent::ChannelOccupied { channel: ch() }).unwrap();
        let queued = Queued::parse("1700000000123-4".into(), Some(&json));
        assert_eq!(queued.at_ms, 1_700_000_000_123);
        assert_eq!(
            queued.event,
            Some(WebhookEvent::ChannelOccupied { channel: ch() })
        );
    }
}
