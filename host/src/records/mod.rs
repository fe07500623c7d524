//! The records pipeline: structured records (access logs from plugins, the
//! application's own logs from `POST /logs`) go through one bounded buffer
//! to one sink: stdout as JSON lines (the default), a file, or an HTTP
//! collector in batches.
//!
//! ```text
//! plugin ── records.emit ──┐
//!                          ├─▶ Buffer (bounded) ─▶ writer task ─▶ stdout | file | http
//! app ── POST /logs ───────┘    (on-app-log hooks run before)   (batches, retries)
//! ```
//!
//! Emitting never blocks. Whatever is dropped is counted in
//! `tandem_records_dropped_total{reason}` and logged (rate-limited), so
//! nothing disappears silently. `docs/logging.md` describes the whole
//! pipeline and its settings.

pub mod app_logs;
pub mod buffer;
pub mod config;
pub mod metrics;
pub mod sink;
pub mod sink_file;
pub mod sink_http;
pub mod sink_stdout;
pub mod writer;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffer::{Buffer, Refused};
use config::RecordsConfig;
use metrics::{DropReason, RecordMetrics, Source};
use sink::{OpenError, Sink};
use writer::WriterSettings;

/// How often, at most, a drop is logged (every drop is counted).
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Why a record was not taken; it has been dropped and counted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmitError {
    /// Not a JSON object.
    #[error("record dropped (invalid): not a JSON object: {0}")]
    Invalid(String),
    /// Over the size limit.
    #[error("record dropped (too_large): {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The record's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The buffer is full.
    #[error("record dropped (buffer_full): the record buffer is full; the sink is slow or down")]
    BufferFull,
    /// The pipeline has shut down.
    #[error("record dropped (shutdown): tandem is shutting down")]
    Closed,
}

impl EmitError {
    fn reason(&self) -> DropReason {
        match self {
            EmitError::Invalid(_) => DropReason::Invalid,
            EmitError::TooLarge { .. } => DropReason::TooLarge,
            EmitError::BufferFull => DropReason::BufferFull,
            EmitError::Closed => DropReason::Shutdown,
        }
    }
}

/// Checks that `record` is one JSON object within `max` bytes, and makes it
/// one line: JSON strings cannot hold raw newlines, so any newline is
/// whitespace between tokens and re-serializing removes it.
pub fn normalize(record: String, max: usize) -> Result<String, EmitError> {
    if record.len() > max {
        return Err(EmitError::TooLarge {
            len: record.len(),
            max,
        });
    }
    let trimmed = record.trim();
    if !trimmed.starts_with('{') {
        return Err(EmitError::Invalid("does not start with `{`".into()));
    }
    // A value that starts with `{` and parses whole is an object.
    serde_json::from_str::<serde::de::IgnoredAny>(trimmed)
        .map_err(|e| EmitError::Invalid(e.to_string()))?;
    if trimmed.contains(['\n', '\r']) {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| EmitError::Invalid(e.to_string()))?;
        return Ok(value.to_string());
    }
    if trimmed.len() == record.len() {
        Ok(record)
    } else {
        Ok(trimmed.to_owned())
    }
}

/// The records service: the buffer, its metrics, and the writer task.
pub struct Records {
    buffer: Arc<Buffer>,
    metrics: Arc<RecordMetrics>,
    max_record_bytes: usize,
    settings: WriterSettings,
    sink_name: &'static str,
    /// The sink until [`Records::start`] hands it to the writer task.
    sink: Mutex<Option<Sink>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    last_drop_warning: Mutex<Option<Instant>>,
}

impl Records {
    /// Opens the sink and registers the metrics. Records emitted before
    /// [`Records::start`] (e.g. from a plugin's `init`) wait in the buffer.
    pub fn new(
        config: &RecordsConfig,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Self, OpenError> {
        let sink = Sink::open(&config.sink)?;
        Ok(Self {
            buffer: Arc::new(Buffer::new(config.buffer_records)),
            metrics: Arc::new(RecordMetrics::new(metrics.registry())),
            max_record_bytes: config.max_record_bytes,
            settings: WriterSettings {
                batch_max_records: config.batch_max_records,
                batch_max: config.batch_max,
                retry_initial: config.retry_initial,
                retry_max: config.retry_max,
            },
            sink_name: sink.name(),
            sink: Mutex::new(Some(sink)),
            writer: Mutex::new(None),
            last_drop_warning: Mutex::new(None),
        })
    }

    /// Takes a record a plugin emitted: checks it is one JSON object within
    /// the size limit, then queues it.
    pub fn emit(&self, source: Source, record: String) -> Result<(), EmitError> {
        let line = normalize(record, self.max_record_bytes).inspect_err(|e| self.refused(e))?;
        self.push(source, line)
    }

    /// Queues a record the host serialized itself (one JSON object on one
    /// line), checking only its size.
    pub fn push(&self, source: Source, line: String) -> Result<(), EmitError> {
        if line.len() > self.max_record_bytes {
            let error = EmitError::TooLarge {
                len: line.len(),
                max: self.max_record_bytes,
            };
            self.refused(&error);
            return Err(error);
        }
        match self.buffer.push(line) {
            Ok(()) => {
                self.metrics.accepted(source);
                Ok(())
            }
            Err(refused) => {
                let error = match refused {
                    Refused::Full => EmitError::BufferFull,
                    Refused::Closed => EmitError::Closed,
                };
                self.refused(&error);
                Err(error)
            }
        }
    }

    /// Counts a record dropped before it reached the buffer, e.g. by an
    /// `on-app-log` hook.
    pub fn dropped(&self, reason: DropReason) {
        self.metrics.dropped(reason, 1);
    }

    /// Counts a refused record and logs it, at most every
    /// [`DROP_WARNING_INTERVAL`].
    fn refused(&self, error: &EmitError) {
        self.metrics.dropped(error.reason(), 1);
        let mut last = self
            .last_drop_warning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|at| at.elapsed() >= DROP_WARNING_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(
                sink = self.sink_name,
                "{error} (every drop is counted in tandem_records_dropped_total; this warning repeats at most every {DROP_WARNING_INTERVAL:?})"
            );
        }
    }

