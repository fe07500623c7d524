//! `tandem check`: everything `run` would do before serving, and a report.

use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugin_settings::InvalidPluginSettings;
use crate::records::Records;
use crate::runtime::Runtime;
use crate::runtime::loader::load_dir;
use crate::shared_state::SharedState;

/// Loads every plugin and prints one line per plugin. Returns whether all
/// of them loaded, or, after the report, [`InvalidPluginSettings`] if a
/// plugin's `NAME.toml` is invalid (a config error).
pub async fn run(config: &Config) -> anyhow::Result<bool> {
    let metrics = Arc::new(Metrics::new());
    // Opening the sink checks it (e.g. that the record file can be opened);
    // the writer never starts, so stdout keeps only the report.
    let records = Arc::new(Records::new(&config.records, &metrics)?);
    let runtime = Runtime::with_stack(
        metrics,
        Arc::new(SharedState::default()),
        records,
        config.limits.plugin_stack_bytes,
    )?;
    let report = load_dir(&runtime, &config.plugin_dir)
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot read plugin directory {}: {error}",
                config.plugin_dir.display()
            )
        })?;
    println!(
        "config ok: listen={} upstream=http://{} admin={} plugins={}",
        config.listen,
        config.upstream,
        config.admin,
        config.plugin_dir.display()
    );
    for plugin in &report.loaded {
        println!(
            "ok      {:<20} order={:<4} hooks={:<30} failure={:<6} sha256={}",
            &*plugin.name,
            plugin.settings.order,
            plugin.hooks.names().join(","),
            format!("{:?}", plugin.settings.failure).to_lowercase(),
            plugin.sha256,
        );
    }
    for failure in &report.failed {
        println!(
            "FAILED  {:<20} {}: {}",
            failure.name,
            failure.file.display(),
            failure.error
        );
    }
    println!(
        "{} plugin(s) ok, {} failed",
        report.loaded.len(),
        report.failed.len()
    );
    let bad_settings: Vec<&str> = report
        .failed
        .iter()
        .filter(|failure| crate::plugin_settings::settings_invalid(&failure.file))
        .map(|failure| failure.name.as_str())
        .collect();
    if !bad_settings.is_empty() {
        return Err(InvalidPluginSettings(format!(
            "invalid settings for plugin(s) {}",
            bad_settings.join(", ")
        ))
        .into());
    }
    Ok(report.failed.is_empty())
}
