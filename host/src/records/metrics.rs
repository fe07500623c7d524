//! The records pipeline's metrics: what came in, what was written, what was
//! dropped and why, and how batches fared.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a record was dropped; the `reason` label of
/// `tandem_records_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not a JSON object.
    Invalid,
    /// Longer than `max_record_bytes`.
    TooLarge,
    /// The buffer held `buffer_records` records already.
    BufferFull,
    /// Still held when the shutdown flush ran out of time, or emitted after.
    Shutdown,
    /// The HTTP collector refused the batch with a 4xx that retrying cannot fix.
    Rejected,
    /// An `on-app-log` hook returned `none`.
    Filtered,
    /// An `on-app-log` hook of a plugin with failure policy `closed` failed.
    PluginFailure,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 7] = [
        DropReason::Invalid,
        DropReason::TooLarge,
        DropReason::BufferFull,
        DropReason::Shutdown,
        DropReason::Rejected,
        DropReason::Filtered,
        DropReason::PluginFailure,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Invalid => "invalid",
            DropReason::TooLarge => "too_large",
            DropReason::BufferFull => "buffer_full",
            DropReason::Shutdown => "shutdown",
            DropReason::Rejected => "rejected",
            DropReason::Filtered => "filtered",
            DropReason::PluginFailure => "plugin_failure",
        }
    }
}

/// Who emitted a record; the `source` label of
/// `tandem_records_accepted_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A plugin, through the `records` import.
    Plugin,
    /// The application, through `POST /logs`.
    App,
}

/// The pipeline's counters, resolved once so emitting does no label lookups.
pub struct RecordMetrics {
    accepted: [IntCounter; 2],
    dropped: [IntCounter; DropReason::ALL.len()],
    written: IntCounter,
    batches_sent: IntCounter,
    batches_failed: IntCounter,
    buffered: IntGauge,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("records metric names are unique and valid");
    c
}

impl RecordMetrics {
    /// Registers the metrics. Every label value is created at zero, so
    /// alerts and dashboards see the series before the first drop.
    pub fn new(registry: &Registry) -> Self {
        let accepted = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "tandem_records_accepted_total",
                    "Records taken into the record buffer, by source (plugin, app).",
                ),
                &["source"],
            )
            .expect("valid metric"),
        );
        let dropped = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "tandem_records_dropped_total",
                    "Records dropped, by reason (invalid, too_large, buffer_full, shutdown, rejected, filtered, plugin_failure).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        );
        let batches = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "tandem_records_batches_total",
                    "Batch writes to the record sink, by outcome (sent, failed); a retried batch counts once per attempt.",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        );
        Self {
            accepted: ["plugin", "app"].map(|s| accepted.with_label_values(&[s])),
            dropped: DropReason::ALL.map(|r| dropped.with_label_values(&[r.label()])),
            written: register(
                registry,
                IntCounter::new(
                    "tandem_records_written_total",
                    "Records the sink wrote (stdout, file) or the collector accepted (http).",
                )
                .expect("valid metric"),
            ),
            batches_sent: batches.with_label_values(&["sent"]),
            batches_failed: batches.with_label_values(&["failed"]),
            buffered: register(
                registry,
                IntGauge::new(
                    "tandem_records_buffered",
                    "Records held in the record buffer, queued or being written.",
                )
                .expect("valid metric"),
            ),
        }
    }

    /// Counts a record taken into the buffer.
    pub fn accepted(&self, source: Source) {
        let index = match source {
            Source::Plugin => 0,
            Source::App => 1,
        };
        self.accepted[index].inc();
        self.buffered.inc();
    }

    /// Counts `n` dropped records.
    pub fn dropped(&self, reason: DropReason, n: usize) {
        let index = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is in ALL");
        self.dropped[index].inc_by(n as u64);
    }

    /// Records no longer held (written or dropped).
    pub fn released(&self, n: usize) {
        self.buffered.sub(n as i64);
    }

    /// Counts a batch of `n` records written.
    pub fn batch_sent(&self, n: usize) {
        self.batches_sent.inc();
        self.written.inc_by(n as u64);
    }

    /// Counts a failed batch attempt.
    pub fn batch_failed(&self) {
        self.batches_failed.inc();
    }
}
