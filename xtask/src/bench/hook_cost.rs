//! The cost of one hook call, measured in-process through the host library:
//! the `header-reader` fixture's `on-request` reads one header through the
//! request resource.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem::metrics::Metrics;
use tandem::records::Records;
use tandem::records::config::RecordsConfig;
use tandem::runtime::Runtime;
use tandem::runtime::exchange::RequestHead;
use tandem::runtime::loader::load_plugin;
use tandem::runtime::plugin::PluginVersion;
use tandem::runtime::{engine, thread_stack};
use tandem::shared_state::SharedState;

/// Per-call times of one plugin in both instance modes, and on a reused
/// instance both ways a call is made.
pub struct HookCost {
    /// Mean time of a synchronous call on a reused instance (the default).
    pub reused: Duration,
    /// Mean time of a call on a fiber on a reused instance, as a plugin's
    /// calls are made after one ran for a whole epoch tick.
    pub reused_fiber: Duration,
    /// Mean time of a call on a fresh instance (instantiate + init + call).
    pub fresh: Duration,
}

/// Rounds of the two reused measurements, alternated so that both see the
/// same machine.
const ROUNDS: u32 = 3;

fn request() -> RequestHead {
    let request = http::Request::get("/orders/7?expand=1")
        .header("host", "bench")
        .header("user-agent", "tandem-bench")
        .header("accept", "*/*")
        .header("x-probe", "1")
        .header("x-request-id", "abc")
        .body(())
        .expect("valid request");
    RequestHead::new(
        request.into_parts().0,
        "127.0.0.1:40000".parse().expect("valid address"),
        "http",
    )
}

/// A plugin loaded in a runtime of its own, which lives as long as it.
struct Loaded {
    plugin: Arc<PluginVersion>,
    _runtime: Runtime,
}

async fn load(dir: &Path, name: &str) -> anyhow::Result<Loaded> {
    let metrics = Arc::new(Metrics::new());
    // The hook never emits records; the default (stdout) sink is not started.
    let records = Arc::new(Records::new(&RecordsConfig::default(), &metrics)?);
    let runtime = Runtime::new(metrics, Arc::new(SharedState::default()), records)?;
    let plugin = load_plugin(&runtime, name, &dir.join(format!("{name}.wasm")))
        .await
        .map(Arc::new)
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Loaded {
        plugin,
        _runtime: runtime,
    })
}

/// Times a synchronous measurement is tried before the bench gives up.
const ATTEMPTS: u32 = 4;

/// Mean time of `calls` calls, after a tenth as many to warm up. With
/// `fiber`, the calls are made on a fiber, as after a long call. `None` if
/// the plugin's mode changed under the calls (on a busy machine, a call
/// descheduled for a whole epoch tick moves the plugin's calls onto a
/// fiber), which would mix the two ways of calling.
async fn mean_call(
    plugin: &Arc<PluginVersion>,
    calls: u32,
    fiber: bool,
) -> anyhow::Result<Option<Duration>> {
    if fiber {
        // For the 10 s cool-down, longer than the measurement.
        plugin.mode().ran_long();
    }
    let mut head = request();
    for _ in 0..calls / 10 {
        head = plugin.on_request(head).await.0;
    }
    let started = Instant::now();
    for _ in 0..calls {
        let (back, outcome) = plugin.on_request(head).await;
        outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
        head = back;
    }
    let mean = started.elapsed() / calls;
    let expected = if fiber { "fiber" } else { "synchronous" };
    Ok((plugin.mode().name() == expected).then_some(mean))
}

/// Mean time of synchronous calls on `loaded` (plugin `name`), loaded again
/// (back in the synchronous mode) and measured again if a call was moved
/// onto a fiber.
async fn mean_synchronous(
    dir: &Path,
    name: &str,
    loaded: &mut Loaded,
    calls: u32,
) -> anyhow::Result<Duration> {
    for _ in 0..ATTEMPTS {
        if let Some(mean) = mean_call(&loaded.plugin, calls, false).await? {
            return Ok(mean);
        }
        eprintln!(
            "bench: a hook call ran for a whole epoch tick (a busy machine), so the plugin's \
             calls moved to a fiber; measuring the synchronous calls again"
        );
        *loaded = load(dir, name).await?;
    }
    anyhow::bail!("the synchronous calls moved to a fiber in each of {ATTEMPTS} attempts")
}

/// Measures the header-reader plugin found at `wasm`, reused and fresh, on
/// a thread of its own that, like a proxy worker, keeps room on its stack
/// for synchronous calls.
pub fn measure(wasm: &Path) -> anyhow::Result<HookCost> {
    let call_bytes = engine::call_stack_bytes(engine::MAX_WASM_STACK_BYTES);
    let wasm = wasm.to_owned();
    thread_stack::spawn_with_room("hook-cost".into(), call_bytes, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(measure_here(&wasm))
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("the hook-cost thread panicked"))?
}

async fn measure_here(wasm: &Path) -> anyhow::Result<HookCost> {
    let dir = tempfile_dir()?;
    std::fs::copy(wasm, dir.join("reused.wasm"))?;
    std::fs::copy(wasm, dir.join("fresh.wasm"))?;
    std::fs::write(dir.join("fresh.toml"), "instances = \"fresh\"\n")?;
    let mut synchronous = load(&dir, "reused").await?;
    let on_fiber = load(&dir, "reused").await?;
    let (mut reused, mut reused_fiber) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        reused += mean_synchronous(&dir, "reused", &mut synchronous, 200_000).await?;
        reused_fiber += mean_call(&on_fiber.plugin, 200_000, true)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the calls on a fiber left the fiber"))?;
    }
    let mut fresh = load(&dir, "fresh").await?;
    let fresh = mean_synchronous(&dir, "fresh", &mut fresh, 5_000).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(HookCost {
        reused: reused / ROUNDS,
        reused_fiber: reused_fiber / ROUNDS,
        fresh,
    })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = crate::workspace::target_dir()
        .join("bench")
        .join("hook-cost");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
