//! What a plugin's store holds: the current request and response heads, the
//! services behind the host imports, and WASI with everything denied.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::exchange::{RequestHead, ResponseHead};
use crate::metrics::Metrics;
use crate::records::Records;
use crate::shared_state::SharedState;

/// Host services one plugin version reaches through its imports.
pub struct PluginServices {
    /// The plugin's name, used in logs, metrics and shared-state keys.
    pub name: Arc<str>,
    /// Where `metrics` imports go.
    pub metrics: Arc<Metrics>,
    /// Where `shared-state` imports go.
    pub shared: Arc<SharedState>,
    /// Where `records` imports go.
    pub records: Arc<Records>,
    /// Prefix that keeps each plugin's shared-state keys apart.
    pub key_prefix: String,
}

impl PluginServices {
    /// Services for the plugin `name`.
    pub fn new(
        name: &str,
        metrics: Arc<Metrics>,
        shared: Arc<SharedState>,
        records: Arc<Records>,
    ) -> Self {
        Self {
            name: name.into(),
            metrics,
            shared,
            records,
            key_prefix: format!("{name}\u{0}"),
        }
    }

    /// The store key for a plugin's key.
    pub fn key(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.key_prefix.len() + key.len());
        full.push_str(&self.key_prefix);
        full.push_str(key);
        full
    }
}

/// The data of one plugin instance's store.
pub struct HostState {
    /// The request the current hook works on, moved in for the call.
    pub request: Option<RequestHead>,
    /// The response the current hook works on, moved in for the call.
    pub response: Option<ResponseHead>,
    /// The services behind the imports.
    pub services: Arc<PluginServices>,
    /// Memory and table limits of this instance.
    pub limits: StoreLimits,
    /// When the current call must end; checked at every epoch tick.
    pub deadline: std::time::Instant,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    /// A store state whose guest may grow its memory to `memory_bytes`.
    pub fn new(services: Arc<PluginServices>, memory_bytes: usize) -> Self {
        Self {
            request: None,
            response: None,
            services,
            deadline: std::time::Instant::now(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .table_elements(100_000)
                .instances(16)
                .tables(16)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
            // No environment, arguments, files, sockets or name lookups:
            // WasiCtxBuilder grants nothing unless asked to.
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
