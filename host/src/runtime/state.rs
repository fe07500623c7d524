//! What a plugin's store holds: the current request and response heads, the
//! services behind the host imports, its resource limits, and WASI with
//! everything denied: no environment, arguments, files, sockets or name
//! lookups; stdin is empty; stdout and stderr go to the log; clocks are
//! coarse.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::clock::{CoarseMonotonicClock, CoarseWallClock};
use super::exchange::{RequestHead, ResponseHead};
use super::log_budget::LogBudget;
use super::output::{PluginOutput, Stdio};
use crate::metrics::Metrics;
use crate::plugin_settings::PluginSettings;
use crate::records::Records;
use crate::shared_state::SharedState;

/// Most bytes one `wasi:random` call may ask for (wasmtime allows 64 MiB).
pub const MAX_RANDOM_BYTES: u64 = 64 * 1024;
/// Most table elements per instance.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

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
    /// Log records per second, shared by `log`, stdout and stderr.
    pub log_budget: LogBudget,
    /// Series per metric the plugin creates.
    pub metric_series_limit: usize,
    /// Resolution of the clocks the plugin reads.
    pub clock_resolution: std::time::Duration,
    /// Whether the version's calls are synchronous or on a fiber; told at
    /// once when a call runs long or waits.
    pub mode: super::call_mode::CallMode,
    /// Keeps the epoch advancing while a call of the plugin runs.
    pub ticks: super::ticker::TicksNeeded,
}

impl PluginServices {
    /// Services for the plugin `name` with its `settings`.
    pub fn new(
        name: &str,
        settings: &PluginSettings,
        metrics: Arc<Metrics>,
        shared: Arc<SharedState>,
        records: Arc<Records>,
        ticks: super::ticker::TicksNeeded,
    ) -> Self {
        let name: Arc<str> = name.into();
        let log_budget = LogBudget::new(
            name.clone(),
            settings.log_rate_per_second,
            metrics.log_dropped(&name),
        );
        Self {
            key_prefix: format!("{name}\u{0}"),
            name,
            metrics,
            shared,
            records,
            log_budget,
            metric_series_limit: settings.metric_series_limit as usize,
            clock_resolution: settings.clock_resolution,
            mode: super::call_mode::CallMode::default(),
            ticks,
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

/// Memory, table and instance limits of one store, remembering whether the
/// guest ran into its memory limit so the failure can say so.
pub struct PluginLimiter {
    limits: StoreLimits,
    /// The guest asked for more memory than its limit.
    pub memory_refused: bool,
}

impl ResourceLimiter for PluginLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_refused = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
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
    pub limits: PluginLimiter,
    /// When the current call must end; checked at every epoch tick.
    pub deadline: std::time::Instant,
    /// Set at the first epoch tick of the current call, if the call is to
    /// move to the quarantine lane once it has run that long.
    pub move_to_lane: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The call under way is synchronous: it cannot yield at an epoch tick.
    pub synchronous: bool,
    /// A hook call (not `init`) is under way.
    pub in_hook_call: bool,
    /// Counts this instance's call (or `init`) as in flight for the epoch
    /// ticker, from before guest code runs until the instance goes back to
    /// the pool or is dropped.
    pub in_call: Option<super::ticker::CallTicks>,
    wasi: WasiCtx,
    table: ResourceTable,
}

/// The WASI context of one instance: nothing granted.
fn deny_all_wasi(services: &Arc<PluginServices>) -> WasiCtx {
    let mut wasi = WasiCtx::builder();
    // The builder grants no environment, arguments, preopened directories
    // or socket addresses unless asked to; the socket kinds and name
    // lookups are switched off explicitly as well, so that a future default
    // cannot open them.
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(MAX_RANDOM_BYTES)
        .stdout(PluginOutput::new(services.clone(), Stdio::Stdout))
        .stderr(PluginOutput::new(services.clone(), Stdio::Stderr))
        .wall_clock(CoarseWallClock::new(services.clock_resolution))
        .monotonic_clock(CoarseMonotonicClock::new(services.clock_resolution));
    wasi.build()
}

impl HostState {
    /// A store state whose guest may grow its memory to `memory_bytes`.
    pub fn new(services: Arc<PluginServices>, memory_bytes: usize) -> Self {
        Self {
            request: None,
            response: None,
            wasi: deny_all_wasi(&services),
            services,
            deadline: std::time::Instant::now(),
            move_to_lane: None,
            synchronous: false,
            in_hook_call: false,
            in_call: None,
            limits: PluginLimiter {
                limits: StoreLimitsBuilder::new()
                    .memory_size(memory_bytes)
                    .table_elements(MAX_TABLE_ELEMENTS)
                    .instances(16)
                    .tables(16)
                    .memories(4)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_refused: false,
            },
            table: ResourceTable::new(),
        }
    }
}

impl HostState {
    /// What the synchronous WASI waits work with.
    pub fn waits_view(&mut self) -> super::sync_wasi::WaitsView<'_> {
        super::sync_wasi::WaitsView::new(&mut self.table, self.deadline, &self.services.mode)
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
