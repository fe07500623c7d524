//! Building one access record: the enabled fields, in a fixed order, as one
//! JSON object.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tandem_sdk::{Exchange, Request, Response};

use crate::redact;
use crate::settings::Field;

/// A JSON object written key by key, so the record's keys keep the order of
/// [`Field::ALL`] (serde_json's map would sort them).
pub struct Object(String);

impl Default for Object {
    fn default() -> Self {
        Self::new()
    }
}

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Object(String::from("{"))
    }

    /// Adds `key: value`.
    pub fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        push_json(&mut self.0, key);
        self.0.push(':');
        push_json(&mut self.0, value);
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

fn push_json<T: Serialize + ?Sized>(out: &mut String, value: &T) {
    // Strings, numbers and string-keyed maps always serialize; `null` keeps
    // the object valid should that ever change.
    match serde_json::to_string(value) {
        Ok(text) => out.push_str(&text),
        Err(_) => out.push_str("null"),
    }
}

/// What the record needs besides the request, response and exchange.
pub struct RecordSettings<'a> {
    /// Fields to write, in order.
    pub fields: &'a [Field],
    /// Request headers to write.
    pub request_headers: &'a [String],
    /// Response headers to write.
    pub response_headers: &'a [String],
    /// Headers whose values are redacted.
    pub redact_headers: &'a [String],
    /// Query parameters whose values are redacted.
    pub redact_query_params: &'a [String],
    /// The property with the authenticated subject.
    pub subject_property: &'a str,
    /// Extra fields, written last.
    pub static_fields: &'a BTreeMap<String, Value>,
}

/// Milliseconds with microsecond precision.
fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// When the request arrived: now, minus how long the exchange took.
fn arrival(duration_us: u64) -> String {
    let now = SystemTime::now();
    let arrived = now
        .checked_sub(Duration::from_micros(duration_us))
        .unwrap_or(now);
    humantime::format_rfc3339_millis(arrived).to_string()
}

/// The listed headers, joined with `, ` when repeated, redacted as set.
fn headers(
    names: &[String],
    redacted: &[String],
    read: impl Fn(&str) -> Vec<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in names {
        let values = read(name);
        if values.is_empty() {
            continue;
        }
        let value = if redacted.contains(name) {
            redact::REDACTED.to_owned()
        } else {
            values.join(", ")
        };
        out.insert(name.clone(), value);
    }
    out
}

/// The access record for one exchange.
pub fn record(
    settings: &RecordSettings<'_>,
    req: &Request,
    resp: &Response,
    info: &Exchange,
    request_id: Option<&str>,
) -> String {
    let mut object = Object::new();
    for field in settings.fields {
        let key = field.key();
        match field {
            Field::Source => object.field(key, "access"),
            Field::Time => object.field(key, &arrival(info.duration_us)),
            Field::RequestId => object.field(key, &request_id),
            Field::Method => object.field(key, &req.method()),
            Field::Path => object.field(key, &req.path()),
            Field::Query => object.field(
                key,
                &req.query()
                    .map(|q| redact::query(&q, settings.redact_query_params)),
            ),
            Field::Status => object.field(key, &info.status),
            Field::RequestBytes => object.field(key, &info.request_bytes),
            Field::ResponseBytes => object.field(key, &info.response_bytes),
            Field::DurationMs => object.field(key, &millis(info.duration_us)),
            Field::UpstreamDurationMs => object.field(key, &info.upstream_duration_us.map(millis)),
            Field::ClientAddr => object.field(key, &req.client_addr()),
            Field::UserAgent => object.field(key, &req.header("user-agent")),
            Field::Referer => object.field(key, &req.header("referer")),
            Field::Authority => object.field(key, &req.authority()),
            Field::Scheme => object.field(key, &req.scheme()),
            Field::AuthSubject => object.field(key, &req.property(settings.subject_property)),
            Field::RespondedBy => object.field(key, &info.responded_by),
            Field::Error => object.field(key, &info.error),
            Field::RequestHeaders => object.field(
                key,
                &headers(settings.request_headers, settings.redact_headers, |n| {
                    req.header_all(n)
                }),
            ),
            Field::ResponseHeaders => object.field(
                key,
                &headers(settings.response_headers, settings.redact_headers, |n| {
                    resp.header_all(n)
                }),
            ),
        }
    }
    for (key, value) in settings.static_fields {
        object.field(key, value);
    }
    object.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_their_key_order_and_escape() {
        let mut object = Object::new();
        object.field("z", &1);
        object.field("a", "quote\"d");
        object.field("n", &None::<u8>);
        assert_eq!(object.finish(), r#"{"z":1,"a":"quote\"d","n":null}"#);
        assert_eq!(Object::new().finish(), "{}");
    }

    #[test]
    fn listed_headers_are_joined_and_redacted() {
        let names = [
            "authorization".to_owned(),
            "accept".to_owned(),
            "x-missing".to_owned(),
        ];
        let redacted = ["authorization".to_owned()];
        let out = headers(&names, &redacted, |name| match name {
            "authorization" => vec!["Bearer secret".into()],
            "accept" => vec!["a/b".into(), "c/d".into()],
            _ => vec![],
        });
        assert_eq!(out["authorization"], redact::REDACTED);
        assert_eq!(out["accept"], "a/b, c/d");
        assert!(!out.contains_key("x-missing"));
    }

    #[test]
    fn arrival_is_rfc3339_utc_with_millis() {
        let time = arrival(1_500_000);
        assert_eq!(time.len(), "2025-01-31T12:00:00.000Z".len(), "{time}");
        assert!(time.ends_with('Z'));
        assert!(humantime::parse_rfc3339(&time).is_ok());
    }
}
