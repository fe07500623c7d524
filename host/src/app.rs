//! The state one running Tandem shares between its listeners: config,
//! runtime, the current chain, and the reload machinery.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use crate::chain::Chain;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::records::Records;
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
    /// Set when shutdown begins: no new connections are accepted.
    draining: AtomicBool,
}

impl App {
    /// Builds the runtime and loads the plugin directory. Any plugin that
    /// fails to load is returned as an error: at start-up, a missing plugin
    /// (an auth plugin, say) must not silently leave a gap in the chain.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let shared = Arc::new(SharedState::default());
        let records = Arc::new(Records::new(&config.records, &metrics)?);
        let runtime =
            Runtime::with_stack(metrics, shared, records, config.limits.plugin_stack_bytes)?;
        tracing::info!(allocator = %runtime.allocator, "wasm runtime ready");
        let (reloader, chain) = Reloader::start(&config, &runtime).await?;
        Ok(Self {
            config,
            runtime,
            chain: Arc::new(ArcSwap::from_pointee(chain)),
            reloader,
            draining: AtomicBool::new(false),
        })
    }

    /// Marks the start of shutdown, so that `/readyz` sends traffic
    /// elsewhere while in-flight requests finish.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.runtime.metrics
    }

    /// The records pipeline.
    pub fn records(&self) -> &Arc<Records> {
        &self.runtime.records
    }

    /// The process-wide shared state.
    pub fn shared_state(&self) -> &Arc<SharedState> {
        &self.runtime.shared
    }
}
