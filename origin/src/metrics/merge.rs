//! Joining the OpenMetrics expositions of several processes into one.
//!
//! Each process encodes its own registry (its series carry a `worker` label);
//! a scrape of the origin must return each metric family once, with the
//! series of every process under it, and one `# EOF`. The series lines
//! themselves are kept byte for byte.

use std::collections::BTreeMap;

/// One family: its metadata lines (`# HELP`, `# TYPE`, `# UNIT`) as the first
/// exposition gave them, then every exposition's series lines.
#[derive(Debug, Default)]
struct Family {
    metadata: Vec<String>,
    series: Vec<String>,
}

/// The family a metadata line describes: `# HELP name …` → `name`.
fn family_of(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))
        .or_else(|| line.strip_prefix("# UNIT "))?;
    rest.split(' ').next()
}

/// `expositions` as one, families in name order.
pub(crate) fn merge<'a>(expositions: impl IntoIterator<Item = &'a str>) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for exposition in expositions {
        // Families already described by an earlier exposition.
        let mut described: Option<String> = None;
        let mut first_metadata = false;
        for line in exposition.lines() {
            if line == "# EOF" || line.is_empty() {
                continue;
            }
            if let Some(name) = family_of(line) {
                if described.as_deref() != Some(name) {
                    first_metadata = !families.contains_key(name);
                    described = Some(name.to_owned());
                }
                let family = families.entry(name.to_owned()).or_default();
                if first_metadata {
                    family.metadata.push(line.to_owned());
                }
            } else if let Some(name) = &described {
                families
                    .entry(name.clone())
                    .or_default()
                    .series
                    .push(line.to_owned());
            }
        }
    }
    let mut out = String::new();
    for family in families.values() {
        for line in family.metadata.iter().chain(&family.series) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::WorkerMetrics;

    #[test]
    fn each_family_once_with_every_process_series() {
        let (a, b) = (WorkerMetrics::new("0"), WorkerMetrics::new("1"));
        a.messages_delivered.inc_by(3);
        b.messages_delivered.inc_by(4);
        a.trigger_answered("1", "events", 200, std::time::Duration::from_millis(2));
        let merged = merge([a.encode().as_str(), b.encode().as_str()]);
        assert_eq!(
            merged
                .matches("# TYPE pushwire_messages_delivered counter")
                .count(),
            1
        );
        assert!(merged.contains("pushwire_messages_delivered_total{worker=\"0\"} 3\n"));
        assert!(merged.contains("pushwire_messages_delivered_total{worker=\"1\"} 4\n"));
        assert!(merged.contains(
            "pushwire_trigger_requests_total{worker=\"0\",app=\"1\",route=\"events\",code=\"200\"} 1\n"
        ));
        assert_eq!(merged.matches("# EOF").count(), 1);
        assert!(merged.ends_with("# EOF\n"));
        // A family's series follow its metadata, before the next family's.
        let delivered = merged.find("# HELP pushwire_messages_delivered").unwrap();
        let series = merged
            .find("pushwire_messages_delivered_total{worker=\"1\"}")
            .unwrap();
        let next = merged.find("# HELP pushwire_occupied_channels").unwrap();
        assert!(delivered < series && series < next);
    }
}
