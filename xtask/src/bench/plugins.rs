//! Part `plugins` of `cargo xtask bench`: the four first-party plugins
//! (access-log, metrics, auth, rate-limit), each alone and all four as one
//! chain, next to Tandem with no plugins under the same load, and what each
//! costs per request: over HTTP from the same run, and in-process through
//! the host library (the hooks alone).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tandem::replay::record;
use tandem::replay::timing::{Cost, per_request_cost};

use super::load::{self, LoadShape, ROUNDS};
use super::scenario::{self, PATH, PluginSpec, Row, Tandem};
use crate::process::Interrupt;
use crate::{http, workspace};

/// The HS256 key auth checks tokens with; the load generator's token is
/// signed with it. A macro so that the auth settings below can embed it.
macro_rules! secret {
    () => {
        "tandem-bench-hs256-key-of-at-least-32-bytes"
    };
}

/// The subject of the bench token, which rate-limit keys its bucket by.
const SUBJECT: &str = "bench-client";

/// First, so that every request has an id before the others run. Records go
/// to the file sink configured in [`RECORDS`].
const ACCESS_LOG: PluginSpec = (
    "access-log",
    "access-log",
    "order = 0\nfailure = \"open\"\n[config]\nstatic_fields = { service = \"bench\" }\n",
);

const METRICS: PluginSpec = (
    "metrics",
    "metrics",
    "order = 1\nfailure = \"open\"\n[config]\nroutes = [\"/healthz\", \"/orders/{id}\"]\n",
);

const AUTH: PluginSpec = (
    "auth",
    "auth",
    concat!(
        "order = 10\n[config]\nrealm = \"bench\"\n[[config.jwt.keys]]\nalg = \"HS256\"\nsecret = \"",
        secret!(),
        "\"\n"
    ),
);

/// A rate far above what one machine can send, so it never limits; keyed by
/// the subject auth verified, or the client address when auth is absent
/// (the rate-limit-alone row), so that every request takes a token.
const RATE_LIMIT: PluginSpec = (
    "rate-limit",
    "rate-limit",
    "order = 20\nfailure = \"open\"\n[config]\n[[config.rules]]\nname = \"per-caller\"\nrate = 1e6\nburst = 1000000\nkey = [\"subject\", \"client-addr\"]\n",
);

const FOUR: &[PluginSpec] = &[ACCESS_LOG, METRICS, AUTH, RATE_LIMIT];

/// The rows, in the order they run; the first is the baseline.
const SCENARIOS: &[(&str, &[PluginSpec])] = &[
    ("tandem, no plugins", &[]),
    ("access-log", &[ACCESS_LOG]),
    ("metrics", &[METRICS]),
    ("auth (HS256 JWT)", &[AUTH]),
    ("rate-limit", &[RATE_LIMIT]),
    ("all four (access-log, metrics, auth, rate-limit)", FOUR),
];

/// Where access records go: a file in the scenario's directory, appended in
/// batches by the host's records writer, as a deployment that keeps its
/// logs on disk would. (The stdout sink would write into a pipe that the
/// bench does not drain.)
const RECORDS_FILE: &str = "records.jsonl";
const RECORDS: &str = "[records]\nsink = \"file\"\npath = \"records.jsonl\"\n";

/// In-process passes over the one recorded exchange. Below the records
/// buffer (10,000), so every record access-log emits is taken, as in a
/// running Tandem, rather than dropped as "buffer full".
const IN_PROCESS_PASSES: usize = 5_000;

/// A bearer token for [`SUBJECT`] that stays valid for ten years.
fn bearer_token() -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({
        "sub": SUBJECT,
        "iat": now,
        "exp": now + 10 * 365 * 24 * 3600,
    });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret!().as_bytes()),
    )?;
    Ok(format!("Bearer {token}"))
}

/// What the records pipeline did in one scenario.
struct RecordsSeen {
    written: usize,
    dropped: f64,
}

/// Sums the samples of one metric family in Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A started scenario.
struct Running {
    name: &'static str,
    plugins: &'static [PluginSpec],
    dir: PathBuf,
    tandem: Tandem,
    pids: Vec<u32>,
}

