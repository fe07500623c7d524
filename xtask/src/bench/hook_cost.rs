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
use tandem::shared_state::SharedState;

/// Per-call times of one plugin in both instance modes.
pub struct HookCost {
    /// Mean time of a call on a reused instance.
    pub reused: Duration,
    /// Mean time of a call on a fresh instance (instantiate + init + call).
    pub fresh: Duration,
}

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

async fn mean_call(dir: &Path, name: &str, calls: u32) -> anyhow::Result<Duration> {
    let metrics = Arc::new(Metrics::new());
    // The hook never emits records; the default (stdout) sink is not started.
    let records = Arc::new(Records::new(&RecordsConfig::default(), &metrics)?);
    let runtime = Runtime::new(metrics, Arc::new(SharedState::default()), records)?;
    let plugin = load_plugin(&runtime, name, &dir.join(format!("{name}.wasm")))
        .await
        .map(Arc::new)
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut head = request();
    // Warm up caches and the instance pool.
    for _ in 0..calls / 10 {
        head = plugin.on_request(head).await.0;
    }
    let started = Instant::now();
    for _ in 0..calls {
        let (back, outcome) = plugin.on_request(head).await;
        outcome.map_err(|e| anyhow::anyhow!("{e}"))?;
        head = back;
    }
    Ok(started.elapsed() / calls)
}

/// Measures the header-reader plugin found at `wasm`, reused and fresh.
pub async fn measure(wasm: &Path) -> anyhow::Result<HookCost> {
    let dir = tempfile_dir()?;
    std::fs::copy(wasm, dir.join("reused.wasm"))?;
    std::fs::copy(wasm, dir.join("fresh.wasm"))?;
    std::fs::write(dir.join("fresh.toml"), "instances = \"fresh\"\n")?;
    let reused = mean_call(&dir, "reused", 200_000).await?;
    let fresh = mean_call(&dir, "fresh", 5_000).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(HookCost { reused, fresh })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = crate::workspace::target_dir()
        .join("bench")
        .join("hook-cost");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
