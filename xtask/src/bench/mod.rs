//! `cargo xtask bench`: requests/s and latency side by side in one run (the
//! app direct, Tandem with no plugins, Tandem with the example chain, nginx
//! when it can be installed), the instance-strategy comparison on the real
//! chain, the cost of one hook call, the per-request cost of the same
//! plugin in Rust, C, Python and JavaScript, and the first-party plugins
//! (access-log, metrics, auth, rate-limit) alone and together, and the
//! instructions per request of Tandem and nginx under callgrind. Figures,
//! never pass/fail: these machines are shared and noisy, so compare the
//! ratios of one run.

mod containment;
mod cpu;
mod hook_cost;
mod instructions;
mod load;
mod nginx;
mod plugins;
mod polyglot;
mod scenario;
mod swap;

use std::time::Duration;

use clap::Args;

use crate::{prereq, workspace};
use load::LoadShape;

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 4)]
    seconds: u64,
    /// Skip the nginx comparison (it may install nginx with apt-get).
    #[arg(long)]
    no_nginx: bool,
    /// Run only these parts (default: all of them).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

/// The parts of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// Requests/s and latency: app direct, Tandem, nginx.
    Proxy,
    /// One hook call, in-process, reused and fresh instances.
    Hook,
    /// Hot swap: file change to serving, memory over many swaps.
    Swap,
    /// The same plugin in Rust, C, Python and JavaScript, per request.
    Languages,
    /// access-log, metrics, auth and rate-limit: each alone, all four, none.
    Plugins,
    /// p99 of other requests while one plugin loops on every call.
    Containment,
    /// Instructions per request, Tandem and nginx, under callgrind (valgrind).
    Instructions,
}

/// True if `args` asks for any of `parts`.
fn wanted_any(args: &BenchArgs, parts: &[Part]) -> bool {
    args.only.is_empty() || parts.iter().any(|part| args.only.contains(part))
}

/// Runs `cargo xtask bench`.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    prereq::check()?;
    workspace::build_plugins()?;
    workspace::build_binaries()?;
    if wanted_any(args, &[Part::Proxy, Part::Plugins, Part::Instructions]) {
        // Tandem is measured as it ships, not as the tests build it.
        workspace::build_production_tandem()?;
    }
    let shape = LoadShape {
        connections: args.connections,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(args.seconds),
    };
    // One thread drives the load, leaving the other core to the proxy and
    // the app; every scenario gets the same share.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let wanted = |part: Part| wanted_any(args, &[part]);
    if wanted(Part::Proxy) {
        let rows = scenario::run_all(&runtime, shape, !args.no_nginx)?;
        scenario::print_table(&rows, shape);
        println!();
    }
    if wanted(Part::Hook) {
        let cost = hook_cost::measure(&workspace::plugin_component("header-reader"))?;
        println!("one hook call that reads one header (header-reader on-request, in-process):");
        println!(
            "  reused instance, synchronous call (default): {:>6.2} us/call",
            cost.reused.as_secs_f64() * 1e6
        );
        println!(
            "  reused instance, call on a fiber:            {:>6.2} us/call ({:.2} times the synchronous call)",
            cost.reused_fiber.as_secs_f64() * 1e6,
            cost.reused_fiber.as_secs_f64() / cost.reused.as_secs_f64()
        );
        println!(
            "  fresh instance:                              {:>6.2} us/call (instantiate + init + call)",
            cost.fresh.as_secs_f64() * 1e6
        );
        println!();
    }
    if wanted(Part::Swap) {
        swap::run()?;
    }
    if wanted(Part::Languages) {
        polyglot::run(&runtime)?;
        println!();
    }
    if wanted(Part::Plugins) {
        plugins::run(&runtime, shape)?;
        println!();
    }
    if wanted(Part::Containment) {
        containment::run()?;
        println!();
    }
    if wanted(Part::Instructions) {
        instructions::run(&runtime)?;
        println!();
    }
    Ok(())
}
