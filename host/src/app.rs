//! The state one running Tandem shares between its listeners: config,
//! runtime, the current chain, and what failed to load.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::chain::Chain;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::runtime::loader::{LoadFailure, load_dir};
use crate::shared_state::SharedState;

/// One running Tandem.
pub struct App {
    /// The settings it runs with.
    pub config: Config,
    /// Engine, linker and host services.
    pub runtime: Runtime,
    /// The chain new requests get.
    pub chain: Arc<ArcSwap<Chain>>,
    /// Plugins that did not load in the last attempt.
    pub load_failures: Mutex<Vec<LoadFailure>>,
}

impl App {
    /// Builds the runtime and loads the plugin directory. Any plugin that
    /// fails to load is returned as an error: at start-up, a missing plugin
    /// (an auth plugin, say) must not silently leave a gap in the chain.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let shared = Arc::new(SharedState::default());
        let runtime = Runtime::with_stack(metrics, shared, config.limits.plugin_stack_bytes)?;
        tracing::info!(allocator = %runtime.allocator, "wasm runtime ready");
        let report = load_dir(&runtime, &config.plugin_dir)
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot read plugin directory {}: {error}",
                    config.plugin_dir.display()
                )
            })?;
        if let Some(first) = report.failed.first() {
            anyhow::bail!(
                "{} plugin(s) failed to load; first: {}: {}",
                report.failed.len(),
                first.name,
                first.error
            );
        }
        Ok(Self {
            config,
            runtime,
            chain: Arc::new(ArcSwap::from_pointee(Chain::new(report.loaded))),
            load_failures: Mutex::new(report.failed),
        })
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.runtime.metrics
    }

    /// The process-wide shared state.
    pub fn shared_state(&self) -> &Arc<SharedState> {
        &self.runtime.shared
    }
}
