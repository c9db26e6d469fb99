//! `OriginMetrics`: what the master reports for the whole origin.

use std::borrow::Cow;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::process_stats::ProcessStats;
use crate::webhook::DispatchStats;

/// Which process a series is about: a worker's id, or `master`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabels {
    worker: String,
}

/// The build, for `pushwire_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

/// One running worker as the master knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkerProcess {
    /// Its id.
    pub id: usize,
    /// Its process id.
    pub pid: u32,
}

/// The master's view at scrape time.
#[derive(Debug, Default)]
pub(crate) struct OriginMetrics {
    /// Running workers.
    pub workers: Vec<WorkerProcess>,
    /// Workers routed to (started and ready).
    pub ready_workers: usize,
    /// Restarts so far, by worker id.
    pub restarts: Vec<(usize, u64)>,
    /// The webhook queue's counts, when webhooks are configured.
    pub webhooks: Option<DispatchStats>,
}

impl OriginMetrics {
    /// The master's exposition (built afresh: every value here is read, not counted).
    pub(crate) fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("pushwire");
        let info = Family::<BuildLabels, Gauge>::default();
        info.get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            revision: option_env!("PUSHWIRE_GIT_REVISION").unwrap_or("unknown"),
        })
        .set(1);
        registry.register(
            "build_info",
            "The running build: version and git revision",
            info,
        );
        let ready = Gauge::<i64>::default();
        ready.set(self.ready_workers as i64);
        registry.register("workers_ready", "Workers that serve connections", ready);
        let restarts = Family::<ProcessLabels, Counter>::default();
        for (id, n) in &self.restarts {
            restarts.get_or_create(&labels(&id.to_string())).inc_by(*n);
        }
        registry.register(
            "worker_restarts",
            "Times the master restarted a worker that exited",
            restarts,
        );
        let memory = Family::<ProcessLabels, Gauge>::default();
        let cpu = Family::<ProcessLabels, Counter<f64>>::default();
        let master = WorkerProcess {
            id: usize::MAX,
            pid: std::process::id(),
        };
        for process in self.workers.iter().chain(std::iter::once(&master)) {
            let Some(stats) = ProcessStats::of(process.pid) else {
                continue;
            };
            let name = if process.id == usize::MAX {
                Cow::Borrowed("master")
            } else {
                Cow::Owned(process.id.to_string())
            };
            let label = labels(&name);
            memory
                .get_or_create(&label)
                .set(stats.resident_bytes as i64);
            cpu.get_or_create(&label).inc_by(stats.cpu_seconds);
        }
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of each process (the workers and the master)",
            Unit::Bytes,
            memory,
        );
        registry.register_with_unit(
            "process_cpu",
            "CPU time (user + system) of each process",
            Unit::Seconds,
            cpu,
        );
        if let Some(webhooks) = &self.webhooks {
            super::webhooks::register(&mut registry, webhooks, "master");
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

fn labels(worker: &str) -> ProcessLabels {
    ProcessLabels {
        worker: worker.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_build_restarts_and_processes() {
        let metrics = OriginMetrics {
            workers: vec![WorkerProcess {
                id: 0,
                pid: std::process::id(),
            }],
            ready_workers: 1,
            restarts: vec![(0, 2)],
            webhooks: Some(DispatchStats {
                delivered_events: 7,
                dropped_full: 1,
                ..Default::default()
            }),
        };
        let text = metrics.encode();
        assert!(text.contains("pushwire_build_info{version=\""), "{text}");
        assert!(text.contains("pushwire_workers_ready 1\n"), "{text}");
        assert!(
            text.contains("pushwire_worker_restarts_total{worker=\"0\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("pushwire_process_resident_memory_bytes{worker=\"master\"} "));
        assert!(
            text.contains("pushwire_webhook_events_delivered_total{worker=\"master\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "pushwire_webhook_events_dropped_total{worker=\"master\",reason=\"queue_full\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("pushwire_process_cpu_seconds_total{worker=\"0\"} "));
    }
}
