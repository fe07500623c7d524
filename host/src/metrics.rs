//! Prometheus metrics: the host's own (`tandem_*`) and those that plugins
//! create through the `metrics` import, exposed together on `/metrics`.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Most label pairs on one plugin metric.
pub const MAX_LABELS: usize = 16;
/// Longest metric name, label name or label value, in bytes.
pub const MAX_LABEL_BYTES: usize = 256;
/// Longest help text, in bytes.
pub const MAX_HELP_BYTES: usize = 1024;
/// Most histogram buckets on one plugin metric.
pub const MAX_BUCKETS: usize = 64;
/// Most metrics one plugin may create.
pub const MAX_METRICS_PER_PLUGIN: usize = 100;

/// Buckets for hook latency: hooks are expected to take microseconds.
const HOOK_BUCKETS: &[f64] = &[
    0.000_001, 0.000_002, 0.000_005, 0.000_01, 0.000_02, 0.000_05, 0.000_1, 0.000_25, 0.000_5,
    0.001, 0.005, 0.025, 0.1, 0.5,
];

/// The host's metrics and the plugin-defined ones.
pub struct Metrics {
    registry: Registry,
    requests_by_class: [IntCounter; 6],
    request_duration: Histogram,
    in_flight: IntGauge,
    upstream_failures: IntCounterVec,
    plugin_calls: IntCounterVec,
    plugin_failures: IntCounterVec,
    hook_duration: HistogramVec,
    plugin_loads: IntCounterVec,
    reloads: IntCounterVec,
    plugin_log_dropped: IntCounterVec,
    plugin_series_refused: IntCounterVec,
    plugin_trips: IntCounterVec,
    plugin_tripped_calls: IntCounterVec,
    plugin_tripped: IntGaugeVec,
    plugin_quarantines: IntCounterVec,
    plugin_quarantined: IntGaugeVec,
    plugin_quarantined_calls: IntCounterVec,
    connections_open: IntGauge,
    connections_closed: IntCounterVec,
    limit_rejections: IntCounterVec,
    upstream_resends: IntCounterVec,
    plugin_defined: RwLock<HashMap<String, PluginMetric>>,
    series_hasher: RandomState,
}

/// A plugin's view of the host metrics for one of its hooks, resolved once
/// per plugin version so the request path does no label lookups.
#[derive(Clone)]
pub struct HookMetrics {
    calls: IntCounter,
    duration: Histogram,
    failures: IntCounterVec,
    tripped_calls: IntCounter,
    quarantined_calls: IntCounter,
    plugin: String,
    hook: &'static str,
}

impl HookMetrics {
    /// Counts one call and its duration.
    pub fn observe(&self, elapsed: std::time::Duration) {
        self.calls.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a failure of the given kind (`trap`, `error`, `invalid`, ...).
    pub fn failed(&self, kind: &str) {
        self.failures
            .with_label_values(&[&self.plugin, self.hook, kind])
            .inc();
    }

    /// Counts a call not made because the plugin is tripped.
    pub fn tripped(&self) {
        self.tripped_calls.inc();
    }

    /// Counts a call run on the quarantine lane.
    pub fn quarantined(&self) {
        self.quarantined_calls.inc();
    }
}

/// Who is updating a plugin metric, and the limits that come with it.
#[derive(Debug, Clone, Copy)]
pub struct MetricOwner<'a> {
    /// The plugin's name.
    pub plugin: &'a str,
    /// Series (label-value combinations) a metric it creates may have.
    pub series_limit: usize,
}

enum PluginCollector {
    Counter(IntCounterVec),
    Gauge(prometheus::GaugeVec),
    Histogram(HistogramVec),
}

/// A metric a plugin created, with the series it has so far: without a
/// cap, a plugin that puts (say) a client address in a label would grow
/// `/metrics` without end.
struct PluginMetric {
    collector: PluginCollector,
    label_names: Vec<String>,
    owner: Arc<str>,
    series_limit: usize,
    /// Hashes of the label values seen; a collision only undercounts.
    series: Mutex<HashSet<u64>>,
    /// Whether another plugin has used it (their series add up with the
    /// owner's): warned about once, so that the updates of two sharing
    /// plugins take no lock.
    shared: AtomicBool,
}

impl PluginMetric {
    fn label_names(&self) -> &[String] {
        &self.label_names
    }

