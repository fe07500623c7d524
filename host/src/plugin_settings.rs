//! `NAME.toml`, the optional settings file beside each `NAME.wasm`.

use std::path::Path;
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
    #[serde(default)]
    config: Option<toml::Table>,
}

/// Default CPU deadline of one hook call.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_millis(100);
/// Default memory limit of one instance.
pub const DEFAULT_MEMORY_LIMIT_MB: u64 = 64;

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
    /// The `[config]` table as JSON, given to `init`.
    pub config_json: String,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            order: 0,
            failure: FailurePolicy::default(),
            instances: InstanceMode::default(),
            hook_timeout: DEFAULT_HOOK_TIMEOUT,
            memory_limit_bytes: (DEFAULT_MEMORY_LIMIT_MB << 20) as usize,
            config_json: "{}".into(),
        }
    }
}

impl PluginSettings {
    /// Parses the text of a `NAME.toml`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: SettingsFile = parse_toml(path, text)?;
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
        let config_json = match file.config {
            Some(table) => serde_json::to_string(&table)
                .map_err(|e| invalid("config", format!("cannot be encoded as JSON: {e}")))?,
            None => defaults.config_json,
        };
        Ok(Self {
            order: file.order.unwrap_or(defaults.order),
            failure: file.failure.unwrap_or(defaults.failure),
            instances: file.instances.unwrap_or(defaults.instances),
            hook_timeout,
            memory_limit_bytes: (memory_limit_mb << 20) as usize,
            config_json,
        })
    }

    /// Reads `path` if it exists; defaults otherwise.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
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
