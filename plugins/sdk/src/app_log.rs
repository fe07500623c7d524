//! One record of the application's own log, as `on-app-log` sees it.

use serde_json::{Map, Value};

pub use crate::bindings::exports::tandem::plugin::hooks::AppLog;

impl AppLog {
    /// The metadata as a JSON object. The host always hands the hook an
    /// object (`{}` when the application sent none); `Err` only if an
    /// earlier change in this plugin broke it.
    pub fn metadata_map(&self) -> Result<Map<String, Value>, String> {
        serde_json::from_str(&self.metadata)
            .map_err(|e| format!("app-log metadata is not a JSON object: {e}"))
    }

    /// Replaces the metadata with `map`.
    pub fn set_metadata_map(&mut self, map: &Map<String, Value>) {
        // A map of JSON values always serializes.
        self.metadata = Value::Object(map.clone()).to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_as_a_map() {
        let mut entry = AppLog {
            level: "info".into(),
            message: "m".into(),
            metadata: r#"{"a":1}"#.into(),
            timestamp: "t".into(),
        };
        let mut map = entry.metadata_map().unwrap();
        map.insert("b".into(), Value::from("x"));
        entry.set_metadata_map(&map);
        assert_eq!(entry.metadata, r#"{"a":1,"b":"x"}"#);
        entry.metadata = "[]".into();
        assert!(entry.metadata_map().is_err());
    }
}
