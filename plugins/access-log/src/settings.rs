//! The `[config]` table of access-log, with its defaults, checked once in
//! `init`. README.md lists every key.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A field of the access record. The names are the record's keys.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// Always `"access"`, to tell access records from application records.
    Source,
    /// When the request arrived, RFC 3339 in UTC with milliseconds.
    Time,
    /// The request id (from the request or generated).
    RequestId,
    /// The method.
    Method,
    /// The path, without the query.
    Path,
    /// The query, with secret parameters redacted; null if none.
    Query,
    /// The status sent to the client.
    Status,
    /// Request body bytes read from the client.
    RequestBytes,
    /// Response body bytes sent to the client.
    ResponseBytes,
    /// From the request head to the response's last byte, in milliseconds.
    DurationMs,
    /// Time to the upstream's response head, in ms; null if not called.
    UpstreamDurationMs,
    /// The client's `ip:port`.
    ClientAddr,
    /// The `User-Agent` header; null if absent.
    UserAgent,
    /// The `Referer` header; null if absent.
    Referer,
    /// The authority the client asked for.
    Authority,
    /// `http` or `https`.
    Scheme,
    /// The authenticated subject from the property bag; null if none.
    AuthSubject,
    /// The plugin that answered instead of the upstream; null if none.
    RespondedBy,
    /// Why the exchange failed; null if it did not.
    Error,
    /// The headers named in `request_headers`, redacted as configured.
    RequestHeaders,
    /// The headers named in `response_headers`, redacted as configured.
    ResponseHeaders,
}

impl Field {
    /// Every field, in the order they appear in a record.
    pub const ALL: [Field; 21] = [
        Field::Source,
        Field::Time,
        Field::RequestId,
        Field::Method,
        Field::Path,
        Field::Query,
        Field::Status,
        Field::RequestBytes,
        Field::ResponseBytes,
        Field::DurationMs,
        Field::UpstreamDurationMs,
        Field::ClientAddr,
        Field::UserAgent,
        Field::Referer,
        Field::Authority,
        Field::Scheme,
        Field::AuthSubject,
        Field::RespondedBy,
        Field::Error,
        Field::RequestHeaders,
        Field::ResponseHeaders,
    ];

    /// The key in the record.
    pub fn key(self) -> &'static str {
        match self {
            Field::Source => "source",
            Field::Time => "time",
            Field::RequestId => "request_id",
            Field::Method => "method",
            Field::Path => "path",
            Field::Query => "query",
            Field::Status => "status",
            Field::RequestBytes => "request_bytes",
            Field::ResponseBytes => "response_bytes",
            Field::DurationMs => "duration_ms",
            Field::UpstreamDurationMs => "upstream_duration_ms",
            Field::ClientAddr => "client_addr",
            Field::UserAgent => "user_agent",
            Field::Referer => "referer",
            Field::Authority => "authority",
            Field::Scheme => "scheme",
            Field::AuthSubject => "auth_subject",
            Field::RespondedBy => "responded_by",
            Field::Error => "error",
            Field::RequestHeaders => "request_headers",
            Field::ResponseHeaders => "response_headers",
        }
    }
}

/// How the sampling decision is made.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SampleBy {
    /// From a hash of the request id: the same id always gets the same
    /// decision, in every Tandem that sees it.
    #[default]
    RequestId,
    /// Independently at random for each request.
    Random,
}

/// The `[config]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Fields to write; all of them when absent.
    pub fields: Option<Vec<Field>>,
    /// Fields not to write.
    pub exclude_fields: Vec<Field>,
    /// Request headers to write under `request_headers`.
    pub request_headers: Vec<String>,
    /// Response headers to write under `response_headers`.
    pub response_headers: Vec<String>,
    /// Headers whose values are written as `[REDACTED]`.
    pub redact_headers: Vec<String>,
    /// Query parameters whose values are written as `[REDACTED]`.
    pub redact_query_params: Vec<String>,
    /// Share of requests logged, 0 to 1.
    pub sample_rate: f64,
    /// How the sampling decision is made.
    pub sample_by: SampleBy,
    /// Log failed exchanges (5xx or an error) whatever the sampling says.
    pub always_log_errors: bool,
    /// Path prefixes never logged, e.g. `/healthz`.
    pub skip_paths: Vec<String>,
    /// The request-id header.
    pub request_id_header: String,
    /// Generate a request id when the request has none (or a bad one), and
    /// forward it upstream in `request_id_header`.
    pub generate_request_id: bool,
    /// The property that holds the authenticated subject.
    pub subject_property: String,
    /// Fields added to every access record (and, with
    /// `app_logs.add_static_fields`, to application records' metadata).
    pub static_fields: BTreeMap<String, Value>,
    /// What `on-app-log` does.
    pub app_logs: AppLogSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            fields: None,
            exclude_fields: Vec::new(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            redact_headers: [
                "authorization",
                "cookie",
                "proxy-authorization",
                "set-cookie",
            ]
            .map(String::from)
            .to_vec(),
            redact_query_params: ["access_token", "api_key", "apikey", "token"]
                .map(String::from)
                .to_vec(),
            sample_rate: 1.0,
            sample_by: SampleBy::RequestId,
            always_log_errors: true,
            skip_paths: Vec::new(),
            request_id_header: "x-request-id".into(),
            generate_request_id: true,
            subject_property: "auth.subject".into(),
            static_fields: BTreeMap::new(),
            app_logs: AppLogSettings::default(),
        }
    }
}

