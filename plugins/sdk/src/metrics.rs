//! Metrics, served with the host's own on the admin `/metrics` endpoint in
//! Prometheus text format.
//!
//! A metric is created on first use. Its name must match
//! `[a-zA-Z_][a-zA-Z0-9_]*` and must not start with `tandem_`. The label
//! names given on first use (or to [`describe`]) are the metric's label
//! names; later uses must give the same names. Every call returns the host's
//! reason when it refuses.
//!
//! ```no_run
//! use tandem_sdk::metrics::{self, Kind};
//!
//! # fn main() -> Result<(), String> {
//! metrics::describe("cache_hits_total", Kind::Counter, "Cache hits.", &["route"], &[])?;
//! metrics::counter_add("cache_hits_total", &[("route", "orders")], 1)?;
//! # Ok(())
//! # }
//! ```

use crate::bindings::tandem::plugin::metrics as raw;

/// The kind of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A value that only goes up.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations counted in buckets.
    Histogram,
}

impl From<Kind> for raw::Kind {
    fn from(kind: Kind) -> raw::Kind {
        match kind {
            Kind::Counter => raw::Kind::Counter,
            Kind::Gauge => raw::Kind::Gauge,
            Kind::Histogram => raw::Kind::Histogram,
        }
    }
}

/// Declares a metric with its help text, label names and, for a histogram,
/// its bucket upper bounds (empty for the default buckets).
///
/// Optional, but the only way to set help and buckets; call it from
/// [`Plugin::init`](crate::Plugin::init).
pub fn describe(
    name: &str,
    kind: Kind,
    help: &str,
    label_names: &[&str],
    buckets: &[f64],
) -> Result<(), String> {
    raw::describe(name, kind.into(), help, label_names, buckets)
}

/// Adds `delta` to a counter.
pub fn counter_add(name: &str, labels: &[(&str, &str)], delta: u64) -> Result<(), String> {
    raw::counter_add(name, labels, delta)
}

/// Sets a gauge.
pub fn gauge_set(name: &str, labels: &[(&str, &str)], value: f64) -> Result<(), String> {
    raw::gauge_set(name, labels, value)
}

/// Adds `delta` to a gauge (negative to subtract).
pub fn gauge_add(name: &str, labels: &[(&str, &str)], delta: f64) -> Result<(), String> {
    raw::gauge_add(name, labels, delta)
}

/// Records one observation in a histogram.
pub fn histogram_observe(name: &str, labels: &[(&str, &str)], value: f64) -> Result<(), String> {
    raw::histogram_observe(name, labels, value)
}
