//! The side-by-side scenarios: each starts its processes, drives the same
//! load, reads the proxy's resident memory, and stops them again.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::cpu;
use super::load::{self, LoadResult, LoadShape, ROUNDS};
use super::nginx;
use crate::process::{Interrupt, Service};
use crate::workspace;

/// One measured scenario.
pub struct Row {
    /// What ran.
    pub name: String,
    /// What the load generator measured.
    pub result: LoadResult,
    /// The proxy's resident memory at the end, if it is Tandem.
    pub rss_kib: Option<u64>,
}

impl Row {
    /// The proxy's CPU per request for a table cell.
    pub fn cpu_text(&self) -> String {
        self.result
            .cpu_us_per_request()
            .map_or_else(|| "-".into(), |us| format!("{us:.1} us"))
    }

    /// The proxy's resident memory for a table cell.
    pub fn rss_text(&self) -> String {
        self.rss_kib
            .map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    }
}

/// A plugin in a scenario: name, guest crate, NAME.toml.
pub type PluginSpec = (&'static str, &'static str, &'static str);

/// A running Tandem.
pub struct Tandem {
    /// The process.
    pub service: Service,
    /// The proxy listener.
    pub proxy: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
}

struct TandemScenario {
    name: &'static str,
    plugins: &'static [PluginSpec],
    headers: &'static [(&'static str, &'static str)],
}

/// The path every scenario requests.
pub const PATH: &str = "/healthz";

const EXAMPLE_CHAIN: &[PluginSpec] = &[
    (
        "add-header",
        "add-header",
        "order = 10\n[config]\nheaders = { x-served-by = \"tandem\" }\n",
    ),
    (
        "deny-path",
        "deny-path",
        "order = 20\n[config]\nprefixes = [\"/admin\"]\n",
    ),
];

const SCENARIOS: &[TandemScenario] = &[
    TandemScenario {
        name: "tandem, no plugins",
        plugins: &[],
        headers: &[],
    },
    TandemScenario {
        name: "tandem, example chain (2 plugins)",
        plugins: EXAMPLE_CHAIN,
        headers: &[],
    },
    TandemScenario {
        name: "tandem, header-reader, reused instances",
        plugins: &[("header-reader", "header-reader", "instances = \"reuse\"\n")],
        headers: &[("x-probe", "1")],
    },
    TandemScenario {
        name: "tandem, header-reader, fresh instances",
        plugins: &[("header-reader", "header-reader", "instances = \"fresh\"\n")],
        headers: &[("x-probe", "1")],
    },
];

/// Resident memory of a process, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn address_after(line: &str, key: &str) -> anyhow::Result<SocketAddr> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key))
        .with_context(|| format!("no {key} in {line:?}"))?
        .parse()
        .with_context(|| format!("bad address in {line:?}"))
}

/// Starts Tandem from a fresh `dir` with `plugins` in front of `upstream`;
/// `extra_config` is appended to its tandem.toml.
pub fn start_tandem(
    dir: &Path,
    upstream: SocketAddr,
    plugins: &[PluginSpec],
    extra_config: &str,
    interrupt: &Interrupt,
) -> anyhow::Result<Tandem> {
    start_tandem_under(&[], dir, upstream, plugins, extra_config, interrupt)
}

/// `program`, run by `launcher` (a program and its arguments, such as
/// valgrind) if there is one.
pub fn command_under(launcher: &[String], program: &Path) -> Command {
    match launcher.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
    }
}