/// The `[config.app_logs]` table: how application log records are changed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppLogSettings {
    /// Records below this level are dropped; none are when absent.
    pub min_level: Option<String>,
    /// Metadata keys containing any of these (case-insensitive) have their
    /// values replaced by `[REDACTED]`, at any depth.
    pub redact_keys: Vec<String>,
    /// Set `static_fields` in each record's metadata.
    pub add_static_fields: bool,
}

impl Default for AppLogSettings {
    fn default() -> Self {
        Self {
            min_level: None,
            redact_keys: [
                "password",
                "passwd",
                "secret",
                "token",
                "authorization",
                "cookie",
                "api_key",
                "apikey",
            ]
            .map(String::from)
            .to_vec(),
            add_static_fields: true,
        }
    }
}

/// The record's keys that `static_fields` may not replace.
fn reserved(key: &str) -> bool {
    Field::ALL.iter().any(|f| f.key() == key)
}

/// An HTTP token (RFC 9110, section 5.6.2), i.e. a valid header name.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Settings {
    /// Checks values serde cannot: ranges, header names, clashing keys.
    /// Header and parameter names are lower-cased for matching.
    pub fn check(mut self) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(format!(
                "config key `sample_rate`: {} is not between 0 and 1",
                self.sample_rate
            ));
        }
        for (key, list) in [
            ("request_headers", &mut self.request_headers),
            ("response_headers", &mut self.response_headers),
            ("redact_headers", &mut self.redact_headers),
        ] {
            for name in list.iter_mut() {
                if !is_token(name) {
                    return Err(format!(
                        "config key `{key}`: {name:?} is not a valid header name"
                    ));
                }
                name.make_ascii_lowercase();
            }
        }
        if !is_token(&self.request_id_header) {
            return Err(format!(
                "config key `request_id_header`: {:?} is not a valid header name",
                self.request_id_header
            ));
        }
        self.request_id_header.make_ascii_lowercase();
        for param in &mut self.redact_query_params {
            param.make_ascii_lowercase();
        }
        for key in self.app_logs.redact_keys.iter_mut() {
            if key.is_empty() {
                return Err("config key `app_logs.redact_keys`: empty entry".into());
            }
            key.make_ascii_lowercase();
        }
        for prefix in &self.skip_paths {
            if !prefix.starts_with('/') {
                return Err(format!(
                    "config key `skip_paths`: {prefix:?} must start with `/`"
                ));
            }
        }
        if let Some(level) = &self.app_logs.min_level
            && crate::app_logs::rank(level).is_none()
        {
            return Err(format!(
                "config key `app_logs.min_level`: {level:?} is not one of trace, debug, info, warn, error, fatal"
            ));
        }
        for key in self.static_fields.keys() {
            if reserved(key) {
                return Err(format!(
                    "config key `static_fields.{key}`: `{key}` is a field of the access record; choose another name"
                ));
            }
        }
        Ok(self)
    }

    /// The fields to write, in record order.
    pub fn enabled_fields(&self) -> Vec<Field> {
        Field::ALL
            .into_iter()
            .filter(|f| self.fields.as_ref().is_none_or(|list| list.contains(f)))
            .filter(|f| !self.exclude_fields.contains(f))
            .filter(|f| match f {
                Field::RequestHeaders => !self.request_headers.is_empty(),
                Field::ResponseHeaders => !self.response_headers.is_empty(),
                _ => true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Settings, String> {
        tandem_sdk::Config::new(json).parse::<Settings>()?.check()
    }

    #[test]
    fn defaults_redact_credentials_and_log_everything() {
        let settings = parse("{}").unwrap();
        assert!(
            settings
                .redact_headers
                .contains(&"authorization".to_owned())
        );
        assert!(settings.redact_headers.contains(&"cookie".to_owned()));
        assert_eq!(settings.sample_rate, 1.0);
        // No header lists: no header fields.
        assert_eq!(settings.enabled_fields().len(), Field::ALL.len() - 2);
    }

    #[test]
    fn include_and_exclude_lists_pick_fields() {
        let settings =
            parse(r#"{"fields": ["status", "method", "time"], "exclude_fields": ["time"]}"#)
                .unwrap();
        assert_eq!(settings.enabled_fields(), [Field::Method, Field::Status]);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (json, key) in [
            (r#"{"sample_rate": 1.5}"#, "sample_rate"),
            (r#"{"fields": ["nope"]}"#, "fields"),
            (r#"{"request_headers": ["bad header"]}"#, "request_headers"),
            (r#"{"skip_paths": ["healthz"]}"#, "skip_paths"),
            (
                r#"{"app_logs": {"min_level": "loud"}}"#,
                "app_logs.min_level",
            ),
            (
                r#"{"static_fields": {"status": 1}}"#,
                "static_fields.status",
            ),
            (r#"{"sampel_rate": 1}"#, "sampel_rate"),
        ] {
            let error = parse(json).unwrap_err();
            assert!(error.contains(key), "{json}: {error}");
        }
    }
}
