//! The host side of the plugin imports: request and response accessors,
//! logging, metrics, shared state and records.

use http::HeaderMap;
use wasmtime::component::Resource;

use super::bindings::host_traits::{
    HostRequest, HostResponse, LogHost, MetricsHost, RecordsHost, SharedStateHost, TypesHost,
};
use super::bindings::{BucketDecision, EditError, LogLevel, MetricKind as WitMetricKind};
use super::exchange::{
    RequestHandle, ResponseHandle, header_names, header_value, header_values, remove_header,
    write_header,
};
use super::state::HostState;
use crate::metrics::{MetricKind, MetricOwner, MetricUpdate};
use crate::records::metrics::Source;

/// Longest log message a plugin may write, in bytes; longer ones are cut.
pub const MAX_LOG_MESSAGE_BYTES: usize = 8 * 1024;
/// Most fields on one plugin log record; more are dropped.
pub const MAX_LOG_FIELDS: usize = 32;
/// Longest log field key, in bytes.
pub const MAX_LOG_KEY_BYTES: usize = 256;
/// Longest log field value, in bytes.
pub const MAX_LOG_VALUE_BYTES: usize = 4096;
/// Longest path and query a plugin may set, in bytes.
pub const MAX_TARGET_BYTES: usize = 8 * 1024;

impl HostState {
    fn metric_owner(&self) -> MetricOwner<'_> {
        MetricOwner {
            plugin: &self.services.name,
            series_limit: self.services.metric_series_limit,
        }
    }

    fn update_metric(
        &self,
        name: &str,
        labels: &[(String, String)],
        update: MetricUpdate,
    ) -> Result<(), String> {
        self.services
            .metrics
            .update(self.metric_owner(), name, labels, update)
    }

    // Between calls (or after a hook gave the heads back) a head is not in
    // the store: its headers then read as empty and edits do nothing.

    fn request_headers(&self) -> Option<&HeaderMap> {
        self.request.as_ref().map(|r| &r.parts.headers)
    }

    fn request_headers_mut(&mut self) -> Option<&mut HeaderMap> {
        self.request.as_mut().map(|r| &mut r.parts.headers)
    }

    fn response_headers(&self) -> Option<&HeaderMap> {
        self.response.as_ref().map(|r| &r.parts.headers)
    }

    fn response_headers_mut(&mut self) -> Option<&mut HeaderMap> {
        self.response.as_mut().map(|r| &mut r.parts.headers)
    }
}

/// `set-header` / `append-header` on a head that may be absent.
fn write_if_present(
    headers: Option<&mut HeaderMap>,
    name: &str,
    value: &str,
    append: bool,
) -> Result<(), EditError> {
    match headers {
        Some(headers) => write_header(headers, name, value, append),
        None => Ok(()),
    }
}

impl TypesHost for HostState {}

impl HostRequest for HostState {
    fn method(&mut self, _: Resource<RequestHandle>) -> String {
        self.request
            .as_ref()
            .map(|r| r.parts.method.to_string())
            .unwrap_or_default()
    }

    fn path(&mut self, _: Resource<RequestHandle>) -> String {
        self.request
            .as_ref()
            .map(|r| r.parts.uri.path().to_owned())
            .unwrap_or_default()
    }

    fn query(&mut self, _: Resource<RequestHandle>) -> Option<String> {
        self.request.as_ref()?.parts.uri.query().map(str::to_owned)
    }

    fn set_path_and_query(
        &mut self,
        _: Resource<RequestHandle>,
        target: String,
    ) -> Result<(), EditError> {
        let Some(request) = self.request.as_mut() else {
            return Ok(());
        };
        if target.len() > MAX_TARGET_BYTES {
            return Err(EditError::LimitExceeded);
        }
        if !target.starts_with('/') {
            return Err(EditError::InvalidValue);
        }
        let path_and_query: http::uri::PathAndQuery =
            target.parse().map_err(|_| EditError::InvalidValue)?;
        let mut parts = std::mem::take(&mut request.parts.uri).into_parts();
        parts.path_and_query = Some(path_and_query);
        request.parts.uri = http::Uri::from_parts(parts).map_err(|_| EditError::InvalidValue)?;
        Ok(())
    }

    fn authority(&mut self, _: Resource<RequestHandle>) -> Option<String> {
        let request = self.request.as_ref()?;
        match request.parts.uri.authority() {
            Some(authority) => Some(authority.to_string()),
            None => header_value(&request.parts.headers, "host"),
        }
    }

    fn scheme(&mut self, _: Resource<RequestHandle>) -> String {
        self.request
            .as_ref()
            .map(|r| r.scheme)
            .unwrap_or("http")
            .to_owned()
    }