/// [`start_tandem`], with Tandem run by `launcher`.
pub fn start_tandem_under(
    launcher: &[String],
    dir: &Path,
    upstream: SocketAddr,
    plugins: &[PluginSpec],
    extra_config: &str,
    interrupt: &Interrupt,
) -> anyhow::Result<Tandem> {
    let plugin_dir = dir.join("plugins");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(&plugin_dir)?;
    for (name, crate_name, settings) in plugins {
        std::fs::copy(
            workspace::plugin_component(crate_name),
            plugin_dir.join(format!("{name}.wasm")),
        )?;
        std::fs::write(plugin_dir.join(format!("{name}.toml")), settings)?;
    }
    let config = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nupstream = \"http://{upstream}\"\n[plugins]\ndir = \"plugins\"\n{extra_config}"
    );
    std::fs::write(dir.join("tandem.toml"), config)?;
    let mut command = command_under(launcher, &workspace::production_binary("tandem"));
    command
        .arg("run")
        .arg("--config")
        .arg(dir.join("tandem.toml"))
        .env("TANDEM_LOG", "warn")
        .stderr(Stdio::inherit());
    let mut service = Service::spawn("tandem", command)?;
    let line = service.wait_for_line("tandem listening", Duration::from_secs(120), interrupt)?;
    Ok(Tandem {
        proxy: address_after(&line, "proxy=")?,
        admin: address_after(&line, "admin=")?,
        service,
    })
}

/// Starts the demo application on a free port.
pub fn start_app(interrupt: &Interrupt) -> anyhow::Result<(Service, SocketAddr)> {
    let mut app_command = Command::new(workspace::release_binary("demo-app"));
    app_command
        .args(["--listen", "127.0.0.1:0"])
        .stderr(Stdio::null());
    let mut app = Service::spawn("demo-app", app_command)?;
    let line = app.wait_for_line("demo-app listening on", Duration::from_secs(30), interrupt)?;
    let app_addr = line
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .parse()
        .context("demo-app address")?;
    Ok((app, app_addr))
}

/// A target under load: what it is, where it listens, which processes to
/// meter, and the process to stop at the end.
struct Started {
    name: String,
    address: SocketAddr,
    headers: &'static [(&'static str, &'static str)],
    pids: Vec<u32>,
    service: Option<Service>,
}

/// Starts the demo-app, one Tandem per scenario and nginx, then drives them
/// all in [`ROUNDS`] interleaved slices against the one demo-app, nginx
/// right after Tandem without plugins.
pub fn run_all(
    runtime: &tokio::runtime::Runtime,
    shape: LoadShape,
    with_nginx: bool,
) -> anyhow::Result<Vec<Row>> {
    let interrupt = Interrupt::install()?;
    let bench_dir = workspace::target_dir().join("bench");
    let (app, app_addr) = start_app(interrupt)?;

    let mut targets = vec![Started {
        name: "app direct".into(),
        address: app_addr,
        headers: &[],
        pids: Vec::new(),
        service: None,
    }];
    for scenario in SCENARIOS {
        println!("bench: starting {}", scenario.name);
        let dir = bench_dir.join(scenario.name.replace([' ', ',', '(', ')'], "-"));
        let tandem = start_tandem(&dir, app_addr, scenario.plugins, "", interrupt)?;
        targets.push(Started {
            name: scenario.name.into(),
            address: tandem.proxy,
            headers: scenario.headers,
            pids: tandem.service.pid().into_iter().collect(),
            service: Some(tandem.service),
        });
    }
    if with_nginx {
        match nginx::ensure_installed() {
            Ok(binary) => {
                println!("bench: starting nginx");
                let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
                let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
                let nginx = nginx::start(
                    &[],
                    &binary,
                    &bench_dir.join("nginx"),
                    listen,
                    app_addr,
                    nginx::Processes::Workers(workers),
                )?;
                // The master and its workers.
                let pids = nginx
                    .pid()
                    .into_iter()
                    .flat_map(|master| std::iter::once(master).chain(cpu::children(master)))
                    .collect();
                // Right after Tandem without plugins, so that in each round
                // the two it compares run within seconds of each other.
                targets.insert(
                    2.min(targets.len()),
                    Started {
                        name: format!("{NGINX_ROW} ({workers} workers)"),
                        address: listen,
                        headers: &[],
                        pids,
                        service: Some(nginx),
                    },
                );
            }
            Err(error) => println!("bench: nginx skipped: {error:#}"),
        }
    }

    let loads: Vec<load::Target> = targets
        .iter()
        .map(|target| load::Target {
            address: target.address,
            headers: target.headers,
            pids: &target.pids,
        })
        .collect();
    let results = load::interleaved(runtime, &loads, PATH, shape);

    let mut rows = Vec::new();
    for (target, result) in targets.into_iter().zip(results) {
        let rss_kib = match &target.service {
            Some(service) if !target.name.starts_with(NGINX_ROW) => service.pid().and_then(rss_kib),
            _ => None,
        };
        if let Some(service) = target.service {
            service.stop()?;
        }
        rows.push(Row {
            name: target.name,
            result,
            rss_kib,
        });
    }
    app.stop()?;
    Ok(rows)
}

