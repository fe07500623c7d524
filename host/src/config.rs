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
        ConfigError::Syntax {
            path: path.to_owned(),
            line,
            message: error.message().trim().to_owned(),
            text: text
                .lines()
                .nth(line - 1)
                .unwrap_or("")
                .trim_end()
                .to_owned(),
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
    /// Milliseconds that in-flight requests get to finish on shutdown.
    pub shutdown_grace_ms: Option<u64>,
    /// Plugins.
    #[serde(default)]
    pub plugins: PluginsSection,
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
    /// Time in-flight requests get on shutdown.
    pub shutdown_grace: Duration,
    /// Where plugins live.
    pub plugin_dir: PathBuf,
    /// Where compiled plugins are cached, if anywhere.
    pub cache_dir: Option<PathBuf>,
    /// Whether file changes trigger a reload.
    pub watch: bool,
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
}

/// Default inbound listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default admin listener: loopback only.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
/// Default upstream timeout.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Default shutdown grace period.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

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
        let (file, base, shown) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let file: FileConfig = parse_toml(path, &text)?;
                let base = path.parent().map(Path::to_owned).unwrap_or_default();
                (file, base, path.to_owned())
            }
            None => (
                FileConfig::default(),
                PathBuf::from("."),
                PathBuf::from("(no config file)"),
            ),
        };
        let mut config = Self::resolve(file, &base, &shown, overrides)?;
        config.origin = ConfigOrigin {
            path: path.map(Path::to_owned),
            overrides: overrides.clone(),
        };
        Ok(config)
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
        Ok(Self {
            listen: overrides
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            upstream: parse_upstream(shown, &upstream)?,
            admin: overrides
                .admin
                .or(file.admin)
                .unwrap_or_else(|| DEFAULT_ADMIN.parse().expect("valid default")),
            upstream_timeout: file
                .upstream_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT),
            shutdown_grace: file
                .shutdown_grace_ms
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            plugin_dir,
            cache_dir,
            watch: file.plugins.watch.unwrap_or(true),
            origin: ConfigOrigin::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let file = parse_toml(Path::new("tandem.toml"), text)?;
        Config::resolve(
            file,
            Path::new("/etc/tandem"),
            Path::new("tandem.toml"),
            &Overrides::default(),
        )
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
    fn upstream_must_have_a_port_and_no_path() {
        assert!(load_text("upstream = \"http://app\"\n").is_err());
        assert!(load_text("upstream = \"http://app:80/x\"\n").is_err());
        assert!(load_text("upstream = \"https://app:443\"\n").is_err());
    }
}
