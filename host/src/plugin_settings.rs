//! `NAME.toml`, the optional settings file beside each `NAME.wasm`.

pub mod files;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, parse_toml};

/// What a failure of this plugin (trap, error, timeout, invalid result)
/// does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// The request fails with a 5xx (the safe default: an auth plugin that
    /// breaks must not let everyone in).
    #[default]
    Closed,
    /// The plugin is skipped for this request.
    Open,
}

/// How instances are used across requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InstanceMode {
    /// Instances are kept in a pool and reused (guest state persists between
    /// calls); a failed instance is discarded. See docs/performance.md.
    #[default]
    Reuse,
    /// A new instance for every hook call: strongest isolation, more cost.
    Fresh,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    order: Option<i64>,
    failure: Option<FailurePolicy>,
    instances: Option<InstanceMode>,
    hook_timeout_ms: Option<u64>,
    memory_limit_mb: Option<u64>,
    trip_after: Option<u32>,
    trip_cooldown_ms: Option<u64>,
    log_rate_per_second: Option<u32>,
    metric_series_limit: Option<u32>,
    clock_resolution_us: Option<u64>,
    max_instances: Option<u32>,
    quarantine_ms: Option<u64>,
    #[serde(default)]
    config: Option<toml::Table>,
    #[serde(default)]
    files: BTreeMap<String, PathBuf>,
}

/// Default CPU deadline of one hook call.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_millis(100);
/// Default memory limit of one instance.
pub const DEFAULT_MEMORY_LIMIT_MB: u64 = 64;
/// Default cool-down of a tripped plugin.
pub const DEFAULT_TRIP_COOLDOWN: Duration = Duration::from_secs(10);
/// Default log records (from the `log` import, stdout and stderr) a plugin
/// may write per second; more are dropped and counted.
pub const DEFAULT_LOG_RATE_PER_SECOND: u32 = 1000;
/// Default number of label combinations (series) one plugin metric may have.
pub const DEFAULT_METRIC_SERIES_LIMIT: u32 = 1000;
/// Default cap on a plugin's instances in use at once: a plugin whose calls
/// hang cannot take the whole shared instance pool (1000) from the others.
pub const DEFAULT_MAX_INSTANCES: u32 = 100;
/// Default time a plugin stays quarantined after a call that ran past its
/// deadline (longer with every further one).
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(30);
/// Longest `quarantine_ms`: a day.
pub const MAX_QUARANTINE_MS: u64 = 86_400_000;
/// Default resolution of the clocks a plugin reads: 1 ms, so that a plugin
/// cannot time the host (or other requests) more finely than that.
pub const DEFAULT_CLOCK_RESOLUTION: Duration = Duration::from_millis(1);

/// A plugin's settings, with defaults applied.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Position in the chain: lower runs first on the request path.
    pub order: i64,
    /// What a failure does to the request.
    pub failure: FailurePolicy,
    /// Instance reuse.
    pub instances: InstanceMode,
    /// CPU deadline per hook call.
    pub hook_timeout: Duration,
    /// Linear memory limit per instance, in bytes.
    pub memory_limit_bytes: usize,
    /// Consecutive failures that trip the plugin out of the chain for
    /// [`trip_cooldown`](Self::trip_cooldown); 0 never trips it.
    pub trip_after: u32,
    /// How long a tripped plugin stays tripped.
    pub trip_cooldown: Duration,
    /// Log records per second (burst: one second's worth).
    pub log_rate_per_second: u32,
    /// Series (label combinations) per metric the plugin creates.
    pub metric_series_limit: u32,
    /// Resolution of the wall and monotonic clocks the plugin reads.
    pub clock_resolution: Duration,
    /// Instances in use at once; more calls wait up to the hook deadline.
    pub max_instances: u32,
    /// How long a call that ran past its deadline quarantines the plugin
    /// (its calls run on the low-priority lane); zero never does.
    pub quarantine: Duration,
    /// The `[config]` table as JSON, given to `init`; with the values of
    /// [`files`](Self::files) once [`with_file_values`](Self::with_file_values)
    /// has put them in.
    pub config_json: String,
    /// The `[files]` table: `[config]` keys whose values are read from files.
    pub files: Vec<files::ValueFile>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            order: 0,
            failure: FailurePolicy::default(),
            instances: InstanceMode::default(),
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            memory_limit_bytes: (DEFAULT_MEMORY_LIMIT_MB << 20) as usize,
            // Off by default: with `failure = "open"`, a client able to make
            // a plugin fail N times in a row could otherwise switch it off
            // for everyone. See docs/limits.md.
            trip_after: 0,
            trip_cooldown: DEFAULT_TRIP_COOLDOWN,
            log_rate_per_second: DEFAULT_LOG_RATE_PER_SECOND,
            metric_series_limit: DEFAULT_METRIC_SERIES_LIMIT,
            clock_resolution: DEFAULT_CLOCK_RESOLUTION,
            max_instances: DEFAULT_MAX_INSTANCES,
            quarantine: DEFAULT_QUARANTINE,
            config_json: "{}".into(),
            files: Vec::new(),
        }
    }
}