/// The start of the nginx row's name.
const NGINX_ROW: &str = "nginx reverse proxy";

/// Prints the table.
pub fn print_table(rows: &[Row], shape: LoadShape) {
    println!();
    println!(
        "{} connections, {} s per scenario in {ROUNDS} interleaved slices, GET {PATH}, one load thread; ratios are against the first row",
        shape.connections,
        shape.duration.as_secs()
    );
    println!(
        "{:<42} {:>10} {:>9} {:>9} {:>8} {:>7} {:>11} {:>10}",
        "scenario", "req/s", "p50 us", "p99 us", "errors", "ratio", "proxy CPU", "proxy RSS"
    );
    let base = rows.first().map_or(1.0, |r| r.result.rate());
    for row in rows {
        println!(
            "{:<42} {:>10.0} {:>9} {:>9} {:>8} {:>7.2} {:>11} {:>10}",
            row.name,
            row.result.rate(),
            row.result.percentile(0.50),
            row.result.percentile(0.99),
            row.result.errors,
            row.result.rate() / base,
            row.cpu_text(),
            row.rss_text()
        );
    }
    println!(
        "  proxy CPU: user + system CPU microseconds the proxy process(es) spent per request while measured;"
    );
    println!(
        "  unlike req/s it barely moves with other load on the machine, so compare Tandem and nginx by it"
    );
    let row = |name: &str| rows.iter().find(|row| row.name.starts_with(name));
    if let (Some(tandem), Some(nginx)) = (row(SCENARIOS[0].name), row(NGINX_ROW)) {
        let cpu = tandem
            .result
            .cpu_us_per_request()
            .zip(nginx.result.cpu_us_per_request())
            .map_or_else(|| "-".into(), |(t, n)| format!("{:.2}", t / n));
        println!(
            "  {} against {}: {:.2} of its requests per second, {cpu} times its CPU per request",
            tandem.name,
            nginx.name,
            tandem.result.rate() / nginx.result.rate()
        );
        print_slice_ratios(&tandem.result, &nginx.result);
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

/// Prints `a`'s figures over `b`'s slice by slice: the two ran within
/// seconds of each other in each round, so a burst of other work on the
/// machine moves both, and the spread shows how far one round's ratio can
/// be trusted.
fn print_slice_ratios(a: &LoadResult, b: &LoadResult) {
    let pairs = || a.slices.iter().zip(&b.slices);
    let rates: Vec<f64> = pairs().map(|(a, b)| a.rate / b.rate).collect();
    let cpus: Vec<f64> = pairs()
        .filter_map(|(a, b)| Some(a.cpu_us_per_request? / b.cpu_us_per_request?))
        .collect();
    let list = |values: &[f64]| {
        values
            .iter()
            .map(|value| format!("{value:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if let (Some(rate), Some(cpu)) = (median(rates.clone()), median(cpus.clone())) {
        println!(
            "  round by round: requests per second {} (median {rate:.2}); CPU per request {} (median {cpu:.2})",
            list(&rates),
            list(&cpus)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