/// Starts one Tandem per scenario against one demo-app, drives them in
/// [`ROUNDS`] interleaved slices, and returns the rows and, for the
/// scenarios with access-log, what reached the records file.
fn run_load(
    runtime: &tokio::runtime::Runtime,
    shape: LoadShape,
    headers: &'static [(&'static str, &'static str)],
) -> anyhow::Result<Vec<(Row, Option<RecordsSeen>)>> {
    let interrupt = Interrupt::install()?;
    let bench_dir = workspace::target_dir().join("bench").join("plugins");
    let (app, app_addr) = scenario::start_app(interrupt)?;
    let mut running = Vec::new();
    for (name, plugins) in SCENARIOS {
        println!("bench: starting {name}");
        let dir = bench_dir.join(name.replace([' ', ',', '(', ')'], "-"));
        let tandem = scenario::start_tandem(&dir, app_addr, plugins, RECORDS, interrupt)?;
        let pids = tandem.service.pid().into_iter().collect();
        running.push(Running {
            name,
            plugins,
            dir,
            tandem,
            pids,
        });
    }
    let loads: Vec<load::Target> = running
        .iter()
        .map(|scenario| load::Target {
            address: scenario.tandem.proxy,
            headers,
            pids: &scenario.pids,
        })
        .collect();
    let results = load::interleaved(runtime, &loads, PATH, shape);
    let mut rows = Vec::new();
    for (scenario, result) in running.into_iter().zip(results) {
        let rss_kib = scenario.tandem.service.pid().and_then(scenario::rss_kib);
        let dropped = http::get(scenario.tandem.admin, "/metrics")
            .map(|response| metric_sum(&response.text(), "tandem_records_dropped_total"))?;
        // Stopping flushes what the records writer still holds.
        scenario.tandem.service.stop()?;
        let records = scenario
            .plugins
            .contains(&ACCESS_LOG)
            .then(|| -> anyhow::Result<_> {
                let path = scenario.dir.join(RECORDS_FILE);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok(RecordsSeen {
                    written: text.lines().count(),
                    dropped,
                })
            });
        let row = Row {
            name: scenario.name.into(),
            result,
            rss_kib,
        };
        rows.push((row, records.transpose()?));
    }
    app.stop()?;
    Ok(rows)
}

/// Microseconds per request of a saturated closed loop: the inverse of the
/// rate.
fn wall_us(row: &Row) -> f64 {
    1e6 / row.result.rate()
}

