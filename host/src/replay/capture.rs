//! What a plugin logged, counted and emitted during one hook call.
//!
//! Logs: the host writes plugin log records as `tracing` events with target
//! `plugin`; replay installs [`LogCapture`] as a layer and drains it after
//! each call. Metrics: the values of the plugin-defined series before and
//! after each call, read from the replay's own registry, give the change.
//! Records (`records.emit`): replay never starts the record writer, so what
//! a call emitted waits in the replay's own record buffer and is taken from
//! there after the call; what the pipeline refused shows as a change of
//! `tandem_records_dropped_total`. None of them needs anything from the
//! runtime beyond what it already does.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::metrics::Metrics;

/// The `tracing` target of plugin log records (see `runtime::host_impl`).
pub const PLUGIN_TARGET: &str = "plugin";

/// Longest emitted record shown, in bytes: as long as the longest line kept
/// from a plugin's stdout or stderr. The record itself may be longer (up to
/// `[records] max_record_bytes`); the rest is cut from the report.
pub const MAX_RECORD_SHOWN_BYTES: usize = crate::runtime::output::MAX_LINE_BYTES;

/// The host series that counts refused records, by reason.
const RECORDS_DROPPED: &str = "tandem_records_dropped_total{reason=\"";

/// One record a plugin wrote through the `log` import.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogRecord {
    /// `trace` to `error`.
    pub level: String,
    /// The message.
    pub message: String,
    /// The fields as the host renders them: `key="value" ...`.
    pub fields: String,
}

/// A `tracing` layer that keeps plugin log records until drained.
#[derive(Clone, Default)]
pub struct LogCapture {
    records: Arc<Mutex<Vec<LogRecord>>>,
}

impl LogCapture {
    /// Takes every record captured since the last call.
    pub fn drain(&self) -> Vec<LogRecord> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[derive(Default)]
struct RecordVisitor {
    message: String,
    fields: String,
}

impl Visit for RecordVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "fields" => {
                let _ = write!(self.fields, "{value:?}");
            }
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for LogCapture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        if metadata.target() != PLUGIN_TARGET {
            return;
        }
        let mut visitor = RecordVisitor::default();
        event.record(&mut visitor);
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(LogRecord {
                level: metadata.level().as_str().to_lowercase(),
                message: visitor.message,
                fields: visitor.fields,
            });
    }
}

/// A change of one plugin-defined series during a hook call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricChange {
    /// The series, e.g. `validator_rejections_total{header="x-tenant"}`.
    pub series: String,
    /// The value before the call (0 for a new series).
    pub before: f64,
    /// The value after.
    pub after: f64,
}

/// One record a plugin emitted, for the report: compact JSON, cut to
/// [`MAX_RECORD_SHOWN_BYTES`] with the full length said at the end.
pub fn shown_record(record: &str) -> String {
    let compact = compact_json(record);
    if compact.len() <= MAX_RECORD_SHOWN_BYTES {
        return compact;
    }
    let end = compact.floor_char_boundary(MAX_RECORD_SHOWN_BYTES);
    format!("{}… (cut, {} bytes)", &compact[..end], compact.len())
}

/// `json` without whitespace between tokens, keys in the order the plugin
/// wrote them (parsing into a map would sort them). The pipeline has
/// checked that the record is one JSON object, so whitespace outside
/// strings is only ever between tokens.
fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            continue;
        }
        out.push(c);
    }
    out
}

