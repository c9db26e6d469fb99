//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG`, as text for
//! people or as one JSON object per line for a log aggregator.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "pushwire_origin=info,warn";

/// How log lines are written.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event; each names its process by thread
    /// name (`master`, `worker-N`).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's
    /// fields (`app`, `channel`, …), `target`, and the process (`role`,
    /// `worker` on a worker's lines, `pid`).
    Json,
}

/// Which pushwire process logs: every JSON line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The master of `pushwire serve`.
    Master,
    /// Worker `N` of `pushwire serve`.
    Worker(usize),
    /// `pushwire bridge`.
    Bridge,
    /// A one-shot command (`pushwire trigger`, the load generator).
    Command,
}

impl Process {
    /// The `role` field of its JSON lines.
    fn role(self) -> &'static str {
        match self {
            Process::Master => "master",
            Process::Worker(_) => "worker",
            Process::Bridge => "bridge",
            Process::Command => "command",
        }
    }

    /// The fields that open each of its JSON lines, without braces:
    /// `"role":"worker","worker":1,"pid":4242`.
    fn json_fields(self, pid: u32) -> String {
        // Roles are fixed ASCII words and the rest numbers: nothing to escape.
        match self {
            Process::Worker(id) => format!(r#""role":"worker","worker":{id},"pid":{pid}"#),
            other => format!(r#""role":"{}","pid":{pid}"#, other.role()),
        }
    }
}

/// The format installed by [`init`], once it ran.
static INSTALLED: OnceLock<LogFormat> = OnceLock::new();

/// Installs the global subscriber for `process`, writing `format` to stderr.
/// Text has colours only on a terminal and, for the cluster's processes,
/// names each line's thread (hence its process). With JSON, a panic is
/// logged as an event too, so every line stays parseable.
pub fn init(format: LogFormat, process: Process) {
    let subscriber = subscriber(
        format,
        process,
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER)),
        std::io::stderr,
        std::io::stderr().is_terminal(),
    );
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return;
    }
    let _ = INSTALLED.set(format);
    if format == LogFormat::Json {
        std::panic::set_hook(Box::new(|panic| {
            tracing::error!(panic = %panic, "panicked");
        }));
    }
}

/// Reports the error that ends the process: as a log event when JSON logs
/// are on, else as `pushwire: …` on stderr (also what a failure before
/// logging starts, such as a bad setting, looks like).
pub(crate) fn report_fatal(error: &anyhow::Error) {
    if INSTALLED.get() == Some(&LogFormat::Json) {
        tracing::error!(error = %format!("{error:#}"), "exiting on error");
    } else {
        eprintln!("pushwire: {error:#}");
    }
}

/// The subscriber [`init`] installs, writing to `writer`.
fn subscriber<W>(
    format: LogFormat,
    process: Process,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(
            builder
                .with_ansi(ansi)
                .with_thread_names(matches!(process, Process::Master | Process::Worker(_)))
                .finish(),
        ),
        LogFormat::Json => Box::new(
            builder
                .with_ansi(false)
                .fmt_fields(JsonFields::new())
                .event_format(Tagged {
                    // The process's fields replace the only span (`worker`),
                    // which spawned tasks do not carry anyway.
                    inner: format::format()
                        .json()
                        .flatten_event(true)
                        .with_current_span(false)
                        .with_span_list(false),
                    fields: process.json_fields(std::process::id()),
                })
                .finish(),
        ),
    }
}

/// A JSON event format whose objects open with the process's fields.
struct Tagged<F> {
    inner: F,
    /// `"role":…,"pid":…`, without braces.
    fields: String,
}

impl<S, N, F> FormatEvent<S, N> for Tagged<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let Some(rest) = line.strip_prefix('{') else {
            return writer.write_str(&line);
        };
        writer.write_char('{')?;
        writer.write_str(&self.fields)?;
        if !rest.starts_with('}') {
            writer.write_char(',')?;
        }
        writer.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;

    /// Logs one event like the worker's, through the subscriber `format`
    /// selects; returns what was written.
    fn log_one(format: LogFormat, process: Process) -> String {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let subscriber = subscriber(
            format,
            process,
            EnvFilter::new("info"),
            move || SharedWriter(sink.clone()),
            false,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("filtered out");
            tracing::info!(
                app = "1000001",
                channel = "private-a",
                count = 3,
                "subscribed"
            );
        });
        String::from_utf8(written.lock().unwrap().clone()).unwrap()
    }

    struct SharedWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_are_objects_naming_their_process() {
        let out = log_one(LogFormat::Json, Process::Worker(3));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["role"], "worker");
        assert_eq!(line["worker"], 3);
        assert_eq!(line["pid"], std::process::id());
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "subscribed");
        assert_eq!(line["app"], "1000001");
        assert_eq!(line["channel"], "private-a");
        assert_eq!(line["count"], 3);
        assert!(line["timestamp"].is_string(), "{line}");

        let master: Value =
            serde_json::from_str(log_one(LogFormat::Json, Process::Master).trim()).unwrap();
        assert_eq!(master["role"], "master");
        assert!(master.get("worker").is_none(), "{master}");
    }

    #[test]
    fn text_stays_the_default_human_format() {
        assert_eq!(LogFormat::default(), LogFormat::Text);
        let out = log_one(LogFormat::Text, Process::Bridge);
        assert!(out.contains("INFO"), "{out}");
        assert!(
            out.contains("subscribed app=\"1000001\" channel=\"private-a\" count=3"),
            "{out}"
        );
        assert!(serde_json::from_str::<Value>(out.trim()).is_err(), "{out}");
    }

    #[test]
    fn formats_are_named_text_and_json_everywhere() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", false), Ok(LogFormat::Text));
        assert_eq!(
            serde_json::from_str::<LogFormat>(r#""json""#).unwrap(),
            LogFormat::Json
        );
        assert_eq!(
            serde_json::to_string(&LogFormat::Text).unwrap(),
            r#""text""#
        );
    }

    #[test]
    fn process_fields_open_the_object() {
        assert_eq!(
            Process::Worker(2).json_fields(42),
            r#""role":"worker","worker":2,"pid":42"#
        );
        assert_eq!(Process::Bridge.json_fields(7), r#""role":"bridge","pid":7"#);
    }
}