fn print_load_table(rows: &[(Row, Option<RecordsSeen>)], shape: LoadShape) {
    println!();
    println!(
        "{} connections, {} s per scenario in {ROUNDS} interleaved slices, GET {PATH} with `Authorization: Bearer <HS256 JWT>`, one load thread; ratios and + columns are against the first row",
        shape.connections,
        shape.duration.as_secs()
    );
    println!(
        "{:<50} {:>8} {:>8} {:>8} {:>7} {:>6} {:>7} {:>8} {:>8} {:>8} {:>9} {:>10}",
        "scenario",
        "req/s",
        "p50 us",
        "p99 us",
        "errors",
        "ratio",
        "us/req",
        "+us/req",
        "+p50 us",
        "CPU us",
        "+CPU us",
        "proxy RSS"
    );
    let Some((base, _)) = rows.first() else {
        return;
    };
    let base_cpu = base.result.cpu_us_per_request();
    for (row, _) in rows {
        let p50 = row.result.percentile(0.50);
        let cpu = row.result.cpu_us_per_request();
        let added_cpu = cpu
            .zip(base_cpu)
            .map_or_else(|| "-".into(), |(cpu, base)| format!("{:+.1}", cpu - base));
        println!(
            "{:<50} {:>8.0} {:>8} {:>8} {:>7} {:>6.2} {:>7.1} {:>+8.1} {:>+8} {:>8} {:>9} {:>10}",
            row.name,
            row.result.rate(),
            p50,
            row.result.percentile(0.99),
            row.result.errors,
            row.result.rate() / base.result.rate(),
            wall_us(row),
            wall_us(row) - wall_us(base),
            p50 as i64 - base.result.percentile(0.50) as i64,
            cpu.map_or_else(|| "-".into(), |us| format!("{us:.1}")),
            added_cpu,
            row.rss_text()
        );
    }
    println!(
        "  us/req = 1 / (req/s): wall time per request of the saturated loop (load thread, Tandem and app on {} cores);",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    println!(
        "  +us/req: what the plugins add to it; +p50 us: added median latency ({} requests in flight, so queueing included);\n  CPU us: user + system CPU microseconds Tandem spent per request; +CPU us: what the plugins add to that (the steadiest column)",
        shape.connections
    );
    let errors: u64 = rows.iter().map(|(row, _)| row.result.errors).sum();
    if errors == 0 {
        println!("  every response was 200");
    } else {
        println!("  WARNING: {errors} responses were not 200 or failed");
    }
    for (row, seen) in rows {
        if let Some(seen) = seen {
            println!(
                "  {}: {} access records in the file sink (warm-up included), {} dropped",
                row.name, seen.written, seen.dropped
            );
        }
    }
}

/// The one exchange the in-process measurement replays: the request the
/// load generator sends, answered 200 by the app.
fn exchange(authorization: &str) -> anyhow::Result<Vec<record::Numbered>> {
    let line = json!({
        "method": "GET",
        "target": PATH,
        "headers": [["host", "bench"], ["authorization", authorization]],
        "status": 200,
        "response_headers": [["content-type", "text/plain"]],
        "response_bytes": 3,
        "duration_us": 400,
        "upstream_duration_us": 300,
    })
    .to_string();
    record::parse(Path::new("bench"), &line).map_err(|e| anyhow::anyhow!(e))
}

/// Each plugin's hooks in-process, with the settings of the load scenarios.
fn measure_in_process(
    runtime: &tokio::runtime::Runtime,
    authorization: &str,
) -> anyhow::Result<Vec<(&'static str, Cost)>> {
    let records = exchange(authorization)?;
    let dir: PathBuf = workspace::target_dir()
        .join("bench")
        .join("plugins")
        .join("in-process");
    std::fs::create_dir_all(&dir)?;
    FOUR.iter()
        .map(|(name, crate_name, settings)| {
            let toml = dir.join(format!("{name}.toml"));
            std::fs::write(&toml, settings)?;
            let wasm = workspace::plugin_component(crate_name);
            let settings = tandem::replay::driver::load_settings(&wasm, Some(&toml))
                .map_err(|e| anyhow::anyhow!(e))?;
            let cost = runtime
                .block_on(per_request_cost(
                    &wasm,
                    name,
                    settings,
                    &records,
                    IN_PROCESS_PASSES,
                ))
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            Ok((*name, cost))
        })
        .collect()
}

fn print_in_process(costs: &[(&'static str, Cost)]) {
    println!();
    println!(
        "each plugin in-process (hooks only, reused instances, {IN_PROCESS_PASSES} exchanges), p50 us per hook call:"
    );
    println!(
        "  {:<12}{:>12}{:>13}{:>10}{:>14}{:>13}",
        "plugin", "on-request", "on-response", "on-log", "per request", "mean us"
    );
    let hook = |cost: &Cost, name: &str| {
        cost.timings
            .hooks
            .get(name)
            .map_or_else(|| "-".into(), |stats| format!("{:.2}", stats.p50_us))
    };
    let (mut p50_sum, mut mean_sum) = (0.0, 0.0);
    for (name, cost) in costs {
        let Some(per_request) = &cost.timings.per_request else {
            continue;
        };
        p50_sum += per_request.p50_us;
        mean_sum += per_request.mean_us;
        println!(
            "  {:<12}{:>12}{:>13}{:>10}{:>14.2}{:>13.2}",
            name,
            hook(cost, "on-request"),
            hook(cost, "on-response"),
            hook(cost, "on-log"),
            per_request.p50_us,
            per_request.mean_us,
        );
    }
    println!("  {:<12}{:>49.2}{:>13.2}", "sum of four", p50_sum, mean_sum);
    println!(
        "  (auth verifies the token once, then finds it in its cache by SHA-256; a hook call includes taking an instance from the pool)"
    );
}

/// Runs the part and prints its two tables.
pub fn run(runtime: &tokio::runtime::Runtime, shape: LoadShape) -> anyhow::Result<()> {
    let authorization = bearer_token()?;
    // The load generator's headers live for the whole run; one small string.
    let leaked: &'static str = Box::leak(authorization.clone().into_boxed_str());
    let headers: &'static [(&'static str, &'static str)] =
        Box::leak(Box::new([("authorization", leaked)]));
    let rows = run_load(runtime, shape, headers)?;
    print_load_table(&rows, shape);
    let costs = measure_in_process(runtime, &authorization)?;
    print_in_process(&costs);
    Ok(())
}