/// Refused records so far, by reason (`invalid`, `too_large`, ...), from
/// the replay's own registry.
pub fn records_dropped(metrics: &Metrics) -> BTreeMap<String, f64> {
    metrics
        .render()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(RECORDS_DROPPED)?;
            let (reason, value) = rest.split_once("\"} ")?;
            Some((reason.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Records a call emitted that the pipeline refused, for one reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordDrop {
    /// `invalid`, `too_large`, `buffer_full` or `shutdown`, as in
    /// `tandem_records_dropped_total`.
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// The refusals between two readings of [`records_dropped`].
pub fn drops(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<RecordDrop> {
    changes(before, after)
        .into_iter()
        .map(|change| RecordDrop {
            reason: change.series,
            count: (change.after - change.before) as u64,
        })
        .collect()
}

/// The values of every plugin-defined series: Prometheus text without the
/// comments and the host's own `tandem_*` series. Histograms show as their
/// `_sum` and `_count` series (buckets are left out to keep reports short).
pub fn plugin_series(metrics: &Metrics) -> BTreeMap<String, f64> {
    metrics
        .render()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with("tandem_"))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            if series.contains("_bucket{") {
                return None;
            }
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The series whose value changed between two readings.
pub fn changes(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<MetricChange> {
    after
        .iter()
        .filter_map(|(series, &value)| {
            let old = before.get(series).copied().unwrap_or(0.0);
            (old != value).then(|| MetricChange {
                series: series.clone(),
                before: old,
                after: value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricUpdate;

    #[test]
    fn changes_show_only_plugin_series_that_moved() {
        let metrics = Metrics::new();
        let hit = |label: &str, count: u64| {
            metrics
                .update(
                    crate::metrics::MetricOwner {
                        plugin: "probe",
                        series_limit: 100,
                    },
                    "hits_total",
                    &[("k".into(), label.into())],
                    MetricUpdate::CounterAdd(count),
                )
                .unwrap();
        };
        hit("a", 1);
        let before = plugin_series(&metrics);
        hit("b", 2);
        metrics.request_done(200, std::time::Duration::from_millis(1));
        let after = plugin_series(&metrics);
        assert_eq!(
            changes(&before, &after),
            vec![MetricChange {
                series: "hits_total{k=\"b\"}".into(),
                before: 0.0,
                after: 2.0
            }]
        );
    }

    #[test]
    fn records_show_compact_and_bounded() {
        assert_eq!(
            shown_record("{ \"a\" : [1, 2],\t\"b c\": \"x \\\" y\" }"),
            "{\"a\":[1,2],\"b c\":\"x \\\" y\"}"
        );
        assert_eq!(shown_record("{\"z\":1,\"a\":2}"), "{\"z\":1,\"a\":2}");
        let long = format!("{{\"k\":\"{}\"}}", "é".repeat(MAX_RECORD_SHOWN_BYTES));
        let shown = shown_record(&long);
        let (kept, note) = shown.split_once('…').unwrap();
        assert!(kept.len() <= MAX_RECORD_SHOWN_BYTES && kept.len() > MAX_RECORD_SHOWN_BYTES - 4);
        assert_eq!(note, format!(" (cut, {} bytes)", long.len()));
    }

    #[test]
    fn refused_records_are_counted_by_reason() {
        let metrics = Metrics::new();
        let records = crate::records::Records::new(
            &crate::records::config::RecordsConfig::default(),
            &metrics,
        )
        .unwrap();
        let source = crate::records::metrics::Source::Plugin;
        let before = records_dropped(&metrics);
        records.emit(source, "{}".into()).unwrap();
        assert!(records.emit(source, "[1]".into()).is_err());
        assert!(records.emit(source, "nope".into()).is_err());
        assert_eq!(
            drops(&before, &records_dropped(&metrics)),
            vec![RecordDrop {
                reason: "invalid".into(),
                count: 2
            }]
        );
    }

    #[test]
    fn plugin_log_events_are_captured_and_others_are_not() {
        use tracing_subscriber::layer::SubscriberExt;
        let capture = LogCapture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            let fields = "header=\"x-tenant\"";
            tracing::warn!(target: "plugin", plugin = "p", fields = %fields, "missing {}", "header");
            tracing::warn!("host message");
        });
        assert_eq!(
            capture.drain(),
            vec![LogRecord {
                level: "warn".into(),
                message: "missing header".into(),
                fields: "header=\"x-tenant\"".into(),
            }]
        );
        assert!(capture.drain().is_empty());
    }
}
