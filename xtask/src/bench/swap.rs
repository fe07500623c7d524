//! The hot-swap benchmark: how long a file change takes to serve, with a
//! cold and a warm artifact cache, and whether resident memory stays flat
//! over a thousand swaps. Prints figures; asserts nothing about speed.
//!
//! It runs the release `tandem` binary against a small upstream of its own
//! on 127.0.0.1 port 0, with the `version-tag` fixture (a Rust plugin whose
//! version stamp is rewritten in a copy of the file to make as many distinct
//! builds as needed) and `add-header`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Swaps measured with each cache state.
const LATENCY_SWAPS: u64 = 10;

/// Swaps in the memory run, and when resident memory is read.
const MEMORY_SWAPS: u64 = 1000;
const MEMORY_CHECKPOINTS: [u64; 3] = [10, 100, 1000];

/// The longest a swap may take before the benchmark gives up.
const SWAP_TIMEOUT: Duration = Duration::from_secs(30);

/// The marker before the ten digits of version-tag's stamp.
const STAMP_MARKER: &[u8] = b"TANDEM-VERSION-STAMP:";

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_owned()
}

/// Builds the release host and the plugins.
fn build() -> anyhow::Result<(PathBuf, PathBuf)> {
    let root = repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--quiet", "-p", "tandem"])
        .current_dir(&root)
        .status()
        .context("running cargo build for the host")?;
    ensure!(status.success(), "building tandem failed");
    let status = Command::new(&cargo)
        .args(["build", "--release", "--quiet"])
        .current_dir(root.join("plugins"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .context("running cargo build for the plugins")?;
    ensure!(status.success(), "building the plugins failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok((
        target.join("release/tandem"),
        root.join("plugins/target/wasm32-wasip2/release"),
    ))
}

/// version-tag with its stamp set to `version`.
fn version_tag(original: &[u8], version: u64) -> anyhow::Result<Vec<u8>> {
    let at = original
        .windows(STAMP_MARKER.len())
        .position(|w| w == STAMP_MARKER)
        .context("version-tag has no stamp marker")?
        + STAMP_MARKER.len();
    let mut bytes = original.to_vec();
    bytes[at..at + 10].copy_from_slice(format!("{version:010}").as_bytes());
    Ok(bytes)
}

/// Writes `bytes` to a temporary file beside `path` and renames it over.
fn replace_by_rename(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = path.with_extension("bench-tmp");
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("tandem-bench-swap-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("plugins"))?;
        Ok(Self(dir))
    }

    fn plugins(&self) -> PathBuf {
        self.0.join("plugins")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running Tandem, killed when dropped.
struct Tandem {
    child: Child,
    proxy: SocketAddr,
    admin: SocketAddr,
}

impl Tandem {
    fn start(binary: &Path, dir: &Path, upstream: SocketAddr, watch: bool) -> anyhow::Result<Self> {
        std::fs::write(
            dir.join("tandem.toml"),
            format!(
                "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nupstream = \"http://{upstream}\"\n\
                 [plugins]\ndir = \"plugins\"\ncache_dir = \"cache\"\nwatch = {watch}\n"
            ),
        )?;
        let mut child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(dir.join("tandem.toml"))
            .env("TANDEM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let field = |key: &str| -> anyhow::Result<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {key} in {line:?}"))
        };
        Ok(Self {
            proxy: field("proxy=")?,
            admin: field("admin=")?,
            child,
        })
    }

    /// Resident memory in KiB, from /proc.
    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }
}

impl Drop for Tandem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An upstream that answers every request with 200 "ok".
async fn start_upstream() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// GETs `url`; returns the status and one response header.
async fn get_header(
    client: &HttpClient,
    url: &str,
    header: &str,
) -> anyhow::Result<(u16, Option<String>)> {
    let response = client
        .request(hyper::Request::get(url).body(Full::new(Bytes::new()))?)
        .await?;
    let status = response.status().as_u16();
    let value = response
        .headers()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    response.into_body().collect().await?;
    Ok((status, value))
}

