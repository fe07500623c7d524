//! Runs the real `tandem` binary against a plugin directory written for the
//! test, and reads its addresses from the line it prints when ready.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use super::plugins;

/// The `tandem` binary built for this test run.
pub const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

/// How long start-up (which compiles every plugin) may take.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Describes a Tandem to start.
pub struct TandemBuilder {
    upstream: String,
    plugins: Vec<(String, PathBuf, Option<String>)>,
    extra_config: String,
    plugins_config: String,
}

/// A running Tandem; killed when dropped.
pub struct Tandem {
    /// The proxy listener.
    pub proxy: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// The line Tandem printed when ready (`tandem listening proxy=...`).
    pub listening: String,
    child: Child,
    logs: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<String>>>,
    /// The tasks reading stderr and stdout, which end when the process
    /// has exited and its last lines have been read.
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// Holds tandem.toml and the plugins until the test ends.
    _dir: tempfile::TempDir,
}

/// Writes tandem.toml and the plugin directory into a new temp dir.
pub fn write_config_dir(
    upstream: &str,
    plugins: &[(String, PathBuf, Option<String>)],
    extra_config: &str,
) -> tempfile::TempDir {
    write_config_dir_with(upstream, plugins, extra_config, "")
}

/// Like [`write_config_dir`], with extra lines in the `[plugins]` table. The
/// artifact cache goes in the temp dir too, so tests never share one.
pub fn write_config_dir_with(
    upstream: &str,
    plugins: &[(String, PathBuf, Option<String>)],
    extra_config: &str,
    plugins_config: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir(&plugin_dir).unwrap();
    for (name, wasm, settings) in plugins {
        std::fs::copy(wasm, plugin_dir.join(format!("{name}.wasm"))).unwrap();
        if let Some(settings) = settings {
            std::fs::write(plugin_dir.join(format!("{name}.toml")), settings).unwrap();
        }
    }
    let config = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{extra_config}\n[plugins]\ndir = \"plugins\"\ncache_dir = \"cache\"\n{plugins_config}\n"
    );
    std::fs::write(dir.path().join("tandem.toml"), config).unwrap();
    dir
}

impl TandemBuilder {
    /// A Tandem in front of `upstream` (`http://host:port`).
    pub fn new(upstream: impl Into<String>) -> Self {
        Self {
            upstream: upstream.into(),
            plugins: Vec::new(),
            extra_config: String::new(),
            plugins_config: String::new(),
        }
    }

    /// Adds the plugin `crate_name` as `name`, with `settings` as NAME.toml.
    pub fn plugin(mut self, name: &str, crate_name: &str, settings: &str) -> Self {
        self.plugins.push((
            name.into(),
            plugins::wasm(crate_name),
            Some(settings.into()),
        ));
        self
    }

    /// Adds the component at `wasm` as `name`, with `settings` as NAME.toml.
    pub fn plugin_file(mut self, name: &str, wasm: &Path, settings: &str) -> Self {
        self.plugins
            .push((name.into(), wasm.to_owned(), Some(settings.into())));
        self
    }

    /// Adds top-level lines to tandem.toml.
    pub fn config(mut self, lines: &str) -> Self {
        self.extra_config.push_str(lines);
        self.extra_config.push('\n');
        self
    }

    /// Adds lines to the `[plugins]` table of tandem.toml.
    pub fn plugins_config(mut self, lines: &str) -> Self {
        self.plugins_config.push_str(lines);
        self.plugins_config.push('\n');
        self
    }

    /// Starts the binary and waits until it is listening.
    pub async fn spawn(self) -> Tandem {
        let dir = write_config_dir_with(
            &self.upstream,
            &self.plugins,
            &self.extra_config,
            &self.plugins_config,
        );
        Tandem::start_in(dir).await
    }
}

impl Tandem {
    /// Runs the binary on the tandem.toml in `dir` and waits until it is
    /// listening.
    async fn start_in(dir: tempfile::TempDir) -> Tandem {
        let mut child = Command::new(TANDEM)
            .arg("run")
            .arg("--config")
            .arg(dir.path().join("tandem.toml"))
            .env("TANDEM_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tandem");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        let stderr_reader = tokio::spawn(async move {
            let mut buffer = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(START_TIMEOUT, stdout.next_line()).await;
        let line = match line {
            Ok(Ok(Some(line))) => line,
            other => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "tandem did not start ({other:?}); logs:\n{}",
                    logs.lock().unwrap()
                );
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe, and
        // keep what follows the listening line (records, for the stdout sink).
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let stdout_reader = tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let field = |key: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        Tandem {
            proxy: field("proxy="),
            admin: field("admin="),
            listening: line.clone(),
            child,
            logs,
            stdout: records,
            readers: vec![stderr_reader, stdout_reader],
            _dir: dir,
        }
    }

    /// Stops this Tandem (SIGTERM, then waits) and starts a new one on the
    /// same directory: same config, plugins and artifact cache.
    pub async fn restart(mut self) -> Tandem {
        self.terminate();
        self.wait(Duration::from_secs(30)).await;
        let dir = self._dir;
        Tandem::start_in(dir).await
    }

    /// A URL on the proxy listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The admin `/plugins` document.
    pub async fn plugins(&self) -> serde_json::Value {
        let reply = super::client::get(&self.admin_url("/plugins")).await;
        serde_json::from_slice(&reply.body).unwrap()
    }

    /// The `/plugins` entry of the plugin `name`, if listed.
    pub async fn plugin(&self, name: &str) -> Option<serde_json::Value> {
        self.plugins().await["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
    }

    /// Everything the process has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The directory holding tandem.toml, `plugins/` and `cache/`.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The plugin directory.
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir().join("plugins")
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The lines printed on stdout after the listening line so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, and for its last output to be read,
    /// so that [`logs`](Self::logs) and [`stdout_lines`](Self::stdout_lines)
    /// then hold everything it wrote.
    pub async fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("tandem exits in time")
            .unwrap();
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        status
    }
}

/// Runs `tandem check --config DIR/tandem.toml` and returns the exit code and
/// everything it printed.
pub fn check(config: &Path) -> (i32, String) {
    check_with_env(config, &[])
}

/// Like [`check`], with `variables` set in its environment.
pub fn check_with_env(config: &Path, variables: &[(&str, &str)]) -> (i32, String) {
    let output = std::process::Command::new(TANDEM)
        .arg("check")
        .arg("--config")
        .arg(config)
        .envs(variables.iter().copied())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}
