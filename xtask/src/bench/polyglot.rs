//! The per-request cost of the same plugin (require-header) in Rust, C,
//! Python and JavaScript, in-process through the host library: every
//! exchange of `examples/plugins/requests.jsonl` through its three hooks, as
//! `tandem replay` runs them, on reused instances (the default) and, for
//! comparison, on a fresh instance per call.

use std::path::PathBuf;

use tandem::plugin_settings::InstanceMode;
use tandem::replay::timing::{Cost, per_request_cost};
use tandem::replay::{driver, record};

use crate::workspace;

/// Passes over the requests file on reused instances (5 exchanges each).
const REUSED_PASSES: usize = 2_000;
/// Passes on fresh instances, which cost up to milliseconds per call.
const FRESH_PASSES: usize = 20;

/// The four components, Rust first.
fn components() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut all = vec![(
        "rust".to_owned(),
        workspace::plugin_component("require-header"),
    )];
    all.extend(workspace::build_examples()?);
    Ok(all)
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    wasm: &std::path::Path,
    mode: InstanceMode,
    passes: usize,
) -> anyhow::Result<Cost> {
    let examples = workspace::root().join("examples/plugins");
    let records = record::load(&examples.join("requests.jsonl")).map_err(|e| anyhow::anyhow!(e))?;
    let mut settings = driver::load_settings(wasm, Some(&examples.join("require-header.toml")))
        .map_err(|e| anyhow::anyhow!(e))?;
    settings.instances = mode;
    runtime
        .block_on(per_request_cost(
            wasm,
            "require-header",
            settings,
            &records,
            passes,
        ))
        .map_err(|e| anyhow::anyhow!("{}: {e}", wasm.display()))
}

/// Measures and prints one row per language.
pub fn run(runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let components = components()?;
    println!(
        "require-header per request (on-request + on-response + on-log), in-process, {REUSED_PASSES} passes over examples/plugins/requests.jsonl:"
    );
    println!(
        "  {:<7}{:>10}{:>12}{:>10}{:>12}{:>12}{:>12}{:>14}",
        "lang", "size KB", "compile ms", "init ms", "p50 us", "mean us", "p99 us", "fresh p50 us"
    );
    for (lang, wasm) in components {
        let reused = measure(runtime, &wasm, InstanceMode::Reuse, REUSED_PASSES)?;
        let fresh = measure(runtime, &wasm, InstanceMode::Fresh, FRESH_PASSES)?;
        let (Some(per_request), Some(fresh_request)) =
            (&reused.timings.per_request, &fresh.timings.per_request)
        else {
            anyhow::bail!("{lang}: no exchange was timed");
        };
        println!(
            "  {:<7}{:>10.0}{:>12.0}{:>10.1}{:>12.1}{:>12.1}{:>12.1}{:>14.1}",
            lang,
            reused.loaded.size_bytes as f64 / 1024.0,
            reused.loaded.compile_ms,
            reused.loaded.init_ms,
            per_request.p50_us,
            per_request.mean_us,
            per_request.p99_us,
            fresh_request.p50_us,
        );
    }
    println!("  (fresh: a new instance, with init, for every hook call; reused is the default)");
    Ok(())
}
