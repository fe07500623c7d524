//! Instructions per proxied request, counted by valgrind's callgrind, for
//! Tandem with no plugins and for nginx, each as one process serving the
//! same load. Unlike requests per second or CPU time, an instruction count
//! does not move with other load on a shared machine, so a change of a few
//! percent shows, and the two proxies can be compared run to run. It counts
//! user-space instructions only: the kernel's share (the system calls,
//! about the same for both) is not in it, nor the cost of cache misses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::load::{self, LoadShape};
use super::nginx;
use super::scenario::{self, PATH};
use crate::process::{Interrupt, Service};
use crate::{services, workspace};

/// Load under callgrind: a few connections, first to warm up (uncounted),
/// then for long enough that tens of thousands of requests are counted.
const CONNECTIONS: usize = 8;
const WARM_UP: Duration = Duration::from_secs(2);
const COUNTED: Duration = Duration::from_secs(6);

/// `CONNECTIONS` for `duration`, every request measured.
fn shape(duration: Duration) -> LoadShape {
    LoadShape {
        connections: CONNECTIONS,
        warmup: Duration::ZERO,
        duration,
    }
}

/// What one proxy ran per request.
struct Count {
    name: &'static str,
    requests: u64,
    instructions: u64,
}

impl Count {
    fn per_request(&self) -> f64 {
        self.instructions as f64 / self.requests.max(1) as f64
    }
}

/// The valgrind command line that writes callgrind's counts under `dir`.
fn callgrind(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "-q".into(),
        "--tool=callgrind".into(),
        format!(
            "--callgrind-out-file={}",
            dir.join("callgrind.out").display()
        ),
    ]
}

/// The instruction total of the newest callgrind dump in `dir`.
fn dumped_total(dir: &Path) -> anyhow::Result<u64> {
    let newest: PathBuf = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("callgrind.out")
        })
        .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())
        .map(|entry| entry.path())
        .context("callgrind wrote no counts")?;
    let text = std::fs::read_to_string(&newest)?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .and_then(|total| total.trim().parse().ok())
        .with_context(|| format!("no instruction total in {}", newest.display()))
}

/// Runs `callgrind_control` with `flag` on `pid` (`-z` zeroes the counts,
/// `-d` writes them out).
fn control(flag: &str, pid: u32) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("callgrind_control {flag} {pid} failed");
    }
    Ok(())
}

/// Counts what `service` (under callgrind, writing into `dir`) runs for
/// the requests of one load on `address`.
fn count(
    runtime: &tokio::runtime::Runtime,
    name: &'static str,
    service: Service,
    address: SocketAddr,
    dir: &Path,
) -> anyhow::Result<Count> {
    let pid = service.pid().context("the process has no pid")?;
    // Warm up (first connections, caches, lazily built state), then count
    // only the second load.
    let warm = shape(WARM_UP);
    runtime.block_on(load::run_metered(address, PATH, &[], 200, warm, &[]));
    control("-z", pid)?;
    let counted = shape(COUNTED);
    let result = runtime.block_on(load::run_metered(address, PATH, &[], 200, counted, &[]));
    control("-d", pid)?;
    // The dump is written asynchronously to the request.
    std::thread::sleep(Duration::from_secs(2));
    let instructions = dumped_total(dir)?;
    service.stop()?;
    if result.errors > 0 {
        bail!("{name}: {} requests failed under callgrind", result.errors);
    }
    Ok(Count {
        name,
        requests: result.ok,
        instructions,
    })
}

/// Runs the comparison and prints it.
pub fn run(runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    services::ensure_valgrind()?;
    let interrupt = Interrupt::install()?;
    let bench_dir = workspace::target_dir().join("bench").join("instructions");
    let (app, app_addr) = scenario::start_app(interrupt)?;

    println!("bench: counting instructions under callgrind (about a minute)");
    let tandem_dir = bench_dir.join("tandem");
    let _ = std::fs::remove_dir_all(&tandem_dir);
    std::fs::create_dir_all(&tandem_dir)?;
    let counts_dir = tandem_dir.join("counts");
    std::fs::create_dir_all(&counts_dir)?;
    // One worker, as nginx runs one process here.
    let launcher: Vec<String> = ["env".to_owned(), "TANDEM_WORKERS=1".to_owned()]
        .into_iter()
        .chain(callgrind(&counts_dir))
        .collect();
    let tandem = scenario::start_tandem_under(
        &launcher,
        &tandem_dir.join("run"),
        app_addr,
        &[],
        "",
        interrupt,
    )?;
    let mut counts = vec![count(
        runtime,
        "tandem, no plugins (1 worker)",
        tandem.service,
        tandem.proxy,
        &counts_dir,
    )?];

    match nginx::ensure_installed() {
        Ok(binary) => {
            let nginx_dir = bench_dir.join("nginx");
            let counts_dir = nginx_dir.join("counts");
            let _ = std::fs::remove_dir_all(&nginx_dir);
            std::fs::create_dir_all(&counts_dir)?;
            let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let nginx = nginx::start(
                &callgrind(&counts_dir),
                &binary,
                &nginx_dir,
                listen,
                app_addr,
                nginx::Processes::Single,
            )?;
            counts.push(count(
                runtime,
                "nginx reverse proxy (1 process)",
                nginx,
                listen,
                &counts_dir,
            )?);
        }
        Err(error) => println!("bench: nginx skipped: {error:#}"),
    }
    app.stop()?;

    println!(
        "user-space instructions per proxied request (callgrind; GET {PATH}, {CONNECTIONS} connections):"
    );
    for count in &counts {
        println!(
            "  {:<36} {:>8.0} instructions ({} requests counted)",
            count.name,
            count.per_request(),
            count.requests
        );
    }
    if let [tandem, nginx] = &counts[..] {
        println!(
            "  tandem runs {:.2} times nginx's instructions per request",
            tandem.per_request() / nginx.per_request()
        );
    }
    Ok(())
}
