//! Benchmark: while one plugin loops on every request that reaches it, a
//! concurrent stream of requests that do not hit it should keep its p99
//! latency within twice its normal value.
//!
//! Self-contained: builds the release `tandem` and the guest plugins,
//! starts a small keep-alive upstream on 127.0.0.1, runs two Tandems with
//! the `hostile` fixture looping in `on-request` under `/loop/` (fail-open,
//! 100 ms deadline, circuit breaker off so that it is the quarantine lane
//! that is measured, not the breaker), one with quarantine off and one with
//! the default quarantine, and measures `/normal` on each alone and while
//! another client keeps hitting `/loop/`, in alternating rounds so that
//! drift in the machine's load touches every phase alike. Prints figures;
//! asserts nothing.

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
const ROUNDS: usize = 5;
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
    admin: SocketAddr,
    dir: PathBuf,
}

impl Drop for Tandem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The two set-ups compared: quarantine off, and the default.
#[derive(Clone, Copy)]
enum Setup {
    QuarantineOff,
    Default,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::QuarantineOff => "quarantine off",
            Setup::Default => "quarantine on (default)",
        }
    }

    /// Extra `NAME.toml` lines. `trip_after = 0` (the default, spelled out)
    /// keeps the breaker from ever taking the plugin out of the chain.
    fn settings(self) -> &'static str {
        match self {
            Setup::QuarantineOff => "trip_after = 0\nquarantine_ms = 0\n",
            Setup::Default => "trip_after = 0\n",
        }
    }
}

fn start_tandem(root: &Path, upstream: SocketAddr, setup: Setup) -> anyhow::Result<Tandem> {
    let dir = std::env::temp_dir().join(format!(
        "tandem-bench-containment-{}-{}",
        std::process::id(),
        setup as u8
    ));
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
            "failure = \"open\"\nhook_timeout_ms = {HOOK_TIMEOUT_MS}\n{}\
             [config]\nmisbehave = \"loop\"\nhook = \"on-request\"\nprefix = \"/loop/\"\n",
            setup.settings()
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
    let address = |key: &str| -> anyhow::Result<SocketAddr> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {key} address in {line:?}"))
    };
    Ok(Tandem {
        proxy: address("proxy=")?,
        admin: address("admin=")?,
        child,
        dir,
    })
}

/// The body of a GET on a new connection.
fn get_body(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (_, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no body in the answer to {path}"))?;
    Ok(body.to_owned())
}

/// What `/plugins` says of the looping plugin: its state, quarantines and
/// circuit-breaker trips.
fn looper_summary(admin: SocketAddr) -> anyhow::Result<String> {
    let plugins: serde_json::Value = serde_json::from_str(&get_body(admin, "/plugins")?)?;
    let looper = plugins["plugins"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "looper"))
        .context("no looper in /plugins")?;
    Ok(format!(
        "looper state {}, quarantines {}, breaker trips {}",
        looper["state"], looper["quarantines"], looper["trips"]
    ))
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

/// Latencies of one set-up, alone and with the plugin looping.
struct Phases {
    setup: Setup,
    tandem: Tandem,
    alone: Vec<Duration>,
    looping: Vec<Duration>,
    looped: Arc<AtomicU64>,
    looping_time: Duration,
}

impl Phases {
    fn round(&mut self) -> anyhow::Result<()> {
        self.alone.extend(measure(self.tandem.proxy)?);
        let looping = Looping::start(self.tandem.proxy, &self.looped);
        let started = Instant::now();
        self.looping.extend(measure(self.tandem.proxy)?);
        self.looping_time += started.elapsed();
        looping.stop()
    }

    fn print(&mut self) -> anyhow::Result<()> {
        self.alone.sort();
        self.looping.sort();
        let (alone50, alone99) = (percentile(&self.alone, 0.5), percentile(&self.alone, 0.99));
        let (loop50, loop99) = (
            percentile(&self.looping, 0.5),
            percentile(&self.looping, 0.99),
        );
        println!("  {}:", self.setup.name());
        println!(
            "    alone              p50 {:7.3} ms   p99 {:7.3} ms",
            ms(alone50),
            ms(alone99)
        );
        println!(
            "    plugin looping     p50 {:7.3} ms   p99 {:7.3} ms   ({} looping requests in {:.1} s)",
            ms(loop50),
            ms(loop99),
            self.looped.load(Ordering::Relaxed),
            self.looping_time.as_secs_f64()
        );
        let ratio = loop99.as_secs_f64() / alone99.as_secs_f64().max(1e-9);
        println!(
            "    p99 ratio {ratio:.2} (target: at most 2.00) {}; {}",
            if ratio <= 2.0 { "ok" } else { "OVER" },
            looper_summary(self.tandem.admin)?
        );
        Ok(())
    }
}

/// Runs the benchmark and prints its figures.
pub fn run() -> anyhow::Result<()> {
    let root = repo_root();
    println!("containment: building tandem and the plugins (release)...");
    cargo_build(&root, &["--package", "tandem", "--bin", "tandem"])?;
    cargo_build(&root.join("plugins"), &[])?;
    let upstream = start_upstream()?;
    let mut setups = [Setup::QuarantineOff, Setup::Default]
        .into_iter()
        .map(|setup| {
            Ok(Phases {
                setup,
                tandem: start_tandem(&root, upstream, setup)?,
                alone: Vec::new(),
                looping: Vec::new(),
                looped: Arc::new(AtomicU64::new(0)),
                looping_time: Duration::ZERO,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for _ in 0..ROUNDS {
        for phases in &mut setups {
            phases.round()?;
        }
    }
    println!(
        "containment: /normal over {NORMAL_CLIENTS} keep-alive connections, {} requests per phase in {ROUNDS} alternating rounds,",
        setups[0].alone.len()
    );
    println!(
        "  while {LOOPING_CLIENTS} client keeps calling a plugin that loops until its {HOOK_TIMEOUT_MS} ms deadline (fail-open);"
    );
    println!(
        "  circuit breaker off (trip_after = 0, the default), so the quarantine lane is what is measured"
    );
    for phases in &mut setups {
        phases.print()?;
    }
    Ok(())
}
