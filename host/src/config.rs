//! `tandem.toml`: the main config, its defaults, and errors that name the
//! key and the line.
//!
//! Precedence, highest first: command-line flags, `TANDEM_*` environment
//! variables (both handled by the CLI), the file, the defaults here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A config that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed, a key is unknown or a value has the wrong type.
    #[error("{path}:{line}: {message}\n    {line}| {text}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// The parser's message, which names the key.
        message: String,
        /// The text of that line.
        text: String,
    },
    /// A value is well-formed but not acceptable.
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Why.
        message: String,
    },
    /// [`Invalid`](Self::Invalid), placed: the value's line was found in
    /// the file.
    #[error("{path}:{line}: `{key}`: {message}\n    {line}| {text}")]
    InvalidAt {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// The key.
        key: String,
        /// Why.
        message: String,
        /// The text of that line.
        text: String,
    },
}

impl ConfigError {
    /// Adds the line to an [`Invalid`](Self::Invalid) error about the file
    /// at `path`, whose text is `text`, if the key's value is written
    /// there. Other errors (and one blamed on a flag or on the
    /// environment) are returned as they are.
    pub fn placed_in(self, path: &Path, text: &str) -> Self {
        match self {
            Self::Invalid {
                path: blamed,
                key,
                message,
            } if blamed == path => match crate::config_location::value_line(text, &key) {
                Some(line) => Self::InvalidAt {
                    text: if may_be_secret(&key) {
                        "(not shown: the value may be a secret)".to_owned()
                    } else {
                        line_text(text, line)
                    },
                    path: blamed,
                    line,
                    key,
                    message,
                },
                None => Self::Invalid {
                    path: blamed,
                    key,
                    message,
                },
            },
            other => other,
        }
    }
}

/// True for keys whose values are often credentials (the records sink's
/// extra headers carry `Authorization`), whose line an error should not
/// echo to stderr and `/plugins`.
fn may_be_secret(key: &str) -> bool {
    key.starts_with("records.headers")
}

/// Line number `line` (1-based) of `text`, without its line break.
fn line_text(text: &str, line: usize) -> String {
    text.lines()
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .trim_end()
        .to_owned()
}

/// Parses TOML text into `T`, turning errors into [`ConfigError::Syntax`]
/// with the line of the offending key.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|error| {
        let offset = error
            .span()
            .map(|span| span.start)
            .unwrap_or(0)
            .min(text.len());
        let line = text[..offset].matches('\n').count() + 1;
        let mut message = error.message().trim().to_owned();
        // serde's type errors ("invalid type: string \"four\", expected
        // u32") point at the value but do not name its key; unknown keys
        // and missing ones are named already.
        let names_its_key = ["unknown field", "missing field", "duplicate key"]
            .iter()
            .any(|start| message.starts_with(start));
        if !names_its_key && let Some(key) = crate::config_location::key_at(text, offset) {
            message = format!("`{key}`: {message}");
        }
        ConfigError::Syntax {
            path: path.to_owned(),
            line,
            message,
            text: line_text(text, line),
        }
    })
}

/// The main config as written in `tandem.toml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address of the inbound listener, e.g. `0.0.0.0:8080`.
    pub listen: Option<SocketAddr>,
    /// The application, e.g. `http://127.0.0.1:3000`.
    pub upstream: Option<String>,
    /// Address of the admin listener.
    pub admin: Option<SocketAddr>,
    /// Milliseconds to wait for the upstream's response head before a 504.
    pub upstream_timeout_ms: Option<u64>,
    /// Milliseconds the upstream may send nothing in the middle of a
    /// response body before the response is cut.
    pub upstream_body_timeout_ms: Option<u64>,
    /// Milliseconds that in-flight requests get to finish on shutdown.
    pub shutdown_grace_ms: Option<u64>,
    /// Milliseconds between the shutdown signal and the drain, during which
    /// `/readyz` says 503 while new connections are still served.
    pub shutdown_delay_ms: Option<u64>,
    /// Proxy worker threads (one per core when omitted).
    pub workers: Option<u32>,
    /// Plugins.
    #[serde(default)]
    pub plugins: PluginsSection,
    /// The records pipeline (access logs, application logs).
    #[serde(default)]
    pub records: crate::records::config::RecordsSection,
    /// Limits that protect the proxy from hostile clients and plugins.
    #[serde(default)]
    pub limits: LimitsSection,
}