    fn client_addr(&mut self, _: Resource<RequestHandle>) -> String {
        self.request
            .as_ref()
            .map(|r| r.client_addr.to_string())
            .unwrap_or_default()
    }

    fn header(&mut self, _: Resource<RequestHandle>, name: String) -> Option<String> {
        header_value(self.request_headers()?, &name)
    }

    fn header_all(&mut self, _: Resource<RequestHandle>, name: String) -> Vec<String> {
        self.request_headers()
            .map(|headers| header_values(headers, &name))
            .unwrap_or_default()
    }

    fn header_names(&mut self, _: Resource<RequestHandle>) -> Vec<String> {
        self.request_headers().map(header_names).unwrap_or_default()
    }

    fn set_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
        value: String,
    ) -> Result<(), EditError> {
        write_if_present(self.request_headers_mut(), &name, &value, false)
    }

    fn append_header(
        &mut self,
        _: Resource<RequestHandle>,
        name: String,
        value: String,
    ) -> Result<(), EditError> {
        write_if_present(self.request_headers_mut(), &name, &value, true)
    }

    fn remove_header(&mut self, _: Resource<RequestHandle>, name: String) {
        if let Some(headers) = self.request_headers_mut() {
            remove_header(headers, &name);
        }
    }

    fn property(&mut self, _: Resource<RequestHandle>, key: String) -> Option<String> {
        self.request
            .as_ref()?
            .properties
            .get(&key)
            .map(str::to_owned)
    }

    fn set_property(
        &mut self,
        _: Resource<RequestHandle>,
        key: String,
        value: String,
    ) -> Result<(), EditError> {
        match self.request.as_mut() {
            Some(r) => r.properties.set(key, value),
            None => Ok(()),
        }
    }

    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        // Plugins only ever receive borrows; there is nothing to free.
        Ok(())
    }
}

impl HostResponse for HostState {
    fn status(&mut self, _: Resource<ResponseHandle>) -> u16 {
        self.response
            .as_ref()
            .map(|r| r.parts.status.as_u16())
            .unwrap_or(0)
    }

    fn set_status(&mut self, _: Resource<ResponseHandle>, status: u16) -> Result<(), EditError> {
        // Setting the status it has is no change, even outside 200-599 (a
        // plugin that writes back what it read, on a 101 to a WebSocket).
        if self
            .response
            .as_ref()
            .is_some_and(|r| r.parts.status.as_u16() == status)
        {
            return Ok(());
        }
        let status = super::exchange::final_status(status).ok_or(EditError::InvalidValue)?;
        if let Some(r) = self.response.as_mut() {
            r.parts.status = status;
        }
        Ok(())
    }

    fn header(&mut self, _: Resource<ResponseHandle>, name: String) -> Option<String> {
        header_value(self.response_headers()?, &name)
    }

    fn header_all(&mut self, _: Resource<ResponseHandle>, name: String) -> Vec<String> {
        self.response_headers()
            .map(|headers| header_values(headers, &name))
            .unwrap_or_default()
    }

    fn header_names(&mut self, _: Resource<ResponseHandle>) -> Vec<String> {
        self.response_headers()
            .map(header_names)
            .unwrap_or_default()
    }

    fn set_header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
        value: String,
    ) -> Result<(), EditError> {
        write_if_present(self.response_headers_mut(), &name, &value, false)
    }

    fn append_header(
        &mut self,
        _: Resource<ResponseHandle>,
        name: String,
        value: String,
    ) -> Result<(), EditError> {
        write_if_present(self.response_headers_mut(), &name, &value, true)
    }

    fn remove_header(&mut self, _: Resource<ResponseHandle>, name: String) {
        if let Some(headers) = self.response_headers_mut() {
            remove_header(headers, &name);
        }
    }

    fn drop(&mut self, _: Resource<ResponseHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

fn tracing_level(level: LogLevel) -> tracing::Level {
    match level {
        LogLevel::Trace => tracing::Level::TRACE,
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    }
}

/// Plugin log fields rendered as `key=value` pairs.
struct Fields(Vec<(String, String)>);

impl std::fmt::Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}={value:?}")?;
        }
        Ok(())
    }
}

