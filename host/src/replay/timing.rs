//! Hook timings over many replayed exchanges, and the per-request cost of a
//! plugin that `cargo xtask bench` prints for each language.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::driver::{Loaded, RecordReport, Replayer};
use super::record::Numbered;
use crate::plugin_settings::PluginSettings;

/// Summary of a set of durations, in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    /// How many.
    pub calls: usize,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Stats {
    /// Summarises `samples` (any order); `None` when there are none.
    pub fn of(mut samples: Vec<f64>) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some(Stats {
            calls: samples.len(),
            mean_us: samples.iter().sum::<f64>() / samples.len() as f64,
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: samples[samples.len() - 1],
        })
    }
}

/// Timings of many replayed exchanges.
#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    /// Per hook, by name.
    pub hooks: BTreeMap<&'static str, Stats>,
    /// Per exchange: the sum of its hooks.
    pub per_request: Option<Stats>,
}

impl Timings {
    /// Summarises reports.
    pub fn of(reports: &[RecordReport]) -> Timings {
        let mut by_hook: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
        for report in reports {
            for hook in &report.hooks {
                by_hook.entry(hook.hook).or_default().push(hook.micros);
            }
        }
        Timings {
            hooks: by_hook
                .into_iter()
                .filter_map(|(hook, samples)| Some((hook, Stats::of(samples)?)))
                .collect(),
            per_request: Stats::of(reports.iter().map(RecordReport::plugin_micros).collect()),
        }
    }
}

/// What [`per_request_cost`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// The plugin as loaded (size, compile and init times, hooks).
    pub loaded: Loaded,
    /// Hook and per-request timings over the measured passes.
    pub timings: Timings,
}

/// The per-request cost of a plugin: loads `wasm` with `settings` (its own
/// runtime, the pooling allocator and the instance pool, as in `tandem
/// run`), replays `records` once to warm up, then `passes` times, and
/// summarises the time spent in its hooks. No log or metric capture runs,
/// so the figures are the hooks' own cost (plus taking an instance from the
/// pool and moving the request head in and out).
///
/// Runs on the current tokio runtime.
pub async fn per_request_cost(
    wasm: &Path,
    name: &str,
    settings: PluginSettings,
    records: &[Numbered],
    passes: usize,
) -> Result<Cost, String> {
    let replayer = Replayer::load(wasm, name, settings, None).await?;
    passes_of(&replayer, records, 1).await?;
    let reports = passes_of(&replayer, records, passes).await?;
    Ok(Cost {
        loaded: replayer.loaded.clone(),
        timings: Timings::of(&reports),
    })
}

/// Replays `records` `passes` times without capturing logs and metrics, so
/// that the times are the hooks' own.
pub async fn passes_of(
    replayer: &Replayer,
    records: &[Numbered],
    passes: usize,
) -> Result<Vec<RecordReport>, String> {
    let mut reports = Vec::with_capacity(records.len() * passes);
    for _ in 0..passes {
        for numbered in records {
            reports.push(
                replayer
                    .replay(numbered.line, &numbered.record, false)
                    .await?,
            );
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_known_samples() {
        let stats = Stats::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!(stats.calls, 100);
        assert_eq!(stats.mean_us, 50.5);
        assert_eq!(stats.p50_us, 51.0);
        assert_eq!(stats.p99_us, 99.0);
        assert_eq!(stats.max_us, 100.0);
        assert_eq!(Stats::of(Vec::new()), None);
    }
}