/// Plugins that could not load because their `NAME.toml` (or a file its
/// `[files]` table names) is invalid: a config error, which exits with the
/// config-error code like one in `tandem.toml`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPluginSettings(pub String);

/// True if the settings of the plugin whose component is `wasm` cannot be
/// loaded (read again to tell a config error from a broken component).
pub fn settings_invalid(wasm: &Path) -> bool {
    PluginSettings::load(&wasm.with_extension("toml")).is_err()
}

impl PluginSettings {
    /// Parses the text of a `NAME.toml`. The values of `[files]` are not
    /// read: see [`with_file_values`](Self::with_file_values) and
    /// [`load`](Self::load).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: SettingsFile = parse_toml(path, text)?;
        Self::resolve(path, file).map_err(|error| error.placed_in(path, text))
    }

    fn resolve(path: &Path, file: SettingsFile) -> Result<Self, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.into(),
            message,
        };
        let defaults = Self::default();
        let memory_limit_mb = file.memory_limit_mb.unwrap_or(DEFAULT_MEMORY_LIMIT_MB);
        let max_mb = (crate::runtime::engine::MAX_POOLED_MEMORY_BYTES >> 20) as u64;
        if !(1..=max_mb).contains(&memory_limit_mb) {
            return Err(invalid("memory_limit_mb", format!("must be 1 to {max_mb}")));
        }
        let hook_timeout = match file.hook_timeout_ms {
            Some(0) => return Err(invalid("hook_timeout_ms", "must be at least 1".into())),
            Some(ms) => Duration::from_millis(ms),
            None => defaults.hook_timeout,
        };
        let trip_cooldown = match file.trip_cooldown_ms {
            Some(0) => return Err(invalid("trip_cooldown_ms", "must be at least 1".into())),
            Some(ms) => Duration::from_millis(ms),
            None => defaults.trip_cooldown,
        };
        let log_rate_per_second = file
            .log_rate_per_second
            .unwrap_or(defaults.log_rate_per_second);
        if !(1..=1_000_000).contains(&log_rate_per_second) {
            return Err(invalid(
                "log_rate_per_second",
                "must be 1 to 1000000".into(),
            ));
        }
        let metric_series_limit = file
            .metric_series_limit
            .unwrap_or(defaults.metric_series_limit);
        if !(1..=100_000).contains(&metric_series_limit) {
            return Err(invalid("metric_series_limit", "must be 1 to 100000".into()));
        }
        let clock_resolution = match file.clock_resolution_us {
            Some(us @ 1..=1_000_000) => Duration::from_micros(us),
            Some(_) => {
                return Err(invalid(
                    "clock_resolution_us",
                    "must be 1 to 1000000".into(),
                ));
            }
            None => defaults.clock_resolution,
        };
        let max_instances = file.max_instances.unwrap_or(defaults.max_instances);
        let pool = crate::runtime::engine::PoolSize::default().instances;
        if !(1..=pool).contains(&max_instances) {
            return Err(invalid("max_instances", format!("must be 1 to {pool}")));
        }
        let quarantine = match file.quarantine_ms {
            Some(ms @ 0..=MAX_QUARANTINE_MS) => Duration::from_millis(ms),
            Some(_) => {
                return Err(invalid(
                    "quarantine_ms",
                    format!("must be 0 (off) to {MAX_QUARANTINE_MS}"),
                ));
            }
            None => defaults.quarantine,
        };
        let config_json = match file.config {
            Some(table) => serde_json::to_string(&table)
                .map_err(|e| invalid("config", format!("cannot be encoded as JSON: {e}")))?,
            None => defaults.config_json,
        };
        let files = files::resolve(path, file.files);
        files::check_keys(path, &files)?;
        Ok(Self {
            order: file.order.unwrap_or(defaults.order),
            failure: file.failure.unwrap_or(defaults.failure),
            instances: file.instances.unwrap_or(defaults.instances),
            hook_timeout,
            memory_limit_bytes: (memory_limit_mb << 20) as usize,
            trip_after: file.trip_after.unwrap_or(defaults.trip_after),
            trip_cooldown,
            log_rate_per_second,
            metric_series_limit,
            clock_resolution,
            max_instances,
            quarantine,
            config_json,
            files,
        })
    }

    /// Puts the text read for each `[files]` entry into `[config]`. A value
    /// also set inline is an error that names the key. `path` is this
    /// `NAME.toml`, for errors.
    pub fn with_file_values(
        mut self,
        path: &Path,
        values: &[files::FileValue],
    ) -> Result<Self, ConfigError> {
        if values.is_empty() {
            return Ok(self);
        }
        let invalid = |file: &files::ValueFile, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: files::table_key(&file.key),
            message,
        };
        let mut config: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&self.config_json).expect("config_json is a JSON object");
        for value in values {
            files::insert(&mut config, &value.file.key, value.text.clone())
                .map_err(|message| invalid(&value.file, message))?;
        }
        self.config_json = serde_json::Value::Object(config).to_string();
        Ok(self)
    }

    /// Reads `path` if it exists, and the files of its `[files]` table;
    /// defaults otherwise.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text)
                .and_then(|settings| {
                    let values = settings
                        .files
                        .iter()
                        .map(|file| match files::read(&file.path) {
                            Ok(text) => Ok(files::FileValue {
                                file: file.clone(),
                                text,
                            }),
                            Err(reason) => Err(files::error(path, file, &reason)),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    settings.with_file_values(path, &values)
                })
                .map_err(|error| error.placed_in(path, &text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_table_becomes_json() {
        let settings = PluginSettings::parse(
            Path::new("x.toml"),
            "order = 5\nfailure = \"open\"\n[config]\nprefixes = [\"/a\"]\nstatus = 403\n",
        )
        .unwrap();
        assert_eq!(settings.order, 5);
        assert_eq!(settings.failure, FailurePolicy::Open);
        let json: serde_json::Value = serde_json::from_str(&settings.config_json).unwrap();
        assert_eq!(json["prefixes"][0], "/a");
        assert_eq!(json["status"], 403);
    }

    #[test]
    fn containment_keys_have_safe_defaults_and_ranges() {
        let defaults = PluginSettings::parse(Path::new("x.toml"), "").unwrap();
        assert_eq!(
            defaults.trip_after, 0,
            "the breaker is off unless asked for"
        );
        assert_eq!(defaults.log_rate_per_second, DEFAULT_LOG_RATE_PER_SECOND);
        assert_eq!(defaults.clock_resolution, Duration::from_millis(1));
        assert_eq!(defaults.quarantine, DEFAULT_QUARANTINE);
        let off = PluginSettings::parse(Path::new("x.toml"), "quarantine_ms = 0\n").unwrap();
        assert_eq!(off.quarantine, Duration::ZERO);
        let set = PluginSettings::parse(
            Path::new("x.toml"),
            "trip_after = 3\ntrip_cooldown_ms = 250\nlog_rate_per_second = 5\nmetric_series_limit = 7\nclock_resolution_us = 1\n",
        )
        .unwrap();
        assert_eq!(set.trip_after, 3);
        assert_eq!(set.trip_cooldown, Duration::from_millis(250));
        assert_eq!(set.log_rate_per_second, 5);
        assert_eq!(set.metric_series_limit, 7);
        assert_eq!(set.clock_resolution, Duration::from_micros(1));
        for (text, key) in [
            ("trip_cooldown_ms = 0\n", "trip_cooldown_ms"),
            ("log_rate_per_second = 0\n", "log_rate_per_second"),
            ("metric_series_limit = 0\n", "metric_series_limit"),
            ("clock_resolution_us = 0\n", "clock_resolution_us"),
            ("max_instances = 0\n", "max_instances"),
            ("max_instances = 1001\n", "max_instances"),
            ("trip_after = -1\n", "trip_after"),
            ("quarantine_ms = 86400001\n", "quarantine_ms"),
        ] {
            let error = PluginSettings::parse(Path::new("x.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(error.contains(key), "{text}: {error}");
            assert!(error.starts_with("x.toml:1: "), "the line: {error}");
        }
    }

    #[test]
    fn files_values_land_in_config_and_errors_name_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let settings_path = dir.path().join("auth.toml");
        std::fs::write(dir.path().join("jwks.json"), "{\"keys\":[]}").unwrap();
        std::fs::write(
            &settings_path,
            "[files]\n\"jwt.jwks\" = \"jwks.json\"\n[config.jwt]\nissuers = [\"i\"]\n",
        )
        .unwrap();
        let settings = PluginSettings::load(&settings_path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&settings.config_json).unwrap();
        assert_eq!(json["jwt"]["jwks"], "{\"keys\":[]}");
        assert_eq!(json["jwt"]["issuers"][0], "i");
        assert_eq!(settings.files[0].path, dir.path().join("jwks.json"));

        std::fs::write(
            &settings_path,
            "[files]\n\"jwt.jwks\" = \"jwks.json\"\n[config.jwt]\njwks = \"inline\"\n",
        )
        .unwrap();
        let error = PluginSettings::load(&settings_path)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("auth.toml:2: ")
                && error.contains("jwt.jwks")
                && error.contains("inline"),
            "{error}"
        );

        std::fs::write(&settings_path, "[files]\n\"jwt.jwks\" = \"gone.json\"\n").unwrap();
        let error = PluginSettings::load(&settings_path)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("auth.toml:2: `files.\"jwt.jwks\"`")
                && error.contains(&dir.path().join("gone.json").display().to_string())
                && error.contains("no such file"),
            "{error}"
        );

        let error = PluginSettings::parse(&settings_path, "[files]\n\"jwt.\" = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("jwt."), "{error}");
    }

    #[test]
    fn bad_policy_and_unknown_key_name_the_line() {
        let error = PluginSettings::parse(Path::new("x.toml"), "order = 1\nfailure = \"maybe\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("x.toml:2:") && error.contains("failure"),
            "{error}"
        );
        let error = PluginSettings::parse(Path::new("x.toml"), "ordr = 1\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("ordr"), "{error}");
    }
}
