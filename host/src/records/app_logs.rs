//! `POST /logs`: the application's own log records join the pipeline.
//!
//! The body is the JSON object that the seed's `SidecarLogger` sends:
//! `{"level", "message", "metadata", "timestamp"}`, where `metadata` is an
//! object and may be absent or null (`JSON.stringify` leaves out an
//! undefined one). The record goes through the chain's `on-app-log` hooks
//! (which may enrich, redact or drop it), is enriched with `source: "app"`
//! and the configured `app_fields`, and is queued for the sink; the answer
//! is 202 Accepted. Served on the admin listener and, if
//! `records.app_logs_listen` is set, on a listener of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use super::EmitError;
use super::metrics::{DropReason, Source};
use crate::app::App;
use crate::chain::{AppLogDrop, AppLogVerdict};
use crate::runtime::bindings::AppLog;

/// Longest `level`, in bytes.
pub const MAX_LEVEL_BYTES: usize = 64;
/// Longest `timestamp`, in bytes.
pub const MAX_TIMESTAMP_BYTES: usize = 64;

/// A record as the application sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingLog {
    level: String,
    message: String,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    timestamp: String,
}

/// The record as it goes to the sink.
#[derive(Serialize)]
struct AppRecord<'a> {
    source: &'static str,
    timestamp: &'a str,
    level: &'a str,
    message: &'a str,
    metadata: Map<String, Value>,
    #[serde(flatten)]
    fields: &'a BTreeMap<String, String>,
}

/// Why a `POST /logs` was not taken: the one place these become responses.
#[derive(Debug, thiserror::Error)]
enum AppLogError {
    #[error("use POST /logs with a JSON body")]
    Method,
    #[error("the body is over the {max}-byte limit (records.app_logs_max_bytes)")]
    TooLarge { max: usize },
    #[error("cannot read the body: {0}")]
    Body(String),
    #[error(
        "malformed log record: {0}; expected {{\"level\": string, \"message\": string, \"metadata\": object (optional), \"timestamp\": string}}"
    )]
    Json(String),
    #[error("malformed log record: {0}")]
    Field(String),
    #[error("{0}")]
    Dropped(EmitError),
}

