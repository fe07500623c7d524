//! `tandem check`: everything `run` would do before serving, and a report.

use std::fmt::Write as _;
use std::io::Write as _;
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
    let loaded = load_dir(&runtime, &config.plugin_dir)
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot read plugin directory {}: {error}",
                config.plugin_dir.display()
            )
        })?;
    // One write at the end, whose failure is ignored: a reader that went
    // away (`tandem check | head -1`) must not turn the verdict into a
    // crash; the exit code still says it.
    let mut report = String::new();
    let _ = writeln!(
        report,
        "config ok: listen={} upstream=http://{} admin={} plugins={}",
        config.listen,
        config.upstream,
        config.admin,
        config.plugin_dir.display()
    );
    for plugin in &loaded.loaded {
        let _ = writeln!(
            report,
            "ok      {:<20} order={:<4} hooks={:<30} failure={:<6} sha256={}",
            &*plugin.name,
            plugin.settings.order,
            plugin.hooks.names().join(","),
            format!("{:?}", plugin.settings.failure).to_lowercase(),
            plugin.sha256,
        );
    }
    for failure in &loaded.failed {
        let _ = writeln!(
            report,
            "FAILED  {:<20} {}: {}",
            failure.name,
            failure.file.display(),
            failure.error
        );
    }
    let _ = writeln!(
        report,
        "{} plugin(s) ok, {} failed",
        loaded.loaded.len(),
        loaded.failed.len()
    );
    let _ = std::io::stdout().lock().write_all(report.as_bytes());
    let bad_settings: Vec<&str> = loaded
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
    Ok(loaded.failed.is_empty())
}
