//! The state one running Tandem shares between its listeners: config,
//! runtime, the current chain, and the reload machinery.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::chain::Chain;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::runtime::Runtime;
use crate::shared_state::SharedState;

/// One running Tandem.
pub struct App {
    /// The settings it started with (see `reload::restart` for those a
    /// reload can change).
    pub config: Config,
    /// Engine, linker and host services.
    pub runtime: Runtime,
    /// The chain new requests get.
    pub chain: Arc<ArcSwap<Chain>>,
    /// Reloads, the artifact cache and each plugin's load history.
    pub reloader: Reloader,
}

impl App {
    /// Builds the runtime and loads the plugin directory. Any plugin that
    /// fails to load is returned as an error: at start-up, a missing plugin
    /// (an auth plugin, say) must not silently leave a gap in the chain.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let shared = Arc::new(SharedState::default());
        let runtime = Runtime::new(metrics, shared)?;
        tracing::info!(allocator = %runtime.allocator, "wasm runtime ready");
        let (reloader, chain) = Reloader::start(&config, &runtime).await?;
        Ok(Self {
            config,
            runtime,
            chain: Arc::new(ArcSwap::from_pointee(chain)),
            reloader,
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