/// The `[plugins]` table.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PluginsSection {
    /// The plugin directory; relative paths are relative to the config file.
    pub dir: Option<PathBuf>,
    /// Where compiled plugins are cached; `""` turns the cache off.
    pub cache_dir: Option<PathBuf>,
    /// Whether to reload when files in the plugin directory or the config
    /// change (SIGHUP and `POST /reload` work either way).
    pub watch: Option<bool>,
}

/// The `[limits]` table (see docs/limits.md).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Client connections served at once; more wait in the accept queue.
    pub max_connections: Option<u32>,
    /// Largest request head (request line and headers), in bytes; 431 above.
    pub max_request_header_bytes: Option<u64>,
    /// Most request header lines; 431 above.
    pub max_request_headers: Option<u32>,
    /// Largest request body, in bytes; 413 above.
    pub max_request_body_bytes: Option<u64>,
    /// Milliseconds a client gets to send a request head.
    pub header_read_timeout_ms: Option<u64>,
    /// Milliseconds a connection may sit without a request before it is
    /// closed.
    pub idle_timeout_ms: Option<u64>,
    /// Milliseconds from a request head to the end of its body; 408 after.
    pub request_timeout_ms: Option<u64>,
    /// Wasm stack per plugin call, in KiB (engine-wide: wasmtime has one
    /// stack limit per engine).
    pub plugin_stack_kb: Option<u64>,
    /// Whether request paths are put in normal form (default true).
    pub normalize_paths: Option<bool>,
    /// Whether runs of `/` in a request path become one (default true).
    pub merge_slashes: Option<bool>,
    /// Body limits for paths under a prefix.
    #[serde(default)]
    pub route: Vec<RouteLimitSection>,
}

/// One `[[limits.route]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitSection {
    /// Path prefix, e.g. `/upload`; the longest matching prefix wins.
    pub prefix: String,
    /// Largest request body under this prefix, in bytes.
    pub max_request_body_bytes: u64,
}

/// Default cap on concurrent client connections.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// Default largest request head (Envoy uses 60 KiB).
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: u64 = 64 * 1024;
/// hyper's smallest read buffer, hence the smallest head limit.
pub const MIN_REQUEST_HEADER_BYTES: u64 = 8192;
/// Default most request header lines.
pub const DEFAULT_MAX_REQUEST_HEADERS: u32 = 100;
/// Default largest request body: 100 MiB.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 100 << 20;
/// Default time to send a request head.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection may sit without a request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time from a request head to the end of its body.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default wasm stack per plugin call.
pub const DEFAULT_PLUGIN_STACK_KB: u64 = 1024;

/// The limits Tandem runs with.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Client connections served at once.
    pub max_connections: u32,
    /// Largest request head, in bytes.
    pub max_request_header_bytes: usize,
    /// Most request header lines.
    pub max_request_headers: usize,
    /// Largest request body, in bytes, where no route says otherwise.
    pub max_request_body_bytes: u64,
    /// Body limits by path prefix, longest prefix first.
    pub routes: Vec<(String, u64)>,
    /// Time to send a request head.
    pub header_read_timeout: Duration,
    /// Time a connection may sit without a request.
    pub idle_timeout: Duration,
    /// Time from a request head to the end of its body.
    pub request_timeout: Duration,
    /// Wasm stack per plugin call, in bytes.
    pub plugin_stack_bytes: usize,
    /// Whether request paths are put in normal form (see `proxy::path`).
    pub normalize_paths: bool,
    /// Whether runs of `/` in a request path become one (see
    /// `proxy::path`).
    pub merge_slashes: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_request_header_bytes: DEFAULT_MAX_REQUEST_HEADER_BYTES as usize,
            max_request_headers: DEFAULT_MAX_REQUEST_HEADERS as usize,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            routes: Vec::new(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            plugin_stack_bytes: (DEFAULT_PLUGIN_STACK_KB << 10) as usize,
            normalize_paths: true,
            merge_slashes: true,
        }
    }
}

impl Limits {
    /// The body limit for a request path: the longest matching route
    /// prefix's, else the global one.
    pub fn body_limit_for(&self, path: &str) -> u64 {
        self.routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map_or(self.max_request_body_bytes, |(_, limit)| *limit)
    }

