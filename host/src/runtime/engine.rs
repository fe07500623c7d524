//! The wasmtime engine: compiler settings, the pooling instance allocator
//! (with a fallback), and the linker with every host import. The epoch
//! ticker that bounds CPU per hook is in `ticker`.

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::PluginBindings;
use super::state::HostState;

/// Largest linear memory one plugin instance may have in the pool.
pub const MAX_POOLED_MEMORY_BYTES: usize = 512 << 20;

/// Default guest stack limit. wasmtime sets this per engine, not per store,
/// so it is one setting for every plugin (`[limits] plugin_stack_kb`).
pub const MAX_WASM_STACK_BYTES: usize = 1 << 20;
/// Room on each fiber stack beyond the guest's limit, for the host
/// functions that guests call (wasmtime requires the fiber stack to be
/// larger than the wasm stack limit).
const HOST_STACK_HEADROOM: usize = 1 << 20;

/// The stack one hook call may need: the guest's limit and the host
/// functions it calls. A fiber's stack is this big; a thread that makes
/// synchronous calls keeps this much room (see `thread_stack`).
pub fn call_stack_bytes(wasm_stack_bytes: usize) -> usize {
    wasm_stack_bytes + HOST_STACK_HEADROOM
}

/// How instances get their memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// Pre-reserved slots: instantiation in microseconds.
    Pooling,
    /// mmap per instance, used when the address space cannot be reserved.
    OnDemand,
}

impl std::fmt::Display for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Allocator::Pooling => "pooling",
            Allocator::OnDemand => "on-demand",
        })
    }
}

/// Sizes of the instance pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    /// Component instances that may live at once, across all plugins.
    pub instances: u32,
    /// Guest stack limit, in bytes, for every plugin.
    pub wasm_stack_bytes: usize,
}

impl Default for PoolSize {
    fn default() -> Self {
        Self {
            instances: 1000,
            wasm_stack_bytes: MAX_WASM_STACK_BYTES,
        }
    }
}

fn base_config(wasm_stack_bytes: usize) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(wasm_stack_bytes);
    config.async_stack_size(call_stack_bytes(wasm_stack_bytes));
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}

/// Builds an engine with the pooling allocator, or on demand if the pool's
/// address space cannot be reserved (e.g. under a low `ulimit -v`).
pub fn build_engine(pool: PoolSize) -> anyhow::Result<(Engine, Allocator)> {
    let mut pooling = PoolingAllocationConfig::new();
    // A component has a few core instances (the main module and shims).
    pooling.total_component_instances(pool.instances);
    pooling.total_core_instances(pool.instances.saturating_mul(4));
    pooling.total_memories(pool.instances.saturating_mul(2));
    pooling.total_tables(pool.instances.saturating_mul(4));
    pooling.total_stacks(pool.instances);
    pooling.max_memory_size(MAX_POOLED_MEMORY_BYTES);
    pooling.max_memories_per_component(4);
    pooling.max_tables_per_component(8);
    pooling.table_elements(100_000);
    pooling.max_core_instance_size(4 << 20);
    pooling.max_component_instance_size(4 << 20);
    let mut config = base_config(pool.wasm_stack_bytes);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    match Engine::new(&config) {
        Ok(engine) => Ok((engine, Allocator::Pooling)),
        Err(error) => {
            tracing::warn!(%error, "cannot reserve the instance pool; allocating on demand");
            // Address space is scarce here (that is why the pool failed), so
            // give up the 4 GiB reservations that let guests skip bounds
            // checks: memories start small and move when they grow.
            let mut config = base_config(pool.wasm_stack_bytes);
            config.memory_reservation(0);
            config.memory_guard_size(64 << 10);
            config.guard_before_linear_memory(false);
            let engine = Engine::new(&config)
                .map_err(|e| anyhow::anyhow!("creating the wasm engine: {e:#}"))?;
            Ok((engine, Allocator::OnDemand))
        }
    }
}

/// The linker with WASI (everything denied by the context) and the Tandem
/// imports.
pub fn build_linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| anyhow::anyhow!("linking WASI: {e:#}"))?;
    add_tandem_imports(&mut linker)?;
    Ok(linker)
}

/// The linker for synchronous calls: the same imports, none of them
/// asynchronous (so a store instantiated from it may be called without a
/// fiber), with WASI's waits replaced by ones that never enter the tokio
/// runtime (see `sync_wasi`).
pub fn build_sync_linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    super::sync_wasi::add_to_linker(&mut linker)?;
    add_tandem_imports(&mut linker)?;
    Ok(linker)
}

fn add_tandem_imports(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    PluginBindings::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
        .map_err(|e| anyhow::anyhow!("linking the Tandem imports: {e:#}"))
}
