//! Reads a plugin directory: every `NAME.wasm` is the plugin NAME, with its
//! settings in the optional `NAME.toml` beside it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Runtime;
use super::plugin::{PluginVersion, compile, sha256_hex};
use crate::plugin_settings::PluginSettings;

/// A plugin that could not be loaded, and why.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    /// The plugin's name.
    pub name: String,
    /// Its `.wasm` file.
    pub file: PathBuf,
    /// The reason, ready to show.
    pub error: String,
}

/// The outcome of loading a directory.
#[derive(Default)]
pub struct LoadReport {
    /// Plugins that loaded, in chain order.
    pub loaded: Vec<Arc<PluginVersion>>,
    /// Plugins that did not.
    pub failed: Vec<LoadFailure>,
}

/// Whether `name` is usable as a plugin name (it appears in metrics labels,
/// logs and shared-state keys).
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The `.wasm` files in `dir`, sorted by name.
pub fn plugin_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        // Kubernetes ConfigMap volumes keep real files in dot-directories.
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        files.push((name.to_owned(), path));
    }
    files.sort();
    Ok(files)
}

/// Compiles and initialises one plugin from its files.
pub async fn load_plugin(
    runtime: &Runtime,
    name: &str,
    wasm: &Path,
) -> Result<PluginVersion, String> {
    if !valid_plugin_name(name) {
        return Err(format!(
            "invalid plugin name {name:?}: use 1 to 64 of [A-Za-z0-9_-]"
        ));
    }
    let settings = PluginSettings::load(&wasm.with_extension("toml")).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(wasm).map_err(|e| format!("cannot read {}: {e}", wasm.display()))?;
    let sha256 = sha256_hex(&bytes);
    // Compiling takes milliseconds to seconds of CPU: keep it off the
    // threads that serve requests.
    let engine = runtime.engine.clone();
    let component = tokio::task::spawn_blocking(move || compile(&engine, &bytes))
        .await
        .map_err(|e| format!("compiler task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    PluginVersion::load(runtime, name, wasm.to_owned(), sha256, &component, settings)
        .await
        .map_err(|e| e.to_string())
}

/// Loads every plugin in `dir`, in chain order: by `order`, then by name.
pub async fn load_dir(runtime: &Runtime, dir: &Path) -> std::io::Result<LoadReport> {
    let mut report = LoadReport::default();
    for (name, file) in plugin_files(dir)? {
        match load_plugin(runtime, &name, &file).await {
            Ok(version) => {
                runtime.metrics.plugin_loaded("ok");
                tracing::info!(plugin = %name, sha256 = %&version.sha256[..12], hooks = ?version.hooks.names(), "plugin loaded");
                report.loaded.push(Arc::new(version));
            }
            Err(error) => {
                runtime.metrics.plugin_loaded("error");
                tracing::error!(plugin = %name, file = %file.display(), "plugin not loaded: {error}");
                report.failed.push(LoadFailure { name, file, error });
            }
        }
    }
    report
        .loaded
        .sort_by(|a, b| (a.settings.order, &a.name).cmp(&(b.settings.order, &b.name)));
    Ok(report)
}
