//! The plugin's `[config]` table, as the host hands it to `init`.

use std::cell::OnceCell;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The `[config]` table of the plugin's `NAME.toml`, encoded as JSON by the
/// host (`{}` when there is none).
///
/// Deserialize it whole with [`Config::parse`], or read single top-level
/// keys with the `get_*` methods.
#[derive(Debug)]
pub struct Config {
    json: String,
    value: OnceCell<Value>,
}

impl Config {
    /// Wraps a JSON document; useful to test a plugin's `init` natively.
    pub fn new(json: impl Into<String>) -> Config {
        Config {
            json: json.into(),
            value: OnceCell::new(),
        }
    }

    /// The JSON text as received.
    pub fn as_str(&self) -> &str {
        &self.json
    }

    /// Deserializes the whole config into `T`.
    ///
    /// Add `#[serde(deny_unknown_fields)]` to `T` so that a misspelt key is
    /// an error rather than a silent default. The error names the key at
    /// fault, e.g. ``config key `status`: invalid type: string "x", expected
    /// u16``, and is meant to be returned from [`Plugin::init`] as is.
    ///
    /// [`Plugin::init`]: crate::Plugin::init
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        let mut de = serde_json::Deserializer::from_str(&self.json);
        serde_path_to_error::deserialize(&mut de).map_err(|error| {
            let path = error.path().to_string();
            let message = without_position(error.inner());
            if path == "." {
                format!("config: {message}")
            } else {
                format!("config key `{path}`: {message}")
            }
        })
    }

    /// A top-level string, if the key is present and holds a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// A top-level non-negative integer, if the key is present and holds one.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// A top-level boolean, if the key is present and holds one.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.value
            .get_or_init(|| serde_json::from_str(&self.json).unwrap_or(Value::Null))
            .get(key)
    }
}

/// serde_json's message without " at line 1 column 42": the JSON is written
/// by the host, so the position means nothing to whoever wrote the TOML.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(at) if error.line() > 0 => message[..at].to_owned(),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        prefixes: Vec<String>,
        #[serde(default)]
        status: Option<u16>,
    }

    #[test]
    fn parse_errors_name_the_key() {
        let error = Config::new(r#"{"prefixes": ["/a"], "status": "x"}"#)
            .parse::<Limits>()
            .unwrap_err();
        assert_eq!(
            error,
            r#"config key `status`: invalid type: string "x", expected u16"#
        );

        let error = Config::new("{}").parse::<Limits>().unwrap_err();
        assert_eq!(error, "config: missing field `prefixes`");

        let error = Config::new(r#"{"prefixes": [], "stat": 1}"#)
            .parse::<Limits>()
            .unwrap_err();
        assert!(
            error.starts_with("config key `stat`: unknown field `stat`"),
            "{error}"
        );
    }

    #[test]
    fn getters_read_top_level_keys() {
        let config = Config::new(r#"{"name": "a", "n": 7, "on": true}"#);
        assert_eq!(config.get_str("name"), Some("a"));
        assert_eq!(config.get_u64("n"), Some(7));
        assert_eq!(config.get_bool("on"), Some(true));
        assert_eq!(config.get_str("n"), None);
        assert_eq!(config.get_u64("missing"), None);
        assert_eq!(Config::new("not json").get_str("name"), None);
    }
}