/// Polls until a response carries `header: want`; returns how long it took.
async fn until_served(
    client: &HttpClient,
    url: &str,
    header: &str,
    want: &str,
    since: Instant,
) -> anyhow::Result<Duration> {
    loop {
        let (status, value) = get_header(client, url, header).await?;
        ensure!(status == 200, "request failed during a swap: {status}");
        if value.as_deref() == Some(want) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > SWAP_TIMEOUT {
            bail!("{header}: {want} not served after {SWAP_TIMEOUT:?} (still {value:?})");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:6.1} ms   min {:6.1} ms   max {:6.1} ms   ({} swaps)",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

/// File change to new version serving, through the file watcher.
async fn latency(
    binary: &Path,
    original: &[u8],
    upstream: SocketAddr,
    client: &HttpClient,
) -> anyhow::Result<()> {
    let scratch = Scratch::new("latency")?;
    let wasm = scratch.plugins().join("ver.wasm");
    std::fs::write(&wasm, version_tag(original, 0)?)?;
    let tandem = Tandem::start(binary, &scratch.0, upstream, true)?;
    let url = format!("http://{}/", tandem.proxy);
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    // New digests: compiled, then written to the cache. Then the same ones
    // again: loaded from the cache.
    for times in [&mut cold, &mut warm] {
        for version in 1..=LATENCY_SWAPS {
            replace_by_rename(&wasm, &version_tag(original, version)?)?;
            let changed = Instant::now();
            times.push(
                until_served(client, &url, "x-version", &version.to_string(), changed).await?,
            );
        }
    }
    println!(
        "hot swap: file renamed into place -> new version serving (version-tag, {} KiB Rust \
         component; includes the watcher's 200 ms debounce)",
        original.len() / 1024
    );
    println!("  cold cache (compile + store)  {}", summary(&mut cold));
    println!("  warm cache (load)             {}", summary(&mut warm));
    Ok(())
}

/// Lays out one ConfigMap generation: `a` (version-tag) and `b`
/// (add-header), both changing from one generation to the next.
fn generation(
    dir: &Path,
    name: &str,
    original: &[u8],
    add_header: &[u8],
    version: u64,
) -> anyhow::Result<()> {
    let data = dir.join(name);
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("a.wasm"), version_tag(original, version)?)?;
    std::fs::write(data.join("a.toml"), "order = 1\n")?;
    std::fs::write(data.join("b.wasm"), add_header)?;
    std::fs::write(
        data.join("b.toml"),
        format!("order = 2\n[config]\nheaders = {{ x-generation = \"{version}\" }}\n"),
    )?;
    Ok(())
}

/// Resident memory over many swaps, each a ConfigMap-style switch of the
/// `..data` link between two generations followed by `POST /reload`: per
/// swap, one plugin gets another wasm (from the cache) and one another
/// config (initialised again), and the old versions are dropped.
async fn memory(
    binary: &Path,
    original: &[u8],
    add_header: &[u8],
    upstream: SocketAddr,
    client: &HttpClient,
) -> anyhow::Result<()> {
    let scratch = Scratch::new("memory")?;
    let dir = scratch.plugins();
    generation(&dir, "..gen1", original, add_header, 1)?;
    generation(&dir, "..gen2", original, add_header, 2)?;
    std::os::unix::fs::symlink("..gen1", dir.join("..data"))?;
    for name in ["a.wasm", "a.toml", "b.wasm", "b.toml"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))?;
    }
    // Files younger than the settle time are waited for; these are not
    // changing, so let them age once rather than on every reload.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tandem = Tandem::start(binary, &scratch.0, upstream, false)?;
    let url = format!("http://{}/", tandem.proxy);
    let reload_url = format!("http://{}/reload", tandem.admin);
    let started = Instant::now();
    println!("hot swap: resident memory (VmRSS) of tandem over {MEMORY_SWAPS} swaps");
    println!("  after start        {:7} KiB", tandem.rss_kib()?);
    for swap in 1..=MEMORY_SWAPS {
        let version = if swap % 2 == 1 { 2 } else { 1 };
        let link = dir.join("..data_tmp");
        std::os::unix::fs::symlink(format!("..gen{version}"), &link)?;
        std::fs::rename(&link, dir.join("..data"))?;
        let response = client
            .request(hyper::Request::post(&reload_url).body(Full::new(Bytes::new()))?)
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let report: serde_json::Value = serde_json::from_slice(&body)?;
        ensure!(
            status == 200
                && report["replaced"] == serde_json::json!(["a"])
                && report["reconfigured"] == serde_json::json!(["b"]),
            "swap {swap}: {status} {report}"
        );
        // Some traffic on each version, so instances are used and pooled.
        for _ in 0..5 {
            let (status, value) = get_header(client, &url, "x-version").await?;
            ensure!(
                status == 200 && value.as_deref() == Some(&*version.to_string()),
                "swap {swap}: served {status} {value:?}"
            );
        }
        if MEMORY_CHECKPOINTS.contains(&swap) {
            println!("  after {swap:4} swaps   {:7} KiB", tandem.rss_kib()?);
        }
    }
    println!(
        "  ({MEMORY_SWAPS} swaps in {:.1} s, each a wasm replaced from the cache and a config \
         re-initialised)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs the hot-swap benchmark and prints its figures.
pub fn run() -> anyhow::Result<()> {
    let (binary, plugins) = build()?;
    let original =
        std::fs::read(plugins.join("version_tag.wasm")).context("reading version_tag.wasm")?;
    let add_header =
        std::fs::read(plugins.join("add_header.wasm")).context("reading add_header.wasm")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let upstream = start_upstream().await?;
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        latency(&binary, &original, upstream, &client).await?;
        memory(&binary, &original, &add_header, upstream, &client).await
    })
}
