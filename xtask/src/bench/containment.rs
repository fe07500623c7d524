//! Benchmark: while one plugin loops on every request that reaches it, a
//! concurrent stream of requests that do not hit it should keep its p99
//! latency within twice its normal value.
//!
//! Self-contained: builds the release `tandem` and the guest plugins,
//! starts a small keep-alive upstream on 127.0.0.1, runs Tandem with the
//! `hostile` fixture looping in `on-request` under `/loop/` (fail-open,
//! 100 ms deadline), and measures `/normal` alone and while another client
//! keeps hitting `/loop/`, in alternating rounds so that drift in the
//! machine's load touches both alike. Prints figures; asserts nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Connections measuring `/normal` at the same time.
const NORMAL_CLIENTS: usize = 2;
/// Alternating rounds of (alone, looping).
const ROUNDS: usize = 3;
/// Requests per measuring connection, round and phase.
const REQUESTS_PER_CLIENT: usize = 5000;
/// Requests per connection before measuring.
const WARM_UP: usize = 200;
/// Connections that keep hitting the looping plugin.
const LOOPING_CLIENTS: usize = 1;
/// The looping plugin's deadline per call.
const HOOK_TIMEOUT_MS: u64 = 100;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_owned()
}

fn cargo_build(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet"])
        .args(args)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .with_context(|| format!("running cargo build in {}", dir.display()))?;
    if !status.success() {
        bail!("cargo build failed in {}", dir.display());
    }
    Ok(())
}

/// A keep-alive HTTP/1.1 upstream that answers every request with `ok`.
fn start_upstream() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => return,
                });
                let mut writer = stream;
                loop {
                    // GET requests only: the head ends with an empty line.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if writer.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// A running Tandem, killed on drop.
struct Tandem {
    child: Child,
    proxy: SocketAddr,
    dir: PathBuf,
}

impl Drop for Tandem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_tandem(root: &Path, upstream: SocketAddr) -> anyhow::Result<Tandem> {
    let dir = std::env::temp_dir().join(format!("tandem-bench-containment-{}", std::process::id()));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::copy(
        root.join("plugins/target/wasm32-wasip2/release/hostile.wasm"),
        plugins.join("looper.wasm"),
    )
    .context("copying the hostile fixture")?;
    std::fs::write(
        plugins.join("looper.toml"),
        format!(
            "failure = \"open\"\nhook_timeout_ms = {HOOK_TIMEOUT_MS}\n\
             [config]\nmisbehave = \"loop\"\nhook = \"on-request\"\nprefix = \"/loop/\"\n"
        ),
    )?;
    std::fs::write(
        dir.join("tandem.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nupstream = \"http://{upstream}\"\n\
             [plugins]\ndir = \"plugins\"\n"
        ),
    )?;
    let mut child = Command::new(root.join("target/release/tandem"))
        .arg("run")
        .arg("--config")
        .arg(dir.join("tandem.toml"))
        .env("TANDEM_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tandem")?;
    let stdout = child.stdout.take().context("tandem's stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let proxy = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("proxy="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no proxy address in {line:?}"))?;
    Ok(Tandem { child, proxy, dir })
}

/// One keep-alive client connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    request: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            request: format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n").into_bytes(),
        })
    }

    /// Sends the request and reads the response; returns its status.
    fn exchange(&mut self) -> anyhow::Result<u16> {
        self.writer.write_all(&self.request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                bail!("connection closed mid-response");
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(status)
    }
}

/// Latencies of `/normal` from several connections at once.
fn measure(proxy: SocketAddr) -> anyhow::Result<Vec<Duration>> {
    let workers: Vec<_> = (0..NORMAL_CLIENTS)
        .map(|_| {
            thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut client = Client::connect(proxy, "/normal")?;
                for _ in 0..WARM_UP {
                    client.exchange()?;
                }
                let mut latencies = Vec::with_capacity(REQUESTS_PER_CLIENT);
                for _ in 0..REQUESTS_PER_CLIENT {
                    let started = Instant::now();
                    let status = client.exchange()?;
                    latencies.push(started.elapsed());
                    if status != 200 {
                        bail!("/normal answered {status}");
                    }
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??,
        );
    }
    Ok(all)
}

/// Clients that keep hitting the looping plugin until stopped.
struct Looping {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<anyhow::Result<()>>>,
}

impl Looping {
    fn start(proxy: SocketAddr, looped: &Arc<AtomicU64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..LOOPING_CLIENTS)
            .map(|i| {
                let (stop, looped) = (stop.clone(), looped.clone());
                thread::spawn(move || -> anyhow::Result<()> {
                    let mut client = Client::connect(proxy, &format!("/loop/{i}"))?;
                    while !stop.load(Ordering::Relaxed) {
                        client.exchange()?;
                        looped.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        // Let the first looping call start.
        thread::sleep(Duration::from_millis(50));
        Self { stop, threads }
    }

    fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a looping client panicked"))??;
        }
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Runs the benchmark and prints its figures.
pub fn run() -> anyhow::Result<()> {
    let root = repo_root();
    println!("containment: building tandem and the plugins (release)...");
    cargo_build(&root, &["--package", "tandem", "--bin", "tandem"])?;
    cargo_build(&root.join("plugins"), &[])?;
    let upstream = start_upstream()?;
    let tandem = start_tandem(&root, upstream)?;

    let looped = Arc::new(AtomicU64::new(0));
    let (mut baseline, mut under_loop) = (Vec::new(), Vec::new());
    let mut looping_time = Duration::ZERO;
    for _ in 0..ROUNDS {
        baseline.extend(measure(tandem.proxy)?);
        let looping = Looping::start(tandem.proxy, &looped);
        let started = Instant::now();
        under_loop.extend(measure(tandem.proxy)?);
        looping_time += started.elapsed();
        looping.stop()?;
    }
    baseline.sort();
    under_loop.sort();

    let (p50, p99) = (percentile(&baseline, 0.5), percentile(&baseline, 0.99));
    let (q50, q99) = (percentile(&under_loop, 0.5), percentile(&under_loop, 0.99));
    println!(
        "containment: /normal over {NORMAL_CLIENTS} keep-alive connections, {} requests per phase in {ROUNDS} alternating rounds",
        baseline.len()
    );
    println!(
        "  alone                 p50 {:7.3} ms   p99 {:7.3} ms",
        ms(p50),
        ms(p99)
    );
    println!(
        "  plugin looping        p50 {:7.3} ms   p99 {:7.3} ms   ({} looping requests in {:.1} s, each stopped at {HOOK_TIMEOUT_MS} ms)",
        ms(q50),
        ms(q99),
        looped.load(Ordering::Relaxed),
        looping_time.as_secs_f64()
    );
    let ratio = q99.as_secs_f64() / p99.as_secs_f64().max(1e-9);
    println!(
        "  p99 ratio {ratio:.2} (target: at most 2.00) {}",
        if ratio <= 2.0 { "ok" } else { "OVER" }
    );
    Ok(())
}