    fn kind(&self) -> MetricKind {
        match self.collector {
            PluginCollector::Counter(..) => MetricKind::Counter,
            PluginCollector::Gauge(..) => MetricKind::Gauge,
            PluginCollector::Histogram(..) => MetricKind::Histogram,
        }
    }

    /// Notes that `plugin`, if it is not the owner, uses this metric too.
    /// Sharing is allowed (a metric is a name on `/metrics`, and kind and
    /// labels agree), but it is seldom meant: two copies of one plugin
    /// under two names, say, whose counts would silently add up.
    fn note_user(&self, name: &str, plugin: &str) {
        if *self.owner == *plugin || self.shared.load(Ordering::Relaxed) {
            return;
        }
        if !self.shared.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                metric = name,
                owner = &*self.owner,
                plugin,
                "two plugins use one metric, so their series add up; if that is not meant, give one of them other metric names (a namespace setting, if the plugin has one)"
            );
        }
    }

    /// Admits the series `hash`, unless it is new and the metric is full.
    fn admit_series(&self, hash: u64) -> bool {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        if series.contains(&hash) {
            return true;
        }
        if series.len() >= self.series_limit {
            return false;
        }
        series.insert(hash);
        true
    }
}

/// The kinds of plugin metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

/// What a plugin asks to do to one of its metrics.
pub enum MetricUpdate {
    /// Add to a counter.
    CounterAdd(u64),
    /// Set a gauge.
    GaugeSet(f64),
    /// Add to a gauge.
    GaugeAdd(f64),
    /// Observe a value in a histogram.
    Observe(f64),
}

