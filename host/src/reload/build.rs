//! Loads one plugin version from files already read: settings (with the
//! values of `[files]`), compile (or
//! the artifact cache, or the component already serving), check against the
//! world, pre-instantiate, `init`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use super::cache::{ArtifactCache, Origin};
use super::plan::Found;
use crate::plugin_settings::PluginSettings;
use crate::runtime::Runtime;
use crate::runtime::loader::valid_plugin_name;
use crate::runtime::plugin::{PluginVersion, compile};

/// A plugin version ready to serve.
pub struct Built {
    /// The version, initialised.
    pub version: PluginVersion,
    /// Its component, kept to re-initialise it when only `NAME.toml` (or a
    /// file of its `[files]`) changes.
    pub component: Component,
    /// Where the component came from; `None` if it was reused.
    pub origin: Option<Origin>,
    /// Time spent getting the component (compile or cache load).
    pub compile_time: Duration,
}

/// Builds a version of `found`. With `reuse`, the component serving now is
/// initialised again with the new settings instead of compiling.
pub async fn build(
    runtime: &Runtime,
    cache: Option<&Arc<ArtifactCache>>,
    found: &Found,
    reuse: Option<&Component>,
) -> Result<Built, String> {
    if !valid_plugin_name(&found.name) {
        return Err(format!(
            "invalid plugin name {:?}: use 1 to 64 of [A-Za-z0-9_-]",
            found.name
        ));
    }
    let settings = match &found.settings_text {
        Some(text) => PluginSettings::parse(&found.settings_path, text)
            .and_then(|s| s.with_file_values(&found.settings_path, &found.files))
            .map_err(|e| e.placed_in(&found.settings_path, text).to_string())?,
        None => PluginSettings::default(),
    };
    let started = Instant::now();
    let (component, origin) = match reuse {
        Some(component) => (component.clone(), None),
        None => {
            // Compiling takes milliseconds to seconds of CPU: keep it off
            // the threads that serve requests.
            let engine = runtime.engine.clone();
            let cache = cache.cloned();
            let bytes = found.wasm.clone();
            let sha256 = found.sha256.clone();
            let (component, origin) = tokio::task::spawn_blocking(move || match cache {
                Some(cache) => cache.load_or_compile(&engine, &sha256, &bytes),
                None => compile(&engine, &bytes).map(|c| (c, Origin::Compiled)),
            })
            .await
            .map_err(|e| format!("compiler task failed: {e}"))?
            .map_err(|e| e.to_string())?;
            (component, Some(origin))
        }
    };
    let compile_time = started.elapsed();
    let version = PluginVersion::load(
        runtime,
        &found.name,
        found.wasm_path.clone(),
        found.sha256.clone(),
        &component,
        settings,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Built {
        version,
        component,
        origin,
        compile_time,
    })
}