    /// Takes every queued record out of the buffer, oldest first, as the
    /// sink would get them. For `tandem replay`, which never starts the
    /// writer: it shows what a plugin emitted instead of writing it.
    pub fn take_queued(&self) -> Vec<String> {
        let taken = self.buffer.take(usize::MAX);
        self.buffer.release(taken.len());
        self.metrics.released(taken.len());
        taken
    }

    /// Records held: queued or being written.
    pub fn held(&self) -> usize {
        self.buffer.held()
    }

    /// The sink's name: `stdout`, `file` or `http`.
    pub fn sink_name(&self) -> &'static str {
        self.sink_name
    }

    /// Starts the writer task. `tandem run` calls this after printing its
    /// `tandem listening` line, so that line stays the first on stdout.
    /// Later calls do nothing.
    pub fn start(&self) {
        let Some(sink) = self.sink.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        let task = tokio::spawn(writer::run(
            sink,
            self.buffer.clone(),
            self.metrics.clone(),
            self.settings,
        ));
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// Writes what the buffer holds, for at most `limit`, then refuses new
    /// records. Returns how many records were still held and so were lost
    /// (counted as `shutdown`).
    pub async fn shutdown(&self, limit: Duration) -> usize {
        self.buffer.start_flush();
        let task = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task
            && tokio::time::timeout(limit, &mut task).await.is_err()
        {
            task.abort();
            tracing::warn!(
                sink = self.sink_name,
                ?limit,
                "record sink did not flush in time"
            );
        }
        let lost = self.buffer.close();
        if lost > 0 {
            self.metrics.dropped(DropReason::Shutdown, lost);
            self.metrics.released(lost);
            tracing::warn!(
                sink = self.sink_name,
                lost,
                "records still held at shutdown were dropped"
            );
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_accepts_objects_on_one_line() {
        assert_eq!(normalize("{\"a\":1}".into(), 100).unwrap(), "{\"a\":1}");
        assert_eq!(normalize("  {\"a\":1}\n".into(), 100).unwrap(), "{\"a\":1}");
        assert_eq!(
            normalize("{\n  \"a\": \"x\\ny\"\n}".into(), 100).unwrap(),
            "{\"a\":\"x\\ny\"}"
        );
    }

    #[test]
    fn normalize_refuses_what_is_not_one_object() {
        for bad in ["[1]", "\"x\"", "{\"a\":", "{} {}", "", "{\"a\":1}x"] {
            assert!(
                matches!(normalize(bad.into(), 100), Err(EmitError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            normalize("{\"a\":\"0123456789\"}".into(), 10),
            Err(EmitError::TooLarge { len: 18, max: 10 })
        );
    }

    fn records(buffer: usize) -> Records {
        let config = RecordsConfig {
            buffer_records: buffer,
            ..RecordsConfig::default()
        };
        Records::new(&config, &crate::metrics::Metrics::new()).unwrap()
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let metrics = crate::metrics::Metrics::new();
        let config = RecordsConfig {
            buffer_records: 2,
            ..RecordsConfig::default()
        };
        let records = Records::new(&config, &metrics).unwrap();
        records.emit(Source::Plugin, "{}".into()).unwrap();
        records.emit(Source::Plugin, "{}".into()).unwrap();
        assert_eq!(
            records.emit(Source::Plugin, "{}".into()),
            Err(EmitError::BufferFull)
        );
        assert!(records.emit(Source::Plugin, "nope".into()).is_err());
        records.dropped(DropReason::Filtered);
        let text = metrics.render();
        for expected in [
            "tandem_records_dropped_total{reason=\"buffer_full\"} 1",
            "tandem_records_dropped_total{reason=\"invalid\"} 1",
            "tandem_records_dropped_total{reason=\"filtered\"} 1",
            "tandem_records_dropped_total{reason=\"shutdown\"} 0",
            "tandem_records_accepted_total{source=\"plugin\"} 2",
            "tandem_records_buffered 2",
        ] {
            assert!(text.contains(expected), "{expected} in:\n{text}");
        }
    }

    #[test]
    fn taking_queued_records_frees_the_buffer() {
        let records = records(2);
        records.emit(Source::Plugin, "{\"a\":1}".into()).unwrap();
        records.emit(Source::Plugin, "{}".into()).unwrap();
        assert_eq!(records.take_queued(), ["{\"a\":1}", "{}"]);
        assert_eq!(records.held(), 0);
        records.emit(Source::Plugin, "{}".into()).unwrap();
        records.emit(Source::Plugin, "{}".into()).unwrap();
        assert_eq!(records.take_queued().len(), 2);
        assert!(records.take_queued().is_empty());
    }

    #[tokio::test]
    async fn shutdown_without_a_writer_counts_what_is_lost() {
        let records = records(10);
        records.push(Source::App, "{}".into()).unwrap();
        assert_eq!(records.shutdown(Duration::from_millis(10)).await, 1);
        assert_eq!(
            records.push(Source::App, "{}".into()),
            Err(EmitError::Closed)
        );
    }
}