impl AppLogError {
    fn status(&self) -> StatusCode {
        match self {
            AppLogError::Method => StatusCode::METHOD_NOT_ALLOWED,
            AppLogError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppLogError::Body(_) | AppLogError::Json(_) | AppLogError::Field(_) => {
                StatusCode::BAD_REQUEST
            }
            AppLogError::Dropped(EmitError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            AppLogError::Dropped(EmitError::Invalid(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            AppLogError::Dropped(EmitError::BufferFull | EmitError::Closed) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = json_response(self.status(), json!({ "error": self.to_string() }));
        let headers = response.headers_mut();
        match self {
            AppLogError::Method => {
                headers.insert(header::ALLOW, header::HeaderValue::from_static("POST"));
            }
            AppLogError::Dropped(EmitError::BufferFull) => {
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Checks a record, from the application or returned by a hook: `level`
/// and `timestamp` short and non-empty, `metadata` a JSON object. Returns
/// the parsed metadata.
pub fn check_entry(entry: &AppLog) -> Result<Map<String, Value>, String> {
    if entry.level.is_empty() || entry.level.len() > MAX_LEVEL_BYTES {
        return Err(format!("`level` must be 1 to {MAX_LEVEL_BYTES} bytes"));
    }
    if entry.timestamp.is_empty() || entry.timestamp.len() > MAX_TIMESTAMP_BYTES {
        return Err(format!(
            "`timestamp` must be 1 to {MAX_TIMESTAMP_BYTES} bytes"
        ));
    }
    serde_json::from_str(&entry.metadata)
        .map_err(|e| format!("`metadata` is not a JSON object: {e}"))
}

/// Reads the body within `max` bytes.
async fn read_body(body: Incoming, max: usize) -> Result<Bytes, AppLogError> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(AppLogError::TooLarge { max })
        }
        Err(error) => Err(AppLogError::Body(error.to_string())),
    }
}

/// What happened to an accepted record.
enum Outcome {
    Queued,
    Dropped { by: String },
}

async fn accept(app: &App, request: Request<Incoming>) -> Result<Outcome, AppLogError> {
    if request.method() != Method::POST {
        return Err(AppLogError::Method);
    }
    let settings = &app.config.records;
    let max = settings.app_logs_max_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(AppLogError::TooLarge { max });
    }
    let body = read_body(request.into_body(), max).await?;
    let incoming: IncomingLog =
        serde_json::from_slice(&body).map_err(|e| AppLogError::Json(e.to_string()))?;
    let entry = AppLog {
        level: incoming.level,
        message: incoming.message,
        metadata: Value::Object(incoming.metadata.unwrap_or_default()).to_string(),
        timestamp: incoming.timestamp,
    };
    check_entry(&entry).map_err(AppLogError::Field)?;

    let records = app.records();
    let chain = app.chain.load_full();
    let entry = match chain.on_app_log(entry).await {
        AppLogVerdict::Keep(entry) => entry,
        AppLogVerdict::Dropped { by, reason } => {
            let reason = match reason {
                AppLogDrop::Filtered => DropReason::Filtered,
                AppLogDrop::Failed(_) => DropReason::PluginFailure,
            };
            records.dropped(reason);
            return Ok(Outcome::Dropped {
                by: chain.name(by).to_owned(),
            });
        }
    };
    // Hooks' results were checked by the runtime; this parse cannot fail
    // for them, and the application's own metadata was built above.
    let metadata = check_entry(&entry).map_err(AppLogError::Field)?;
    let line = serde_json::to_string(&AppRecord {
        source: "app",
        timestamp: &entry.timestamp,
        level: &entry.level,
        message: &entry.message,
        metadata,
        fields: &settings.app_fields,
    })
    .map_err(|e| AppLogError::Field(e.to_string()))?;
    records
        .push(Source::App, line)
        .map_err(AppLogError::Dropped)?;
    Ok(Outcome::Queued)
}

/// Handles `/logs` on any listener.
pub async fn handle(app: &App, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match accept(app, request).await {
        Ok(Outcome::Queued) => json_response(StatusCode::ACCEPTED, json!({ "result": "queued" })),
        Ok(Outcome::Dropped { by }) => json_response(
            StatusCode::ACCEPTED,
            json!({ "result": "dropped", "by": by }),
        ),
        Err(error) => error.into_response(),
    }
}

/// Serves `POST /logs` (and nothing else) on a listener of its own until
/// the task is dropped.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    crate::listener::serve(listener, "app-log listener", move |request| {
        let app = app.clone();
        async move {
            if request.uri().path() == "/logs" {
                handle(&app, request).await
            } else {
                json_response(
                    StatusCode::NOT_FOUND,
                    json!({ "error": "only POST /logs is served here" }),
                )
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(level: &str, metadata: &str, timestamp: &str) -> AppLog {
        AppLog {
            level: level.into(),
            message: "m".into(),
            metadata: metadata.into(),
            timestamp: timestamp.into(),
        }
    }

    #[test]
    fn entries_need_a_level_a_timestamp_and_object_metadata() {
        assert!(check_entry(&entry("info", "{}", "t")).is_ok());
        assert!(check_entry(&entry("", "{}", "t")).is_err());
        assert!(check_entry(&entry("info", "{}", "")).is_err());
        assert!(check_entry(&entry("info", "[]", "t")).is_err());
        assert!(check_entry(&entry("info", "nope", "t")).is_err());
    }

    #[test]
    fn the_sidecar_logger_body_parses_with_or_without_metadata() {
        let with: IncomingLog = serde_json::from_str(
            r#"{"level":"info","message":"order placed","metadata":{"id":7},"timestamp":"2025-01-31T12:00:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(with.metadata.unwrap()["id"], 7);
        let without: IncomingLog = serde_json::from_str(
            r#"{"level":"error","message":"boom","timestamp":"2025-01-31T12:00:00.000Z"}"#,
        )
        .unwrap();
        assert!(without.metadata.is_none());
        let error = serde_json::from_str::<IncomingLog>(r#"{"level":"info","timestamp":"t"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing field `message`"), "{error}");
        let error = serde_json::from_str::<IncomingLog>(
            r#"{"level":"info","message":"m","timestamp":"t","extra":1}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `extra`"), "{error}");
    }
}