impl LogHost for HostState {
    fn write(&mut self, level: LogLevel, mut message: String, mut fields: Vec<(String, String)>) {
        // Records the filter drops anyway do not use up the budget.
        if !self.enabled(level) || !self.services.log_budget.admit() {
            return;
        }
        truncate(&mut message, MAX_LOG_MESSAGE_BYTES);
        fields.truncate(MAX_LOG_FIELDS);
        for (key, value) in &mut fields {
            truncate(key, MAX_LOG_KEY_BYTES);
            truncate(value, MAX_LOG_VALUE_BYTES);
        }
        let plugin = &*self.services.name;
        let fields = Fields(fields);
        // tracing needs the level as a constant, hence one arm per level.
        match tracing_level(level) {
            tracing::Level::TRACE => {
                tracing::trace!(target: "plugin", plugin, %fields, "{message}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "plugin", plugin, %fields, "{message}")
            }
            tracing::Level::INFO => tracing::info!(target: "plugin", plugin, %fields, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "plugin", plugin, %fields, "{message}"),
            tracing::Level::ERROR => {
                tracing::error!(target: "plugin", plugin, %fields, "{message}")
            }
        }
    }

    fn enabled(&mut self, level: LogLevel) -> bool {
        match tracing_level(level) {
            tracing::Level::TRACE => tracing::enabled!(target: "plugin", tracing::Level::TRACE),
            tracing::Level::DEBUG => tracing::enabled!(target: "plugin", tracing::Level::DEBUG),
            tracing::Level::INFO => tracing::enabled!(target: "plugin", tracing::Level::INFO),
            tracing::Level::WARN => tracing::enabled!(target: "plugin", tracing::Level::WARN),
            tracing::Level::ERROR => tracing::enabled!(target: "plugin", tracing::Level::ERROR),
        }
    }
}

impl MetricsHost for HostState {
    fn describe(
        &mut self,
        name: String,
        kind: WitMetricKind,
        help: String,
        label_names: Vec<String>,
        buckets: Vec<f64>,
    ) -> Result<(), String> {
        let kind = match kind {
            WitMetricKind::Counter => MetricKind::Counter,
            WitMetricKind::Gauge => MetricKind::Gauge,
            WitMetricKind::Histogram => MetricKind::Histogram,
        };
        self.services.metrics.describe(
            self.metric_owner(),
            &name,
            kind,
            &help,
            &label_names,
            &buckets,
        )
    }

    fn counter_add(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        delta: u64,
    ) -> Result<(), String> {
        self.update_metric(&name, &labels, MetricUpdate::CounterAdd(delta))
    }

    fn gauge_set(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> Result<(), String> {
        self.update_metric(&name, &labels, MetricUpdate::GaugeSet(value))
    }

    fn gauge_add(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        delta: f64,
    ) -> Result<(), String> {
        self.update_metric(&name, &labels, MetricUpdate::GaugeAdd(delta))
    }

    fn histogram_observe(
        &mut self,
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> Result<(), String> {
        self.update_metric(&name, &labels, MetricUpdate::Observe(value))
    }
}

impl SharedStateHost for HostState {
    fn counter_add(&mut self, key: String, delta: i64, ttl_ms: u64) -> Result<i64, String> {
        let key = self.services.key(&key);
        self.services
            .shared
            .counter_add(&key, delta, ttl_ms)
            .map_err(|e| e.to_string())
    }

    fn counter_get(&mut self, key: String) -> Option<i64> {
        self.services.shared.counter_get(&self.services.key(&key))
    }

    fn take_tokens(
        &mut self,
        key: String,
        rate_per_second: f64,
        burst: u64,
        cost: u64,
    ) -> Result<BucketDecision, String> {
        let key = self.services.key(&key);
        let decision = self
            .services
            .shared
            .take_tokens(&key, rate_per_second, burst, cost)
            .map_err(|e| e.to_string())?;
        Ok(BucketDecision {
            allowed: decision.allowed,
            remaining: decision.remaining,
            retry_after_ms: ceil_ms(decision.retry_after),
            reset_ms: ceil_ms(decision.reset),
        })
    }

    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.services.shared.get(&self.services.key(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> Result<(), String> {
        let key = self.services.key(&key);
        self.services
            .shared
            .set(&key, value, ttl_ms)
            .map_err(|e| e.to_string())
    }

    fn delete(&mut self, key: String) {
        self.services.shared.delete(&self.services.key(&key));
    }
}

impl RecordsHost for HostState {
    fn emit(&mut self, record: String) -> Result<(), String> {
        // Already counted and (rate-limited) logged by the pipeline; the
        // plugin gets the reason.
        self.services
            .records
            .emit(Source::Plugin, record)
            .map_err(|error| error.to_string())
    }
}

/// Whole milliseconds, rounded up so that "wait 0.4 ms" is not "wait 0".
fn ceil_ms(duration: std::time::Duration) -> u64 {
    duration
        .as_micros()
        .div_ceil(1000)
        .try_into()
        .unwrap_or(u64::MAX)
}
