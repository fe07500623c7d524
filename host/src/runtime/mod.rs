//! Everything that touches wasmtime: the engine, the generated bindings, the
//! host imports, plugin versions and the directory loader.

pub mod bindings;
pub mod breaker;
pub mod call_mode;
pub mod clock;
pub mod engine;
pub mod exchange;
pub mod host_impl;
pub mod lane;
pub mod loader;
pub mod log_budget;
pub mod output;
pub mod plugin;
pub mod quarantine;
pub mod since;
pub mod state;
pub mod sync_wasi;
pub mod thread_stack;
pub mod ticker;
pub mod yielder;

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::metrics::Metrics;
use crate::records::Records;
use crate::shared_state::SharedState;
use engine::{Allocator, PoolSize};
use lane::Lane;
use state::HostState;
use ticker::{EpochTicker, TicksNeeded};

/// The engine, linker and services that every plugin version shares.
pub struct Runtime {
    /// The wasmtime engine.
    pub engine: Engine,
    /// The linker with WASI and the Tandem imports.
    pub linker: Linker<HostState>,
    /// The same with WASI's waits made synchronous (`sync_wasi`), for
    /// instances that are called synchronously.
    pub sync_linker: Linker<HostState>,
    /// The instance allocator in use.
    pub allocator: Allocator,
    /// Host and plugin metrics.
    pub metrics: Arc<Metrics>,
    /// Shared state behind the `shared-state` import.
    pub shared: Arc<SharedState>,
    /// The records pipeline behind the `records` import.
    pub records: Arc<Records>,
    /// Where the calls of quarantined plugins run.
    pub lane: Lane,
    /// The stack one hook call may need; a synchronous call is made only
    /// on a thread that keeps this much room (`thread_stack`).
    pub call_stack_bytes: usize,
    /// What every call tells, so that the epoch advances while it runs.
    pub ticks: TicksNeeded,
    _ticker: EpochTicker,
}

impl Runtime {
    /// Builds the engine (pooling if possible), the linker and the ticker.
    pub fn new(
        metrics: Arc<Metrics>,
        shared: Arc<SharedState>,
        records: Arc<Records>,
    ) -> anyhow::Result<Self> {
        Self::with_stack(metrics, shared, records, engine::MAX_WASM_STACK_BYTES)
    }

    /// Like [`Runtime::new`], with a guest stack limit of `wasm_stack_bytes`
    /// for every plugin (wasmtime sets it per engine).
    pub fn with_stack(
        metrics: Arc<Metrics>,
        shared: Arc<SharedState>,
        records: Arc<Records>,
        wasm_stack_bytes: usize,
    ) -> anyhow::Result<Self> {
        let (engine, allocator) = engine::build_engine(PoolSize {
            wasm_stack_bytes,
            ..PoolSize::default()
        })?;
        let linker = engine::build_linker(&engine)?;
        let sync_linker = engine::build_sync_linker(&engine)?;
        let ticker = EpochTicker::start(&engine);
        let lane = Lane::start()?;
        Ok(Self {
            engine,
            linker,
            sync_linker,
            allocator,
            metrics,
            shared,
            records,
            lane,
            call_stack_bytes: engine::call_stack_bytes(wasm_stack_bytes),
            ticks: ticker.needed(),
            _ticker: ticker,
        })
    }
}