    fn resolve(file: LimitsSection, shown: &Path) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: shown.to_owned(),
            key: format!("limits.{key}"),
            message,
        };
        let defaults = Self::default();
        let in_range = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64| match value
        {
            None => Ok(default),
            Some(v) if (min..=max).contains(&v) => Ok(v),
            Some(_) => Err(invalid(key, format!("must be {min} to {max}"))),
        };
        let millis = |key: &str, value: Option<u64>, default: Duration| {
            millis_within(value, default, 1..=MAX_TIMEOUT_MS, |message| {
                invalid(key, message)
            })
        };
        let mut routes = Vec::with_capacity(file.route.len());
        for (index, route) in file.route.into_iter().enumerate() {
            if !route.prefix.starts_with('/') {
                return Err(invalid(
                    &format!("route[{index}].prefix"),
                    format!("{:?} must start with /", route.prefix),
                ));
            }
            routes.push((route.prefix, route.max_request_body_bytes));
        }
        // Longest prefix first, so the first match is the most specific.
        routes.sort_by_key(|route| std::cmp::Reverse(route.0.len()));
        Ok(Self {
            max_connections: in_range(
                "max_connections",
                file.max_connections.map(u64::from),
                u64::from(defaults.max_connections),
                1,
                1_000_000,
            )? as u32,
            max_request_header_bytes: in_range(
                "max_request_header_bytes",
                file.max_request_header_bytes,
                defaults.max_request_header_bytes as u64,
                MIN_REQUEST_HEADER_BYTES,
                16 << 20,
            )? as usize,
            max_request_headers: in_range(
                "max_request_headers",
                file.max_request_headers.map(u64::from),
                defaults.max_request_headers as u64,
                1,
                10_000,
            )? as usize,
            max_request_body_bytes: file
                .max_request_body_bytes
                .unwrap_or(defaults.max_request_body_bytes),
            routes,
            header_read_timeout: millis(
                "header_read_timeout_ms",
                file.header_read_timeout_ms,
                defaults.header_read_timeout,
            )?,
            idle_timeout: millis(
                "idle_timeout_ms",
                file.idle_timeout_ms,
                defaults.idle_timeout,
            )?,
            request_timeout: millis(
                "request_timeout_ms",
                file.request_timeout_ms,
                defaults.request_timeout,
            )?,
            plugin_stack_bytes: (in_range(
                "plugin_stack_kb",
                file.plugin_stack_kb,
                DEFAULT_PLUGIN_STACK_KB,
                64,
                16 * 1024,
            )? << 10) as usize,
            normalize_paths: file.normalize_paths.unwrap_or(defaults.normalize_paths),
            merge_slashes: file.merge_slashes.unwrap_or(defaults.merge_slashes),
        })
    }
}

/// The settings Tandem runs with, after defaults and overrides.
#[derive(Debug, Clone)]
pub struct Config {
    /// Inbound listener.
    pub listen: SocketAddr,
    /// Scheme and authority of the application.
    pub upstream: http::uri::Authority,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Time to wait for the upstream's response head.
    pub upstream_timeout: Duration,
    /// Silence allowed from the upstream in the middle of a response body.
    pub upstream_body_timeout: Duration,
    /// Time in-flight requests get on shutdown.
    pub shutdown_grace: Duration,
    /// Time between the shutdown signal and the drain: `/readyz` already
    /// answers 503, and new connections are still accepted and served, so
    /// that a load balancer (a Kubernetes Service) that has not yet seen
    /// the pod go unready sends no request to a closed port.
    pub shutdown_delay: Duration,
    /// Proxy worker threads, each with its own event loop.
    pub workers: usize,
    /// Where plugins live.
    pub plugin_dir: PathBuf,
    /// Where compiled plugins are cached, if anywhere.
    pub cache_dir: Option<PathBuf>,
    /// Whether file changes trigger a reload.
    pub watch: bool,
    /// Where records go and how application logs are received.
    pub records: crate::records::config::RecordsConfig,
    /// Limits that protect the proxy.
    pub limits: Limits,
    /// Where these settings came from, so a reload can read them again.
    pub origin: ConfigOrigin,
}

/// The file and the overrides a [`Config`] was made from.
#[derive(Debug, Clone, Default)]
pub struct ConfigOrigin {
    /// The config file, if one was given.
    pub path: Option<PathBuf>,
    /// Command-line and environment values, which keep winning on reload.
    pub overrides: Overrides,
}

/// Values given on the command line or in the environment, which win over
/// the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen` / `TANDEM_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--upstream` / `TANDEM_UPSTREAM`.
    pub upstream: Option<String>,
    /// `--admin` / `TANDEM_ADMIN`.
    pub admin: Option<SocketAddr>,
    /// `--plugins-dir` / `TANDEM_PLUGINS_DIR`.
    pub plugin_dir: Option<PathBuf>,
    /// `--workers` / `TANDEM_WORKERS`.
    pub workers: Option<u32>,
}