impl MetricUpdate {
    fn kind(&self) -> MetricKind {
        match self {
            MetricUpdate::CounterAdd(_) => MetricKind::Counter,
            MetricUpdate::GaugeSet(_) | MetricUpdate::GaugeAdd(_) => MetricKind::Gauge,
            MetricUpdate::Observe(_) => MetricKind::Histogram,
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_LABEL_BYTES
}

fn check_metric_name(name: &str) -> Result<(), String> {
    if !valid_name(name) {
        return Err(format!(
            "invalid metric name {name:?}: use [a-zA-Z_][a-zA-Z0-9_]*"
        ));
    }
    if name.starts_with("tandem_") {
        return Err(format!(
            "metric name {name:?}: the tandem_ prefix is the host's"
        ));
    }
    Ok(())
}

fn check_label_names<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> Result<(), String> {
    if names.len() > MAX_LABELS {
        return Err(format!("more than {MAX_LABELS} labels"));
    }
    for name in names {
        if !valid_name(name) || name.starts_with("__") {
            return Err(format!("invalid label name {name:?}"));
        }
    }
    Ok(())
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("host metric names are unique and valid");
    collector
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the registry with the host's metrics.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "tandem_requests_total",
                    "Requests answered, by status class.",
                ),
                &["class"],
            )
            .expect("valid metric"),
        );
        let requests_by_class =
            ["1xx", "2xx", "3xx", "4xx", "5xx", "other"].map(|c| requests.with_label_values(&[c]));
        let request_duration = register(
            &registry,
            Histogram::with_opts(HistogramOpts::new(
                "tandem_request_duration_seconds",
                "Time from the request head to the last byte of the response.",
            ))
            .expect("valid metric"),
        );
        let in_flight = register(
            &registry,
            IntGauge::new("tandem_requests_in_flight", "Requests being handled.").expect("valid"),
        );
        let upstream_failures = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "tandem_upstream_failures_total",
                    "Upstream calls that failed, by reason (upstream_unreachable, upstream_timeout, upstream_failed, response_body: the body broke after its head went out).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        );
        let plugin_calls = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "tandem_plugin_calls_total",
                    "Hook calls, by plugin and hook.",
                ),
                &["plugin", "hook"],
            )
            .expect("valid metric"),
        );
        let plugin_failures = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "tandem_plugin_failures_total",
                    "Hook calls that trapped, returned an error or returned something invalid.",
                ),
                &["plugin", "hook", "kind"],
            )
            .expect("valid metric"),
        );
        let hook_duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "tandem_plugin_hook_duration_seconds",
                    "Time spent in one hook call, instance checkout included.",
                )
                .buckets(HOOK_BUCKETS.to_vec()),
                &["plugin", "hook"],
            )
            .expect("valid metric"),
        );
        let plugin_loads = register(
            &registry,
            IntCounterVec::new(
                Opts::new("tandem_plugin_loads_total", "Plugin loads, by outcome."),
                &["outcome"],
            )
            .expect("valid metric"),
        );
        let reloads = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "tandem_reloads_total",
                    "Reloads of the plugin directory, by outcome (ok, unchanged, partial, error).",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        );
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let plugin_log_dropped = counter_vec(
            "tandem_plugin_log_dropped_total",
            "Plugin log records (log import, stdout, stderr) dropped over the plugin's rate limit.",
            &["plugin"],
        );
        let plugin_series_refused = counter_vec(
            "tandem_plugin_metric_series_refused_total",
            "Plugin metric updates refused because the metric reached its series limit.",
            &["plugin"],
        );
        let plugin_trips = counter_vec(
            "tandem_plugin_trips_total",
            "Times a plugin was tripped out of the chain after consecutive failures.",
            &["plugin"],
        );
        let plugin_tripped_calls = counter_vec(
            "tandem_plugin_tripped_calls_total",
            "Hook calls not made because the plugin was tripped.",
            &["plugin", "hook"],
        );
        let plugin_tripped = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tandem_plugin_tripped",
                    "1 while a plugin is tripped (as of its last trip or call), else 0.",
                ),
                &["plugin"],
            )
            .expect("valid metric"),
        );
        let plugin_quarantines = counter_vec(
            "tandem_plugin_quarantines_total",
            "Times a plugin was put in quarantine after a call ran past its deadline.",
            &["plugin"],
        );
        let plugin_quarantined = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tandem_plugin_quarantined",
                    "1 while a plugin is quarantined (as of its last timeout or call), else 0.",
                ),
                &["plugin"],
            )
            .expect("valid metric"),
        );
        let plugin_quarantined_calls = counter_vec(
            "tandem_plugin_quarantined_calls_total",
            "Hook calls run on the low-priority quarantine lane.",
            &["plugin", "hook"],
        );
        let connections_open = register(
            &registry,
            IntGauge::new(
                "tandem_connections_open",
                "Client connections open on the proxy listener.",
            )
            .expect("valid metric"),
        );
        let connections_closed = counter_vec(
            "tandem_connections_closed_total",
            "Client connections the proxy closed itself, by reason (no_request, idle).",
            &["reason"],
        );
        let limit_rejections = counter_vec(
            "tandem_limit_rejections_total",
            "Requests refused by a proxy limit or as malformed, by reason (body_too_large, request_timeout, bad_request_body, bad_request_head, connect_not_allowed, transfer_coding_not_implemented).",
            &["reason"],
        );
        let upstream_resends = counter_vec(
            "tandem_upstream_resends_total",
            "Requests sent to the upstream again on a new connection after a pooled one failed under them, by reason (closed, reset).",
            &["reason"],
        );
        Self {
            registry,
            requests_by_class,
            request_duration,
            in_flight,
            upstream_failures,
            plugin_calls,
            plugin_failures,
            hook_duration,
            plugin_loads,
            reloads,
            plugin_log_dropped,
            plugin_series_refused,
            plugin_trips,
            plugin_tripped_calls,
            plugin_tripped,
            plugin_quarantines,
            plugin_quarantined,
            plugin_quarantined_calls,
            connections_open,
            connections_closed,
            limit_rejections,
            upstream_resends,
            plugin_defined: RwLock::default(),
            series_hasher: RandomState::new(),
        }
    }

    /// The registry, for host subsystems that register metrics of their
    /// own (e.g. the records pipeline).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one answered request.
    pub fn request_done(&self, status: u16, elapsed: std::time::Duration) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        self.requests_by_class[class].inc();
        self.request_duration.observe(elapsed.as_secs_f64());
    }

    /// The in-flight request gauge.
    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    /// Counts an upstream failure.
    pub fn upstream_failed(&self, reason: &str) {
        self.upstream_failures.with_label_values(&[reason]).inc();
    }

    /// Counts a plugin load attempt (`ok` or `error`).
    pub fn plugin_loaded(&self, outcome: &str) {
        self.plugin_loads.with_label_values(&[outcome]).inc();
    }

    /// Counts a reload by outcome.
    pub fn reloaded(&self, outcome: &str) {
        self.reloads.with_label_values(&[outcome]).inc();
    }

    /// Resolves the metrics of one hook of one plugin.
    pub fn hook(&self, plugin: &str, hook: &'static str) -> HookMetrics {
        HookMetrics {
            calls: self.plugin_calls.with_label_values(&[plugin, hook]),
            duration: self.hook_duration.with_label_values(&[plugin, hook]),
            failures: self.plugin_failures.clone(),
            tripped_calls: self.plugin_tripped_calls.with_label_values(&[plugin, hook]),
            quarantined_calls: self
                .plugin_quarantined_calls
                .with_label_values(&[plugin, hook]),
            plugin: plugin.to_owned(),
            hook,
        }
    }

    /// The counter of a plugin's dropped log records.
    pub fn log_dropped(&self, plugin: &str) -> IntCounter {
        self.plugin_log_dropped.with_label_values(&[plugin])
    }

    /// Counts a trip of a plugin's breaker and marks it tripped.
    pub fn plugin_tripped(&self, plugin: &str) {
        self.plugin_trips.with_label_values(&[plugin]).inc();
        self.plugin_tripped.with_label_values(&[plugin]).set(1);
    }

    /// Marks a plugin's breaker closed again.
    pub fn plugin_recovered(&self, plugin: &str) {
        self.plugin_tripped.with_label_values(&[plugin]).set(0);
    }

    /// Counts a quarantine of a plugin and marks it quarantined.
    pub fn plugin_quarantined(&self, plugin: &str) {
        self.plugin_quarantines.with_label_values(&[plugin]).inc();
        self.plugin_quarantined.with_label_values(&[plugin]).set(1);
    }

    /// Marks a plugin out of quarantine.
    pub fn plugin_released(&self, plugin: &str) {
        self.plugin_quarantined.with_label_values(&[plugin]).set(0);
    }

    /// The gauge of open client connections.
    pub fn connections_open(&self) -> &IntGauge {
        &self.connections_open
    }

    /// Counts a connection the proxy closed itself (`no_request`, `idle`).
    pub fn connection_closed(&self, reason: &str) {
        self.connections_closed.with_label_values(&[reason]).inc();
    }

    /// Counts a request sent to the upstream again (`closed`, `reset`).
    pub fn upstream_resent(&self, reason: &str) {
        self.upstream_resends.with_label_values(&[reason]).inc();
    }

    /// Counts a request refused by a limit (`body_too_large`, ...).
    pub fn limit_rejected(&self, reason: &str) {
        self.limit_rejections.with_label_values(&[reason]).inc();
    }

    /// Declares a plugin metric with help text, label names and buckets.
    pub fn describe(
        &self,
        owner: MetricOwner<'_>,
        name: &str,
        kind: MetricKind,
        help: &str,
        label_names: &[String],
        buckets: &[f64],
    ) -> Result<(), String> {
        check_metric_name(name)?;
        check_label_names(label_names.iter().map(String::as_str))?;
        if help.len() > MAX_HELP_BYTES {
            return Err(format!("help text longer than {MAX_HELP_BYTES} bytes"));
        }
        if buckets.len() > MAX_BUCKETS {
            return Err(format!("more than {MAX_BUCKETS} buckets"));
        }
        let mut defined = self
            .plugin_defined
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = defined.get(name) {
            if existing.kind() == kind && existing.label_names() == label_names {
                existing.note_user(name, owner.plugin);
                return Ok(());
            }
            return Err(format!(
                "metric {name:?} is already defined with another kind or labels"
            ));
        }
        let owned = defined
            .values()
            .filter(|m| &*m.owner == owner.plugin)
            .count();
        if owned >= MAX_METRICS_PER_PLUGIN {
            return Err(format!(
                "plugin {} already has {MAX_METRICS_PER_PLUGIN} metrics",
                owner.plugin
            ));
        }
        let collector = self.create(name, kind, help, label_names, buckets)?;
        defined.insert(
            name.to_owned(),
            PluginMetric {
                collector,
                label_names: label_names.to_vec(),
                owner: owner.plugin.into(),
                series_limit: owner.series_limit,
                series: Mutex::default(),
                shared: AtomicBool::new(false),
            },
        );
        Ok(())
    }

    fn create(
        &self,
        name: &str,
        kind: MetricKind,
        help: &str,
        label_names: &[String],
        buckets: &[f64],
    ) -> Result<PluginCollector, String> {
        let labels: Vec<&str> = label_names.iter().map(String::as_str).collect();
        let help = if help.is_empty() {
            "Defined by a plugin."
        } else {
            help
        };
        let metric = match kind {
            MetricKind::Counter => PluginCollector::Counter(
                IntCounterVec::new(Opts::new(name, help), &labels).map_err(|e| e.to_string())?,
            ),
            MetricKind::Gauge => PluginCollector::Gauge(
                prometheus::GaugeVec::new(Opts::new(name, help), &labels)
                    .map_err(|e| e.to_string())?,
            ),
            MetricKind::Histogram => {
                let mut opts = HistogramOpts::new(name, help);
                if !buckets.is_empty() {
                    opts = opts.buckets(buckets.to_vec());
                }
                PluginCollector::Histogram(
                    HistogramVec::new(opts, &labels).map_err(|e| e.to_string())?,
                )
            }
        };
        let collector: Box<dyn prometheus::core::Collector> = match &metric {
            PluginCollector::Counter(m) => Box::new(m.clone()),
            PluginCollector::Gauge(m) => Box::new(m.clone()),
            PluginCollector::Histogram(m) => Box::new(m.clone()),
        };
        self.registry
            .register(collector)
            .map_err(|e| e.to_string())?;
        Ok(metric)
    }

    /// Applies a plugin's update, creating the metric on first use.
    pub fn update(
        &self,
        owner: MetricOwner<'_>,
        name: &str,
        labels: &[(String, String)],
        update: MetricUpdate,
    ) -> Result<(), String> {
        if labels.len() > MAX_LABELS {
            return Err(format!("more than {MAX_LABELS} labels"));
        }
        for (key, value) in labels {
            if key.len() > MAX_LABEL_BYTES || value.len() > MAX_LABEL_BYTES {
                return Err(format!("label {key:?} longer than {MAX_LABEL_BYTES} bytes"));
            }
        }
        let known = {
            let defined = self
                .plugin_defined
                .read()
                .unwrap_or_else(|p| p.into_inner());
            defined.contains_key(name)
        };
        if !known {
            let names: Vec<String> = labels.iter().map(|(k, _)| k.clone()).collect();
            self.describe(owner, name, update.kind(), "", &names, &[])?;
        }
        let defined = self
            .plugin_defined
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let metric = defined
            .get(name)
            .ok_or_else(|| format!("metric {name:?} vanished"))?;
        if metric.kind() != update.kind() {
            return Err(format!("metric {name:?} is a {:?}", metric.kind()));
        }
        metric.note_user(name, owner.plugin);
        let values = ordered_values(metric.label_names(), labels)
            .ok_or_else(|| format!("metric {name:?} has labels {:?}", metric.label_names()))?;
        if !metric.admit_series(self.series_hasher.hash_one(&values)) {
            self.plugin_series_refused
                .with_label_values(&[owner.plugin])
                .inc();
            return Err(format!(
                "metric {name:?} has reached its limit of {} series (label combinations)",
                metric.series_limit
            ));
        }
        match (&metric.collector, update) {
            (PluginCollector::Counter(m), MetricUpdate::CounterAdd(delta)) => {
                m.with_label_values(&values).inc_by(delta)
            }
            (PluginCollector::Gauge(m), MetricUpdate::GaugeSet(value)) => {
                m.with_label_values(&values).set(value)
            }
            (PluginCollector::Gauge(m), MetricUpdate::GaugeAdd(delta)) => {
                m.with_label_values(&values).add(delta)
            }
            (PluginCollector::Histogram(m), MetricUpdate::Observe(value)) => {
                m.with_label_values(&values).observe(value)
            }
            _ => unreachable!("kinds were compared above"),
        }
        Ok(())
    }

    /// Everything in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The label values in the metric's label-name order, if the names match.
fn ordered_values<'a>(names: &[String], labels: &'a [(String, String)]) -> Option<Vec<&'a str>> {
    if names.len() != labels.len() {
        return None;
    }
    names
        .iter()
        .map(|name| {
            labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        })
        .collect()
}
