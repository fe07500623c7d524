//! `on-app-log`: drops records below `app_logs.min_level`, redacts secret
//! metadata keys and adds the static fields.

use std::collections::BTreeMap;

use serde_json::Value;
use tandem_sdk::AppLog;

use crate::redact;
use crate::settings::AppLogSettings;

/// The rank of a level name, case-insensitive: trace 0, debug 1, info 2
/// (also notice), warn 3 (also warning), error 4 (also err), fatal 5 (also
/// critical, crit, alert, emerg, emergency, panic). Unknown names have none.
pub fn rank(level: &str) -> Option<u8> {
    Some(match level.to_ascii_lowercase().as_str() {
        "trace" => 0,
        "debug" => 1,
        "info" | "notice" => 2,
        "warn" | "warning" => 3,
        "error" | "err" => 4,
        "fatal" | "critical" | "crit" | "alert" | "emerg" | "emergency" | "panic" => 5,
        _ => return None,
    })
}

/// The app-log part of the plugin, ready to use.
pub struct AppLogs {
    min_rank: Option<u8>,
    redact_keys: Vec<String>,
    static_fields: BTreeMap<String, Value>,
}

impl AppLogs {
    /// From the settings; `static_fields` are added only if asked for.
    pub fn new(settings: AppLogSettings, static_fields: &BTreeMap<String, Value>) -> Self {
        Self {
            min_rank: settings.min_level.as_deref().and_then(rank),
            redact_keys: settings.redact_keys,
            static_fields: if settings.add_static_fields {
                static_fields.clone()
            } else {
                BTreeMap::new()
            },
        }
    }

    /// Changes or drops one record. A level the plugin does not know is
    /// never dropped: losing an unusual `level: "audit"` would be worse than
    /// keeping it.
    pub fn process(&self, mut entry: AppLog) -> Result<Option<AppLog>, String> {
        if let (Some(min), Some(level)) = (self.min_rank, rank(&entry.level))
            && level < min
        {
            return Ok(None);
        }
        if self.redact_keys.is_empty() && self.static_fields.is_empty() {
            return Ok(Some(entry));
        }
        let mut metadata = Value::Object(entry.metadata_map()?);
        redact::metadata(&mut metadata, &self.redact_keys);
        if let Value::Object(map) = &mut metadata {
            for (key, value) in &self.static_fields {
                map.insert(key.clone(), value.clone());
            }
            entry.set_metadata_map(map);
        }
        Ok(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(level: &str, metadata: &str) -> AppLog {
        AppLog {
            level: level.into(),
            message: "m".into(),
            metadata: metadata.into(),
            timestamp: "2025-01-31T12:00:00.000Z".into(),
        }
    }

    fn app_logs(min_level: Option<&str>) -> AppLogs {
        let settings = AppLogSettings {
            min_level: min_level.map(String::from),
            ..AppLogSettings::default()
        };
        let fields = BTreeMap::from([("service".to_owned(), Value::from("orders"))]);
        AppLogs::new(settings, &fields)
    }

    #[test]
    fn levels_below_the_minimum_are_dropped_unknown_ones_kept() {
        let logs = app_logs(Some("info"));
        assert!(logs.process(entry("debug", "{}")).unwrap().is_none());
        assert!(logs.process(entry("INFO", "{}")).unwrap().is_some());
        assert!(logs.process(entry("Warning", "{}")).unwrap().is_some());
        assert!(logs.process(entry("audit", "{}")).unwrap().is_some());
    }

    #[test]
    fn metadata_is_redacted_and_enriched() {
        let out = app_logs(None)
            .process(entry("info", r#"{"user":"alice","password":"hunter2"}"#))
            .unwrap()
            .unwrap();
        let map = out.metadata_map().unwrap();
        assert_eq!(map["password"], redact::REDACTED);
        assert_eq!(map["user"], "alice");
        assert_eq!(map["service"], "orders");
    }
}