/// Default inbound listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default admin listener: loopback only.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
/// Default upstream timeout.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Default silence allowed in the middle of a response body: long enough
/// for a stream's keep-alive messages, as Envoy's stream idle timeout.
pub const DEFAULT_UPSTREAM_BODY_TIMEOUT: Duration = Duration::from_secs(300);
/// Default shutdown grace period.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Most proxy worker threads.
pub const MAX_WORKERS: u32 = 256;
/// Longest shutdown delay, in milliseconds.
pub const MAX_SHUTDOWN_DELAY_MS: u64 = 600_000;
/// Longest timeout or grace period a setting may name, in milliseconds
/// (a day): a larger one is a typo, not a policy.
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// A setting in milliseconds: `default` when absent, else a value within
/// `allowed` (whose bounds the error names).
pub(crate) fn millis_within(
    value: Option<u64>,
    default: Duration,
    allowed: std::ops::RangeInclusive<u64>,
    invalid: impl FnOnce(String) -> ConfigError,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(ms) if allowed.contains(&ms) => Ok(Duration::from_millis(ms)),
        Some(_) => Err(invalid(format!(
            "must be {} to {}",
            allowed.start(),
            allowed.end()
        ))),
    }
}

/// One proxy worker per core the process may use.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The default artifact cache: `$XDG_CACHE_HOME/tandem`, else
/// `$HOME/.cache/tandem`, else none.
fn default_cache_dir() -> Option<PathBuf> {
    let from_env = |key: &str| {
        std::env::var_os(key)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    from_env("XDG_CACHE_HOME")
        .or_else(|| from_env("HOME").map(|home| home.join(".cache")))
        .map(|base| base.join("tandem"))
}

/// Parses an upstream given as `http://host:port` or `host:port`.
fn parse_upstream(path: &Path, value: &str) -> Result<http::uri::Authority, ConfigError> {
    let invalid = |message: &str| ConfigError::Invalid {
        path: path.to_owned(),
        key: "upstream".into(),
        message: format!("{value:?}: {message}"),
    };
    let uri: http::Uri = value.parse().map_err(|_| invalid("not a URI"))?;
    match uri.scheme_str() {
        None | Some("http") => {}
        Some(_) => return Err(invalid("only http:// upstreams are supported")),
    }
    if uri
        .path_and_query()
        .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
    {
        return Err(invalid("give scheme, host and port only, without a path"));
    }
    let authority = uri.authority().cloned().ok_or_else(|| invalid("no host"))?;
    if authority.port_u16().is_none() {
        return Err(invalid("give the port, e.g. http://127.0.0.1:3000"));
    }
    Ok(authority)
}

impl Config {
    /// Reads `path` (if given) and applies the overrides.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_text(path, &text, overrides)?
            }
            None => Self::resolve(
                FileConfig::default(),
                Path::new("."),
                Path::new("(no config file)"),
                overrides,
            )?,
        };
        config.origin = ConfigOrigin {
            path: path.map(Path::to_owned),
            overrides: overrides.clone(),
        };
        Ok(config)
    }

    /// Parses the text of the config file at `path` and applies the
    /// overrides; relative paths in it are relative to `path`'s directory.
    pub fn from_text(path: &Path, text: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        let file: FileConfig = parse_toml(path, text)?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::resolve(file, &base, path, overrides).map_err(|error| error.placed_in(path, text))
    }

    fn resolve(
        file: FileConfig,
        base: &Path,
        shown: &Path,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let upstream = overrides
            .upstream
            .clone()
            .or(file.upstream)
            .ok_or_else(|| ConfigError::Invalid {
                path: shown.to_owned(),
                key: "upstream".into(),
                message: "required: the application's address, e.g. http://127.0.0.1:3000".into(),
            })?;
        let plugin_dir = match overrides.plugin_dir.clone() {
            Some(dir) => dir,
            None => base.join(file.plugins.dir.unwrap_or_else(|| PathBuf::from("plugins"))),
        };
        let cache_dir = match file.plugins.cache_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(base.join(dir)),
            None => default_cache_dir(),
        };
        let records = crate::records::config::RecordsConfig::resolve(file.records, base, shown)?;
        // A value from the command line or the environment is blamed on
        // them, not on a file that never set it.
        let source = |flag: &'static str, from_override: bool| -> &Path {
            if from_override {
                Path::new(flag)
            } else {
                shown
            }
        };
        let workers = match overrides.workers.or(file.workers) {
            None => default_workers(),
            Some(count @ 1..=MAX_WORKERS) => count as usize,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    path: source("--workers (or TANDEM_WORKERS)", overrides.workers.is_some())
                        .to_owned(),
                    key: "workers".into(),
                    message: format!("must be 1 to {MAX_WORKERS}"),
                });
            }
        };
        let top_level = |key: &'static str| {
            move |message| ConfigError::Invalid {
                path: shown.to_owned(),
                key: key.into(),
                message,
            }
        };
        let shutdown_delay = millis_within(
            file.shutdown_delay_ms,
            Duration::ZERO,
            0..=MAX_SHUTDOWN_DELAY_MS,
            top_level("shutdown_delay_ms"),
        )?;
        // A zero upstream timeout would answer every request with a 504.
        let upstream_timeout = millis_within(
            file.upstream_timeout_ms,
            DEFAULT_UPSTREAM_TIMEOUT,
            1..=MAX_TIMEOUT_MS,
            top_level("upstream_timeout_ms"),
        )?;
        let upstream_body_timeout = millis_within(
            file.upstream_body_timeout_ms,
            DEFAULT_UPSTREAM_BODY_TIMEOUT,
            1..=MAX_TIMEOUT_MS,
            top_level("upstream_body_timeout_ms"),
        )?;
        // Zero is allowed: on a signal, in-flight requests are cut at once.
        let shutdown_grace = millis_within(
            file.shutdown_grace_ms,
            DEFAULT_SHUTDOWN_GRACE,
            0..=MAX_TIMEOUT_MS,
            top_level("shutdown_grace_ms"),
        )?;
        Ok(Self {
            listen: overrides
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            upstream: parse_upstream(
                source(
                    "--upstream (or TANDEM_UPSTREAM)",
                    overrides.upstream.is_some(),
                ),
                &upstream,
            )?,
            admin: overrides
                .admin
                .or(file.admin)
                .unwrap_or_else(|| DEFAULT_ADMIN.parse().expect("valid default")),
            upstream_timeout,
            upstream_body_timeout,
            shutdown_grace,
            shutdown_delay,
            workers,
            plugin_dir,
            cache_dir,
            watch: file.plugins.watch.unwrap_or(true),
            origin: ConfigOrigin::default(),
            records,
            limits: Limits::resolve(file.limits, shown)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        Config::from_text(
            Path::new("/etc/tandem/tandem.toml"),
            text,
            &Overrides::default(),
        )
    }

    #[test]
    fn workers_default_to_the_cores_and_zero_is_refused() {
        let config = load_text("upstream = \"http://127.0.0.1:1\"\n").unwrap();
        assert_eq!(config.workers, default_workers());
        let config = load_text("upstream = \"http://127.0.0.1:1\"\nworkers = 3\n").unwrap();
        assert_eq!(config.workers, 3);
        let error = load_text("upstream = \"http://127.0.0.1:1\"\nworkers = 0\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("workers"), "{error}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let error = load_text("upstream = \"http://127.0.0.1:1\"\n\nlisen = \"0.0.0.0:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("tandem.toml:3:"), "{error}");
        assert!(error.contains("lisen"), "{error}");
    }

    #[test]
    fn wrong_type_names_the_line() {
        let error =
            load_text("upstream = \"http://127.0.0.1:1\"\nupstream_timeout_ms = \"soon\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            error.contains(":2:") && error.contains("upstream_timeout_ms"),
            "{error}"
        );
    }

    #[test]
    fn defaults_and_relative_plugin_dir() {
        let config = load_text("upstream = \"127.0.0.1:3000\"\n[plugins]\ndir = \"p\"\n").unwrap();
        assert_eq!(config.plugin_dir, Path::new("/etc/tandem/p"));
        assert_eq!(config.admin.to_string(), DEFAULT_ADMIN);
        assert_eq!(config.upstream.as_str(), "127.0.0.1:3000");
    }

    #[test]
    fn cache_dir_is_relative_to_the_file_and_empty_turns_it_off() {
        let config =
            load_text("upstream = \"127.0.0.1:3000\"\n[plugins]\ncache_dir = \"c\"\n").unwrap();
        assert_eq!(
            config.cache_dir.as_deref(),
            Some(Path::new("/etc/tandem/c"))
        );
        assert!(config.watch);
        let config = load_text(
            "upstream = \"127.0.0.1:3000\"\n[plugins]\ncache_dir = \"\"\nwatch = false\n",
        )
        .unwrap();
        assert_eq!(config.cache_dir, None);
        assert!(!config.watch);
    }

    #[test]
    fn limits_have_defaults_ranges_and_route_prefixes() {
        let config = load_text("upstream = \"127.0.0.1:3000\"\n").unwrap();
        assert_eq!(config.limits.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(
            config.limits.body_limit_for("/x"),
            DEFAULT_MAX_REQUEST_BODY_BYTES
        );
        let config = load_text(
            "upstream = \"127.0.0.1:3000\"\n[limits]\nmax_request_body_bytes = 10\n\
             [[limits.route]]\nprefix = \"/up\"\nmax_request_body_bytes = 100\n\
             [[limits.route]]\nprefix = \"/upload/big\"\nmax_request_body_bytes = 1000\n",
        )
        .unwrap();
        assert_eq!(config.limits.body_limit_for("/other"), 10);
        assert_eq!(config.limits.body_limit_for("/upload"), 100);
        assert_eq!(config.limits.body_limit_for("/upload/big/x"), 1000);
        let error =
            load_text("upstream = \"127.0.0.1:3000\"\n[limits]\nmax_request_header_bytes = 100\n")
                .unwrap_err()
                .to_string();
        assert!(error.contains("limits.max_request_header_bytes"), "{error}");
        let error = load_text("upstream = \"127.0.0.1:3000\"\n[limits]\nmax_conections = 1\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(":3:") && error.contains("max_conections"),
            "{error}"
        );
    }

    #[test]
    fn a_value_out_of_range_is_named_with_its_line() {
        let error = load_text(
            "upstream = \"127.0.0.1:3000\"\n\n[limits]\n# headers\nmax_request_header_bytes = 100\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.starts_with(
                "/etc/tandem/tandem.toml:5: `limits.max_request_header_bytes`: must be"
            ),
            "{error}"
        );
        assert!(
            error.ends_with("5| max_request_header_bytes = 100"),
            "{error}"
        );
        let error = load_text(
            "upstream = \"127.0.0.1:3000\"\n[[limits.route]]\nprefix = \"/a\"\n\
             max_request_body_bytes = 1\n[[limits.route]]\nprefix = \"b\"\n\
             max_request_body_bytes = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("tandem.toml:6: `limits.route[1].prefix`"),
            "{error}"
        );
        let error = load_text("upstream = \"127.0.0.1:3000\"\nshutdown_delay_ms = 600001\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("tandem.toml:2: `shutdown_delay_ms`: must be 0 to 600000"),
            "{error}"
        );
        // Zero would time out every request; a day and more is a typo.
        let error = load_text("upstream = \"127.0.0.1:3000\"\nupstream_timeout_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("tandem.toml:2: `upstream_timeout_ms`: must be 1 to 86400000"),
            "{error}"
        );
        let error =
            load_text("upstream = \"127.0.0.1:3000\"\n\nshutdown_grace_ms = 9223372036854775807\n")
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("tandem.toml:3: `shutdown_grace_ms`: must be 0 to 86400000"),
            "{error}"
        );
        let config = load_text("upstream = \"127.0.0.1:3000\"\nshutdown_grace_ms = 0\n").unwrap();
        assert_eq!(config.shutdown_grace, Duration::ZERO);
        let error = load_text("upstream = \"http://app:80/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("tandem.toml:1: `upstream`"), "{error}");
    }

    #[test]
    fn a_bad_sink_header_is_placed_without_echoing_its_value() {
        let error = load_text(
            "upstream = \"127.0.0.1:3000\"\n[records]\nsink = \"http\"\n\
             url = \"http://127.0.0.1:9/x\"\n[records.headers]\n\
             \"bad name\" = \"Bearer s3cret\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("tandem.toml:6: `records.headers"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn a_bad_value_from_the_command_line_is_not_placed_in_the_file() {
        let overrides = Overrides {
            workers: Some(0),
            ..Overrides::default()
        };
        let error = Config::from_text(
            Path::new("/etc/tandem/tandem.toml"),
            "upstream = \"127.0.0.1:3000\"\nworkers = 2\n",
            &overrides,
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("--workers"), "{error}");
    }

    #[test]
    fn upstream_must_have_a_port_and_no_path() {
        assert!(load_text("upstream = \"http://app\"\n").is_err());
        assert!(load_text("upstream = \"http://app:80/x\"\n").is_err());
        assert!(load_text("upstream = \"https://app:443\"\n").is_err());
    }
}
